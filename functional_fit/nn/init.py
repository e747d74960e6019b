"""torch.nn.init's defaults as JAX initializers, ``init(key, shape, dtype) -> array``.

Usable as flax's ``kernel_init=`` / ``bias_init=`` and in equinox. `layout` says where the fans
are: "torch" is torch's (out, in, *kernel) weight layout, "flax" is flax's (in, out) Dense
kernel and (*kernel, in, out) Conv kernel layout. Same distributions as torch, not the same
numbers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from functional_fit import checks as _checks

LAYOUTS = ("torch", "flax")
_GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
          "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0,
          "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}


def calculate_gain(nonlinearity, param=None):
    """torch.nn.init.calculate_gain: the recommended gain for a nonlinearity."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _checks.finite_float("param", param)
        return math.sqrt(2.0 / (1 + slope**2))
    return _GAINS[_checks.choice("nonlinearity", nonlinearity, (*_GAINS, "leaky_relu"))]


def fan_in_and_fan_out(shape, layout="torch"):
    """torch's _calculate_fan_in_and_fan_out for a weight `shape` in `layout`; (fan_in, fan_out)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise _checks.InputError(f"shape: fans need at least 2 dimensions, got {shape}")
    if _checks.choice("layout", layout, LAYOUTS) == "torch":  # (out, in, *kernel)
        field = math.prod(shape[2:])
        return shape[1] * field, shape[0] * field
    field = math.prod(shape[:-2])  # (*kernel, in, out)
    return shape[-2] * field, shape[-1] * field


def kaiming_uniform(a=0.0, mode="fan_in", nonlinearity="leaky_relu", layout="torch"):
    """torch.nn.init.kaiming_uniform_ as an initializer; a=math.sqrt(5) is nn.Linear's weight.

    U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).
    """
    _checks.choice("mode", mode, ("fan_in", "fan_out"))

    def init(key, shape, dtype=jnp.float64):
        fan_in, fan_out = fan_in_and_fan_out(shape, layout)
        fan = fan_in if mode == "fan_in" else fan_out
        bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def uniform(low=0.0, high=1.0):
    """torch.nn.init.uniform_ as an initializer: U(low, high)."""
    return lambda key, shape, dtype=jnp.float64: jax.random.uniform(key, shape, dtype, low, high)


def bias_uniform(fan_in):
    """nn.Linear/nn.Conv's bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (0 bound for fan_in 0)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform(-bound, bound)


def normal(mean=0.0, std=1.0):
    """torch.nn.init.normal_ as an initializer (nn.Embedding's N(0, 1) by default)."""
    return lambda key, shape, dtype=jnp.float64: mean + std * jax.random.normal(key, shape, dtype)


def linear_params(key, in_features, out_features, bias=True, dtype=jnp.float64):
    """nn.Linear's reset_parameters: {"weight": (out, in), "bias": (out,) or None}."""
    kw, kb = jax.random.split(key)
    weight = kaiming_uniform(math.sqrt(5))(kw, (out_features, in_features), dtype)
    b = bias_uniform(in_features)(kb, (out_features,), dtype) if bias else None
    return {"weight": weight, "bias": b}


def conv2d_params(key, in_channels, out_channels, kernel_size, groups=1, bias=True,  # nn.Conv2d's
                  dtype=jnp.float64):
    """nn.Conv2d's reset_parameters: {"weight": (out, in/groups, kh, kw), "bias": (out,)}."""
    kh, kw_ = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    shape = (out_channels, in_channels // groups, kh, kw_)
    kw, kb = jax.random.split(key)
    weight = kaiming_uniform(math.sqrt(5))(kw, shape, dtype)
    fan_in, _ = fan_in_and_fan_out(shape)
    b = bias_uniform(fan_in)(kb, (out_channels,), dtype) if bias else None
    return {"weight": weight, "bias": b}
