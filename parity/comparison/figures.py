"""Old name of `comparison.figures`: the same module."""

import sys

import comparison.figures

sys.modules[__name__] = comparison.figures
