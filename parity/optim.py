"""torch's optimizers on the torch side: the lecture's own, and resuming across frameworks.

Resuming. `to_optax` reads a live torch optimizer (and scheduler) into the
`functional_fit.optim` transformation of the same name and an optax state from which JAX
continues as torch would; `load_state` writes such a state back, so that torch continues as
JAX would. The state is for the params ``parity.params.from_module(module)``, the dict of the
module's ``state_dict`` names that `functional_fit` takes:

    tx, state = parity.optim.to_optax(opt, net, sched)       # torch's checkpoint, loaded
    params = parity.params.from_module(net)
    params, state, loss = functional_fit.engine.step(params, state, x, y, model=..., loss=...,
                                                     optimizer=tx)
    parity.params.load(net, params); parity.optim.load_state(opt, net, state, new_sched)

Covered: every optimizer of ``functional_fit.optim.OPTIMIZERS`` (SGD ... Adafactor, Muon,
SparseAdam, LBFGS), every schedule of ``lr_scheduler.SCHEDULERS``, SWALR and
ReduceLROnPlateau. Both follow two tables, one entry per torch class, as torch's decomposition table does:
`OPTIMIZER_STATES` (torch's state keys <- the fields of the optax state NamedTuples, by name)
and `SCHEDULERS` (a torch scheduler -> its `lr_scheduler` schedule). How the states lie:

- A params-shaped field of the optax state (``mu``, ``nu``, ``trace``, ``ax``, ...) holds
  torch's ``state[p][key]`` of every parameter p, under p's ``state_dict`` name.
- ``count`` is torch's ``state[p]["step"]``, one per param group here, one per parameter in
  torch: the parameters of a group must have taken the same number of steps, or a parameter
  whose grad was None on some steps is refused. With ``unused=True`` the transformation is
  wrapped in `functional_fit.optim.skip_unused`, whose state (``SkipUnusedState.per_param``)
  is the transformation's state of each parameter alone: there every count is that
  parameter's own step. A () field (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) is
  likewise one value per group (or per parameter with ``unused``).
- Several torch param groups are one `optax.multi_transform` (`functional_fit.optim.groups`),
  branch i being torch's group i; the branch of the parameters of no group (empty) takes
  group 0's counts.
- The counts of schedules (``ScaleByScheduleState``, ``inject_hyperparams`` for a cycled
  momentum or beta1, whose ``hyperparams`` are the values of the last update) are the
  scheduler's ``last_epoch``. `load_state` steps the scheduler to it with torch's own
  ``step()``, so that torch's rates, computed by its recursion, are its own bit for bit.
- torch holds no state before a parameter's first step (Adagrad's, made in its constructor,
  excepted): a group whose optax state is its initial one is written as none. SGD keeps no
  step: its optax count (`~functional_fit.optim.transforms.scale_by_torch_momentum`, whose
  update reads only whether it is 0) comes back as 1 from any positive count, and an
  ``optax.trace`` of zeros as no momentum buffer, which continue alike.
- Muon keeps no step either, only ``momentum_buffer`` (``TorchMuonState``). SparseAdam's
  ``step`` is a Python int in torch, written back as one; its JAX state is dense, the rows never
  looked up staying zero as torch's do.
- LBFGS keeps its whole state in its first parameter's (`Entry`'s read/write hooks):
  ``LBFGSState`` key for key, its vectors in ``ravel_pytree``'s order of the params dict
  (sorted names), torch's in its param group's order, permuted on the way; the history lists
  are the first ``num_old`` rows of the (history_size, n) arrays. torch holds ``t`` and
  ``H_diag`` as a float or a () tensor by the path it took, written back as () tensors of the
  same value; its scratch ``al`` is not kept (torch remakes it); it keeps no step count: the
  optax count comes back as the scheduler's position, or 0.
- SWALR is the schedule `functional_fit.optim.swa_utils.SWALR` from the group's
  ``initial_lr`` (its rate when the scheduler was made) to its ``swa_lr``, at ``last_epoch``.
- ReduceLROnPlateau reads a metric, so it is no schedule: the transformation is
  ``optax.chain(optimizer, lr_scheduler.ReduceLROnPlateau(lr, ...))`` and the state the pair
  (optimizer's state, ``ReduceLROnPlateauState``), whose fields are torch's attributes of the
  same names, ``lr`` group 0's rate. The optimizer and the chained transformation are made with
  the rate group 0 has now, not the first one (torch keeps no ``initial_lr`` for it): the
  chained ratio state.lr / lr is then exactly 1 until the next reduction. `load_state` sets the
  scheduler's attributes and the groups' rates (group 0's to ``state.lr``, the others scaled by
  the same ratio, as the chained transformation scales them) instead of stepping it; with
  ``unused=True`` it is refused.


The lecture's optimizers. Its gradient descent and SGD update the parameters themselves
(cells 48 and 59):

    with torch.no_grad():
        for p in model.parameters():
            p -= lr / (i + 1) * p.grad

`LectureSGD` is that update behind torch's optimizer interface, so that `parity.fit.train` runs
every fit as one ``zero_grad / backward / step`` loop. Why not ``torch.optim.SGD`` with a
``LambdaLR(lambda i: 1 / (i + 1))`` scheduler: SGD updates with ``p.add_(g, alpha=-lr)``, which
rounds differently from the lecture's ``p -= (lr / (i + 1)) * g`` (measured: one float32 ulp,
2.4e-7 on the lecture's linear fit, and 8.9e-16 in float64 on its quadratic one), and the
lecture's printed numbers come from the lecture's arithmetic.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from jax.flatten_util import ravel_pytree

import functional_fit.optim as fo
from functional_fit.checks import InputError
from functional_fit.optim import lr_scheduler as ls
from functional_fit.optim import swa_utils
from functional_fit.optim.unused import SkipUnusedState
from parity.params import from_module


class LectureSGD(torch.optim.Optimizer):
    """``p -= lr / (k + 1) * p.grad`` at optimizer step s, with k = s // steps_per_epoch.

    Args:
      params: the parameters, e.g. ``module.parameters()``.
      lr: the base learning rate, > 0.
      steps_per_epoch: 1 for the lecture's gradient descent (k is the step); the number of
        batches per epoch for its SGD (k is the epoch).
    """

    def __init__(self, params, lr: float, steps_per_epoch: int = 1):
        super().__init__(params, {"lr": lr})
        self.steps_per_epoch = steps_per_epoch
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        k = self.steps // self.steps_per_epoch
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p -= group["lr"] / (k + 1) * p.grad  # the lecture's arithmetic, as written
        self.steps += 1
        return loss


# --------------------------------------------------------------------------- resuming
#
# A torch optimizer's state is a dict per parameter (torch's keys: "step", "exp_avg", ...); a
# `functional_fit.optim` transformation's is a tree of optax NamedTuples, one per transform of
# its chain, whose params-shaped fields hold every parameter's values. `OPTIMIZER_STATES` maps
# the one onto the other, one entry per torch class, by field name; `SCHEDULERS` reads a torch
# scheduler into the `lr_scheduler` schedule of the same name, one entry per class.


class Entry(NamedTuple):
    """How a torch optimizer's per-parameter state lies in its `functional_fit.optim` state.

    fields: a field name of the optax state NamedTuples -> torch's state key. A field holding a
      params-shaped tree is read and written parameter by parameter; a field holding a ()
      array (NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``) is one value per param group,
      which torch keeps once per parameter; the field mapped to ``"step"`` (``count`` in
      optax's states) is the group's step count, torch's ``state[p]["step"]``.
    keys: torch's state keys in torch's order; a key the state does not hold (Adam's
      ``max_exp_avg_sq`` without amsgrad) is left out.
    eager: torch creates the state in the constructor (Adagrad), not at the first step.
    read, write: for a state that is not kept per parameter (LBFGS keeps its history in its
      first parameter's state), functions that replace the mapping by fields:
      ``read(optimizer, module, scheduler, template) -> state`` fills the transformation's
      initial state `template`, and ``write(optimizer, module, state, scheduler)`` writes a
      state into torch (its scheduler included).
    int_step: torch keeps the step as a Python int (SparseAdam), not a tensor.
    """

    fields: dict
    keys: tuple
    eager: bool = False
    read: Callable | None = None
    write: Callable | None = None
    int_step: bool = False


def _lbfgs_order(optimizer, module):
    """perm: JAX's flat vector (`ravel_pytree` of the params dict) is torch's flat vector (its
    parameters in param group order, each ``view(-1)``) at perm: ``jax = torch[..., perm]``."""
    names, params = _group_names(optimizer, module)[0], from_module(module)
    offsets = np.cumsum([0] + [np.size(params[n]) for n in names])
    index = {n: jnp.asarray(np.arange(a, b).reshape(np.shape(params[n])))
             for n, a, b in zip(names, offsets, offsets[1:])}
    return np.asarray(ravel_pytree(index)[0])


def _lbfgs_read(optimizer, module, scheduler, template):
    """torch's LBFGS state (all of it in its first parameter's) as a `LBFGSState`; count (torch
    keeps none) is the scheduler's position, or 0."""
    perm, like = _lbfgs_order(optimizer, module), template
    state = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
    count = 0 if scheduler is None else _position(scheduler)

    def value(key, v):  # a tensor, or a Python number (as such: not via torch's float32)
        v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
        return jnp.asarray(np.asarray(v), getattr(like, key).dtype)

    def flat(key):  # a torch vector in JAX's order
        return value(key, state[key].detach().cpu().numpy()[perm])

    filled = like._replace(n_iter=value("n_iter", state.get("n_iter", 0)), count=value(
        "count", count), func_evals=value("func_evals", state.get("func_evals", 0)))
    if "d" not in state:
        return filled
    k = len(state["old_dirs"])
    rows = {key: (like_rows.at[:k].set(value(key, torch.stack(state[key]).cpu().numpy()[
        ..., perm])) if k else like_rows) for key, like_rows in
        (("old_dirs", like.old_dirs), ("old_stps", like.old_stps))}
    ro = like.ro.at[:k].set(jnp.asarray([float(r) for r in state["ro"]], like.ro.dtype))
    return filled._replace(d=flat("d"), t=value("t", state["t"]), ro=ro, num_old=value(
        "num_old", k), H_diag=value("H_diag", state["H_diag"]), prev_flat_grad=flat(
        "prev_flat_grad"), prev_loss=value("prev_loss", state["prev_loss"]), **rows)


def _lbfgs_write(optimizer, module, state, scheduler):
    """A `LBFGSState` into torch's first parameter's state: tensors where torch's are (t and
    H_diag as () tensors, which torch holds as a float or a tensor by the path it took),
    prev_loss a float, the counts ints; its scratch ``al`` is left for torch to make."""
    first = optimizer.param_groups[0]["params"][0]
    back = np.argsort(_lbfgs_order(optimizer, module))
    if int(state.n_iter) == 0 and int(state.func_evals) == 0:
        optimizer.state.pop(first, None)
    else:
        def tensor(a):
            return torch.from_numpy(np.array(a)).to(first.dtype)

        k = int(state.num_old)
        out = {"func_evals": int(state.func_evals), "n_iter": int(state.n_iter)}
        if int(state.n_iter):
            out.update(d=tensor(np.asarray(state.d)[back]), t=tensor(state.t),
                       old_dirs=list(tensor(np.asarray(state.old_dirs)[:k][:, back])),
                       old_stps=list(tensor(np.asarray(state.old_stps)[:k][:, back])),
                       ro=list(tensor(state.ro[:k])), H_diag=tensor(state.H_diag),
                       prev_flat_grad=tensor(np.asarray(state.prev_flat_grad)[back]),
                       prev_loss=float(state.prev_loss))
        optimizer.state[first] = out
    if scheduler is not None:
        _advance(scheduler, int(state.count))


_ADAM = Entry({"count": "step", "mu": "exp_avg", "nu": "exp_avg_sq",
               "nu_max": "max_exp_avg_sq"}, ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"))

#: torch.optim class name -> its `Entry`.
OPTIMIZER_STATES = {
    "SGD": Entry({"count": "step", "trace": "momentum_buffer"}, ("momentum_buffer",)),
    "Adam": _ADAM,
    "AdamW": _ADAM,
    "RMSprop": Entry({"nu": "square_avg", "trace": "momentum_buffer", "mu": "grad_avg"},
                     ("step", "square_avg", "momentum_buffer", "grad_avg")),
    "Adagrad": Entry({"sum_of_squares": "sum", "step": "step"}, ("step", "sum"), eager=True),
    "Adamax": Entry({"count": "step", "mu": "exp_avg", "nu": "exp_inf"},
                    ("step", "exp_avg", "exp_inf")),
    "NAdam": Entry({"count": "step", "mu_product": "mu_product", "mu": "exp_avg",
                    "nu": "exp_avg_sq"}, ("step", "mu_product", "exp_avg", "exp_avg_sq")),
    "RAdam": Entry({"count": "step", "mu": "exp_avg", "nu": "exp_avg_sq"},
                   ("step", "exp_avg", "exp_avg_sq")),
    "Adadelta": Entry({"e_g": "square_avg", "e_x": "acc_delta"},
                      ("step", "square_avg", "acc_delta")),
    "Rprop": Entry({"count": "step", "prev": "prev", "step_size": "step_size"},
                   ("step", "prev", "step_size")),
    "ASGD": Entry({"count": "step", "eta": "eta", "mu": "mu", "ax": "ax"},
                  ("step", "eta", "mu", "ax")),
    "Adafactor": Entry({"count": "step", "row_var": "row_var", "col_var": "col_var",
                        "variance": "variance"}, ("step", "row_var", "col_var", "variance")),
    "LBFGS": Entry({}, (), read=_lbfgs_read, write=_lbfgs_write),
    "Muon": Entry({"momentum_buffer": "momentum_buffer"}, ("momentum_buffer",)),
    "SparseAdam": Entry({"step": "step", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
                        ("step", "exp_avg", "exp_avg_sq"), int_step=True),
}


def _base(s, opt_lr, i):
    """Group i's base rate under scheduler `s`: torch's ``initial_lr``."""
    return s.optimizer.param_groups[i].get("initial_lr", opt_lr)


def _one_cycle(s, lr, i):
    g, phases = s.optimizer.param_groups[i], s._schedule_phases
    return ls.OneCycleLR(g["max_lr"], total_steps=s.total_steps,
                         pct_start=(phases[0]["end_step"] + 1) / s.total_steps,
                         anneal_strategy=s._anneal_func_type, cycle_momentum=s.cycle_momentum,
                         base_momentum=g.get("base_momentum", 0.85),
                         max_momentum=g.get("max_momentum", 0.95),
                         div_factor=g["max_lr"] / g["initial_lr"],
                         final_div_factor=g["initial_lr"] / g["min_lr"],
                         three_phase=len(phases) == 3)


def _cyclic(s, lr, i):
    up = s.total_size * s.step_ratio
    custom = s._scale_fn_custom
    return ls.CyclicLR(s.base_lrs[i], s.max_lrs[i], up, s.total_size - up, s.mode, s.gamma,
                       custom, s.scale_mode, s.cycle_momentum,
                       *((s.base_momentums[i], s.max_momentums[i]) if s.cycle_momentum
                         else (0.8, 0.9)))


#: torch.optim.lr_scheduler class name -> ``(scheduler, base lr, group index) -> schedule``.
#: The functions of LambdaLR, MultiplicativeLR and a CyclicLR's scale_fn are torch's own, then
#: called on JAX's integer count: written with operators or jax.numpy (``0.95 ** k``).
SCHEDULERS = {
    "StepLR": lambda s, lr, i: ls.StepLR(lr, s.step_size, s.gamma),
    "MultiStepLR": lambda s, lr, i: ls.MultiStepLR(lr, sorted(s.milestones.elements()),
                                                   s.gamma),
    "ExponentialLR": lambda s, lr, i: ls.ExponentialLR(lr, s.gamma),
    "CosineAnnealingLR": lambda s, lr, i: ls.CosineAnnealingLR(lr, s.T_max, s.eta_min),
    "LinearLR": lambda s, lr, i: ls.LinearLR(lr, s.start_factor, s.end_factor, s.total_iters),
    "ConstantLR": lambda s, lr, i: ls.ConstantLR(lr, s.factor, s.total_iters),
    "LambdaLR": lambda s, lr, i: ls.LambdaLR(lr, s.lr_lambdas[i]),
    "MultiplicativeLR": lambda s, lr, i: ls.MultiplicativeLR(lr, s.lr_lambdas[i]),
    "PolynomialLR": lambda s, lr, i: ls.PolynomialLR(lr, s.total_iters, s.power),
    "CosineAnnealingWarmRestarts": lambda s, lr, i: ls.CosineAnnealingWarmRestarts(
        lr, s.T_0, s.T_mult, s.eta_min),
    "OneCycleLR": _one_cycle,
    "CyclicLR": _cyclic,
    "SequentialLR": lambda s, lr, i: ls.SequentialLR(
        lr, [_schedule(m, lr, i) for m in s._schedulers], list(s._milestones)),
    "ChainedScheduler": lambda s, lr, i: ls.ChainedScheduler(
        lr, [_schedule(m, lr, i) for m in s._schedulers]),
    "SWALR": lambda s, lr, i: swa_utils.SWALR(lr, s.optimizer.param_groups[i]["swa_lr"],
                                              s.anneal_epochs, s._anneal_strategy),
}


def _schedule(scheduler, lr, i: int):
    """The `lr_scheduler` schedule of torch `scheduler` for param group i (base rate lr)."""
    name = type(scheduler).__name__
    if name not in SCHEDULERS:
        raise InputError(f"scheduler: no reader for torch's {name} (known: "
                         f"{', '.join(SCHEDULERS)})")
    return SCHEDULERS[name](scheduler, lr, i)


def _position(scheduler) -> int:
    """How many times `scheduler` has stepped (torch's ``last_epoch``)."""
    inner = getattr(scheduler, "_schedulers", None)
    if not hasattr(scheduler, "last_epoch") and inner:
        return _position(inner[0])
    return int(scheduler.last_epoch)


# --------------------------------------------------------------------------- the transformation


def _group_names(optimizer, module) -> list:
    """Every param group's parameters as the module's ``state_dict`` names; refuses a parameter
    that is not the module's and an entry of the module that no group holds."""
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    named = module.state_dict(keep_vars=True)
    by_id = {id(v): k for k, v in named.items()}
    out = []
    for i, group in enumerate(optimizer.param_groups):
        names = []
        for p in group["params"]:
            if id(p) not in by_id:
                raise InputError(f"module: param_groups[{i}] of the optimizer holds a parameter of "
                                 f"shape {tuple(p.shape)} that is not one of the module's")
            names.append(by_id[id(p)])
        out.append(names)
    held = {n for names in out for n in names}
    left = [k for k in named if k not in held]
    if left:
        raise InputError(f"module: its {left[0]!r} is in no param group of the optimizer, which "
                         "the JAX optimizer would update; give the optimizer every parameter")
    return out


def _check_scheduler(optimizer, scheduler) -> None:
    if scheduler is not None and getattr(scheduler, "optimizer", None) is not optimizer:
        raise InputError(f"scheduler: this {type(scheduler).__name__} steps another optimizer, "
                         "not the one given")


def _factory(optimizer):
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError(f"optimizer must be a torch.optim.Optimizer, got "
                         f"{type(optimizer).__name__}")
    name = type(optimizer).__name__
    if name not in OPTIMIZER_STATES or name not in fo.OPTIMIZERS:
        raise InputError(f"optimizer: no reader for torch.optim.{name} (known: "
                         f"{', '.join(k for k in OPTIMIZER_STATES if k in fo.OPTIMIZERS)})")
    return fo.OPTIMIZERS[name], OPTIMIZER_STATES[name]


def _keywords(factory, group: dict, lr) -> dict:
    """The keywords of `factory` that torch's param group holds, its lr replaced by `lr`."""
    taken = inspect.signature(factory).parameters
    return {k: (lr if k == "lr" else v) for k, v in group.items() if k in taken}


def transformation(optimizer, module, scheduler=None):
    """The `functional_fit.optim` transformation of a torch optimizer (and scheduler).

    One torch param group: ``factory(**group)``. Several: ``param_groups`` with one entry per
    torch group, selecting its parameters by ``state_dict`` name (a predicate), each with all
    its keywords;
    the optimizer's own keywords are the first group's. With a scheduler, each group's lr is
    the group's own schedule, made from its ``initial_lr``.
    """
    factory, _ = _factory(optimizer)
    _check_scheduler(optimizer, scheduler)
    names = _group_names(optimizer, module)
    plateau = _is_plateau(scheduler)
    keywords = []
    for i, group in enumerate(optimizer.param_groups):
        lr = group["lr"] if scheduler is None or plateau else _schedule(scheduler, _base(
            scheduler, group["lr"], i), i)
        keywords.append(_keywords(factory, group, lr))
    if len(keywords) == 1:
        tx = factory(**keywords[0])
    else:
        tx = factory(**keywords[0], param_groups=[{"params": _among(n), **k}
                                                  for n, k in zip(names, keywords)])
    return optax.chain(tx, _plateau(scheduler)) if plateau else tx


def _is_plateau(scheduler) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _plateau(s):
    """torch's ReduceLROnPlateau `s` as `lr_scheduler.ReduceLROnPlateau`, made with the rate
    group 0 has now (the optimizer's too): the ratio it scales by is exactly 1 until the next
    reduction. torch keeps no base rate for it (no ``initial_lr``) to start from instead."""
    if len(set(s.min_lrs)) > 1:
        raise InputError(f"scheduler: its min_lrs differ by param group ({s.min_lrs}); the "
                         "chained ReduceLROnPlateau keeps one")
    return ls.ReduceLROnPlateau(s.optimizer.param_groups[0]["lr"], s.mode, s.factor, s.patience,
                                s.threshold, s.threshold_mode, s.cooldown, s.min_lrs[0], s.eps)


def _plateau_state(s, like):
    """torch's ReduceLROnPlateau's attributes as its `ReduceLROnPlateauState` (`like`'s dtypes);
    ``lr`` is param group 0's."""
    values = (s.optimizer.param_groups[0]["lr"], s.best, s.num_bad_epochs, s.cooldown_counter,
              s.last_epoch)
    return type(like)(*(jnp.asarray(v, a.dtype) for v, a in zip(values, like)))


def _set_plateau(s, state) -> None:
    """Set torch's ReduceLROnPlateau `s` (and its optimizer's rates) to `state`: group 0's rate
    is ``state.lr``, every other group's is scaled by the same ratio (the chained transformation
    scales every group alike)."""
    groups = s.optimizer.param_groups
    lr, ratio = float(state.lr), float(state.lr) / groups[0]["lr"]
    for i, g in enumerate(groups):
        g["lr"] = lr if i == 0 else g["lr"] * ratio
    s.best, s.last_epoch = float(state.best), int(state.last_epoch)
    s.num_bad_epochs, s.cooldown_counter = int(state.num_bad_epochs), int(state.cooldown_counter)
    s._last_lr = [g["lr"] for g in groups]


def _among(names: list):
    """A selector of the parameters named `names`: a predicate, not a list of names, since
    `skip_unused` shows the groups one parameter at a time (a list's names must all be there)."""
    chosen = frozenset(names)

    def selected(name, leaf):
        return name in chosen

    return selected


# --------------------------------------------------------------------------- the state

#: optax states whose count is the scheduler's: torch's ``scheduler.last_epoch``.
_SCHEDULE_STATES = (optax.ScaleByScheduleState, optax.InjectHyperparamsState,
                    optax.InjectStatefulHyperparamsState)
_DEEPER = object()  # a field `_rebuild` looks inside


def _rebuild(node, fn, label=0):
    """`node`, an optax state, with each field of its NamedTuples replaced by
    ``fn(owner, field, value, label)``, or looked into where that returns `_DEEPER`; label:
    the `optax.multi_transform` branch (param group; -1: parameters of no group) it lies in."""
    if isinstance(node, optax.MultiTransformState):
        return node._replace(inner_states={k: _rebuild(s, fn, k)
                                           for k, s in node.inner_states.items()})
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        out = []
        for field in node._fields:
            value = getattr(node, field)
            new = fn(node, field, value, label)
            out.append(_rebuild(value, fn, label) if new is _DEEPER else new)
        return type(node)(*out)
    if isinstance(node, tuple | list):
        return type(node)(_rebuild(v, fn, label) for v in node)
    if isinstance(node, dict):
        return {k: _rebuild(v, fn, label) for k, v in node.items()}
    return node


def _scalar_dtype():
    """The dtype of torch's step counts and scalar states (``_get_scalar_dtype``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _group_step(optimizer, i: int) -> int:
    """The number of steps every parameter of param group i has taken (SGD keeps none: 1 once
    it has a momentum buffer); refuses a group whose parameters took different numbers."""
    steps = set()
    for p in optimizer.param_groups[i]["params"]:
        state = optimizer.state.get(p, {})
        steps.add(int(state["step"]) if "step" in state else int(bool(state)))
    if len(steps) > 1:
        raise InputError(
            f"optimizer: the parameters of param_groups[{i}] have taken different numbers of "
            f"steps ({', '.join(map(str, sorted(steps)))}); the optax state counts one per "
            "group (a parameter whose grad was None on some steps is not represented)")
    return steps.pop() if steps else 0


def _per_param(optimizer, named: dict, key: str, tree: dict) -> dict:
    """A params-shaped field from torch's ``state[p][key]``; the initial value where absent."""
    out = {}
    for name, like in tree.items():
        state = {} if isinstance(like, optax.MaskedNode) else optimizer.state.get(named[name], {})
        if key not in state:
            out[name] = like
            continue
        value = state[key].detach().cpu().numpy().copy()  # a copy: torch steps in place
        if value.shape != like.shape:
            raise InputError(f"optimizer: state[{name!r}][{key!r}] has shape {value.shape}, the "
                             f"JAX state's is {like.shape}")
        out[name] = jnp.asarray(value, like.dtype)
    return out


def _common(optimizer, members: list, i: int, key: str, like):
    """A () field from torch's ``state[p][key]``, which every parameter p of `members` (those
    of group i, or one) must share."""
    values = {optimizer.state[p][key].item() for p in members
              if key in optimizer.state.get(p, {})}
    if len(values) > 1:
        raise InputError(f"optimizer: the parameters of param_groups[{i}] hold different "
                         f"{key!r} ({sorted(values)}); the optax state keeps one per group")
    return jnp.asarray(values.pop(), like.dtype) if values else like


def _own_step(optimizer, p) -> int:
    state = optimizer.state.get(p, {})
    return int(state["step"]) if "step" in state else int(bool(state))


def _read(optimizer, module, scheduler, template, only: str | None = None):
    """`template` (the transformation's initial state) filled from torch's state; `only`: the
    name of the one parameter it is the state of (`skip_unused`'s per-parameter states)."""
    entry = OPTIMIZER_STATES[type(optimizer).__name__]
    named = module.state_dict(keep_vars=True)
    n = len(optimizer.param_groups)
    if only is None:
        steps = [_group_step(optimizer, i) for i in range(n)]
        members = [g["params"] for g in optimizer.param_groups]
    else:
        steps, members = [_own_step(optimizer, named[only])] * n, [[named[only]]] * n
    position = None if scheduler is None else _position(scheduler)
    cycled = [None if scheduler is None else getattr(_schedule(
        scheduler, _base(scheduler, g["lr"], i), i), "momentum", None)
        for i, g in enumerate(optimizer.param_groups)]
    scheduled = []

    def fill(owner, field, value, label):
        i = max(label, 0)
        if isinstance(owner, _SCHEDULE_STATES):
            scheduled.append(owner)
            at = steps[i] if position is None else position
            if field == "count":
                return jnp.asarray(at, value.dtype)
            if field == "hyperparams_states":
                return jax.tree.map(lambda c: jnp.asarray(at, c.dtype), value)
            if field == "hyperparams":  # the values of the last update, as optax keeps them
                count = jnp.asarray(max(at - 1, 0), jnp.int32)
                return {k: jnp.asarray(cycled[i](count), v.dtype) for k, v in value.items()}
            return _DEEPER
        if field not in entry.fields:
            return _DEEPER
        if entry.fields[field] == "step":
            return jnp.asarray(steps[i], value.dtype)
        if isinstance(value, dict):
            return _per_param(optimizer, named, entry.fields[field], value)
        return _common(optimizer, members[i], i, entry.fields[field], value)

    state = _rebuild(template, fill)
    if position is not None and not scheduled and any(s != position for s in steps):
        raise InputError(f"scheduler: it has stepped {position} times and the optimizer "
                         f"{steps[0]}; {type(optimizer).__name__} reads its schedule at its own "
                         "step count, so they must agree")
    return state


def to_optax(optimizer, module, scheduler=None, *, unused: bool = False):
    """A live torch optimizer (and scheduler) as a `functional_fit.optim` transformation and
    the optax state from which JAX continues as torch would.

    The state is for the params pytree ``parity.params.from_module(module)``: a dict of the
    module's ``state_dict`` names -> arrays (the pytree `functional_fit.models.mlp` and
    `functional_fit.fit.train` take). Continue with ``functional_fit.engine.step(params, state,
    x, y, model=..., loss=..., optimizer=tx)``, one step per torch ``opt.step(); sched.step()``,
    or many compiled: ``engine.train_steps(engine.init_carry(params, tx)._replace(
    opt_state=state), x, y, tx, model=..., loss=...)`` (`fit.train` starts from ``tx.init``).

    The transformation is the function of the same name (torch's class name), called with each
    group's hyperparameters; several groups are ``param_groups`` selecting each group's
    parameters by name. With a scheduler, each group's lr is the `lr_scheduler` schedule of the
    same name made from the group's ``initial_lr``, and its count is ``scheduler.last_epoch``.
    The state maps torch's per-parameter state field by field (`OPTIMIZER_STATES`): torch's
    ``state[p]["step"]``, one per parameter, is optax's count, one per group, so the
    parameters of a group must have taken the same number of steps.

    Args:
      optimizer: a ``torch.optim`` optimizer of a class in `OPTIMIZER_STATES`.
      module: the ``torch.nn.Module`` whose parameters (all of them) the optimizer holds.
      scheduler: None, or a ``torch.optim.lr_scheduler`` scheduler of `optimizer`, of a class
        in `SCHEDULERS`, stepped once per optimizer step, or a ``ReduceLROnPlateau`` (chained
        after the optimizer, stepped on each step's loss: ``value=``, as `engine.step` passes).
      unused: the transformation wrapped in `functional_fit.optim.skip_unused`, whose state
        is per parameter, each with its own count: torch's parameters whose grad was None on
        some steps (each with its own ``step``) are then represented, and JAX goes on skipping
        a parameter whose gradient is zero, as torch skips one whose grad is None.

    Returns:
      (transformation, state): an `optax.GradientTransformationExtraArgs` and its state.

    Raises:
      InputError: an optimizer or scheduler class without an entry, a module whose parameters
        are not the optimizer's, a scheduler of another optimizer, or a state the optax state
        cannot hold (parameters of one group at different step counts).
    """
    _, entry = _factory(optimizer)
    tx = transformation(optimizer, module, scheduler)
    if _is_plateau(scheduler):
        if unused:
            raise InputError("unused: not with a ReduceLROnPlateau, whose state is not per "
                             "parameter")
        inner, plateau = tx.init(from_module(module))
        return tx, ((entry.read or _read)(optimizer, module, None, inner),
                    _plateau_state(scheduler, plateau))
    if not unused:
        return tx, (entry.read or _read)(optimizer, module, scheduler,
                                         tx.init(from_module(module)))
    if entry.read is not None:
        raise InputError(f"unused: {type(optimizer).__name__}'s state is not per parameter")
    tx = fo.skip_unused(tx)
    template = tx.init(from_module(module))
    return tx, SkipUnusedState({name: _read(optimizer, module, scheduler, inner, only=name)
                                for name, inner in template.per_param.items()})


def _collect(state, entry: Entry) -> dict:
    """What a state holds, by param group: counts, schedule positions, scalars, and by
    parameter name the params-shaped fields, each under torch's key."""
    found = {"count": {}, "position": {}, "scalars": {}, "values": {}}

    def take(owner, field, value, label):
        if label < 0:
            return value
        if isinstance(owner, _SCHEDULE_STATES):
            if field == "count":
                found["position"].setdefault(label, int(value))
            return _DEEPER if field == "inner_state" else value
        if field not in entry.fields:
            return _DEEPER
        key = entry.fields[field]
        if key == "step":
            found["count"].setdefault(label, int(value))
        elif isinstance(value, dict):
            for name, v in value.items():
                if not isinstance(v, optax.MaskedNode):
                    found["values"].setdefault(name, {})[key] = np.asarray(v)
        else:
            found["scalars"].setdefault(label, {})[key] = np.asarray(value)
        return value

    _rebuild(state, take)
    return found


def _fresh(got: dict, init: dict, i: int, names: list) -> bool:
    """Whether group i's state is the initial one (torch then holds no state for it)."""
    pairs = [(got["values"].get(n, {}), init["values"].get(n, {})) for n in names]
    pairs.append((got["scalars"].get(i, {}), init["scalars"].get(i, {})))
    return got["count"].get(i) == init["count"].get(i) and all(
        a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a) for a, b in pairs)


def _torch_state(entry: Entry, step: int, values: dict, scalars: dict, p) -> dict:
    """torch's ``state[p]``, its keys in torch's order."""
    out = {}
    for key in entry.keys:
        if key == "step":
            out[key] = int(step) if entry.int_step else torch.tensor(float(step),
                                                                      dtype=_scalar_dtype())
        elif key in scalars:
            out[key] = torch.tensor(scalars[key].item(), dtype=_scalar_dtype())
        elif key in values and not (values[key].shape == (0,) and p.numel()):  # (0,): none
            out[key] = torch.from_numpy(np.array(values[key])).to(p.dtype)
    return out


def _check_state(state, template) -> None:
    if jax.tree.structure(state) != jax.tree.structure(template):
        raise InputError("state: it is not a state of the transformation to_optax gives for "
                         "this optimizer, module and scheduler (its tree differs)")
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(template)):
        if np.shape(a) != np.shape(b):
            raise InputError(f"state: an array of shape {np.shape(a)} where the transformation's "
                             f"has {np.shape(b)}")


def _advance(scheduler, position: int) -> None:
    """Step `scheduler` on to `position`, by torch's own steps (its rates bit for bit)."""
    now = _position(scheduler)
    if now > position:
        raise InputError(f"scheduler: it has stepped {now} times, past the state's {position}; "
                         "give a scheduler that has not (a new one)")
    with warnings.catch_warnings():  # torch warns of a scheduler stepped before its optimizer
        warnings.simplefilter("ignore")
        for _ in range(position - now):
            scheduler.step()


def load_state(optimizer, module, state, scheduler=None):
    """Write an optax state of ``to_optax(optimizer, module, scheduler)``'s transformation into
    the torch optimizer (and scheduler), so that torch continues as JAX would.

    Each parameter's ``optimizer.state[p]`` is replaced (removed where its group's state is
    the initial one, as torch holds none before the first step). The scheduler is stepped, by
    its own ``step()``, to the state's count: give one that has not stepped further (a new
    one); its rates and cycled momenta are then torch's own, bit for bit. torch's ``step`` of
    RMSprop, Adagrad and Adadelta, which their updates do not read, is not in the optax state
    without a schedule: it is then kept from the optimizer's own state (0 where it has none).
    A ReduceLROnPlateau is not stepped: its attributes and the groups' rates are set from the
    chained ``ReduceLROnPlateauState``. LBFGS's state goes to its first parameter's.

    Args:
      optimizer, module, scheduler: as `to_optax`'s, with the same hyperparameters as those
        the state was made with.
      state: the optax state, for the params ``parity.params.from_module(module)``; a
        `~functional_fit.optim.unused.SkipUnusedState` (``to_optax(..., unused=True)``)
        writes each parameter's own step.

    Returns:
      The optimizer.

    Raises:
      InputError: as `to_optax`, or a state that is not of that transformation.
    """
    _, entry = _factory(optimizer)
    tx = transformation(optimizer, module, scheduler)
    unused = isinstance(state, SkipUnusedState)
    template = (fo.skip_unused(tx) if unused else tx).init(from_module(module))
    _check_state(state, template)
    if _is_plateau(scheduler):  # the optimizer's state, then the chained plateau's
        _set_plateau(scheduler, state[1])
        state, template, scheduler = state[0], template[0], None
    if entry.write is not None:
        entry.write(optimizer, module, state, scheduler)
        return optimizer
    groups = _group_names(optimizer, module)
    parts = ([(state.per_param[n], template.per_param[n], i, [n])
              for i, names in enumerate(groups) for n in names] if unused
             else [(state, template, i, names) for i, names in enumerate(groups)])
    named = module.state_dict(keep_vars=True)
    for own, initial, i, names in parts:
        _write(optimizer, entry, _collect(own, entry), _collect(initial, entry), i,
               [(n, named[n]) for n in names])
    if scheduler is not None and parts:
        got = _collect(parts[0][0], entry)
        _advance(scheduler, got["position"].get(0, got["count"].get(0, 0)))
    return optimizer


def _write(optimizer, entry: Entry, got: dict, init: dict, i: int, params: list) -> None:
    """torch's state of `params` ((name, parameter) pairs of group i) from a collected state."""
    count = got["count"].get(i, got["position"].get(i))
    fresh = _fresh(got, init, i, [n for n, _ in params]) and not entry.eager
    for name, p in params:
        if fresh:
            optimizer.state.pop(p, None)
            continue
        step = count if count is not None else int(optimizer.state.get(p, {}).get("step", 0))
        optimizer.state[p] = _torch_state(entry, step, got["values"].get(name, {}),
                                          got["scalars"].get(i, {}), p)


__all__ = ["OPTIMIZER_STATES", "SCHEDULERS", "Entry", "LectureSGD", "load_state", "to_optax",
           "transformation"]
