"""functional-fit: the gradient-descent lecture as pure JAX functions, beside its torch mirror.

Modules (each mirrored in `parity`, the torch side):
  `data`      the lecture's data, CSV input, the shared batch order
  `models`    ``linear(w, x)``, ``polynomial(w, x)``, ``sine(w, x)``
  `losses`    ``mse(y_hat, y)``, ``l1(y_hat, y)``
  `ols`       the analytic least-squares fit
  `autodiff`  z(θ) = (1 - log(1 + e^θ))^2 and its derivative three ways
  `fit`       `fit.train`: any model, loss, optax optimizer and parameter pytree, one compiled
              `lax.scan`; the lecture's gradient descent, SGD and Adam as thin wrappers
  `optim`     torch.optim's optimizers and schedulers as optax transformations, verified
  `registry`  model, loss and optimizer names, resolved in one place
  `checks`    input checks and errors, shared with `parity`
  `precision` dtype modes and the explicit float64 switch
  `tolerances` how close JAX and torch must be, and how closeness is measured
  `surface`   loss surfaces over 2-D grids, streamed and sharded (import it explicitly)
  `sweep`     many fits in one compiled call, vmapped over lr, starts and seeds (ditto)
  `plot`      figures drawn from arrays, as matplotlib Figures (ditto)

None of these imports torch or `parity`; the torch side and the comparison of the two (the
lecture runner, the parity report, the lecture's figures) are in `parity`.

Importing this package changes no global JAX configuration; see `functional_fit.precision`.
"""

from functional_fit import _environment

_environment.starting()  # the command: Ctrl-C during the imports is one line, not a traceback
_environment.import_jax()  # a bad JAX_* variable: one line naming it, not JAX's traceback

from functional_fit import (autodiff, checks, data, fit, losses, models, ols, optim,  # noqa: E402
                            precision, registry)
from functional_fit.checks import DivergenceError, InputError  # noqa: E402
from functional_fit.data import batch_order, lecture_data, read_csv  # noqa: E402
from functional_fit.fit import FitResult  # noqa: E402
from functional_fit.precision import PrecisionError, float64, zeros  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "FitResult",
    "InputError",
    "PrecisionError",
    "autodiff",
    "checks",
    "batch_order",
    "data",
    "fit",
    "float64",
    "lecture_data",
    "losses",
    "models",
    "ols",
    "optim",
    "precision",
    "read_csv",
    "registry",
    "zeros",
]
