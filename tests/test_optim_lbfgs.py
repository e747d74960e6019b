"""functional_fit.optim.LBFGS against torch.optim.LBFGS, step(closure) for update, float64.

One table of cases (a problem, LBFGS's keywords, a number of steps), one parametrized test:
each outer step of both is compared, the params and the whole state (n_iter and func_evals
exactly, the history, d, t, H_diag, ...), so that the iterations inside a step, the line
search's evaluations and the stopping tests all have to agree. Then `fit.train` against
`parity.fit.train` (a closure on each batch), and the refusals.

Agreement: the losses, gradients and dot products of the two round differently (XLA against
torch's kernels and BLAS), by an ulp or so; L-BFGS then carries that along, and grows it on an
ill-conditioned problem. `TOL` bounds the relative difference of the paths; measured: at most
4e-15 on these cases (`_sensitivity` shows torch against itself from a start moved by 1e-16
on the Rosenbrock case: the same size).
"""

from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit.optim import lbfgs
from functional_fit.optim import lr_scheduler as fls
from torch.optim import lr_scheduler as tls

from _paths import flat
from comparison.problems import jax_train, make, torch_train

#: Relative difference of the JAX and torch paths (max over steps and entries, over the
#: largest |entry|): ulp-level roundings carried by L-BFGS (module docstring).
TOL = 1e-12

#: Relative difference of each vector of the final state, over its own largest |entry|. These
#: are gradients, their differences and steps near an optimum, 1e-3 to 1e-6 of their size at
#: the start, and carry the start's rounding: measured at most 1.7e-10 (mlp_fixed's H_diag).
STATE_TOL = 1e-9


# --------------------------------------------------------------------------- the problems
# Each loss is written once for both libraries: `xp` is torch or jax.numpy.

def _poly_data(xp):
    x = np.linspace(-1.0, 1.0, 30)
    y = 0.5 - x + 2.0 * x**2 + 0.8 * x**3 + 0.1 * np.sin(7 * x)
    return xp.asarray(x), xp.asarray(y)


def poly(w, xp):
    """Least squares of a cubic on 30 points (the lecture's kind of fit): a quadratic."""
    x, y = _poly_data(xp)
    (c,) = w
    return ((c[0] + c[1] * x + c[2] * x**2 + c[3] * x**3 - y) ** 2).mean()


def rosenbrock(w, xp):
    """The 3-d Rosenbrock function: a curved valley, ill-conditioned."""
    (v,) = w
    return ((1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2 + (1 - v[1]) ** 2
            + 100 * (v[2] - v[1] ** 2) ** 2)


def mlp(w, xp):
    """A 1-6-1 tanh network's squared error on 20 points; four tensors, as a module's."""
    w1, b1, w2, b2 = w
    x = xp.asarray(np.linspace(-2.0, 2.0, 20)).reshape(20, 1)
    y = xp.asarray(np.cos(1.5 * np.linspace(-2.0, 2.0, 20))).reshape(20, 1)
    return ((xp.tanh(x @ w1.T + b1.reshape(1, 6)) @ w2.T + b2.reshape(1, 1) - y) ** 2).mean()


def _start(problem):
    rng = np.random.default_rng(0)
    return {"poly": [np.zeros(4)], "rosenbrock": [np.array([-1.2, 1.0, 0.5])],
            "mlp": [rng.normal(size=(6, 1)), rng.normal(size=6) * 0.1,
                    rng.normal(size=(1, 6)) * 0.5, np.zeros(1)]}[problem]


LOSSES = {"poly": poly, "rosenbrock": rosenbrock, "mlp": mlp}


class Case(NamedTuple):
    problem: str  # a key of LOSSES
    kwargs: dict  # LBFGS's keywords, the same on both sides
    steps: int  # outer steps (update / opt.step(closure))


CASES = {
    "poly_defaults": Case("poly", {}, 3),
    # history_size 2 wraps the history many times; max_iter 7 ends steps mid-way
    "rosenbrock_wolfe_short_history": Case("rosenbrock", dict(
        line_search_fn="strong_wolfe", history_size=2, max_iter=7), 3),
    "rosenbrock_fixed_small_lr": Case("rosenbrock", dict(lr=0.2, history_size=3, max_iter=6),
                                      4),
    "mlp_wolfe": Case("mlp", dict(line_search_fn="strong_wolfe", history_size=4, max_iter=10),
                      4),
    "mlp_fixed": Case("mlp", dict(lr=0.5, history_size=3, max_iter=8), 4),
    # max_eval below max_iter: stops on evaluations, and cuts the line search's allowance
    "mlp_wolfe_max_eval": Case("mlp", dict(line_search_fn="strong_wolfe", max_iter=10,
                                           max_eval=5), 4),
    "rosenbrock_fixed_max_eval": Case("rosenbrock", dict(lr=0.1, max_iter=10, max_eval=3), 3),
    # the gradient tolerance stops a step early, and a later step at once (one evaluation)
    "poly_tolerance_grad": Case("poly", dict(line_search_fn="strong_wolfe",
                                             tolerance_grad=1e-3), 3),
    "poly_tolerance_grad_fixed": Case("poly", dict(tolerance_grad=1e-2, lr=0.5), 3),
    # the change tolerance: the loss or the step stops moving
    "mlp_tolerance_change": Case("mlp", dict(line_search_fn="strong_wolfe",
                                             tolerance_change=1e-4), 3),
    "rosenbrock_tolerance_change_fixed": Case("rosenbrock", dict(lr=0.1, tolerance_change=1e-3),
                                              3),
}


def torch_run(case: Case, start=None, scheduler=None):
    """torch's params after each step, and its state; `scheduler(opt)` stepped after each."""
    params = [torch.tensor(a, requires_grad=True) for a in (start or _start(case.problem))]
    opt = torch.optim.LBFGS(params, **case.kwargs)
    sched = scheduler(opt) if scheduler else None

    def closure():
        opt.zero_grad()
        loss = LOSSES[case.problem](params, torch)
        loss.backward()
        return loss

    path = [np.concatenate([p.detach().numpy().ravel() for p in params])]
    for _ in range(case.steps):
        opt.step(closure)
        if sched:
            sched.step()
        path.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
    return np.array(path), opt.state[params[0]]


def jax_run(case: Case):
    """Ours: the params after each step, and the state after each step (a list)."""
    tx = fo.LBFGS(**case.kwargs)

    def value_fn(w):
        return LOSSES[case.problem](w, jnp)

    @jax.jit
    def step(w, state):
        value, grad = jax.value_and_grad(value_fn)(w)
        updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=value_fn)
        return optax.apply_updates(w, updates), state

    w = [jnp.asarray(a) for a in _start(case.problem)]
    state = tx.init(w)
    path, states = [np.concatenate([np.ravel(a) for a in w])], []
    for _ in range(case.steps):
        w, state = step(w, state)
        path.append(np.concatenate([np.ravel(a) for a in w]))
        states.append(state)
    return np.array(path), states


@functools.cache
def jax_case(name: str):
    """`jax_run` of ``CASES[name]``, compiled and run once for the tests that read it."""
    return jax_run(CASES[name])


def _np(v) -> np.ndarray:
    return v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _rel(a, b) -> float:
    """max |a - b| / max |b|."""
    a, b = _np(a), _np(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def assert_state_is_torchs(ours: lbfgs.LBFGSState, theirs: dict):
    """Every key of torch's state against its field (the correspondence a resume needs)."""
    assert int(ours.n_iter) == theirs["n_iter"] and int(ours.func_evals) == theirs["func_evals"]
    held = len(theirs["old_dirs"])
    assert int(ours.num_old) == held
    if held:
        for field in ("old_dirs", "old_stps"):
            assert _rel(getattr(ours, field)[:held], torch.stack(theirs[field])) <= STATE_TOL, field
        # ro = 1 / y.s: y.s cancels as the steps converge, so its rounding is relative to
        # |y| |s| (a dot product's bound), not to y.s itself
        y, s = _np(torch.stack(theirs["old_dirs"])), _np(torch.stack(theirs["old_stps"]))
        ys_ours, ys_torch = 1 / _np(ours.ro[:held]), 1 / _np(torch.stack(theirs["ro"]))
        scale = np.linalg.norm(y, axis=1) * np.linalg.norm(s, axis=1)
        assert np.all(np.abs(ys_ours - ys_torch) <= STATE_TOL * scale)
    for field in ("d", "prev_flat_grad"):
        assert _rel(getattr(ours, field), theirs[field]) <= STATE_TOL, field
    for field in ("t", "H_diag", "prev_loss"):
        assert _rel(getattr(ours, field), float(theirs[field])) <= STATE_TOL, field


@pytest.mark.parametrize("name", list(CASES))
def test_steps_agree_with_torch(name):
    case = CASES[name]
    tpath, tstate = torch_run(case)
    jpath, jstates = jax_case(name)
    assert np.max(np.abs(tpath[-1] - tpath[0])) > 1e-3  # it moved
    assert _rel(jpath, tpath) <= TOL
    assert_state_is_torchs(jstates[-1], tstate)


def test_the_cases_cover_every_keyword_and_stopping_rule():
    keywords = set(inspect.signature(fo.LBFGS).parameters)
    changed = {k for c in CASES.values() for k in c.kwargs}
    assert keywords == changed
    searches = {c.kwargs.get("line_search_fn") for c in CASES.values()}
    assert searches == {None, "strong_wolfe"}
    # the history wrapped: more pairs made than kept
    case = CASES["rosenbrock_wolfe_short_history"]
    assert jax_case("rosenbrock_wolfe_short_history")[1][-1].n_iter > 3 * case.kwargs[
        "history_size"]


def test_a_step_that_starts_optimal_only_evaluates():
    """torch's early return: max |g| <= tolerance_grad at the start of a step costs one
    evaluation and changes nothing else; the last step of this case starts there."""
    case = CASES["poly_tolerance_grad"]
    path, (*_, before, after) = jax_case("poly_tolerance_grad")
    assert int(after.func_evals) == int(before.func_evals) + 1
    assert int(after.n_iter) == int(before.n_iter)
    np.testing.assert_array_equal(path[-1], path[-2])
    assert torch_run(case)[1]["func_evals"] == int(after.func_evals)


def _sensitivity(case: Case) -> float:
    """torch's path against itself from a start moved by 1e-16 relative."""
    start = [a * (1 + 1e-16) + 1e-16 for a in _start(case.problem)]
    return _rel(torch_run(case, start)[0], torch_run(case)[0])


def test_longer_rosenbrock_differences_are_torchs_own_sensitivity():
    """Two steps more of the Rosenbrock case (28 iterations): the paths part by 2.4e-10,
    torch's own from a start moved by 1e-16 by 9.4e-10 (measured): rounding, amplified."""
    case = CASES["rosenbrock_wolfe_short_history"]._replace(steps=5)
    sensitivity = _sensitivity(case)
    assert sensitivity > 100 * TOL  # torch alone: past TOL
    assert _rel(jax_run(case)[0], torch_run(case)[0]) <= 10 * sensitivity


def test_a_schedule_sets_each_steps_lr_as_torchs_scheduler_does():
    """lr=StepLR(...) against torch's StepLR stepped after each opt.step(closure)."""
    case = Case("mlp", dict(lr=0.8, max_iter=4, history_size=3), 4)
    tpath, tstate = torch_run(case, scheduler=lambda o: tls.StepLR(o, step_size=1, gamma=0.5))
    jpath, jstates = jax_run(case._replace(kwargs=dict(case.kwargs, lr=fls.StepLR(
        0.8, step_size=1, gamma=0.5))))
    assert _rel(jpath, tpath) <= TOL and float(jstates[-1].t) == float(tstate["t"]) == 0.1
    plain, _ = jax_run(case)
    assert _rel(plain, tpath) > 1e-3  # the schedule changed the path


# --------------------------------------------------------------------------- fit.train


@pytest.mark.parametrize("line_search_fn, batch_size", [(None, None), ("strong_wolfe", 32)])
def test_fit_train_drives_it_as_a_closure_loop(line_search_fn, batch_size):
    """fit.train's update gets value= and value_fn= of the step's batch; parity.fit.train
    steps torch's LBFGS with a closure on the same batch."""
    pb = make("mlp", "float64", hidden=4)
    kwargs = dict(lr=0.5, max_iter=5, history_size=3, line_search_fn=line_search_fn)
    batching = (dict(steps=4) if batch_size is None else
                dict(order=ff.batch_order(len(pb.x), 1, seed=3), batch_size=batch_size))
    jpath = jax_train(pb.params, pb.x, pb.y, model=pb.model, loss=pb.loss,
                      optimizer=fo.LBFGS(**kwargs), **batching)
    opt = torch.optim.LBFGS(pb.module.parameters(), **kwargs)
    tpath = torch_train(pb.module, pb.loss_fn, torch.from_numpy(pb.x), torch.from_numpy(pb.y),
                        optimizer=opt, **batching)
    a, b = flat(jpath), flat(tpath)
    assert a.shape == b.shape and np.max(np.abs(b[-1] - b[0])) > 1e-3
    assert _rel(a, b) <= TOL


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("kwargs, word, torch_refuses", [
    (dict(lr=-1.0), "lr", True),
    (dict(max_iter=0), "max_iter", False),
    (dict(max_iter=2.5), "max_iter", False),
    (dict(max_eval=0), "max_eval", False),
    (dict(history_size=0), "history_size", False),
    (dict(tolerance_grad=float("nan")), "tolerance_grad", False),
    (dict(tolerance_change="small"), "tolerance_change", False),
    (dict(line_search_fn="backtracking"), "line_search_fn", True),
])
def test_bad_keywords_are_refused_in_one_line(kwargs, word, torch_refuses):
    with pytest.raises(ff.InputError) as info:
        fo.LBFGS(**kwargs)
    assert word in str(info.value) and "\n" not in str(info.value)
    if torch_refuses:  # line_search_fn: at the step that needs it, as a RuntimeError
        p = torch.ones(2, dtype=torch.float64, requires_grad=True)

        def closure():
            opt.zero_grad()
            loss = (p**2).sum()
            loss.backward()
            return loss

        with pytest.raises((ValueError, RuntimeError), match="Invalid learning rate|only"):
            opt = torch.optim.LBFGS([p], **kwargs)
            opt.step(closure)


def test_param_groups_are_refused_as_torch_refuses_them():
    with pytest.raises(ff.InputError, match="parameter groups") as info:
        fo.LBFGS(param_groups=[{"params": "*.bias", "lr": 0.1}])
    assert "\n" not in str(info.value)
    a, b = (torch.zeros(1, requires_grad=True) for _ in range(2))
    with pytest.raises(ValueError, match="parameter groups"):
        torch.optim.LBFGS([{"params": [a]}, {"params": [b], "lr": 0.1}])


def test_an_update_without_value_fn_says_what_it_needs():
    tx = fo.LBFGS()
    w = jnp.ones(2)
    for extra in ({}, {"value": jnp.float64(2.0)}):
        with pytest.raises(ff.InputError, match="value_fn=.*fit.train") as info:
            tx.update(w, tx.init(w), w, **extra)
        assert "\n" not in str(info.value)


def test_skip_unused_refuses_it():
    """torch's LBFGS reads a None gradient as zeros: nothing to skip, and one LBFGS per
    parameter would be another optimizer."""
    tx = fo.skip_unused(fo.LBFGS())
    with pytest.raises(ff.InputError, match="LBFGS") as info:
        tx.init({"a": jnp.ones(2), "b": jnp.ones(1)})
    assert "\n" not in str(info.value)
