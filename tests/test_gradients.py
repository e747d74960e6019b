"""Gradients, JAX (`jax.grad`) vs torch (`.backward()`), for every model and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import parity
from functional_fit import losses, registry
from functional_fit.tolerances import GRAD_FLOAT32, GRAD_FLOAT64, rel_err

MODELS = [("linear", 1)] + [("poly", d) for d in (0, 1, 2, 3, 5, 8, 12)]
CASES = [
    (model, degree, loss, dtype, tol)
    for model, degree in MODELS
    for loss in ("l1", "mse")
    for dtype, tol in (("float64", GRAD_FLOAT64), ("float32", GRAD_FLOAT32))
]


def jax_value_and_grad(model, loss, w, x, y):
    f = lambda w: registry.loss(loss)(registry.model(model).fn(w, x), y)  # noqa: E731
    value, g = jax.value_and_grad(f)(jnp.asarray(w))
    return float(value), np.asarray(g)


def torch_value_and_grad(model, loss, w, x, y):
    w = torch.tensor(np.asarray(w), requires_grad=True)
    fn = parity.models.linear if model == "linear" else parity.models.polynomial
    value = parity.registry.loss(loss)(fn(w, torch.from_numpy(np.asarray(x))), torch.from_numpy(np.asarray(y)))
    value.backward()
    return value.item(), w.grad.numpy()


@pytest.mark.parametrize("model,degree,loss,dtype,tol", CASES)
def test_gradient_parity(lecture_xy, model, degree, loss, dtype, tol):
    x, y = (a.astype(dtype) for a in lecture_xy)
    rng = np.random.default_rng(degree)
    for w in (np.zeros(registry.model(model).n_params(degree)), rng.normal(size=registry.model(model).n_params(degree))):
        w = w.astype(dtype)
        jv, jg = jax_value_and_grad(model, loss, w, x, y)
        tv, tg = torch_value_and_grad(model, loss, w, x, y)
        assert jg.dtype == tg.dtype == np.dtype(dtype)
        assert rel_err(jv, tv) < tol
        assert rel_err(jg, tg) < tol


def test_l1_gradient_with_exactly_zero_residuals():
    """Where a residual is exactly 0, torch's abs backward gives 0; so must ours."""
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    w = np.array([1.0, 2.0])
    y = 1.0 + 2.0 * x  # every residual exactly 0
    y[[1, 3]] += [0.5, -0.25]  # two non-zero residuals
    jv, jg = jax_value_and_grad("linear", "l1", w, x, y)
    tv, tg = torch_value_and_grad("linear", "l1", w, x, y)
    assert rel_err(jv, tv) < GRAD_FLOAT64
    np.testing.assert_allclose(jg, tg, rtol=GRAD_FLOAT64, atol=0)
    # By hand: d/dw mean|w0 + w1 x - y| = mean(sign(r) * [1, x]) with sign(0) = 0.
    r = 1.0 + 2.0 * x - y
    np.testing.assert_allclose(tg, [np.mean(np.sign(r)), np.mean(np.sign(r) * x)], rtol=1e-15)
    # The trap this avoids: plain jnp.abs has derivative 1 at 0.
    naive = jax.grad(lambda w: jnp.mean(jnp.abs(w[0] + w[1] * x - y)))(jnp.asarray(w))
    assert not np.array_equal(np.asarray(naive), tg)


def test_abs0_zero_subgradient_under_vmap_and_jit():
    g = jax.jit(jax.vmap(jax.grad(losses.abs0)))(jnp.array([-2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(np.asarray(g), [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("model", ["linear", "poly"])
def test_models_under_jit_vmap_grad(model, lecture_xy):
    x, _ = lecture_xy
    fn = registry.model(model).fn
    ws = jnp.asarray(np.random.default_rng(0).normal(size=(4, registry.model(model).n_params(3))))
    batched = jax.jit(jax.vmap(fn, in_axes=(0, None)))(ws, jnp.asarray(x))
    assert batched.shape == (4, 100)
    for k in range(4):
        np.testing.assert_allclose(batched[k], np.polyval(np.asarray(ws[k])[::-1], x), rtol=1e-12, atol=1e-12)
    # d/dw sum(model(w, x)) is the column sums of the Vandermonde matrix, by hand.
    g = jax.grad(lambda w: jnp.sum(fn(w, jnp.asarray(x))))(ws[0])
    np.testing.assert_allclose(g, [np.sum(x**i) for i in range(ws.shape[1])], rtol=1e-12)
