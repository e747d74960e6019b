"""The lecture's torch training loops (cells 48, 59 and 63), extended only as the parity needs.

Each keeps the lecture's shape: a Python loop, ``loss.backward()``, in-place updates under
``torch.no_grad()`` (or ``torch.optim.Adam``), ``model.zero_grad()``, a ``DataLoader`` for
minibatches, and a list of ``model.numpy_parameters()`` returned as an array of shape
(steps+1, p+1). Two extensions: ``order``, the shared batch order (`parity.data.OrderSampler`),
so the torch and JAX trajectories can be compared step by step; and the parameter dtype, which
is the model's (`parity.models`).

Without ``order`` they shuffle with ``DataLoader(shuffle=True)`` exactly as the lecture does.

Divergence: each loop stops at the first step whose loss is non-finite and raises
`functional_fit._checks.DivergenceError` naming that step (from 0), as `functional_fit.fit`
does for the same fit; ``.result`` is the path so far, (step+1, p+1). Non-finite parameters
after the last step raise it too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim import Adam
from torch.utils.data import DataLoader, TensorDataset

from functional_fit._checks import divergence_error
from parity.data import OrderSampler


def run(optimizer, model, loss_fn, x, y, *, lr, steps=None, order=None, batch_size=10):
    """The lecture's loop named `optimizer`, mirroring `functional_fit.fit.run`.

    ``"gd"`` runs `gradient_descent` for `steps` steps on tensors x, y (n,); ``"sgd"`` and
    ``"adam"`` run `stochastic_gradient_descent` and `adam_sgd` on ``TensorDataset(x, y)``
    over the batch `order` (epochs, n). Returns the (steps+1, p+1) path.
    """
    from functional_fit._checks import choice

    choice("optimizer", optimizer, ("gd", "sgd", "adam"))
    if optimizer == "gd":
        return gradient_descent(model, loss_fn, x, y, lr=lr, nsteps=steps)
    fit = stochastic_gradient_descent if optimizer == "sgd" else adam_sgd
    return fit(model, loss_fn, TensorDataset(x, y), lr=lr, nepochs=len(order),
               batch_size=batch_size, order=order)


def _loader(dataset, batch_size, nepochs, order):
    if order is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=True)
    order = np.asarray(order)
    if order.shape[0] != nepochs:
        raise ValueError(f"order has {order.shape[0]} epochs but nepochs is {nepochs}")
    return DataLoader(dataset, batch_size=batch_size, sampler=OrderSampler(order))


def _check_loss(loss, values, where, lr):
    """Raise at the first non-finite loss; the step is the number of updates made so far."""
    if not torch.isfinite(loss):
        raise divergence_error(f"parity.fit.{where}", len(values) - 1, loss.item(), lr, np.array(values))


def _check_params(values, where, lr):
    """Raise when the parameters after the last step are non-finite."""
    if not np.all(np.isfinite(values[-1])):
        raise divergence_error(f"parity.fit.{where}", len(values) - 1, None, lr, np.array(values))


def gradient_descent(model, loss_fn, x, y, lr=1.0, nsteps=100):
    """Full-batch gradient descent with step lr / (i + 1) (cell 48).

    Returns:
      (nsteps+1, p+1) array of the parameters before the first and after every step.
    """
    values = [model.numpy_parameters()]  # Track parameter values for later viz.
    for i in range(nsteps):
        loss = loss_fn(model(x), y)
        _check_loss(loss, values, "gradient_descent", lr)
        loss.backward()
        # The update must not itself be recorded for differentiation.
        with torch.no_grad():
            for p in model.parameters():
                p -= lr / (i + 1) * p.grad
            # Clear the gradient buffer, or the next backward would accumulate into it.
            model.zero_grad()
            values.append(model.numpy_parameters())
    _check_params(values, "gradient_descent", lr)
    return np.array(values)


def stochastic_gradient_descent(
    model, loss_fn, dataset, lr=1.0, nepochs=100, batch_size=10, order=None
):
    """Minibatch SGD with step lr / (e + 1) in epoch e (cell 59).

    Args:
      order: optional (nepochs, n) batch order; shuffled by the DataLoader when None.

    Returns:
      (steps+1, p+1) array, steps = nepochs * ceil(n / batch_size).
    """
    loader = _loader(dataset, batch_size, nepochs, order)
    values = [model.numpy_parameters()]
    for i in range(nepochs):
        for x, y in loader:
            loss = loss_fn(model(x), y)
            _check_loss(loss, values, "stochastic_gradient_descent", lr)
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr / (i + 1) * p.grad
                model.zero_grad()
                values.append(model.numpy_parameters())
    _check_params(values, "stochastic_gradient_descent", lr)
    return np.array(values)


def adam_sgd(model, loss_fn, dataset, lr=0.1, nepochs=100, batch_size=10, order=None):
    """Minibatch Adam through ``torch.optim.Adam`` (cell 63).

    Returns:
      (steps+1, p+1) array, steps = nepochs * ceil(n / batch_size).
    """
    loader = _loader(dataset, batch_size, nepochs, order)
    opt = Adam(model.parameters(), lr=lr)
    values = [model.numpy_parameters()]
    for _ in range(nepochs):
        for x, y in loader:
            loss = loss_fn(model(x), y)
            _check_loss(loss, values, "adam_sgd", lr)
            loss.backward()
            opt.step()
            model.zero_grad()
            values.append(model.numpy_parameters())
    _check_params(values, "adam_sgd", lr)
    return np.array(values)
