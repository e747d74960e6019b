"""Old name of `comparison.background`: the same module."""

import sys

import comparison.background

sys.modules[__name__] = comparison.background
