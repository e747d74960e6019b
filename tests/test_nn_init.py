"""functional_fit.nn.init against torch.nn.init / nn.Linear / nn.Conv2d, statistically.

Per case, n = 2e5 draws on each side with fixed seeds (jax key 21, torch seed 21):
- bounds (uniform cases): every draw within torch's closed-form [-b, b], and min/max within
  1e-3 b of them (missing by more has probability (1 - 5e-4)^n ~ e^-100);
- mean within 6 standard errors of the exact mean; variance within 6 standard errors of the
  exact variance (uniform: SE(var) = b^2 sqrt(4 / 45 / n), about 1.2% relative at 6 SE; a wrong
  gain moves the variance by a factor of 2 at least: a=0 instead of sqrt(5) is 6x);
- a two-sample Kolmogorov-Smirnov test against torch's own draws: p > 1e-3, and the same test
  against torch's draws scaled by 1.05 rejects (p < 1e-6), so the test has the power to see a
  5% error in the scale.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch

from functional_fit.checks import InputError
from functional_fit.nn import init as fi

N = 200_000


def _torch_draw(fill, shape):
    torch.manual_seed(21)
    reps = -(-N // math.prod(shape))
    return np.concatenate([fill(torch.empty(shape, dtype=torch.float64)).detach().numpy().ravel()
                           for _ in range(reps)])[:N]


def _jax_draw(init, shape):
    reps = -(-N // math.prod(shape))
    keys = jax.random.split(jax.random.key(21), reps)
    return np.concatenate([np.asarray(init(k, shape, jnp.float64)).ravel() for k in keys])[:N]


def _linear_w(t):
    return torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))


CASES = {
    # name: (jax initializer, torch fill, shape, uniform bound or None, mean, variance)
    "linear_weight_7x13": (fi.kaiming_uniform(math.sqrt(5)), _linear_w, (7, 13),
                           1 / math.sqrt(13), 0.0, 1 / 13 / 3),
    "linear_weight_flax_13x7": (fi.kaiming_uniform(math.sqrt(5), layout="flax"), _linear_w,
                                (7, 13), 1 / math.sqrt(13), 0.0, 1 / 13 / 3),
    "conv_weight_8x3x5x5": (fi.kaiming_uniform(math.sqrt(5)), _linear_w, (8, 3, 5, 5),
                            1 / math.sqrt(75), 0.0, 1 / 75 / 3),
    "kaiming_relu_fan_out": (fi.kaiming_uniform(0.0, "fan_out", "relu"),
                             lambda t: torch.nn.init.kaiming_uniform_(t, 0.0, "fan_out", "relu"),
                             (6, 20), math.sqrt(6 / 6), 0.0, 2 / 6),
    "bias_fan_in_13": (fi.bias_uniform(13),
                       lambda t: torch.nn.init.uniform_(t, -1 / math.sqrt(13), 1 / math.sqrt(13)),
                       (7,), 1 / math.sqrt(13), 0.0, 1 / 13 / 3),
    "embedding_normal": (fi.normal(), torch.nn.init.normal_, (50, 8), None, 0.0, 1.0),
}


@pytest.mark.parametrize("case", CASES)
def test_distribution_against_torch(case):
    init, fill, shape, bound, mean, var = CASES[case]
    jshape = shape[::-1] if "flax" in case else shape  # flax's (in, out) kernel
    x = _jax_draw(init, jshape)
    t = _torch_draw(fill, shape)
    if bound is not None:
        assert x.min() >= -bound and x.max() <= bound
        assert x.min() < -bound * (1 - 1e-3) and x.max() > bound * (1 - 1e-3)
        var_se = bound**2 * math.sqrt(4 / 45 / N)
    else:
        var_se = var * math.sqrt(2 / N)  # normal: Var(s^2) = 2 sigma^4 / n
    assert abs(x.mean() - mean) < 6 * math.sqrt(var / N)
    assert abs(x.var() - var) < 6 * var_se
    assert scipy.stats.ks_2samp(x, t).pvalue > 1e-3
    assert scipy.stats.ks_2samp(x, 1.05 * t).pvalue < 1e-6


def test_fans_gains_and_params():
    assert fi.fan_in_and_fan_out((8, 3, 5, 5)) == (75, 200)
    assert fi.fan_in_and_fan_out((5, 5, 3, 8), layout="flax") == (75, 200)
    for name, param in [("tanh", None), ("relu", None), ("leaky_relu", 0.2), ("selu", None),
                        ("leaky_relu", None), ("conv2d", None)]:
        assert fi.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)
    p = fi.linear_params(jax.random.key(0), 13, 7)
    assert p["weight"].shape == (7, 13) and p["bias"].shape == (7,)
    c = fi.conv2d_params(jax.random.key(0), 4, 6, 3, groups=2)
    assert c["weight"].shape == (6, 2, 3, 3) and float(jnp.max(jnp.abs(c["bias"]))) <= 1 / math.sqrt(18)
    with pytest.raises(InputError, match="shape"):
        fi.fan_in_and_fan_out((3,))


def test_the_initializers_serve_flax_and_equinox_layers_as_torchs_defaults():
    """An nnx.Linear built with ``kernel_init=kaiming_uniform(sqrt(5), layout="flax")`` and
    ``bias_init=bias_uniform(fan_in)``, and an eqx.nn.Linear whose weight is replaced with
    ``kaiming_uniform(sqrt(5))`` (torch's layout, as equinox's), draw as torch's nn.Linear
    does: two-sample KS against torch's own layer, p > 1e-3."""
    import equinox as eqx
    from flax import nnx

    fan_in, fan_out = 512, 400  # 204,800 weights a layer
    torch.manual_seed(21)
    ref = torch.nn.Linear(fan_in, fan_out, dtype=torch.float64)
    ref_w, ref_b = ref.weight.detach().numpy().ravel(), ref.bias.detach().numpy()
    layer = nnx.Linear(fan_in, fan_out, rngs=nnx.Rngs(21), param_dtype=jnp.float64,
                       kernel_init=fi.kaiming_uniform(math.sqrt(5), layout="flax"),
                       bias_init=fi.bias_uniform(fan_in))
    eqx_layer = eqx.nn.Linear(fan_in, fan_out, key=jax.random.key(0), dtype=jnp.float64)
    eqx_layer = eqx.tree_at(lambda m: m.weight, eqx_layer, fi.kaiming_uniform(math.sqrt(5))(
        jax.random.key(22), eqx_layer.weight.shape))
    assert layer.kernel.shape == (fan_in, fan_out) and eqx_layer.weight.shape == (fan_out, fan_in)
    for ours, theirs in ((np.asarray(layer.kernel[...]).ravel(), ref_w),
                         (np.asarray(eqx_layer.weight).ravel(), ref_w),
                         (np.asarray(layer.bias[...]), ref_b)):
        assert np.abs(ours).max() <= 1 / math.sqrt(fan_in)
        assert scipy.stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert scipy.stats.ks_2samp(np.asarray(layer.kernel[...]).ravel(), 1.05 * ref_w).pvalue < 1e-6
