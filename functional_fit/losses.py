"""Losses: pure functions ``loss(y_hat, y) -> scalar``, the mean over the data points.

Both refuse y_hat and y of different shapes rather than broadcast them: the (n, 1) vs (n,)
trap turns a mean over n residuals into a mean over n^2 of them, silently.

The |r| subgradient at r = 0: `l1` uses sign(0) = 0, as torch's ``abs`` backward does, not
``jax.grad(jnp.abs)(0.) == 1``. With data that sits exactly on the fitted line (common with
small integer data) this is the difference between agreeing with torch and not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks


@jax.custom_jvp
def abs0(r):
    """|r| whose derivative at 0 is 0 (torch's convention), elementwise; any shape."""
    return jnp.abs(r)


@abs0.defjvp
def _abs0_jvp(primals, tangents):
    (r,), (t,) = primals, tangents
    return jnp.abs(r), jnp.sign(r) * t  # sign(0) == 0


def _mean_of(term, y_hat, y):
    """mean(term(y_hat - y)) over the points; y_hat and y of different shapes are refused."""
    y_hat, y = jnp.asarray(y_hat), jnp.asarray(y)  # lists of numbers are arrays
    _checks.same_shape(y_hat.shape, y.shape)
    return jnp.mean(term(y_hat - y))


def mse(y_hat, y):
    """Mean squared error, mean((y_hat - y)^2) (cell 11).

    Args:
      y_hat: (n,) predictions.
      y: (n,) targets, the same shape as y_hat.

    Returns:
      () the loss.
    """
    return _mean_of(lambda r: r**2, y_hat, y)


def l1(y_hat, y):
    """Mean absolute error, mean(|y_hat - y|) (cell 14); gradient 0 where a residual is 0.

    Args:
      y_hat: (n,) predictions.
      y: (n,) targets, the same shape as y_hat.

    Returns:
      () the loss.
    """
    return _mean_of(abs0, y_hat, y)


# --------------------------------------------------------------------------- classification


@jax.custom_jvp
def _bce_terms(logits, y):
    """(1 - y) z - log sigmoid(z), elementwise: torch's formula, stable at |z| of 1e3."""
    return (1 - y) * logits - jax.nn.log_sigmoid(logits)


@_bce_terms.defjvp
def _bce_terms_jvp(primals, tangents):
    (z, y), (tz, ty) = primals, tangents
    # torch's backward: sigmoid(z) - y for the logits, -z for the targets
    dz = jax.nn.sigmoid(z) - y
    dy = -z
    return _bce_terms(z, y), dz * tz + dy * ty


def bce_with_logits(logits, y):
    """Binary cross-entropy on logits, ``F.binary_cross_entropy_with_logits`` (mean reduction).

    mean((1 - y) z - log sigmoid(z)) with torch's stable form, finite at logits of +-1e3, and
    torch's gradient sigmoid(z) - y (per point, before the mean) rather than autodiff's
    (1 - y) - sigmoid(-z), which rounds differently.

    Args:
      logits: (n,) or (n, k) logits z.
      y: targets in [0, 1], the same shape as `logits` (no broadcasting).

    Returns:
      () the loss.

    Examples:
      >>> import jax.numpy as jnp
      >>> round(float(bce_with_logits(jnp.array([1e3, -1e3]), jnp.array([1.0, 0.0]))), 6)
      0.0
    """
    _checks.same_shape(jnp.shape(logits), jnp.shape(y))
    return jnp.mean(_bce_terms(logits, y.astype(logits.dtype)))


def _check_labels(logits, labels):
    if jnp.ndim(logits) != 2:
        raise _checks.InputError(f"logits must be (n, classes), got shape {jnp.shape(logits)}")
    if jnp.shape(labels) != jnp.shape(logits)[:1]:
        raise _checks.InputError(f"labels must have shape ({jnp.shape(logits)[0]},) to match "
                                 f"logits {jnp.shape(logits)}, got {jnp.shape(labels)}")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise _checks.InputError(f"labels must be integer class indices, got dtype "
                                 f"{jnp.result_type(labels)}")
    if not isinstance(labels, jax.core.Tracer):  # concrete: check the range now, as torch does
        lab = np.asarray(labels)
        k = jnp.shape(logits)[1]
        if lab.size and (lab.min() < 0 or lab.max() >= k):
            bad = int(lab[(lab < 0) | (lab >= k)][0])
            raise _checks.InputError(f"labels must lie in [0, {k}) for {k} classes, got {bad}")


@jax.custom_vjp
def _cross_entropy(logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)  # (n, k)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def _cross_entropy_fwd(logits, labels):
    logp = jax.nn.log_softmax(logits, axis=-1)  # (n, k)
    value = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
    return value, (logp, labels)


def _cross_entropy_bwd(res, ct):
    logp, labels = res
    n = logp.shape[0]
    g = -jax.nn.one_hot(labels, logp.shape[-1], dtype=logp.dtype) * (ct / n)  # nll_loss's
    # torch's log_softmax backward: g - exp(output) * sum(g), from the output, not the input
    return g - jnp.exp(logp) * jnp.sum(g, axis=-1, keepdims=True), None


_cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def cross_entropy(logits, labels):
    """Cross-entropy of logits against class labels, ``F.cross_entropy`` (mean reduction).

    -mean(log_softmax(z)[i, labels[i]]), stable at logits of +-1e3; its gradient is computed
    as torch computes it (nll_loss's, then log_softmax's backward from its output).

    Args:
      logits: (n, k) logits.
      labels: (n,) integer classes in [0, k); out-of-range labels are refused when concrete.

    Returns:
      () the loss.

    Examples:
      >>> import jax.numpy as jnp
      >>> round(float(cross_entropy(jnp.array([[1e3, -1e3], [0.0, 0.0]]), jnp.array([0, 1]))), 6)
      0.346574
    """
    _check_labels(logits, labels)
    return _cross_entropy(logits, labels)
