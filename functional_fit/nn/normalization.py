"""torch.nn.functional's normalizations in JAX: `batch_norm`, `layer_norm`, `group_norm`.

Torch's names, arguments, defaults and layouts: inputs are (N, C, *) with the channels on axis
1, and weights and biases are (C,) (`layer_norm`: of `normalized_shape`). Every variance used
to normalize is the biased one, mean((x - mean)^2), as torch's.

`batch_norm` in training mode is where torch mutates: it updates `running_mean` and
`running_var` in place. JAX cannot, so `batch_norm` always returns a tuple
``(output, new_running_mean, new_running_var)``, in training and in eval mode alike (in eval
mode, and where a running statistic is None, the statistic comes back as it went in), so that a
training step threads the same structure whichever mode it runs in. The new statistics carry no
gradient, as torch's buffers carry none.
"""

from __future__ import annotations

from numbers import Integral, Real

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks


def _channel_param(name: str, value, channels: int):
    """`value` (None, or a (channels,) array) as a JAX array; InputError naming `name`."""
    if value is None:
        return None
    value = jnp.asarray(value)
    if value.shape != (channels,):
        raise checks.InputError(f"{name} must have shape ({channels},), got {value.shape}")
    return value


def _momentum(momentum):
    """torch's momentum: a finite real, or a scalar JAX array (1 / num_batches_tracked)."""
    if momentum is None:
        raise checks.InputError(
            "momentum=None (a cumulative average) needs num_batches_tracked: pass "
            "momentum=1 / num_batches_tracked, counted after this batch, as nn.BatchNorm does")
    if isinstance(momentum, Real | np.floating):
        return checks.finite_float("momentum", momentum)
    if jnp.shape(momentum) != ():
        raise checks.InputError(f"momentum must be a scalar, got shape {jnp.shape(momentum)}")
    return momentum


def _batch_stats(x, momentum, running_mean, running_var):
    """Biased mean and variance over every axis but 1, and torch's new running statistics.

    Returns:
      mean (C,), biased variance (C,), new running mean (C,) or None, new running var (C,) or None.
    """
    axes = (0, *range(2, x.ndim))
    n = x.size // x.shape[1]  # values per channel
    mean = jnp.mean(x, axis=axes)  # (C,)
    var = jnp.mean(jnp.square(x - jnp.expand_dims(mean, axes)), axis=axes)  # (C,) biased
    unbiased = jax.lax.stop_gradient(var * (n / (n - 1)))  # (C,) torch updates with it
    batch_mean = jax.lax.stop_gradient(mean)
    new_mean = None if running_mean is None else \
        (1 - momentum) * running_mean + momentum * batch_mean
    new_var = None if running_var is None else (1 - momentum) * running_var + momentum * unbiased
    return mean, var, new_mean, new_var


def _affine(normalized, weight, bias, axes):
    """normalized * weight + bias, weight and bias expanded over `axes` (None: left out)."""
    if weight is not None:
        normalized = normalized * jnp.expand_dims(weight, axes)
    if bias is not None:
        normalized = normalized + jnp.expand_dims(bias, axes)
    return normalized


def batch_norm(input, running_mean, running_var, weight=None, bias=None,  # torch's F.batch_norm
               training=False, momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm, returning the running statistics it would update.

    Training mode normalizes with the batch's mean and BIASED variance and updates
    ``running = (1 - momentum) * running + momentum * batch`` with the batch's mean and
    UNBIASED variance (n / (n - 1) times the biased one, n = N * prod(spatial)), torch's
    convention (flax's momentum is one minus torch's, and flax updates with the biased
    variance). Eval mode normalizes with the running statistics and returns them unchanged.
    ``momentum=None`` (torch's cumulative average) is refused: nn.BatchNorm itself passes
    ``momentum = 1 / num_batches_tracked`` to F.batch_norm, and so can the caller (a Python
    float or a scalar JAX array).

    Args:
      input: (N, C) or (N, C, *) floats.
      running_mean, running_var: (C,) or None (None: training mode only, as in torch).
      weight, bias: (C,) or None.
      training: whether to normalize with the batch's statistics and update the running ones.
      momentum: the weight of the batch in the update.
      eps: added to the variance before its square root.

    Returns:
      (output (N, C, *), new_running_mean (C,) or None, new_running_var (C,) or None), always.
    """
    x = jnp.asarray(input)
    if x.ndim < 2:
        raise checks.InputError(f"input must be (N, C) or (N, C, *), got shape {x.shape}")
    c = x.shape[1]
    running_mean = _channel_param("running_mean", running_mean, c)
    running_var = _channel_param("running_var", running_var, c)
    weight, bias = _channel_param("weight", weight, c), _channel_param("bias", bias, c)
    training, eps = checks.flag("training", training), checks.nonnegative_float("eps", eps)
    axes = (0, *range(2, x.ndim))
    if not training:
        if running_mean is None or running_var is None:
            raise checks.InputError("running_mean and running_var are needed when training=False")
        mean, var = running_mean, running_var
        new_mean, new_var = running_mean, running_var
    else:
        if x.size // c <= 1:
            raise checks.InputError(f"input: expected more than 1 value per channel when "
                                    f"training, got input of shape {x.shape}")
        mean, var, new_mean, new_var = _batch_stats(x, _momentum(momentum), running_mean,
                                                    running_var)
    invstd = 1 / jnp.sqrt(var + eps)  # (C,)
    normalized = (x - jnp.expand_dims(mean, axes)) * jnp.expand_dims(invstd, axes)  # (N, C, *)
    return _affine(normalized, weight, bias, axes), new_mean, new_var


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """torch.nn.functional.layer_norm: normalize over the trailing `normalized_shape` axes.

    Args:
      input: (*, *normalized_shape) floats.
      normalized_shape: an int or a tuple of ints, the trailing shape of `input`.
      weight, bias: of shape `normalized_shape`, or None.
      eps: added to the (biased) variance before its square root.

    Returns:
      (*, *normalized_shape), the shape of `input`.
    """
    x = jnp.asarray(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, Integral) else normalized_shape
    shape = tuple(checks.positive_int("normalized_shape", d) for d in shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape or x.ndim < len(shape):
        raise checks.InputError(f"normalized_shape {shape} must be the trailing shape of input, "
                                f"got input of shape {x.shape}")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and jnp.shape(value) != shape:
            raise checks.InputError(f"{name} must have shape {shape}, got {jnp.shape(value)}")
    eps = checks.nonnegative_float("eps", eps)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)  # (*, 1, ..., 1)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)  # (*, 1, ..., 1) biased
    out = (x - mean) / jnp.sqrt(var + eps)  # (*, *normalized_shape)
    lead = tuple(range(x.ndim - len(shape)))
    return _affine(out, None if weight is None else jnp.asarray(weight),
                   None if bias is None else jnp.asarray(bias), lead)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """torch.nn.functional.group_norm: normalize each sample over groups of channels.

    The C channels are split into `num_groups` consecutive groups of C / num_groups; each
    sample's group is normalized over its channels and spatial positions together.

    Args:
      input: (N, C, *) floats, C divisible by num_groups.
      num_groups: the number of groups.
      weight, bias: (C,) or None, per channel.
      eps: added to the (biased) variance before its square root.

    Returns:
      (N, C, *), the shape of `input`.
    """
    x = jnp.asarray(input)
    if x.ndim < 2:
        raise checks.InputError(f"input must be (N, C) or (N, C, *), got shape {x.shape}")
    n, c = x.shape[:2]
    groups = checks.positive_int("num_groups", num_groups)
    if c % groups:
        raise checks.InputError(f"num_groups ({groups}) must divide the {c} channels of input")
    weight, bias = _channel_param("weight", weight, c), _channel_param("bias", bias, c)
    eps = checks.nonnegative_float("eps", eps)
    g = x.reshape(n, groups, -1)  # (N, G, C / G * prod(spatial))
    mean = jnp.mean(g, axis=2, keepdims=True)  # (N, G, 1)
    var = jnp.mean(jnp.square(g - mean), axis=2, keepdims=True)  # (N, G, 1) biased
    out = ((g - mean) / jnp.sqrt(var + eps)).reshape(x.shape)  # (N, C, *)
    return _affine(out, weight, bias, (0, *range(2, x.ndim)))


__all__ = ["batch_norm", "layer_norm", "group_norm"]
