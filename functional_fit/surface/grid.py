"""The grid driver: a kernel run over a grid in compiled chunks, split across devices.

A grid of na x nb points is numbered row by row (point q is ``a_values[q % na]``,
``b_values[q // na]``: the meshgrid 'xy' layout of the lecture's cell 12). `run` computes it in
chunks of the runtime's ``chunk_points`` points per device, one compiled call each, each chunk
cut into blocks of G points that `jax.lax.map` hands to the kernel one after another (a
device's only block is called directly, outside any loop); the
blocks of a call are split across the devices with `jax.shard_map` over a one-axis `Mesh`.
Every point is computed by the same block code wherever it runs, so the result equals the
one-device result exactly. Only the output grows with the grid: a 10^4 x 10^4 grid needs its
800 MB of float64 output plus a workspace of a few chunks.

The chunks are copied to the host (into ``out``, or a new numpy array) while the next one
computes, or kept where they were computed and returned as one `jax.Array`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from functional_fit import checks as _checks
from functional_fit.runtime import Runtime


class Grid(NamedTuple):
    """A grid, and where and how it is computed: what every kernel's `run` shares."""

    a_values: jax.Array  # (na,) the columns
    b_values: jax.Array  # (nb,) the rows
    devices: tuple  # the devices the blocks are split across
    block: int | None  # grid points per block; None: from the kernel's workspace
    out: np.ndarray | None  # a C-contiguous (nb, na) array to write into, or None
    progress: Callable | None  # called with the points done after each chunk
    on_device: bool | None  # keep the result on the devices; None: on accelerators
    runtime: Runtime  # chunk sizes of the devices' platform


def _chunk_fn(kernel, block: int, n_blocks: int, mesh: Mesh):
    """One compiled call: losses of ``n_blocks * block`` consecutive grid points, (n_blocks, block).

    The blocks are split across the mesh's devices; points past the grid repeat the last point.
    """

    def local(ids, args, a_values, b_values, start):  # ids: this device's block numbers
        na, total = a_values.shape[0], a_values.shape[0] * b_values.shape[0]

        def one_block(i):
            q = start + i * block + jnp.arange(block, dtype=jnp.int32)  # (G,) point numbers
            q = jnp.minimum(q, total - 1)
            return kernel(args, a_values[q % na], b_values[q // na])  # (G,)

        if ids.shape[0] == 1:  # no loop: XLA's CPU convolutions are several times slower
            return one_block(ids[0])[None]  # in a loop's body (BENCHMARKS.md, landscapes)
        return jax.lax.map(one_block, ids)  # (local blocks, G)

    spec, rep = PartitionSpec("grid"), PartitionSpec()
    mapped = jax.shard_map(local, mesh=mesh, in_specs=(spec, rep, rep, rep, rep), out_specs=spec)

    def call(args, a_values, b_values, start):  # traced: the block numbers are made in the jit
        ids = jnp.arange(n_blocks, dtype=jnp.int32)  # (n_blocks,) split across the devices
        return mapped(ids, args, a_values, b_values, start)

    return call


@functools.lru_cache(maxsize=64)
def compiled_chunk(kernel, block: int, n_blocks: int, mesh: Mesh, options: tuple = ()):
    """`_chunk_fn` jit-compiled (cached per kernel and sizes); `options`: XLA compiler options
    as ((name, value), ...)."""
    fn = _chunk_fn(kernel, block, n_blocks, mesh)
    return jax.jit(fn, compiler_options=dict(options)) if options else jax.jit(fn)


def to_host(values) -> np.ndarray:
    """A chunk's values as numpy; across several hosts, every process gets them all."""
    if values.is_fully_addressable:
        return np.asarray(values)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values, tiled=True))


def on_host(values) -> bool:
    """Whether `values` is read on the host: on CPU devices, or spread over several hosts."""
    return not values.is_fully_addressable or all(d.platform == "cpu" for d in values.devices())


def _sizes(grid: Grid, width: int, items: int) -> tuple[int, int]:
    """(block, n_blocks) of each compiled call: blocks of at most `items` // `width` points,
    within a call of ``chunk_points`` per device; one call of even blocks when it holds the
    whole grid and the block size was not the caller's."""
    total = grid.a_values.shape[0] * grid.b_values.shape[0]
    n_dev, chunk = len(grid.devices), grid.runtime.chunk_points
    chosen = grid.block is None
    block = min(chunk, max(1, items // width)) if chosen else grid.block
    block = min(_checks.positive_int("block", block), -(-total // n_dev))
    per_call = min(max(chunk, block) * n_dev, total)
    n_blocks = -(-per_call // (block * n_dev)) * n_dev
    if chosen and per_call == total:  # one call: even blocks, no block of padding points
        block = -(-total // n_blocks)
    return block, n_blocks


def run(kernel, args, grid: Grid, *, width: int = 1, items: int | None = None, check=None,
        options: tuple = ()):
    """Run `kernel` over the grid in chunks: the (nb, na) losses.

    Args:
      kernel: ``kernel(args, a (G,), b (G,)) -> (G,)`` (`functional_fit.surface.kernels`).
      args: the kernel's arrays (the data and the plane), the same for every block.
      grid: the grid and how to run it.
      width: numbers the kernel keeps per grid point of a block (its p+1 parameters, or its
        largest intermediate); the default block keeps ``items`` / width points.
      items: a block's workspace in numbers (the runtime's ``workspace_items`` by default).
      check: ``check(first_chunk_values) -> bool``; False stops the run (returns None) so that
        the caller can take another kernel.
      options: XLA compiler options for the compiled calls, ((name, value), ...).

    Returns:
      a numpy array (`grid.out` when given), a `jax.Array` left on the devices, or None when
      `check` refused the first chunk.
    """
    items = grid.runtime.workspace_items if items is None else items
    block, n_blocks = _sizes(grid, width, items)
    mesh = Mesh(np.array(grid.devices, dtype=object), ("grid",))
    fn = compiled_chunk(kernel, block, n_blocks, mesh, tuple(options))
    on_device = grid.on_device
    if on_device is None:
        on_device = grid.out is None and grid.devices[0].platform != "cpu"
    chunks = _chunks(fn, args, grid, n_blocks * block, check)
    return _kept(chunks, grid) if on_device else _copied(chunks, grid)


def _chunks(fn, args, grid: Grid, step: int, check):
    """(start, count, values) of each compiled call as it is dispatched; one None in place of
    the first when `check` refuses its values."""
    total = grid.a_values.shape[0] * grid.b_values.shape[0]
    for start in range(0, total, step):
        values = fn(args, grid.a_values, grid.b_values, jnp.int32(start))  # asynchronous
        if start == 0 and check is not None and not check(values):
            yield None
            return
        yield start, min(step, total - start), values


def _copied(chunks, grid: Grid):
    """The chunks copied into `grid.out` (or a new (nb, na) array), each while the next one
    computes; None when the first chunk was refused."""
    na, nb = grid.a_values.shape[0], grid.b_values.shape[0]
    out = grid.out

    def store(start, count, values):
        nonlocal out
        values = to_host(values).reshape(-1)[:count]  # (count,)
        if out is None:
            out = np.empty((nb, na), values.dtype)
        out.reshape(-1)[start : start + count] = values  # a view: out is C-contiguous (checked)
        if grid.progress is not None:
            grid.progress(count)

    pending = None
    for chunk in chunks:  # taking the next chunk dispatches it: then the previous is copied
        if chunk is None:
            return None
        if pending is not None:
            store(*pending)
        pending = chunk
    store(*pending)
    return out


def _kept(chunks, grid: Grid):
    """The chunks left on their devices, as one (nb, na) `jax.Array`; None when refused."""
    kept = []
    for chunk in chunks:
        if chunk is None:
            return None
        kept.append(chunk[2])
        if grid.progress is not None:
            grid.progress(chunk[1])
    na, nb = grid.a_values.shape[0], grid.b_values.shape[0]
    return _assembled(tuple(kept), na * nb, nb, na)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _assembled(chunks, total: int, nb: int, na: int):
    """The chunks' values, in order, as the (nb, na) surface: one compiled call (not an eager
    operation and a launch for each reshape, the concatenation and the slice)."""
    flat = jnp.concatenate([c.reshape(-1) for c in chunks])  # (chunks * step,)
    return flat[:total].reshape(nb, na)


__all__ = ["Grid", "compiled_chunk", "on_host", "run", "to_host"]
