"""The analytic least-squares fit in torch, mirroring `functional_fit.ols`."""

from __future__ import annotations

import torch

from functional_fit import checks as _checks


def standard_units(x):
    """(x - mean(x)) / std(x), population std; (n,) -> (n,)."""
    return (x - x.mean()) / x.std(correction=0)


def correlation(x, y):
    """mean(su(x) * su(y)); (n,), (n,) -> ()."""
    return torch.mean(standard_units(x) * standard_units(y))


def slope(x, y):
    """r * std(y) / std(x); (n,), (n,) -> (). 0 for a constant y."""
    sy = y.std(correction=0)
    return torch.where(sy > 0, correlation(x, y) * sy / x.std(correction=0), 0)  # r is 0/0 if sy is 0


def intercept(x, y):
    """mean(y) - slope * mean(x); (n,), (n,) -> ()."""
    return y.mean() - slope(x, y) * x.mean()


def ols(x, y):
    """``[intercept, slope]``; (n,), (n,) tensors -> (2,).

    Raises:
      InputError: as `functional_fit.ols.ols` (the same checks, `functional_fit.checks`).
    """
    _checks.data(x, y)
    _checks.least_squares_data(x, y)
    return torch.stack([intercept(x, y), slope(x, y)])


def vandermonde(x, degree: int):
    """Columns x**0 .. x**degree; (n,) -> (n, degree+1)."""
    return torch.stack([x**i for i in range(degree + 1)], dim=1)  # (n, p+1)


def least_squares(x, y, degree: int = 1):
    """The MSE minimizer of the degree-`degree` polynomial via ``torch.linalg.lstsq``; -> (p+1,)."""
    degree = _checks.nonnegative_int("degree", degree)
    _checks.data(x, y)
    if degree + 1 > x.shape[0]:
        raise _checks.InputError(
            f"degree {degree} needs at least {degree + 1} data points, got {x.shape[0]}")
    if degree:
        _checks.least_squares_data(x, y, degree)
    return torch.linalg.lstsq(vandermonde(x, degree), y[:, None]).solution[:, 0]  # (p+1,)
