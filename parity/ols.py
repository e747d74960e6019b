"""The analytic least-squares fit in torch, mirroring `functional_fit.ols`."""

from __future__ import annotations

import torch


def standard_units(x):
    """(x - mean(x)) / std(x), population std; (n,) -> (n,)."""
    return (x - x.mean()) / x.std(correction=0)


def correlation(x, y):
    """mean(su(x) * su(y)); (n,), (n,) -> ()."""
    return torch.mean(standard_units(x) * standard_units(y))


def slope(x, y):
    """r * std(y) / std(x); (n,), (n,) -> ()."""
    return correlation(x, y) * y.std(correction=0) / x.std(correction=0)


def intercept(x, y):
    """mean(y) - slope * mean(x); (n,), (n,) -> ()."""
    return y.mean() - slope(x, y) * x.mean()


def ols(x, y):
    """``[intercept, slope]``; (n,), (n,) tensors -> (2,)."""
    return torch.stack([intercept(x, y), slope(x, y)])


def vandermonde(x, degree: int):
    """Columns x**0 .. x**degree; (n,) -> (n, degree+1)."""
    return torch.stack([x**i for i in range(degree + 1)], dim=1)  # (n, p+1)


def least_squares(x, y, degree: int = 1):
    """The MSE minimizer of the degree-`degree` polynomial via ``torch.linalg.lstsq``; -> (p+1,)."""
    return torch.linalg.lstsq(vandermonde(x, degree), y[:, None]).solution[:, 0]  # (p+1,)
