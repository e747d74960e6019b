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
schedule lr / (i + 1) at step i (torch's ``LambdaLR``, `functional_fit.optim.lr_scheduler`),
its SGD the same stepped once per epoch, lr / (e + 1) in epoch e, and its Adam
``optax.adam(lr)``. torch.optim's own optimizers, by their class names, are
`functional_fit.optim`'s.

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

import numpy as np
import optax

from functional_fit import checks as _checks, losses, models, optim
from functional_fit.engine import Recipe
from functional_fit.optim import lr_scheduler


@dataclasses.dataclass(frozen=True)
class Model:
    """A model of the registry."""

    fn: Callable  # model(w, x) -> y_hat, w (p+1,), x (n,) -> (n,)
    params: Callable[[int], int]  # degree -> p + 1; the degree is ignored where it means nothing
    uses_degree: bool  # whether --degree applies to it
    linear_in_params: bool  # model(w, x) = V(x) w: its Jacobian does not depend on w
    param_names: tuple = ()  # names of the parameters by index, for axis labels
    name: str = ""  # its name in `MODELS`
    #: where a fit starts when none is given: zeros, unless the model does not move from there
    start: tuple = ()

    def n_params(self, degree: int = 2) -> int:
        """The length of its parameter vector, for `degree` where the model has one."""
        return self.params(_checks.nonnegative_int("degree", degree))

    def label(self, degree: int = 2) -> str:
        """A short label: ``"linear"``, ``"poly12"``, ``"sine"``."""
        return f"{self.name}{degree}" if self.uses_degree else self.name

    def title(self, degree: int = 2) -> str:
        """In words: ``"linear"``, ``"degree-12 polynomial"``, ``"sine"``."""
        return f"degree-{degree} polynomial" if self.uses_degree else self.name

    def start_vector(self, size: int, dtype="float64") -> np.ndarray:
        """The (size,) start of a fit when none is given, in `dtype`: `start`, or zeros (the
        lecture's start, ``torch.zeros(p + 1, 1)``)."""
        if self.start and len(self.start) == size:
            return np.asarray(self.start, dtype=dtype)
        return np.zeros(size, dtype=dtype)

    def check_vector(self, name: str, w, degree: int | None = None) -> None:
        """InputError naming `name` when `w` is not a parameter vector of this model
        (`functional_fit.checks.params`): of `degree` where the model has one and it is given;
        without it, any length of at least 1 is a polynomial's, of degree len - 1."""
        if self.uses_degree and degree is None:
            _checks.vector(name, w)
            return
        degree = 2 if degree is None else degree  # ignored by a model without a degree
        _checks.params(name, w, self.n_params(degree), self.title(degree))


@dataclasses.dataclass(frozen=True)
class Optimizer(Recipe):
    """An optimizer of the registry: a learning rate (and keywords) -> an optax transformation.

    A `functional_fit.engine.Recipe`: frozen and hashable, so that a jitted fit built from one
    compiles once per recipe, with the learning rate traced (a sweep vmaps over it).
    """

    name: str
    batching: str  # "full": steps over the whole data; "minibatch": epochs; "any": either
    build: Callable  # (lr, steps_per_epoch, **kwargs) -> optax.GradientTransformation
    kwargs: tuple = ()  # sorted (key, value) pairs passed to `build`

    def __call__(self, lr, steps_per_epoch: int = 1) -> optax.GradientTransformation:
        """The transformation for learning rate `lr` (a float or a traced scalar)."""
        return self.build(lr, steps_per_epoch, **dict(self.kwargs))


def _gd(lr, steps_per_epoch):
    # torch's LambdaLR multiplies its base lr by the lambda: a base of 1 and the lecture's
    # lr / (i + 1) as the lambda round exactly as the lecture does (base lr times 1 / (i + 1)
    # would round twice, and move the lecture's L1 paths by 4e-9).
    del steps_per_epoch
    return optax.sgd(lr_scheduler.LambdaLR(1.0, lambda i: lr / (i + 1)))


def _sgd(lr, steps_per_epoch):
    per_epoch = lr_scheduler.LambdaLR(1.0, lambda epoch: lr / (epoch + 1))
    return optax.sgd(lr_scheduler.per_epoch(per_epoch, steps_per_epoch))


def _adam(lr, steps_per_epoch):
    del steps_per_epoch
    return optax.adam(lr)  # torch.optim.Adam's defaults: b1 0.9, b2 0.999, eps 1e-8


MODELS = {
    "linear": Model(models.linear, lambda degree: 2, uses_degree=False, linear_in_params=True,
                    param_names=("intercept", "slope"), name="linear"),
    "poly": Model(models.polynomial, lambda degree: degree + 1, uses_degree=True,
                  linear_in_params=True, name="poly"),
    # From w = 0 the sine's amplitude and frequency never move: d/dw1 w1 sin(w2 x) = sin(0) = 0
    # and d/dw2 = w1 x cos(w2 x) = 0. It starts at amplitude 1 and frequency 1 instead.
    "sine": Model(models.sine, lambda degree: 3, uses_degree=False, linear_in_params=False,
                  param_names=("offset", "amplitude", "frequency"), name="sine",
                  start=(0.0, 1.0, 1.0)),
}
LOSSES = {"l1": losses.l1, "mse": losses.mse, "bce_with_logits": losses.bce_with_logits,
          "cross_entropy": losses.cross_entropy}
#: The losses of a real-valued target, which the command line's data (x, y) has.
REGRESSION_LOSSES = ("l1", "mse")
def _torch_named(name):
    """``functional_fit.optim.<name>(lr=lr, **kwargs)``: torch's optimizer, verified."""

    def build(lr, steps_per_epoch, **kwargs):
        del steps_per_epoch  # torch's optimizers know nothing of epochs; schedules do
        return optim.OPTIMIZERS[name](lr=lr, **kwargs)

    build.__name__ = f"optim_{name}"
    return build


OPTIMIZERS = {
    # the lecture's three, each with its own batching and step size
    "gd": Optimizer("gd", "full", _gd),
    "sgd": Optimizer("sgd", "minibatch", _sgd),
    "adam": Optimizer("adam", "minibatch", _adam),
    # torch.optim's, by their class names: full batch or minibatches, as the caller says
    **{name: Optimizer(name, "any", _torch_named(name)) for name in optim.OPTIMIZERS},
}


def model(name: str) -> Model:
    """The `Model` named `name`; `InputError` naming ``model`` when there is none."""
    return MODELS[_checks.choice("model", name, tuple(MODELS))]


def loss(name: str) -> Callable:
    """The loss function named `name`; `InputError` naming ``loss`` when there is none."""
    return LOSSES[_checks.choice("loss", name, tuple(LOSSES))]


def optimizer(name: str, **kwargs) -> Optimizer:
    """The `Optimizer` named `name`, with keywords for its transformation.

    ``optimizer("adam")(0.1)`` is ``optax.adam(0.1)``; ``optimizer("RMSprop", alpha=0.9)(0.01)``
    is ``functional_fit.optim.RMSprop(lr=0.01, alpha=0.9)``. Keywords are checked against the
    optimizer's signature (the lecture's three take none), and their values by building it once.
    """
    opt = OPTIMIZERS[_checks.choice("optimizer", name, tuple(OPTIMIZERS))]
    if not kwargs:
        return opt
    if name not in optim.OPTIMIZERS:
        raise _checks.InputError(f"optimizer {name!r} takes no keywords (the lecture's own); "
                                 f"torch.optim's names do: {', '.join(optim.OPTIMIZERS)}")
    check_keywords(name, kwargs)
    return dataclasses.replace(opt, kwargs=tuple(sorted(kwargs.items())))


def check_keywords(name: str, kwargs: dict) -> None:
    """InputError naming a keyword that torch.optim.<name> does not take, or a bad value."""
    import inspect

    known = [p for p in inspect.signature(optim.OPTIMIZERS[name]).parameters if p != "lr"]
    for key in kwargs:
        if key not in known:
            raise _checks.InputError(f"{name} has no keyword {key!r}; it takes "
                                     f"{', '.join(known)}")
    optim.OPTIMIZERS[name](**kwargs)  # torch's own checks, with the keyword named


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


def model_of(fn: Callable) -> Model | None:
    """The registry's `Model` whose function is `fn`, or None (a user's own model)."""
    name = name_of(fn, MODELS)
    return None if name is None else MODELS[name]


def check_size(model: Callable, name: str, params) -> None:
    """InputError naming `name` when a flat parameter vector has the wrong length for a model
    of the registry (the linear model takes 2, the sine model 3). A pytree, or a user's own
    model, is checked by tracing the model instead (`functional_fit.fit.check_model`)."""
    entry = model_of(model)
    if entry is None or isinstance(params, (dict, tuple)):
        return
    try:
        ndim = np.ndim(params)
    except ValueError:  # a ragged list: a pytree of several leaves
        return
    if ndim >= 1:
        entry.check_vector(name, params)


__all__ = ["LOSSES", "MODELS", "OPTIMIZERS", "REGRESSION_LOSSES", "Model", "Optimizer",
           "check_size", "loss", "model", "model_of", "name_of", "optimizer", "resolve"]
