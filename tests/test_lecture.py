"""The lecture's printed numbers, by both frameworks, in lecture mode (float32 params, float64 data)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import losses, models
from comparison import lecture
from functional_fit.tolerances import LECTURE_PRINTED, rel_err

# The lecture's printed numbers: one copy, `comparison.lecture.PRINTED`.
P = lecture.PRINTED
W_MSE = P["ols"]["params"]  # cell 7
DZ = P["autodiff"]["grad"]  # cell 27
L1_AT_ZERO = P["l1_at_zero"]["value"]  # cell 41
GRAD_AT_ZERO = P["l1_at_zero"]["grad"]  # cell 43, printed to 4 decimals
GD_LINEAR = (P["gd_abs_linear"]["params"], P["gd_abs_linear"]["loss"])  # cell 49
GD_QUAD = (P["gd_abs_quad"]["params"], P["gd_abs_quad"]["loss"])  # cell 54


@pytest.fixture(scope="module")
def result(lecture_xy):
    x, y = lecture_xy
    steps = ("ols", "l1_at_zero", "autodiff", "gd_abs_linear", "gd_abs_quad")
    return lecture.run(x, y, dtype="lecture", data_meta={"lecture": True}, steps=steps)


@pytest.mark.parametrize("side", ["jax", "torch"])
def test_ols(result, side):
    assert rel_err(result.steps["ols"][side]["params"], W_MSE) < LECTURE_PRINTED


@pytest.mark.parametrize("side", ["jax", "torch"])
def test_autodiff(result, side):
    assert rel_err(result.steps["autodiff"][side]["grad"], DZ) < LECTURE_PRINTED


def test_autodiff_hand_formula_and_graphs():
    assert rel_err(ff.autodiff.z_derivative(1.0), DZ) < 1e-15
    names = parity.autodiff.graph()
    assert names[0] == "PowBackward0" and names[-1] == "AccumulateGrad"
    assert {"LogBackward0", "ExpBackward0"} <= set(names)
    jaxpr = ff.autodiff.graph()
    assert "log" in jaxpr and "exp" in jaxpr


@pytest.mark.parametrize("side", ["jax", "torch"])
def test_l1_at_zero(result, side):
    s = result.steps["l1_at_zero"][side]
    assert rel_err(s["value"], L1_AT_ZERO) < LECTURE_PRINTED
    # Printed to 4 decimals: agreement to half a unit in the last printed place.
    np.testing.assert_allclose(s["grad"], GRAD_AT_ZERO, atol=5e-5, rtol=0)


@pytest.mark.parametrize("side", ["jax", "torch"])
@pytest.mark.parametrize("name,expected", [("gd_abs_linear", GD_LINEAR), ("gd_abs_quad", GD_QUAD)])
def test_gradient_descent_fits(result, side, name, expected):
    params, loss = expected
    s = result.steps[name][side]
    assert rel_err(s["params"], params) < LECTURE_PRINTED
    assert rel_err(s["loss"], loss) < LECTURE_PRINTED


def test_lecture_dtypes_are_the_lectures(lecture_xy):
    """float32 parameters meet float64 data: predictions are float64, gradients float32."""
    x, y = lecture_xy
    w = ff.zeros(2, "lecture")
    assert w.dtype == jnp.float32
    y_hat = models.linear(w, jnp.asarray(x))
    assert y_hat.dtype == jnp.float64
    g = jax.grad(lambda w: losses.l1(models.linear(w, jnp.asarray(x)), jnp.asarray(y)))(w)
    assert g.dtype == jnp.float32
    m = parity.SimpleLinearModel()
    assert m.w.dtype == torch.float32 and m(torch.from_numpy(x)).dtype == torch.float64


def test_printed_reference_attached_only_on_lecture_data(lecture_xy):
    x, y = lecture_xy
    other = lecture.run(x, y, dtype="float64", steps=("ols",))
    assert other.steps["ols"]["lecture"] is None


def test_cell_53_polynomial_with_given_weights(lecture_xy):
    """Cell 53: PolynomialModel(np.array([1., 2., 3.]))(tx), printed to 4 decimals."""
    x, _ = lecture_xy
    printed = [4.7500, 1.8404, 1.8044, 1.7391, 1.6627, 1.6543]  # the first six of cell 53
    module = parity.PolynomialModel(np.array([1.0, 2.0, 3.0]))
    assert module.w.dtype == torch.float64  # torch.from_numpy keeps float64, as in the lecture
    ours = models.polynomial(jnp.array([1.0, 2.0, 3.0]), jnp.asarray(x))
    theirs = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(ours)[:6], printed, atol=5e-5, rtol=0)
    np.testing.assert_allclose(theirs[:6], printed, atol=5e-5, rtol=0)
    assert rel_err(ours, theirs) < 1e-15
    # Cell 38: the zero-initialised linear model's numpy parameters are float32 zeros.
    params = parity.SimpleLinearModel().numpy_parameters()
    assert params.dtype == np.float32 and params.tolist() == [0.0, 0.0]
