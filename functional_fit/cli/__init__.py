"""The ``functional-fit`` command line: a thin layer of parsing and printing over the library.

Each sub-command lives in its own module of this package (``lecture.py``, ``surface.py``,
``sweep.py``, ``parity.py``) and provides ``add_parser(subparsers)`` and ``run(args) -> int``.

How it fails (README, "Failure behaviour"; `tests/test_bad_inputs.py` runs every case):

- bad input (an option, a data file, an output path, the environment, a run too large for
  the memory): one line on stderr, exit status 2, before anything is computed;
- Ctrl-C: ``interrupted``, exit status 130, no output file written;
- an I/O error while writing (a full disk, a read-only file system, a closed or full stdout):
  one line, exit status 1, nothing half-written;
- a reader that stops early (``| head -1``): quiet, exit status 141 (128 + SIGPIPE), as
  ``seq`` reports in a pipeline.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import importlib
import importlib.util
import os
import signal
import sys
import threading

from functional_fit.cli import _common

COMMANDS = ("lecture", "surface", "sweep", "parity")

#: ASCII stand-ins for the few non-ASCII characters the tables print, for a terminal (or
#: ``PYTHONIOENCODING=ascii``) that cannot encode them.
ASCII = {"Δ": "d", "…": "...", "θ": "theta", "×": "x", "²": "^2", "≤": "<=", "≥": ">=", "—": "-",
         "–": "-", "·": "."}


def _ascii_fallback(exc: UnicodeEncodeError):
    """Codec error handler: `ASCII` stand-ins, ``\\u`` escapes for anything else."""
    bad = exc.object[exc.start : exc.end]
    return "".join(ASCII.get(c, c.encode("ascii", "backslashreplace").decode()) for c in bad), exc.end


codecs.register_error("functional_fit.ascii", _ascii_fallback)


def _modules():
    for name in COMMANDS:
        qual = f"{__name__}.{name}"
        if importlib.util.find_spec(qual) is not None:
            yield name, importlib.import_module(qual)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="functional-fit",
        description="Gradient-based fitting in JAX and PyTorch, side by side.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _modules():
        p = module.add_parser(sub)
        _common.add_cache_option(p)
        p.set_defaults(_run=module.run)
    return parser


def _stdout_problem() -> str | None:
    """Why stdout cannot take the output (closed, as with ``>&-``), or None."""
    if sys.stdout is None:
        return "standard output is closed"
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # not a file (a test's capture): nothing to check
    try:
        os.fstat(fd)
    except OSError:
        return "standard output is closed"
    return None


def _encode_gracefully() -> None:
    """Print the tables on a stdout that cannot encode them (ASCII, a C locale) with stand-ins."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "Δ…".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="functional_fit.ascii")


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _os_error(exc: OSError) -> str:
    """One line for an OSError: the output it names (`files.WriteError`), a file, or stdout."""
    from functional_fit.files import WriteError

    if isinstance(exc, WriteError):
        return str(exc)
    if exc.filename is not None:
        return f"{str(exc.filename)!r}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT):  # print() failed
        return f"cannot write standard output: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def _on_sigint(signum, frame):
    """Ctrl-C: recorded (`files.interrupted`, in case Python drops the exception raised in a
    garbage-collector callback), then raised as KeyboardInterrupt."""
    from functional_fit import files

    files.interrupted.set()
    raise KeyboardInterrupt


def _unraisable(hook):
    """sys.unraisablehook: a KeyboardInterrupt dropped in a callback is handled (not printed)."""

    def quiet(info):
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)

    return quiet


def main(argv=None) -> int:
    """Entry point of the ``functional-fit`` console script."""
    from functional_fit import files

    files.interrupted.clear()
    handled = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_sigint) if handled else None
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        status = _main(argv)
    finally:
        sys.unraisablehook = hook
        if handled and argv is None:  # the command, now exiting: its work is done or undone
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        elif handled:
            signal.signal(signal.SIGINT, previous)
        files.interrupted.clear()  # the process may go on (a test, a notebook): writes work again
    return status


def _main(argv) -> int:
    from functional_fit import _environment, files
    from functional_fit.checks import InputError
    from functional_fit.precision import PrecisionError

    problem = _stdout_problem()
    if problem:
        print(f"functional-fit: error: {problem}", file=sys.stderr)
        return 1
    _encode_gracefully()
    parser = build_parser()
    args = parser.parse_args(argv)  # output paths are checked here, before any work
    prog = f"functional-fit {args.command}"
    try:
        problem = _environment.check_backend()
        if problem:
            print(f"{prog}: error: {problem}", file=sys.stderr)
            return 2
        # The program, not the library, decides on float64: every command works in JAX's
        # 64-bit mode so that `--dtype float64` and the lecture's float64 data mean what they say.
        import jax

        jax.config.update("jax_enable_x64", True)
        _common.use_compilation_cache(args)  # --no-cache turns it off
        status = int(args._run(args) or 0)
        if files.interrupted.is_set():  # a Ctrl-C that Python dropped on its way
            raise KeyboardInterrupt
        sys.stdout.flush()  # a full or broken stdout fails here, not in the interpreter's exit
        return status
    except BrokenPipeError:  # the reader stopped early (`| head -1`): quiet, as `seq` is
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except (InputError, PrecisionError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only file system, a full stdout
        print(f"{prog}: error: {_os_error(exc)}", file=sys.stderr)
        if exc.filename is None:  # stdout's buffer still holds what failed: drop it
            _silence_stdout()
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
