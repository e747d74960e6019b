"""torch.nn.functional's losses: the same names, arguments, defaults and reductions.

`reduction` is "mean" (default), "sum" or "none" throughout. The lecture's losses
(`functional_fit.losses`) are the special cases: `losses.mse` is `mse_loss` and `losses.l1`
is `l1_loss` (both with reduction "mean", which `losses` keeps as its own float64 code;
`l1_loss` uses the same `losses.abs0`, gradient 0 at a zero residual as torch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from functional_fit import checks as _checks
from functional_fit.losses import abs0

REDUCTIONS = ("mean", "sum", "none")


def _reduce(terms, reduction):
    """terms (any shape) reduced: mean, sum, or as they are ("none")."""
    _checks.choice("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return jnp.mean(terms)
    return jnp.sum(terms) if reduction == "sum" else terms


def _pair(input, target):
    """input and target as arrays of the same shape (no silent broadcasting)."""
    input, target = jnp.asarray(input), jnp.asarray(target)
    _checks.same_shape(input.shape, target.shape)
    return input, target


def mse_loss(input, target, reduction="mean"):
    """torch's F.mse_loss: (input - target)^2, reduced; input and target of one shape."""
    input, target = _pair(input, target)
    return _reduce((input - target) ** 2, reduction)


def l1_loss(input, target, reduction="mean"):
    """torch's F.l1_loss: |input - target| (gradient 0 at 0, as torch), reduced."""
    input, target = _pair(input, target)
    return _reduce(abs0(input - target), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """torch's F.smooth_l1_loss: 0.5 r^2 / beta where |r| < beta, |r| - 0.5 beta else."""
    input, target = _pair(input, target)
    beta = _checks.nonnegative_float("beta", beta)
    r = abs0(input - target)
    if beta == 0.0:  # torch: plain l1
        return _reduce(r, reduction)
    return _reduce(jnp.where(r < beta, 0.5 * r * r / beta, r - 0.5 * beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """torch's F.huber_loss: 0.5 r^2 where |r| < delta, delta (|r| - 0.5 delta) else."""
    input, target = _pair(input, target)
    delta = _checks.positive_float("delta", delta)
    r = abs0(input - target)
    return _reduce(jnp.where(r < delta, 0.5 * r * r, delta * (r - 0.5 * delta)), reduction)


def _class_axis_last(x):
    """(N, C, d1, ...) -> (N, d1, ..., C); (N, C) and (C,) unchanged."""
    return jnp.moveaxis(x, 1, -1) if x.ndim > 2 else x


def _check_nll(logp, target):
    """target's shape is logp's without the class axis, integer typed."""
    want = logp.shape[:1] + logp.shape[2:] if logp.ndim > 1 else ()
    if target.shape != want or not jnp.issubdtype(target.dtype, jnp.integer):
        raise _checks.InputError(
            f"target must be integer class indices of shape {want} for input {logp.shape}; "
            f"got {target.dtype} {target.shape}")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):  # torch's F.nll_loss
    """torch's F.nll_loss: -w[t] input[t], reduced; weighted mean divides by sum of w[t].

    Args:
      input: (N, C) or (N, C, d1, ...) log-probabilities, or (C,).
      target: (N,) or (N, d1, ...) class indices; ignore_index contributes 0.
      weight: (C,) class weights or None.
    """
    input, target = jnp.asarray(input), jnp.asarray(target)
    _check_nll(input, target)
    logp = _class_axis_last(input)  # (N, d1, ..., C)
    keep = target != ignore_index
    t = jnp.where(keep, target, 0)
    w = jnp.ones(logp.shape[-1], logp.dtype) if weight is None else jnp.asarray(weight, logp.dtype)
    wt = jnp.where(keep, w[t], 0.0)  # (N, d1, ...)
    picked = jnp.take_along_axis(logp, t[..., None], axis=-1)[..., 0]  # (N, d1, ...)
    terms = -wt * picked
    if _checks.choice("reduction", reduction, REDUCTIONS) == "mean":
        return jnp.sum(terms) / jnp.sum(wt)
    return _reduce(terms, reduction)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",  # torch's F.cross_entropy
                  label_smoothing=0.0):
    """torch's F.cross_entropy: class-index or class-probability targets, label smoothing.

    Args:
      input: (N, C) or (N, C, d1, ...) logits, or (C,).
      target: (N, d1, ...) class indices, or input's shape of class probabilities.
      weight: (C,) class weights or None.
      label_smoothing: eps in [0, 1]: the target mixes (1 - eps) of itself and eps / C.
    """
    input, target = jnp.asarray(input), jnp.asarray(target)
    eps = _checks.nonnegative_float("label_smoothing", label_smoothing)
    logp = jax.nn.log_softmax(input, axis=1 if input.ndim > 1 else 0)
    n_classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    w = None if weight is None else jnp.asarray(weight, input.dtype)
    if target.shape == input.shape and jnp.issubdtype(target.dtype, jnp.floating):
        return _cross_entropy_probs(logp, target, w, reduction, eps, n_classes)
    nll = nll_loss(logp, target, w, ignore_index, reduction)
    if eps == 0.0:
        return nll
    lp = _class_axis_last(logp)  # (N, d1, ..., C)
    keep = target != ignore_index
    wc = jnp.ones(n_classes, lp.dtype) if w is None else w
    smooth = jnp.where(keep, -jnp.sum(lp * jnp.broadcast_to(wc, lp.shape), axis=-1), 0.0)  # (N, d1, ...)
    if reduction == "mean":
        t = jnp.where(keep, target, 0)
        smooth = jnp.sum(smooth) / jnp.sum(jnp.where(keep, wc[t], 0.0))
    else:
        smooth = _reduce(smooth, reduction)
    return (1 - eps) * nll + eps / n_classes * smooth


def _cross_entropy_probs(logp, target, w, reduction, eps, n_classes):
    """Probability targets: -sum_c w_c p_c logp_c per point; mean divides by the point count."""
    p = target.astype(logp.dtype)
    if eps > 0.0:
        p = p * (1 - eps) + eps / n_classes
    axis = 1 if logp.ndim > 1 else 0
    wb = jnp.ones(n_classes, logp.dtype) if w is None else w
    wb = jnp.broadcast_to(wb.reshape((-1,) + (1,) * (logp.ndim - axis - 1)), logp.shape)  # logp's
    terms = -jnp.sum(logp * p * wb, axis=axis)  # (N, d1, ...)
    return _reduce(terms, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",  # torch's F.bce_with_logits
                                     pos_weight=None):
    """torch's F.binary_cross_entropy_with_logits, its stable form.

    term = (1 - y) z + (1 + (pw - 1) y) * (log(1 + exp(-|z|)) + max(-z, 0)), times weight.
    Args:
      input, target: logits and targets of one shape, (N, *).
      weight: broadcastable to input; pos_weight: broadcastable to the class axis (last).
    """
    z, y = _pair(input, target)
    y = y.astype(z.dtype)
    sp = jnp.log1p(jnp.exp(-jnp.abs(z))) + jnp.maximum(-z, 0.0)  # -log sigmoid(z)
    if pos_weight is None:
        terms = (1 - y) * z + sp
    else:
        pw = jnp.broadcast_to(jnp.asarray(pos_weight, z.dtype), z.shape)  # z's shape
        lw = 1 + (pw - 1) * y
        terms = (1 - y) * z + lw * sp
    if weight is not None:
        terms = terms * jnp.broadcast_to(jnp.asarray(weight, z.dtype), z.shape)  # z's shape
    return _reduce(terms, reduction)
