"""Points of interest in a plain JAX function: ``tap(name, value)`` records a layer's output.

Outside a `recording` block `tap` returns its value and does nothing else, so a model can keep
its taps in production and under `jax.jit`. Inside one (as `parity.compare` runs a model's first
forward, eagerly), each tap appends ``(name, value)``, so that a comparison can say which
layer's output parts first from torch's. Name a tap as the torch submodule it ports
(``"layer1.bn1"``): `parity.compare` matches them with the outputs of torch's named
submodules, recorded through forward hooks.

    >>> import jax.numpy as jnp
    >>> def model(p, x):
    ...     h = tap("0", x @ p["0.weight"].T)
    ...     return tap("1", jnp.tanh(h))
    >>> with recording() as taps:
    ...     _ = model({"0.weight": jnp.ones((2, 1))}, jnp.ones((3, 1)))
    >>> [name for name, _ in taps]
    ['0', '1']
"""

from __future__ import annotations

import contextlib
import contextvars

_RECORDING = contextvars.ContextVar("functional_fit.taps", default=None)


def tap(name: str, value):
    """`value`, recorded under `name` inside a `recording` block (a no-op outside one)."""
    taps = _RECORDING.get()
    if taps is not None:
        taps.append((str(name), value))
    return value


@contextlib.contextmanager
def recording():
    """Within the block, every `tap` appends ``(name, value)`` to the list it yields, in call
    order. Run the model eagerly (``jax.disable_jit()``) to record values, not tracers."""
    taps: list = []
    token = _RECORDING.set(taps)
    try:
        yield taps
    finally:
        _RECORDING.reset(token)


__all__ = ["recording", "tap"]
