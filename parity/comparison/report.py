"""Old name of `comparison.report`: the same module."""

import sys

import comparison.report

sys.modules[__name__] = comparison.report
