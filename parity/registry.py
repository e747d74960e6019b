"""Names, resolved in one place on the torch side: the twins of `functional_fit.registry`.

The same names as `functional_fit.registry`, resolved to torch:

- `MODELS`: name -> `Model`, its ``nn.Module`` class and its plain-function form.
- `LOSSES`: name -> ``loss_fn(y_hat, y) -> ()`` tensor.
- `OPTIMIZERS`: name -> `Optimizer`, a factory ``(params, lr, steps_per_epoch) ->
  torch.optim.Optimizer``.

Adding a model is its function in `functional_fit.models`, its module in `parity.models`, and
one line here and one in `functional_fit.registry`.

Examples:
  >>> from parity import registry
  >>> registry.module("poly", degree=3).w.shape
  torch.Size([4, 1])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from functional_fit import checks as _checks, registry as _jax_registry
from parity import losses, models
from parity.optim import LectureSGD


@dataclasses.dataclass(frozen=True)
class Model:
    """A model of the registry, torch side."""

    module: Callable  # (w=None, degree=..., dtype=None) -> nn.Module
    fn: Callable  # fn(w, x): w (p+1,) tensor, x (n,) -> (n,)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optimizer of the registry, torch side: parameters and a learning rate -> an optimizer."""

    name: str
    batching: str  # as `functional_fit.registry.Optimizer.batching`
    build: Callable  # (params, lr, steps_per_epoch, **kwargs) -> torch.optim.Optimizer
    kwargs: tuple = ()

    def __call__(self, params, lr, steps_per_epoch: int = 1) -> torch.optim.Optimizer:
        return self.build(params, lr, steps_per_epoch, **dict(self.kwargs))


MODELS = {
    "linear": Model(lambda w=None, degree=1, dtype=None: models.SimpleLinearModel(w, dtype=dtype),
                    models.linear),
    "poly": Model(lambda w=None, degree=2, dtype=None: models.PolynomialModel(w, p=degree, dtype=dtype),
                  models.polynomial),
    "sine": Model(lambda w=None, degree=0, dtype=None: models.SineModel(w, dtype=dtype),
                  models.sine),
}
LOSSES = {"l1": losses.l1, "mse": losses.mse, "bce_with_logits": losses.bce_with_logits,
          "cross_entropy": losses.cross_entropy}
def _torch_named(name):
    """``torch.optim.<name>(params, lr=lr, **kwargs)``."""

    def build(params, lr, steps_per_epoch, **kwargs):
        del steps_per_epoch
        return getattr(torch.optim, name)(params, lr=lr, **kwargs)

    return build


OPTIMIZERS = {
    "gd": Optimizer("gd", "full", lambda params, lr, spe: LectureSGD(params, lr)),
    "sgd": Optimizer("sgd", "minibatch", lambda params, lr, spe: LectureSGD(params, lr, spe)),
    "adam": Optimizer("adam", "minibatch", lambda params, lr, spe: torch.optim.Adam(params, lr=lr)),
    **{name: Optimizer(name, "any", _torch_named(name)) for name in _jax_registry.optim.OPTIMIZERS},
}


def model(name: str) -> Model:
    """The `Model` named `name`; `InputError` naming ``model`` when there is none."""
    return MODELS[_checks.choice("model", name, tuple(MODELS))]


def module(name: str, degree: int = 2, w=None, dtype=None) -> torch.nn.Module:
    """A fresh module of the model named `name`, zeros or `w` (checked against the degree).

    Args:
      name: a name of `MODELS`.
      degree: the degree, where the model has one (``"poly"``).
      w: optional (p+1,) initial parameters, copied.
      dtype: the parameters' torch dtype (see `parity.models`).
    """
    entry = model(name)
    if w is not None:
        _jax_registry.model(name).check_vector("w", w, degree)
    return entry.module(w=w, degree=degree, dtype=dtype)


def loss(name: str) -> Callable:
    """The torch loss named `name`; `InputError` naming ``loss`` when there is none."""
    return LOSSES[_checks.choice("loss", name, tuple(LOSSES))]


def optimizer(name: str, **kwargs) -> Optimizer:
    """The `Optimizer` named `name`, with keywords for the torch optimizer (checked as
    `functional_fit.registry.optimizer` checks them)."""
    opt = OPTIMIZERS[_checks.choice("optimizer", name, tuple(OPTIMIZERS))]
    if not kwargs:
        return opt
    _jax_registry.optimizer(name, **kwargs)  # the same names, the same checks
    return dataclasses.replace(opt, kwargs=tuple(sorted(kwargs.items())))


__all__ = ["LOSSES", "MODELS", "OPTIMIZERS", "Model", "Optimizer", "loss", "model", "module",
           "optimizer"]
