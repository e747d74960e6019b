"""Old name of `functional_fit_cli.resources`, the command line's plumbing: the same module."""

import sys

import functional_fit_cli.resources

sys.modules[__name__] = functional_fit_cli.resources
