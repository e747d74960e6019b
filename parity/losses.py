"""The lecture's losses in torch (cells 39 and 47), refusing silent broadcasting.

``F.l1_loss`` and ``F.mse_loss`` only warn when y_hat is (n, 1) and y is (n,), then broadcast
to (n, n); these raise instead, like `functional_fit.losses`. torch's ``abs`` backward gives
gradient 0 where a residual is exactly 0; `functional_fit.losses.l1` follows that convention.
"""

from __future__ import annotations

import torch.nn.functional as F

from functional_fit.checks import InputError, same_shape


def mse(y_hat, y):
    """mean((y_hat - y)^2); (n,), (n,) -> ()."""
    same_shape(y_hat.shape, y.shape)
    return F.mse_loss(y_hat, y)


def l1(y_hat, y):
    """mean(|y_hat - y|); (n,), (n,) -> ()."""
    same_shape(y_hat.shape, y.shape)
    return F.l1_loss(y_hat, y)


def bce_with_logits(logits, y):
    """``F.binary_cross_entropy_with_logits`` (mean); logits and y of one shape."""
    same_shape(logits.shape, y.shape)
    return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))


def cross_entropy(logits, labels):
    """``F.cross_entropy`` (mean); logits (n, k), labels (n,) integers in [0, k)."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise InputError(f"cross_entropy needs logits (n, classes) and labels (n,), got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    k = logits.shape[1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise InputError(f"labels must lie in [0, {k}) for {k} classes")
    return F.cross_entropy(logits, labels)
