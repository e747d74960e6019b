"""The parity matrix: model × loss × optimizer × dtype, JAX against torch, case by case.

``functional-fit parity`` prints it; this module computes it. Each case fits one model with one
loss and one optimizer in one dtype, in JAX (`functional_fit.fit`) and in torch
(`parity.fit`), from the same start and over the same batch order, and reports:

- ``max_grad_diff``: the relative difference (`rel_err`, max |a - b| / max |b|) of the two
  gradients of the loss on the whole data, the larger of the one at zero parameters and the one
  at a random point;
- ``max_traj_diff``: the relative difference of the two whole paths of parameters, (steps+1, p+1);
- ``tol``: the case's tolerance, `trajectory_tol(dtype)`; the case is ``ok`` when both
  differences are within it. (The test suite holds gradients to the tighter `grad_tol`.)

Data sets, in order: the lecture's (n = 100, batch size 11), then random ones drawn from
``seed``: n in [20, 200], x uniform in [-1, 1], y = s (1 + 3x - 4x^2 + noise) with s from 0.1
to 100, and an odd batch size from 3 to 15 that need not divide n. Each data set gives 36 cases (3 models × 2 losses × 3
optimizers × 2 dtypes); `run` takes the first ``n_cases`` of that sequence.

Settings stay inside the parity domain (see tests/test_property_parity.py): learning rates are
set from the data's scale so that every update is stable, and fits are short (at most
`MAX_STEPS_FLOAT32` steps) so that the float32 bound applies. An L1 case on random data can
still, rarely, part legitimately where a residual is within rounding of 0 and its sign differs
between the frameworks; the property tests tell that case apart, this report does not.

Batch sizes are odd on purpose. With an even batch whose L1 residuals are half positive and
half negative (the lecture's first batch of 10 at w = 0 is one), d/dw0 of the loss is 0 in
exact arithmetic and a rounding residue of either sign in float32; Adam divides it by
sqrt(v_hat) + 1e-8 and takes a step of up to lr in the residue's direction, so the frameworks
part by O(lr) at once. An odd batch cannot balance. (tests/test_property_parity.py keeps that
case as a regression test and guards for it.)

Everything here is deterministic: the same arguments give the same numbers, to the bit, on the
same machine and versions.

Compiled programs: JAX compiles each case's fit and gradient for its data set's n and batch
size, and a case's programs hold about 80 of the process's memory maps while they are kept, of
which the kernel allows 65,530 (``/proc/sys/vm/max_map_count``): about 800 cases. No later
data set runs a program of an earlier one (its n and batch size differ), so `run` frees them
(``jax.clear_caches()``) when it moves to the next data set, and a run of any length holds
one data set's programs at most.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch

import parity
from functional_fit import checks as _checks, data as _data, fit, registry
from functional_fit.checks import InputError
from functional_fit.precision import require
from functional_fit.tolerances import (OPTIM_TRAJECTORY_FLOAT32, TRAJECTORY_FLOAT64, rel_err,
                                       trajectory_tol)

MODELS = (("linear", 1), ("poly", 2), ("poly", 5))
LOSSES = ("l1", "mse")
OPTIMIZERS = ("gd", "sgd", "adam")
DTYPES = ("float64", "float32")
DEFAULT_CASES = 60
#: The most cases a run takes: 2,000 data sets, about eight hours at the 0.4 s a case takes on
#: a CPU. Memory does not bound a run (each data set's compiled programs are freed before the
#: next, see `run`), time does: a run longer than a working day is a typo, not a check.
MAX_CASES = 36 * 2000
SECONDS_PER_CASE = 0.4  # measured on a CPU, compiling included: for the refusal's message
GD_STEPS = 40  # full-batch steps
EPOCHS = 4  # minibatch epochs


#: The optimizer matrix (``--optimizers all``): torch.optim settings, each at its defaults and
#: with the keywords that change its update (the combinations that interact included), run by
#: functional_fit.optim in JAX and by torch.optim itself, on the lecture's data, the quadratic
#: model and MSE, full batch and in minibatches, float64 and float32.
OPTIMIZER_SETTINGS = (
    ("SGD", {}),
    ("SGD", {"momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True, "weight_decay": 1e-2}),
    ("AdamW", {}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr_decay": 1e-2}),
    ("Adamax", {}),
    ("NAdam", {}),
    ("NAdam", {"weight_decay": 1e-2, "decoupled_weight_decay": True}),
    ("RAdam", {}),
    ("RAdam", {"weight_decay": 1e-2, "decoupled_weight_decay": True}),
    ("Adadelta", {}),
    ("Rprop", {}),
    ("Rprop", {"etas": (0.3, 1.5), "step_sizes": (1e-4, 1.0)}),
    ("ASGD", {}),
    ("ASGD", {"t0": 10, "weight_decay": 1e-2}),
    ("Adafactor", {}),
    ("Adafactor", {"beta2_decay": -0.5, "weight_decay": 1e-2}),
    ("SGD", {"momentum": 0.9, "maximize": True}),
)
OPTIMIZER_BATCHING = ("full", "minibatch")
#: Adaptive optimizers step by about lr per step whatever the gradient's scale; SGD's step is
#: lr times the gradient, so it takes the stable GD rate. Adadelta's lr multiplies a step that
#: starts at sqrt(eps): it needs lr near 1 to move at all.
ADAPTIVE = ("Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Rprop",
            "Adafactor")
OPTIMIZER_CHOICES = ("lecture", "all")


class Dataset(NamedTuple):
    """One data set of the matrix."""

    name: str  # "lecture", "random1", ...
    x: np.ndarray  # (n,) float64
    y: np.ndarray  # (n,) float64
    batch_size: int  # minibatch size of SGD and Adam
    order_seed: int  # seed of the batch order both frameworks consume


class Case(NamedTuple):
    """One cell of the matrix."""

    data: str  # the data set's name
    model: str  # "linear" or "poly"
    degree: int  # polynomial degree (1 for linear)
    loss: str  # "l1" or "mse"
    optimizer: str  # "gd", "sgd" or "adam"
    dtype: str  # "float64" or "float32"

    @property
    def name(self) -> str:
        model = registry.model(self.model).label(self.degree)  # "linear", "poly2", ...
        return f"{self.data}/{model}/{self.loss}/{self.optimizer}"


class CaseResult(NamedTuple):
    """What one case measured."""

    name: str  # data/model/loss/optimizer
    dtype: str  # "float64" or "float32"
    max_grad_diff: float | None  # relative, the worse of two points; None: not measured here
    max_traj_diff: float  # relative, over the whole path
    tol: float  # trajectory_tol(dtype)
    ok: bool  # both differences within tol

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "max_grad_diff": self.max_grad_diff,
                "max_traj_diff": self.max_traj_diff, "tol": self.tol, "ok": self.ok}


def datasets(seed: int = 0):
    """The lecture's data, then random data sets drawn from `seed`, without end."""
    x, y = _data.lecture_data()
    yield Dataset("lecture", x, y, batch_size=11, order_seed=seed)
    k = 0
    while True:
        k += 1
        rng = np.random.default_rng([seed, k])
        n = int(rng.integers(20, 201))
        x = np.sort(rng.uniform(-1.0, 1.0, n))
        scale = 10.0 ** rng.uniform(-1.0, 2.0)
        y = scale * (1.0 + 3.0 * x - 4.0 * x**2 + 0.7 * rng.normal(size=n))
        batch_size = 2 * int(rng.integers(1, 8)) + 1  # odd: 3 .. 15, see the module's notes
        yield Dataset(f"random{k}", x, y, batch_size=batch_size, order_seed=k)


def matrix(dataset_name: str) -> list[Case]:
    """The 36 cases of one data set, in report order."""
    return [
        Case(dataset_name, model, degree, loss, optimizer, dtype)
        for model, degree in MODELS
        for loss in LOSSES
        for optimizer in OPTIMIZERS
        for dtype in DTYPES
    ]


def learning_rate(case: Case, x, y) -> float:
    """A stable learning rate for the case, from the scale of x and y (the parity domain)."""
    a = float(np.max(np.abs(x)))
    s = float(np.max(np.abs(y)))
    p1 = registry.model(case.model).n_params(case.degree)
    s1 = sum(a**k for k in range(p1))
    s2 = sum(a ** (2 * k) for k in range(p1))
    if case.optimizer == "adam":
        return 0.05 * s / s1
    if case.loss == "mse":
        return 0.5 / s2  # the MSE Hessian's largest eigenvalue is at most 2 * s2
    return 0.5 * s / s2


@partial(jax.jit, static_argnames=("model", "loss"))
def _jax_grad(w, x, y, *, model, loss):
    """(p+1,) gradient of loss(model(w, x), y), compiled once per shape."""
    return jax.grad(lambda w: loss(model(w, x), y))(w)


def _grad_diff(case: Case, w, x, y) -> float:
    g = _jax_grad(jnp.asarray(w), jnp.asarray(x), jnp.asarray(y),
                  model=registry.model(case.model).fn, loss=registry.loss(case.loss))
    tw = torch.tensor(w, requires_grad=True)  # w's own dtype, the case's parameter dtype
    fn = parity.registry.model(case.model).fn
    parity.registry.loss(case.loss)(fn(tw, torch.from_numpy(x)), torch.from_numpy(y)).backward()
    return rel_err(np.asarray(g), tw.grad.numpy())


def run_case(case: Case, ds: Dataset, grad_cache: dict | None = None) -> CaseResult:
    """Run one case in both frameworks and compare.

    `grad_cache` (optional) keeps the gradient difference of each (data, model, loss, dtype),
    which the three optimizers share, so it is computed (and compiled) once.
    """
    pol = require(case.dtype)
    x, y = ds.x.astype(pol.data), ds.y.astype(pol.data)
    p1 = registry.model(case.model).n_params(case.degree)
    lr = learning_rate(case, ds.x, ds.y)
    w0 = np.zeros(p1, dtype=pol.params)
    tdtype = parity.data.torch_dtype(pol.params)
    module = parity.registry.module(case.model, case.degree, dtype=tdtype)
    loss_fn = parity.registry.loss(case.loss)
    kw = dict(model=registry.model(case.model).fn, loss=registry.loss(case.loss), lr=lr)
    order = None if case.optimizer == "gd" else _data.batch_order(x.shape[0], EPOCHS, ds.order_seed)
    length = dict(steps=GD_STEPS, order=order, batch_size=ds.batch_size)
    res = fit.run(case.optimizer, w0, x, y, **kw, **length)
    tpath = parity.fit.run(case.optimizer, module, loss_fn, torch.from_numpy(x), torch.from_numpy(y),
                           lr=lr, **length)
    traj = rel_err(np.asarray(res.path), tpath)
    key = (ds.name, case.model, case.degree, case.loss, case.dtype)
    if grad_cache is None or key not in grad_cache:
        rng = np.random.default_rng(p1)
        w_random = (float(np.max(np.abs(ds.y))) * rng.normal(size=p1) / p1).astype(pol.params)
        grad = max(_grad_diff(case, w0, x, y), _grad_diff(case, w_random, x, y))
        if grad_cache is not None:
            grad_cache[key] = grad
    grad = grad_cache[key] if grad_cache is not None else grad
    tol = trajectory_tol(case.dtype)
    ok = bool(grad <= tol and traj <= tol)
    return CaseResult(case.name, case.dtype, float(grad), float(traj), float(tol), ok)


def setting_name(name: str, kwargs: dict) -> str:
    """``SGD(momentum=0.9,nesterov=True)``: a torch setting as it is written."""
    return f"{name}({','.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def run_optimizer_case(name: str, kwargs: dict, batching: str, dtype: str, ds: Dataset
                       ) -> CaseResult:
    """One torch.optim setting: functional_fit.optim (fit.run) against torch.optim itself."""
    pol = require(dtype)
    x, y = ds.x.astype(pol.data), ds.y.astype(pol.data)
    case = Case(ds.name, "poly", 2, "mse", "adam" if name in ADAPTIVE else "gd", dtype)
    lr = {"Adadelta": 1.0}.get(name, learning_rate(case, ds.x, ds.y))
    w0 = np.zeros(3, dtype=pol.params)
    if batching == "full":
        length = dict(steps=GD_STEPS)
    else:
        length = dict(order=_data.batch_order(x.shape[0], EPOCHS, ds.order_seed),
                      batch_size=ds.batch_size)
    res = fit.run(registry.optimizer(name, **kwargs), w0, x, y, model=registry.model("poly").fn,
                  loss=registry.loss("mse"), lr=lr, **length)
    module = parity.registry.module("poly", 2, dtype=parity.data.torch_dtype(pol.params))
    tpath = parity.fit.run(parity.registry.optimizer(name, **kwargs), module,
                           parity.registry.loss("mse"), torch.from_numpy(x), torch.from_numpy(y),
                           lr=lr, **length)
    traj = rel_err(np.asarray(res.path), tpath)
    tol = TRAJECTORY_FLOAT64 if dtype == "float64" else OPTIM_TRAJECTORY_FLOAT32
    label = f"{ds.name}/poly2/mse/{setting_name(name, kwargs)}/{batching}"
    return CaseResult(label, dtype, None, float(traj), float(tol), bool(traj <= tol))


def optimizer_cases(seed: int = 0) -> list[tuple]:
    """The optimizer matrix: (name, kwargs, batching, dtype, dataset) on the lecture's data."""
    ds = next(datasets(seed))
    return [(name, kw, batching, dtype, ds) for name, kw in OPTIMIZER_SETTINGS
            for batching in OPTIMIZER_BATCHING for dtype in DTYPES]


def check_cases(n_cases, name: str = "cases") -> int:
    """`n_cases` as an int in [1, `MAX_CASES`]; InputError naming `name` otherwise."""
    n_cases = _checks.positive_int(name, n_cases)
    if n_cases > MAX_CASES:
        raise InputError(f"{name} must be at most {MAX_CASES} ({MAX_CASES // 36} data sets, "
                         f"about {MAX_CASES * SECONDS_PER_CASE / 3600:.0f} hours), got {n_cases}")
    return n_cases


def cases(n_cases: int = DEFAULT_CASES, seed: int = 0) -> list[tuple[Case, Dataset]]:
    """The first `n_cases` cases of the matrix, each with its data set."""
    n_cases = check_cases(n_cases)
    seed = _checks.nonnegative_int("seed", seed)
    out = []
    for ds in datasets(seed):
        for case in matrix(ds.name):
            if len(out) == n_cases:
                return out
            out.append((case, ds))
    raise AssertionError("unreachable")  # pragma: no cover


def run(n_cases: int = DEFAULT_CASES, seed: int = 0, progress=None,
        optimizers: str = "lecture") -> list[CaseResult]:
    """Run the first `n_cases` cases of the parity matrix, and the optimizer matrix if asked.

    Needs JAX's 64-bit mode (the float64 cases): `functional_fit.float64()`.

    Args:
      n_cases: how many cases, > 0; 36 per data set, the lecture's first.
      seed: seed of the random data sets and their batch orders, >= 0.
      progress: optional callable, called with each case's name before it runs.
      optimizers: ``"lecture"``, the lecture's three optimizers (the matrix above); ``"all"``
        adds the optimizer matrix, every setting of `OPTIMIZER_SETTINGS` in both dtypes,
        full batch and minibatches (its ``max_grad_diff`` is None, ``null`` in JSON: the
        gradients are the first matrix's own).

    Returns:
      one `CaseResult` per case, in order.

    Between data sets it clears JAX's caches of compiled programs (``jax.clear_caches()``):
    a long run would otherwise exhaust the process's memory maps (see the module's notes).

    Raises:
      InputError: bad `n_cases` (more than `MAX_CASES`) or `seed`.
      PrecisionError: JAX's 64-bit mode is off.
    """
    todo = cases(n_cases, seed)
    _checks.choice("optimizers", optimizers, OPTIMIZER_CHOICES)
    require("float64")
    results, grad_cache = [], {}
    for k, (case, ds) in enumerate(todo):
        if k and ds.name != todo[k - 1][1].name:
            jax.clear_caches()  # the last data set's programs: never run again (module notes)
        if progress is not None:
            progress(case.name)
        results.append(run_case(case, ds, grad_cache))
    if optimizers == "all":
        for name, kw, batching, dtype, ds in optimizer_cases(seed):
            if progress is not None:
                progress(setting_name(name, kw))
            results.append(run_optimizer_case(name, kw, batching, dtype, ds))
    return results


def to_json(results) -> dict:
    """``{"cases": [{"name", "dtype", "max_grad_diff", "max_traj_diff", "tol", "ok"}, ...]}``."""
    return {"cases": [r.to_json() for r in results]}


def table(results) -> str:
    """The results as a text table, one row per case."""
    rows = [("case", "dtype", "max grad diff", "max traj diff", "tol", "")]
    for r in results:
        grad = "-" if r.max_grad_diff is None else f"{r.max_grad_diff:.2e}"
        rows.append((r.name, r.dtype, grad, f"{r.max_traj_diff:.2e}",
                     f"{r.tol:.1e}", "pass" if r.ok else "FAIL"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    failed = sum(not r.ok for r in results)
    lines.append("")
    lines.append(f"{len(results) - failed} of {len(results)} cases within tolerance"
                 + (f"; {failed} FAILED" if failed else "")
                 + ". Differences are relative (max |JAX - torch| / max |torch|).")
    return "\n".join(lines)


__all__ = ["Case", "CaseResult", "Dataset", "DEFAULT_CASES", "MAX_CASES", "OPTIMIZER_SETTINGS",
           "cases", "check_cases", "datasets", "learning_rate", "matrix", "optimizer_cases", "run",
           "run_case", "run_optimizer_case", "setting_name", "table", "to_json"]
