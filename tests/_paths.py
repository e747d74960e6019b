"""One training loop per framework, for the optimizer tests: the whole path of parameters.

`jax_train` runs an optax transformation as one jitted `lax.scan`; `torch_train` runs a
torch.optim optimizer as torch users write it (zero_grad, backward, [clip], step,
[scheduler.step]). Both take the same batches: full batch for `steps` steps, or the batch
order `order` (epochs, n) of `functional_fit.data.batch_order` cut into batches of
`batch_size`, the last one short when batch_size does not divide n, as
``DataLoader(drop_last=False)`` cuts it (torch indexes the tensors directly: no DataLoader).

The signatures follow ``functional_fit.fit.train`` and ``parity.fit.train``, which will take
their place. Paths are dicts name -> (steps+1, *shape) arrays, or one (steps+1, p) array;
`flat` makes either a (steps+1, P) matrix for `functional_fit.tolerances.rel_err`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from functional_fit import fit


def step_batches(n: int, *, steps=None, order=None, batch_size=None) -> list[np.ndarray]:
    """The indices of every step's batch."""
    if order is None:
        return [np.arange(n)] * steps
    return [row[i : i + batch_size] for row in np.asarray(order) for i in range(0, n, batch_size)]


def jax_train(params, x, y, *, model, loss, optimizer, steps=None, order=None, batch_size=None):
    """The path of `optimizer` (an optax transformation) from `params` (any pytree).

    Args:
      params: the starting parameters, a pytree of arrays.
      x, y: (n,) data.
      model: ``model(params, x) -> (n,)``; loss: ``loss(y_hat, y, mask=None) -> ()``.
      optimizer: an `optax.GradientTransformation`.
      steps: full-batch steps, when `order` is None.
      order, batch_size: (epochs, n) batch order and the batch size, for minibatches.

    Returns:
      The path: `params`' structure with a leading (steps+1,) axis.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if order is None:
        idx, mask = jnp.zeros((steps, 0), jnp.int32), None  # (steps, 0): the whole data
    else:
        idx, mask, _ = fit.batches(jnp.asarray(order), batch_size)  # (steps, B)
        mask = None if mask is None else mask.astype(y.dtype)

    @jax.jit
    def run(params, idx, mask):
        def body(carry, batch):
            w, state = carry
            i, m = batch
            xb, yb = (x, y) if order is None else (x[i], y[i])  # (B,)
            g = jax.grad(lambda w: loss(model(w, xb), yb, m))(w)
            updates, state = optimizer.update(g, state, w)
            w = optax.apply_updates(w, updates)
            return (w, state), w

        _, ws = jax.lax.scan(body, (params, optimizer.init(params)), (idx, mask))
        return jax.tree.map(lambda w0, w: jnp.concatenate([w0[None], w]), params, ws)

    return jax.tree.map(np.asarray, run(params, idx, mask))


def torch_train(module, loss_fn, x, y, *, optimizer, scheduler=None, steps=None, order=None,
                batch_size=None, clip=None):
    """The path of a torch.optim `optimizer` over `module`'s parameters.

    Args:
      module: an ``nn.Module`` whose forward maps x (n,) to (n,).
      loss_fn: ``loss_fn(y_hat, y) -> ()``.
      x, y: (n,) tensors.
      optimizer: a ``torch.optim`` optimizer over ``module.parameters()``.
      scheduler: optional, stepped after every optimizer step (a per-epoch scheduler: wrap
        it, see `EveryKSteps`).
      steps, order, batch_size: as in `jax_train`.
      clip: optional (max_norm, norm_type) for ``clip_grad_norm_`` before each step.

    Returns:
      dict name -> (steps+1, *shape) array, from ``module.named_parameters()``.
    """
    def snapshot():
        return {k: p.detach().numpy().copy() for k, p in module.named_parameters()}

    # One thread: these tensors are far too small to gain from more, and on a shared 2-core
    # machine OpenMP's hand-offs made a 1 -> 16 -> 1 network's loop 25 times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = [snapshot()]
        for idx in step_batches(len(x), steps=steps, order=order, batch_size=batch_size):
            idx = torch.from_numpy(idx)
            optimizer.zero_grad()
            loss_fn(module(x[idx]), y[idx]).backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), *clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            path.append(snapshot())
    finally:
        torch.set_num_threads(threads)
    return {k: np.stack([p[k] for p in path]) for k in path[0]}


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
