"""torch.nn.functional.dropout in JAX, from a given key or a given mask.

Torch draws its mask from its global generator; JAX takes its randomness as an argument. Here
the mask comes either from a JAX `key` or as an array `mask` (booleans, or 0s and 1s), so the
mask torch drew can be given to JAX and both frameworks compute the same thing:

    y_torch = F.dropout(x, p)                 # after torch.manual_seed(...)
    y_jax = dropout(x, p, mask=y_torch != 0)  # equal to y_torch (x without zeros)

The kept values are scaled as torch scales them on the CPU: ``input * (mask / (1 - p))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from functional_fit import checks


def _keep_mask(shape, p: float, key, mask):
    """The (shape) keep-mask from exactly one of `key` and `mask`."""
    if (key is None) == (mask is None):
        raise checks.InputError("dropout needs exactly one of key and mask when training with "
                                f"0 < p < 1, got {'both' if key is not None else 'neither'}")
    if mask is None:
        return dropout_keep(key, p, shape)
    mask = jnp.asarray(mask)
    if mask.shape != shape:
        raise checks.InputError(f"mask must have the shape of input, {shape}, got {mask.shape}")
    return mask


def dropout_keep(key, p: float, shape):
    """The keep-mask `dropout` draws from `key`: ``jax.random.bernoulli(key, 1 - p, shape)``.

    A model following the toolkit's convention draws its i-th dropout of a forward from
    ``jax.random.fold_in(step_key, i)``, as a flax NNX ``Rngs`` stream numbers its draws;
    `parity.dropout` replays the same masks in torch's ``nn.Dropout`` modules.

    Args:
      key: a PRNG key.
      p: the probability of zeroing a value.
      shape: the mask's shape.

    Returns:
      (shape) booleans, True where a value is kept.
    """
    return jax.random.bernoulli(key, 1 - p, shape)


def dropout(input, p=0.5, training=True, inplace=False, *, key=None, mask=None):
    """torch.nn.functional.dropout: zero each value with probability p, scale the rest.

    ``training=False`` and ``p=0`` return `input`; ``p=1`` returns zeros (no key or mask
    needed); otherwise the kept values are multiplied by 1 / (1 - p). ``inplace`` has no
    effect: the result is returned, as torch returns it too.

    Args:
      input: (*) floats.
      p: the probability of zeroing a value, in [0, 1].
      training: whether to drop.
      key: a JAX PRNG key to draw the mask from, or None.
      mask: (*) booleans or 0/1 values, true or 1 where a value is kept, or None.

    Returns:
      (*), the shape of `input`.
    """
    x = jnp.asarray(input)
    p = checks.finite_float("p", p)
    if not 0 <= p <= 1:
        raise checks.InputError(f"p must be in [0, 1], got {p}")
    checks.flag("inplace", inplace)
    if not checks.flag("training", training) or p == 0:
        return x
    if p == 1:
        return x * jnp.zeros((), x.dtype)
    keep = _keep_mask(x.shape, p, key, mask)
    return x * (keep.astype(x.dtype) / jnp.asarray(1 - p, x.dtype))  # (*)


__all__ = ["dropout", "dropout_keep"]
