"""Whole trajectories, JAX vs torch, float64: every step of every path.

One table of cases (optimizer, model, degree, loss, lr, length, n, batch size); both frameworks
start from zeros and consume the same batch order. The ragged cases (n = 137, batch 10) end
every epoch on a short batch of 7, as DataLoader(drop_last=False) does.
"""

from typing import NamedTuple

import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import fit, losses, models, registry
from functional_fit.tolerances import TRAJECTORY_FLOAT64, rel_err


class Case(NamedTuple):
    optimizer: str  # gd | sgd | adam
    model: str
    degree: int
    loss: str
    lr: float
    length: int  # steps (gd) or epochs (sgd, adam)
    n: int = 100
    batch_size: int = 10


CASES = {
    "gd_abs_linear": Case("gd", "linear", 1, "l1", 6.0, 50),
    "gd_abs_quad": Case("gd", "poly", 2, "l1", 10.0, 500),
    "gd_mse_cubic": Case("gd", "poly", 3, "mse", 0.5, 200),
    "sgd_abs_quad": Case("sgd", "poly", 2, "l1", 1.0, 20),
    "sgd_abs_quad_ragged": Case("sgd", "poly", 2, "l1", 1.0, 20, n=137),
    "sgd_mse_linear_ragged": Case("sgd", "linear", 1, "mse", 0.1, 10, n=137, batch_size=10),
    "sgd_abs_poly6_batch7": Case("sgd", "poly", 6, "l1", 0.5, 10, n=100, batch_size=7),
    "adam_abs_quad": Case("adam", "poly", 2, "l1", 0.1, 100),
    "adam_abs_linear_ragged": Case("adam", "linear", 1, "l1", 0.1, 30, n=137),
    "adam_mse_poly5_ragged": Case("adam", "poly", 5, "mse", 0.05, 30, n=137),
    "adam_abs_poly12": Case("adam", "poly", 12, "l1", 0.01, 500),
}


def run_jax(case, x, y, order):
    w0 = ff.zeros(registry.model(case.model).n_params(case.degree), "float64")
    return fit.run(case.optimizer, w0, x, y, model=registry.model(case.model).fn, loss=registry.loss(case.loss),
                   lr=case.lr, steps=case.length, order=order, batch_size=case.batch_size)


def run_torch(case, x, y, order):
    module = parity.registry.module(case.model, case.degree, dtype=torch.float64)
    return parity.fit.run(case.optimizer, module, parity.registry.loss(case.loss), *parity.tensors(x, y),
                          lr=case.lr, steps=case.length, order=order, batch_size=case.batch_size)


@pytest.mark.parametrize("order_seed", [0, 11])
@pytest.mark.parametrize("name", list(CASES))
def test_trajectory_parity_float64(name, order_seed):
    case = CASES[name]
    x, y = ff.lecture_data(n=case.n)
    order = None if case.optimizer == "gd" else ff.batch_order(case.n, case.length, seed=order_seed)
    ours = fit.as_numpy(run_jax(case, x, y, order))
    theirs = run_torch(case, x, y, order)
    steps = case.length if case.optimizer == "gd" else fit.n_steps(case.n, case.length, case.batch_size)
    assert ours.path.shape == theirs.shape == (steps + 1, registry.model(case.model).n_params(case.degree))
    assert ours.losses.shape == (steps,)
    # Every step of the path, against the path's scale (the reference measurement:
    # 8e-12 on the degree-12 Adam fit).
    assert rel_err(ours.path, theirs) < TRAJECTORY_FLOAT64
    np.testing.assert_array_equal(ours.path[-1], ours.params)


def test_adam_first_step_on_a_balanced_batch():
    """Why a single step, against its own scale, can differ by more than the path does.

    With order seed 0 the lecture's first batch of 10 has five positive and five negative
    residuals at w = 0, so dL/dw0 = mean(sign(r)) is 0 in exact arithmetic; each framework
    sums ±0.1 in its own order and may keep a rounding residue g. Adam's first step moves w0 by
    lr * g / (|g| + eps), so the two frameworks' w0 after one step differ by at most
    lr * (|g_jax| + |g_torch|) / eps, while the other parameters move by about lr: against that
    step's own scale (lr) the difference is up to 1e-9, against the path's scale it is 1e-12.
    """
    import jax
    import jax.numpy as jnp

    x, y = ff.lecture_data()
    order = ff.batch_order(100, 1, seed=0)
    first = order[0, :10]
    assert (y[first] > 0).sum() == 5  # balanced: w = 0 predicts 0 everywhere
    g_jax = jax.grad(lambda w: losses.l1(models.polynomial(w, jnp.asarray(x[first])), jnp.asarray(y[first])))(
        ff.zeros(13))
    module = parity.PolynomialModel(p=12, dtype=torch.float64)
    parity.losses.l1(module(torch.from_numpy(x[first])), torch.from_numpy(y[first])).backward()
    g_torch = module.w.grad[:, 0].numpy()
    assert abs(float(g_jax[0])) < 1e-15 and abs(g_torch[0]) < 1e-15  # zero up to rounding
    ours = fit.adam_sgd(ff.zeros(13), x, y, order, model=models.polynomial, lr=0.01, batch_size=10).path
    theirs = parity.fit.adam_sgd(parity.PolynomialModel(p=12, dtype=torch.float64), parity.losses.l1,
                                 parity.data.dataset(x, y), lr=0.01, nepochs=1, batch_size=10, order=order)
    bound = 0.01 * (abs(float(g_jax[0])) + abs(g_torch[0])) / 1e-8
    assert abs(float(ours[1, 0]) - theirs[1, 0]) <= bound * (1 + 1e-6)
    np.testing.assert_allclose(np.asarray(ours[1, 1:]), theirs[1, 1:], rtol=1e-12, atol=0)


def test_step_losses_are_the_batch_losses():
    """losses[k] is the loss of step k's batch at the parameters before step k."""
    x, y = ff.lecture_data(n=23)
    order = ff.batch_order(23, 2, seed=0)
    res = fit.as_numpy(fit.adam_sgd(ff.zeros(3), x, y, order, model=models.polynomial, lr=0.1, batch_size=5))
    flat = [row[i:i + 5] for row in order for i in range(0, 23, 5)]
    assert len(flat) == res.losses.shape[0] == 10
    for k, idx in enumerate(flat):
        r = np.polyval(res.path[k][::-1], x[idx]) - y[idx]
        np.testing.assert_allclose(res.losses[k], np.mean(np.abs(r)), rtol=1e-13)


def test_gradient_descent_closed_form_on_mse():
    """On MSE with a tiny lr, GD follows w <- w - lr/(i+1) * 2 V^T (V w - y) / n, by hand."""
    x, y = ff.lecture_data(n=30)
    V = np.stack([np.ones_like(x), x], axis=1)
    w = np.zeros(2)
    expected = [w]
    for i in range(40):
        w = w - 0.3 / (i + 1) * (2 * V.T @ (V @ w - y) / len(x))
        expected.append(w)
    res = fit.gradient_descent(ff.zeros(2), x, y, loss=losses.mse, lr=0.3, steps=40)
    assert rel_err(np.asarray(res.path), np.array(expected)) < 1e-13


def test_compiled_fit_does_not_compile_again():
    """A second call with same-shaped inputs (other values, other lr) reuses the compiled fit."""
    traces = []

    def counted(w, x):
        traces.append(1)
        return models.polynomial(w, x)

    x, y = ff.lecture_data(n=40)
    order = ff.batch_order(40, 3, seed=0)
    for run, extra in ((fit.stochastic_gradient_descent, {"batch_size": 10}),
                       (fit.adam_sgd, {"batch_size": 10})):
        traces.clear()
        run(ff.zeros(3), x, y, order, model=counted, lr=0.1, **extra)
        first = len(traces)
        assert first > 0
        run(ff.zeros(3) + 1.0, x * 2, y - 1, ff.batch_order(40, 3, seed=5), model=counted, lr=0.05, **extra)
        assert len(traces) == first
    traces.clear()
    fit.gradient_descent(ff.zeros(3), x, y, model=counted, lr=1.0, steps=5)
    first = len(traces)
    fit.gradient_descent(ff.zeros(3) + 2.0, x + 1, y, model=counted, lr=3.0, steps=5)
    assert len(traces) == first > 0
    # A different static setting is a different program, and does compile.
    fit.gradient_descent(ff.zeros(3), x, y, model=counted, lr=1.0, steps=6)
    assert len(traces) > first
