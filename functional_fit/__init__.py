"""functional-fit: the gradient-descent lecture as pure JAX functions, beside its torch mirror.

Modules (each mirrored in `parity`, the torch side):
  `data`      the lecture's data, CSV input, the shared batch order
  `models`    ``linear(w, x)``, ``polynomial(w, x)``
  `losses`    ``mse(y_hat, y)``, ``l1(y_hat, y)``
  `ols`       the analytic least-squares fit
  `autodiff`  z(θ) = (1 - log(1 + e^θ))^2 and its derivative three ways
  `fit`       gradient descent, SGD and Adam (optax), each one compiled `lax.scan`
  `precision` dtype modes and the explicit float64 switch
  `surface`   loss surfaces over 2-D grids, streamed and sharded (import it explicitly)
  `sweep`     many fits in one compiled call, vmapped over lr, starts and seeds (ditto)
  `plot`      every lecture figure as a matplotlib Figure (ditto)
  `lecture`, `parity_report`  the lecture and the parity matrix in both frameworks (import torch)

Importing this package changes no global JAX configuration; see `functional_fit.precision`.
"""

from functional_fit import autodiff, data, fit, losses, models, ols, precision
from functional_fit._checks import DivergenceError, InputError
from functional_fit.data import batch_order, lecture_data, read_csv
from functional_fit.fit import FitResult
from functional_fit.precision import PrecisionError, float64, zeros

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "FitResult",
    "InputError",
    "PrecisionError",
    "autodiff",
    "batch_order",
    "data",
    "fit",
    "float64",
    "lecture_data",
    "losses",
    "models",
    "ols",
    "precision",
    "read_csv",
    "zeros",
]
