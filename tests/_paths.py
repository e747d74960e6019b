"""Helpers of the optimizer tests: batches, paths as matrices, a scheduler stepped per epoch.

The two training loops (`jax_train`, `torch_train`) and the problems are
`comparison.problems`'s, which the atlas (``scripts/atlas.py``) runs too. Paths are dicts
name -> (steps+1, *shape) arrays, or one (steps+1, p) array; `flat` makes either a
(steps+1, P) matrix for `functional_fit.tolerances.rel_err`.
"""

from __future__ import annotations

import numpy as np

from comparison.problems import jax_train, torch_train  # noqa: F401  (the tests' loops)


def step_batches(n: int, *, steps=None, order=None, batch_size=None) -> list[np.ndarray]:
    """The indices of every step's batch."""
    if order is None:
        return [np.arange(n)] * steps
    return [row[i : i + batch_size] for row in np.asarray(order) for i in range(0, n, batch_size)]


class EveryKSteps:
    """A torch scheduler stepped once every k optimizer steps (once per epoch of k batches)."""

    def __init__(self, scheduler, k: int):
        self.scheduler, self.k, self.calls = scheduler, k, 0

    def step(self):
        self.calls += 1
        if self.calls % self.k == 0:
            self.scheduler.step()


def flat(path) -> np.ndarray:
    """A path (array or dict of arrays with a leading steps+1 axis) as (steps+1, P) float64."""
    if isinstance(path, dict):
        return np.concatenate([flat(path[k]) for k in sorted(path)], axis=1)
    path = np.asarray(path, dtype=np.float64)
    return path.reshape(path.shape[0], -1)


def growth(jpath, tpath) -> np.ndarray:
    """max |Δ| at every step over max |torch path|: (steps+1,), its max is rel_err."""
    a, b = flat(jpath), flat(tpath)
    return np.max(np.abs(a - b), axis=1) / np.max(np.abs(b))
