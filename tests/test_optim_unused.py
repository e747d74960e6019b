"""functional_fit.optim.skip_unused against torch.optim skipping a parameter whose .grad is None.

The model: a tanh layer ("body"), an output layer ("out") used on every step, and an auxiliary
head ("head") whose loss term is added on every third step only. torch leaves the head's
``.grad`` None on the other steps (``zero_grad(set_to_none=True)``) and its optimizer skips it;
JAX hands it a gradient of zeros. float64, 200 steps, the whole path compared.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import OPTIM_GROWTH_FLOAT64, UNIT_ROUNDOFF, rel_err
from torch.optim import lr_scheduler as tls

STEPS = 200
EVERY = 3  # the head is used on steps 0, 3, 6, ...
#: float64, against torch over the whole path: a stable run's rounding adds up to ~1e-16 per
#: step (the 7e-17 measured for OPTIM_GROWTH_FLOAT64), 2e-14 in 200 steps; five times that.
#: Measured: <= 2.3e-15. The paths must also stay under test_optim.py's linear envelope.
TOL = 1e-13
#: Without skipping, the paths here part by 1.6e-2 (RMSprop) to 1.6e-1 (SGD with momentum):
#: above this by a hundred, and a billion times TOL, a real difference, not rounding.
APART = 1e-4


def data():
    """x (32, 2), y (32,) and the head's target z (32,), float64."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2))
    return x, np.sin(x[:, 0]) + 0.5 * x[:, 1], np.cos(x[:, 1])


def torch_module() -> torch.nn.ModuleDict:
    torch.manual_seed(0)
    return torch.nn.ModuleDict({"body": torch.nn.Linear(2, 8), "out": torch.nn.Linear(8, 1),
                                "head": torch.nn.Linear(8, 1)}).double()


def jax_params(module) -> dict:
    """The module's state_dict as a nested dict of JAX arrays: {"body": {"weight": ...}, ...}."""
    params: dict = {}
    for name, value in module.state_dict().items():
        layer, leaf = name.split(".")
        params.setdefault(layer, {})[leaf] = jnp.asarray(value.numpy())
    return params


def jax_loss(params, x, y, z, with_head: bool):
    """Mean squared error of the output, plus the head's when `with_head`."""
    def linear(p, h):
        return h @ p["weight"].T + p["bias"][None, :]  # (n, out)

    h = jnp.tanh(linear(params["body"], x))  # (n, 8)
    loss = jnp.mean((linear(params["out"], h)[:, 0] - y) ** 2)
    if with_head:
        loss = loss + jnp.mean((linear(params["head"], h)[:, 0] - z) ** 2)
    return loss


def jax_path(params, tx, steps=STEPS) -> np.ndarray:
    """(steps+1, P): the flattened params after every step of `tx`."""
    x, y, z = map(jnp.asarray, data())

    @jax.jit
    def step(params, state, with_head):
        grads = jax.grad(lambda p: jax.lax.cond(with_head, lambda: jax_loss(p, x, y, z, True),
                                                lambda: jax_loss(p, x, y, z, False)))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    path = [params]
    for t in range(steps):
        params, state = step(params, state, t % EVERY == 0)
        path.append(params)
    return np.stack([np.concatenate([np.ravel(a) for a in jax.tree.leaves(p)]) for p in path])


def torch_path(module, opt, scheduler=None, clip=None, steps=STEPS) -> np.ndarray:
    """(steps+1, P), in the order of `jax_path` (the sorted names of a nested dict)."""
    x, y, z = map(torch.from_numpy, data())
    names = sorted(module.state_dict())

    def flat():
        sd = module.state_dict()
        return np.concatenate([sd[k].detach().numpy().ravel() for k in names])

    path = [flat()]
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        h = torch.tanh(module["body"](x))
        loss = torch.mean((module["out"](h)[:, 0] - y) ** 2)
        if t % EVERY == 0:
            loss = loss + torch.mean((module["head"](h)[:, 0] - z) ** 2)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        opt.step()
        if scheduler is not None:
            scheduler.step()
        path.append(flat())
    return np.stack(path)


class Case(NamedTuple):
    optimizer: str  # a name in functional_fit.optim.OPTIMIZERS and torch.optim
    kwargs: dict  # the same keywords on both sides
    schedule: Callable | None = None  # () -> (JAX lr schedule, torch optimizer -> scheduler)
    clip: float | None = None  # clip_grad_norm's max_norm, before the step


CASES = {
    "sgd_momentum_wd": Case("SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    "sgd_dampening": Case("SGD", dict(lr=0.05, momentum=0.8, dampening=0.2)),
    "adam": Case("Adam", dict(lr=1e-2)),
    "adam_amsgrad_wd": Case("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-2)),
    "adamw": Case("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    "rmsprop_momentum_centered": Case("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True)),
    "adagrad_wd": Case("Adagrad", dict(lr=0.05, weight_decay=1e-2,
                                       initial_accumulator_value=0.1)),
    # lr / (1 + (t - 1) lr_decay) counts the parameter's own steps t, as torch's state["step"]
    "adagrad_lr_decay": Case("Adagrad", dict(lr=0.05, lr_decay=0.05)),
    "adamax": Case("Adamax", dict(lr=1e-2, weight_decay=1e-2)),
    "nadam": Case("NAdam", dict(lr=1e-2)),
    "radam": Case("RAdam", dict(lr=1e-2, weight_decay=1e-2, decoupled_weight_decay=True)),
    "adadelta": Case("Adadelta", dict(lr=0.5, weight_decay=1e-2)),
    # A schedule counts optimizer steps, used or not, as torch's scheduler does; so does a
    # cycled beta1 (optax.inject_hyperparams), while the bias correction counts the head's own.
    "adam_steplr": Case("Adam", dict(lr=1e-2), lambda: (
        fls.StepLR(1e-2, step_size=20, gamma=0.5), lambda o: tls.StepLR(o, 20, gamma=0.5))),
    "adamw_onecycle_beta1": Case("AdamW", dict(lr=1e-2), lambda: (
        fls.OneCycleLR(1e-2, total_steps=STEPS),
        lambda o: tls.OneCycleLR(o, max_lr=1e-2, total_steps=STEPS))),
    # clip_grad_norm_ outside the wrapper: torch's leaves None gradients out of the norm.
    "sgd_clip": Case("SGD", dict(lr=0.05, momentum=0.9), clip=0.5),
}


def paths(case: Case, wrap: bool):
    module = torch_module()
    params = jax_params(module)
    jax_schedule, torch_scheduler = case.schedule() if case.schedule else (None, None)
    kwargs = dict(case.kwargs, lr=jax_schedule) if jax_schedule else case.kwargs
    tx = fo.OPTIMIZERS[case.optimizer](**kwargs)
    tx = fo.skip_unused(tx) if wrap else tx
    if case.clip is not None:
        tx = optax.chain(fo.clip_grad_norm(case.clip), tx)
    jpath = jax_path(params, tx)
    opt = getattr(torch.optim, case.optimizer)(module.parameters(), **case.kwargs)
    tpath = torch_path(module, opt, torch_scheduler(opt) if torch_scheduler else None, case.clip)
    return jpath, tpath


@pytest.mark.parametrize("name", list(CASES))
def test_skip_unused_is_torchs_none_gradient(name):
    jpath, tpath = paths(CASES[name], wrap=True)
    assert jpath.shape == tpath.shape == (STEPS + 1, 24 + 9 + 9)  # body, head, out
    head = slice(24, 33)  # after body.bias and body.weight: head.bias, head.weight
    assert np.max(np.abs(tpath[-1, head] - tpath[0, head])) > 1e-3  # the head learned
    g = np.max(np.abs(jpath - tpath), axis=1) / np.max(np.abs(tpath))
    assert rel_err(jpath, tpath) <= TOL, f"worst {g.max():.1e} at step {g.argmax()}"
    assert np.all(g <= OPTIM_GROWTH_FLOAT64 * np.maximum(np.arange(g.size), 1))


@pytest.mark.parametrize("name", ["sgd_momentum_wd", "adam", "adamw", "rmsprop_momentum_centered",
                                  "adagrad_wd"])
def test_without_skip_unused_the_paths_part(name):
    """The same runs with the zero gradients applied: what the wrapper is for."""
    jpath, tpath = paths(CASES[name], wrap=False)
    assert rel_err(jpath, tpath) > APART


def test_param_groups_inside():
    """optax.multi_transform with labels computed from the names (as param groups are made)
    inside the wrapper, against torch's two param groups: AdamW, the head at another lr and
    without weight decay."""
    module = torch_module()
    params = jax_params(module)

    def labels(tree):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "head" if path[0].key == "head" else "rest", tree)

    tx = fo.skip_unused(optax.multi_transform(
        {"rest": fo.AdamW(lr=1e-2, weight_decay=0.1), "head": fo.AdamW(lr=3e-2, weight_decay=0)},
        labels))
    jpath = jax_path(params, tx)
    groups = [{"params": [p for n, p in module.named_parameters() if not n.startswith("head")]},
              {"params": list(module["head"].parameters()), "lr": 3e-2, "weight_decay": 0.0}]
    tpath = torch_path(module, torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.1))
    assert rel_err(jpath, tpath) <= TOL


def test_inside_each_group_or_around_all_is_the_same():
    """skip_unused around optax.multi_transform, or inside it around each group's optimizer
    (which then sees the other group's parameters masked), with fixed or computed labels."""
    params = {"a": jnp.ones(3), "h": {"w": jnp.ones(2), "b": jnp.ones(1)}}

    def labels(tree):
        return jax.tree_util.tree_map_with_path(lambda p, _: p[0].key, tree)

    def groups(wrap):
        return {"a": wrap(fo.SGD(lr=0.1, momentum=0.9)), "h": wrap(fo.Adam(lr=0.1))}

    around = fo.skip_unused(optax.multi_transform(groups(lambda tx: tx), labels))
    variants = [optax.multi_transform(groups(fo.skip_unused), labels),
                fo.skip_unused(optax.multi_transform(groups(lambda tx: tx), labels(params)))]
    states = [tx.init(params) for tx in [around] + variants]
    rng = np.random.default_rng(2)
    for t in range(6):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
        grads["h"] = jax.tree.map(lambda g: g * float(t % 3 == 0), grads["h"])  # h used every third
        out = [jax.jit(tx.update)(grads, s, params) for tx, s in zip([around] + variants, states)]
        states = [s for _, s in out]
        for updates, _ in out[1:]:
            assert rel_err(flat_tree(updates), flat_tree(out[0][0])) <= 8 * UNIT_ROUNDOFF["float64"]
    adam = states[0].per_param["h"]["w"].inner_states["h"].inner_state
    assert int(optax.tree_utils.tree_get(adam, "count")) == 2  # steps 0 and 3


def flat_tree(tree) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


# --------------------------------------------------------------------------- the state


def test_bias_correction_counts_the_parameters_own_steps():
    """A head first used on step 4 takes Adam's first step, -lr * g / (|g| + eps), as torch's
    state["step"] = 1 gives; the body, used on every step, has counted 4."""
    lr, eps = 0.1, 1e-8
    tx = fo.skip_unused(fo.Adam(lr=lr, eps=eps))
    params = {"body": jnp.zeros(3), "head": jnp.zeros(2)}
    state = tx.init(params)
    body = jnp.array([1.0, -2.0, 0.5])
    for _ in range(3):
        updates, state = tx.update({"body": body, "head": jnp.zeros(2)}, state, params)
        assert np.all(np.asarray(updates["head"]) == 0)
    g = jnp.array([0.3, -4.0])
    updates, state = tx.update({"body": body, "head": g}, state, params)
    expected = -lr * np.asarray(g) / (np.abs(np.asarray(g)) + eps)
    np.testing.assert_allclose(updates["head"], expected, rtol=1e-15)
    assert int(optax.tree_utils.tree_get(state.per_param["head"], "count")) == 1
    assert int(optax.tree_utils.tree_get(state.per_param["body"], "count")) == 4
    plain = fo.Adam(lr=lr, eps=eps)  # one shared count: a bias correction for step 4
    state = plain.init(params)
    for grads in [{"body": body, "head": jnp.zeros(2)}] * 3 + [{"body": body, "head": g}]:
        updates, state = plain.update(grads, state, params)
    assert np.max(np.abs(np.asarray(updates["head"]) - expected)) > 1e-2


def test_a_zero_gradient_is_skipped_even_when_used():
    """The documented difference: torch steps a parameter whose .grad is a tensor of zeros
    (momentum moves it); here an exactly zero gradient counts as None."""
    tx = fo.skip_unused(fo.SGD(lr=0.1, momentum=0.9))
    p = jnp.array([1.0, 2.0])
    state = tx.init(p)
    _, state = tx.update(jnp.array([1.0, 1.0]), state, p)
    updates, after = tx.update(jnp.zeros(2), state, p)
    assert np.all(np.asarray(updates) == 0)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after),
                                                    jax.tree.leaves(state)))
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    for grad in ([1.0, 1.0], [0.0, 0.0]):
        before = w.detach().clone()
        w.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
    assert torch.all(w.detach() != before)  # torch's zero tensor: momentum still moves it


def test_nan_gradient_counts_as_used():
    tx = fo.skip_unused(fo.Adam(lr=0.1))
    p = jnp.zeros(2)
    updates, state = tx.update(jnp.array([np.nan, 0.0]), tx.init(p), p)
    assert np.isnan(np.asarray(updates)[0]) and int(optax.tree_utils.tree_get(state.per_param[0], "count")) == 1


@pytest.mark.parametrize("name", list(fo.OPTIMIZERS))
def test_every_parameter_used_changes_nothing(name):
    """With no zero gradient, the wrapper's updates are tx's own, to a few roundings (XLA fuses
    the program of each parameter alone otherwise than the whole; measured: <= 4 u). LBFGS is
    refused: torch's reads a None gradient as zeros and looks across all parameters at once."""
    takes = inspect.signature(fo.OPTIMIZERS[name]).parameters
    kwargs = dict(lr=0.01, **({"weight_decay": 0.1} if "weight_decay" in takes else {}))
    rng = np.random.default_rng(1)
    b_shape = (3, 1) if name == "Muon" else (3,)  # Muon takes 2-D parameters only
    params = {"a": jnp.asarray(rng.normal(size=(2, 3))), "b": jnp.asarray(rng.normal(size=b_shape))}
    if name == "LBFGS":
        with pytest.raises(ff.InputError, match="LBFGS"):
            fo.skip_unused(fo.LBFGS(**kwargs)).init(params)
        return
    plain, wrapped = fo.OPTIMIZERS[name](**kwargs), fo.skip_unused(fo.OPTIMIZERS[name](**kwargs))
    s1, s2 = plain.init(params), wrapped.init(params)
    for _ in range(4):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
        u1, s1 = jax.jit(plain.update)(grads, s1, params)
        u2, s2 = jax.jit(wrapped.update)(grads, s2, params)
        for x, y in zip(jax.tree.leaves(u2), jax.tree.leaves(u1)):
            assert rel_err(x, y) <= 8 * UNIT_ROUNDOFF["float64"]
        params = optax.apply_updates(params, u1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_updates_and_state_keep_the_dtype(dtype):
    tx = fo.skip_unused(fo.AdamW(lr=fls.OneCycleLR(0.1, 10)))
    params = {"a": jnp.ones((2, 3), dtype), "b": jnp.ones(3, dtype)}
    grads = {"a": jnp.ones((2, 3), dtype), "b": jnp.zeros(3, dtype)}
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.shape:
            assert leaf.dtype == dtype


def test_extra_arguments_reach_the_inner_transformation():
    def scale_by_value():
        def update(updates, state, params=None, *, value):
            return jax.tree.map(lambda g: g * value, updates), state
        return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)

    tx = fo.skip_unused(scale_by_value())
    g = {"a": jnp.array([1.0, 2.0]), "b": jnp.zeros(1)}
    updates, _ = tx.update(g, tx.init(g), value=3.0)
    assert updates["a"].tolist() == [3.0, 6.0] and updates["b"].tolist() == [0.0]


@pytest.mark.parametrize("tx", [fo.Adam, None, "Adam"])
def test_not_a_transformation_is_refused_in_one_line(tx):
    with pytest.raises(ff.InputError) as info:
        fo.skip_unused(tx)
    assert "tx" in str(info.value) and "\n" not in str(info.value)


def test_docstring_examples_run():
    results = doctest.testmod(importlib.import_module("functional_fit.optim.unused"))
    assert results.attempted >= 5 and results.failed == 0
