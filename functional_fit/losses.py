"""Losses: pure functions ``loss(y_hat, y) -> scalar``, the mean over the data points.

Both refuse y_hat and y of different shapes rather than broadcast them: the (n, 1) vs (n,)
trap turns a mean over n residuals into a mean over n^2 of them, silently.

An optional ``mask`` of shape (n,) (1 for a real point, 0 for padding) gives the mean over the
real points only; `functional_fit.fit` uses it for the short last batch of an epoch.

The |r| subgradient at r = 0: `l1` uses sign(0) = 0, as torch's ``abs`` backward does, not
``jax.grad(jnp.abs)(0.) == 1``. With data that sits exactly on the fitted line (common with
small integer data) this is the difference between agreeing with torch and not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from functional_fit import checks as _checks


@jax.custom_jvp
def abs0(r):
    """|r| whose derivative at 0 is 0 (torch's convention), elementwise; any shape."""
    return jnp.abs(r)


@abs0.defjvp
def _abs0_jvp(primals, tangents):
    (r,), (t,) = primals, tangents
    return jnp.abs(r), jnp.sign(r) * t  # sign(0) == 0


def _mean(values, mask):
    if mask is None:
        return jnp.mean(values)
    _checks.same_shape(mask.shape, values.shape)
    # where, not values * mask: a padded point whose term overflowed must add 0, not inf * 0.
    return jnp.sum(jnp.where(mask > 0, values, 0)) / jnp.sum(mask)


def mse(y_hat, y, mask=None):
    """Mean squared error, mean((y_hat - y)^2) (cell 11).

    Args:
      y_hat: (n,) predictions.
      y: (n,) targets, the same shape as y_hat.
      mask: optional (n,) weights of 0 or 1; the mean is over the points with weight 1.

    Returns:
      () the loss.
    """
    y_hat, y = jnp.asarray(y_hat), jnp.asarray(y)  # lists of numbers are arrays
    _checks.same_shape(y_hat.shape, y.shape)
    return _mean((y_hat - y) ** 2, mask)


def l1(y_hat, y, mask=None):
    """Mean absolute error, mean(|y_hat - y|) (cell 14); gradient 0 where a residual is 0.

    Args:
      y_hat: (n,) predictions.
      y: (n,) targets, the same shape as y_hat.
      mask: optional (n,) weights of 0 or 1; the mean is over the points with weight 1.

    Returns:
      () the loss.
    """
    y_hat, y = jnp.asarray(y_hat), jnp.asarray(y)  # lists of numbers are arrays
    _checks.same_shape(y_hat.shape, y.shape)
    return _mean(abs0(y_hat - y), mask)
