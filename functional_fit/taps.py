"""Points of interest in a plain JAX function: ``tap(name, value)`` records a layer's output.

Outside a `recording` block `tap` returns its value and does nothing else, so a model can keep
its taps in production and under `jax.jit`. Inside one (as `parity.compare` runs a model's first
forward, eagerly), each tap appends ``(name, value)``, so that a comparison can say which
layer's output parts first from torch's. Name a tap as the torch submodule it ports
(``"layer1.bn1"``): `parity.compare` matches them with the outputs of torch's named
submodules, recorded through forward hooks.

Gradients by layer: `gradients(fn)` gives the derivative of a scalar ``fn()`` with respect to
each tapped value. It runs `fn` twice: once to record the taps' shapes, once under `jax.grad`
with ``tap`` returning ``value + shift``, one zero shift per tap call (in call order); the
gradient with respect to a shift is the gradient with respect to its tapped value.

Taps inside `jax.vmap` would record the map's tracers; `vmap` is `jax.vmap` whose taps are
recorded outside the map, batched along their first axis.

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
from typing import NamedTuple

import jax
import jax.numpy as jnp


class _Tape(NamedTuple):
    taps: list  # (name, value) in call order
    shifts: list | None  # one array per tap call, added to its value; None: nothing added


_RECORDING = contextvars.ContextVar("functional_fit.taps", default=None)


def tap(name: str, value):
    """`value`, recorded under `name` inside a `recording` block (a no-op outside one); with
    the recording's shifts, ``value + shift`` (the shift of this call), recorded and returned."""
    tape = _RECORDING.get()
    if tape is None:
        return value
    if tape.shifts is not None:
        value = value + tape.shifts[len(tape.taps)]
    tape.taps.append((str(name), value))
    return value


def active() -> bool:
    """Whether a `recording` is on: a model that names its layers itself taps only then."""
    return _RECORDING.get() is not None


@contextlib.contextmanager
def recording(shifts=None):
    """Within the block, every `tap` appends ``(name, value)`` to the list it yields, in call
    order. Run the model eagerly (``jax.disable_jit()``) to record values, not tracers.

    Args:
      shifts: None, or one array per tap call of the block, in call order, each of its tap's
        shape and dtype: the i-th tap returns (and records) ``value + shifts[i]``.
    """
    taps: list = []
    token = _RECORDING.set(_Tape(taps, None if shifts is None else list(shifts)))
    try:
        yield taps
    finally:
        _RECORDING.reset(token)


def gradients(fn) -> tuple[list, list]:
    """(the taps of ``fn()`` as `recording` gives them, the gradient of ``fn()`` with respect
    to each tapped value), for a scalar ``fn()`` whose taps are the same on every call (same
    order, shapes and dtypes). Run it eagerly (``jax.disable_jit()``) to get values."""
    with recording() as first:
        fn()

    def shifted(shifts):
        with recording(shifts):
            return fn()

    zeros = [jnp.zeros_like(value) for _, value in first]
    return first, (list(jax.grad(shifted)(zeros)) if zeros else [])


def vmap(fn, in_axes=0, out_axes=0, **kwargs):
    """``jax.vmap(fn, in_axes, out_axes, **kwargs)`` whose taps inside a `recording` are
    recorded outside the map, each (B, ...) along the mapped axis first (shifts included):
    inside, a tap sees one example. Outside a recording it is `jax.vmap`."""
    mapped = jax.vmap(fn, in_axes=in_axes, out_axes=out_axes, **kwargs)

    def inside(shifts, *args):  # one example: (fn's output, its taps' values)
        with recording(shifts) as taps:
            out = fn(*args)
        return out, [value for _, value in taps]

    def run(*args):
        tape = _RECORDING.get()
        if tape is None:
            return mapped(*args)
        with recording() as inner:  # the names, without running: shapes only; a new
            jax.eval_shape(lambda *a: mapped(*a), *args)  # function, so none is cached
        start = len(tape.taps)
        shifts = None if tape.shifts is None else tape.shifts[start:start + len(inner)]
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        out, values = jax.vmap(inside, in_axes=(None if shifts is None else 0, *axes),
                               out_axes=(out_axes, 0), **kwargs)(shifts, *args)
        tape.taps.extend((name, value) for (name, _), value in zip(inner, values))
        return out

    return run


__all__ = ["active", "gradients", "recording", "tap", "vmap"]
