"""torch.nn.functional's activations in JAX, elementwise on any shape unless a `dim` is named.

`relu`'s derivative at 0 is 0, as torch's; `gelu` is the exact erf form unless
``approximate="tanh"``; `softmax` and `log_softmax` refuse ``dim=None``, the implicit choice
torch warns about.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from functional_fit.checks import InputError


def relu(input):
    """max(input, 0), derivative 0 at 0 as in torch; any shape."""
    return jax.nn.relu(jnp.asarray(input))


def gelu(input, approximate="none"):
    """x * Phi(x) (``approximate="none"``) or its tanh approximation (``"tanh"``); any shape."""
    if approximate not in ("none", "tanh"):
        raise InputError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return jax.nn.gelu(jnp.asarray(input), approximate=approximate == "tanh")


def silu(input):
    """x * sigmoid(x); any shape."""
    return jax.nn.silu(jnp.asarray(input))


def tanh(input):
    """tanh(x); any shape."""
    return jnp.tanh(jnp.asarray(input))


def sigmoid(input):
    """1 / (1 + exp(-x)); any shape."""
    return jax.nn.sigmoid(jnp.asarray(input))


def _dim(input, dim, dtype):
    """(input cast to dtype, dim checked against its axes)."""
    x = jnp.asarray(input if dtype is None else jnp.asarray(input).astype(dtype))
    if dim is None:
        raise InputError("dim must be given (torch's implicit dim is deprecated)")
    axes = max(x.ndim, 1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -axes <= dim < axes:
        raise InputError(f"dim must be an axis of an input of shape {x.shape}, got {dim!r}")
    return x, dim


def softmax(input, dim=None, *, dtype=None):
    """exp(x) / sum(exp(x)) along `dim`, same shape; dtype casts the input first, as torch."""
    x, dim = _dim(input, dim, dtype)
    return jax.nn.softmax(x, axis=dim)


def log_softmax(input, dim=None, *, dtype=None):
    """x - logsumexp(x) along `dim`, same shape; dtype casts the input first, as torch."""
    x, dim = _dim(input, dim, dtype)
    return jax.nn.log_softmax(x, axis=dim)
