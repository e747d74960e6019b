"""The analytic least-squares fit (cells 6-7), and least squares for polynomial models.

Pure JAX functions of the data; the torch twins are in `parity.ols`.
"""

from __future__ import annotations

import jax.numpy as jnp

from functional_fit import checks as _checks
from functional_fit.precision import check_array_dtype


def standard_units(x):
    """(x - mean(x)) / std(x), population std as ``np.std``; (n,) -> (n,)."""
    return (x - jnp.mean(x)) / jnp.std(x)


def correlation(x, y):
    """Pearson correlation, mean(su(x) * su(y)); (n,), (n,) -> ()."""
    return jnp.mean(standard_units(x) * standard_units(y))


def slope(x, y):
    """Least-squares slope, r * std(y) / std(x); (n,), (n,) -> (). 0 for a constant y."""
    sy = jnp.std(y)
    return jnp.where(sy > 0, correlation(x, y) * sy / jnp.std(x), 0)  # r is 0/0 when sy is 0


def intercept(x, y):
    """Least-squares intercept, mean(y) - slope * mean(x); (n,), (n,) -> ()."""
    return jnp.mean(y) - slope(x, y) * jnp.mean(x)


def ols(x, y):
    """The lecture's analytic MSE fit ``w_mse = [intercept, slope]``; (n,), (n,) -> (2,).

    Examples:
      >>> import functional_fit as ff
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     print([round(float(v), 8) for v in ff.ols.ols(x, y)])
      [-0.26649881, 2.64187294]
    """
    x, y = _checks.data(x, y)
    check_array_dtype("x", x)
    _checks.least_squares_data(x, y)
    x, y = jnp.asarray(x), jnp.asarray(y)
    return jnp.stack([intercept(x, y), slope(x, y)])


def vandermonde(x, degree: int):
    """Columns x**0 .. x**degree; (n,) -> (n, degree+1)."""
    return jnp.stack([x**i for i in range(degree + 1)], axis=1)  # (n, p+1)


def least_squares(x, y, degree: int = 1):
    """The MSE minimizer of the polynomial model of `degree`: (n,), (n,) -> (degree+1,).

    Solved with ``jnp.linalg.lstsq`` on the Vandermonde matrix; for degree 1 it equals `ols`.
    """
    degree = _checks.nonnegative_int("degree", degree)
    x, y = _checks.data(x, y)
    check_array_dtype("x", x)
    if degree + 1 > x.shape[0]:
        raise _checks.InputError(
            f"degree {degree} needs at least {degree + 1} data points, got {x.shape[0]}"
        )
    if degree:
        _checks.least_squares_data(x, y, degree)
    x, y = jnp.asarray(x), jnp.asarray(y)
    w, *_ = jnp.linalg.lstsq(vandermonde(x, degree), y)
    return w
