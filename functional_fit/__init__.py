"""functional-fit: the gradient-descent lecture as pure JAX functions, beside its torch mirror.

Modules (each mirrored in `parity`, the torch side):
  `data`      the lecture's data, the shared batch order, a fit's length
  `tables`    CSV input: a table's columns read and checked
  `models`    ``linear(w, x)``, ``polynomial(w, x)``, ``sine(w, x)``, ``mlp``, ``logistic``,
              a small ``resnet`` with state and a dropout key
  `nn`        torch.nn.functional in JAX: torch's names, arguments and layouts
  `modules`   flax NNX, linen and equinox modules as pure model functions
  `taps`      ``tap(name, value)``: a layer's output, recorded when `parity.compare` asks
  `losses`    ``mse(y_hat, y)``, ``l1(y_hat, y)``, ``bce_with_logits``, ``cross_entropy``
  `ols`       the analytic least-squares fit
  `autodiff`  z(θ) = (1 - log(1 + e^θ))^2 and its derivative three ways
  `engine`    the one training loop: a step, a compiled scan, long fits in chunks; models
              with state (BatchNorm's statistics) and randomness (a key per step)
  `fit`       `fit.train`: any model, loss, optax optimizer and parameter pytree, one compiled
              `lax.scan`; the lecture's gradient descent, SGD and Adam as thin wrappers
  `optim`     torch.optim's optimizers and schedulers as optax transformations, verified
  `registry`  model, loss and optimizer names, resolved in one place
  `checks`    input checks and errors, shared with `parity`
  `precision` dtype modes and the explicit float64 switch
  `tolerances` how close JAX and torch must be, and how closeness is measured
  `runtime`   chunk sizes, compiler options and the memory limit, per platform
  `surface`   loss surfaces over 2-D grids, streamed and sharded; 1-D lines
  `streams`   `Stream`: a data set read in batches (memmaps, a DataLoader, a function)
  `hessian`   the loss's Hessian through its products: top eigenvalues, trace, density
  `sweep`     many fits in one compiled call, vmapped over lr, starts and seeds
  `plot`      figures drawn from arrays, as matplotlib Figures

None of these imports torch, `parity`, the comparison layer (`comparison`) or the command
line (`functional_fit_cli`).

Importing this package changes no global state (no JAX configuration, no signal handler, no
environment variable) and imports nothing heavy: each module, and the few names below, load
when first used, so ``import functional_fit`` costs nothing and ``python -m functional_fit``
starts the command line at once.
"""

import importlib

__version__ = "0.1.0"

#: The package's modules, loaded on first use (``functional_fit.fit``).
_MODULES = ("autodiff", "checks", "data", "engine", "explorer", "fit", "hessian", "losses",
            "models", "modules", "nn", "ols", "optim", "plot", "precision", "registry", "runtime",
            "streams", "surface", "sweep", "tables", "taps", "tolerances")
#: Names re-exported from a module, loaded on first use (``functional_fit.lecture_data``).
_NAMES = {
    "DivergenceError": "checks",
    "InputError": "checks",
    "FitResult": "fit",
    "PrecisionError": "precision",
    "batch_order": "data",
    "float64": "precision",
    "lecture_data": "data",
    "read_csv": "data",
    "tap": "taps",
    "zeros": "precision",
}


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODULES, *_NAMES])


__all__ = sorted([*_MODULES, *_NAMES])
