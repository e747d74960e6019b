"""Planes in parameter space: where a surface's grid points lie.

Grid point (a, b) of a surface is ``origin + a * u + b * v`` on a `Plane`. The usual case, two
chosen coordinates with the rest held at a base point, is `coords_plane`. Two more show models
with more than two parameters: `random_plane` (Li et al. 2018) and `pca_plane` (the top two
principal directions of an optimizer path, with the path projected onto the plane).

A model may take any pytree of parameters (a dict of weight matrices, say): its planes are
pytrees of the same structure. The grid works on flat vectors: `flatten`
(`jax.flatten_util.ravel_pytree`) flattens a plane, and `Unraveled` gives the model the pytree
back; it is a frozen dataclass, hashable by value, so a compiled block is reused for every
call with the same model and the same structure.
"""

from __future__ import annotations

import dataclasses
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
    path: jax.Array  # shape=(steps+1, 2) the path's (a, b) coordinates on the plane
    explained: jax.Array  # shape=(2,) fraction of the path's squared spread along u and v


# A model may take any pytree of parameters (a dict of weight matrices, say). The surface works
# on flat vectors: `jax.flatten_util.ravel_pytree` flattens the plane, and `Unraveled` gives the
# model the pytree back. It is a frozen dataclass, hashable by value, so a compiled block is
# reused for every call with the same model and the same structure.


def is_vector(tree) -> bool:
    """Whether parameters are one flat vector (an array of one dimension, or a list of numbers)."""
    return not isinstance(tree, (dict, tuple)) and np.ndim(tree) == 1 or isinstance(tree, list)


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


def random_plane(w, seed: int = 0, *, include_biases: bool = False) -> Plane:
    """Two random directions through `w`, filter-normalized (Li et al. 2018).

    Li et al. draw Gaussian directions and rescale each filter of the direction to the norm of
    the same filter of the parameters, so that the plane's scale follows the network's and
    not the parametrization's. For a pytree of parameters (a dict of weight matrices, say) a
    filter is one output unit: row i of a weight of shape (out, in, ...), d[i] <- d[i] /
    ||d[i]|| * ||w[i]||. Biases (leaves of one dimension or none) get a zero direction, as in
    Li et al.'s code; ``include_biases=True`` moves them along the bias itself (their
    ``d.copy_(w)``).

    For a flat (p+1,) vector, the lecture's models, each parameter is its own filter:
    d_i <- d_i / |d_i| * |w_i|, which keeps the sign of the Gaussian draw and the size of the
    parameter. A parameter that is 0 would never move; it gets the RMS size of the others
    instead (1 if all of `w` is 0). The second direction is drawn again (deterministically
    from `seed`) until it is not parallel to the first.

    Args:
      w: (p+1,) parameters, p+1 >= 2, or any pytree of them; the plane's origin.
      seed: seed of `jax.random.key`.
      include_biases: pytrees only: move the biases too (along themselves).

    Returns:
      `Plane(w, u, v)`, pytrees shaped like `w`; for a vector, grid coordinate 1 along u moves
      every parameter by its own size; for a network, every filter by its own norm.
    """
    seed = _checks.nonnegative_int("seed", seed)
    if not is_vector(w):
        return _filter_plane(w, seed, include_biases)
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


def _filter_plane(w, seed: int, include_biases: bool) -> Plane:
    """`random_plane` of a parameter pytree: per-filter normalized Gaussian directions."""
    leaves, treedef = jax.tree.flatten(jax.tree.map(jnp.asarray, w))
    if not any(leaf.ndim >= 2 for leaf in leaves) and not include_biases:
        raise InputError("w has no weight matrix (no leaf of two dimensions or more), so every "
                         "direction would be zero; pass include_biases=True, or a flat vector")
    key = jax.random.key(seed)

    def direction(which):
        out = []
        for i, leaf in enumerate(leaves):
            if leaf.ndim <= 1:  # a bias: zero, or along itself
                out.append(leaf if include_biases else jnp.zeros_like(leaf))
                continue
            d = jax.random.normal(jax.random.fold_in(key, 2 * i + which), leaf.shape, leaf.dtype)
            axes = tuple(range(1, leaf.ndim))  # a filter: one output unit, row i
            dn = jnp.sqrt(jnp.sum(d**2, axis=axes, keepdims=True))  # (out, 1, ...)
            wn = jnp.sqrt(jnp.sum(leaf**2, axis=axes, keepdims=True))
            out.append(d / (dn + 1e-10) * wn)  # Li et al.'s epsilon
        return jax.tree.unflatten(treedef, out)

    return Plane(jax.tree.unflatten(treedef, leaves), direction(0), direction(1))


def pca_plane(path) -> PCAPlane:
    """The plane of the top two principal directions of an optimizer path, through its end.

    The rows of ``path - path[-1]`` (displacements from the final parameters, not centred on
    their mean) are decomposed by SVD; u and v are the first two right singular vectors, signed
    so that the start of the path has coordinates >= 0. The path projects onto the plane as
    ``(path - path[-1]) @ [u, v]``; its last point is (0, 0).

    Args:
      path: (steps+1, p+1) parameters, e.g. ``FitResult.path``; p+1 >= 2. Or a pytree path,
        leaves (steps+1, *shape), whose plane is then a pytree too.

    Returns:
      `PCAPlane(plane, path (steps+1, 2), explained (2,))`.
    """
    if isinstance(path, (dict, tuple)) and not hasattr(path, "shape"):  # a pytree path
        leaves = jax.tree.leaves(path)
        steps = leaves[0].shape[0]
        flat = jnp.concatenate([jnp.reshape(a, (steps, -1)) for a in leaves], axis=1)  # (T, p)
        _, unravel = flatten(jax.tree.map(lambda a: a[0], path))
        pca = pca_plane(flat)
        return PCAPlane(_tree_plane(pca.plane, unravel), pca.path, pca.explained)
    path = jnp.asarray(path)
    if path.ndim != 2 or path.shape[1] < 2 or path.shape[0] < 1:
        raise InputError(f"path must have shape (steps+1, p+1) with p+1 >= 2, got {path.shape}")
    d = path - path[-1:]  # (T, p+1)
    _, s, vt = jnp.linalg.svd(d, full_matrices=True)  # vt (p+1, p+1)
    uv = vt[:2]  # (2, p+1)
    sign = jnp.where(d[0] @ uv.T < 0, -1, 1).astype(uv.dtype)  # (2,)
    uv = uv * sign[:, None]  # (2, p+1)
    total = jnp.sum(s**2)
    s2 = jnp.zeros(2, s.dtype).at[: min(2, s.shape[0])].set(s[:2] ** 2)  # (2,)
    explained = jnp.where(total > 0, s2 / jnp.where(total > 0, total, 1), 0)
    return PCAPlane(Plane(path[-1], uv[0], uv[1]), d @ uv.T, explained)  # path (T, 2)


__all__ = ["PCAPlane", "Plane", "Unraveled", "check_coords", "coords_plane", "flat", "flatten",
           "is_vector", "pca_plane", "random_plane", "unraveled"]
