"""Old name of `comparison.compare`: the same module."""

import sys

import comparison.compare

sys.modules[__name__] = comparison.compare
