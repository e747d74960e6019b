"""``parity.testing``: the parity check you keep in a project's tests.

`assert_same_training` takes ``parity.compare``'s arguments, returns the comparison when the
two agree, and raises an ``AssertionError`` whose message is the report otherwise; it is
`comparison.testing.assert_same_training`, loaded when first asked for (a re-export: importing
this module loads nothing of `comparison`). ``pytest --parity-report DIR`` writes each failing
comparison's table and plot to DIR (`comparison.pytest_plugin`).
"""

#: The names re-exported from `comparison.testing`.
NAMES = ("assert_same_training", "on_failure", "report")


def __getattr__(name):
    """`comparison.testing`'s `NAMES`, loaded on first use."""
    if name in NAMES:
        import comparison.testing

        return getattr(comparison.testing, name)
    raise AttributeError(f"module 'parity.testing' has no attribute {name!r}")


__all__ = list(NAMES)
