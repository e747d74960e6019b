"""1-D slices: the loss along a segment between two parameter pytrees, or along a direction.

Goodfellow et al. (2015) draw the loss along the straight line between two networks' weights
(a start and the end of training, or two runs' ends); mode-connectivity papers report its
barrier: the largest rise of the loss above the straight line between the end points' losses.
Both are a grid of one row (`loss_surface` with a plane whose second direction is zero), so
they take everything a surface takes: pytrees, a `Stream`, a stateful model, the devices.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.surface.planes import Plane
from functional_fit.surface.surfaces import loss_surface


class Line(NamedTuple):
    """The loss along a line in parameter space."""

    alphas: np.ndarray  # (m,) the positions along the line, as given
    losses: np.ndarray  # (m,) the loss at each
    barrier: float  # the largest rise above the straight line between the end points' losses
    ends: tuple  # (alpha, loss) at the two end points the barrier is measured between


def barrier(alphas, losses, ends) -> float:
    """The largest rise of `losses` (m,) above the straight line through `ends`
    ((a0, l0), (a1, l1)), over the alphas (m,) between a0 and a1, the end points included (so
    it is >= 0); inf when a loss there is not finite."""
    (a0, l0), (a1, l1) = ends
    alphas, losses = np.asarray(alphas, np.float64), np.asarray(losses, np.float64)
    inside = (alphas >= min(a0, a1)) & (alphas <= max(a0, a1))
    t = (alphas[inside] - a0) / (a1 - a0)
    rise = losses[inside] - ((1 - t) * l0 + t * l1)  # (inside,)
    if not (np.isfinite(l0) and np.isfinite(l1) and np.all(np.isfinite(rise))):
        return float("inf")
    return float(max(0.0, *rise))


def _alphas(alphas, ends) -> tuple[np.ndarray, np.ndarray]:
    """(alphas checked (m,), the grid's values: alphas with the end points appended)."""
    alphas = _checks.vector("alphas", alphas)
    return alphas, np.concatenate([alphas, np.asarray(ends, alphas.dtype)])


def line(model, loss, x, y, params, direction, alphas, *, ends=None,
         **options) -> Line:  # 8 named: the data, the line and its ends, as surfaces take them
    """The loss at ``params + alpha * direction`` for each alpha.

    Args:
      model, loss, x, y: as `loss_surface` takes them (a `Stream` as x, with y None).
      params: the parameters at alpha = 0: a (p,) vector or any pytree.
      direction: a vector or pytree shaped like `params`.
      alphas: (m,) positions; any order, any range.
      ends: the two alphas the barrier is measured between; default the least and the
        largest of `alphas`.
      options: `loss_surface`'s keywords (``state``, ``devices``, ``runtime``, ...).

    Returns:
      `Line(alphas (m,), losses (m,), barrier, ends)`.
    """
    if jax.tree.structure(params) != jax.tree.structure(direction):
        raise InputError("direction must have the structure of params (the same pytree), got "
                         f"{jax.tree.structure(direction)} and {jax.tree.structure(params)}")
    for name in ("plane", "base", "coords"):
        if name in options:
            raise InputError(f"{name}: a line is set by params and direction")
    given = _checks.vector("alphas", alphas)
    ends = (float(given.min()), float(given.max())) if ends is None else tuple(ends)
    if len(ends) != 2 or ends[0] == ends[1]:
        raise InputError(f"ends must be two different alphas, got {ends}")
    alphas, values = _alphas(given, ends)
    zero = jax.tree.map(jnp.zeros_like, direction)
    losses = loss_surface(model, loss, x, y, values, values[:1],
                          plane=Plane(params, direction, zero), **options)[0]  # (m + 2,)
    losses = np.asarray(losses)
    end_points = ((ends[0], float(losses[-2])), (ends[1], float(losses[-1])))
    return Line(alphas, losses[:-2], barrier(values, losses, end_points), end_points)


def interpolate(model, loss, x, y, start, end, alphas, **options) -> Line:
    """The loss along the segment from `start` (alpha 0) to `end` (alpha 1), and beyond it
    for alphas outside [0, 1]: ``(1 - alpha) * start + alpha * end``.

    Args:
      model, loss, x, y: as `loss_surface` takes them (a `Stream` as x, with y None).
      start, end: two parameter vectors or pytrees of the same structure and shapes.
      alphas: (m,) positions, e.g. ``np.linspace(-0.5, 1.5, 41)``.
      options: `loss_surface`'s keywords (``state``, ``devices``, ``runtime``, ...).

    Returns:
      `Line`; its barrier is measured between alpha 0 and alpha 1 (the two end points).

    Examples:
      >>> import functional_fit as ff, numpy as np
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     r = interpolate(ff.models.linear, ff.losses.mse, x, y, np.array([0.0, 0.0]),
      ...                     np.array([1.0, 3.0]), np.linspace(0, 1, 5))
      >>> r.losses.shape, r.barrier
      ((5,), 0.0)
    """
    if jax.tree.structure(start) != jax.tree.structure(end):
        raise InputError("end must have the structure of start (the same pytree)")
    for name, (s, e) in zip(_names(start), zip(jax.tree.leaves(start), jax.tree.leaves(end))):
        if np.shape(s) != np.shape(e):
            raise InputError(f"end{name} has shape {np.shape(e)}, start{name} {np.shape(s)}")
    direction = jax.tree.map(lambda s, e: jnp.asarray(e) - jnp.asarray(s), start, end)
    return line(model, loss, x, y, start, direction, alphas, ends=(0.0, 1.0), **options)


def _names(tree) -> list[str]:
    """Each leaf's path, as ``['w']`` or ``[0]``, for messages."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


__all__ = ["Line", "barrier", "interpolate", "line"]
