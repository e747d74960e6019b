"""The lecture's torch code as a package: the same steps as `functional_fit`, torch's way.

Models are ``nn.Module`` subclasses, gradients come from ``.backward()``, updates happen in
place under ``torch.no_grad()`` or through ``torch.optim``, and minibatches come from a
``DataLoader``. File and function names mirror `functional_fit`: `parity.models` beside
`functional_fit.models`, `parity.fit.adam_sgd` beside `functional_fit.fit.adam_sgd`, and so on.

Two layers live here:

- the torch side, mirroring `functional_fit` module for module: `data`, `models`, `losses`,
  `ols`, `autodiff`, `optim`, `fit`, `registry`, `surface`, `sweep`. These import only torch and
  the public modules of `functional_fit` that both sides share (`checks`, `data`, `precision`,
  `tolerances`, `registry`);
- the comparison layer, `parity.comparison`, on top of both sides: the lecture runner, the
  parity report and the lecture's figure set. The command line sits on it. Nothing below it
  imports it.

Importing this package changes no global configuration (neither torch's nor JAX's).
"""

from parity import autodiff, data, fit, losses, models, ols, optim, params, registry
from parity.data import OrderSampler, tensors
from parity.models import PolynomialModel, SimpleLinearModel, SineModel

def __getattr__(name):
    """``parity.compare``: the comparison layer's entry point, loaded when first asked for.

    A re-export, not a use: importing `parity` loads nothing of `parity.comparison`.
    """
    if name == "compare":
        from parity.comparison.compare import compare

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
    "fit",
    "losses",
    "models",
    "ols",
    "optim",
    "params",
    "registry",
    "tensors",
]
