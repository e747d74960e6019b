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

import numpy as np
import torch
from torch.func import grad, vmap
from torch.utils.data import DataLoader

from functional_fit import checks as _checks
from functional_fit.checks import DivergenceError, InputError
from functional_fit.data import batch_order
from functional_fit.precision import policy
from functional_fit.sweep import NO_SEED, SweepResult
from parity import fit as _fit, registry
from parity.data import OrderSampler, dataset as _dataset, torch_dtype


def _settings(optimizer, w0s, x, y, lrs, model, steps, epochs, seeds):
    """Checked (w0s (I, p+1), x, y, lrs (L,), length, seeds or None), as the JAX sweep checks."""
    batching = registry.optimizer(optimizer).batching
    registry.model(model)
    x, y = _checks.data(x, y)
    w0s = np.atleast_2d(np.asarray(w0s))  # (I, p+1)
    if w0s.ndim != 2:
        raise InputError(f"w0s must have shape (p+1,) or (I, p+1), got {w0s.shape}")
    if model == "linear" and w0s.shape[1] != 2:
        raise InputError(f"w0s must have 2 columns for the linear model, got {w0s.shape}")
    lrs = _checks.vector("lrs", np.atleast_1d(np.asarray(lrs, dtype=np.float64)))
    if np.any(lrs <= 0):
        raise InputError("lrs must all be positive")
    if batching == "full":
        if seeds is not None or epochs is not None:
            raise InputError(f"{optimizer} takes steps, and no seeds or epochs")
        return w0s, x, y, lrs, _checks.positive_int("steps", 100 if steps is None else steps), None
    if steps is not None:
        raise InputError(f"steps: {optimizer} counts epochs; pass epochs, not steps")
    seeds = [0] if seeds is None else [_checks.nonnegative_int("seeds", s) for s in np.atleast_1d(seeds)]
    return w0s, x, y, lrs, _checks.positive_int("epochs", 100 if epochs is None else epochs), seeds


def _result(lrs, seeds, n_init, params, loss, diverged) -> SweepResult:
    n_seeds = 1 if seeds is None else len(seeds)
    n_pairs = n_init * lrs.shape[0]
    return SweepResult(
        lr=np.tile(lrs, n_seeds * n_init),
        seed=np.repeat(np.array([NO_SEED] if seeds is None else seeds), n_pairs),
        init=np.tile(np.repeat(np.arange(n_init), lrs.shape[0]), n_seeds),
        params=np.asarray(params),  # (R, p+1)
        loss=np.asarray(loss, dtype=np.float64),  # (R,)
        diverged=np.asarray(diverged, dtype=bool),  # (R,)
        paths=None,
    )


def sweep(optimizer, w0s, x, y, lrs, *, model="linear", loss="l1", steps=None, epochs=None,
          batch_size=10, seeds=None, dtype="float64", vmap=False) -> SweepResult:
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
    w0s, x, y, lrs, length, seeds = _settings(optimizer, w0s, x, y, lrs, model, steps, epochs, seeds)
    batch_size = _checks.positive_int("batch_size", batch_size)
    pol = policy(dtype)
    loss_fn = registry.loss(loss)
    if vmap:
        if optimizer == "adam":
            raise InputError("vmap: torch.optim.Adam updates modules in place and cannot be "
                             "vmapped; use vmap=False (a loop of fits) for Adam")
        return _sweep_vmap(optimizer, w0s, x, y, lrs, registry.model(model).fn, loss_fn, length,
                           batch_size, seeds, pol)
    params, final, diverged = [], [], []
    tx, ty = (torch.as_tensor(v, dtype=torch_dtype(pol.data)) for v in (x, y))
    for seed in [None] if seeds is None else seeds:
        order = None if seed is None else batch_order(x.shape[0], length, seed)
        for w0 in w0s:
            for lr in lrs:
                # The module copies w0, so its in-place updates leave w0s as they were.
                module = registry.module(model, w0.shape[0] - 1, w=w0, dtype=torch_dtype(pol.params))
                try:
                    path = _fit.run(optimizer, module, loss_fn, tx, ty, lr=float(lr), steps=length,
                                    order=order, batch_size=batch_size)
                except DivergenceError as exc:
                    params.append(np.asarray(exc.result)[-1])
                    final.append(np.nan)
                    diverged.append(True)
                    continue
                with torch.no_grad():
                    value = loss_fn(module(tx), ty).item()
                params.append(path[-1])
                final.append(value)
                diverged.append(not np.isfinite(value))
    return _result(lrs, seeds, w0s.shape[0], np.stack(params), final, diverged)


def _sweep_vmap(optimizer, w0s, x, y, lrs, model_fn, loss_fn, length, batch_size, seeds, pol):
    """GD or SGD with ``torch.func.vmap`` over the (w0, lr) pairs; a loop over seeds."""
    pdt, ddt = torch_dtype(pol.params), torch_dtype(pol.data)
    tx, ty = torch.as_tensor(x, dtype=ddt), torch.as_tensor(y, dtype=ddt)
    n_lr = lrs.shape[0]
    w_pairs = torch.as_tensor(np.repeat(w0s, n_lr, axis=0), dtype=pdt)  # (P, p+1)
    lr_pairs = torch.as_tensor(np.tile(lrs, w0s.shape[0]), dtype=torch.float64)  # (P,) Python floats' dtype

    def batch_loss(w, xb, yb):  # w (p+1,), xb, yb (B,) -> ()
        return loss_fn(model_fn(w, xb), yb)

    def step(w, lr, k, xb, yb):  # the lecture's update: p -= lr / (k + 1) * p.grad
        value = batch_loss(w, xb, yb)
        return w - lr / (k + 1) * grad(batch_loss)(w, xb, yb), value

    vstep = vmap(step, in_dims=(0, 0, None, None, None))  # over the pairs; batch shared
    params, final, diverged = [], [], []
    for seed in [None] if seeds is None else seeds:
        w = w_pairs.clone()
        finite = torch.ones(w.shape[0], dtype=torch.bool)
        if optimizer == "gd":
            batches = ((i, tx, ty) for i in range(length))
        else:
            loader = DataLoader(_dataset(x, y, pol.data), batch_size=batch_size,
                                sampler=OrderSampler(batch_order(x.shape[0], length, seed)))
            batches = ((e, xb, yb) for e in range(length) for xb, yb in loader)
        with torch.no_grad():
            for k, xb, yb in batches:
                w, values = vstep(w, lr_pairs, k, xb, yb)  # (P, p+1), (P,)
                finite &= torch.isfinite(values)
            last = vmap(batch_loss, in_dims=(0, None, None))(w, tx, ty)  # (P,)
        finite &= torch.isfinite(w).all(dim=1) & torch.isfinite(last)
        params.append(w.numpy())
        final.append(last.numpy())
        diverged.append((~finite).numpy())
    return _result(lrs, seeds, w0s.shape[0], np.concatenate(params), np.concatenate(final),
                   np.concatenate(diverged))
