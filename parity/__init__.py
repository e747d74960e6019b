"""The lecture's torch code as a package: the same steps as `functional_fit`, torch's way.

Models are ``nn.Module`` subclasses, gradients come from ``.backward()``, updates happen in
place under ``torch.no_grad()`` or through ``torch.optim``, and minibatches come from a
``DataLoader``. File and function names mirror `functional_fit`: `parity.models` beside
`functional_fit.models`, `parity.fit.adam_sgd` beside `functional_fit.fit.adam_sgd`, and so on.

Importing this package changes no global configuration (neither torch's nor JAX's).
"""

from parity import autodiff, data, fit, losses, models, ols
from parity.data import OrderSampler, tensors
from parity.models import PolynomialModel, SimpleLinearModel

__all__ = [
    "OrderSampler",
    "PolynomialModel",
    "SimpleLinearModel",
    "autodiff",
    "data",
    "fit",
    "losses",
    "models",
    "ols",
    "tensors",
]
