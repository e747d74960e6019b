"""The optimizer problems, each in both frameworks: what the atlas and the optimizer tests run.

- ``"linear"``, ``"poly2"``: the lecture's models (`functional_fit.models`) on its data, the
  parameters one flat vector, from zeros as in the lecture; torch: `parity.models`.
- ``"linear_far"``: the linear model from (20, -20), farther from its optimum (about
  (-0.3, 2.6)) than lr * steps = 10 at torch's default lr of RMSprop: adaptive optimizers
  that reach an optimum at a constant lr hop around it with steps of about lr, in directions
  that rounding decides (see tests/test_optim.py); from here they are still on their way.
- ``"mlp"``: a 1 -> H -> 1 tanh network whose parameters are a dict laid out as the
  ``state_dict`` of ``nn.Sequential(nn.Linear(1, H), nn.Tanh(), nn.Linear(H, 1))``:
  "0.weight" (H, 1), "0.bias" (H,), "2.weight" (1, H), "2.bias" (1,). Its start is drawn
  with numpy (torch's default init, uniform in +-1/sqrt(fan_in)), the same on every machine.

The loss is MSE, or -MSE for a ``maximize=True`` optimizer (which then ascends -MSE).

`jax_train` and `torch_train` run an optimizer on a problem and return its whole path, through
the two training loops, `functional_fit.fit.train` and `parity.fit.train`
(``scripts/atlas.py`` writes the README's atlas with them).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn

import functional_fit as ff
import parity
from functional_fit import fit, losses, models

PROBLEMS = ("linear", "linear_far", "poly2", "mlp")
FAR = (20.0, -20.0)


def mlp(params, x):
    """The tanh network on inputs x (n,) -> (n,); params as its torch state_dict."""
    h = jnp.tanh(x[:, None] @ params["0.weight"].T + params["0.bias"][None, :])  # (n, H)
    return (h @ params["2.weight"].T + params["2.bias"][None, :])[:, 0]  # (n,)


class TorchMLP(nn.Sequential):
    """nn.Sequential(Linear(1, H), Tanh(), Linear(H, 1)) on x (n,) -> (n,)."""

    def __init__(self, params: dict):
        hidden = params["0.weight"].shape[0]
        dtype = torch.float64 if params["0.weight"].dtype == np.float64 else torch.float32
        super().__init__(nn.Linear(1, hidden, dtype=dtype), nn.Tanh(),
                         nn.Linear(hidden, 1, dtype=dtype))
        self.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})

    def forward(self, x):
        return super().forward(x[:, None])[:, 0]  # (n, 1) -> (n,)


def mlp_params(hidden: int = 8, seed: int = 0, dtype: str = "float64") -> dict:
    """A start for the network, uniform in +-1/sqrt(fan_in) as torch's nn.Linear draws it."""
    rng = np.random.default_rng(seed)

    def uniform(shape, fan_in):
        return (rng.uniform(-1.0, 1.0, shape) / np.sqrt(fan_in)).astype(dtype)

    return {"0.weight": uniform((hidden, 1), 1), "0.bias": uniform((hidden,), 1),
            "2.weight": uniform((1, hidden), hidden), "2.bias": uniform((1,), hidden)}


class Problem(NamedTuple):
    """Everything one run needs, on both sides."""

    params: object  # JAX pytree: (p+1,) vector or the network's dict
    model: object  # model(params, x) -> (n,)
    loss: object  # loss(y_hat, y) -> ()
    module: nn.Module  # fresh, holding the same start
    loss_fn: object  # loss_fn(y_hat, y) -> ()
    x: np.ndarray  # (n,)
    y: np.ndarray  # (n,)


def _negated_mse(y_hat, y):
    return -losses.mse(y_hat, y)


def _torch_negated_mse(y_hat, y):
    return -parity.losses.mse(y_hat, y)


def make(name: str, dtype: str = "float64", *, maximize: bool = False, hidden: int = 8,
         seed: int = 0) -> Problem:
    """The problem `name` in `PROBLEMS` with parameters of `dtype`, on the lecture's data."""
    x, y = (a.astype(dtype) for a in ff.lecture_data())
    tdtype = parity.data.torch_dtype(dtype)
    if name == "mlp":
        start = mlp_params(hidden, seed, dtype)
        params = {k: jnp.asarray(v) for k, v in start.items()}
        model, module = mlp, TorchMLP(start)
    else:
        linear = name.startswith("linear")
        degree = 1 if linear else int(name.removeprefix("poly"))
        start = np.array(FAR if name == "linear_far" else np.zeros(degree + 1), dtype=dtype)
        params = jnp.asarray(start)
        model = models.linear if linear else models.polynomial
        module = parity.registry.module("linear" if linear else "poly", degree, w=start,
                                    dtype=tdtype)
    loss, loss_fn = ((_negated_mse, _torch_negated_mse) if maximize
                     else (losses.mse, parity.losses.mse))
    return Problem(params, model, loss, module, loss_fn, x, y)


def jax_train(params, x, y, *, model, loss, optimizer, steps=None, order=None,
              batch_size=None):  # fit.train's keywords
    """The path of `optimizer` (an optax transformation) from `params`: `fit.train`'s."""
    return jax.tree.map(np.asarray, fit.train(params, x, y, model=model, loss=loss,
                                              optimizer=optimizer, steps=steps, order=order,
                                              batch_size=batch_size).path)


def torch_train(module, loss_fn, x, y, *, optimizer, scheduler=None, steps=None, order=None,
                batch_size=None, clip=None):  # parity.fit.train's keywords
    """The path of a torch.optim `optimizer` over `module`'s parameters: `parity.fit.train`'s.

    `clip` is an optional (max_norm, norm_type) for ``clip_grad_norm_`` before each step.
    Returns dict name -> (steps+1, *shape) array.
    """
    # One thread: these tensors are far too small to gain from more, and OpenMP's hand-offs
    # between threads cost far more than the work of a small network's step.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        max_norm, norm_type = (None, 2.0) if clip is None else clip
        return parity.fit.train(module, loss_fn, x, y, optimizer=optimizer, scheduler=scheduler,
                                steps=steps, order=order, batch_size=batch_size,
                                max_norm=max_norm, norm_type=norm_type).path
    finally:
        torch.set_num_threads(threads)


__all__ = ["FAR", "PROBLEMS", "Problem", "TorchMLP", "jax_train", "make", "mlp", "mlp_params",
           "torch_train"]
