"""The optimizer explorer's paths in torch: `functional_fit.explorer`'s, with ``torch.optim``.

The same optimizers, starts, learning rates, batch order and steps as the JAX side (its
`settings`), run the way torch runs them: one ``torch.optim`` optimizer per optimizer and
loss, with a param group per learning rate, each group holding the (S, 2) parameters of the S
starts. One ``zero_grad / backward / step`` per step updates every path at once: the loss
summed over the paths has, for each path, the gradient of that path's own loss, and torch's
optimizers update each parameter from its own gradient and state, with its group's rate.
The lecture's gradient descent is `parity.optim.LectureSGD`, its arithmetic as written.
"""

from __future__ import annotations

import numpy as np
import torch

from functional_fit import explorer as _jax
from parity.optim import LectureSGD

#: The torch optimizer class of each explorer optimizer, with its keywords.
CLASSES = {
    "gd": (LectureSGD, {}),
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adagrad": (torch.optim.Adagrad, {}),
    "adam": (torch.optim.Adam, {}),
}
#: The losses of `functional_fit.explorer.LOSSES`, per path: (L, S, B) predictions -> (L, S).
LOSSES = {
    "l1": lambda y_hat, y: (y_hat - y).abs().mean(dim=-1),
    "mse": lambda y_hat, y: ((y_hat - y) ** 2).mean(dim=-1),
}


def class_name(name: str) -> str:
    """The torch optimizer class of explorer optimizer `name`, as a torch user writes it."""
    cls = CLASSES[name][0]
    where = "torch.optim" if cls.__module__.startswith("torch.optim") else cls.__module__
    return f"{where}.{cls.__name__}"


def _batches(s: _jax.Settings, name: str, n: int):
    """The index tensors of every step: all points (GD), or the batch order's batches."""
    if _jax.OPTIMIZERS[name].batching == "full":
        return [slice(None)] * s.steps
    return [torch.from_numpy(row[i : i + s.batch_size]) for row in s.order
            for i in range(0, n, s.batch_size)]


def one(s: _jax.Settings, name: str, loss: str, x, y) -> np.ndarray:
    """The paths of explorer optimizer `name` on `loss`: (S, L, T+1, 2) float64.

    Args:
      s: `functional_fit.explorer.settings` of the data.
      name, loss: keys of `functional_fit.explorer.OPTIMIZERS` and `LOSSES`.
      x, y: (n,) float64 tensors.
    """
    cls, kwargs = CLASSES[name]
    lrs = s.lrs[list(_jax.OPTIMIZERS).index(name)]  # (L,)
    params = [torch.tensor(s.starts, dtype=torch.float64, requires_grad=True) for _ in lrs]
    opt = cls([{"params": [p], "lr": float(lr)} for p, lr in zip(params, lrs)], lr=1.0,
              **kwargs)
    out = np.empty((s.starts.shape[0], len(lrs), s.steps + 1, 2))
    out[:, :, 0] = s.starts[:, None]
    for t, idx in enumerate(_batches(s, name, x.shape[0])):
        opt.zero_grad()
        w = torch.stack(params)  # (L, S, 2)
        y_hat = w[..., 0:1] + w[..., 1:2] * x[idx]  # (L, S, B): the linear model
        LOSSES[loss](y_hat, y[idx]).sum().backward()
        opt.step()
        with torch.no_grad():
            out[:, :, t + 1] = torch.stack(params).transpose(0, 1).numpy()
    return out


def paths(x, y, *, order_seed: int = 0) -> np.ndarray:
    """Every path of the explorer in torch: (O, 2, S, L, T+1, 2) float64, as
    `functional_fit.explorer.paths` lays them out."""
    s = _jax.settings(x, y, order_seed=order_seed)
    tx = torch.as_tensor(np.asarray(x, np.float64))
    ty = torch.as_tensor(np.asarray(y, np.float64))
    return np.stack([np.stack([one(s, name, loss, tx, ty) for loss in LOSSES])
                     for name in _jax.OPTIMIZERS])


__all__ = ["CLASSES", "LOSSES", "class_name", "one", "paths"]
