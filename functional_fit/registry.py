"""Names, resolved in one place: the models, losses and optimizers the command line knows.

The command line, the lecture runner, the parity report, the sweep and the tests refer to a
model, a loss or an optimizer by name (``"poly"``, ``"l1"``, ``"adam"``). Each name is resolved
here, to a pure function of this package; `parity.registry` resolves the same names to their
torch twins. Adding a model is its function in `functional_fit.models`, its module in
`parity.models`, and one line in each registry.

- `MODELS`: name -> `Model`, the function and its number of parameters (from a degree).
- `LOSSES`: name -> ``loss(y_hat, y) -> ()``.
- `OPTIMIZERS`: name -> `Optimizer`, a recipe ``make(lr, steps_per_epoch) -> optax
  GradientTransformation`` and how it batches (full batch for ``steps``, minibatches for
  ``epochs``).

The lecture's three optimizers are all optax: its gradient descent is ``optax.sgd`` with the
schedule lr / (i + 1) at step i, its SGD the same with lr / (e + 1) in epoch e, and its Adam
``optax.adam(lr)``.

Examples:
  >>> from functional_fit import registry
  >>> registry.model("poly").n_params(12)
  13
  >>> registry.loss("l1").__name__
  'l1'
  >>> registry.optimizer("sgd").batching, registry.optimizer("gd").batching
  ('minibatch', 'full')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import optax

from functional_fit import checks as _checks, losses, models


@dataclasses.dataclass(frozen=True)
class Model:
    """A model of the registry."""

    fn: Callable  # model(w, x) -> y_hat, w (p+1,), x (n,) -> (n,)
    params: Callable[[int], int]  # degree -> p + 1; the degree is ignored where it means nothing
    uses_degree: bool  # whether --degree applies to it
    linear_in_params: bool  # model(w, x) = V(x) w: its Jacobian does not depend on w
    param_names: tuple = ()  # names of the parameters by index, for axis labels

    def n_params(self, degree: int = 2) -> int:
        """The length of its parameter vector, for `degree` where the model has one."""
        return self.params(_checks.nonnegative_int("degree", degree))


def _lecture_gd(lr, steps_per_epoch: int = 1):
    del steps_per_epoch  # one step is one epoch of the whole data
    return lambda count: lr / (count + 1)


def _lecture_sgd(lr, steps_per_epoch: int = 1):
    return lambda count: lr / (count // steps_per_epoch + 1)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optimizer of the registry: a learning rate (and keywords) -> an optax transformation.

    Frozen and hashable, so that a jitted fit built from one compiles once per recipe, with the
    learning rate traced (a sweep vmaps over it).
    """

    name: str
    batching: str  # "full": counts steps over the whole data; "minibatch": counts epochs
    build: Callable  # (lr, steps_per_epoch, **kwargs) -> optax.GradientTransformation
    kwargs: tuple = ()  # sorted (key, value) pairs passed to `build`

    def __call__(self, lr, steps_per_epoch: int = 1) -> optax.GradientTransformation:
        """The transformation for learning rate `lr` (a float or a traced scalar)."""
        return self.build(lr, steps_per_epoch, **dict(self.kwargs))


def _gd(lr, steps_per_epoch):
    return optax.sgd(_lecture_gd(lr, steps_per_epoch))


def _sgd(lr, steps_per_epoch):
    return optax.sgd(_lecture_sgd(lr, steps_per_epoch))


def _adam(lr, steps_per_epoch):
    del steps_per_epoch
    return optax.adam(lr)  # torch.optim.Adam's defaults: b1 0.9, b2 0.999, eps 1e-8


MODELS = {
    "linear": Model(models.linear, lambda degree: 2, uses_degree=False, linear_in_params=True,
                    param_names=("intercept", "slope")),
    "poly": Model(models.polynomial, lambda degree: degree + 1, uses_degree=True,
                  linear_in_params=True),
    "sine": Model(models.sine, lambda degree: 3, uses_degree=False, linear_in_params=False,
                  param_names=("offset", "amplitude", "frequency")),
}
LOSSES = {"l1": losses.l1, "mse": losses.mse}
OPTIMIZERS = {
    "gd": Optimizer("gd", "full", _gd),
    "sgd": Optimizer("sgd", "minibatch", _sgd),
    "adam": Optimizer("adam", "minibatch", _adam),
}


def model(name: str) -> Model:
    """The `Model` named `name`; `InputError` naming ``model`` when there is none."""
    return MODELS[_checks.choice("model", name, tuple(MODELS))]


def loss(name: str) -> Callable:
    """The loss function named `name`; `InputError` naming ``loss`` when there is none."""
    return LOSSES[_checks.choice("loss", name, tuple(LOSSES))]


def optimizer(name: str, **kwargs) -> Optimizer:
    """The `Optimizer` named `name`, with keywords for its transformation.

    ``optimizer("adam")(0.1)`` is ``optax.adam(0.1)``.
    """
    opt = OPTIMIZERS[_checks.choice("optimizer", name, tuple(OPTIMIZERS))]
    return dataclasses.replace(opt, kwargs=tuple(sorted(kwargs.items()))) if kwargs else opt


def resolve(model, loss) -> tuple:
    """(model, loss) as functions: a name is looked up here, a function is kept.

    Every entry point that takes a model or a loss accepts either, and refuses anything else
    with `InputError` before tracing.

    Examples:
      >>> resolve("linear", "mse") == (models.linear, losses.mse)
      True
    """
    if isinstance(model, str):
        model = globals()["model"](model).fn
    if isinstance(loss, str):
        loss = globals()["loss"](loss)
    for name, fn in (("model", model), ("loss", loss)):
        if not callable(fn):
            raise _checks.InputError(f"{name} must be a function or a registry name, got {fn!r}")
    return model, loss


def name_of(fn: Callable, table: dict) -> str | None:
    """The registry name of a model or loss function, or None (a user's own function)."""
    for key, entry in table.items():
        if (entry.fn if isinstance(entry, Model) else entry) is fn:
            return key
    return None


__all__ = ["LOSSES", "MODELS", "OPTIMIZERS", "Model", "Optimizer", "loss", "model", "name_of",
           "optimizer", "resolve"]
