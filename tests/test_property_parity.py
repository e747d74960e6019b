"""Property-based parity: JAX and torch agree on random problems, not only on the lecture's data.

Hypothesis draws n in 1..500, the model (linear, or a polynomial of degree 0..12), data scales
over orders of magnitude, points with an exactly-zero residual, the learning rate, batch sizes
that do and do not divide n, the number of steps, and the dtype (float64, float32 and the
lecture's mix). Each example runs both frameworks and compares losses, gradients and the whole
trajectory with the tolerances of `functional_fit.tolerances`.

The parity domain (where agreement is guaranteed, and what these tests draw):
- x = a * u with u uniform in [-1, 1] and a in [0.1, 10] with a**degree <= 1e4, so that x**k
  neither overflows nor drowns the other columns; y of any scale s in [1e-3, 1e6].
- a learning rate relative to that scale: GD/SGD on MSE lr = c / S2 with c <= 0.9 (stable:
  the Hessian's largest eigenvalue is at most 2 * S2); GD/SGD on L1 lr = c * s / S2;
  Adam lr = c * s / S1; where S1 = sum_k a**k, S2 = sum_k a**(2k).
- at most `MAX_STEPS_FLOAT32` steps.
- Adam trajectories are compared up to the first step where a gradient component is 0 up to
  rounding (an L1 batch whose signs balance) while Adam's second moment is still tiny: Adam
  divides by sqrt(v_hat) + 1e-8, so each framework's rounding residue (of opposite signs, say)
  becomes a step of up to lr. In float32 this happens on the lecture's own first batch.
- L1 trajectories are compared up to the first step where some residual of the step's batch
  lies within rounding of 0 without being exactly 0: there torch's and JAX's |r| subgradients
  may legitimately take different signs, and the paths part by O(lr). Exactly-zero residuals
  (placed on purpose at the starting parameters) are inside the domain: both use sign(0) = 0.

Profiles (registered in conftest.py): ``ci`` (the default, few examples, derandomized) and
``thorough`` (2,000 examples per test):  HYPOTHESIS_PROFILE=thorough pytest tests/test_property_parity.py
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings, strategies as st

import parity
from functional_fit import data, fit, losses, models, registry
from functional_fit.precision import policy
from functional_fit.tolerances import (
    MAX_STEPS_FLOAT32,
    UNIT_ROUNDOFF,
    grad_tol,
    rel_err,
    trajectory_tol,
)

DTYPES = ("float64", "float32", "lecture")


# --------------------------------------------------------------------------- drawing problems


class Problem(dict):
    """One drawn problem: data, model, loss, dtype, starting point and settings."""

    __getattr__ = dict.__getitem__


@st.composite
def problems(draw, optimizer=None):
    n = draw(st.integers(1, 500), label="n")
    model = draw(st.sampled_from(["linear", "poly"]), label="model")
    degree = 1 if model == "linear" else draw(st.integers(0, 12), label="degree")
    loss = draw(st.sampled_from(["l1", "mse"]), label="loss")
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    optimizer = optimizer or draw(st.sampled_from(["gd", "sgd", "adam"]), label="optimizer")
    a = 10.0 ** draw(st.floats(-1.0, min(1.0, 4.0 / max(degree, 1))), label="log10 x scale")
    s = 10.0 ** draw(st.floats(-3.0, 6.0), label="log10 y scale")
    seed = draw(st.integers(0, 2**32 - 1), label="data seed")
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1.0, 1.0, n)
    x = a * u
    y = s * (1.0 + 3.0 * u - 4.0 * u**2 + 0.7 * rng.normal(size=n))
    p1 = registry.model(model).n_params(degree)
    s1 = sum(a**k for k in range(p1))
    s2 = sum(a ** (2 * k) for k in range(p1))
    if draw(st.booleans(), label="start at zero"):
        w0 = np.zeros(p1)
    else:
        w0 = s * rng.normal(size=p1) / s1
    # Points whose residual at w0 is exactly 0 in any evaluation order: y = 0 where w0 = 0, or
    # x = 0 and y = w0[0] (every other term is w_k * 0**k = 0).
    n_zero = draw(st.integers(0, n), label="exactly-zero residuals")
    zero = rng.choice(n, size=n_zero, replace=False)
    pol = policy(dtype)
    w0 = w0.astype(pol.params)
    x, y = x.astype(pol.data), y.astype(pol.data)
    if not np.any(w0):
        y[zero] = 0.0
    else:
        x[zero] = 0.0
        y[zero] = w0[0]
    c = 10.0 ** draw(st.floats(-3.0, 0.0), label="log10 lr factor")
    if optimizer == "adam":
        lr = 0.1 * c * s / s1
    elif loss == "mse":
        lr = 0.9 * c / s2
    else:
        lr = c * s / s2
    if optimizer == "gd":
        steps, epochs, batch_size = draw(st.integers(1, 60), label="steps"), 0, 0
    else:
        epochs = draw(st.integers(1, 4), label="epochs")
        smallest = -(-n * epochs // MAX_STEPS_FLOAT32)  # keeps epochs * ceil(n / B) <= 150
        divisors = [b for b in range(smallest, n + 1) if n % b == 0]
        batch_size = draw(
            st.one_of(st.sampled_from(divisors), st.integers(smallest, n)), label="batch size"
        )
        steps = data.n_batches(n, batch_size) * epochs
    order_seed = draw(st.integers(0, 2**16), label="order seed")
    return Problem(
        n=n, model=model, degree=degree, loss=loss, dtype=dtype, optimizer=optimizer,
        x=x, y=y, w0=w0, lr=float(lr), steps=steps, epochs=epochs, batch_size=batch_size,
        order=data.batch_order(n, epochs, order_seed) if epochs else None,
    )


# --------------------------------------------------------------------------- both frameworks


def jax_fit(pb: Problem) -> fit.FitResult:
    return fit.as_numpy(fit.run(pb.optimizer, pb.w0, pb.x, pb.y, model=registry.model(pb.model).fn,
                                loss=registry.loss(pb.loss), lr=pb.lr, steps=pb.steps, order=pb.order,
                                batch_size=pb.batch_size))


def torch_fit(pb: Problem) -> np.ndarray:
    pol = policy(pb.dtype)
    module = parity.registry.module(pb.model, pb.degree, w=pb.w0, dtype=parity.data.torch_dtype(pol.params))
    loss_fn = parity.registry.loss(pb.loss)
    return parity.fit.run(pb.optimizer, module, loss_fn, torch.from_numpy(pb.x), torch.from_numpy(pb.y),
                          lr=pb.lr, steps=pb.steps, order=pb.order, batch_size=pb.batch_size)


def step_batches(pb: Problem) -> list[np.ndarray]:
    """The indices of each step's batch, as DataLoader(drop_last=False) cuts the order."""
    if pb.optimizer == "gd":
        return [np.arange(pb.n)] * pb.steps
    B = pb.batch_size
    return [row[i : i + B] for row in pb.order for i in range(0, pb.n, B)]


def torch_value_and_grad(pb: Problem, w, idx=None):
    """torch's loss and gradient at w (p+1,) on the points idx (all by default)."""
    pol = policy(pb.dtype)
    w = torch.tensor(np.asarray(w), dtype=parity.data.torch_dtype(pol.params), requires_grad=True)
    x, y = (torch.from_numpy(a if idx is None else a[idx]) for a in (pb.x, pb.y))
    fn = parity.models.linear if pb.model == "linear" else parity.models.polynomial
    value = parity.registry.loss(pb.loss)(fn(w, x), y)
    value.backward()
    return value.item(), w.grad.numpy()


_jax_vg = jax.jit(
    lambda w, x, y, model, loss: jax.value_and_grad(lambda w: loss(model(w, x), y))(w),
    static_argnums=(3, 4),
)


def jax_value_and_grad(pb: Problem, w):
    value, g = _jax_vg(jnp.asarray(w), jnp.asarray(pb.x), jnp.asarray(pb.y),
                       registry.model(pb.model).fn, registry.loss(pb.loss))
    return float(value), np.asarray(g)


def powers(pb: Problem, idx) -> np.ndarray:
    """x_i**k for the points idx, float64, shape (len(idx), p+1) (numpy: no compiling)."""
    p1 = registry.model(pb.model).n_params(pb.degree)
    return pb.x[idx].astype(np.float64)[:, None] ** np.arange(p1)  # (b, p+1)


def term_scale(pb: Problem, w) -> np.ndarray:
    """Per parameter, mean_i |d loss_i / d w_k|: the size of the terms a gradient sums.

    A sum of terms of mixed sign rounds relative to this, not to the (possibly cancelled)
    result; where the gradient does not cancel the two are the same size.
    """
    pw = powers(pb, np.arange(pb.n))  # (n, p+1)
    r = np.abs(pw @ np.asarray(w, dtype=np.float64) - pb.y.astype(np.float64))  # (n,)
    dr = 1.0 if pb.loss == "l1" else 2.0 * r[:, None]
    return np.mean(dr * np.abs(pw), axis=0)  # (p+1,)


ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's and optax.adam's defaults


def first_amplified_adam_step(pb: Problem, tpath: np.ndarray, tol: float) -> int | None:
    """The first Adam step that may turn rounding into a difference larger than tol, or None.

    A gradient component that is 0 up to rounding (an L1 batch whose signs balance: the sum of
    +-1/B is 0 in exact arithmetic, +-u in float) is divided by sqrt(v_hat) + eps; while
    v_hat is itself tiny, eps = 1e-8 is the only thing between a rounding residue and a full
    step of size lr, and the frameworks' residues differ in sign. This replays Adam's second
    moment along torch's path (float64 numpy) and flags the step where lr * residue /
    (sqrt(v_hat) + eps) can exceed a tenth of tol * max|w|.
    """
    if pb.optimizer != "adam":
        return None
    u = UNIT_ROUNDOFF[policy(pb.dtype).data]
    w_scale = max(float(np.max(np.abs(tpath))), np.finfo(np.float64).tiny)
    v = np.zeros(tpath.shape[1])
    for t, idx in enumerate(step_batches(pb)):
        pw = powers(pb, idx)  # (b, p+1)
        r = pw @ tpath[t].astype(np.float64) - pb.y[idx].astype(np.float64)  # (b,)
        dr = np.sign(r)[:, None] if pb.loss == "l1" else 2.0 * r[:, None]  # (b, 1)
        g = np.mean(dr * pw, axis=0)  # (p+1,)
        residue = (len(idx) + pb.degree + 4) * u * np.mean(np.abs(dr * pw), axis=0)  # (p+1,)
        v = ADAM_B2 * v + (1.0 - ADAM_B2) * g**2
        v_hat = v / (1.0 - ADAM_B2 ** (t + 1))
        cancelled = np.abs(g) <= 10.0 * residue
        amplified = pb.lr * 10.0 * residue / (np.sqrt(v_hat) + ADAM_EPS)
        if np.any(cancelled & (amplified > 0.1 * tol * w_scale)):
            return t
    return None


def first_ambiguous_step(pb: Problem, jpath: np.ndarray, tpath: np.ndarray) -> int | None:
    """The first step at which an L1 residual of the batch is within rounding of 0, or None.

    Up to step t the paths differ by d_t = max_{s<=t} max|jpath[s] - tpath[s]|, so a residual
    r differs between them by at most d_t * sum_k |x|^k, plus the rounding of evaluating it,
    (p + 4) u (sum_k |w_k x^k| + |y|). A residual within ten times that of 0, and not exactly 0,
    may have a different sign in each framework, and so a different subgradient.
    """
    if pb.loss != "l1":
        return None
    u = UNIT_ROUNDOFF[policy(pb.dtype).data]
    diff = np.maximum.accumulate(np.max(np.abs(jpath.astype(np.float64) - tpath), axis=1))
    for t, idx in enumerate(step_batches(pb)):
        w = tpath[t].astype(np.float64)
        yb = pb.y[idx].astype(np.float64)
        pw = powers(pb, idx)  # (b, p+1)
        r = pw @ w - yb  # (b,)
        pw = np.abs(pw)
        margin = 10.0 * (diff[t] * pw.sum(1) + (pb.degree + 4) * u * (pw @ np.abs(w) + np.abs(yb)))
        exact_start = t == 0  # zeros placed at w0 are exact in any evaluation order
        if np.any((np.abs(r) <= margin) & ((r != 0.0) | (not exact_start))):
            return t
    return None


# --------------------------------------------------------------------------- the properties

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_EXAMPLES = itertools.count(1)


def _bounded_compile_cache():
    """Drop JAX's compiled programs every 100 examples. Nearly every example compiles new
    shapes; kept forever, thousands of executables exhaust the process's memory maps, and
    XLA's compiler segfaults (seen after ~1,500 examples of the thorough profile)."""
    if next(_EXAMPLES) % 100 == 0:
        jax.clear_caches()


@FAST
@given(pb=problems(optimizer="gd"), at_start=st.booleans())
def test_loss_and_gradient_parity(pb, at_start):
    """Loss and gradient on the whole data, at w0 or at a random point, within GRAD_* ."""
    _bounded_compile_cache()
    rng = np.random.default_rng(pb.n)
    w = pb.w0 if at_start else (pb.w0 + rng.normal(size=pb.w0.shape)).astype(pb.w0.dtype)
    jv, jg = jax_value_and_grad(pb, w)
    tv, tg = torch_value_and_grad(pb, w)
    tol = grad_tol(pb.dtype)
    assert jg.dtype == tg.dtype == np.dtype(policy(pb.dtype).params)
    assert rel_err(jv, tv) <= tol
    scale = max(float(np.max(np.abs(tg))), float(np.max(term_scale(pb, w))))
    event(f"gradient cancels: {float(np.max(np.abs(tg))) < 0.01 * scale}")
    assert float(np.max(np.abs(jg.astype(np.float64) - tg))) <= tol * scale


def trajectory_case(pb) -> int:
    """Whole trajectories and every step's loss, within trajectory_tol(dtype).

    Returns the number of steps compared: all of them, or fewer where a guard cut the
    comparison short (a sign-ambiguous L1 residual, or Adam amplifying a cancelled gradient).
    """
    _bounded_compile_cache()
    note(f"{pb.optimizer} {pb.model}{pb.degree} {pb.loss} {pb.dtype} n={pb.n} B={pb.batch_size} "
         f"steps={pb.steps} lr={pb.lr:.3g}")
    res = jax_fit(pb)
    tpath = torch_fit(pb)
    assert res.path.shape == tpath.shape == (pb.steps + 1, registry.model(pb.model).n_params(pb.degree))
    assert res.path.dtype == tpath.dtype
    tol = trajectory_tol(pb.dtype)
    amb = first_ambiguous_step(pb, res.path, tpath)
    amp = first_amplified_adam_step(pb, tpath, tol)
    event(f"sign-ambiguous L1 step: {amb is not None}")
    event(f"Adam amplifies a cancelled gradient: {amp is not None}")
    # Compare w_0 .. w_last; w_last+1 may part legitimately.
    last = min([pb.steps] + [t for t in (amb, amp) if t is not None])
    assert rel_err(res.path[: last + 1], tpath[: last + 1]) <= tol
    # Each step's batch loss, taken before its update, at torch's own parameters.
    batches = step_batches(pb)
    tl = np.array([torch_value_and_grad(pb, tpath[t], batches[t])[0] for t in range(last + 1)
                   if t < pb.steps])
    assert rel_err(res.losses[: tl.size], tl) <= tol
    return last


#: At most this share of the examples may have their comparison cut short by a guard, and on
#: average an example must compare this share of its steps: a guard that fired at step 0
#: everywhere would otherwise let the property pass having compared nothing.
MAX_CUT_SHORT = 0.25
MIN_COMPARED_SHARE = 0.75


def test_trajectory_parity():
    """The trajectory property, and how much of each example's trajectory it compared."""
    compared = []  # (steps compared, steps) per example

    @FAST
    @given(pb=problems())
    def prop(pb):
        compared.append((trajectory_case(pb), pb.steps))

    prop()
    assert compared
    cut = [c / s for c, s in compared if c < s]
    assert len(cut) <= MAX_CUT_SHORT * len(compared), compared
    assert np.mean([c / s for c, s in compared]) >= MIN_COMPARED_SHARE, compared


# --------------------------------------------------------------------------- regressions

# Disagreements found by hypothesis are kept here as named, deterministic cases.


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_every_residual_exactly_zero_l1_stands_still(dtype):
    """y == 0 everywhere and w0 == 0: all residuals 0, so sign(0) = 0 and nothing moves."""
    pol = policy(dtype)
    x = np.linspace(-1, 1, 7).astype(pol.data)
    y = np.zeros(7, pol.data)
    w0 = np.zeros(3, pol.params)
    res = fit.gradient_descent(w0, x, y, model=models.polynomial, loss=losses.l1, lr=1.0, steps=3)
    module = parity.PolynomialModel(p=2, dtype=parity.data.torch_dtype(pol.params))
    path = parity.fit.gradient_descent(module, parity.losses.l1, torch.from_numpy(x),
                                       torch.from_numpy(y), lr=1.0, nsteps=3)
    np.testing.assert_array_equal(np.asarray(res.path), path)
    assert not np.any(path)


def test_regression_single_point_batch_of_one():
    """n = 1 with batch size 1: one-point batches, no padding, both frameworks."""
    pb = Problem(n=1, model="poly", degree=12, loss="l1", dtype="float64", optimizer="adam",
                 x=np.array([0.5]), y=np.array([2.0]), w0=np.zeros(13), lr=0.01, steps=3,
                 epochs=3, batch_size=1, order=data.batch_order(1, 3))
    res, tpath = jax_fit(pb), torch_fit(pb)
    assert rel_err(res.path, tpath) <= trajectory_tol("float64")


def test_sign_flip_is_why_l1_paths_may_part():
    """The legitimate disagreement the L1 guard is for: a residual that is +tiny in one
    framework and -tiny in the other gives gradients that differ by 2 |x| / n."""
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 2.0, 3.0])
    w = np.array([0.0, 1.0])
    w_up = np.array([0.0, np.nextafter(1.0, 2.0)])  # 1 ulp away: residuals flip from 0 to +
    _, g0 = jax_value_and_grad(Problem(model="linear", degree=1, loss="l1", dtype="float64",
                                       x=x, y=y), w)
    _, g1 = torch_value_and_grad(Problem(model="linear", degree=1, loss="l1", dtype="float64",
                                         x=x, y=y), w_up)
    np.testing.assert_array_equal(g0, [0.0, 0.0])
    np.testing.assert_allclose(g1, [1.0, 2.0])  # 1 ulp in w, O(1) in the gradient


def test_regression_adam_amplifies_a_balanced_l1_batch_in_float32(lecture_xy):
    """Found by `functional-fit parity`: the lecture's first batch of 10 has 5 positive and 5
    negative residuals at w = 0, so d/dw0 of the L1 loss is 0 in exact arithmetic and +-1.5e-8
    in float32 (the sum of +-0.1 rounds), with a different sign in each framework. Adam's
    first update is lr * g / (|g| + 1e-8): one framework steps +0.12, the other -0.12. Not a
    porting error; the guard `first_amplified_adam_step` flags exactly this step."""
    x, y = (a.astype("float32") for a in lecture_xy)
    order = data.batch_order(100, 1, seed=0)
    pb = Problem(n=100, model="linear", degree=1, loss="l1", dtype="float32", optimizer="adam",
                 x=x, y=y, w0=np.zeros(2, "float32"), lr=0.2, steps=10, epochs=1, batch_size=10,
                 order=order)
    first = np.sign(-y[order[0, :10]])
    assert first.sum() == 0  # the balanced batch
    res, tpath = jax_fit(pb), torch_fit(pb)
    assert abs(res.path[1, 0] - tpath[1, 0]) > 0.1  # they part by O(lr) at once
    assert first_amplified_adam_step(pb, tpath, trajectory_tol("float32")) == 0
    # In float64 the residue is 1e-17, amplified to ~1e-10: still within TRAJECTORY_FLOAT64.
    pb64 = Problem(pb, x=lecture_xy[0], y=lecture_xy[1], w0=np.zeros(2), dtype="float64")
    assert rel_err(jax_fit(pb64).path, torch_fit(pb64)) <= trajectory_tol("float64")


def gd(w0, x, y, lr, loss):
    """The lecture's GD (optax.sgd, lr / (i + 1)), 20 steps of the quadratic, unchecked."""
    return fit.recipe_jit(w0, jnp.asarray(x), jnp.asarray(y), lr, recipe=registry.optimizer("gd"),
                          model=models.polynomial, loss=loss, steps=20).result


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_bounds_still_catch_porting_bugs(lecture_xy, dtype):
    """The tolerances are loose enough for rounding and tight enough for real mistakes: two
    classic porting bugs, each run against torch, land far outside trajectory_tol(dtype)."""
    pol = policy(dtype)
    x, y = (a.astype(pol.data) for a in lecture_xy)
    y = y.copy()
    y[::4] = 0.0  # exactly-zero residuals at w0 = 0
    w0 = jnp.zeros(3, dtype=pol.params)
    module = parity.PolynomialModel(p=2, dtype=parity.data.torch_dtype(pol.params))
    tpath = parity.fit.gradient_descent(module, parity.losses.l1, torch.from_numpy(x),
                                        torch.from_numpy(y), lr=1.0, nsteps=20)
    good = gd(w0, x, y, 1.0, losses.l1)
    assert rel_err(np.asarray(good.path), tpath) <= trajectory_tol(dtype)
    # Bug 1: plain |r|, whose JAX derivative at 0 is 1, not torch's 0.
    naive_l1 = lambda y_hat, y: jnp.mean(jnp.abs(y_hat - y))  # noqa: E731
    bad = gd(w0, x, y, 1.0, naive_l1)
    assert rel_err(np.asarray(bad.path), tpath) > 100 * trajectory_tol(dtype)
    # Bug 2: a step size off by a constant factor, lr / (2 (i + 1)).
    shifted = gd(w0, x, y, 0.5, losses.l1)
    assert rel_err(np.asarray(shifted.path), tpath) > 100 * trajectory_tol(dtype)
