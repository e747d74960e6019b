"""The optimizer explorer's paths: six optimizers on the linear model's L1 and MSE surfaces.

The handout page lets a student pick an optimizer, a start and a learning rate, and step
through the path it takes. Every path it can show is computed here, ahead of time, in one
compiled program: for each optimizer and each loss, `functional_fit.sweep.sweep_scan` vmaps
the fit over every (start, learning rate) pair. `parity.explorer` computes the same paths with
``torch.optim``; `comparison.explorer` compares the two and writes the page's data.

The optimizers (`OPTIMIZERS`) are the lecture's gradient descent (full batch, step
lr / (i + 1)) and five of torch's, each with minibatches of about a tenth of the data in the
seeded batch order both frameworks share (`functional_fit.data.batch_order`), as the lecture
ran SGD and Adam through a ``DataLoader``. Each runs about 150 steps: 15 epochs of about 10
batches.

The window is the analytic MSE line's parameters plus or minus 1.5 standard deviations of y
(intercept) and of y / x (slope); the starts are w = 0, the lecture's, and two points near
opposite corners. Each optimizer's learning rates (`LR_RANGES`) are log-spaced over a range
that goes from paths that crawl (a few percent of the window in all their steps) to paths that
leave the window or overflow: a range in units of the window for the adaptive optimizers, whose
steps are about lr long, and in units of 2 / lambda for the others, lambda being the largest
eigenvalue of the MSE's Hessian (steps longer than 2 / lambda diverge on the MSE).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks, data as _data, losses as _losses
from functional_fit import models as _models, ols as _ols, registry
from functional_fit.sweep import sweep_scan


class Optimizer(NamedTuple):
    """One optimizer of the explorer."""

    label: str  # what the page calls it
    registry: str  # its `functional_fit.registry` name
    kwargs: tuple = ()  # sorted (key, value) keywords of torch's class
    batching: str = "minibatch"  # "full" (GD) or "minibatch"


#: The explorer's optimizers, in the page's order.
OPTIMIZERS = {
    "gd": Optimizer("GD, step lr/(i+1) (the lecture's)", "gd", batching="full"),
    "sgd": Optimizer("SGD", "SGD"),
    "momentum": Optimizer("SGD, momentum 0.9", "SGD", (("momentum", 0.9),)),
    "rmsprop": Optimizer("RMSprop", "RMSprop"),
    "adagrad": Optimizer("Adagrad", "Adagrad"),
    "adam": Optimizer("Adam", "Adam"),
}
#: The explorer's losses: the linear model's L1 and MSE.
LOSSES = {"l1": _losses.l1, "mse": _losses.mse}
#: Each optimizer's learning rates: (lowest, highest, unit). "curvature": times 2 / lambda of
#: the MSE's Hessian; "window": times the geometric mean of the window's half-widths over 5
#: (about 1 on the lecture's data).
LR_RANGES = {
    "gd": (1e-3, 1e2, "curvature"),
    "sgd": (1e-4, 1e1, "curvature"),
    "momentum": (1e-5, 1e1, "curvature"),
    "rmsprop": (1e-4, 1e1, "window"),
    "adagrad": (1e-3, 1e2, "window"),
    "adam": (1e-4, 1e1, "window"),
}
#: Learning rates per optimizer, starts, epochs, and the number of batches an epoch has.
LR_COUNT = 24
EPOCHS = 15
BATCHES = 10
#: Half-widths of the window, in standard deviations of y (intercept) and of y / x (slope).
WINDOW = 1.5
#: The two starts besides w = 0, as fractions of the half-widths from the window's centre.
CORNERS = ((-0.75, 0.75), (0.75, -0.75))


class Settings(NamedTuple):
    """What the explorer runs: the window, the starts, the learning rates and the batching."""

    centre: np.ndarray  # (2,) the analytic MSE line's [intercept, slope]
    half: np.ndarray  # (2,) the window's half-widths
    starts: np.ndarray  # (S, 2) float64
    lrs: np.ndarray  # (O, L) float64, one row per optimizer of `OPTIMIZERS`
    order: np.ndarray  # (EPOCHS, n) int64 batch order of the minibatch optimizers
    batch_size: int  # B, about n / BATCHES
    steps: int  # T: the steps of every path, EPOCHS * ceil(n / B)


class Paths(NamedTuple):
    """Every path of the explorer."""

    settings: Settings
    paths: np.ndarray  # (O, 2, S, L, T+1, 2) float64: optimizer, loss ("l1", "mse"), start, lr
    diverged_at: np.ndarray  # (O, 2, S, L) int: the first step whose loss is not finite, or -1


def settings(x, y, *, order_seed: int = 0) -> Settings:
    """The explorer's window, starts and learning rates for the data (x, y), each (n,)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.shape[0]
    order_seed = _checks.nonnegative_int("order_seed", order_seed)
    with jax.enable_x64(True):
        centre = np.asarray(_ols.ols(x, y), np.float64)  # (2,)
    spread_y = float(np.std(y)) or 1.0  # a constant y still gets a window of width 3
    spread_x = float(np.std(x)) or 1.0
    half = WINDOW * np.array([spread_y, spread_y / spread_x])
    starts = np.array([[0.0, 0.0], *(centre + np.array(c) * half for c in CORNERS)])
    design = np.stack([np.ones_like(x), x], axis=1)  # (n, 2)
    lam = float(np.linalg.eigvalsh(2.0 * design.T @ design / n).max())
    unit = {"curvature": 2.0 / lam, "window": math.sqrt(half[0] * half[1]) / 5.0}
    lrs = np.stack([np.logspace(math.log10(lo * unit[u]), math.log10(hi * unit[u]), LR_COUNT)
                    for lo, hi, u in LR_RANGES.values()])  # (O, L)
    batch_size = math.ceil(n / BATCHES)
    steps = EPOCHS * math.ceil(n / batch_size)
    order = _data.batch_order(n, EPOCHS, order_seed)  # (EPOCHS, n)
    return Settings(centre, half, starts, lrs, order, batch_size, steps)


def recipe(name: str):
    """The `functional_fit.registry` optimizer of explorer optimizer `name`: lr -> optax."""
    opt = OPTIMIZERS[name]
    return registry.optimizer(opt.registry, **dict(opt.kwargs))


@functools.partial(jax.jit, static_argnames=("steps", "batch_size"))
def _all_paths(starts, x, y, lrs, order, *, steps: int, batch_size: int):
    """(paths (O, 2, S, L, T+1, 2), first bad step (O, 2, S, L)) of every optimizer and loss."""
    n_starts, n_lrs = starts.shape[0], lrs.shape[1]
    w0s = jnp.repeat(starts, n_lrs, axis=0)  # (S * L, 2): the learning rate varies fastest
    paths, bad = [], []
    for i, name in enumerate(OPTIMIZERS):
        pair_lrs = jnp.tile(lrs[i], n_starts)  # (S * L,)
        full = OPTIMIZERS[name].batching == "full"
        for loss in LOSSES.values():
            kw = dict(steps=steps) if full else dict(batch_size=batch_size)
            out = sweep_scan(recipe(name), w0s, x, y, pair_lrs, None if full else order[None],
                             model=_models.linear, loss=loss, return_paths=True, **kw)
            paths.append(out[4][0].reshape(n_starts, n_lrs, steps + 1, 2))
            bad.append(out[3][0].reshape(n_starts, n_lrs))
    shape = (len(OPTIMIZERS), len(LOSSES))
    return (jnp.stack(paths).reshape(shape + paths[0].shape),
            jnp.stack(bad).reshape(shape + bad[0].shape))


def paths(x, y, *, order_seed: int = 0) -> Paths:
    """Every path of the explorer on the data (x, y), each (n,), in float64.

    Args:
      x, y: (n,) the data, as numbers (converted to float64).
      order_seed: seed of the batch order the minibatch optimizers share with torch.

    Returns:
      `Paths`: ``paths[o, k, s, l]`` is the (T+1, 2) path of optimizer ``list(OPTIMIZERS)[o]``
      on loss ``list(LOSSES)[k]`` from ``settings.starts[s]`` at ``settings.lrs[o, l]``.
      A diverged path holds inf or nan from the step after its first non-finite loss on.
    """
    x, y = _checks.data(x, y)
    s = settings(x, y, order_seed=order_seed)
    with jax.enable_x64(True):
        out, bad = _all_paths(jnp.asarray(s.starts), jnp.asarray(x, jnp.float64),
                              jnp.asarray(y, jnp.float64), jnp.asarray(s.lrs),
                              jnp.asarray(s.order),
                              steps=s.steps, batch_size=s.batch_size)
        return Paths(s, np.asarray(out), np.asarray(bad))


def surfaces(x, y, centre, half, points: int = 61):
    """The L1 and MSE surfaces of the linear model over the window: (a (G,), b (G,), z (2, G, G)).

    ``z[k, j, i]`` is loss ``list(LOSSES)[k]`` at intercept ``a[i]``, slope ``b[j]``, float64.
    """
    from functional_fit.surface import loss_surface

    a = np.linspace(centre[0] - half[0], centre[0] + half[0], points)
    b = np.linspace(centre[1] - half[1], centre[1] + half[1], points)
    with jax.enable_x64(True):
        z = [np.asarray(loss_surface(_models.linear, loss, np.asarray(x, np.float64),
                                     np.asarray(y, np.float64), a, b, layout="vmap"))
             for loss in LOSSES.values()]
    return a, b, np.stack(z)


__all__ = ["CORNERS", "EPOCHS", "LOSSES", "LR_COUNT", "LR_RANGES", "OPTIMIZERS", "Optimizer",
           "Paths", "Settings", "WINDOW", "paths", "recipe", "settings", "surfaces"]
