"""Datasets read in batches: `Stream`, for data that does not fit in memory.

A `Stream` hands out ``(x_batch, y_batch)`` pairs of numpy arrays, one batch at a time, from:

- arrays or ``np.memmap``s: ``Stream(x, y, batch_size=...)``; each batch is a slice, so a
  memory-mapped file is read one batch at a time and never held whole;
- a torch ``DataLoader`` (or any iterable that can be iterated again):
  ``Stream.from_loader(loader)``; tensors become numpy arrays;
- a function: ``Stream(make_iterator)``, where ``make_iterator()`` returns a fresh iterator of
  ``(x_batch, y_batch)`` pairs each time the data is read.

The loss over a stream is the mean over all its points: each batch's mean loss is weighted by
the batch's size, so a short last batch counts for what it holds (`batch_weights`).

Across several processes (`jax.distributed`), each process may read its own part:
``stream.shard(jax.process_index(), jax.process_count())``, or ``Stream(..., distributed=True)``
over data each process already holds alone. The functions that read a distributed stream add
the processes' partial sums with a JAX collective (`functional_fit.surface.loss_surface`,
`functional_fit.hessian`).

Everything here is numpy: a batch is moved to a device by whoever reads it.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable, Iterator

import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError


def _numpy(name: str, value) -> np.ndarray:
    """A batch's array as numpy (a torch tensor detached, a JAX array copied)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise InputError(f"{name} must have a first axis of points, (B, ...), got shape "
                         f"{arr.shape}")
    return arr


class Stream:
    """A dataset read in batches: ``for x_batch, y_batch in stream.batches(): ...``.

    Args:
      x: (n, ...) inputs (a numpy array, an ``np.memmap``, a JAX array or a torch tensor); or a
        function ``make_iterator()`` returning a fresh iterator of (x_batch (B, ...),
        y_batch (B, ...)) pairs.
      y: (n, ...) targets, with array `x`; None with a function.
      batch_size: points per batch, with arrays (the last batch may be shorter); default all.
      distributed: this process holds its own part of a dataset split across processes.

    Attributes:
      n: the number of points, or None when only reading the stream tells (a function).
      batch_size: points per batch, or None for a function.
      distributed: whether the processes' partial sums are added.

    Examples:
      >>> import numpy as np
      >>> s = Stream(np.arange(5.0), np.zeros(5), batch_size=2)
      >>> [xb.tolist() for xb, _ in s.batches()], s.n, s.batch_count
      ([[0.0, 1.0], [2.0, 3.0], [4.0]], 5, 3)
    """

    def __init__(self, x, y=None, *, batch_size: int | None = None, distributed: bool = False):
        self.distributed = _checks.flag("distributed", distributed)
        if callable(x) and not hasattr(x, "shape"):
            if y is not None or batch_size is not None:
                raise InputError("y, batch_size: a Stream of a function takes neither (its "
                                 "iterator yields (x_batch, y_batch) pairs of its own size)")
            self._make, self._arrays, self.n, self.batch_size = x, None, None, None
            return
        if y is None:
            raise InputError("y is missing: Stream(x, y, batch_size=...) over arrays, or "
                             "Stream(make_iterator) over a function")
        x, y = (v if isinstance(v, np.ndarray) else _numpy(name, v) for name, v in
                (("x", x), ("y", y)))
        for name, arr in (("x", x), ("y", y)):
            _numpy(name, arr[:1])  # dtype and shape, without reading the data
        if x.shape[0] != y.shape[0]:
            raise InputError(f"x and y must have the same number of points (their first "
                             f"axis), got {x.shape[0]} and {y.shape[0]}")
        n = x.shape[0]
        size = n if batch_size is None else _checks.positive_int("batch_size", batch_size)
        self._make, self._arrays, self.n, self.batch_size = None, (x, y), n, min(size, n)

    @classmethod
    def from_loader(cls, loader, *, distributed: bool = False) -> Stream:
        """A stream over an iterable read again each time, e.g. a torch ``DataLoader`` whose
        batches are ``(x, y)`` (tensors or arrays)."""
        if not hasattr(loader, "__iter__"):
            raise InputError(f"loader must be iterable (a DataLoader), got "
                             f"{type(loader).__name__}")
        stream = cls(lambda: iter(loader), distributed=distributed)
        try:
            stream._count = len(loader)
        except TypeError:  # an iterable dataset's loader has no length
            stream._count = None
        return stream

    @property
    def batch_count(self) -> int | None:
        """Batches in one pass, or None when unknown until read."""
        if self._arrays is not None:
            return math.ceil(self.n / self.batch_size)
        return getattr(self, "_count", None)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One pass over the data: (x_batch (B, ...), y_batch (B, ...)) numpy pairs, each
        checked (same points in both, real numbers, finite, shapes as the first batch's)."""
        first = None
        for i, batch in enumerate(self._raw()):
            xb, yb = self._pair(i, batch)
            if first is None:
                first = (xb.shape[1:], yb.shape[1:], xb.dtype, yb.dtype)
            elif (xb.shape[1:], yb.shape[1:], xb.dtype, yb.dtype) != first:
                raise InputError(
                    f"stream: batch {i} has x {xb.shape} {xb.dtype} and y {yb.shape} "
                    f"{yb.dtype}, unlike batch 0's x (B, *{first[0]}) {first[2]} and y "
                    f"(B, *{first[1]}) {first[3]}")
            yield xb, yb
        if first is None and not self.distributed:  # a process's part may be empty
            raise InputError("stream: the data has no batch (the iterator was empty)")

    def _raw(self):
        if self._arrays is None:
            yield from self._make()
            return
        x, y = self._arrays
        for start in range(0, self.n, self.batch_size):
            yield x[start : start + self.batch_size], y[start : start + self.batch_size]
            _release(x, y)

    @staticmethod
    def _pair(i: int, batch) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise InputError(f"stream: batch {i} must be an (x_batch, y_batch) pair, got "
                             f"{type(batch).__name__}")
        xb, yb = _numpy(f"stream batch {i}: x", batch[0]), _numpy(f"stream batch {i}: y",
                                                                   batch[1])
        if xb.shape[0] != yb.shape[0]:
            raise InputError(f"stream: batch {i} has {xb.shape[0]} inputs and {yb.shape[0]} "
                             f"targets")
        for name, arr in (("x", xb), ("y", yb)):
            if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
                raise InputError(f"stream: batch {i}'s {name} holds a non-finite value")
        return xb, yb

    def shard(self, index: int, count: int) -> Stream:
        """This process's part of the stream, of `count` parts, marked `distributed`.

        Arrays are cut into `count` contiguous runs of whole batches (a memmap's process reads
        only its own rows); a function's batches are dealt out in turn (batch i to part
        i % count).
        """
        count = _checks.positive_int("count", count)
        index = _checks.nonnegative_int("index", index)
        if index >= count:
            raise InputError(f"index must be below count ({count}), got {index}")
        if self._arrays is None:
            make = self._make

            def mine():
                return (b for i, b in enumerate(make()) if i % count == index)

            return Stream(mine, distributed=True)
        batches = self.batch_count
        lo, hi = (min(self.n, (batches * k // count) * self.batch_size)
                  for k in (index, index + 1))
        x, y = self._arrays
        if lo == hi:  # more processes than batches: this one reads nothing
            return _Empty(x[:0], y[:0])
        return Stream(x[lo:hi], y[lo:hi], batch_size=self.batch_size, distributed=True)

    def __repr__(self) -> str:
        what = "a function" if self._arrays is None else f"{self.n} points"
        return (f"Stream({what}, batch_size={self.batch_size}"
                f"{', distributed' if self.distributed else ''})")


def _release(*arrays) -> None:
    """Unmap the pages of memory-mapped `arrays` read so far from this process (the file stays
    in the page cache), so that a pass over a memmap larger than memory does not count its
    whole file in the process's resident size."""
    for arr in arrays:
        mm = getattr(arr, "_mmap", None) if isinstance(arr, np.memmap) else None
        if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED)


class _Empty(Stream):
    """A process's part with no point: it reads nothing and adds zeros."""

    def __init__(self, x, y):
        self.distributed, self._make, self._arrays = True, None, (x, y)
        self.n, self.batch_size = 0, 1

    def batches(self):
        return iter(())


def stream_of(x, y, *, name: str = "x") -> Stream | None:
    """`x` when it is a `Stream` (then `y` must be None); None for plain arrays."""
    if not isinstance(x, Stream):
        return None
    if y is not None:
        raise InputError(f"y must be None when {name} is a Stream (the stream holds the targets)")
    return x


def batch_weights(sizes) -> np.ndarray:
    """Each batch's weight in the mean over all points: its size over the total, (batches,)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    return sizes / np.sum(sizes)


def process_sum(values) -> np.ndarray:
    """`values` added over the processes of `jax.distributed`, the same on every process.

    Each process passes its own partial sums (the same shape everywhere); they are gathered
    with a JAX collective (``multihost_utils.process_allgather``) and added in process order,
    so every process gets the same numbers. With one process: `values`.
    """
    import jax

    values = np.asarray(values)
    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return np.sum(np.asarray(multihost_utils.process_allgather(values)), axis=0)


__all__ = ["Stream", "batch_weights", "process_sum", "stream_of"]
