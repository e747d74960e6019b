"""Old name of `functional_fit_cli`, the command line: its entry point, `main`."""

import sys

from functional_fit_cli import COMMANDS, build_parser, main
from functional_fit_cli.command import ASCII

__all__ = ["ASCII", "COMMANDS", "build_parser", "main"]

if __name__ == "__main__":  # python -m functional_fit.cli
    sys.exit(main())
