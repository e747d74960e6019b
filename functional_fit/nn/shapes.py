"""Argument shapes shared by functional_fit.nn: torch's int-or-tuple arguments, unbatched inputs."""

from __future__ import annotations

import jax.numpy as jnp

from functional_fit.checks import InputError


def int_tuple(name: str, value, nd: int) -> tuple[int, ...]:
    """An int or a sequence of `nd` ints as a tuple of `nd` ints, or InputError naming `name`."""
    values = (value,) * nd if isinstance(value, int) else tuple(value)
    if len(values) != nd or not all(isinstance(v, int) and v >= 0 for v in values):
        raise InputError(f"{name} must be a non-negative int or {nd} of them, got {value!r}")
    return values


def batched_input(name: str, x, nd: int):
    """(x with a batch axis, whether it had one); x has nd + 1 or nd + 2 axes."""
    x = jnp.asarray(x)
    if x.ndim not in (nd + 1, nd + 2):
        raise InputError(f"{name} must have {nd + 1} (unbatched) or {nd + 2} (batched) "
                         f"dimensions, got shape {x.shape}")
    return (x, True) if x.ndim == nd + 2 else (x[None], False)  # (N, C, *spatial)
