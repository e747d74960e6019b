"""The lecture's autodiff demo in torch (cells 19-27): ``backward`` and the ``grad_fn`` chain."""

from __future__ import annotations

import torch


def z(theta):
    """z(θ) = (1 - log(1 + exp(θ)))^2, elementwise."""
    return (1 - torch.log(1 + torch.exp(theta))) ** 2


def value_and_grad(theta: float = 1.0):
    """(z(θ), dz/dθ) as Python floats: float64 θ with ``requires_grad``, then ``z.backward()``."""
    theta = torch.tensor([theta], requires_grad=True, dtype=torch.float64)
    value = z(theta)
    value.backward()
    return value.item(), theta.grad.item()


def graph(theta: float = 1.0) -> list[str]:
    """The chain of backward functions from z down to θ, following ``next_functions``.

    Returns names such as ``['PowBackward0', 'RsubBackward1', 'LogBackward0', ...,
    'AccumulateGrad']``: what torch recorded to differentiate z.
    """
    t = torch.tensor([theta], requires_grad=True, dtype=torch.float64)
    fn, names = z(t).grad_fn, []
    while fn is not None:
        names.append(type(fn).__name__)
        nxt = [f for f, _ in fn.next_functions if f is not None]
        fn = nxt[0] if nxt else None
    return names
