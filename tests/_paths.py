"""One training loop per framework, for the optimizer tests: the whole path of parameters.

`jax_train` runs an optax transformation as one jitted `lax.scan`; `torch_train` runs a
torch.optim optimizer as torch users write it (zero_grad, backward, [clip], step,
[scheduler.step]). Both take the same batches: full batch for `steps` steps, or the batch
order `order` (epochs, n) of `functional_fit.data.batch_order` cut into batches of
`batch_size`, the last one short when batch_size does not divide n, as
``DataLoader(drop_last=False)`` cuts it (torch indexes the tensors directly: no DataLoader).

They are ``functional_fit.fit.train`` and ``parity.fit.train``, the project's two training
loops. Paths are dicts name -> (steps+1, *shape) arrays, or one (steps+1, p) array;
`flat` makes either a (steps+1, P) matrix for `functional_fit.tolerances.rel_err`.
"""

from __future__ import annotations

import jax
import numpy as np
import torch

import parity
from functional_fit import fit


def step_batches(n: int, *, steps=None, order=None, batch_size=None) -> list[np.ndarray]:
    """The indices of every step's batch."""
    if order is None:
        return [np.arange(n)] * steps
    return [row[i : i + batch_size] for row in np.asarray(order) for i in range(0, n, batch_size)]


def jax_train(params, x, y, *, model, loss, optimizer, steps=None, order=None, batch_size=None):
    """The path of `optimizer` (an optax transformation) from `params`: `fit.train`'s."""
    return jax.tree.map(np.asarray, fit.train(params, x, y, model=model, loss=loss,
                                              optimizer=optimizer, steps=steps, order=order,
                                              batch_size=batch_size).path)


def torch_train(module, loss_fn, x, y, *, optimizer, scheduler=None, steps=None, order=None,
                batch_size=None, clip=None):
    """The path of a torch.optim `optimizer` over `module`'s parameters: `parity.fit.train`'s.

    `clip` is an optional (max_norm, norm_type) for ``clip_grad_norm_`` before each step.
    Returns dict name -> (steps+1, *shape) array.
    """
    # One thread: these tensors are far too small to gain from more, and on a shared 2-core
    # machine OpenMP's hand-offs made a 1 -> 16 -> 1 network's loop 25 times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        max_norm, norm_type = (None, 2.0) if clip is None else clip
        return parity.fit.train(module, loss_fn, x, y, optimizer=optimizer, scheduler=scheduler,
                                steps=steps, order=order, batch_size=batch_size,
                                max_norm=max_norm, norm_type=norm_type).path
    finally:
        torch.set_num_threads(threads)


class EveryKSteps:
    """A torch scheduler stepped once every k optimizer steps (once per epoch of k batches)."""

    def __init__(self, scheduler, k: int):
        self.scheduler, self.k, self.calls = scheduler, k, 0

    def step(self):
        self.calls += 1
        if self.calls % self.k == 0:
            self.scheduler.step()


def flat(path) -> np.ndarray:
    """A path (array or dict of arrays with a leading steps+1 axis) as (steps+1, P) float64."""
    if isinstance(path, dict):
        return np.concatenate([flat(path[k]) for k in sorted(path)], axis=1)
    path = np.asarray(path, dtype=np.float64)
    return path.reshape(path.shape[0], -1)


def growth(jpath, tpath) -> np.ndarray:
    """max |Δ| at every step over max |torch path|: (steps+1,), its max is rel_err."""
    a, b = flat(jpath), flat(tpath)
    return np.max(np.abs(a - b), axis=1) / np.max(np.abs(b))
