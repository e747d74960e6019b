"""parity.optim.to_optax and load_state: a torch optimizer's state into optax and back.

Every optimizer of functional_fit.optim that has a state, with its main options, and every
scheduler of functional_fit.optim.lr_scheduler (SWALR and ReduceLROnPlateau too), on a
2 -> 3 -> 1 tanh network in float64 (Muon: without biases; SparseAdam: an embedding):
(1) the round trips are exact: torch -> to_optax -> load_state gives torch's state_dict bit for
bit, and optax -> load_state -> to_optax the optax state; (2) JAX continues from to_optax as
torch continues itself, and torch from load_state as JAX continues itself. Then the issue's
3-layer network (AdamW, two groups, OneCycleLR; and ReduceLROnPlateau) over 100 + 100 steps
both ways, parameters skipped on some steps (to_optax(unused=True): skip_unused's
per-parameter states), refusals.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler as tls
from torch.optim.swa_utils import SWALR

from functional_fit import engine
from functional_fit.checks import InputError
from functional_fit.models import mlp
from parity.optim import load_state, to_optax
from parity.params import from_module, load

#: Two float64 implementations of one update sum in different orders: a few roundings per step,
#: grown by the steps that follow; the issue asks for 1e-12 relative.
CONTINUATION = 1e-12
K, M = 5, 5  # torch steps before the hand-over, steps after it

torch.manual_seed(0)
X = torch.randn(8, 2, dtype=torch.float64)
Y = torch.sin(X.sum(1, keepdim=True))


def net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                               torch.nn.Linear(3, 1)).double()


def _loss(y_hat, y):
    return jnp.mean((y_hat - y) ** 2)


def torch_steps(module, opt, sched, n):
    def closure():  # LBFGS's
        opt.zero_grad()
        loss = torch.mean((module(X) - Y) ** 2)
        loss.backward()
        return loss

    for _ in range(n):
        loss = closure()
        opt.step(closure) if isinstance(opt, torch.optim.LBFGS) else opt.step()
        if isinstance(sched, tls.ReduceLROnPlateau):
            sched.step(loss.item())  # as parity.fit.train_steps does
        elif sched is not None:
            sched.step()


_COMPILED = {}  # (tx, model) -> engine.step under jax.jit: LBFGS's loops, traced once


def jax_steps(params, state, tx, n, model=mlp):
    params = {k: jnp.asarray(v) for k, v in params.items()}
    x, y = jnp.asarray(X.numpy()), jnp.asarray(Y.numpy())
    step = _COMPILED.get((tx, model))
    if step is None:
        step = _COMPILED[tx, model] = jax.jit(lambda p, s: engine.step(
            p, s, x, y, model=model, loss=_loss, optimizer=tx))
    for _ in range(n):
        params, state, _ = step(params, state)
    return params, state


def no_bias_net():
    """Muon's: 2-D parameters only."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False), torch.nn.Tanh(),
                               torch.nn.Linear(3, 1, bias=False)).double()


def no_bias_mlp(params, x):
    return jnp.tanh(x @ params["0.weight"].T) @ params["2.weight"].T


IDX = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])  # rows 4 and 5 are never looked up


class Embedded(torch.nn.Module):
    """SparseAdam's: an embedding with sparse gradients, y = sum(x * emb[IDX], 1)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(6, 2, sparse=True).double()

    def forward(self, x):
        return (x * self.emb(IDX)).sum(1, keepdim=True)


def embedded(params, x):
    """Embedded in JAX: the gradient of the rows not looked up is zero (dense)."""
    return jnp.sum(x * params["emb.weight"][jnp.asarray(IDX.numpy())], 1, keepdims=True)


def sgd(**kw):
    return lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, **kw)


O = torch.optim
CASES = {  # name: (optimizer of params, scheduler of optimizer or None)
    "SGD momentum": (sgd(), None),
    "SGD dampening": (sgd(dampening=0.5), None),
    "SGD nesterov wd": (sgd(nesterov=True, weight_decay=0.01), None),
    "Adam": (lambda p: O.Adam(p, lr=0.01), None),
    "Adam amsgrad": (lambda p: O.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.01), None),
    "AdamW": (lambda p: O.AdamW(p, lr=0.01, weight_decay=0.1), None),
    "RMSprop": (lambda p: O.RMSprop(p, lr=0.01), None),
    "RMSprop centered momentum": (lambda p: O.RMSprop(p, lr=0.01, momentum=0.5,
                                                      centered=True), None),
    "Adagrad": (lambda p: O.Adagrad(p, lr=0.1), None),
    "Adagrad lr_decay": (lambda p: O.Adagrad(p, lr=0.1, lr_decay=0.01,
                                             initial_accumulator_value=0.1), None),
    "Adamax": (lambda p: O.Adamax(p, lr=0.01), None),
    "NAdam": (lambda p: O.NAdam(p, lr=0.01), None),
    "NAdam decoupled": (lambda p: O.NAdam(p, lr=0.01, weight_decay=0.1,
                                          decoupled_weight_decay=True), None),
    "RAdam": (lambda p: O.RAdam(p, lr=0.01), None),
    "Adadelta": (lambda p: O.Adadelta(p, lr=1.0), None),
    "Rprop": (lambda p: O.Rprop(p, lr=0.01), None),
    "ASGD": (lambda p: O.ASGD(p, lr=0.05, t0=3), None),
    "Adafactor": (lambda p: O.Adafactor(p, lr=0.01), None),
    "StepLR": (sgd(), lambda o: tls.StepLR(o, step_size=3, gamma=0.5)),
    "MultiStepLR": (sgd(), lambda o: tls.MultiStepLR(o, [2, 4, 4, 7], gamma=0.5)),
    "ExponentialLR": (sgd(), lambda o: tls.ExponentialLR(o, gamma=0.9)),
    "CosineAnnealingLR": (sgd(), lambda o: tls.CosineAnnealingLR(o, T_max=6, eta_min=1e-3)),
    "LinearLR": (sgd(), lambda o: tls.LinearLR(o, start_factor=0.25, total_iters=6)),
    "ConstantLR": (sgd(), lambda o: tls.ConstantLR(o, factor=0.5, total_iters=4)),
    "LambdaLR": (sgd(), lambda o: tls.LambdaLR(o, lambda k: 1 / (k + 1))),
    "MultiplicativeLR": (sgd(), lambda o: tls.MultiplicativeLR(o, lambda k: 0.9)),
    "PolynomialLR": (sgd(), lambda o: tls.PolynomialLR(o, total_iters=8, power=2.0)),
    "CosineAnnealingWarmRestarts": (sgd(), lambda o: tls.CosineAnnealingWarmRestarts(
        o, T_0=3, T_mult=2)),
    "OneCycleLR SGD": (sgd(), lambda o: tls.OneCycleLR(o, max_lr=0.1, total_steps=20)),
    "OneCycleLR Adam": (lambda p: O.Adam(p, lr=0.01), lambda o: tls.OneCycleLR(
        o, max_lr=0.02, total_steps=20, anneal_strategy="linear", three_phase=True)),
    "CyclicLR": (sgd(), lambda o: tls.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3)),
    "SequentialLR": (sgd(), lambda o: tls.SequentialLR(
        o, [tls.LinearLR(o, start_factor=0.5, total_iters=3), tls.ExponentialLR(o, 0.9)],
        milestones=[4])),
    "ChainedScheduler": (sgd(), lambda o: tls.ChainedScheduler(
        [tls.ConstantLR(o, factor=0.5, total_iters=4), tls.ExponentialLR(o, gamma=0.9)])),
    "ASGD StepLR": (lambda p: O.ASGD(p, lr=0.05, t0=3),
                    lambda o: tls.StepLR(o, step_size=3, gamma=0.5)),
    "Adafactor ExponentialLR": (lambda p: O.Adafactor(p, lr=0.01),
                                lambda o: tls.ExponentialLR(o, gamma=0.9)),
    "RMSprop LinearLR": (lambda p: O.RMSprop(p, lr=0.01, momentum=0.5),
                         lambda o: tls.LinearLR(o, start_factor=0.5, total_iters=4)),
    "Adam groups StepLR": (lambda p: O.Adam(_two_groups(p), lr=0.01, weight_decay=0.1),
                           lambda o: tls.StepLR(o, step_size=3, gamma=0.5)),
    "LBFGS": (lambda p: O.LBFGS(p, lr=0.5, max_iter=3, history_size=4), None),
    "LBFGS strong_wolfe": (lambda p: O.LBFGS(p, max_iter=4, history_size=3,
                                             line_search_fn="strong_wolfe"), None),
    "LBFGS StepLR": (lambda p: O.LBFGS(p, lr=0.5, max_iter=3, history_size=4),
                     lambda o: tls.StepLR(o, step_size=2, gamma=0.5)),
    "Muon": (lambda p: O.Muon(p, lr=0.02), None),
    "Muon no nesterov": (lambda p: O.Muon(p, lr=0.02, nesterov=False, weight_decay=0.0), None),
    "SparseAdam": (lambda p: O.SparseAdam(p, lr=0.05), None),
    "SWALR cos": (sgd(), lambda o: SWALR(o, swa_lr=0.01, anneal_epochs=8)),
    "SWALR linear": (sgd(), lambda o: SWALR(o, swa_lr=0.2, anneal_epochs=7,
                                            anneal_strategy="linear")),
    # a threshold of 30%: reductions within the K steps and within the M after them
    "ReduceLROnPlateau": (sgd(), lambda o: tls.ReduceLROnPlateau(o, factor=0.5, patience=0,
                                                                 threshold=0.3)),
    "Adam groups ReduceLROnPlateau": (
        lambda p: O.Adam(_two_groups(p), lr=0.01),
        lambda o: tls.ReduceLROnPlateau(o, factor=0.5, patience=1, threshold=0.3, cooldown=1)),
}

#: case -> (torch module, its JAX model), where not (net, mlp).
SETUPS = {"Muon": (no_bias_net, no_bias_mlp), "Muon no nesterov": (no_bias_net, no_bias_mlp),
          "SparseAdam": (Embedded, embedded)}


def _two_groups(params):
    params = list(params)
    return [{"params": [p for p in params if p.ndim == 2]},
            {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0, "lr": 0.02}]


def started(case, steps=K):
    """A network, its optimizer and scheduler after `steps` torch steps."""
    make_opt, make_sched = CASES[case]
    module = SETUPS.get(case, (net,))[0]()
    opt = make_opt(module.parameters())
    sched = make_sched(opt) if make_sched else None
    torch_steps(module, opt, sched, steps)
    return module, opt, sched


def assert_same(a, b, where="state_dict"):
    """Equal trees of dicts, lists and tensors: same keys, dtypes, shapes and bits."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def holds_step(state) -> bool:
    """Whether an optax state counts steps. torch's step of RMSprop and Adadelta (and Adagrad,
    where its state keeps none), which their updates do not read, has no place in a state
    without a count: load_state keeps the optimizer's own then (a fresh one's: 0)."""
    return any(optax.tree_utils.tree_get_all_with_path(state, name) for name in ("count", "step"))


#: SGD with dampening keeps a count in optax (scale_by_torch_momentum reads only whether it is
#: 0) and none in torch: torch's state gives back 1 for every count from 1 on.
FLAG_COUNT = {"SGD dampening"}


#: torch keeps no step count for LBFGS: it comes back as 0 (without a scheduler), which only a
#: schedule would read.
NO_COUNT = {"LBFGS", "LBFGS strong_wolfe"}


def lbfgs_values(state_dict):
    """LBFGS's state_dict with t and H_diag as floats (torch holds a float or a () tensor, by
    the path it took; load_state writes () tensors, equal in value) and without torch's
    scratch ``al`` (written before it is read in every iteration)."""
    for s in state_dict["state"].values():
        s.pop("al", None)
        s.update({k: float(s[k]) for k in ("t", "H_diag") if k in s})
    return state_dict


@pytest.mark.parametrize("case", CASES)
def test_round_trips_are_exact(case):
    module, opt, sched = started(case)
    tx, state = to_optax(opt, module, sched)
    kept = jax.tree.map(np.array, state)
    fresh_module, fresh_opt, fresh_sched = started(case, steps=0)
    load(fresh_module, from_module(module))
    load_state(fresh_opt, fresh_module, state, fresh_sched)
    expected = opt.state_dict()
    if not holds_step(state):
        for s in expected["state"].values():
            if "step" in s:
                s["step"] = torch.zeros_like(s["step"])
    if case.startswith("LBFGS"):
        expected, got = lbfgs_values(expected), lbfgs_values(fresh_opt.state_dict())
    else:
        got = fresh_opt.state_dict()
    assert_same(expected, got)
    if sched is not None:
        assert_same(sched.state_dict(), fresh_sched.state_dict(), "scheduler")
    # optax -> torch -> optax, from a state JAX has moved on
    model = SETUPS.get(case, (net, mlp))[1]
    _, moved = jax_steps(from_module(module), state, tx, M, model)
    if case in FLAG_COUNT | NO_COUNT:
        moved = optax.tree_utils.tree_set(moved, count=jnp.asarray(case in FLAG_COUNT,
                                                                   jnp.int32))
    load_state(fresh_opt, fresh_module, moved, fresh_sched)
    _, again = to_optax(fresh_opt, fresh_module, fresh_sched)
    assert jax.tree.structure(again) == jax.tree.structure(moved)
    for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(again)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the states are copies: torch stepping on in place leaves them as they were
    torch_steps(module, opt, sched, 1)
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, np.asarray(b))


def rel(a: dict, b: dict) -> float:
    """max |a - b| / max |b| over every parameter."""
    num = max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in b)
    return num / max(float(np.max(np.abs(np.asarray(b[k])))) for k in b)


@pytest.mark.parametrize("case", CASES)
def test_continues_both_ways(case):
    module, opt, sched = started(case)
    tx, state = to_optax(opt, module, sched)
    model = SETUPS.get(case, (net, mlp))[1]
    params, state = jax_steps(from_module(module), state, tx, M, model)
    before = opt.param_groups[0]["lr"]
    torch_steps(module, opt, sched, M)
    assert rel(params, from_module(module)) <= CONTINUATION
    if isinstance(sched, tls.ReduceLROnPlateau):  # reduced before the hand-over and after
        assert opt.param_groups[0]["lr"] < before < opt.defaults["lr"]
    # and back: torch from JAX's params and state, against JAX's own continuation
    back_module, back_opt, back_sched = started(case, steps=0)
    load(back_module, {k: np.array(v) for k, v in params.items()})
    load_state(back_opt, back_module, state, back_sched)
    torch_steps(back_module, back_opt, back_sched, M)
    params, _ = jax_steps(params, state, tx, M, model)
    assert rel(from_module(back_module), params) <= CONTINUATION


# --------------------------------------------------------------------------- the case


def deep_net():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8),
                               torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


def adamw_one_cycle(module):
    """AdamW, no weight decay on the biases, under OneCycleLR cycling beta1, for 300 steps."""
    named = dict(module.named_parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in named.items() if n.endswith("weight")]},
         {"params": [p for n, p in named.items() if n.endswith("bias")], "weight_decay": 0.0}],
        lr=1e-3, weight_decay=0.05)
    return opt, tls.OneCycleLR(opt, max_lr=0.02, total_steps=300, cycle_momentum=True)


def scan_steps(tx):
    """params, state -> after 100 steps of `tx`, compiled: the fit continued from the state as
    to_optax's docstring says (engine.train_steps from a Carry holding it)."""
    x, y = jnp.asarray(X.numpy()), jnp.asarray(Y.numpy())
    steps = jax.jit(lambda carry: engine.train_steps(carry, x, y, tx, model=mlp, loss=_loss,
                                                     steps=100, trace=False)[0])

    def run(params, state, n):
        assert n == 100
        params = {k: jnp.asarray(v) for k, v in params.items()}
        carry = steps(engine.init_carry(params, tx)._replace(opt_state=state))
        return carry.params, carry.opt_state

    return run


def test_a_three_layer_network_resumes_in_jax_and_back_in_torch():
    module = deep_net()
    opt, sched = adamw_one_cycle(module)
    tx, start = to_optax(opt, module, sched)  # torch's start, for the way back below
    run = scan_steps(tx)
    torch_steps(module, opt, sched, 100)
    _, state = to_optax(opt, module, sched)
    params, _ = run(from_module(module), state, 100)
    torch_steps(module, opt, sched, 100)
    assert rel(params, from_module(module)) <= CONTINUATION
    # JAX 100 steps from torch's start, load_state, torch continues 100, against JAX's own
    module = deep_net()
    params, state = run(from_module(module), start, 100)
    opt, sched = adamw_one_cycle(module)
    load(module, {k: np.array(v) for k, v in params.items()})
    load_state(opt, module, state, sched)
    assert sched.last_epoch == 100 and opt.param_groups[0]["betas"][0] < 0.95  # cycled on
    torch_steps(module, opt, sched, 100)
    params, _ = run(params, state, 100)
    assert rel(from_module(module), params) <= CONTINUATION


def adamw_plateau(module):
    """AdamW, no weight decay on the biases, under ReduceLROnPlateau on each step's loss: it
    reduces the rate within the first 100 steps and within the next 100."""
    named = dict(module.named_parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in named.items() if n.endswith("weight")]},
         {"params": [p for n, p in named.items() if n.endswith("bias")], "weight_decay": 0.0}],
        lr=0.01, weight_decay=0.05)
    return opt, tls.ReduceLROnPlateau(opt, factor=0.7, patience=5, threshold=0.05, cooldown=2)


def test_a_three_layer_network_resumes_under_reduce_lr_on_plateau():
    module = deep_net()
    opt, sched = adamw_plateau(module)
    tx, start = to_optax(opt, module, sched)
    run = scan_steps(tx)
    torch_steps(module, opt, sched, 100)
    reduced = opt.param_groups[0]["lr"]
    tx, state = to_optax(opt, module, sched)
    params, _ = scan_steps(tx)(from_module(module), state, 100)
    torch_steps(module, opt, sched, 100)
    assert opt.param_groups[0]["lr"] < reduced < 0.01  # reduced before the hand-over and after
    assert rel(params, from_module(module)) <= CONTINUATION
    # JAX 100 steps from torch's start, load_state, torch continues 100, against JAX's own
    module = deep_net()
    params, state = run(from_module(module), start, 100)
    opt, sched = adamw_plateau(module)
    load(module, {k: np.array(v) for k, v in params.items()})
    load_state(opt, module, state, sched)
    assert sched.last_epoch == 100 and opt.param_groups[1]["lr"] == reduced
    torch_steps(module, opt, sched, 100)
    params, _ = run(params, state, 100)
    assert rel(from_module(module), params) <= CONTINUATION


# --------------------------------------------------------------------------- refusals


class Unknown(tls.LambdaLR):
    """A scheduler class that SCHEDULERS has no entry for."""


def _refused(call, starts: str):
    with pytest.raises(InputError) as e:
        call()
    assert str(e.value).startswith(starts) and "\n" not in str(e.value), str(e.value)


def test_refusals_name_the_argument():
    from parity.optim import LectureSGD

    module, opt, sched = started("StepLR")
    _refused(lambda: to_optax(LectureSGD(module.parameters(), lr=0.1), module),
             "optimizer: no reader for torch.optim.LectureSGD")
    _refused(lambda: to_optax("Adam", module), "optimizer must be a torch.optim.Optimizer, got str")
    _refused(lambda: load_state(None, module, {}), "optimizer must be a torch.optim.Optimizer")
    _refused(lambda: to_optax(opt, module, Unknown(opt, lambda k: 1.0)),
             "scheduler: no reader for torch's Unknown")
    _refused(lambda: to_optax(opt, net(seed=1)), "module: param_groups[0]")
    _refused(lambda: to_optax(opt, from_module(module)), "module must be a torch.nn.Module")
    _refused(lambda: to_optax(torch.optim.SGD(module[0].parameters(), lr=0.1), module),
             "module: its '2.weight'")
    other = torch.optim.SGD(module.parameters(), lr=0.1)
    _refused(lambda: to_optax(other, module, sched), "scheduler: this StepLR")
    _refused(lambda: load_state(opt, module, {"not": "a state"}, sched), "state:")
    plateau = tls.ReduceLROnPlateau(opt, min_lr=[0.0])
    _refused(lambda: to_optax(opt, module, plateau, unused=True), "unused: not with a "
             "ReduceLROnPlateau")
    plateau.min_lrs = [0.0, 1e-3]
    _refused(lambda: to_optax(opt, module, plateau), "scheduler: its min_lrs differ")
    _, state = to_optax(opt, module, sched)  # at step K
    torch_steps(module, opt, sched, 2)
    _refused(lambda: load_state(opt, module, state, sched),
             f"scheduler: it has stepped {K + 2} times, past the state's {K}")


def test_a_group_whose_parameters_took_different_steps_is_refused():
    module = net()
    opt = torch.optim.Adam(module.parameters(), lr=0.01)
    torch.mean((module(X) - Y) ** 2).backward()
    module[2].bias.grad = None  # torch skips it: its step count stays behind
    opt.step()
    _refused(lambda: to_optax(opt, module), "optimizer: the parameters of param_groups[0] "
             "have taken different numbers of steps (0, 1)")


# --------------------------------------------------------------------------- unused parameters

UNUSED = "2.bias"  # None in torch, zero in JAX, on the odd steps


def torch_steps_unused(module, opt, sched, start, n):
    for k in range(start, start + n):
        opt.zero_grad()
        torch.mean((module(X) - Y) ** 2).backward()
        if k % 2:
            module[2].bias.grad = None
        opt.step()
        if sched is not None:
            sched.step()


def jax_steps_unused(params, state, tx, start, n):
    params = {k: jnp.asarray(v) for k, v in params.items()}
    x, y = jnp.asarray(X.numpy()), jnp.asarray(Y.numpy())
    for k in range(start, start + n):
        g = jax.grad(lambda p: _loss(mlp(p, x), y))(params)
        if k % 2:
            g[UNUSED] = jnp.zeros_like(g[UNUSED])
        with jax.numpy_dtype_promotion("standard"):
            updates, state = tx.update(g, state, params)
            params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("case", ["Adam groups StepLR", "NAdam", "OneCycleLR Adam"])
def test_parameters_skipped_on_some_steps_resume_with_skip_unused(case):
    make_opt, make_sched = CASES[case]
    module = net()
    opt = make_opt(module.parameters())
    sched = make_sched(opt) if make_sched else None
    torch_steps_unused(module, opt, sched, 0, K)  # the bias has taken 2 steps, the rest 5
    _refused(lambda: to_optax(opt, module, sched), "optimizer: the parameters of param_groups")
    tx, state = to_optax(opt, module, sched, unused=True)
    fresh_module, fresh_opt, fresh_sched = started(case, steps=0)
    load_state(fresh_opt, fresh_module, state, fresh_sched)  # exact, each parameter's own step
    assert_same(opt.state_dict(), fresh_opt.state_dict())
    params, state = jax_steps_unused(from_module(module), state, tx, K, M)
    torch_steps_unused(module, opt, sched, K, M)
    assert rel(params, from_module(module)) <= CONTINUATION
    _, again = to_optax(opt, module, sched, unused=True)
    assert jax.tree.structure(again) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=CONTINUATION, atol=0)
