"""functional_fit.nn.loss against torch.nn.functional itself, float64: values and gradients.

One table of named cases; each computes the loss and its gradient with respect to `input` on
both sides and requires agreement to 1e-12 relative (value) and elementwise (gradient, relative
to the gradient's largest entry).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from functional_fit import nn as fnn
from functional_fit.checks import InputError

RTOL = 1e-12
rng = np.random.default_rng(21)
X = rng.normal(size=(6, 4))           # (N, C) logits / regression inputs
Y = rng.normal(size=(6, 4))           # (N, C) regression targets
Y[0, :2] = X[0, :2]                   # residuals exactly 0 (the |r| subgradient)
T = np.array([0, 3, 1, 2, 3, 1])      # (N,) class indices
TI = np.array([0, -100, 1, 2, 3, 2])  # (N,) with one ignored (torch's default ignore_index)
T7 = np.array([0, 7, 1, 7, 3, 2])     # (N,) ignore_index=7
X3 = rng.normal(size=(3, 4, 5))       # (N, C, d)
T3 = rng.integers(0, 4, size=(3, 5))  # (N, d)
T3[0, 1] = -100
P = rng.dirichlet(np.ones(4), size=6)             # (N, C) probability targets
P3 = np.moveaxis(rng.dirichlet(np.ones(4), size=(3, 5)), -1, 1)  # (N, C, d)
W = np.array([0.5, 2.0, 1.0, 3.0])    # (C,) class weights
B = (rng.random((6, 4)) < 0.5).astype(np.float64)  # (N, C) binary targets
PW = np.array([1.0, 3.0, 0.5, 2.0])   # (C,) pos_weight
BW = rng.random((6, 4))               # (N, C) elementwise weight

CASES = {
    # name: (function name, input, target, keyword arguments)
    "mse_mean": ("mse_loss", X, Y, {}),
    "mse_sum": ("mse_loss", X, Y, {"reduction": "sum"}),
    "mse_none": ("mse_loss", X, Y, {"reduction": "none"}),
    "l1_mean_zero_residuals": ("l1_loss", X, Y, {}),
    "l1_none": ("l1_loss", X, Y, {"reduction": "none"}),
    "smooth_l1_default": ("smooth_l1_loss", X, Y, {}),
    "smooth_l1_beta_0.3": ("smooth_l1_loss", X, Y, {"beta": 0.3}),
    "smooth_l1_beta_0": ("smooth_l1_loss", X, Y, {"beta": 0.0}),
    "huber_default_sum": ("huber_loss", X, Y, {"reduction": "sum"}),
    "huber_delta_0.4": ("huber_loss", X, Y, {"delta": 0.4}),
    "nll_mean": ("nll_loss", X, T, {}),
    "nll_weight_ignore": ("nll_loss", X, TI, {"weight": W}),
    "nll_ignore_index_7_none": ("nll_loss", X, T7, {"ignore_index": 7, "reduction": "none"}),
    "nll_ncd_weight_sum": ("nll_loss", X3, T3, {"weight": W, "reduction": "sum"}),
    "ce_mean": ("cross_entropy", X, T, {}),
    "ce_weight_ignore": ("cross_entropy", X, TI, {"weight": W}),
    "ce_smoothing": ("cross_entropy", X, T, {"label_smoothing": 0.2}),
    "ce_smoothing_weight_ignore": ("cross_entropy", X, TI, {"weight": W, "label_smoothing": 0.3}),
    "ce_smoothing_weight_sum": ("cross_entropy", X, TI, {"weight": W, "label_smoothing": 0.3,
                                                         "reduction": "sum"}),
    "ce_smoothing_weight_none": ("cross_entropy", X, TI, {"weight": W, "label_smoothing": 0.3,
                                                          "reduction": "none"}),
    "ce_ncd_weight_smoothing": ("cross_entropy", X3, T3, {"weight": W, "label_smoothing": 0.1}),
    "ce_probs": ("cross_entropy", X, P, {}),
    "ce_probs_weight_smoothing": ("cross_entropy", X, P, {"weight": W, "label_smoothing": 0.25}),
    "ce_probs_ncd_sum": ("cross_entropy", X3, P3, {"weight": W, "reduction": "sum"}),
    "ce_probs_none": ("cross_entropy", X, P, {"reduction": "none"}),
    "bce_logits_mean": ("binary_cross_entropy_with_logits", X * 40, B, {}),
    "bce_logits_pos_weight": ("binary_cross_entropy_with_logits", X * 40, B, {"pos_weight": PW}),
    "bce_logits_weight_pw_sum": ("binary_cross_entropy_with_logits", X, B,
                                 {"weight": BW, "pos_weight": PW, "reduction": "sum"}),
    "bce_logits_soft_none": ("binary_cross_entropy_with_logits", X, P, {"reduction": "none"}),
}


def _torch(name, x, t, kw):
    """torch's value and d value / d input (of the sum, for reduction none)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t)
    kwt = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    out = getattr(F, name)(xt, tt, **kwt)
    out.sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


def _jax(name, x, t, kw):
    """functional_fit.nn's value and d value / d input (of the sum, for reduction none)."""
    f = getattr(fnn, name)
    out = f(jnp.asarray(x), jnp.asarray(t), **kw)
    grad = jax.grad(lambda z: jnp.sum(f(z, jnp.asarray(t), **kw)))(jnp.asarray(x))
    return np.asarray(out), np.asarray(grad)


@pytest.mark.parametrize("case", CASES)
def test_against_torch(case):
    name, x, t, kw = CASES[case]
    v_t, g_t = _torch(name, x, t, kw)
    v_j, g_j = _jax(name, x, t, kw)
    assert v_j.shape == v_t.shape
    np.testing.assert_allclose(v_j, v_t, rtol=RTOL, atol=RTOL * np.max(np.abs(v_t)))
    np.testing.assert_allclose(g_j, g_t, rtol=RTOL, atol=RTOL * np.max(np.abs(g_t)))


BAD = {
    "mse_shapes": (lambda: fnn.mse_loss(X, Y[:, :2]), "y_hat and y"),
    "reduction": (lambda: fnn.l1_loss(X, Y, reduction="avg"), "reduction"),
    "nll_float_target": (lambda: fnn.nll_loss(X, X[:, 0]), "target"),
    "smoothing_negative": (lambda: fnn.cross_entropy(X, T, label_smoothing=-0.1), "label_smoothing"),
    "huber_delta_0": (lambda: fnn.huber_loss(X, Y, delta=0.0), "delta"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input(case):
    call, word = BAD[case]
    with pytest.raises(InputError, match=word) as err:
        call()
    assert "\n" not in str(err.value)
