"""A parity check you keep in a project's tests: `assert_same_training` (``parity.testing``).

`assert_same_training` runs `compare.compare` and raises an ``AssertionError`` whose message is
the report (`report`): the verdict, the first divergence, the first layer and the confirmed
findings when the comparison has them, and the per-parameter table. A test reads as one line:

    def test_my_port(module, data):
        parity.testing.assert_same_training(my_jax_model, module, *data, jax_loss=...,
                                            torch_loss=..., optimizer=("Adam", {"lr": 1e-3}))

`on_failure(callback)` hands every failing comparison made inside it to ``callback(comparison,
message)`` before the assertion is raised; the pytest plugin (`comparison.pytest_plugin`,
``pytest --parity-report DIR``) writes each one's table and plot through it. Outside an
`on_failure` block nothing is handed anywhere.
"""

from __future__ import annotations

import contextlib
import contextvars

from comparison.compare import Comparison, compare

#: The callbacks of the enclosing `on_failure` blocks, innermost last. A context variable, so
#: that threads and asyncio tasks each see only their own blocks.
_CALLBACKS: contextvars.ContextVar[tuple] = contextvars.ContextVar("parity_on_failure",
                                                                  default=())


@contextlib.contextmanager
def on_failure(callback):
    """Within the block, call ``callback(comparison, message)`` for every failing
    `assert_same_training`, before its ``AssertionError`` is raised.

    Args:
      callback: a function of the failing `Comparison` and the assertion's message (`report`).
    """
    token = _CALLBACKS.set((*_CALLBACKS.get(), callback))
    try:
        yield
    finally:
        _CALLBACKS.reset(token)


def _reason(c: Comparison) -> str:
    """The one line `Comparison.assert_ok` raises with: where the two part first."""
    try:
        c.assert_ok()
    except AssertionError as exc:
        return str(exc)
    return "they agree"


def _finding(f) -> str:
    """One line for a confirmed finding: its id, its explanation, and the difference before and
    after its switch."""
    return (f"  {f.id}: {f.explanation} (difference {f.before:.2e} before the switch, "
            f"{f.after:.2e} after)")


def report(c: Comparison) -> str:
    """The failure report of a comparison: the verdict and where the two part, then the table.

    Then the first layer whose output parts (`Comparison.first_layer`) and the framework
    differences confirmed by a re-run with the one convention switched
    (`Comparison.findings`), when there are any.
    """
    lines = [f"JAX and torch train apart, first in the {c.culprit}: {_reason(c)}",
             f"first divergence: {c.first_divergence or 'none along the path'}"]
    if c.first_layer is not None:
        lines.append(f"first layer: {c.first_layer}")
    if c.findings:
        lines += ["findings (each confirmed by a re-run with that one convention switched):",
                  *map(_finding, c.findings)]
    return "\n".join([*lines, "", c.table()])


def assert_same_training(*args, **kwargs) -> Comparison:
    """`compare.compare` (``parity.compare``), asserted: the `Comparison` when the two agree,
    else an ``AssertionError`` whose message is the `report`.

    Args:
      *args, **kwargs: `compare.compare`'s, passed on as they are.

    Returns:
      the `Comparison`, whose ``ok`` is True.

    Raises:
      AssertionError: the two part beyond rounding (`report`); the enclosing `on_failure`
        callbacks are called with the comparison first.
      InputError: `compare` refuses the input, before anything runs.
    """
    c = compare(*args, **kwargs)
    if c.ok:
        return c
    message = report(c)
    for callback in _CALLBACKS.get():
        callback(c, message)
    raise AssertionError(message)


__all__ = ["assert_same_training", "on_failure", "report"]
