"""Data for the torch side: tensors, a ``TensorDataset``, and the shared batch order.

The lecture shuffles with ``DataLoader(shuffle=True)``, whose order comes from torch's global
generator and cannot be reproduced in JAX. `OrderSampler` instead hands the ``DataLoader`` the
order made once by `functional_fit.data.batch_order`, one row per pass over the loader, so
both frameworks see the same batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler, TensorDataset

from functional_fit import checks as _checks
from functional_fit.data import check_order

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(name: str) -> torch.dtype:
    """``"float32"``/``"float64"`` -> the torch dtype."""
    return TORCH_DTYPES[_checks.choice("dtype", name, tuple(TORCH_DTYPES))]


def tensors(x, y, dtype: str = "float64") -> tuple[torch.Tensor, torch.Tensor]:
    """Checked data as torch tensors ``tx, ty`` of shape (n,) (the lecture's cell 31)."""
    x, y = _checks.data(x, y)
    dt = torch_dtype(dtype)
    return torch.as_tensor(x, dtype=dt), torch.as_tensor(y, dtype=dt)


def dataset(x, y, dtype: str = "float64") -> TensorDataset:
    """``TensorDataset(tx, ty)`` of checked data (cell 57)."""
    return TensorDataset(*tensors(x, y, dtype))


class OrderSampler(Sampler[int]):
    """A sampler that yields row e of `order` on the e-th pass over the ``DataLoader``.

    Args:
      order: (epochs, n) int array, one permutation of range(n) per epoch.
    """

    def __init__(self, order):
        order = np.asarray(order)
        self.order = check_order(order, order.shape[1] if order.ndim == 2 else -1)
        self.epoch = 0

    def __len__(self) -> int:
        return self.order.shape[1]

    def __iter__(self):
        if self.epoch >= self.order.shape[0]:
            raise RuntimeError(
                f"OrderSampler: all {self.order.shape[0]} epochs of the batch order are used up"
            )
        row = self.order[self.epoch]
        self.epoch += 1
        return iter(row.tolist())
