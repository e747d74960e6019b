"""A fit whose loss becomes non-finite says where, in both frameworks, instead of returning NaN.

GD with lr = 1e6 on the MSE loss multiplies the parameters by ~1e6 a step until they overflow;
the L1 gradient is bounded by max|x|^k, so L1 GD with the same lr grows only like lr * log(steps)
and never overflows: a control that must not raise.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import fit, losses, models, registry
from functional_fit.checks import DivergenceError, first_nonfinite

CASES = [
    (model, degree, dtype)
    for model, degree in (("linear", 1), ("poly", 2), ("poly", 12))
    for dtype in ("float64", "float32")
]


def jax_gd(model, degree, loss, dtype, x, y, lr, steps):
    w0 = np.zeros(registry.model(model).n_params(degree), dtype)
    return fit.gradient_descent(w0, x.astype(dtype), y.astype(dtype), model=registry.model(model).fn,
                                loss=registry.loss(loss), lr=lr, steps=steps)


def torch_gd(model, degree, loss, dtype, x, y, lr, steps):
    m = parity.registry.module(model, degree, dtype=parity.data.torch_dtype(dtype))
    tx, ty = (torch.from_numpy(a.astype(dtype)) for a in (x, y))
    return parity.fit.gradient_descent(m, parity.registry.loss(loss), tx, ty, lr=lr, nsteps=steps)


def test_first_nonfinite():
    assert first_nonfinite([1.0, 2.0]) is None
    assert first_nonfinite(np.array([1.0, np.nan, np.inf])) == 1
    assert first_nonfinite(np.array([np.inf], dtype=np.float32)) == 0
    assert first_nonfinite([]) is None


@pytest.mark.parametrize("model,degree,dtype", CASES)
def test_gd_lr_1e6_reports_the_same_first_step_in_both_frameworks(lecture_xy, model, degree, dtype):
    x, y = lecture_xy
    with pytest.raises(DivergenceError) as j:
        jax_gd(model, degree, "mse", dtype, x, y, 1e6, 100)
    with pytest.raises(DivergenceError) as t:
        torch_gd(model, degree, "mse", dtype, x, y, 1e6, 100)
    assert j.value.step == t.value.step
    assert 0 < j.value.step < 100
    for exc, where in ((j.value, "gradient_descent"), (t.value, "parity.fit.gradient_descent")):
        assert str(exc).startswith(f"{where}: the fit diverged")
        assert f"at step {exc.step}" in str(exc) and "lr=1e+06" in str(exc)
        assert not np.isfinite(exc.loss)
    # The JAX error carries the whole result; its first non-finite loss is the reported step,
    # and every loss before it is finite.
    res = j.value.result
    assert isinstance(res, ff.FitResult) and res.losses.shape == (100,)
    assert first_nonfinite(res.losses) == j.value.step
    # torch stops there: its path holds the parameters before and after each step made.
    assert t.value.result.shape == (t.value.step + 1, registry.model(model).n_params(degree))
    assert np.all(np.isfinite(t.value.result))


@pytest.mark.parametrize("model,degree,dtype", CASES)
def test_l1_gd_with_lr_1e6_stays_finite(lecture_xy, model, degree, dtype):
    x, y = lecture_xy
    res = jax_gd(model, degree, "l1", dtype, x, y, 1e6, 20)
    path = torch_gd(model, degree, "l1", dtype, x, y, 1e6, 20)
    assert np.all(np.isfinite(res.path)) and np.all(np.isfinite(path))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_minibatch_fits_report_divergence_in_both_frameworks(optimizer):
    # x of scale 1e30 overflows x**12 (1e360 > float64's 1.8e308): the first loss is nan.
    x = np.linspace(-1.0, 1.0, 23) * 1e30
    y = np.linspace(0.0, 1.0, 23)
    order = ff.batch_order(23, 2, seed=0)
    jfit = fit.stochastic_gradient_descent if optimizer == "sgd" else fit.adam_sgd
    tfit = parity.fit.stochastic_gradient_descent if optimizer == "sgd" else parity.fit.adam_sgd
    with pytest.raises(DivergenceError) as j:
        jfit(np.zeros(13), x, y, order, model=models.polynomial, loss=losses.l1, lr=0.1, batch_size=5)
    ds = parity.data.dataset(x, y)
    m = parity.PolynomialModel(p=12, dtype=torch.float64)
    with pytest.raises(DivergenceError) as t:
        tfit(m, parity.losses.l1, ds, lr=0.1, nepochs=2, batch_size=5, order=order)
    assert j.value.step == t.value.step == 0


def test_sgd_divergence_midway_same_step(lecture_xy):
    x, y = lecture_xy
    order = ff.batch_order(100, 30, seed=3)
    with pytest.raises(DivergenceError) as j:
        fit.stochastic_gradient_descent(np.zeros(3), x, y, order, model=models.polynomial,
                                        loss=losses.mse, lr=50.0, batch_size=7)
    m = parity.PolynomialModel(p=2, dtype=torch.float64)
    with pytest.raises(DivergenceError) as t:
        parity.fit.stochastic_gradient_descent(m, parity.losses.mse, parity.data.dataset(x, y),
                                               lr=50.0, nepochs=30, batch_size=7, order=order)
    assert j.value.step == t.value.step > 0


def test_nonfinite_final_params_are_reported_after_the_last_step():
    # One GD step with lr 1e300 on MSE: the loss at step 0 is finite, the parameters after it
    # are not. Both frameworks report step 1 (= steps): "after the last step".
    x, y = np.array([1.0, 2.0]), np.array([1e10, 2e10])
    with pytest.raises(DivergenceError) as j:
        fit.gradient_descent(np.zeros(2), x, y, loss=losses.mse, lr=1e300, steps=1)
    m = parity.SimpleLinearModel(dtype=torch.float64)
    with pytest.raises(DivergenceError) as t:
        parity.fit.gradient_descent(m, parity.losses.mse, torch.from_numpy(x), torch.from_numpy(y),
                                    lr=1e300, nsteps=1)
    assert j.value.step == t.value.step == 1
    assert j.value.loss is None and t.value.loss is None
    assert "after the last step" in str(j.value)


def test_scans_do_not_check(lecture_xy):
    """The unchecked layer returns the non-finite values (a sweep over lr wants them)."""
    x, y = lecture_xy
    import jax.numpy as jnp

    run = fit.recipe_jit(jnp.zeros(2), jnp.asarray(x), jnp.asarray(y), jnp.asarray(1e6),
                         recipe=registry.optimizer("gd"), model=models.linear, loss=losses.mse,
                         steps=100)
    assert first_nonfinite(run.result.losses) == 30 == int(run.first_bad)


def test_cli_says_so_in_one_line(tmp_path):
    """`functional-fit lecture` on data that overflows the degree-12 fit: one line, exit 2."""
    csv = tmp_path / "huge.csv"
    xs = np.linspace(-1.0, 1.0, 20) * 1e30
    csv.write_text("x,y\n" + "".join(f"{float(a)!r},{k}\n" for k, a in enumerate(xs)))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "functional_fit", "lecture", "--data", str(csv), "--dtype",
         "float64", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"functional-fit lecture: error: --data {csv}: adam_sgd: the fit "
                               "diverged")
    assert "at step 0" in lines[0] and "rescale x and y" in lines[0]  # lecture has no --lr
    assert proc.stdout == ""
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(json.JSONDecodeError):
        json.loads(proc.stdout)
