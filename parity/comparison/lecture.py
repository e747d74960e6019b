"""Old name of `comparison.lecture`: the same module."""

import sys

import comparison.lecture

sys.modules[__name__] = comparison.lecture
