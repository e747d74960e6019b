"""Planes in parameter space: where a surface's grid points lie.

Grid point (a, b) of a surface is ``origin + a * u + b * v`` on a `Plane`. The usual case, two
chosen coordinates with the rest held at a base point, is `coords_plane`. Two more show models
with more than two parameters: `random_plane` (Li et al. 2018: Gaussian directions drawn by
numpy from a seed, `random_draw`, normalized per filter, `filter_normalized`) and `pca_plane`
(the top two principal directions of an optimizer path, or of several paths together, with
each path projected onto the plane); `hessian_plane` spans the loss's Hessian's top two
eigenvectors (`functional_fit.hessian.eigenvalues`).

A model may take any pytree of parameters (a dict of weight matrices, say): its planes are
pytrees of the same structure. The grid works on flat vectors: `flatten`
(`jax.flatten_util.ravel_pytree`) flattens a plane, and `Unraveled` gives the model the pytree
back; it is a frozen dataclass, hashable by value, so a compiled block is reused for every
call with the same model and the same structure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError


class Plane(NamedTuple):
    """A plane in parameter space: grid point (a, b) is ``origin + a * u + b * v``."""

    origin: jax.Array  # shape=(p+1,)
    u: jax.Array  # shape=(p+1,) the direction of the a axis (columns of the surface)
    v: jax.Array  # shape=(p+1,) the direction of the b axis (rows of the surface)


class PCAPlane(NamedTuple):
    """What `pca_plane` returns."""

    plane: Plane  # origin at the path's last point, u and v orthonormal
    path: jax.Array  # shape=(steps+1, 2) the path's (a, b) coordinates on the plane; for a
    # list of paths, a tuple of (T_i, 2), one per path
    explained: jax.Array  # shape=(2,) fraction of the path's squared spread along u and v


# A model may take any pytree of parameters (a dict of weight matrices, say). The surface works
# on flat vectors: `jax.flatten_util.ravel_pytree` flattens the plane, and `Unraveled` gives the
# model the pytree back. It is a frozen dataclass, hashable by value, so a compiled block is
# reused for every call with the same model and the same structure.


def is_vector(tree) -> bool:
    """Whether parameters are one flat vector (an array of one dimension, or a list of numbers)."""
    return not isinstance(tree, (Mapping, tuple)) and np.ndim(tree) == 1 or isinstance(tree, list)


@dataclasses.dataclass(frozen=True)
class Unraveled:
    """``model(unravel(w), x)`` for a flat w: a model of a pytree, as a model of a vector."""

    model: object
    treedef: object
    shapes: tuple

    def unravel(self, w):
        """The pytree of flat vector `w` (p,)."""
        sizes = [int(np.prod(s)) for s in self.shapes]
        parts = jnp.split(w, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [w]
        return jax.tree.unflatten(self.treedef, [a.reshape(s) for a, s in zip(parts, self.shapes)])

    def __call__(self, w, x):
        return self.model(self.unravel(w), x)


def flatten(tree):
    """(flat (p,), unravel) of a parameter pytree; `jax.flatten_util.ravel_pytree`."""
    from jax.flatten_util import ravel_pytree

    return ravel_pytree(tree)


def flat(tree):
    """`flatten(tree)[0]`, the vector (p,), in one compiled call (not ravel_pytree's many
    small eager operations)."""
    leaves = tuple(jax.tree.leaves(tree))
    return _concatenated(leaves) if leaves else flatten(tree)[0]


@jax.jit
def _concatenated(leaves):
    return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])  # ravel_pytree's order, dtype


def unraveled(model, tree) -> Unraveled:
    """`model`, a function of a pytree shaped like `tree`, as a function of a flat vector."""
    leaves, treedef = jax.tree.flatten(tree)
    return Unraveled(model, treedef, tuple(np.shape(a) for a in leaves))


def _tree_plane(plane: Plane, unravel) -> Plane:
    """A flat plane's vectors as pytrees of the parameters' structure."""
    return Plane(*(unravel(jnp.asarray(v)) for v in plane))


# --------------------------------------------------------------------------- planes


def check_coords(coords, size: int, name: str = "coords") -> tuple[int, int]:
    """Two distinct parameter indices below `size`; InputError naming `name` otherwise."""
    try:
        i, j = (_checks.nonnegative_int(name, c) for c in coords)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be two parameter indices, got {coords!r}") from None
    if i == j or max(i, j) >= size:
        raise InputError(
            f"{name} must be two distinct indices below {size} (the number of parameters), "
            f"got {tuple(coords)}"
        )
    return i, j


def coords_plane(base, coords=(0, 1)) -> Plane:
    """The plane of two coordinates: w[coords[0]] = a, w[coords[1]] = b, the rest from `base`.

    Args:
      base: (p+1,) parameters; the entries at `coords` are ignored.
      coords: two distinct indices into `base`.

    Returns:
      `Plane` with unit vectors u, v, so that w(a, b) holds a and b exactly.

    Examples:
      >>> import jax.numpy as jnp
      >>> coords_plane(jnp.array([5.0, 6.0, 7.0]), (2, 0)).origin.tolist()
      [0.0, 6.0, 0.0]
    """
    base = np.array(base)  # a copy, in numpy: no small eager JAX operations on the way
    i, j = check_coords(coords, base.shape[0])
    eye = np.eye(base.shape[0], dtype=base.dtype)  # (p+1, p+1)
    base[[i, j]] = 0
    return Plane(jnp.asarray(base), jnp.asarray(eye[i]), jnp.asarray(eye[j]))


def random_plane(w, seed: int = 0, *, include_biases: bool = False,
                 filter_axis="auto") -> Plane:
    """Two random directions through `w`, filter-normalized (Li et al. 2018).

    Li et al. draw Gaussian directions and rescale each filter of the direction to the norm of
    the same filter of the parameters, so that the plane's scale follows the network's and
    not the parametrization's (their ``net_plotter.normalize_directions_for_weights`` with
    ``norm='filter'``): d_f <- d_f * ||w_f|| / (||d_f|| + 1e-10). A filter is one output unit:
    one convolution filter, or one neuron of a linear layer, found by `filter_axis`:

    - ``"auto"``: by the leaf's name, the last name of its key path (NNX's ``.value`` skipped).
      A ``kernel`` (flax: Dense (in, out), Conv (kh, kw, in, out)) has its filters along the
      last axis; anything else (torch's and equinox's ``weight`` (out, in, ...), or a dict of
      matrices) along axis 0.
    - ``0`` or ``-1``: that axis for every leaf.

    Biases and normalization parameters (leaves of one dimension or none, and any leaf named
    ``bias``: equinox's Conv bias is (out, 1, 1)) get a zero direction, as Li et al.'s
    ``ignore='biasbn'``; ``include_biases=True`` moves them along themselves instead (their
    ``d.copy_(w)``). The Gaussian draws are `random_draw`'s (numpy's generator, seeded
    by `seed`, the leaf's index and the direction), and the normalization is computed in
    numpy in float64 and cast to the leaf's dtype, so that the same seed gives the same plane
    on any machine and with any JAX version.

    For a flat (p+1,) vector, the lecture's models, each parameter is its own filter:
    d_i <- d_i / |d_i| * |w_i|, which keeps the sign of the Gaussian draw and the size of the
    parameter. A parameter that is 0 would never move; it gets the RMS size of the others
    instead (1 if all of `w` is 0). The signs come from ``jax.random.key(seed)``; the second
    direction is drawn again (deterministically from `seed`) until it is not parallel to the
    first. `include_biases` and `filter_axis` do not apply to a vector.

    Args:
      w: (p+1,) parameters, p+1 >= 2, or any pytree of them; the plane's origin.
      seed: a nonnegative int.
      include_biases: pytrees only: move the biases too (along themselves).
      filter_axis: pytrees only: ``"auto"``, ``0`` or ``-1``, the axis that indexes the filters
        of a leaf of two dimensions or more.

    Returns:
      `Plane(w, u, v)`, pytrees shaped like `w`; for a vector, grid coordinate 1 along u moves
      every parameter by its own size; for a network, every filter by its own norm.
    """
    seed = _checks.nonnegative_int("seed", seed)
    if not (isinstance(filter_axis, str) and filter_axis == "auto"
            or type(filter_axis) is int and filter_axis in (0, -1)):
        raise InputError(f"filter_axis must be 'auto', 0 or -1, got {filter_axis!r}")
    if not is_vector(w):
        return _filter_plane(w, seed, include_biases, filter_axis)
    w = jnp.asarray(w)
    if w.shape[0] < 2:
        raise InputError(f"w must have at least 2 parameters for a plane, got shape {w.shape}")
    size = jnp.abs(w)
    rms = jnp.sqrt(jnp.mean(w**2))
    size = jnp.where(size > 0, size, jnp.where(rms > 0, rms, 1))  # (p+1,)
    key = jax.random.key(seed)

    def draw(k):
        return jnp.sign(jax.random.normal(k, w.shape, w.dtype)) * size  # (p+1,)

    u = draw(jax.random.fold_in(key, 0))
    for attempt in range(1, 200):
        v = draw(jax.random.fold_in(key, attempt))
        if not (bool(jnp.all(v == u)) or bool(jnp.all(v == -u))):
            return Plane(w, u, v)
    raise AssertionError("unreachable: 199 draws of random signs were all parallel")


def random_draw(w, seed: int = 0, which: int = 0):
    """The Gaussian draw behind direction `which` (0: u, 1: v) of `random_plane` on a pytree.

    Leaf i (in ``jax.tree.leaves(w)`` order) is
    ``np.random.default_rng((seed, i, which)).standard_normal(shape)``, drawn in float64 and
    cast to the leaf's dtype: numpy's generator, not ``jax.random``, so that the same seed
    gives the same draw on any machine (CPU, GPU, TPU) and with any JAX version.

    Args:
      w: a pytree of parameters (any array leaves).
      seed: a nonnegative int.
      which: 0 or 1, the direction.

    Returns:
      A pytree shaped like `w` of numpy arrays, each leaf's shape and dtype.
    """
    seed = _checks.nonnegative_int("seed", seed)
    which = _checks.choice("which", which, (0, 1))
    leaves, treedef = jax.tree.flatten(w)
    return jax.tree.unflatten(treedef, [_draw(leaf, seed, i, which)
                                        for i, leaf in enumerate(leaves)])


def _draw(leaf, seed: int, i: int, which: int) -> np.ndarray:
    """Leaf `i`'s Gaussian draw of direction `which`, in the leaf's dtype."""
    rng = np.random.default_rng((seed, i, which))
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return rng.standard_normal(np.shape(leaf)).astype(dtype)  # drawn in float64


def _leaf_names(w) -> list[str]:
    """The name of each leaf of `w` (``jax.tree.leaves`` order): the last name of its key path,
    skipping NNX's ``.value``, and the last part of a dotted name (``"0.weight"`` -> "weight");
    "" for a leaf with no name (a list's item)."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(w)[0]:
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]  # Dict, GetAttr keys
        keys = [k for k in keys if isinstance(k, str) and k not in ("value", "raw_value")]
        names.append(keys[-1].rsplit(".", 1)[-1] if keys else "")
    return names


def _filter_plane(w, seed: int, include_biases: bool, filter_axis) -> Plane:
    """`random_plane` of a parameter pytree: per-filter normalized Gaussian directions."""
    leaves, treedef = jax.tree.flatten(jax.tree.map(jnp.asarray, w))
    names = _leaf_names(w)
    biases = [leaf.ndim <= 1 or name == "bias" for leaf, name in zip(leaves, names)]
    if all(biases) and not include_biases:
        raise InputError("w has no weight matrix (no leaf of two dimensions or more but a "
                         "bias), so every direction would be zero; pass include_biases=True, or "
                         "a flat vector")

    def direction(which):
        out = []
        for i, (leaf, name) in enumerate(zip(leaves, names)):
            if biases[i]:  # a bias or a normalization parameter: zero, or along itself
                out.append(leaf if include_biases else jnp.zeros_like(leaf))
                continue
            axis = (leaf.ndim - 1 if name == "kernel" else 0) if filter_axis == "auto" else (
                filter_axis % leaf.ndim)
            d = filter_normalized(_draw(leaf, seed, i, which), np.asarray(leaf), axis)
            out.append(jnp.asarray(d.astype(leaf.dtype)))
        return jax.tree.unflatten(treedef, out)

    return Plane(jax.tree.unflatten(treedef, leaves), direction(0), direction(1))


def filter_normalized(d, w, axis: int = 0) -> np.ndarray:
    """Direction `d` with each filter rescaled to the norm of the same filter of `w`.

    Li et al.'s ``normalize_direction(d, w, 'filter')``: d_f * ||w_f|| / (||d_f|| + 1e-10),
    where filter f is the slice ``[f]`` along `axis`, computed in float64.

    Args:
      d: (..., F, ...) a direction, F filters along `axis`.
      w: the parameters, the shape of `d`.
      axis: the axis of the filters.

    Returns:
      float64 array, the shape of `d`.
    """
    d, w = np.asarray(d, np.float64), np.asarray(w, np.float64)
    axes = tuple(k for k in range(d.ndim) if k != axis % d.ndim)  # within one filter
    dn = np.sqrt(np.sum(d**2, axis=axes, keepdims=True))  # (1, ..., F, ..., 1)
    wn = np.sqrt(np.sum(w**2, axis=axes, keepdims=True))
    return d * (wn / (dn + 1e-10))  # Li et al.'s epsilon


def pca_plane(path) -> PCAPlane:
    """The plane of the top two principal directions of an optimizer path, through its end.

    The rows of ``path - path[-1]`` (displacements from the final parameters, not centred on
    their mean) are decomposed by SVD; u and v are the first two right singular vectors, signed
    so that the start of the path has coordinates >= 0. The path projects onto the plane as
    ``(path - path[-1]) @ [u, v]``; its last point is (0, 0).

    Several paths (a list of them: several optimizers from one start, say) share one plane:
    the PCA of their union, every point of every path counted once. The origin is the first
    path's last point, so displacements are ``path_i - paths[0][-1]``, and the signs make the
    first path's start >= 0: a list of one path gives that path's plane. (A tuple is one
    pytree path, as JAX reads it, never several paths.)

    Args:
      path: (steps+1, p+1) parameters, e.g. ``FitResult.path``; p+1 >= 2. Or a pytree path,
        leaves (steps+1, *shape), whose plane is then a pytree too. Or a list of such paths,
        (T_i, p+1) arrays or pytree paths of one structure, T_i >= 1 each and possibly
        different.

    Returns:
      `PCAPlane(plane, path (steps+1, 2), explained (2,))`; for a list of paths, `path` is a
      tuple of (T_i, 2) arrays, one per path in order, and `explained` the fractions of the
      union's spread.
    """
    several = _several(path)
    paths = list(path) if several else [path]
    if any(_is_tree_path(p) for p in paths):
        rows, unravel = _tree_rows(paths)
    else:
        rows, unravel = [_rows(p, "path" if not several else f"path[{i}]")
                         for i, p in enumerate(paths)], None
    if len({r.shape[1] for r in rows}) > 1:
        raise InputError("path: the paths must have the same number of parameters, got "
                         f"{[r.shape[1] for r in rows]}")
    plane, coords, explained = _pca(rows)
    if unravel is not None:
        plane = _tree_plane(plane, unravel)
    return PCAPlane(plane, tuple(coords) if several else coords[0], explained)


def _several(path) -> bool:
    """Whether `path` is a list of paths: a list of 2-D arrays or of pytree paths (a list of
    rows or numbers is one path)."""
    return isinstance(path, list) and any(_is_tree_path(p) or np.ndim(p) == 2 for p in path)


def _is_tree_path(path) -> bool:
    return isinstance(path, (Mapping, tuple)) and not hasattr(path, "shape")


def _rows(path, name: str) -> jax.Array:
    """A flat path as (T, p+1), checked; InputError naming `name`."""
    path = jnp.asarray(path)
    if path.ndim != 2 or path.shape[1] < 2 or path.shape[0] < 1:
        raise InputError(f"{name} must have shape (steps+1, p+1) with p+1 >= 2, got {path.shape}")
    return path


def _tree_rows(paths) -> tuple[list, object]:
    """Pytree paths of one structure as flat (T_i, p) rows, and the unravel of one point."""
    treedef = jax.tree.structure(paths[0])
    rows = []
    for i, p in enumerate(paths):
        if jax.tree.structure(p) != treedef:
            raise InputError(f"path[{i}] is not a pytree path of the first path's structure")
        leaves = jax.tree.leaves(p)
        steps = leaves[0].shape[0]
        rows.append(jnp.concatenate([jnp.reshape(a, (steps, -1)) for a in leaves], axis=1))
    _, unravel = flatten(jax.tree.map(lambda a: a[0], paths[0]))
    return rows, unravel


def _pca(rows) -> tuple[Plane, list, jax.Array]:
    """The PCA plane of (T_i, p) paths through the first one's end: (plane, each path's (T_i,
    2) coordinates, explained (2,))."""
    origin = rows[0][-1]  # (p,)
    d = jnp.concatenate([r - origin[None, :] for r in rows]) if len(rows) > 1 else (
        rows[0] - rows[0][-1:])  # (sum T_i, p)
    uv, explained, coords = _principal(d)
    split = np.cumsum([r.shape[0] for r in rows])[:-1]
    return Plane(origin, uv[0], uv[1]), jnp.split(coords, split), explained


@jax.jit
def _principal(d):
    """(uv (2, p), explained (2,), coordinates (T, 2)) of displacements d (T, p), one program."""
    # vt (p, p): every right singular vector, even for fewer rows than p; the left ones only
    # as many as there are columns (a full U of a 5001-step path is 5001 x 5001: 0.6 s)
    _, s, vt = jnp.linalg.svd(d, full_matrices=d.shape[0] < d.shape[1])
    uv = vt[:2]  # (2, p)
    sign = jnp.where(d[0] @ uv.T < 0, -1, 1).astype(uv.dtype)  # (2,), from the first start
    uv = uv * sign[:, None]  # (2, p)
    total = jnp.sum(s**2)
    s2 = jnp.zeros(2, s.dtype).at[: min(2, s.shape[0])].set(s[:2] ** 2)  # (2,)
    explained = jnp.where(total > 0, s2 / jnp.where(total > 0, total, 1), 0)
    return uv, explained, d @ uv.T


def hessian_plane(model, loss, x, y, params, *, state=None, seed: int = 0,
                  **options) -> Plane:
    """The plane of the Hessian's top two eigenvectors through `params`.

    Grid coordinate a moves along the top eigenvector (unit norm over the whole pytree), b
    along the second; near a minimum the loss rises as lambda_1 a^2 / 2 and lambda_2 b^2 / 2.

    Args:
      model, loss, x, y, params, state: as `functional_fit.hessian.eigenvalues` takes them
        (a `Stream` as x, with y None).
      seed: Lanczos' start vector's seed.
      options: more keywords of `functional_fit.hessian.eigenvalues` (``iterations``,
        ``tol``).

    Returns:
      `Plane(params, u, v)`, pytrees shaped like `params`.
    """
    from functional_fit import hessian

    top = hessian.eigenvalues(model, loss, x, y, params, 2, state=state, seed=seed, **options)
    return Plane(params, top.vectors[0], top.vectors[1])


__all__ = ["PCAPlane", "Plane", "Unraveled", "check_coords", "coords_plane", "filter_normalized",
           "flat", "flatten", "hessian_plane", "is_vector", "pca_plane", "random_draw",
           "random_plane", "unraveled"]
