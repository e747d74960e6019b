"""Surfaces over a `functional_fit.streams.Stream`: data read in batches, never whole.

The loss at a grid point is the mean over every point of the data set. Each batch's surface
is computed over the whole grid (in the runtime's chunks, split across the devices, as any
surface), weighted by the batch's size and added to a running sum, so each batch is read once
per surface: memory holds the sum, one batch and a chunk's workspace, whatever the data set's
size. The first batch decides the layout and checks it (`layouts.planned`); the others reuse
the same compiled kernel.

A distributed stream (`Stream.shard`, or ``distributed=True``) is one process's part of the
data: each process computes the whole grid on its own devices over its own batches, and the
processes' sums and counts are added with a JAX collective (`streams.process_sum`), so every
process returns the surface of the whole data set.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from functional_fit.checks import InputError
from functional_fit.streams import Stream, process_sum
from functional_fit.surface import layouts


class Target(NamedTuple):
    """Where a stream's surface goes."""

    shape: tuple  # (nb, na)
    dtype: object  # the dtype of a process that reads no batch (its grid's)
    out: np.ndarray | None  # an (nb, na) array to write into, or None


def surface(model, loss, stream: Stream, check, grid_of, layout: str, matrices: bool,
            target: Target):  # 8 arguments: loss_surface's model, data, checks and settings
    """The (nb, na) surface of the mean loss over `stream`.

    Args:
      model, loss: as `loss_surface` takes them (already resolved).
      stream: the data.
      check: ``check(x_batch, y_batch) -> surfaces.Inputs`` (the batch, the plane, the grid).
      grid_of: ``grid_of(inputs, out) -> grid.Grid``: where and how to run one batch.
      layout, matrices: as `layouts.compute` takes them.
      target: the surface's shape, and the array to write it into (or None).

    Returns:
      (nb, na) numpy losses, in the loss's dtype; `target.out` when given.
    """
    total, count, again, scratch = np.zeros(target.shape, np.float64), 0, None, None
    dtype = target.dtype
    for xb, yb in stream.batches():
        inputs = check(xb, yb)
        grid = grid_of(inputs, scratch)
        if again is None:
            values, again = layouts.planned(model, loss, inputs.args, grid, layout, matrices)
        else:
            values = again(inputs.args, grid)
        values = np.asarray(values)
        scratch, dtype = values, values.dtype
        total += values * float(xb.shape[0])  # the batch's mean, weighted by its size
        count += xb.shape[0]
    if stream.distributed:
        total, count = _added(total, count)
    return _written(total / count, dtype, target.out)


def _written(values, dtype, out):
    """`values` in `dtype`, written into `out` when given."""
    if out is None:
        return values.astype(dtype)
    out[...] = values
    return out


def _added(total, count):
    """The processes' sums and counts added (a process that read no batch adds zeros)."""
    summed = process_sum(np.concatenate([total.reshape(-1), [float(count)]]))
    if summed[-1] == 0:
        raise InputError("stream: no process read any batch")
    return summed[:-1].reshape(total.shape), summed[-1]


def local_devices(devices, stream: Stream) -> tuple:
    """The devices of a surface over `stream`: this process's own when the stream is
    distributed (each process computes the whole grid over its part of the data)."""
    if not stream.distributed:
        return devices
    mine = {d for d in jax.local_devices()}
    if devices is None:
        return tuple(jax.local_devices())
    if any(d not in mine for d in devices):
        raise InputError("devices: a distributed stream's surface runs on this process's own "
                         "devices (jax.local_devices()); each process reads its own data")
    return devices


__all__ = ["Target", "local_devices", "surface"]
