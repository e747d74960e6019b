"""``functional-fit``: `main`, the console script, a thin layer of parsing and printing.

Each sub-command lives in its own module of this package (``lecture.py``, ``surface.py``,
``sweep.py``, ``parity.py``, ``compare.py``, ``handout.py``) and provides
``add_parser(subparsers)`` and ``run(args) -> int``.

How it fails (README, "Failure behaviour"; `tests/test_bad_inputs.py` runs every case):

- bad input (an option, a data file, an output path, the environment, a run too large for
  the memory): one line on stderr, exit status 2, before anything is computed;
- Ctrl-C, SIGTERM, SIGHUP: ``interrupted`` (``interrupted by SIGTERM``), exit status 128 + the
  signal's number (130, 143, 129), no output file written (`signals`);
- an I/O error while writing (a full disk, a read-only file system, a closed or full stdout):
  one line, exit status 1, nothing half-written;
- a reader that stops early (``| head -1``): quiet, exit status 141 (128 + SIGPIPE), as
  ``seq`` reports in a pipeline.

Only the standard library is imported here at first: `main` installs its signal handlers before
the library (JAX, torch) is imported.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import importlib
import os
import signal
import sys

from functional_fit_cli import signals

COMMANDS = ("lecture", "surface", "sweep", "parity", "compare", "handout")

#: ASCII stand-ins for the few non-ASCII characters the tables print, for a terminal (or
#: ``PYTHONIOENCODING=ascii``) that cannot encode them.
ASCII = {"Δ": "d", "…": "...", "θ": "theta", "×": "x", "²": "^2", "≤": "<=", "≥": ">=", "—": "-",
         "–": "-", "·": "."}
#: The name of the codec error handler that writes `ASCII` stand-ins.
ASCII_ERRORS = "functional_fit.ascii"


def _ascii_fallback(exc: UnicodeEncodeError):
    """Codec error handler: `ASCII` stand-ins, ``\\u`` escapes for anything else."""
    bad = exc.object[exc.start : exc.end]
    return "".join(ASCII.get(c, c.encode("ascii", "backslashreplace").decode()) for c in bad), exc.end


def _modules():
    for name in COMMANDS:
        yield name, importlib.import_module(f"functional_fit_cli.{name}")


class _Once(argparse.Action):
    """``store``, refusing an option given twice (``--steps 5 --steps 7``) instead of keeping
    the last value silently."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, "_given", None)
        if given is None:
            given = set()
            setattr(namespace, "_given", given)
        if self.dest in given:
            parser.error(f"argument {'/'.join(self.option_strings)}: given twice; give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage dump), exit status 2, and
    whose options take one value each (`_Once`); its sub-command parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command (which imports the library)."""
    from functional_fit_cli import options

    parser = _Parser(
        prog="functional-fit",
        description="Gradient-based fitting in JAX and PyTorch, side by side.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _modules():
        p = module.add_parser(sub)
        options.add_cache_option(p)
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
    codecs.register_error(ASCII_ERRORS, _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "Δ…".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors=ASCII_ERRORS)


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
    from functional_fit_cli.files import WriteError

    if isinstance(exc, WriteError):
        return str(exc)
    if exc.filename is not None:
        return f"{str(exc.filename)!r}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT):  # print() failed
        return f"cannot write standard output: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def _unraisable(hook):
    """sys.unraisablehook: a KeyboardInterrupt dropped in a callback is handled (not printed)."""

    def quiet(info):
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)

    return quiet


def main(argv=None) -> int:
    """Entry point of the ``functional-fit`` console script; returns the exit status."""
    signals.clear()
    handled = signals.on_main_thread()
    previous = signals.install(signals.exit_at_once) if handled else {}
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        status = _main(argv, handled)
    finally:
        sys.unraisablehook = hook
        if argv is None:  # the command, now exiting: its work is done or undone
            signals.restore(dict.fromkeys(previous, signal.SIG_IGN))
        else:
            signals.restore(previous)
        signals.clear()  # the process may go on (a test, a notebook): writes work again
    return status


def _main(argv, handled: bool) -> int:
    from functional_fit_cli import environment

    problem = _stdout_problem()
    if problem:
        print(f"functional-fit: error: {problem}", file=sys.stderr)
        return 1
    _encode_gracefully()
    problem = environment.import_problem()  # JAX_ENABLE_X64=maybe: one line, not JAX's traceback
    if problem:
        print(f"functional-fit: error: {problem}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)  # output paths are checked here, before any work
    if handled:  # from here a signal is reported, and what was begun is undone
        signals.install(signals.raise_interrupt)
    return _run(args)


def _run(args) -> int:
    """Run the parsed sub-command; every failure is one line and its exit status."""
    from functional_fit.checks import InputError
    from functional_fit.precision import PrecisionError
    from functional_fit_cli import cache, environment, options

    prog = f"functional-fit {args.command}"
    try:
        options.check_outputs(args)  # an output that is the input, a folder of the user's
        problem = environment.backend_problem()
        if problem:
            print(f"{prog}: error: {problem}", file=sys.stderr)
            return 2
        # The program, not the library, decides on float64: every command works in JAX's
        # 64-bit mode so that `--dtype float64` and the lecture's float64 data mean what they say.
        import jax

        jax.config.update("jax_enable_x64", True)
        with cache.used(args.no_cache,
                        lambda line: print(f"{prog}: {line}", file=sys.stderr)) as folder:
            args.cache_folder = folder  # None when off: a command's kept results (cache.kept)
            status = int(args._run(args) or 0)
        signals.check()  # a signal that Python dropped on its way
        sys.stdout.flush()  # a full or broken stdout fails here, not in the interpreter's exit
        return status
    except BrokenPipeError:  # the reader stopped early (`| head -1`): quiet, as `seq` is
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except (InputError, PrecisionError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (`signals.Interrupted`)
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"{prog}: {signals.describe(signum)}", file=sys.stderr)
        return signals.status(signum)
    except OSError as exc:  # a full disk, a read-only file system, a full stdout
        print(f"{prog}: error: {_os_error(exc)}", file=sys.stderr)
        if exc.filename is None:  # stdout's buffer still holds what failed: drop it
            _silence_stdout()
        return 1
