"""The ``functional-fit`` command line: a thin layer of parsing and printing over the library.

Each sub-command lives in its own module of this package (``lecture.py``, ``surface.py``,
``sweep.py``, ``parity.py``) and provides ``add_parser(subparsers)`` and ``run(args) -> int``.
Errors in the input end the program with one line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from functional_fit.cli import _common

COMMANDS = ("lecture", "surface", "sweep", "parity")


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


def main(argv=None) -> int:
    """Entry point of the ``functional-fit`` console script."""
    from functional_fit.checks import InputError
    from functional_fit.precision import PrecisionError

    parser = build_parser()
    args = parser.parse_args(argv)
    # The program, not the library, decides on float64: every command works in JAX's 64-bit
    # mode so that `--dtype float64` and the lecture's float64 data mean what they say.
    import jax

    jax.config.update("jax_enable_x64", True)
    _common.use_compilation_cache(args)  # --no-cache turns it off
    try:
        return int(args._run(args) or 0)
    except (InputError, PrecisionError) as exc:
        print(f"functional-fit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"functional-fit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
