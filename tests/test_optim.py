"""functional_fit.optim against torch.optim itself: whole 1,000-step paths, one table.

Every optimizer runs at its defaults and with every keyword away from its default at least
once, including the keywords that interact (centered with momentum, amsgrad with weight decay,
nesterov with weight decay, decoupled weight decay in NAdam and RAdam, maximize), with every
scheduler and with clipping; on the lecture's models (one flat parameter vector) and on a
dict-of-arrays tanh network, full batch and in minibatches (one with a short last batch).

float64: the two paths agree to `TRAJECTORY_FLOAT64` (1e-9) relative over the whole path, and
the difference grows at most linearly, by `OPTIM_GROWTH_FLOAT64` per step: a problem whose
rounding is amplified (a chaotic stretch of a run) would pass the first check for a while and
fail the second early. The learning rates are small and stable for that reason; with the
defaults of RMSprop (1e-2) and Adadelta (1.0), and Adagrad at 0.1, runs on these problems reach
such stretches within 1,000 steps (where the paths part by 1e-6 to 1e-2, growing geometrically
from rounding: chaos, not a porting error), so their "defaults" rows run on the linear model
from a start farther from its optimum than they travel in 1,000 steps ("linear_far"), and
their other rows at smaller rates.

float32: fifteen rows of the table, 150 steps, within `OPTIM_TRAJECTORY_FLOAT32` (derived in
`functional_fit.tolerances`; measured: <= 2.2e-6).
"""

from __future__ import annotations

import doctest
import inspect
import math
from typing import Callable, NamedTuple

import jax
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import (
    MAX_STEPS_FLOAT32,
    OPTIM_GROWTH_FLOAT64,
    OPTIM_STEPS,
    OPTIM_TRAJECTORY_FLOAT32,
    TRAJECTORY_FLOAT64,
    rel_err,
)
from torch.optim import lr_scheduler as tls

from _paths import EveryKSteps, flat, growth, jax_train, torch_train
from test_optim_muon_sparse import MUON_CASES, SPARSE_CASES
from comparison.problems import make

N = 100  # the lecture's data


class Case(NamedTuple):
    optimizer: str  # a name in functional_fit.optim.OPTIMIZERS and torch.optim
    kwargs: dict  # the same keywords on both sides
    problem: str = "mlp"  # linear | poly2 | mlp
    batch_size: int | None = None  # None: full batch
    schedule: Callable | None = None  # () -> (JAX schedule for lr, torch scheduler factory)
    per_epoch: bool = False  # the scheduler steps once per epoch
    clip: tuple | None = None  # (max_norm, norm_type) of clip_grad_norm


def sched(jax_schedule, torch_scheduler):
    """Both sides of a schedule; the torch side is made on the torch optimizer."""
    return lambda: (jax_schedule(), torch_scheduler)


CASES = {
    # SGD: defaults (lr 1e-3); momentum with dampening and L2; nesterov with L2; maximize.
    "sgd_defaults": Case("SGD", {}, "poly2", batch_size=10),
    "sgd_momentum_dampening_wd": Case("SGD", dict(lr=0.02, momentum=0.9, dampening=0.3,
                                                  weight_decay=1e-2)),
    "sgd_nesterov_wd": Case("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
                            "mlp", batch_size=7),
    "sgd_momentum_maximize": Case("SGD", dict(lr=0.05, momentum=0.5, maximize=True), "poly2"),
    # Adam and AdamW.
    "adam_defaults": Case("Adam", {}, "linear"),
    "adam_defaults_mlp_batches": Case("Adam", {}, "mlp", batch_size=10),
    "adam_amsgrad_wd": Case("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-2), "mlp",
                            batch_size=10),
    "adam_betas_eps_decoupled": Case("Adam", dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-6,
                                                  weight_decay=0.1, decoupled_weight_decay=True),
                                     "poly2"),
    "adam_amsgrad_maximize": Case("Adam", dict(lr=3e-3, amsgrad=True, maximize=True)),
    "adamw_defaults": Case("AdamW", {}),
    "adamw_amsgrad_maximize": Case("AdamW", dict(lr=1e-2, betas=(0.85, 0.995), eps=1e-7,
                                                 weight_decay=0.05, amsgrad=True, maximize=True),
                                   "poly2", batch_size=10),
    # RMSprop: centered divides by a variance that full-batch gradients make tiny (and its
    # rounding large), so the centered rows take minibatches.
    "rmsprop_defaults": Case("RMSprop", {}, "linear_far"),
    "rmsprop_centered_momentum": Case("RMSprop", dict(lr=1e-3, alpha=0.9, momentum=0.8,
                                                      centered=True), "mlp", batch_size=10),
    "rmsprop_wd_eps_maximize": Case("RMSprop", dict(lr=1e-3, alpha=0.95, eps=1e-6,
                                                    weight_decay=1e-3, momentum=0.5,
                                                    maximize=True), "linear_far"),
    "rmsprop_centered_poly": Case("RMSprop", dict(lr=2e-3, centered=True), "poly2",
                                  batch_size=7),
    # Adagrad.
    "adagrad_defaults": Case("Adagrad", {}),
    "adagrad_every_keyword": Case("Adagrad", dict(lr=0.05, lr_decay=1e-3, weight_decay=1e-3,
                                                  initial_accumulator_value=0.1, eps=1e-8,
                                                  maximize=True), "poly2", batch_size=10),
    # Adamax.
    "adamax_defaults": Case("Adamax", {}, "poly2"),
    "adamax_every_keyword": Case("Adamax", dict(lr=5e-3, betas=(0.8, 0.99), eps=1e-6,
                                                weight_decay=1e-3, maximize=True), "mlp",
                                 batch_size=10),
    # NAdam.
    "nadam_defaults": Case("NAdam", {}),
    "nadam_decoupled": Case("NAdam", dict(lr=5e-3, momentum_decay=1e-2, weight_decay=1e-2,
                                          decoupled_weight_decay=True), "poly2", batch_size=10),
    "nadam_l2_maximize": Case("NAdam", dict(lr=1e-3, betas=(0.85, 0.99), eps=1e-6,
                                            weight_decay=1e-2, maximize=True), "mlp",
                              batch_size=7),
    # RAdam.
    "radam_defaults": Case("RAdam", {}, "poly2"),
    "radam_decoupled": Case("RAdam", dict(lr=5e-3, betas=(0.85, 0.99), weight_decay=1e-2,
                                          decoupled_weight_decay=True)),
    "radam_l2_eps_maximize": Case("RAdam", dict(lr=1e-3, eps=1e-6, weight_decay=1e-2,
                                                maximize=True), "linear", batch_size=10),
    # Adadelta: torch's lr 1.0; on the network at lr 0.1.
    "adadelta_defaults": Case("Adadelta", {}, "linear_far"),
    "adadelta_every_keyword": Case("Adadelta", dict(lr=0.1, rho=0.95, eps=1e-5,
                                                    weight_decay=1e-3, maximize=True), "mlp",
                                   batch_size=10),
    # Rprop: sign-based, so its path is torch's bit for bit until a gradient is at rounding
    # level; a schedule sets only the first step sizes, as in torch.
    "rprop_defaults": Case("Rprop", {}, "poly2"),
    "rprop_every_keyword": Case("Rprop", dict(lr=2e-3, etas=(0.4, 1.5), step_sizes=(1e-5, 1.0),
                                              maximize=True), "mlp", batch_size=10),
    "rprop_lambdalr": Case("Rprop", dict(lr=0.02), "linear", schedule=sched(
        lambda: fls.LambdaLR(0.02, lambda i: 0.5 / (i + 1)),
        lambda o: tls.LambdaLR(o, lambda i: 0.5 / (i + 1)))),
    # ASGD: averaging from update 100 on; a schedule's rate sets the next update's step size.
    "asgd_defaults": Case("ASGD", {}, "poly2"),
    "asgd_every_keyword": Case("ASGD", dict(lr=5e-3, lambd=1e-2, alpha=0.5, t0=100,
                                            weight_decay=1e-3, maximize=True), "mlp",
                               batch_size=10),
    "asgd_steplr": Case("ASGD", dict(lr=0.02), "mlp", schedule=sched(
        lambda: fls.StepLR(0.02, step_size=150, gamma=0.5),
        lambda o: tls.StepLR(o, step_size=150, gamma=0.5))),
    # Adafactor: the network's weights are (8, 1) and (1, 8), factored; its biases are not.
    # Full batch on the network, its normalized steps reach a chaotic stretch near step 400
    # (torch against itself from a start moved by 1e-15 parts by 4e-3 at step 420).
    "adafactor_defaults": Case("Adafactor", {}, "poly2"),
    "adafactor_every_keyword": Case("Adafactor", dict(lr=5e-3, beta2_decay=-0.6,
                                                      eps=(1e-20, 1e-2), d=1.5,
                                                      weight_decay=1e-2, maximize=True), "mlp",
                                    batch_size=10),
    "adafactor_cosine": Case("Adafactor", dict(lr=2e-2), "mlp", batch_size=7, schedule=sched(
        lambda: fls.CosineAnnealingLR(2e-2, T_max=400, eta_min=1e-3),
        lambda o: tls.CosineAnnealingLR(o, T_max=400, eta_min=1e-3))),
    # Every scheduler, stepped once per optimizer step unless per_epoch.
    "sgd_steplr": Case("SGD", dict(lr=0.05, momentum=0.9), "poly2", schedule=sched(
        lambda: fls.StepLR(0.05, step_size=150, gamma=0.5),
        lambda o: tls.StepLR(o, step_size=150, gamma=0.5))),
    "adam_multisteplr": Case("Adam", dict(lr=1e-2), schedule=sched(
        lambda: fls.MultiStepLR(1e-2, milestones=[100, 300, 300, 700], gamma=0.5),
        lambda o: tls.MultiStepLR(o, milestones=[100, 300, 300, 700], gamma=0.5))),
    "sgd_exponentiallr": Case("SGD", dict(lr=0.1), "mlp", batch_size=10, schedule=sched(
        lambda: fls.ExponentialLR(0.1, gamma=0.998),
        lambda o: tls.ExponentialLR(o, gamma=0.998))),
    "adam_cosine_past_tmax": Case("Adam", dict(lr=1e-2), "poly2", schedule=sched(
        lambda: fls.CosineAnnealingLR(1e-2, T_max=400, eta_min=1e-4),
        lambda o: tls.CosineAnnealingLR(o, T_max=400, eta_min=1e-4))),
    "rmsprop_momentum_linearlr": Case("RMSprop", dict(lr=2e-3, momentum=0.5), schedule=sched(
        lambda: fls.LinearLR(2e-3, start_factor=0.25, end_factor=0.75, total_iters=300),
        lambda o: tls.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=300))),
    "adagrad_constantlr": Case("Adagrad", dict(lr=0.02, lr_decay=1e-3), "poly2", schedule=sched(
        lambda: fls.ConstantLR(0.02, factor=0.5, total_iters=200),
        lambda o: tls.ConstantLR(o, factor=0.5, total_iters=200))),
    "sgd_onecycle_momentum": Case("SGD", dict(lr=0.1, momentum=0.9), "poly2", schedule=sched(
        lambda: fls.OneCycleLR(0.1, total_steps=OPTIM_STEPS),
        lambda o: tls.OneCycleLR(o, max_lr=0.1, total_steps=OPTIM_STEPS))),
    "sgd_onecycle_overrides_zero_momentum": Case("SGD", dict(lr=0.05), "linear", schedule=sched(
        lambda: fls.OneCycleLR(0.05, total_steps=OPTIM_STEPS, pct_start=0.4),
        lambda o: tls.OneCycleLR(o, max_lr=0.05, total_steps=OPTIM_STEPS, pct_start=0.4))),
    "rmsprop_onecycle_momentum": Case("RMSprop", dict(lr=1e-3), "poly2", batch_size=10,
                                      schedule=sched(
        lambda: fls.OneCycleLR(1e-3, total_steps=OPTIM_STEPS),
        lambda o: tls.OneCycleLR(o, max_lr=1e-3, total_steps=OPTIM_STEPS))),
    "adam_onecycle_beta1_three_phase": Case("Adam", dict(lr=1e-2, amsgrad=True), schedule=sched(
        lambda: fls.OneCycleLR(1e-2, total_steps=OPTIM_STEPS, three_phase=True,
                               anneal_strategy="linear"),
        lambda o: tls.OneCycleLR(o, max_lr=1e-2, total_steps=OPTIM_STEPS, three_phase=True,
                                 anneal_strategy="linear"))),
    "nadam_onecycle_beta1": Case("NAdam", dict(lr=5e-3), "poly2", schedule=sched(
        lambda: fls.OneCycleLR(5e-3, total_steps=OPTIM_STEPS),
        lambda o: tls.OneCycleLR(o, max_lr=5e-3, total_steps=OPTIM_STEPS))),
    "adam_onecycle_no_cycle": Case("Adam", dict(lr=1e-2), "poly2", schedule=sched(
        lambda: fls.OneCycleLR(1e-2, total_steps=OPTIM_STEPS, cycle_momentum=False),
        lambda o: tls.OneCycleLR(o, max_lr=1e-2, total_steps=OPTIM_STEPS,
                                 cycle_momentum=False))),
    "sgd_lambdalr": Case("SGD", dict(lr=0.2), "poly2", schedule=sched(
        lambda: fls.LambdaLR(0.2, lambda i: 1 / (i + 1) ** 0.5),
        lambda o: tls.LambdaLR(o, lambda i: 1 / (i + 1) ** 0.5))),
    "adamw_warmup_cosine": Case("AdamW", dict(lr=1e-2), schedule=sched(
        lambda: fls.SequentialLR(1e-2, [fls.LinearLR(1e-2, start_factor=0.1, total_iters=50),
                                        fls.CosineAnnealingLR(1e-2, T_max=950)], [50]),
        lambda o: tls.SequentialLR(o, [tls.LinearLR(o, start_factor=0.1, total_iters=50),
                                       tls.CosineAnnealingLR(o, T_max=950)], [50]))),
    "sgd_per_epoch_steplr": Case("SGD", dict(lr=0.05, momentum=0.9), "poly2", batch_size=10,
                                 per_epoch=True, schedule=sched(
        lambda: fls.per_epoch(fls.StepLR(0.05, step_size=20, gamma=0.5), steps_per_epoch=10),
        lambda o: tls.StepLR(o, step_size=20, gamma=0.5))),
    # clip_grad_norm_ before the step: the lecture's data makes the first gradients large.
    "sgd_clip": Case("SGD", dict(lr=0.05, momentum=0.9), "poly2", clip=(1.0, 2.0)),
    "adam_clip_inf": Case("Adam", dict(lr=1e-2), "mlp", batch_size=10, clip=(0.5, math.inf)),
    "rmsprop_clip_l1": Case("RMSprop", dict(lr=1e-3), "mlp", clip=(2.0, 1.0)),
}


def run(case: Case, dtype: str, steps: int):
    """Both paths of `case`: (JAX path, torch path), each a dict or array (steps+1, ...)."""
    maximize = case.kwargs.get("maximize", False)
    pb = make(case.problem, dtype, maximize=maximize)
    if case.batch_size is None:
        batching = dict(steps=steps)
        per_epoch_steps = 1
    else:
        per_epoch_steps = math.ceil(N / case.batch_size)
        order = ff.batch_order(N, -(-steps // per_epoch_steps), seed=3)
        batching = dict(order=order, batch_size=case.batch_size)
    jax_schedule, torch_scheduler = case.schedule() if case.schedule else (None, None)
    kwargs = dict(case.kwargs, lr=jax_schedule) if jax_schedule else case.kwargs
    tx = fo.OPTIMIZERS[case.optimizer](**kwargs)
    if case.clip:
        tx = optax.chain(fo.clip_grad_norm(*case.clip), tx)
    jpath = jax_train(pb.params, pb.x, pb.y, model=pb.model, loss=pb.loss, optimizer=tx,
                      **batching)
    opt = getattr(torch.optim, case.optimizer)(pb.module.parameters(), **case.kwargs)
    scheduler = torch_scheduler(opt) if torch_scheduler else None
    if scheduler is not None and case.per_epoch:
        scheduler = EveryKSteps(scheduler, per_epoch_steps)
    tpath = torch_train(pb.module, pb.loss_fn, *map(torch.from_numpy, (pb.x, pb.y)),
                        optimizer=opt, scheduler=scheduler, clip=case.clip, **batching)
    return jpath, tpath


def _report(g: np.ndarray) -> str:
    marks = sorted({0, 1, 10, 100, 300, len(g) // 2, len(g) - 1})
    return "difference by step: " + ", ".join(f"{t}: {g[t]:.1e}" for t in marks if t < len(g))


@pytest.mark.parametrize("name", list(CASES))
def test_paths_agree_float64(name):
    case = CASES[name]
    jpath, tpath = run(case, "float64", OPTIM_STEPS)
    a, b = flat(jpath), flat(tpath)
    assert a.shape == b.shape and a.shape[0] >= OPTIM_STEPS + 1
    assert np.max(np.abs(b[-1] - b[0])) > 1e-3 * np.max(np.abs(b))  # the parameters moved
    g = growth(jpath, tpath)
    assert rel_err(a, b) <= TRAJECTORY_FLOAT64, _report(g)
    # At most linear growth: under the line from 0 to OPTIM_GROWTH_FLOAT64 * t at every step.
    steps = np.arange(g.size)
    assert np.all(g <= OPTIM_GROWTH_FLOAT64 * np.maximum(steps, 1)), _report(g)
    for leaf in jax.tree.leaves(jpath):
        assert leaf.dtype == np.float64


#: float32: every optimizer once with most of its keywords, a cycled momentum (cast to float32
#: as torch's kernels cast it) and a clip; not Rprop, whose step takes the sign of a gradient
#: that float32 rounds to either sign near 0 (tests/test_optim_more.py).
FLOAT32 = ["sgd_momentum_dampening_wd", "sgd_nesterov_wd", "adam_amsgrad_wd",
           "adam_betas_eps_decoupled", "adamw_amsgrad_maximize", "rmsprop_centered_momentum",
           "adagrad_every_keyword", "adamax_every_keyword", "nadam_l2_maximize",
           "radam_decoupled", "adadelta_every_keyword", "adam_onecycle_beta1_three_phase",
           "adam_clip_inf", "asgd_every_keyword", "adafactor_every_keyword"]


@pytest.mark.parametrize("name", FLOAT32)
def test_paths_agree_float32(name):
    case = CASES[name]
    jpath, tpath = run(case, "float32", MAX_STEPS_FLOAT32)
    for leaf in jax.tree.leaves(jpath) + list(tpath.values()):
        assert leaf.dtype == np.float32
    g = growth(jpath, tpath)
    assert rel_err(flat(jpath), flat(tpath)) <= OPTIM_TRAJECTORY_FLOAT32, _report(g)


# --------------------------------------------------------------------------- names and state

#: torch's implementation flags: accepted where they leave torch's numbers as they are, tested
#: against torch with the same flags in tests/test_optim_count.py.
FLAGS = {"foreach", "fused", "capturable", "differentiable"}


@pytest.mark.parametrize("name", list(fo.OPTIMIZERS))
def test_signature_is_torchs(name):
    """torch's keywords, defaults, order and kinds, less params."""
    ours = inspect.signature(fo.OPTIMIZERS[name]).parameters
    theirs = {k: p for k, p in inspect.signature(getattr(torch.optim, name)).parameters.items()
              if k != "params"}
    assert list(ours) == list(theirs)
    for k, p in theirs.items():
        assert ours[k].default == p.default, k
        assert ours[k].kind == p.kind, k


#: Muon (2-D parameters only) and SparseAdam (row-sparse gradients) run against torch on models
#: of their own, in tests/test_optim_muon_sparse.py: their keyword sets, as Cases.
OWN_MODELS = [Case("Muon", c.kwargs) for c in MUON_CASES.values()] + [
    Case("SparseAdam", c["kwargs"]) for c in SPARSE_CASES.values()]

#: Optimizers whose table is elsewhere: LBFGS's step is up to max_iter iterations with its own
#: stopping tests, compared step by step with its state in tests/test_optim_lbfgs.py (whose
#: test_the_cases_cover_every_keyword_and_stopping_rule checks every keyword there).
OWN_TABLE = {"LBFGS": "tests/test_optim_lbfgs.py"}


def test_every_optimizer_and_keyword_is_covered():
    for name in fo.OPTIMIZERS:
        if name in OWN_TABLE:
            continue
        cases = [c for c in [*CASES.values(), *OWN_MODELS] if c.optimizer == name]
        assert any(not c.kwargs for c in cases), f"{name} at its defaults"
        keywords = set(inspect.signature(fo.OPTIMIZERS[name]).parameters) - {"lr"} - FLAGS
        changed = {k for c in cases for k, v in c.kwargs.items()
                   if v != inspect.signature(fo.OPTIMIZERS[name]).parameters[k].default}
        assert keywords <= changed, f"{name}: {keywords - changed} never changed"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(fo.OPTIMIZERS))
def test_state_keeps_the_params_dtype(name, dtype):
    """Every float array in the state is in the params' dtype (NAdam's mu_product and ASGD's
    eta and mu are () float32, as torch's). Each update gets optax's extra arguments, the loss
    value= and value_fn=, which LBFGS needs and the others pass by."""
    b_shape = (3, 1) if name == "Muon" else (3,)  # Muon takes 2-D parameters only
    params = {"a": np.ones((2, 3), dtype), "b": np.ones(b_shape, dtype)}
    keywords = inspect.signature(fo.OPTIMIZERS[name]).parameters

    def value_fn(p):
        return sum(jax.numpy.sum(jax.numpy.sin(x)) for x in jax.tree.leaves(p))

    for kwargs in ({}, {k: v for k, v in {"weight_decay": 0.1, "maximize": True}.items()
                        if k in keywords}):
        tx = fo.OPTIMIZERS[name](lr=fls.OneCycleLR(0.1, 10) if name not in (
            "Adagrad", "Adadelta", "Rprop", "ASGD", "Adafactor", "LBFGS") else 0.1, **kwargs)
        state = tx.init(jax.tree.map(jax.numpy.asarray, params))
        updates, state = jax.jit(lambda p, s: tx.update(p, s, p, value=value_fn(p),
                                                        value_fn=value_fn))(params, state)
        assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
        for leaf in jax.tree.leaves(state):
            if jax.numpy.issubdtype(leaf.dtype, jax.numpy.floating) and leaf.shape:
                assert leaf.dtype == dtype


# --------------------------------------------------------------------------- bad keywords

# id -> (optimizer, keywords, the word the message names, whether torch refuses them too)
BAD = {
    "negative lr": ("SGD", dict(lr=-0.1), "lr", True),
    "infinite lr": ("Adam", dict(lr=math.inf), "lr", False),
    "lr a string": ("Adam", dict(lr="0.1"), "lr", False),
    "negative momentum": ("SGD", dict(momentum=-0.5), "momentum", True),
    "negative weight_decay": ("SGD", dict(weight_decay=-1e-4), "weight_decay", True),
    "nesterov without momentum": ("SGD", dict(nesterov=True), "nesterov", True),
    "nesterov with dampening": ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True),
                                "dampening", True),
    "nesterov not a bool": ("SGD", dict(momentum=0.9, nesterov="yes"), "nesterov", False),
    "beta1 one": ("Adam", dict(betas=(1.0, 0.999)), "betas[0]", True),
    "beta2 negative": ("AdamW", dict(betas=(0.9, -0.1)), "betas[1]", True),
    "betas not a pair": ("Adamax", dict(betas=(0.9,)), "betas", False),
    "negative eps": ("Adam", dict(eps=-1e-8), "eps", True),
    "nan eps": ("NAdam", dict(eps=math.nan), "eps", True),
    "amsgrad not a bool": ("Adam", dict(amsgrad=1), "amsgrad", False),
    "negative alpha": ("RMSprop", dict(alpha=-0.9), "alpha", True),
    "rmsprop negative momentum": ("RMSprop", dict(momentum=-0.1), "momentum", True),
    "negative lr_decay": ("Adagrad", dict(lr_decay=-1.0), "lr_decay", True),
    "negative accumulator": ("Adagrad", dict(initial_accumulator_value=-1.0),
                             "initial_accumulator_value", True),
    "negative momentum_decay": ("NAdam", dict(momentum_decay=-0.004), "momentum_decay", True),
    "radam beta": ("RAdam", dict(betas=(0.9, 1.5)), "betas[1]", True),
    "radam weight decay": ("RAdam", dict(weight_decay=-1.0), "weight_decay", True),
    "rho above one": ("Adadelta", dict(rho=1.1), "rho", True),
    "adadelta negative lr": ("Adadelta", dict(lr=-1.0), "lr", True),
    "etas reversed": ("Rprop", dict(lr=1e-2, etas=(1.0, 0.5)), "etas", True),
    "asgd negative weight_decay": ("ASGD", dict(lr=1e-2, weight_decay=-0.5), "weight_decay",
                                   True),
    "rprop negative lr": ("Rprop", dict(lr=-1e-2), "lr", True),
    "asgd negative lr": ("ASGD", dict(lr=-1e-2), "lr", True),
    "etaplus one": ("Rprop", dict(etas=(0.5, 1.0)), "etas", True),
    "etaminus zero": ("Rprop", dict(etas=(0.0, 1.2)), "etas", True),
    "etas not a pair": ("Rprop", dict(etas=0.5), "etas", True),
    "etas nan": ("Rprop", dict(etas=(math.nan, 1.2)), "etas[0]", True),
    "step_sizes reversed": ("Rprop", dict(step_sizes=(1.0, 1e-6)), "step_sizes", False),
    "step_sizes negative": ("Rprop", dict(step_sizes=(-1.0, 1.0)), "step_sizes", False),
    "step_sizes one number": ("Rprop", dict(step_sizes=1e-6), "step_sizes", False),
    "rprop maximize not a bool": ("Rprop", dict(maximize="yes"), "maximize", False),
    "lambd a string": ("ASGD", dict(lambd="0.1"), "lambd", False),
    "alpha infinite": ("ASGD", dict(alpha=math.inf), "alpha", False),
    "t0 nan": ("ASGD", dict(t0=math.nan), "t0", False),
    # optim_error_inputs_func_adafactor's three, then more
    "epsilon1 negative": ("Adafactor", dict(eps=(-1e-30, 1e-3)), "eps[0]", True),
    "d below one": ("Adafactor", dict(d=0.0), "d", True),
    "beta2_decay positive": ("Adafactor", dict(beta2_decay=0.8), "beta2_decay", True),
    "epsilon2 negative": ("Adafactor", dict(eps=(None, -1e-3)), "eps[1]", True),
    "eps not a pair": ("Adafactor", dict(eps=1e-3), "eps", True),
    "adafactor negative weight_decay": ("Adafactor", dict(weight_decay=-0.1), "weight_decay",
                                        True),
    "adafactor negative lr": ("Adafactor", dict(lr=-0.1), "lr", True),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_keywords_are_refused_in_one_line(name):
    optimizer, kwargs, word, torch_refuses = BAD[name]
    with pytest.raises(ff.InputError) as info:
        fo.OPTIMIZERS[optimizer](**kwargs)
    message = str(info.value)
    assert word in message and "\n" not in message
    if torch_refuses:
        with pytest.raises((ValueError, TypeError)):
            getattr(torch.optim, optimizer)([torch.zeros(1, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("kwargs, word", [
    (dict(max_norm=-1.0), "max_norm"), (dict(max_norm=1.0, norm_type=0.0), "norm_type"),
    (dict(max_norm=1.0, norm_type=-math.inf), "norm_type"), (dict(max_norm="1"), "max_norm")])
def test_bad_clip_is_refused(kwargs, word):
    with pytest.raises(ff.InputError, match=word):
        fo.clip_grad_norm(**kwargs)


def test_docstring_examples_run():
    for module in (fo, fo.transforms):
        results = doctest.testmod(module)
        assert results.attempted >= 5 and results.failed == 0
