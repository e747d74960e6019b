"""Sweeps the torch way: a loop of the lecture's fits, and `torch.func.vmap` where it applies.

The same grid of runs as `functional_fit.sweep.sweep` (R = S * I * L runs: batch-order seeds,
then starts, then learning rates, the learning rate fastest), returned as the same
`functional_fit.sweep.SweepResult` with numpy arrays:

- `sweep` with ``vmap=False``: what a torch user writes first, one `parity.fit` loop per run
  (``gradient_descent``, ``stochastic_gradient_descent``, ``adam_sgd``), each on a fresh
  ``nn.Module``.
- ``vmap=True``: ``torch.func.vmap`` of one update over all (w0, lr) pairs, for GD and SGD. The
  lecture's GD and SGD updates are written by hand (``p -= lr / (i + 1) * p.grad``), so they
  are functions of (w, lr, batch) and vmap over w and lr with ``torch.func.grad``. SGD's
  batches come from one ``DataLoader`` per seed, shared by every pair of that seed.

Where vmap does not apply: Adam. ``torch.optim.Adam`` updates parameters and its moment
buffers in place, one ``nn.Module`` at a time; ``torch.func.vmap`` transforms functions, not
optimizers, so a vmapped Adam would mean re-writing Adam by hand rather than using torch's.
Nor across seeds: each seed is its own ``DataLoader`` order, so the seeds stay a loop.

Divergence: the `parity.fit` loops stop at the first non-finite loss (`DivergenceError`); the
sweep records the run as diverged with the parameters reached so far and a nan loss, where
the JAX sweep runs every step. Only the flags compare for diverged runs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch.func import grad, vmap
from torch.utils.data import DataLoader

from functional_fit import checks as _checks, data as _data, registry as _jax_registry
from functional_fit import sweep as _jax_sweep
from functional_fit.checks import DivergenceError, InputError
from functional_fit.data import batch_order
from functional_fit.precision import policy
from functional_fit.sweep import NO_SEED, SweepResult
from parity import fit as _fit, registry
from parity.data import OrderSampler, dataset as _dataset, torch_dtype


class _Plan(NamedTuple):
    """A checked torch sweep: what every run shares."""

    optimizer: str  # "gd", "sgd" or "adam"
    model: str  # a name of `parity.registry`
    loss_fn: Any  # the torch loss
    w0s: np.ndarray  # (I, p+1)
    x: np.ndarray  # (n,)
    y: np.ndarray  # (n,)
    lrs: np.ndarray  # (L,)
    length: _data.Length
    seeds: np.ndarray | None  # (S,), None for GD
    pol: Any  # the precision policy


def _checked(optimizer, w0s, x, y, lrs, *, model, loss, steps, epochs, batch_size, seeds,
             dtype) -> _Plan:  # `sweep`'s arguments, checked as the JAX sweep checks them
    """Every argument of `sweep`, checked with the JAX sweep's checks."""
    batching = _data.batching_for(registry.optimizer(optimizer).batching, steps=steps,
                                  epochs=epochs)
    entry = _jax_registry.model(model)
    x, y = _checks.data(x, y)
    w0s = np.atleast_2d(np.asarray(w0s))  # (I, p+1)
    if w0s.ndim != 2:
        raise InputError(f"w0s must have shape (p+1,) or (I, p+1), got {w0s.shape}")
    entry.check_vector("w0s", w0s[0])
    lrs = _jax_sweep.check_lrs(lrs)
    length = _data.fit_length(x.shape[0], batching, steps=steps, epochs=epochs,
                              batch_size=batch_size if batching == "minibatch" else None,
                              defaults=True)
    seeds = _jax_sweep.check_seeds(batching, seeds)
    return _Plan(optimizer, model, registry.loss(loss), w0s, x, y, lrs, length, seeds,
                 policy(dtype))


def _result(plan: _Plan, params, loss, diverged) -> SweepResult:
    n_init, n_lr = plan.w0s.shape[0], plan.lrs.shape[0]
    n_seeds = 1 if plan.seeds is None else len(plan.seeds)
    return SweepResult(
        lr=np.tile(plan.lrs, n_seeds * n_init),
        seed=np.repeat(np.array([NO_SEED]) if plan.seeds is None else plan.seeds, n_init * n_lr),
        init=np.tile(np.repeat(np.arange(n_init), n_lr), n_seeds),
        params=np.asarray(params),  # (R, p+1)
        loss=np.asarray(loss, dtype=np.float64),  # (R,)
        diverged=np.asarray(diverged, dtype=bool),  # (R,)
        paths=None,
    )


def sweep(optimizer, w0s, x, y, lrs, *, model="linear", loss="l1", steps=None, epochs=None,
          batch_size=_data.DEFAULT_BATCH_SIZE, seeds=None, dtype="float64",
          vmap=False) -> SweepResult:  # 13 arguments: `functional_fit.sweep.sweep`'s, mirrored
    """Every combination of batch-order seed, start and learning rate, fitted with torch.

    Args:
      optimizer: ``"gd"``, ``"sgd"`` or ``"adam"``.
      w0s: (p+1,) or (I, p+1) starts; the degree of ``"poly"`` is p.
      x, y: (n,) data.
      lrs: (L,) learning rates.
      model: a model name of `parity.registry` (``"linear"``, ``"poly"``, ...).
      loss: a loss name of `parity.registry` (``"l1"``, ``"mse"``).
      steps: GD's steps (100). epochs, batch_size: SGD's and Adam's (100, 10).
      seeds: (S,) seeds of `functional_fit.data.batch_order` (default [0]); None for GD.
      dtype: precision mode of `functional_fit.precision` (parameters and data dtypes).
      vmap: ``torch.func.vmap`` over the (w0, lr) pairs (GD and SGD only; see the module).

    Returns:
      `functional_fit.sweep.SweepResult` of numpy arrays, R = S * I * L rows; paths None.
    """
    plan = _checked(optimizer, w0s, x, y, lrs, model=model, loss=loss, steps=steps,
                    epochs=epochs, batch_size=batch_size, seeds=seeds, dtype=dtype)
    if vmap:
        if optimizer == "adam":
            raise InputError("vmap: torch.optim.Adam updates modules in place and cannot be "
                             "vmapped; use vmap=False (a loop of fits) for Adam")
        return _sweep_vmap(plan)
    return _sweep_loop(plan)


def _sweep_loop(plan: _Plan) -> SweepResult:
    """One `parity.fit.run` per run, each on a fresh module."""
    params, final, diverged = [], [], []
    tx, ty = (torch.as_tensor(v, dtype=torch_dtype(plan.pol.data)) for v in (plan.x, plan.y))
    length = plan.length
    for seed in [None] if plan.seeds is None else plan.seeds:
        order = None if seed is None else batch_order(plan.x.shape[0], length.epochs, seed)
        for w0 in plan.w0s:
            for lr in plan.lrs:
                # The module copies w0, so its in-place updates leave w0s as they were.
                module = registry.module(plan.model, w0.shape[0] - 1, w=w0,
                                         dtype=torch_dtype(plan.pol.params))
                try:
                    path = _fit.run(plan.optimizer, module, plan.loss_fn, tx, ty, lr=float(lr),
                                    steps=length.steps, order=order,
                                    batch_size=length.batch_size)
                except DivergenceError as exc:
                    params.append(np.asarray(exc.result)[-1])
                    final.append(np.nan)
                    diverged.append(True)
                    continue
                with torch.no_grad():
                    value = plan.loss_fn(module(tx), ty).item()
                params.append(path[-1])
                final.append(value)
                diverged.append(not np.isfinite(value))
    return _result(plan, np.stack(params), final, diverged)


def _sweep_vmap(plan: _Plan) -> SweepResult:
    """GD or SGD with ``torch.func.vmap`` over the (w0, lr) pairs; a loop over seeds."""
    pdt, ddt = torch_dtype(plan.pol.params), torch_dtype(plan.pol.data)
    tx, ty = torch.as_tensor(plan.x, dtype=ddt), torch.as_tensor(plan.y, dtype=ddt)
    n_lr, model_fn, loss_fn = plan.lrs.shape[0], registry.model(plan.model).fn, plan.loss_fn
    w_pairs = torch.as_tensor(np.repeat(plan.w0s, n_lr, axis=0), dtype=pdt)  # (P, p+1)
    lr_pairs = torch.as_tensor(np.tile(plan.lrs, plan.w0s.shape[0]),  # (P,) as Python floats
                               dtype=torch.float64)

    def batch_loss(w, xb, yb):  # w (p+1,), xb, yb (B,) -> ()
        return loss_fn(model_fn(w, xb), yb)

    def step(w, lr, k, xb, yb):  # the lecture's update: p -= lr / (k + 1) * p.grad
        value = batch_loss(w, xb, yb)
        return w - lr / (k + 1) * grad(batch_loss)(w, xb, yb), value

    vstep = vmap(step, in_dims=(0, 0, None, None, None))  # over the pairs; batch shared
    params, final, diverged = [], [], []
    for seed in [None] if plan.seeds is None else plan.seeds:
        w = w_pairs.clone()
        finite = torch.ones(w.shape[0], dtype=torch.bool)
        with torch.no_grad():
            for k, xb, yb in _vmap_batches(plan, seed, tx, ty):
                w, values = vstep(w, lr_pairs, k, xb, yb)  # (P, p+1), (P,)
                finite &= torch.isfinite(values)
            last = vmap(batch_loss, in_dims=(0, None, None))(w, tx, ty)  # (P,)
        finite &= torch.isfinite(w).all(dim=1) & torch.isfinite(last)
        params.append(w.numpy())
        final.append(last.numpy())
        diverged.append((~finite).numpy())
    return _result(plan, np.concatenate(params), np.concatenate(final), np.concatenate(diverged))


def _vmap_batches(plan: _Plan, seed, tx, ty):
    """(k, x batch, y batch) of every step: k counts GD's steps, or SGD's epochs."""
    if plan.length.full:
        return ((i, tx, ty) for i in range(plan.length.steps))
    loader = DataLoader(_dataset(plan.x, plan.y, plan.pol.data),
                        batch_size=plan.length.batch_size,
                        sampler=OrderSampler(batch_order(plan.x.shape[0], plan.length.epochs, seed)))
    return ((e, xb, yb) for e in range(plan.length.epochs) for xb, yb in loader)
