"""Old name of `comparison.handout`: the same module."""

import sys

import comparison.handout

sys.modules[__name__] = comparison.handout
