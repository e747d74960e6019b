"""Views: where to draw a surface around an optimizer's path, and the one that fits first.

`around_path` chooses the plane through a path's end (two coordinates, two random directions
or the path's top two principal directions), labels its axes and picks a range that covers
the path; given a list of paths (several optimizers from one start), the plane goes through
the first one's end and the range covers them all. `around_fit` runs the lecture's gradient
descent first and then does the same: the ``functional-fit surface`` command's view.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks, fit, registry
from functional_fit.checks import InputError
from functional_fit.surface.planes import (Plane, check_coords, coords_plane, pca_plane,
                                           random_plane)

DIRECTIONS = ("coords", "random", "pca")


class View(NamedTuple):
    """Where to draw a surface around a fit: what `around_path` and `around_fit` choose."""

    plane: Plane  # through the path's end
    path: np.ndarray  # shape=(steps+1, p+1) the fit's path; several: a tuple of (T_i, p+1)
    on_plane: np.ndarray | None  # shape=(steps+1, 2) the path in the plane's (a, b), or None;
    # several: a tuple of (T_i, 2)
    centre: tuple  # (a, b) of the path's end on the plane
    labels: tuple  # the a and b axes' labels
    a_range: tuple  # (a0, a1) covering the path with a margin
    b_range: tuple  # (b0, b1)


def _span(values, margin=0.25, least=0.5):
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = max(margin * (hi - lo), least)
    return lo - pad, hi + pad


def centred_values(span, count: int, centre: float, dtype="float64") -> np.ndarray:
    """`count` evenly spaced values covering `span` (lo, hi), one of them exactly `centre`.

    A grid around a point must hold that point: ``np.linspace(lo, hi, count)`` skips it unless
    it falls on the spacing, and the grid's least loss can then lie above the point's own.
    The values keep the span's step, (hi - lo) / (count - 1), and are shifted by less than
    one step so that ``values[k] == centre``; a `centre` outside the span gives the linspace.

    Returns:
      (count,) values in `dtype`.
    """
    lo, hi = (float(v) for v in span)
    if count < 2 or not lo <= centre <= hi:
        return np.linspace(lo, hi, count, dtype=dtype)
    step = (hi - lo) / (count - 1)
    k = min(count - 1, max(0, round((centre - lo) / step)))
    return (centre + (np.arange(count) - k) * step).astype(dtype)  # (count,), [k] == centre


def around_path(path, *, directions: str = "coords", coords=(0, 1), seed: int = 0,
                names=None) -> View:
    """Choose the plane, label its axes and pick the range, for a surface around a path.

    Args:
      path: (steps+1, p+1) an optimizer's path, e.g. `FitResult.path`; the plane goes
        through its end. Or a list of such paths (several optimizers from one start, T_i
        points each): the plane goes through the first one's end (``"pca"``: `pca_plane` of
        the list, the PCA of their union) and the range covers them all.
      directions: ``"coords"`` (two parameters, the rest held at the end), ``"random"`` (two
        directions of `random_plane`) or ``"pca"`` (`pca_plane` of the path).
      coords: the two parameters of ``"coords"``.
      seed: the seed of ``"random"``.
      names: optional parameter names by index (``("intercept", "slope")``) for the labels.

    Returns:
      `View`; the range covers the path's projection with a margin (``"random"``: -1..1). For
      a list of paths, its `path` and `on_plane` are tuples, one entry per path.
    """
    directions = _checks.choice("directions", directions, DIRECTIONS)
    several = isinstance(path, list)
    paths = [np.asarray(q) for q in (path if several else [path])]
    if not paths:
        raise InputError("path: an empty list of paths")
    for k, q in enumerate(paths):
        if q.ndim != 2 or q.shape[0] < 1:
            name = f"path[{k}]" if several else "path"
            raise InputError(f"{name} must have shape (steps+1, p+1), got {q.shape}")
        if q.shape[1] != paths[0].shape[1]:
            raise InputError(f"path[{k}] has {q.shape[1]} parameters, path[0] "
                             f"{paths[0].shape[1]}: the paths must be of one model")
    if directions != "coords" and paths[0].shape[1] < 2:
        raise InputError("directions random and pca need a model with at least 2 parameters")
    plane, on_plane, labels, centre = _on_plane(paths, several, directions, coords, seed,
                                                names)
    plane = Plane(*(np.asarray(v, dtype=paths[0].dtype) for v in plane))
    if on_plane is None:
        a_range = b_range = (-1.0, 1.0)
    else:
        union = np.concatenate(on_plane)  # (sum T_i, 2)
        a_range, b_range = _span(union[:, 0]), _span(union[:, 1])
    if not several:
        return View(plane, paths[0], None if on_plane is None else on_plane[0], centre, labels,
                    a_range, b_range)
    return View(plane, tuple(paths), None if on_plane is None else tuple(on_plane), centre,
                labels, a_range, b_range)


def _on_plane(paths, several: bool, directions: str, coords, seed: int, names):
    """(plane, each path's (T_i, 2) coordinates or None, axis labels, centre) of `around_path`."""
    end = paths[0][-1]
    if directions == "coords":
        i, j = check_coords(coords, paths[0].shape[1])
        plane = coords_plane(jnp.asarray(end), (i, j))
        names = dict(enumerate(names or ()))
        labels = tuple(f"{names[c]} w[{c}]" if c in names else f"w[{c}]" for c in (i, j))
        return plane, [q[:, [i, j]] for q in paths], labels, (float(end[i]), float(end[j]))
    if directions == "random":
        plane = random_plane(jnp.asarray(end), seed=seed)
        return plane, None, ("a (random direction u)", "b (random direction v)"), (0.0, 0.0)
    pca = pca_plane([jnp.asarray(q) for q in paths] if several else jnp.asarray(paths[0]))
    on_plane = [np.asarray(q) for q in (pca.path if several else [pca.path])]
    what = "the paths" if several else "the path"
    labels = tuple(f"PC{k + 1} ({100 * float(e):.1f}% of {what})"
                   for k, e in enumerate(pca.explained))
    return pca.plane, on_plane, labels, (0.0, 0.0)


def around_fit(model, loss, x, y, w0, *, lr: float, steps: int, directions: str = "coords",
               coords=(0, 1), seed: int = 0, names=None, path: bool = True, progress=None,
               runtime=None) -> View:  # 14 arguments: a fit's and `around_path`'s, named
    """Fit the centre with the lecture's gradient descent, then `around_path` of its path.

    Args:
      model, loss: the surface's model and loss.
      x, y: (n,) data.
      w0: (p+1,) the fit's start (its dtype is the parameters').
      lr, steps: `functional_fit.fit.gradient_descent`'s settings.
      directions, coords, seed, names: as in `around_path`.
      path: keep the fit's path (default). False keeps only its end, in memory independent of
        `steps`: the `View`'s path is then (1, p+1), so give the range yourself (or take
        ``"random"``'s); ``"pca"`` needs the path.
      progress: optional callable, called with the fit's steps done as a long fit runs.
      runtime: the fit's sizes and memory limit (`functional_fit.runtime`).

    Raises:
      DivergenceError: the fit diverged (lower `lr`).
    """
    model, loss = registry.resolve(model, loss)
    if not path and directions == "pca":
        raise InputError("path: directions 'pca' needs the fit's whole path; pass path=True")
    res = fit.gradient_descent(w0, x, y, model=model, loss=loss, lr=lr, steps=steps,
                               trace=bool(path), progress=progress, runtime=runtime)
    kept = np.asarray(res.path) if path else np.asarray(res.params)[None]  # (steps+1 or 1, p+1)
    return around_path(kept, directions=directions, coords=coords, seed=seed, names=names)


__all__ = ["DIRECTIONS", "View", "around_fit", "around_path", "centred_values"]
