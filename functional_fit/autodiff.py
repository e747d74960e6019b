"""The lecture's autodiff demo (cells 19-29): z(θ) = (1 - log(1 + e^θ))^2 and dz/dθ.

Three ways to the derivative: `jax.grad` (here), torch's ``backward`` (`parity.autodiff`) and
the hand formula `z_derivative`. `graph` shows what JAX differentiates: the jaxpr of the
gradient, the functional counterpart of torch's ``grad_fn.next_functions`` chain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def z(theta):
    """z(θ) = (1 - log(1 + exp(θ)))^2; any shape, elementwise."""
    return (1 - jnp.log(1 + jnp.exp(theta))) ** 2


#: dz/dθ by reverse-mode autodiff; scalar θ -> scalar.
dz = jax.grad(z)


def z_derivative(theta):
    """The hand-derived dz/dθ = -2 (1 - log(1 + e^θ)) e^θ / (1 + e^θ) (cell 28), in numpy."""
    return -2 * (1 - np.log(1 + np.exp(theta))) * np.exp(theta) / (1.0 + np.exp(theta))


def hand(theta: float = 1.0):
    """(z(θ), dz/dθ) as Python floats from the formulas alone, in numpy float64: no autodiff."""
    return float((1 - np.log(1 + np.exp(theta))) ** 2), float(z_derivative(theta))


def value_and_grad(theta: float = 1.0):
    """(z(θ), dz/dθ) as Python floats, computed by JAX in its default float dtype."""
    value, grad = jax.value_and_grad(z)(jnp.asarray(theta, dtype=jnp.result_type(float)))
    return float(value), float(grad)


def graph(theta: float = 1.0) -> str:
    """The jaxpr of ``jax.grad(z)`` at θ: the computation JAX builds for the derivative."""
    return str(jax.make_jaxpr(dz)(jnp.asarray(theta, dtype=jnp.result_type(float))))
