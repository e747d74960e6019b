"""Rprop, ASGD and Adafactor against torch.optim: the behaviours whole paths may not reach.

Their whole 1,000-step paths are in tests/test_optim.py's table, and every keyword set of
torch's own optimizer table (optim_db) in tests/test_optim_db.py.

Each of these is checked against torch directly: Rprop's clipped first step (which
``optax.rprop`` skips), its sign of a product that underflows and its NaNs, the exact path of
a scripted gradient sequence with exact zeros and sign changes; ASGD's float32 step sizes, its
average (torch's ``state["ax"]``) and its eta and mu; Adafactor's factored moments of 2-D and
3-D leaves beside a vector and a scalar.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import rel_err

from _paths import flat

# --------------------------------------------------------------------------- scripted gradients


def scripted_gradients(dtype: str, steps: int = 60) -> np.ndarray:
    """(steps, 5) gradients: random signs and sizes, exact zeros, and a column of zeros."""
    rng = np.random.default_rng(1)
    g = rng.normal(size=(steps, 5)) * 10.0 ** rng.uniform(-3, 1, size=(steps, 5))
    g[rng.random(size=g.shape) < 0.15] = 0.0
    g[:, 4] = 0.0
    return g.astype(dtype)


def scripted_paths(name: str, kwargs: dict, grads: np.ndarray):
    """Both paths (steps+1, 5) of `name` fed `grads` step by step, from the same start; and
    the JAX and torch states after the last step."""
    start = np.linspace(-1.0, 1.0, grads.shape[1]).astype(grads.dtype)
    tx = fo.OPTIMIZERS[name](**kwargs)
    update = jax.jit(tx.update)
    p, state = jnp.asarray(start), tx.init(jnp.asarray(start))
    tp = torch.tensor(start, requires_grad=True)
    opt = getattr(torch.optim, name)([tp], **kwargs)
    ours, theirs = [start], [start]
    for g in grads:
        u, state = update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, u)
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        ours.append(np.asarray(p))
        theirs.append(tp.detach().numpy().copy())
    return np.array(ours), np.array(theirs), state, opt.state[tp]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [{}, dict(lr=0.3, etas=(0.3, 1.5), step_sizes=(1e-3, 0.5)),
                                    dict(maximize=True)])
def test_rprop_follows_scripted_gradients_exactly(kwargs, dtype):
    """Sign changes, exact zeros and step-size bounds: Rprop's arithmetic is exact sign and
    product and clip, so the paths are equal to the last bit in both dtypes."""
    ours, theirs, state, torch_state = scripted_paths("Rprop", kwargs, scripted_gradients(dtype))
    np.testing.assert_array_equal(ours, theirs)
    rprop = state[-1]
    np.testing.assert_array_equal(rprop.step_size, torch_state["step_size"].numpy())
    np.testing.assert_array_equal(rprop.prev, torch_state["prev"].numpy())
    assert int(rprop.count) == int(torch_state["step"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [dict(lr=0.05, t0=10), dict(lr=0.02, lambd=0.05, alpha=0.5,
                                                                t0=25.5, weight_decay=0.1,
                                                                maximize=True)])
def test_asgd_follows_scripted_gradients_and_averages_as_torch(kwargs, dtype):
    """The path, the average ax and the scalars eta and mu against torch's state."""
    ours, theirs, state, torch_state = scripted_paths("ASGD", kwargs, scripted_gradients(dtype))
    steps = len(ours) - 1
    u = np.finfo(dtype).eps / 2
    bound = 8 * steps * u  # a few roundings per step (torch's two in-place ops, our p + u)
    assert rel_err(ours, theirs) <= bound
    assert rel_err(np.asarray(fo.asgd_average(state)), torch_state["ax"].numpy()) <= bound
    asgd = state[-1]
    assert asgd.eta.dtype == jnp.float32 and asgd.mu.dtype == jnp.float32
    assert float(asgd.eta) == float(torch_state["eta"]) and float(asgd.mu) == float(
        torch_state["mu"])
    assert float(asgd.mu) < 1  # averaging has started


# --------------------------------------------------------------------------- Rprop's corners


def one_step_each(name: str, kwargs: dict, grads: list, dtype="float64"):
    """Params after each of `grads` (lists), from 0, in JAX and in torch."""
    g = np.array(grads, dtype=dtype)
    ours, theirs, _, _ = scripted_paths(name, kwargs, g)
    return ours[1:], theirs[1:]


@pytest.mark.parametrize("lr", [0.0, 100.0])
def test_rprop_clips_the_first_step_size_as_torch_and_optax_does_not(lr):
    """torch multiplies the first step sizes by 1 and clips them to step_sizes; optax.rprop
    keeps them as they are (an lr of 0 stays 0, an lr of 100 stays 100)."""
    ours, theirs = one_step_each("Rprop", dict(lr=lr), [[1.0, -2.0, 0.0, 3.0, 0.5]])
    np.testing.assert_array_equal(ours, theirs)
    tx = optax.rprop(lr)
    p = jnp.zeros(5)
    u, _ = tx.update(jnp.array([1.0, -2.0, 0.0, 3.0, 0.5]), tx.init(p), p)
    assert not np.array_equal(np.asarray(p + u), theirs[0])


def test_rprop_signs_of_an_underflowing_product_are_torchs():
    """float32 g = 1e-23 twice: g * prev underflows to 0 (no sign, factor 1) as in torch,
    where optax's prev = step_size * sign(g) keeps the sign and grows the step by 1.2."""
    grads = [[1e-23, -1e-23, 1.0, 0.0, 1e-23]] * 2
    ours, theirs = one_step_each("Rprop", {}, grads, "float32")
    np.testing.assert_array_equal(ours, theirs)
    tx = optax.rprop(1e-2)
    p = jnp.zeros(5, jnp.float32)
    state = tx.init(p)
    for g in grads:
        u, state = tx.update(jnp.array(g, jnp.float32), state, p)
        p = p + u
    assert not np.array_equal(np.asarray(p), theirs[-1])


def test_rprop_skips_a_nan_gradient_as_torch_does():
    """torch's sign of NaN is 0 on the CPU: the element stays, its step size too, and the
    next step (whose g * prev is NaN again) moves it by the unchanged step size."""
    ours, theirs = one_step_each("Rprop", {}, [[1.0, 1.0, 1.0, 1.0, 1.0],
                                               [math.nan, 1.0, -1.0, 0.0, 1.0],
                                               [1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(ours, theirs)
    assert np.all(np.isfinite(ours)) and ours[1][0] == ours[0][0]


def test_rprop_reads_only_a_schedules_first_value():
    """torch's Rprop reads the group's lr once, when it makes its state: a schedule that
    halves the lr every step moves it exactly as a constant lr of the schedule's first value."""
    grads = scripted_gradients("float64", 20)
    start = jnp.zeros(5)
    paths_ = []
    for lr in (fls.LambdaLR(0.3, lambda i: 0.5**i), 0.3):
        tx = fo.Rprop(lr=lr)
        p, state = start, tx.init(start)
        for g in grads:
            u, state = tx.update(jnp.asarray(g), state, p)
            p = optax.apply_updates(p, u)
        paths_.append(np.asarray(p))
    np.testing.assert_array_equal(*paths_)


# --------------------------------------------------------------------------- ASGD's scalars


def test_asgd_first_step_uses_torchs_float32_lr():
    """eta starts as lr rounded to float32 (0.01 -> 0.0099999998), as torch stores it; a
    float64 eta would put the first step 2e-9 relative away from torch's."""
    ours, theirs = one_step_each("ASGD", dict(lambd=0.0), [[1.0, 1.0, 1.0, 1.0, 1.0]])
    start = np.linspace(-1.0, 1.0, 5)
    np.testing.assert_array_equal(ours[0] - start, theirs[0] - start)
    np.testing.assert_allclose(theirs[0] - start, -float(np.float32(0.01)), rtol=0, atol=1e-17)


def test_asgd_average_of_a_state_without_asgd_is_refused():
    tx = fo.Adam()
    with pytest.raises(ff.InputError, match="state"):
        fo.asgd_average(tx.init(jnp.zeros(2)))


def test_asgd_and_rprop_take_a_traced_learning_rate():
    """A sweep over learning rates builds the optimizer inside `jax.vmap`."""
    for name in ("Rprop", "ASGD"):
        def first_step(lr, name=name):
            tx = fo.OPTIMIZERS[name](lr=lr)
            p = jnp.ones(3)
            return tx.update(jnp.array([1.0, -1.0, 2.0]), tx.init(p), p)[0]

        lrs = jnp.array([0.01, 0.1])
        swept = jax.vmap(first_step)(lrs)
        for i, lr in enumerate((0.01, 0.1)):
            np.testing.assert_array_equal(swept[i], first_step(lr))


# --------------------------------------------------------------------------- Adafactor

#: Leaves of every kind torch's Adafactor distinguishes: factored over the last two axes (2-D
#: and 3-D), and not (a vector, a scalar).
SHAPES = {"matrix": (3, 4), "stack": (2, 3, 4), "vector": (5,), "scalar": ()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [{}, dict(lr=0.05, beta2_decay=-0.5, eps=(1e-12, 1e-2), d=1.2,
                                            weight_decay=0.1, maximize=True)])
def test_adafactor_follows_scripted_gradients_as_torch(kwargs, dtype):
    """40 steps of random gradients (exact zeros included) on every kind of leaf: the paths and
    the row and column factors against torch's state."""
    rng = np.random.default_rng(2)
    start = {k: np.asarray(rng.normal(size=s), dtype) for k, s in SHAPES.items()}
    grads = [{k: np.asarray(rng.normal(size=s) * (rng.random(size=s) > 0.1), dtype)
              for k, s in SHAPES.items()} for _ in range(40)]
    tx = fo.Adafactor(**kwargs)
    update = jax.jit(tx.update)
    params = {k: jnp.asarray(v) for k, v in start.items()}
    state = tx.init(params)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    opt = torch.optim.Adafactor(list(tparams.values()), **kwargs)
    for g in grads:
        updates, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
        for k, t in tparams.items():
            t.grad = torch.from_numpy(g[k].copy())
        opt.step()
    bound = 16 * len(grads) * np.finfo(dtype).eps / 2  # a few roundings per step
    ours = flat({k: np.asarray(v)[None] for k, v in params.items()})
    theirs = flat({k: t.detach().numpy()[None] for k, t in tparams.items()})
    assert rel_err(ours, theirs) <= bound
    adafactor = state[-1]
    for k in ("matrix", "stack"):
        torch_state = opt.state[tparams[k]]
        assert rel_err(np.asarray(adafactor.row_var[k]), torch_state["row_var"].numpy()) <= bound
        assert rel_err(np.asarray(adafactor.col_var[k]), torch_state["col_var"].numpy()) <= bound
    for k in ("vector", "scalar"):
        torch_variance = opt.state[tparams[k]]["variance"].numpy()
        assert rel_err(np.asarray(adafactor.variance[k]), torch_variance) <= bound


def test_optax_adafactor_is_another_algorithm():
    """optax.adafactor factors no leaf under 128 x 128: its first step on a (3, 4) matrix is
    g / |g| (clipped), not torch's g / sqrt(row @ col / mean(row))."""
    rng = np.random.default_rng(3)
    start = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    g = rng.normal(size=(3, 4))
    theirs = torch.tensor(start, requires_grad=True)
    opt = torch.optim.Adafactor([theirs])
    theirs.grad = torch.from_numpy(g)
    opt.step()

    def first_step(tx):
        p = jnp.asarray(start)
        with jax.numpy_dtype_promotion("standard"):  # optax's own mixes dtypes
            u, _ = tx.update(jnp.asarray(g), tx.init(p), p)
        return np.asarray(p + u)

    theirs = theirs.detach().numpy()
    assert rel_err(first_step(fo.Adafactor()), theirs) <= 1e-15
    assert rel_err(first_step(optax.adafactor(1e-2)), theirs) > 1e-3


# --------------------------------------------------------------------------- bad keywords



@pytest.mark.parametrize("name", ["Rprop", "ASGD", "Adafactor"])
def test_a_cycled_momentum_is_refused_as_torch_refuses_it(name):
    """Neither has a momentum or beta1 for OneCycleLR(cycle_momentum=True) to cycle."""
    with pytest.raises(ff.InputError, match="lr"):
        fo.OPTIMIZERS[name](lr=fls.OneCycleLR(0.1, total_steps=10))
    opt = getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
