"""Models: pure functions of one parameter vector and one batch of inputs.

``model(w, x) -> y_hat`` with w of shape (p+1,) and x of shape (n,); the result has shape (n,).
Each works under `jax.grad`, `jax.jit` and `jax.vmap` (vmap over w for many parameter vectors).
The torch twins, written as ``nn.Module`` the way the lecture writes them, are in
`parity.models`.

Dtypes follow JAX's promotion, which here matches torch's: float32 parameters meeting float64
data give float64 predictions (the lecture's mix).
"""

from __future__ import annotations

import jax.numpy as jnp

from functional_fit import _checks


def linear(w, x):
    """The lecture's linear model, w[0] + w[1] * x (cell 5).

    Args:
      w: (2,) intercept and slope.
      x: (n,) inputs.

    Returns:
      (n,) predictions.

    Examples:
      >>> import jax.numpy as jnp
      >>> linear(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0])).tolist()
      [1.0, 3.0]
    """
    return w[0] + w[1] * x  # () + () * (n,) -> (n,)


def polynomial(w, x):
    """The lecture's polynomial model, sum_i w[i] * x**i (cell 52), of degree p = len(w) - 1.

    Summed like the lecture's ``torch.sum(torch.stack([w[i] * x ** i ...]), dim=0)``: every
    term first, then one sum over the terms, so the rounding follows torch's.

    Args:
      w: (p+1,) coefficients, constant term first.
      x: (n,) inputs.

    Returns:
      (n,) predictions.

    Examples:
      >>> import jax.numpy as jnp
      >>> polynomial(jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0])).tolist()
      [17.0]
    """
    terms = jnp.stack([w[i] * x**i for i in range(w.shape[0])])  # (p+1, n)
    return jnp.sum(terms, axis=0)  # (n,)


MODELS = ("linear", "poly")


def n_params(model: str, degree: int = 2) -> int:
    """Length of the parameter vector of a model named in `MODELS`."""
    _checks.choice("model", model, MODELS)
    if model == "linear":
        return 2
    return _checks.nonnegative_int("degree", degree) + 1


def get(model: str):
    """The model function named ``model`` (``"linear"`` or ``"poly"``)."""
    return {"linear": linear, "poly": polynomial}[_checks.choice("model", model, MODELS)]


def check_params(model: str, w, degree: int = 2):
    """Check a parameter vector for the named model; returns it as a numpy array."""
    return _checks.params("w", w, n_params(model, degree), model)
