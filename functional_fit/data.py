"""Data: the lecture's synthetic set, CSV input, and the batch order shared by both frameworks.

Everything here is numpy: the data and the batch order are made once, outside either
framework, so that JAX and torch consume exactly the same numbers in the same order.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError

#: The lecture's truth: y = 1 + 3x - 4x^2 + noise (cell 3).
W_TRUE = (1.0, 3.0, -4.0)


def lecture_data(n: int = 100, seed: int = 42, noise: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's synthetic data set, exactly as cell 3 makes it.

    Legacy ``np.random.seed(seed)``; x sorted uniform in [-1, 1); y = 1 + 3x - 4x^2 plus
    Gaussian noise of scale `noise`; then the outlier x[0] = -1.5, y[0] = 10.

    Args:
      n: number of points, > 0.
      seed: seed of numpy's legacy global generator (restored afterwards).
      noise: standard deviation of the noise, finite and >= 0, small enough that y is
        finite (InputError naming noise otherwise).

    Returns:
      (x, y), float64 arrays of shape (n,).

    Examples:
      >>> x, y = lecture_data()
      >>> x.shape, float(x[0]), float(y[0])
      ((100,), -1.5, 10.0)
    """
    n = _checks.positive_int("n", n)
    seed = _checks.nonnegative_int("seed", seed)
    noise = _checks.nonnegative_float("noise", noise)
    if seed >= 2**32:
        raise InputError(f"seed must be below 2**32 for numpy's legacy generator, got {seed}")
    saved = np.random.get_state()  # the recipe uses the global generator; leave it as found
    try:
        np.random.seed(seed)
        x = np.sort(np.random.rand(n) * 2 - 1.0)
        with np.errstate(over="ignore"):  # an overflow is refused below, naming noise
            y = W_TRUE[0] + W_TRUE[1] * x + W_TRUE[2] * (x**2) + noise * np.random.randn(n)
    finally:
        np.random.set_state(saved)
    if not np.all(np.isfinite(y)):
        raise InputError(f"noise={noise:g} overflows a float64: the data's y values become "
                         f"infinite; noise must be well below {np.finfo(np.float64).max / 10:.3g}")
    x[0] = -1.5
    y[0] = 10
    return x, y


def read_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Read columns ``x`` and ``y`` from a CSV file with a header row.

    Other columns are ignored. Returns float64 arrays of shape (n,).

    Raises:
      InputError: the file is missing or unreadable, has no header, lacks ``x`` or ``y``,
        holds a value that is not a number, or holds no rows, NaN or inf.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data: no such file {str(path)!r}")
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if not header:
                raise InputError(f"data: {str(path)!r} is empty; expected a header row with x,y")
            missing = [c for c in ("x", "y") if c not in header]
            if missing:
                raise InputError(
                    f"data: {str(path)!r} lacks column(s) {', '.join(missing)} "
                    f"(header is {', '.join(header)})"
                )
            reader.fieldnames = header
            xs, ys = [], []
            for line, row in enumerate(reader, start=2):
                try:
                    xs.append(float(row["x"]))
                    ys.append(float(row["y"]))
                except (TypeError, ValueError):
                    raise InputError(
                        f"data: {str(path)!r} line {line}: x and y must be numbers, "
                        f"got x={row.get('x')!r}, y={row.get('y')!r}"
                    ) from None
    except UnicodeDecodeError:
        raise InputError(f"data: {str(path)!r} is not a text CSV file") from None
    except OSError as exc:
        raise InputError(f"data: cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        return _checks.data(np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64))
    except InputError as exc:
        raise InputError(f"data: {str(path)!r}: {exc}") from None


def batch_order(n: int, epochs: int, seed: int = 0) -> np.ndarray:
    """A shuffled order of the n points for every epoch, made once from `seed`.

    Both frameworks consume this order: `functional_fit.fit` slices it into batches, and
    `parity.data.OrderSampler` hands it to a torch ``DataLoader``, so their trajectories can
    be compared step by step.

    Returns:
      int64 array of shape (epochs, n); each row a permutation of range(n).
    """
    n = _checks.positive_int("n", n)
    epochs = _checks.positive_int("epochs", epochs)
    seed = _checks.nonnegative_int("seed", seed)
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)  # (E, n)


def n_batches(n: int, batch_size: int) -> int:
    """Batches per epoch with ``drop_last=False``: the last one is short when B does not divide n."""
    return math.ceil(n / batch_size)


def check_order(order, n: int) -> np.ndarray:
    """Check a batch order against n data points: shape (epochs, n), each row a permutation."""
    order = np.asarray(order)
    if order.ndim != 2 or order.shape[1] != n or order.shape[0] == 0:
        raise InputError(f"order must have shape (epochs, {n}), got {order.shape}")
    if not np.issubdtype(order.dtype, np.integer):
        raise InputError(f"order must hold integer indices, got dtype {order.dtype}")
    if not np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(n), order.shape)):
        raise InputError(f"order: every row must be a permutation of range({n})")
    return order


def check_length(n: int, steps, order, batch_size):
    """A fit's length, checked: `steps` full-batch steps, or minibatches over `order`.

    Exactly one of `steps` and `order` (with `batch_size`) must be given; `fit.train` and
    `parity.fit.train` both take them this way.

    Returns:
      (steps, None, None), or (None, order (E, n) checked, batch_size).
    """
    if (steps is None) == (order is None):
        raise InputError("steps and order: give steps=T for T full-batch steps, or order (from "
                         "functional_fit.data.batch_order) with batch_size for minibatches; "
                         f"got {'both' if steps is not None else 'neither'}")
    if steps is not None:
        if batch_size is not None:
            raise InputError("batch_size: full-batch steps use the whole data; give batch_size "
                             "only with order")
        return _checks.positive_int("steps", steps), None, None
    return None, check_order(order, n), _checks.positive_int("batch_size", batch_size)
