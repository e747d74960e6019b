"""The lecture's losses in torch (cells 39 and 47), refusing silent broadcasting.

``F.l1_loss`` and ``F.mse_loss`` only warn when y_hat is (n, 1) and y is (n,), then broadcast
to (n, n); these raise instead, like `functional_fit.losses`. torch's ``abs`` backward gives
gradient 0 where a residual is exactly 0; `functional_fit.losses.l1` follows that convention.
"""

from __future__ import annotations

import torch.nn.functional as F

from functional_fit.checks import same_shape


def mse(y_hat, y):
    """mean((y_hat - y)^2); (n,), (n,) -> ()."""
    same_shape(y_hat.shape, y.shape)
    return F.mse_loss(y_hat, y)


def l1(y_hat, y):
    """mean(|y_hat - y|); (n,), (n,) -> ()."""
    same_shape(y_hat.shape, y.shape)
    return F.l1_loss(y_hat, y)
