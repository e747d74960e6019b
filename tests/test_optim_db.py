"""PyTorch's own optimizer table, ``optim_db``, run against `functional_fit.optim`.

``torch.testing._internal.common_optimizers.optim_db`` (it imports ``expecttest``, a test
dependency) holds one ``OptimizerInfo`` per optimizer of torch.optim: its keyword sets
(``optim_inputs_func``) and its invalid inputs (``optim_error_inputs_func``). Here it is a
test of ours:

- Every CPU keyword set of every optimizer (torch 2.13: 15 optimizers, 91 sets) goes to the
  `functional_fit.optim` function of the optimizer's name, as it is (tensor lr included), and
  runs 30 float64 steps against torch.optim on two problems: a smooth one, and one with a
  parameter used on every third step only (torch leaves its ``.grad`` None; JAX runs it
  through `skip_unused`) and one whose gradient is exactly zero (not None: torch steps it).
  All sets of an optimizer run side by side in one compiled program.
- The tolerance of each case is torch's own sensitivity, as the atlas measures differences
  (`rel_err` over the path): torch against itself from a start moved by `NUDGE` = 1e-15
  (relative), times `SENSITIVITY_MULTIPLE`, plus the rounding `FLOOR`.
- torch's CUDA-only sets (36, every one ``capturable=True``) cannot run here; ours refuses
  ``capturable=True``, and `test_cuda_only_sets_are_capturable_and_refused` asserts it.
  `REFUSED` lists the other keywords refused on purpose.
- Every error input that torch raises from the keywords (or the params) is raised here too,
  with the same exception type (`InputError` is a ValueError); `NO_COUNTERPART` lists those
  about torch's ``params`` argument, which has none here.

An optimizer of optim_db missing from `functional_fit.optim` fails with "not built: NAME".
Each optimizer has a `Driver`: how torch steps it (a closure for LBFGS), how its gradients
are given (sparse rows for SparseAdam), whether JAX's unused parameter goes through
`skip_unused`, and how many steps it runs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit.optim.unused import skip_unused
from functional_fit.tolerances import accumulated, rel_err, step_roundings
from torch.testing._internal import common_optimizers as common  # needs expecttest

STEPS = 30
#: How far a start is moved (relative) to measure torch's sensitivity to rounding.
NUDGE = 1e-15
#: JAX against torch may part by this many times torch against itself from a start moved by
#: `NUDGE`: the two frameworks round differently on every step (a few ulp, about 1e-16 each),
#: which a path amplifies as it amplifies the nudge of 1e-15. Measured: at most 1.1 times
#: (AdamW at its defaults), 0 for Rprop (its sign-based path is torch's bit for bit).
SENSITIVITY_MULTIPLE = 10
#: And by the rounding of `STEPS` steps of a one-layer network with an optimizer update,
#: added up along a stable path (`functional_fit.tolerances.accumulated`): 30 * 31 * 2^-53
#: = 1.0e-13.
#: An optimizer that evaluates the gradient many times per step (LBFGS: up to 25) meets the
#: rounding of every evaluation, not only the start's, and near an optimum a gradient's
#: rounding is large beside the gradient itself: its sensitivity is also measured from every
#: gradient moved by this times the largest gradient at the start, absolutely, elementwise.
#: Measured (3 steps, smooth problem): torch against itself 4.5e-9 (strong_wolfe) and 6.7e-10
#: (defaults) apart that way, where the start's nudge parts it by 6.4e-12 and 6.8e-9.
EVAL_NOISE = 2.0 ** -53
FLOOR = accumulated("float64", STEPS, step_roundings(8, layers=1, widest=3, optimizer=True))

INFOS = {info.optim_cls.__name__: info for info in common.optim_db}


# --------------------------------------------------------------------------- the problems

RNG = np.random.default_rng(20)
X = RNG.normal(size=(8, 3))  # (8, 3) inputs
Y = RNG.normal(size=(8, 2))  # (8, 2) targets
#: Every parameter is 2-D (Muon takes nothing else), named in sorted order, so torch's list of
#: parameters is JAX's order of the dict's leaves (LBFGS flattens them in that order).
START = {"b": RNG.normal(size=(1, 2)), "u": RNG.normal(size=(2, 2)),
         "w": RNG.normal(size=(3, 2)), "z": RNG.normal(size=(1, 2))}


def loss(xp, p, used: bool):
    """MSE of a tanh layer (b, w); with u, a linear term used on some steps only; with z, a term
    whose gradient is exactly zero. `xp` is ``jnp`` or ``torch``; `used` may be traced."""
    x, y = (jnp.asarray(X), jnp.asarray(Y)) if xp is jnp else map(torch.from_numpy, (X, Y))
    value = xp.mean((xp.tanh(x @ p["w"] + p["b"]) - y) ** 2)
    if "z" in p:
        value = value + 0.0 * xp.sum(p["z"])  # d/dz = 0.0 exactly, not None in torch
    if "u" in p and used is not False:
        value = value + used * xp.mean((x[:, :2] @ p["u"] - y) ** 2)
    return value


def used_at(t: int) -> bool:
    """u takes part in steps 0, 3, 6, ...: torch leaves its .grad None on the others."""
    return t % 3 == 0


PROBLEMS = {"smooth": ("b", "w"), "unused": tuple(START)}


# --------------------------------------------------------------------------- the drivers


class Driver(NamedTuple):
    """How one optimizer is stepped on each side."""

    closure: bool = False  # torch: opt.step(closure); JAX: update(..., value=, grad=, value_fn=)
    sparse: bool = False  # torch: gradients as sparse rows; JAX: dense, zero rows absent
    skip: bool = True  # JAX: the unused parameter goes through skip_unused (torch skips None)
    separable: bool = True  # each parameter on its own: both problems run in one JAX program
    steps: int = STEPS


#: LBFGS flattens every gradient into one vector, a None one as zeros (torch's
#: ``_gather_flat_grad``), so its unused parameter is not skipped, and its line search spans
#: every parameter, so each problem runs alone. Each of its steps iterates up to max_iter = 20
#: times, to convergence, where rounding decides its stopping tests: torch against itself
#: parts by up to 6e-9 after 3 steps here, and by 1e-1 after 30. So 3 steps.
DRIVERS = {"LBFGS": Driver(closure=True, skip=False, separable=False, steps=3),
           "SparseAdam": Driver(sparse=True)}


def torch_path(name: str, kwargs: dict, problem: str, scale: float = 1.0,
               noise: float = 0.0) -> np.ndarray:
    """(steps + 1, P) params of torch.optim.`name` on `problem` from START (times `scale`),
    for the driver's number of steps; every gradient evaluated times 1 + `noise` * N(0, 1),
    elementwise (seeded), when `noise` is given."""
    drive, names = DRIVERS.get(name, Driver()), PROBLEMS[problem]
    rng = np.random.default_rng(0)
    p = {k: torch.tensor(START[k] * scale, requires_grad=True) for k in names}
    opt = getattr(torch.optim, name)(list(p.values()), **kwargs)
    path = [np.concatenate([START[k].ravel() * scale for k in names])]
    for t in range(drive.steps):
        def closure(t=t):
            opt.zero_grad(set_to_none=True)
            value = loss(torch, p, used_at(t))
            value.backward()
            for q in p.values():
                if noise and q.grad is not None:
                    q.grad += noise * torch.from_numpy(rng.standard_normal(q.shape))
            if drive.sparse:
                for q in p.values():
                    if q.grad is not None:
                        q.grad = q.grad.to_sparse(sparse_dim=1)  # rows with a nonzero entry
            return value
        if drive.closure:
            opt.step(closure)
        else:
            closure()
            opt.step()
        path.append(np.concatenate([p[k].detach().numpy().ravel() for k in names]))
    return np.array(path)


def jax_transform(name: str, kwargs: dict, problems: tuple) -> optax.GradientTransformation:
    """`functional_fit.optim`.`name`(**kwargs) for params {problem: {name: array}}; the unused
    parameter through skip_unused."""
    if name not in fo.OPTIMIZERS:
        pytest.fail(f"not built: {name}")
    make = fo.OPTIMIZERS[name]
    if "unused" not in problems or not DRIVERS.get(name, Driver()).skip:
        return make(**kwargs)
    labels = {pb: {k: "unused" if (pb, k) == ("unused", "u") else "used" for k in PROBLEMS[pb]}
              for pb in problems}
    return optax.partition({"used": make(**kwargs), "unused": skip_unused(make(**kwargs))},
                           labels)


def jax_runs(name: str, runs: list) -> list:
    """Each run (kwargs, problems) of functional_fit.optim.`name` from START as
    {problem: (steps + 1, P) params}: every run side by side in one compiled step."""
    txs = [jax_transform(name, kwargs, problems) for kwargs, problems in runs]

    @jax.jit
    def step(params, states, used):
        out = []
        for tx, q, state, (_, problems) in zip(txs, params, states, runs):
            def value_fn(q, problems=problems):
                return sum(loss(jnp, q[pb], used) for pb in problems)

            value, grad = jax.value_and_grad(value_fn)(q)
            updates, state = tx.update(grad, state, q, value=value, grad=grad,
                                       value_fn=value_fn)
            out.append((optax.apply_updates(q, updates), state))
        return [q for q, _ in out], [state for _, state in out]

    params = [{pb: {k: jnp.asarray(START[k]) for k in PROBLEMS[pb]} for pb in problems}
              for _, problems in runs]
    states = [tx.init(q) for tx, q in zip(txs, params)]
    path = [params]
    for t in range(DRIVERS.get(name, Driver()).steps):
        params, states = step(params, states, jnp.float64(used_at(t)))
        path.append(params)
    return [{pb: np.array([np.concatenate([np.asarray(q[i][pb][k]).ravel()
                                           for k in PROBLEMS[pb]]) for q in path])
             for pb in problems} for i, (_, problems) in enumerate(runs)]


@functools.cache
def jax_paths(name: str) -> dict:
    """desc -> {problem: path} of every CPU keyword set of `name`, in one compiled program;
    both problems in one params tree where the driver says the optimizer is separable."""
    sets = [(desc, kwargs) for n, desc, kwargs in RUN if n == name]
    together = DRIVERS.get(name, Driver()).separable
    runs, keys = [], []
    for desc, kwargs in sets:
        for problems in [tuple(PROBLEMS)] if together else [(pb,) for pb in PROBLEMS]:
            runs.append((kwargs, problems))
            keys.append(desc)
    paths = {desc: {} for desc, _ in sets}
    for desc, result in zip(keys, jax_runs(name, runs)):
        paths[desc].update(result)
    return paths


# --------------------------------------------------------------------------- keyword sets


def keyword_sets():
    """(optimizer, desc, kwargs) of every CPU keyword set of optim_db."""
    return [(name, i.desc, i.kwargs) for name, info in INFOS.items()
            for i in info.optim_inputs_func(device="cpu")]


SETS = keyword_sets()
#: optim_db's own keyword sets that ours refuses on purpose (in `REFUSED` below): a float32
#: tensor lr with float64 params, from which torch's Muon and SparseAdam compute their step
#: size in float32 (5e-7 and 2e-10 apart after 30 steps).
REFUSED_SETS = {("Muon", "Tensor lr"), ("SparseAdam", "Tensor lr")}
RUN = [s for s in SETS if s[:2] not in REFUSED_SETS]



def test_optim_db_is_torch_2_13s():
    assert len(INFOS) == 15 and len(SETS) == 91
    assert all(i.params is None for info in INFOS.values()
               for i in info.optim_inputs_func(device="cpu"))  # keywords only


def tolerance(name: str, kwargs: dict, problem: str, theirs: np.ndarray) -> float:
    """`SENSITIVITY_MULTIPLE` times torch against itself from a start moved by `NUDGE`, plus
    `FLOOR`; for an optimizer stepped with a closure, the larger of that sensitivity and
    torch's from gradients moved by `EVAL_NOISE` at every evaluation."""
    sensitivity = rel_err(torch_path(name, kwargs, problem, 1 + NUDGE), theirs)
    if DRIVERS.get(name, Driver()).closure:
        noisy = torch_path(name, kwargs, problem, noise=EVAL_NOISE * gradient_scale(problem))
        sensitivity = max(sensitivity, rel_err(noisy, theirs))
    return SENSITIVITY_MULTIPLE * sensitivity + FLOOR


def gradient_scale(problem: str) -> float:
    """max |g| over the parameters of `problem` at START, in torch (u used)."""
    p = {k: torch.tensor(START[k], requires_grad=True) for k in PROBLEMS[problem]}
    loss(torch, p, True).backward()
    return max(float(q.grad.abs().max()) for q in p.values())


@pytest.mark.parametrize("name, desc, kwargs", RUN, ids=[f"{n}-{d}" for n, d, _ in RUN])
def test_keyword_set_agrees_with_torch(name, desc, kwargs):
    """30 steps of both problems against torch; u is skipped on steps 1 and 2 by both."""
    ours = jax_paths(name)[desc]
    for problem in PROBLEMS:
        theirs = torch_path(name, kwargs, problem)
        assert np.max(np.abs(theirs[-1] - theirs[0])) > 1e-4 * np.max(np.abs(theirs))
        diff, tol = rel_err(ours[problem], theirs), tolerance(name, kwargs, problem, theirs)
        assert diff <= tol, f"{problem}: {diff:.2e} > {tol:.2e}"
    if DRIVERS.get(name, Driver()).skip:
        u = slice(2, 6)  # after b's two elements
        for path in (ours["unused"], theirs):
            assert np.array_equal(path[2, u], path[1, u]) and np.array_equal(path[3, u],
                                                                             path[1, u])


# --------------------------------------------------------------------------- refused on purpose

#: optim_db's CUDA-only keyword sets (36 in torch 2.13, every one capturable=True): torch needs
#: CUDA to run them, so they are not run here; ours refuses capturable=True (XLA compiles the
#: step; there is no CUDA graph to capture into).
CUDA_ONLY = [(name, i.desc, i.kwargs) for name, info in INFOS.items()
             for i in info.optim_inputs_func(device="cuda")
             if i.desc not in {j.desc for j in info.optim_inputs_func(device="cpu")}]


def test_cuda_only_sets_are_capturable_and_refused():
    assert len(CUDA_ONLY) == 36
    for name, desc, kwargs in CUDA_ONLY:
        assert kwargs.get("capturable") is True, (name, desc)
        with pytest.raises(ff.InputError, match="capturable"):
            jax_transform(name, kwargs, ("smooth",))


F32_LR = torch.tensor(1e-3)  # float32, optim_db's "Tensor lr"

#: Keywords torch's CPU optimizers take that ours refuses on purpose, each with its reason
#: in the InputError (`functional_fit.optim`): 3 + 1 + 6 = 10.
REFUSED = [
    # differentiable=True keeps torch's step count as a float32 tensor: other numbers
    *[(name, dict(differentiable=True), "differentiable") for name in ("Adam", "AdamW", "NAdam")],
    # torch's batched ASGD rounds its step sizes otherwise than its loop
    ("ASGD", dict(foreach=True), "foreach"),
    # a float32 lr with float64 params: torch computes the step size in float32
    *[(name, dict(lr=F32_LR), "32-bit") for name in ("Adam", "AdamW", "Adamax", "NAdam", "Muon",
                                                      "SparseAdam")],
]


@pytest.mark.parametrize("name, kwargs, word", REFUSED,
                         ids=[f"{n}-{w}" for n, _, w in REFUSED])
def test_refused_on_purpose(name, kwargs, word):
    """torch takes it on the CPU with float64 params; ours refuses it, naming why."""
    getattr(torch.optim, name)([torch.tensor(START["w"], requires_grad=True)], **kwargs)
    with pytest.raises(ff.InputError, match=word):
        jax_runs(name, [(kwargs, ("smooth",))])  # a float32 lr: refused at its first update


# --------------------------------------------------------------------------- error inputs

#: optim_db's error inputs about torch's ``params`` argument, which has no counterpart here:
#: `functional_fit.optim`'s functions take keywords, `init` takes any pytree of arrays, and
#: `param_groups` selects leaves by their dotted names.
NO_COUNTERPART = {
    "invalid param type": "no params argument; init takes any pytree of arrays",
    "a param group cannot have duplicate parameters": "a UserWarning in torch; a selector "
                                                      "selects each leaf once",
    "all optimizer params should be with/without names": "every leaf has its dotted name",
    "all optimizer param groups should be with/without names.": "every leaf has its name",
    "dense params required": "JAX arrays are dense",
    "dense params required in param_groups": "JAX arrays are dense",
}
#: torch's error at its first step, refused here when the state is made (`init`), with an
#: InputError (a ValueError) as every refusal of bad input here: not torch's RuntimeError.
AT_INIT = {"does not support complex parameters": ff.InputError}
#: torch refuses a parameter in two groups; here two groups selecting one leaf.
ACROSS_GROUPS = "duplicate parameters should not occur across param groups either"


def error_inputs():
    """(optimizer, desc, kwargs, params, error type) of every float64 CPU error input."""
    out = []
    for name, info in INFOS.items():
        for e in info.optim_error_inputs_func(device="cpu", dtype=torch.float64):
            i = e.optimizer_error_input
            if i.desc in NO_COUNTERPART:
                continue
            step = e.error_on == common.OptimizerErrorEnum.STEP_ERROR
            expected = AT_INIT[i.desc] if step else e.error_type
            out.append(pytest.param(name, i.desc, i.kwargs, i.params, expected,
                                    id=f"{name}-{i.desc}"))
    return out


ERRORS = error_inputs()


def test_error_inputs_are_counted():
    every = [e for info in INFOS.values()
             for e in info.optim_error_inputs_func(device="cpu", dtype=torch.float64)]
    skipped = [e for e in every if e.optimizer_error_input.desc in NO_COUNTERPART]
    assert len(every) == len(ERRORS) + len(skipped) and len(skipped) == 15 * 4 + 2


def jax_params(params) -> dict:
    """torch's params of an error input (None, or a list of dense tensors) as a dict."""
    if params is None:
        return {"w": jnp.asarray(START["w"])}
    return {f"p{i}": jnp.asarray(t.detach().numpy()) for i, t in enumerate(params)}


@pytest.mark.parametrize("name, desc, kwargs, params, error", ERRORS)
def test_error_input_is_refused_with_torchs_type(name, desc, kwargs, params, error):
    """Refused when the optimizer is built (keywords) or when its state is made (params)."""
    if name not in fo.OPTIMIZERS:
        pytest.fail(f"not built: {name}")
    if desc == ACROSS_GROUPS:
        kwargs, params = dict(param_groups=[{"params": "w"}, {"params": "w"}]), None
    with pytest.raises(error):
        fo.OPTIMIZERS[name](**kwargs).init(jax_params(params))
    if params is None and desc != ACROSS_GROUPS:  # keywords alone: refused when built
        with pytest.raises(error):
            fo.OPTIMIZERS[name](**kwargs)
