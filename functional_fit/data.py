"""Data: the lecture's synthetic set, the batch order shared by both frameworks, a fit's length.

Everything here is numpy: the data and the batch order are made once, outside either
framework, so that JAX and torch consume exactly the same numbers in the same order.

A fit's length and batching is decided here, once, for every caller (`fit`, `sweep`,
`parity.fit`, `comparison.compare`, the command line): `fit_length` takes full-batch steps or
minibatch epochs and returns a `Length`; `check_length` is the same for callers that hand over
a batch order. CSV input is `functional_fit.tables` (`read_table`, `read_csv` and `Table` are
re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.streams import Stream, stream_of  # noqa: F401  (data read in batches)
from functional_fit.tables import (DELIMITERS, EXCERPT, MISSING, Table,  # noqa: F401  (old home)
                                   read_csv, read_table)

#: The lecture's truth: y = 1 + 3x - 4x^2 + noise (cell 3).
W_TRUE = (1.0, 3.0, -4.0)


class Recipe(NamedTuple):
    """The settings of the lecture's synthetic data (cell 3)."""

    n: int  # points
    seed: int  # numpy's legacy global seed
    noise: float  # standard deviation of the noise


#: The lecture's own data: its printed numbers hold for these settings only.
LECTURE = Recipe(n=100, seed=42, noise=0.7)


def lecture_data(n: int = LECTURE.n, seed: int = LECTURE.seed,
                 noise: float = LECTURE.noise) -> tuple[np.ndarray, np.ndarray]:
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


# --------------------------------------------------------------------------- a fit's length

#: Where a caller gives no length: the lecture's gradient descent takes 100 steps, its SGD and
#: Adam 100 epochs of batches of 10 (cells 48, 59, 63).
DEFAULT_STEPS = 100
DEFAULT_EPOCHS = 100
DEFAULT_BATCH_SIZE = 10
#: Steps a fit may take: its step count is an int32.
MAX_STEPS = 2**31
#: How an optimizer batches: "full" counts steps over the whole data, "minibatch" counts
#: epochs of batches, "any" takes whichever its caller gives (torch.optim's names).
BATCHINGS = ("full", "minibatch", "any")


def batching_for(batching: str, *, steps=None, epochs=None) -> str:
    """``"full"`` or ``"minibatch"``: an optimizer's batching (`BATCHINGS`), with ``"any"``
    decided by what its caller gives: `steps` for full batch, else `epochs` (or a batch order)
    for minibatches, else full batch.

    Examples:
      >>> batching_for("any", epochs=5), batching_for("any"), batching_for("minibatch")
      ('minibatch', 'full', 'minibatch')
    """
    _checks.choice("batching", batching, BATCHINGS)
    if batching != "any":
        return batching
    return "minibatch" if steps is None and epochs is not None else "full"


class Length(NamedTuple):
    """How long a fit runs: `steps` full-batch steps, or `epochs` of minibatches of `batch_size`."""

    steps: int | None  # full-batch steps; None for minibatches
    epochs: int | None  # passes over the data in minibatches; None for full batch
    batch_size: int | None  # B, with epochs; the last batch of an epoch is short if B ∤ n

    @property
    def full(self) -> bool:
        """Whether every step takes the whole data."""
        return self.steps is not None

    def per_epoch(self, n: int) -> int:
        """Steps per epoch: ceil(n / B), or 1 for full-batch steps."""
        return 1 if self.full else n_batches(n, self.batch_size)

    def total(self, n: int) -> int:
        """Steps of the whole fit."""
        return self.steps if self.full else self.epochs * n_batches(n, self.batch_size)


def fit_length(n: int | None, batching: str = "any", *, steps=None, epochs=None,
               batch_size=None, defaults: bool = False, names: Mapping[str, str] | None = None,
               what: str | None = None) -> Length:
    """A fit's length, checked: full-batch `steps`, or `epochs` of minibatches of `batch_size`.

    Args:
      n: data points, for the limit of 2**31 steps; None where the data is not read yet (the
        minibatch steps are then checked when it is).
      batching: ``"full"``, ``"minibatch"`` or ``"any"`` (`BATCHINGS`): "any" takes steps or
        epochs, whichever is given (exactly one, unless `defaults`).
      steps, epochs, batch_size: as the caller was given them; a misplaced one is refused.
      defaults: fill what is not given from `DEFAULT_STEPS`, `DEFAULT_EPOCHS` and
        `DEFAULT_BATCH_SIZE` ("any" with neither: full batch).
      names: the caller's names for ``"steps"``, ``"epochs"`` and ``"batch_size"`` in its
        messages (``{"steps": "--steps"}`` on the command line, ``{"epochs": "order"}`` where
        an order is given).
      what: what fixed the batching, for the messages (``"--optimizer gd"``).

    Returns:
      `Length`.

    Raises:
      InputError: naming the argument that is missing, misplaced, not a positive integer, or
        makes 2**31 steps or more.

    Examples:
      >>> fit_length(100, "minibatch", epochs=3, batch_size=30)
      Length(steps=None, epochs=3, batch_size=30)
      >>> fit_length(100, "minibatch", epochs=3, batch_size=30).total(100)
      12
    """
    name = {"steps": "steps", "epochs": "epochs", "batch_size": "batch_size", **(names or {})}
    S, E, B = name["steps"], name["epochs"], name["batch_size"]
    _checks.choice("batching", batching, BATCHINGS)
    chosen = batching != "any"  # by the optimizer, not by what the caller gave
    if not chosen:
        if steps is not None and epochs is not None:
            raise InputError(f"{S} and {E}: give {S} for full-batch steps or {E} for "
                             "minibatches, not both")
        if steps is None and epochs is None and not defaults:
            raise InputError(f"{S} and {E}: give {S} for full-batch steps, or {E} with {B} "
                             "for minibatches; got neither")
        batching = batching_for(batching, steps=steps, epochs=epochs)
    if batching == "full":
        return _full_length(steps, epochs, batch_size, defaults, chosen, (S, E, B),
                            what or "a full-batch fit")
    if steps is not None:
        raise InputError(f"{S} does not apply to {what or 'a minibatch fit'}, which counts passes "
                         f"over the data (give {E})")
    epochs = _checks.positive_int(E, DEFAULT_EPOCHS if epochs is None and defaults else epochs)
    batch_size = _checks.positive_int(
        B, DEFAULT_BATCH_SIZE if batch_size is None and defaults else batch_size)
    if n is not None and epochs * n_batches(n, batch_size) >= MAX_STEPS:
        raise InputError(f"{E}: {epochs} epochs of {n_batches(n, batch_size)} batches is 2**31 "
                         "steps or more (the step count is int32)")
    return Length(None, epochs, batch_size)


def _full_length(steps, epochs, batch_size, defaults, chosen, names, what) -> Length:
    """`fit_length` of a full-batch fit."""
    S, E, B = names
    for given, option in ((epochs, E), (batch_size, B)):
        if given is not None and (chosen or option == E):
            raise InputError(f"{option} does not apply to {what}, which uses the whole data "
                             f"every step (give {S})")
    if batch_size is not None:  # "any" without epochs: a batch size alone is a slip
        raise InputError(f"{B} applies to minibatches: give {E} with it, or leave {B} out for "
                         "full-batch steps")
    steps = _checks.positive_int(S, DEFAULT_STEPS if steps is None and defaults else steps)
    if steps >= MAX_STEPS:
        raise InputError(f"{S} must be below 2**31 (the step count is int32), got {steps}")
    return Length(steps, None, None)


def check_length(n: int, steps, order, batch_size):
    """`fit_length` for a caller that gives full-batch `steps`, or a batch `order` (epochs, n)
    with `batch_size` (`functional_fit.fit.train`, `parity.fit.train`).

    Returns:
      (steps, None, None), or (None, order (E, n) checked, batch_size).
    """
    if order is not None:
        order = check_order(order, n)
    length = fit_length(n, steps=steps, epochs=None if order is None else order.shape[0],
                        batch_size=batch_size, names={"epochs": "order"})
    return length.steps, order, length.batch_size
