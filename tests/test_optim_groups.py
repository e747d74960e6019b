"""Param groups (functional_fit.optim.groups) against torch.optim's own param groups.

A 2 -> 8 -> 1 tanh network, a dict pytree whose dotted names are the torch module's
``named_parameters()`` names ("hidden.weight", ..., "out.bias"), trained 200 full-batch steps
in float64 on both sides with the same groups, the parameters compared after every step. torch
builds its groups from the names with the same glob, so a parameter that lands in another
group on one side shows at the first step. Then the refusals, each beside torch's own
behaviour for the same groups.
"""

from __future__ import annotations

import doctest
import fnmatch
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler as tls

import functional_fit.optim as fo
from functional_fit import InputError
from functional_fit.optim import groups
from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import rel_err

STEPS = 200
# Two float64 implementations of the same update sum in different orders: a few roundings per
# step, growing over 200 steps (measured: <= 5.7e-15, AdamW); a parameter in the
# wrong group or a group's schedule unscaled is 1e-3 or more.
GROUPS_FLOAT64 = 1e-13
NAMES = ("hidden.weight", "hidden.bias", "out.weight", "out.bias")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(2, 8)
        self.out = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def start():
    """(the JAX params, a torch Net holding the same values), float64."""
    torch.manual_seed(0)
    net = Net().double()
    params = {}
    for name, p in net.named_parameters():
        module, leaf = name.split(".")
        params.setdefault(module, {})[leaf] = jnp.asarray(p.detach().numpy())
    return params, net


def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 2))  # (n, 2)
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:]  # (n, 1)
    return x, y


def model(params, x):
    h = jnp.tanh(x @ params["hidden"]["weight"].T + params["hidden"]["bias"][None, :])  # (n, 8)
    return h @ params["out"]["weight"].T + params["out"]["bias"][None, :]  # (n, 1)


def flat_jax(params) -> np.ndarray:
    return np.concatenate([np.ravel(params[n.split(".")[0]][n.split(".")[1]]) for n in NAMES])


def flat_torch(net) -> np.ndarray:
    named = dict(net.named_parameters())
    return np.concatenate([named[n].detach().numpy().ravel() for n in NAMES])


def jax_path(tx) -> list:
    params, _ = start()
    x, y = data()

    def loss(p):
        return jnp.mean((model(p, x) - y) ** 2)

    @jax.jit
    def step(p, state):
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return optax.apply_updates(p, updates), state

    state, path = tx.init(params), []
    for _ in range(STEPS):
        params, state = step(params, state)
        path.append(flat_jax(params))
    return path


def torch_groups(net, selectors: list, keywords: list) -> list:
    """torch's param groups: selector i (a glob or a predicate) with keywords[i], then the rest."""
    taken, out = set(), []
    for selector, kw in zip(selectors, keywords):
        chosen = [n for n, p in net.named_parameters()
                  if (fnmatch.fnmatchcase(n, selector) if isinstance(selector, str)
                      else selector(n, p))]
        taken.update(chosen)
        out.append({"params": [dict(net.named_parameters())[n] for n in chosen], **kw})
    out.append({"params": [p for n, p in net.named_parameters() if n not in taken]})
    return out


def torch_path(make_optimizer, make_scheduler=None) -> list:
    _, net = start()
    x, y = (torch.from_numpy(a) for a in data())
    opt = make_optimizer(net)
    sched = make_scheduler(opt) if make_scheduler else None
    path = []
    for _ in range(STEPS):
        opt.zero_grad()
        torch.mean((net(x) - y) ** 2).backward()
        opt.step()
        if sched:
            sched.step()
        path.append(flat_torch(net))
    return path


def assert_paths_agree(jpath, tpath):
    worst = max(rel_err(a, b) for a, b in zip(jpath, tpath))
    assert worst <= GROUPS_FLOAT64, worst
    moved = rel_err(tpath[-1], tpath[0])
    assert moved > 1e-3, "the run must move the parameters for the comparison to mean anything"


def test_adamw_no_decay_on_biases_smaller_lr_for_one_layer():
    selectors = ["*.bias", ["hidden.weight"]]
    keywords = [{"weight_decay": 0.0}, {"lr": 1e-3}]
    tx = fo.AdamW(lr=1e-2, weight_decay=0.1, param_groups=[
        {"params": s, **kw} for s, kw in zip(selectors, keywords)])
    torch_selectors = ["*.bias", "hidden.weight"]
    tpath = torch_path(lambda net: torch.optim.AdamW(
        torch_groups(net, torch_selectors, keywords), lr=1e-2, weight_decay=0.1))
    assert_paths_agree(jax_path(tx), tpath)


def by_shape(name, leaf):
    """Biases: a predicate over (name, leaf), leaf.ndim on both sides (a tensor has it too)."""
    return leaf.ndim == 1 and name.startswith("out")


@pytest.mark.parametrize("schedule", ["StepLR", "LambdaLR", "ChainedScheduler"])
def test_sgd_momentum_groups_under_a_schedule(schedule):
    """The scheduler scales each group's own lr, as torch's scales each group's initial_lr."""
    selectors = ["hidden.*", by_shape]
    keywords = [{"lr": 0.03, "momentum": 0.5}, {"nesterov": True, "weight_decay": 1e-3}]
    jax_schedule, torch_scheduler = {
        "StepLR": (fls.StepLR(0.1, step_size=40, gamma=0.5),
                   lambda o: tls.StepLR(o, step_size=40, gamma=0.5)),
        "LambdaLR": (fls.LambdaLR(0.1, lambda k: 0.99 ** k),
                     lambda o: tls.LambdaLR(o, lambda k: 0.99 ** k)),
        "ChainedScheduler": (
            fls.ChainedScheduler(0.1, [fls.ConstantLR(0.1, factor=0.5, total_iters=20),
                                       fls.ExponentialLR(0.1, gamma=0.99)]),
            lambda o: tls.ChainedScheduler([tls.ConstantLR(o, factor=0.5, total_iters=20),
                                            tls.ExponentialLR(o, gamma=0.99)])),
    }[schedule]
    tx = fo.SGD(lr=jax_schedule, momentum=0.9, param_groups=[
        {"params": s, **kw} for s, kw in zip(selectors, keywords)])
    tpath = torch_path(lambda net: torch.optim.SGD(
        torch_groups(net, selectors, keywords), lr=0.1, momentum=0.9), torch_scheduler)
    assert_paths_agree(jax_path(tx), tpath)


def test_a_group_with_its_own_schedule():
    """A schedule torch's scaling cannot be written for (a floor) is given per group."""
    tx = fo.Adam(lr=fls.CosineAnnealingLR(1e-2, T_max=50, eta_min=1e-3), param_groups=[
        {"params": "out.*", "lr": fls.CosineAnnealingLR(3e-3, T_max=50, eta_min=1e-3)}])
    tpath = torch_path(
        lambda net: torch.optim.Adam(torch_groups(net, ["out.*"], [{"lr": 3e-3}]), lr=1e-2),
        lambda o: tls.CosineAnnealingLR(o, T_max=50, eta_min=1e-3))
    assert_paths_agree(jax_path(tx), tpath)


#: torch's Muon refuses this network's biases and its SparseAdam its dense gradients: their
#: groups run against torch on their own models (tests/test_optim_muon_sparse.py, the
#: "groups" cases: Muon's weights, SparseAdam's embeddings).
OWN_MODELS = ("Muon", "SparseAdam")


@pytest.mark.parametrize("name", [n for n in fo.OPTIMIZERS if n not in OWN_MODELS])
def test_every_optimizer_takes_groups(name):
    """One group with weight decay (Rprop, which has none: its own lr), the rest at the
    defaults: torch's update, on every optimizer (Muon and SparseAdam: `OWN_MODELS`). LBFGS
    refuses groups, as torch's does (one state over all parameters at once)."""
    takes = inspect.signature(fo.OPTIMIZERS[name]).parameters
    keywords = [{"weight_decay": 0.05} if "weight_decay" in takes else {"lr": 5e-3}]
    if name == "LBFGS":
        with pytest.raises(InputError, match="parameter groups"):
            fo.LBFGS(lr=1e-2, param_groups=[{"params": "hidden.*", **keywords[0]}])
        with pytest.raises(ValueError, match="parameter groups"):
            torch.optim.LBFGS(torch_groups(start()[1], ["hidden.*"], keywords), lr=1e-2)
        return
    tx = fo.OPTIMIZERS[name](lr=1e-2, param_groups=[{"params": "hidden.*", **keywords[0]}])
    tpath = torch_path(lambda net: getattr(torch.optim, name)(
        torch_groups(net, ["hidden.*"], keywords), lr=1e-2))
    assert_paths_agree(jax_path(tx), tpath)


def test_no_groups_and_one_group_of_everything_are_the_plain_optimizer():
    plain = jax_path(fo.RMSprop(lr=1e-3, momentum=0.5))
    assert np.array_equal(jax_path(fo.RMSprop(lr=1e-3, momentum=0.5, param_groups=[])), plain)
    everything = fo.RMSprop(lr=1e-3, momentum=0.5, param_groups=[{"params": "*"}])
    assert np.array_equal(jax_path(everything), plain)


# --------------------------------------------------------------------------- names


def test_names_are_state_dict_names():
    params, net = start()
    assert sorted(jax.tree.leaves(groups.names(params))) == sorted(
        n for n, _ in net.named_parameters())
    assert groups.names([jnp.zeros(2), {"a": jnp.zeros(1)}]) == ["0", {"a": "1.a"}]
    assert groups.names(jnp.zeros(3)) == groups.ROOT_NAME == "params"


def test_a_flat_vector_is_one_parameter_named_params():
    w = jnp.array([1.0, -2.0])
    tx = fo.SGD(lr=0.1, param_groups=[{"params": "params", "lr": 0.5}])
    updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(w), w)
    np.testing.assert_array_equal(updates, [-0.5, -0.5])


def test_the_predicate_sees_shape_and_dtype_under_jit():
    seen = []

    def predicate(name, leaf):
        seen.append((name, leaf.shape, str(leaf.dtype)))
        return leaf.ndim == 2

    params, _ = start()
    tx = fo.SGD(lr=0.1, param_groups=[{"params": predicate, "lr": 0.0}])
    updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
    assert not np.any(updates["hidden"]["weight"]) and np.all(updates["hidden"]["bias"] != 0)
    assert ("out.weight", (1, 8), "float64") in seen


def test_doctests():
    assert doctest.testmod(groups).failed == 0


# --------------------------------------------------------------------------- refusals


def test_a_parameter_in_two_groups_is_refused_as_torch_refuses_it():
    params, net = start()
    tx = fo.Adam(param_groups=[{"params": "hidden.*"}, {"params": "*.bias", "lr": 0.1}])
    with pytest.raises(InputError, match=r"'hidden.bias' is in param_groups 0 and 1"):
        tx.init(params)
    with pytest.raises(ValueError, match="more than one parameter group"):
        torch.optim.Adam(torch_groups(net, ["hidden.*", "*.bias"], [{}, {"lr": 0.1}])[:2])


def test_a_group_that_selects_nothing_is_allowed_as_torch_allows_it():
    params, net = start()
    torch.optim.SGD([{"params": list(net.parameters())}, {"params": []}], lr=0.1)
    tx = fo.SGD(lr=0.1, param_groups=[{"params": "*.gamma", "lr": 1.0}])
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_allclose(updates["out"]["bias"], -0.1 * params["out"]["bias"], rtol=0)


def test_unknown_keys_are_refused_where_torch_keeps_them_unread():
    _, net = start()
    kept = torch.optim.SGD([{"params": list(net.parameters()), "weight_decy": 0.1}], lr=0.1)
    assert kept.param_groups[0]["weight_decay"] == 0  # torch: no decay, silently
    with pytest.raises(InputError, match=r"param_groups\[0\] has no keyword 'weight_decy'"):
        fo.SGD(lr=0.1, param_groups=[{"params": "*", "weight_decy": 0.1}])


@pytest.mark.parametrize("param_groups, match", [
    ({"params": "*"}, r"param_groups must be a list of dicts"),
    (["*.bias"], r"param_groups\[0\] must be a dict"),
    ([{"lr": 0.1}], r"param_groups\[0\] has no 'params'"),
    ([{"params": 3}], r"param_groups\[0\]\['params'\] must be a glob"),
    ([{"params": ["out.bias", 3]}], r"param_groups\[0\]\['params'\] must be a list of names"),
    ([{"params": "*"}, {"params": "*", "lr": -1.0}], r"param_groups\[1\]: lr must be"),
    ([{"params": "*", "momentum": 0.0, "nesterov": True}], r"param_groups\[0\]: nesterov=True"),
])
def test_bad_groups_are_refused_at_construction(param_groups, match):
    with pytest.raises(InputError, match=match):
        fo.SGD(lr=0.1, momentum=0.9, param_groups=param_groups)


def test_bad_selections_are_refused_at_init_naming_them():
    params, _ = start()
    for param_groups, match in [
        ([{"params": ["out.bias", "out.gamma"]}], r"names 'out.gamma', which is not a parameter"),
        ([{"params": lambda name, leaf: 1}], r"the predicate must return a bool, got 1"),
    ]:
        tx = fo.SGD(lr=0.1, param_groups=param_groups)
        with pytest.raises(InputError, match=match):
            tx.init(params)
    tx = fo.SGD(lr=0.1, param_groups=[{"params": "*"}])
    with pytest.raises(InputError, match=r"two parameters are named 'a.b'"):
        tx.init({"a.b": jnp.zeros(1), "a": {"b": jnp.zeros(1)}})


@pytest.mark.parametrize("schedule", [
    lambda: fls.CosineAnnealingLR(0.1, T_max=10, eta_min=0.01),
    lambda: fls.OneCycleLR(0.1, total_steps=10),
    lambda: (lambda count: 0.1 * 0.9 ** count),
    lambda: fls.ChainedScheduler(0.1, [fls.CosineAnnealingLR(0.1, T_max=10, eta_min=0.01),
                                       fls.ExponentialLR(0.1, gamma=0.9)]),
])
def test_a_number_lr_under_a_schedule_it_cannot_scale_is_refused(schedule):
    with pytest.raises(InputError, match=r"param_groups\[0\]\['lr'\].*its own schedule"):
        fo.SGD(lr=schedule(), momentum=0.9, param_groups=[{"params": "out.*", "lr": 0.01}])


def test_per_epoch_schedules_scale_too():
    schedule = fls.per_epoch(fls.StepLR(0.1, step_size=1, gamma=0.5), steps_per_epoch=3)
    tx = fo.SGD(lr=schedule, param_groups=[{"params": "params", "lr": 0.4}])
    w = jnp.zeros(1)
    state, rates = tx.init(w), []
    for _ in range(7):
        updates, state = tx.update(jnp.ones(1), state, w)
        rates.append(-float(updates[0]))
    assert rates == [0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1]
