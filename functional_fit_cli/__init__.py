"""The ``functional-fit`` command line, and the plumbing an application needs around the library.

The top layer: it sits on `functional_fit` (the JAX core), `parity` (the torch mirror) and
`comparison` (the two side by side), and nothing below imports it.

- `command`: `main`, the console script: parsing, running a sub-command, failing in one line;
- one module per sub-command (``lecture``, ``surface``, ``sweep``, ``parity``), each with
  ``add_parser(subparsers)`` and ``run(args) -> int``, parsing and printing only;
- `options`: the options the sub-commands share, and the checks of output paths;
- `files`: outputs written all or nothing; `signals`: Ctrl-C; `resources`: memory estimates
  and ``FUNCTIONAL_FIT_MEMORY_LIMIT``; `environment`: JAX's environment variables.

Importing this package imports nothing but the standard library, so that a Ctrl-C while the
command starts is handled by `main` before the heavy imports begin.
"""

from functional_fit_cli.command import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
