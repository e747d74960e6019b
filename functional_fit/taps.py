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
    shifts: list | None  # per tap call, an array added to its value or None; None: none added


_RECORDING = contextvars.ContextVar("functional_fit.taps", default=None)


def tap(name: str, value):
    """`value`, recorded under `name` inside a `recording` block (a no-op outside one); with
    the recording's shifts, ``value + shift`` (the shift of this call), recorded and returned."""
    tape = _RECORDING.get()
    if tape is None:
        return value
    shift = None if tape.shifts is None else tape.shifts[len(tape.taps)]
    if shift is not None:
        value = value + shift
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
      shifts: None, or one entry per tap call of the block, in call order: an array of its
        tap's shape and dtype, and the i-th tap returns (and records) ``value + shifts[i]``,
        or None, and it returns its value.
    """
    taps: list = []
    token = _RECORDING.set(_Tape(taps, None if shifts is None else list(shifts)))
    try:
        yield taps
    finally:
        _RECORDING.reset(token)


def live(value) -> bool:
    """Whether a recorded value can be used after the forward: not a tracer of a
    transformation that has ended (a tap inside the model's own ``jax.vmap`` or
    ``lax.scan``, whose value cannot leave it)."""
    try:
        jnp.shape(jax.lax.stop_gradient(value) + jnp.zeros((), jnp.result_type(value)))
    except jax.errors.UnexpectedTracerError:
        return False
    return True


def _shifts(values: list, alive: list) -> list:
    """A zero shift for each live floating value, None for the others."""
    return [jnp.zeros(jnp.shape(v), v.dtype)
            if ok and jnp.issubdtype(jnp.result_type(v), jnp.inexact) else None
            for v, ok in zip(values, alive)]


def gradients(fn) -> tuple[list, list]:
    """(the live taps of ``fn()`` as `recording` gives them, the gradient of ``fn()`` with
    respect to each tapped value: None for an integer one), for a scalar ``fn()`` whose taps
    are the same on every call (same order, shapes and dtypes). Run it eagerly
    (``jax.disable_jit()``) to get values; taps that are not `live` are left out."""
    with recording() as first:
        fn()
    alive = [live(value) for _, value in first]
    shifts = _shifts([value for _, value in first], alive)

    def shifted(shifts):
        with recording(shifts):
            return fn()

    grads = jax.grad(shifted)(shifts) if any(z is not None for z in shifts) else shifts
    return ([tapped for tapped, ok in zip(first, alive) if ok],
            [g for g, ok in zip(grads, alive) if ok])


def compiled_gradients(fn) -> tuple[list, list]:
    """`gradients`, computed in one compiled program: the taps' values and the gradient of
    ``fn()`` with respect to each, traced once for their shapes and then run under
    ``jax.jit`` (where an eager run would compile each operation on its own). The taps must
    be the same on every trace; taps that are not `live` are left out."""
    names, alive = [], []

    def traced(shifts):
        with recording(shifts) as tape:
            out = fn()
        names[:] = [name for name, _ in tape]
        alive[:] = [live(value) for _, value in tape]
        return out, [value if ok else None for (_, value), ok in zip(tape, alive)]

    shapes = jax.eval_shape(lambda: traced(None))[1]
    shifts = [None if s is None or not jnp.issubdtype(s.dtype, jnp.inexact)
              else jnp.zeros(s.shape, s.dtype) for s in shapes]

    @jax.jit
    def program(shifts):
        (_, values), grads = jax.value_and_grad(traced, has_aux=True)(shifts)
        return values, grads

    values, grads = program(shifts)
    return ([(n, v) for n, v, ok in zip(names, values, alive) if ok],
            [g for g, ok in zip(grads, alive) if ok])


def vmap(fn, in_axes=0, out_axes=0, **kwargs):
    """``jax.vmap(fn, in_axes, out_axes, **kwargs)`` whose taps inside a `recording` are
    recorded outside the map, each (B, ...) along the mapped axis first (shifts included):
    inside, a tap sees one example. Taps that are not `live` at the end of an example (inside
    a map of `fn`'s own) are left out. Outside a recording it is `jax.vmap`."""
    mapped = jax.vmap(fn, in_axes=in_axes, out_axes=out_axes, **kwargs)

    def inside(seen, shifts, *args):  # one example: (fn's output, its live taps' values)
        with recording(shifts) as taps:
            out = fn(*args)
        seen[:] = [(name, live(value)) for name, value in taps]  # read once traced
        return out, [value for (_, value), (_, ok) in zip(taps, seen) if ok]

    def run(*args):
        tape = _RECORDING.get()
        if tape is None:
            return mapped(*args)
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)

        def once(seen, shifts):
            return jax.vmap(lambda s, *a: inside(seen, s, *a), in_axes=(0, *axes),
                            out_axes=(out_axes, 0), **kwargs)(shifts, *args)

        seen = []  # the taps' names and liveness, from a trace of shapes; a new function,
        jax.eval_shape(lambda: once(seen, None))  # so that none is cached
        start, shifts = len(tape.taps), None
        if tape.shifts is not None:
            given = iter(tape.shifts[start:start + sum(ok for _, ok in seen)])
            shifts = [next(given) if ok else None for _, ok in seen]
        out, values = once([], shifts)
        tape.taps.extend(zip((name for name, ok in seen if ok), values))
        return out

    return run


__all__ = ["active", "compiled_gradients", "gradients", "live", "recording", "tap", "vmap"]
