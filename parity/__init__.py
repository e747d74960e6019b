"""The lecture's torch code as a package: the same steps as `functional_fit`, torch's way.

Models are ``nn.Module`` subclasses, gradients come from ``.backward()``, updates happen in
place under ``torch.no_grad()`` or through ``torch.optim``, and minibatches come from a
``DataLoader``. File and function names mirror `functional_fit`: `parity.models` beside
`functional_fit.models`, `parity.fit.adam_sgd` beside `functional_fit.fit.adam_sgd`, and so on.

The torch mirror, the second of the project's four layers: it mirrors `functional_fit` module
for module (`data`, `models`, `losses`, `ols`, `autodiff`, `optim`, `fit`, `registry`,
`params`, `surface`, `sweep`, `modules`; `dropout`, `export` and `ops`, `flax_params` are its
own) and imports only torch and the public names of `functional_fit`.
The layer that runs the two side by side is `comparison`; ``parity.compare`` is its entry
point under the name users know, and ``parity.testing`` its assertion for a project's tests,
both loaded when first asked for.

Importing this package changes no global configuration (neither torch's nor JAX's).
"""

import importlib

from parity import autodiff, data, dropout, fit, losses, models, ols, optim, params, registry
from parity.data import OrderSampler, tensors
from parity.models import PolynomialModel, SimpleLinearModel, SineModel


#: Submodules loaded on first use: torch.export's machinery, flax and equinox are heavy.
LAZY = ("surface", "sweep", "export", "ops", "modules", "flax_params", "testing", "explorer")


def __getattr__(name):
    """``parity.surface``, ``parity.sweep``, ``parity.export`` (with ``parity.ops``),
    ``parity.modules``, ``parity.flax_params`` and ``parity.testing``, loaded when first
    asked for; and ``parity.compare``, which is `comparison.compare.compare`: a re-export, not
    a use, so importing `parity` loads nothing of `comparison`."""
    if name in LAZY:
        return importlib.import_module(f"parity.{name}")
    if name == "compare":
        from comparison.compare import compare

        return compare
    raise AttributeError(f"module 'parity' has no attribute {name!r}")


__all__ = [
    "compare",
    "OrderSampler",
    "PolynomialModel",
    "SimpleLinearModel",
    "SineModel",
    "autodiff",
    "data",
    "dropout",
    "explorer",
    "export",
    "fit",
    "flax_params",
    "losses",
    "models",
    "modules",
    "ols",
    "ops",
    "optim",
    "params",
    "registry",
    "surface",
    "sweep",
    "tensors",
    "testing",
]
