"""Loss surfaces: the loss over a 2-D grid of parameter vectors, streamed, in bounded memory.

The lecture draws a surface by calling the loss once per grid point in a Python loop (cells 12,
15 and 50). Here a grid point is ``w(a, b) = origin + a * u + b * v`` on a `Plane`; the usual
case, two chosen coordinates with the rest held at ``base``, is `coords_plane`. Two more planes
show models with more than two parameters: `random_plane` (Li et al. 2018) and `pca_plane` (the
top two principal directions of an optimizer path, with the path projected onto the plane).

Layout. ``jit(vmap(loss_at_point))`` over the grid makes every grid point reduce over the n
data points, a short dependent chain per point that the CPU cannot vectorize well. The streamed
layout turns the loops around: grid points are the vector axis (a block of G of them, one
compiled call's worth), and the data points are the stream. A `lax.scan` walks the data K
points at a time; each step adds K per-point terms, summed as a tree so that no chain of adds is
long, and several steps are unrolled into one pass over the block (all 100 of the lecture's
points: the accumulator never leaves the registers):

    acc[g] += tree_sum(term(W[:, g], x[k], y[k]) for k in chunk)   # W (p+1, G), acc (G,)
    loss[g] = acc[g] / n

``term(w, x_k, y_k) = loss(model(w, x[k:k+1]), y[k:k+1])`` is the loss on one point, so this
needs a loss that is a mean of per-point terms (both losses of the toolkit are) and a model
whose prediction at x[k] depends on x[k] alone. ``layout="auto"`` checks both at a few grid
points against the full loss and falls back to the vmapped layout when they disagree, so any
pure ``model(w, x)`` and ``loss(y_hat, y)`` get the right surface; the common ones get it fast.
A network (a pytree with weight matrices) takes the vmapped layout: a block's grid points
become batched matrix products, compiled on the CPU with `CPU_DOT_OPTIONS`.

Memory. The grid is computed in chunks of `CHUNK_POINTS` points per device, each one compiled
call; only the output array grows with the grid, so a 10^4 x 10^4 grid needs its 800 MB of
float64 output plus a workspace of a few chunks (tens of MB). Pass ``out=`` (a numpy array or
``np.memmap`` of shape (len(b), len(a))) to write somewhere else.

Devices. Each call's blocks are split across ``devices`` (all of JAX's devices by default)
with `jax.shard_map` over a one-axis `Mesh`; every point is computed by the same block code
wherever it runs, so the result equals the one-device result exactly. Across several hosts,
start every process the same way and call `loss_surface` in each; it returns the whole surface
on every process:

    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts only
    jax.distributed.initialize(coordinator_address="host0:1234", num_processes=N,
                               process_id=i)         # or from the cluster's environment
    z = loss_surface(model, loss, x, y, a, b)    # jax.devices() now spans every host

(`tests/test_surface_sharding.py` runs this with two processes on one machine.)

For MSE and a model linear (affine) in its parameters, `mse_surface_exact` gives the same
surface from a quadratic in (a, b) whose six coefficients come from one pass over the data: its
cost is independent of n.

Every function takes JAX's dtypes as it finds them: float64 needs JAX's 64-bit mode (see
`functional_fit.precision`); float64 inputs without it raise `PrecisionError`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from functional_fit import checks as _checks, registry
from functional_fit.checks import InputError
from functional_fit.precision import check_array_dtype, torch_matmul_precision

#: The largest grid `loss_surface` accepts: 2**30 points, a float64 output of 8 GiB.
MAX_POINTS = 2**30
#: Grid points per compiled call and device: the workspace beyond the output is a few of these
#: (8 MB each in float64 on a CPU). A GPU takes bigger calls: fewer launches and transfers.
CHUNK_POINTS = {"cpu": 2**20, "gpu": 2**24}
#: Numbers a block may hold per its G points (its parameter vectors, say): 64 MB of float64.
WORKSPACE_ITEMS = 2**23
#: The vmapped layout's block: this many numbers of its largest intermediate, per platform. On
#: the CPU 8 MB of float32, so that a block's batched matrix products stay in cache: measured on
#: the 2-core EPYC, 1 -> 32 -> 32 -> 1 tanh on n = 100, blocks of 512 points took 4.7 us a
#: point, 2,621 (the general workspace) 11 us; 1 -> 64 -> 64 -> 1 on n = 1,000, 32 to 64 points
#: were fastest. On a GPU 256 MB: measured on an H200 (`benchmarks/gpu.py`), the CPU's blocks
#: took 34.5 ns a point (small net) and 702 ns (large); blocks of 16,384 and 1,024 points
#: (what 2**26 gives them: 20,971 and 1,048) 22.7 and 337 ns.
VMAP_ITEMS = {"cpu": 2**21, "gpu": 2**26}
#: Data points per scan step of the streamed layout, added as a tree (its depth is log2 K).
DATA_CHUNK = 10
#: Data points per pass of the streamed loop at most: one pass must outweigh the loop's own
#: cost (about 10 us a pass on the CPU), so cheap terms (the linear model) take 100 at once.
MAX_TERMS = 100
#: Compile time grows with the unrolled body, and faster than its size: a term of e jaxpr
#: equations gets TERM_BUDGET // e**2 data points per pass (linear: 100; degree 12: 3).
TERM_BUDGET = 40_000
LAYOUTS = ("auto", "streamed", "vmap")
#: XLA options for the vmapped layout's compiled calls on the CPU when the loss has matrix
#: products (a network's layers). XLA hands each dot, fused with its elementwise neighbours (a
#: bias, a tanh), to YNNPACK, whose kernels are faster and use every core, where XLA's own run a
#: block's batch of small products one after another on one core; and XLA's own loops (the
#: first layer's tanh) use 512-bit vectors where the CPU has them (its default is 256). Measured
#: on the 2-core EPYC (AVX-512), 200 x 200 grids, float32: 1 -> 32 -> 32 -> 1 tanh on n = 100,
#: 3.05 us a point without them, 2.03 with YNNPACK, 1.66-1.78 with both; 1 -> 64 -> 64 -> 1 on
#: n = 1,000, 67.8, 41.4 and 35.7 us (float64, small net: 8.3 -> 6.4 us with YNNPACK). The
#: first option is experimental in XLA, so their use is guarded: an option XLA refuses is
#: dropped (for this process), and the first call's losses at a few grid points are checked
#: against XLA's default compilation, which takes over if they disagree.
CPU_DOT_OPTIONS = (("xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_DOT"),
                   ("xla_cpu_prefer_vector_width", 512))
_refused_options: set = set()  # options this process's XLA refused


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


# --------------------------------------------------------------------------- pytree parameters
# A model may take any pytree of parameters (a dict of weight matrices, say). The surface works
# on flat vectors: `jax.flatten_util.ravel_pytree` flattens the plane, and `Unraveled` gives the
# model the pytree back. It is a frozen dataclass, hashable by value, so a compiled block is
# reused for every call with the same model and the same structure.


def _is_vector(tree) -> bool:
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


def _flat(tree):
    """`flatten(tree)[0]`, the vector (p,), in one compiled call (ravel_pytree: 30 eager ops)."""
    leaves = tuple(jax.tree.leaves(tree))
    return _concatenated(leaves) if leaves else flatten(tree)[0]


@jax.jit
def _concatenated(leaves):
    return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])  # ravel_pytree's order, dtype


def _unraveled(model, tree) -> Unraveled:
    leaves, treedef = jax.tree.flatten(tree)
    return Unraveled(model, treedef, tuple(np.shape(a) for a in leaves))


def _tree_plane(plane: Plane, unravel) -> Plane:
    """A flat plane's vectors as pytrees of the parameters' structure."""
    return Plane(*(unravel(jnp.asarray(v)) for v in plane))


# --------------------------------------------------------------------------- planes


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
    base = jnp.asarray(base)
    i, j = _check_coords(coords, base.shape[0])
    eye = jnp.eye(base.shape[0], dtype=base.dtype)  # (p+1, p+1)
    return Plane(base.at[i].set(0).at[j].set(0), eye[i], eye[j])


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
    if not _is_vector(w):
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


# --------------------------------------------------------------------------- kernels
# A kernel maps the (a, b) coordinates of one block of G grid points to their G losses. It is
# a frozen dataclass, so that jit can hash it and compile once per model and loss.


def _tree_sum(terms):
    while len(terms) > 1:  # pairwise: the chain of dependent adds is log2(len) long
        terms = [sum(terms[i : i + 2]) for i in range(0, len(terms), 2)]
    return terms[0]


def _points(plane: Plane, a, b):
    """The block's parameter vectors as columns, (p+1, G), from a (G,) and b (G,)."""
    origin, u, v = plane
    return origin[:, None] + u[:, None] * a[None, :] + v[:, None] * b[None, :]  # (p+1, G)


@dataclasses.dataclass(frozen=True)
class Streamed:
    """Stream over the data points, vectorize across the G grid points of a block."""

    model: object
    loss: object
    terms: int | None = None  # data points per pass of the loop; None: from the term's size

    def term(self, w, xk, yk):
        """The loss on one data point; (p+1,), (), () -> ()."""
        return self.loss(self.model(w, xk[None]), yk[None])  # a mean over one point

    def __call__(self, args, a, b):
        (x, y), plane = args
        w = _points(plane, a, b)  # (p+1, G)
        terms = jax.vmap(self.term, in_axes=(1, None, None))  # over the grid points

        def chunk_sum(xs, ys):
            return _tree_sum([terms(w, xs[i], ys[i]) for i in range(xs.shape[0])])  # (G,)

        n = x.shape[0]
        per_pass = self.terms
        if per_pass is None:
            size = len(jax.make_jaxpr(terms)(w, x[0], y[0]).eqns)
            per_pass = max(1, min(MAX_TERMS, TERM_BUDGET // size**2))
        chunk = min(DATA_CHUNK, per_pass)
        steps, rest = divmod(n, chunk)
        k = chunk if steps else rest
        acc = chunk_sum(x[:k], y[:k])  # (G,) the first chunk starts the sum
        if steps > 1:
            xc = x[k : steps * k].reshape((steps - 1, k) + x.shape[1:])  # (steps-1, K, ...)
            yc = y[k : steps * k].reshape((steps - 1, k) + y.shape[1:])

            def body(acc, xy):
                return acc + chunk_sum(*xy), None

            unroll = max(1, min(steps - 1, per_pass // chunk))
            acc, _ = jax.lax.scan(body, acc, (xc, yc), unroll=unroll)
        if steps and rest:
            acc = acc + chunk_sum(x[steps * k :], y[steps * k :])
        return acc / n  # (G,)


@dataclasses.dataclass(frozen=True)
class Vmapped:
    """The full loss at each grid point, vmapped over the block: any model and loss."""

    model: object
    loss: object

    def __call__(self, args, a, b):
        (x, y), plane = args
        at = lambda w: self.loss(self.model(w, x), y)  # noqa: E731  (p+1,) -> ()
        return jax.vmap(at, in_axes=1)(_points(plane, a, b))  # (G,)


@dataclasses.dataclass(frozen=True)
class Quadratic:
    """An exact quadratic in (a, b) about the grid centre (a0, b0); see `mse_surface_exact`."""

    def __call__(self, args, a, b):
        a0, b0, q0, qa, qb, qaa, qab, qbb = args
        da, db = a - a0, b - b0  # (G,)
        return q0 + da * (qa + qaa * da + qab * db) + db * (qb + qbb * db)  # (G,)


# --------------------------------------------------------------------------- the chunk driver


def _chunk_fn(kernel, block: int, n_blocks: int, mesh: Mesh):
    """One compiled call: losses of ``n_blocks * block`` consecutive grid points, (n_blocks, block).

    Grid points are numbered row by row (point q is a_values[q % na], b_values[q // na]); the
    blocks are split across the mesh's devices; points past the grid repeat the last point.
    """

    def local(ids, args, a_values, b_values, start):  # ids: this device's block numbers
        na, total = a_values.shape[0], a_values.shape[0] * b_values.shape[0]

        def one_block(i):
            q = start + i * block + jnp.arange(block, dtype=jnp.int32)  # (G,) point numbers
            q = jnp.minimum(q, total - 1)
            return kernel(args, a_values[q % na], b_values[q // na])  # (G,)

        return jax.lax.map(one_block, ids)  # (local blocks, G)

    spec, rep = PartitionSpec("grid"), PartitionSpec()
    mapped = jax.shard_map(local, mesh=mesh, in_specs=(spec, rep, rep, rep, rep), out_specs=spec)

    def call(args, a_values, b_values, start):  # traced: the block numbers are made in the jit
        ids = jnp.arange(n_blocks, dtype=jnp.int32)  # (n_blocks,) split across the devices
        return mapped(ids, args, a_values, b_values, start)

    return call


@functools.lru_cache(maxsize=64)
def _compiled_chunk(kernel, block, n_blocks, mesh, options=()):
    """`_chunk_fn` compiled; `options`: XLA compiler options as ((name, value), ...)."""
    fn = _chunk_fn(kernel, block, n_blocks, mesh)
    return jax.jit(fn, compiler_options=dict(options)) if options else jax.jit(fn)


def _chunk_points(platform: str) -> int:
    return CHUNK_POINTS.get(platform, CHUNK_POINTS["gpu"])


def _to_host(values) -> np.ndarray:
    if values.is_fully_addressable:
        return np.asarray(values)
    from jax.experimental import multihost_utils  # several hosts: every process gets it all

    return np.asarray(multihost_utils.process_allgather(values, tiled=True))


def _grid(kernel, args, a_values, b_values, *, devices, block, out, progress, check=None,
          width: int = 1, items: int = WORKSPACE_ITEMS, on_device=None, options=()):
    """Run `kernel` over the grid in chunks, writing (len(b), len(a)) losses into `out`.

    `width` is what the kernel keeps per grid point of a block (p+1 parameters, or the largest
    intermediate for the vmapped layout); the default block is small enough that a block's
    worth stays within `items` (`WORKSPACE_ITEMS`, `VMAP_ITEMS`).

    `on_device`: keep the chunks where they were computed and return one `jax.Array` (no copy
    to the host); None chooses it on accelerators when `out` is None. Otherwise each chunk is
    copied to the host (into `out`, or a new numpy array) while the next one computes.

    `options`: XLA compiler options for the compiled calls, ((name, value), ...).
    """
    na, nb = a_values.shape[0], b_values.shape[0]
    total = na * nb
    devices = list(jax.devices() if devices is None else devices)
    mesh = Mesh(np.array(devices, dtype=object), ("grid",))
    chunk = _chunk_points(devices[0].platform)
    # Blocks smaller than a call (a `lax.map` over them) cost more than they save in cache:
    # measured on a 2-core EPYC, 2^20-point blocks took 14 ms (float64) and 6.5 ms (float32)
    # per 10^6 points, 2^11-point blocks 14 ms and 20 ms.
    chosen = block is None
    block = min(chunk, max(1, items // width)) if chosen else block
    block = min(_checks.positive_int("block", block), -(-total // len(devices)))
    per_call = min(max(chunk, block) * len(devices), total)
    n_blocks = -(-per_call // (block * len(devices))) * len(devices)
    if chosen and per_call == total:  # one call: even blocks, no block of padding points
        block = -(-total // n_blocks)  # (40 x 40 in blocks of 655: 1,965 points; now 1,602)
    step = n_blocks * block
    fn = _compiled_chunk(kernel, block, n_blocks, mesh, tuple(options))
    if on_device is None:
        on_device = out is None and devices[0].platform != "cpu"
    if on_device:
        return _grid_on_device(fn, args, a_values, b_values, step, progress, check)
    flat = None if out is None else out.reshape(-1)  # a view: out is C-contiguous (checked)

    def store(start, values):
        nonlocal out, flat
        values = _to_host(values).reshape(-1)[: min(step, total - start)]  # (points,)
        if out is None:
            out = np.empty((nb, na), values.dtype)
            flat = out.reshape(-1)
        flat[start : start + values.shape[0]] = values
        if progress is not None:
            progress(values.shape[0])

    pending = None
    for start in range(0, total, step):
        values = fn(args, a_values, b_values, jnp.int32(start))  # dispatched asynchronously
        if pending is None and check is not None and not check(values):
            return None  # the caller picks another kernel
        if pending is not None:
            store(*pending)  # copy the previous chunk while this one computes
        pending = (start, values)
    store(*pending)
    return out


def _grid_on_device(fn, args, a_values, b_values, step, progress, check):
    """`_grid`'s chunks kept on their devices: one (nb, na) `jax.Array`, no host transfer."""
    na, nb = a_values.shape[0], b_values.shape[0]
    total = na * nb
    chunks = []
    for start in range(0, total, step):
        values = fn(args, a_values, b_values, jnp.int32(start))  # dispatched asynchronously
        if not chunks and check is not None and not check(values):
            return None  # the caller picks another kernel
        chunks.append(values)
        if progress is not None:
            progress(min(step, total - start))
    return _assembled(tuple(chunks), total, nb, na)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _assembled(chunks, total: int, nb: int, na: int):
    """The chunks' values, in order, as the (nb, na) surface: one compiled call (eager
    reshapes, a concatenate and a slice were an operation and a launch each)."""
    flat = jnp.concatenate([c.reshape(-1) for c in chunks])  # (chunks * step,)
    return flat[:total].reshape(nb, na)


# --------------------------------------------------------------------------- public surfaces


def _check_coords(coords, size: int):
    try:
        i, j = (_checks.nonnegative_int("coords", c) for c in coords)
    except (TypeError, ValueError):
        raise InputError(f"coords must be two parameter indices, got {coords!r}") from None
    if i == j or max(i, j) >= size:
        raise InputError(
            f"coords must be two distinct indices below {size} (the number of parameters), "
            f"got {tuple(coords)}"
        )
    return i, j


def _check_grid(x, y, a_values, b_values, base, coords, plane, out):
    """Checked inputs as JAX arrays: ((x, y), plane, a_values, b_values), and `out`."""
    x = _checks.array("x", x, ndims=(1, 2))  # (n,) or (n, d)
    y = _checks.array("y", y, ndims=(1, 2))
    if x.shape[0] != y.shape[0]:
        raise InputError(f"x and y must have the same number of points, got x of shape "
                         f"{x.shape} and y of shape {y.shape}")
    a_values = _checks.vector("a_values", a_values)
    b_values = _checks.vector("b_values", b_values)
    total = a_values.shape[0] * b_values.shape[0]
    if total > MAX_POINTS:
        raise InputError(
            f"grid of {b_values.shape[0]} x {a_values.shape[0]} = {total} points is larger than "
            f"MAX_POINTS = {MAX_POINTS}; compute it in pieces"
        )
    if plane is not None and not _is_vector(plane[0]):  # a pytree plane: flat vectors inside
        plane = Plane(*(_flat(v) for v in plane))
    if base is not None and not _is_vector(base):
        base = _flat(base)
    if plane is not None:
        if base is not None:
            raise InputError("base cannot be combined with plane (the plane has an origin)")
        origin = _checks.vector("plane.origin", plane[0])
        u = _checks.vector("plane.u", plane[1])
        v = _checks.vector("plane.v", plane[2])
        if not origin.shape == u.shape == v.shape:
            raise InputError(
                f"plane: origin, u and v must have the same shape (p+1,), got "
                f"{origin.shape}, {u.shape} and {v.shape}"
            )
        arrays = {"plane.origin": origin, "plane.u": u, "plane.v": v}
    else:
        if base is None:
            i, j = _check_coords(coords, 2**31)
            base = np.zeros(max(i, j) + 1, dtype=np.result_type(a_values, b_values, np.float32))
        arrays = {"base": _checks.vector("base", base)}
    arrays = dict(x=x, y=y, a_values=a_values, b_values=b_values, **arrays)
    for name, arr in arrays.items():
        check_array_dtype(name, arr)
    if plane is None:  # coords_plane, in numpy: no small eager JAX ops on the way
        base = arrays["base"]
        i, j = _check_coords(coords, base.shape[0])
        eye = np.eye(base.shape[0], dtype=base.dtype)  # (p+1, p+1)
        origin = base.copy()
        origin[[i, j]] = 0
        plane = Plane(jnp.asarray(origin), jnp.asarray(eye[i]), jnp.asarray(eye[j]))
    else:
        plane = Plane(*(jnp.asarray(arrays[f"plane.{k}"]) for k in ("origin", "u", "v")))
    if out is not None:
        want = (b_values.shape[0], a_values.shape[0])
        if not isinstance(out, np.ndarray) or out.shape != want or not out.flags.c_contiguous:
            raise InputError(f"out must be a C-contiguous numpy array of shape {want}")
        if not np.issubdtype(out.dtype, np.floating) or not out.flags.writeable:
            raise InputError(f"out must be a writable floating-point array (float32 or float64: "
                             f"a loss is a real number), got dtype {out.dtype}"
                             f"{'' if out.flags.writeable else ', read-only'}")
    data = (jnp.asarray(x), jnp.asarray(y))
    return data, plane, jnp.asarray(a_values), jnp.asarray(b_values)


def loss_surface(
    model,
    loss,
    x,
    y,
    a_values,
    b_values,
    *,
    base=None,
    coords=(0, 1),
    plane: Plane | None = None,
    layout: str = "auto",
    devices=None,
    block: int | None = None,
    out: np.ndarray | None = None,
    progress=None,
    keep_on_device: bool | None = None,
):
    """The loss at every point of a grid, as the lecture's loop computes it, streamed.

    Row j, column i is the loss at ``w[coords[0]] = a_values[i]``, ``w[coords[1]] =
    b_values[j]``, every other parameter from `base`: the meshgrid 'xy' convention of the
    lecture's ``np.meshgrid(w0values, w1values)``. With `plane`, the point is
    ``plane.origin + a_values[i] * plane.u + b_values[j] * plane.v`` instead.

    Args:
      model: pure ``model(w, x) -> (n,)`` with w (p+1,) and x (n,), e.g. `models.linear`;
        or a model of any parameter pytree, with `plane` (or `base`) pytrees of its structure
        (flattened inside with `jax.flatten_util.ravel_pytree`).
      loss: pure ``loss(y_hat, y) -> ()``, e.g. `losses.l1`.
      x, y: (n,) data; or (n, d) inputs and (n, k) targets for a network.
      a_values: (na,) values along the first axis (the columns of the result).
      b_values: (nb,) values along the second axis (the rows).
      base: (p+1,) parameters held fixed; default zeros of length max(coords) + 1.
      coords: the two indices of w that a_values and b_values set.
      plane: a `Plane` to use instead of `base` and `coords`.
      layout: ``"streamed"`` (needs a per-point loss, see the module docstring), ``"vmap"``
        (any loss), or ``"auto"`` (streamed when a check at a few points allows it).
      devices: the devices to split the grid across; default all of ``jax.devices()``.
      block: grid points per block (default: a whole call, `CHUNK_POINTS`).
      out: optional C-contiguous (nb, na) numpy array (or ``np.memmap``) to write into.
      progress: optional callable, called with the number of points done after each chunk.
      keep_on_device: return a `jax.Array` left where it was computed, with no copy to the
        host (``np.asarray`` of it is then the one transfer). None (default): on accelerators
        when `out` is None; on the CPU a numpy array, which costs nothing there. With `out`
        (a numpy array or memmap) each chunk is copied to the host while the next computes.

    Returns:
      (nb, na) losses, in the dtype JAX computes the loss in: a numpy array (on the CPU), a
      `jax.Array` (on an accelerator, or with ``keep_on_device=True``), or `out` if given.

    Examples:
      >>> import functional_fit as ff, numpy as np
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     z = loss_surface(ff.models.linear, ff.losses.l1, x, y,
      ...                      np.linspace(-1, 1, 50), np.linspace(-0.5, 5, 50))
      >>> z.shape, round(float(z.min()), 4)
      ((50, 50), 1.2097)
    """
    layout = _checks.choice("layout", layout, LAYOUTS)
    model, loss = registry.resolve(model, loss)
    _checks.devices("devices", devices)
    tree = plane[0] if plane is not None else base
    if tree is not None and not _is_vector(tree):  # pytree parameters: the model unravels
        model = _unraveled(model, tree)
    data, plane, a_values, b_values = _check_grid(
        x, y, a_values, b_values, base, coords, plane, out
    )
    args = (data, plane)
    size = plane.origin.shape[0]
    if keep_on_device and out is not None:
        raise InputError("keep_on_device: the surface is written into out, on the host; pass "
                         "one of out and keep_on_device=True")
    grid = dict(devices=devices, block=block, out=out, progress=progress,
                on_device=keep_on_device)
    # A network's weight matrices: the vmapped layout turns a block's grid points into batched
    # matrix products; streaming over the data would make them matrix-vector products.
    matrices = tree is not None and any(np.ndim(leaf) >= 2 for leaf in jax.tree.leaves(tree))
    if layout == "vmap" or (layout == "auto" and matrices):
        return _vmapped(model, loss, args, a_values, b_values, grid)
    check = None
    if layout == "auto":
        check = _per_point_check(model, loss, args, a_values, b_values)
    result = _grid(Streamed(model, loss), args, a_values, b_values, check=check, width=size, **grid)
    if result is None:  # the loss is not a mean of per-point terms: take the general layout
        result = _vmapped(model, loss, args, a_values, b_values, grid)
    return result


def _vmapped(model, loss, args, a_values, b_values, grid):
    """`_grid` with the vmapped layout; on the CPU, with `CPU_DOT_OPTIONS` where they apply.

    Matrix products in float32 are computed as torch computes them (no TF32 on a GPU, unless
    the program asked for it): `precision.torch_matmul_precision`.
    """
    width, dots = _traced(model, loss, _spec(args))
    devices = grid["devices"] if grid["devices"] is not None else jax.devices()
    items = VMAP_ITEMS.get(devices[0].platform, VMAP_ITEMS["gpu"])
    kernel, grid = Vmapped(model, loss), dict(grid, width=width, items=items)
    options = tuple(o for o in CPU_DOT_OPTIONS if o[0] not in _refused_options)
    with torch_matmul_precision():
        if dots and options and all(d.platform == "cpu" for d in devices):
            check = _per_point_check(model, loss, args, a_values, b_values, same_nonfinite=True)
            try:
                result = _grid(kernel, args, a_values, b_values, check=check, options=options,
                               **grid)
            except jax.errors.JaxRuntimeError as error:  # an XLA without the option refuses it
                refused = [name for name, _ in options if name in str(error)]
                if not refused:
                    raise
                _refused_options.update(refused)
                result = None
            if result is not None:
                return result
        return _grid(kernel, args, a_values, b_values, **grid)


def _spec(args):
    """The shapes and dtypes of x, y and the plane's origin: what a traced loss depends on."""
    (x, y), plane = args
    return tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, y, plane.origin))


@functools.lru_cache(maxsize=64)
def _traced(model, loss, spec) -> tuple[int, bool]:
    """What the vmapped layout keeps per grid point, and whether the loss has matrix products.

    The loss at one point is traced (not run), once per model, loss and shapes. The first is
    the count of numbers in its largest intermediate array: a network's (n, hidden)
    activations dominate, the lecture's models keep a few (n,) arrays.
    """
    xs, ys, ws = spec
    jaxpr = jax.make_jaxpr(lambda w, x, y: loss(model(w, x), y))(ws, xs, ys).jaxpr
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars
             if hasattr(v.aval, "shape")]
    dots = any(e.primitive.name == "dot_general" for e in _equations(jaxpr))
    return max([ws.shape[0], *sizes]), dots


def _equations(jaxpr):
    """Every equation of `jaxpr`, those of its sub-jaxprs (a jit, a custom_jvp) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(sub, "eqns"):
                    yield from _equations(sub)


@functools.partial(jax.jit, static_argnums=0)
def _at_points(kernel, args, a, b):
    """`kernel` at m points (a (m,), b (m,)), one compiled call; -> (m,)."""
    return kernel(args, a, b)


def _per_point_check(model, loss, args, a_values, b_values, same_nonfinite=False):
    """A check of the first chunk's losses against the full loss (`Vmapped`, compiled by XLA's
    defaults) at a few points: ``check(values) -> bool``.

    The streamed layout is right when the loss is a mean of per-point terms and the model is
    pointwise; a loss or model that is not differs from the full loss far beyond rounding.
    The vmapped layout compiled with `CPU_DOT_OPTIONS` is checked the same way; there, with
    `same_nonfinite`, an inf or nan found by both counts as agreement (a diverging network).
    """
    na, nb = a_values.shape[0], b_values.shape[0]
    first = min(min(CHUNK_POINTS.values()), na * nb)  # inside the first call's points
    q = np.unique(np.array([0, first - 1, first // 2, first // 3, (2 * first) // 3]))  # (m,)
    a, b = np.asarray(a_values)[q % na], np.asarray(b_values)[q // na]  # (m,)
    a, b, kernel = jnp.asarray(a), jnp.asarray(b), Vmapped(model, loss)

    def check(values):  # a few points of the first chunk
        if _on_host(values):  # numpy's view of a CPU array costs nothing
            got = np.asarray(_to_host(values)).reshape(-1)[q]
            want = np.asarray(_at_points(kernel, args, a, b))
            return bool(np.all(_close(got, want, np, same_nonfinite)))
        # On an accelerator: one compiled call, one bool moved (eager gathers and compares
        # took 3 ms on an H200, more than the 10^8-point surface's own kernels)
        return bool(_agrees(kernel, same_nonfinite, args, a, b, values, jnp.asarray(q)))

    return check


def _on_host(values) -> bool:
    """Whether `values` is read on the host: on CPU devices, or spread over several hosts."""
    return not values.is_fully_addressable or all(d.platform == "cpu" for d in values.devices())


def _close(got, want, xp, same_nonfinite=False):
    """Whether the losses `got` are the full ones `want`, beyond doubt of rounding."""
    info = np.finfo(want.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: nan, which is not close
        close = xp.abs(got - want) <= float(np.sqrt(info.eps)) * xp.abs(want) + float(info.tiny)
    if same_nonfinite:
        close = close | (got == want) | (xp.isnan(got) & xp.isnan(want))
    return close


@functools.partial(jax.jit, static_argnums=(0, 1))
def _agrees(kernel, same_nonfinite, args, a, b, values, q):
    """`_per_point_check`'s comparison on the device: the full loss at points q, (m,), against
    the chunk's `values` there; -> () bool."""
    return jnp.all(_close(values.reshape(-1)[q], kernel(args, a, b), jnp, same_nonfinite))


def mse_surface_exact(
    model, x, y, a_values, b_values, *, base=None, coords=(0, 1), plane=None, devices=None,
    out=None, progress=None,
) -> np.ndarray:
    """The MSE surface of a model linear in its parameters, from moments of the data.

    For ``model(w, x) = V w + m`` (linear and polynomial models), the residual on the plane is
    ``r(a, b) = r0 + da * Vu + db * Vv`` about the grid centre (a0, b0), with da = a - a0,
    db = b - b0, r0 the residual there and Vu, Vv the model's derivatives along u and v. So

        MSE(a, b) = q0 + qa da + qb db + qaa da^2 + qab da db + qbb db^2,

    q0 = mean(r0^2), qa = 2 mean(r0 Vu), qb = 2 mean(r0 Vv), qaa = mean(Vu^2),
    qab = 2 mean(Vu Vv), qbb = mean(Vv^2): one pass over the data, then O(1) per grid point.
    Expanding about the grid centre keeps the terms as small as the grid allows (no cancellation
    of large moments). A model that is not linear in w is refused: the quadratic is checked
    against the brute-force MSE at the grid's corners.

    Args and Returns: as `loss_surface` (the loss is `functional_fit.losses.mse`).

    Raises:
      InputError: the model is not linear in its parameters.
    """
    from functional_fit import losses

    model = registry.resolve(model, losses.mse)[0]
    _checks.devices("devices", devices)
    data, plane, a_values, b_values = _check_grid(
        x, y, a_values, b_values, base, coords, plane, out
    )
    coef = _mse_coefficients(model, data, plane, a_values, b_values)
    a4 = jnp.asarray(np.asarray(a_values)[[0, -1, 0, -1]])  # (4,) the grid's corners
    b4 = jnp.asarray(np.asarray(b_values)[[0, 0, -1, -1]])
    want = _at_points(Vmapped(model, losses.mse), (data, plane), a4, b4)
    got = _at_points(Quadratic(), coef, a4, b4)
    rtol = float(np.sqrt(np.finfo(want.dtype).eps))
    close = jnp.abs(got - want) <= rtol * jnp.abs(want) + 100 * np.finfo(want.dtype).tiny  # (4,)
    if not bool(jnp.all(close)):
        raise InputError(
            "model: the exact MSE surface needs a model linear in its parameters; "
            "use loss_surface(model, losses.mse, ...) instead"
        )
    return _grid(Quadratic(), coef, a_values, b_values, devices=devices, block=None, out=out,
                 progress=progress)


@functools.partial(jax.jit, static_argnames=("model",))
def _mse_coefficients(model, data, plane, a_values, b_values):
    """(a0, b0, q0, qa, qb, qaa, qab, qbb), all (), of `mse_surface_exact`."""
    x, y = data
    a0 = (a_values[0] + a_values[-1]) / 2
    b0 = (b_values[0] + b_values[-1]) / 2
    w0 = plane.origin + a0 * plane.u + b0 * plane.v  # (p+1,)
    f = lambda w: model(w, x)  # noqa: E731
    y0, vu = jax.jvp(f, (w0,), (plane.u,))  # (n,), (n,)
    vv = jax.jvp(f, (w0,), (plane.v,))[1]  # (n,)
    r0 = y0 - y  # (n,)
    return (a0, b0, jnp.mean(r0**2), 2 * jnp.mean(r0 * vu), 2 * jnp.mean(r0 * vv),
            jnp.mean(vu**2), 2 * jnp.mean(vu * vv), jnp.mean(vv**2))


# --------------------------------------------------------------------------- around a fit

DIRECTIONS = ("coords", "random", "pca")


class View(NamedTuple):
    """Where to draw a surface around a fit: what `around_path` and `around_fit` choose."""

    plane: Plane  # through the path's end
    path: np.ndarray  # shape=(steps+1, p+1) the fit's path
    on_plane: np.ndarray | None  # shape=(steps+1, 2) the path in the plane's (a, b), or None
    centre: tuple  # (a, b) of the path's end on the plane
    labels: tuple  # the a and b axes' labels
    a_range: tuple  # (a0, a1) covering the path with a margin
    b_range: tuple  # (b0, b1)


def _span(values, margin=0.25, least=0.5):
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = max(margin * (hi - lo), least)
    return lo - pad, hi + pad


def around_path(path, *, directions: str = "coords", coords=(0, 1), seed: int = 0,
                names=None) -> View:
    """Choose the plane, label its axes and pick the range, for a surface around a path.

    Args:
      path: (steps+1, p+1) an optimizer's path, e.g. `FitResult.path`; the plane goes
        through its end.
      directions: ``"coords"`` (two parameters, the rest held at the end), ``"random"`` (two
        directions of `random_plane`) or ``"pca"`` (`pca_plane` of the path).
      coords: the two parameters of ``"coords"``.
      seed: the seed of ``"random"``.
      names: optional parameter names by index (``("intercept", "slope")``) for the labels.

    Returns:
      `View`; the range covers the path's projection with a margin (``"random"``: -1..1).
    """
    directions = _checks.choice("directions", directions, DIRECTIONS)
    path = np.asarray(path)
    if path.ndim != 2 or path.shape[0] < 1:
        raise InputError(f"path must have shape (steps+1, p+1), got {path.shape}")
    size = path.shape[1]
    if directions != "coords" and size < 2:
        raise InputError("directions random and pca need a model with at least 2 parameters")
    end = path[-1]
    if directions == "coords":
        i, j = _check_coords(coords, size)
        plane = coords_plane(jnp.asarray(end), (i, j))
        on_plane = path[:, [i, j]]  # (steps+1, 2)
        names = dict(enumerate(names or ()))
        labels = tuple(f"{names[c]} w[{c}]" if c in names else f"w[{c}]" for c in (i, j))
        centre = (float(end[i]), float(end[j]))
    elif directions == "random":
        plane = random_plane(jnp.asarray(end), seed=seed)
        on_plane, labels = None, ("a (random direction u)", "b (random direction v)")
        centre = (0.0, 0.0)
    else:
        pca = pca_plane(jnp.asarray(path))
        plane, on_plane = pca.plane, np.asarray(pca.path)
        labels = tuple(f"PC{k + 1} ({100 * float(e):.1f}% of the path)"
                       for k, e in enumerate(pca.explained))
        centre = (0.0, 0.0)
    plane = Plane(*(np.asarray(v, dtype=path.dtype) for v in plane))
    if on_plane is None:
        a_range = b_range = (-1.0, 1.0)
    else:
        a_range, b_range = _span(on_plane[:, 0]), _span(on_plane[:, 1])
    return View(plane, path, on_plane, centre, labels, a_range, b_range)


def around_fit(model, loss, x, y, w0, *, lr: float, steps: int, directions: str = "coords",
               coords=(0, 1), seed: int = 0, names=None, path: bool = True,
               progress=None) -> View:
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

    Raises:
      DivergenceError: the fit diverged (lower `lr`).
    """
    from functional_fit import fit

    model, loss = registry.resolve(model, loss)
    if not path and directions == "pca":
        raise InputError("path: directions 'pca' needs the fit's whole path; pass path=True")
    res = fit.gradient_descent(w0, x, y, model=model, loss=loss, lr=lr, steps=steps,
                               trace=bool(path), progress=progress)
    kept = np.asarray(res.path) if path else np.asarray(res.params)[None]  # (steps+1 or 1, p+1)
    return around_path(kept, directions=directions, coords=coords, seed=seed, names=names)


__all__ = [
    "CHUNK_POINTS",
    "DIRECTIONS",
    "View",
    "around_fit",
    "around_path",
    "MAX_POINTS",
    "PCAPlane",
    "Plane",
    "coords_plane",
    "loss_surface",
    "mse_surface_exact",
    "pca_plane",
    "random_plane",
]
