"""Old name of `functional_fit_cli`, the command line: its entry point, `main`."""

import sys

from functional_fit_cli import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]

if __name__ == "__main__":  # python -m functional_fit.cli
    sys.exit(main())
