"""Precision policy: which dtypes a fit uses, and how float64 is asked of JAX.

JAX computes in float32 unless its 64-bit mode is on. Importing `functional_fit` or `parity`
never changes that global switch. Ask for float64 explicitly:

    >>> import functional_fit as ff
    >>> with ff.float64():                     # JAX's 64-bit mode, for this block only
    ...     x, y = ff.lecture_data()
    ...     res = ff.fit.gradient_descent(ff.zeros(2, "float64"), x, y, lr=6.0, steps=50)

or turn it on for the whole program (`jax.config.update("jax_enable_x64", True)`, or the
environment variable ``JAX_ENABLE_X64=1``). A float64 request without 64-bit mode fails with
`PrecisionError`; nothing is silently computed in float32.

Modes (`DTYPES`):
- ``"lecture"``: float32 parameters, float64 data, as in the lecture (its ``torch.zeros`` params
  meet ``torch.from_numpy`` data). Predictions and losses are float64; gradients are rounded to
  float32 when they reach the parameters. Needs 64-bit mode for the data.
- ``"float64"``: float64 throughout. Needs 64-bit mode.
- ``"float32"``: float32 throughout. Works in either mode.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from functional_fit.checks import choice

DTYPES = ("lecture", "float64", "float32")


class PrecisionError(RuntimeError):
    """float64 was asked for but JAX's 64-bit mode is off."""


class Policy(NamedTuple):
    """The dtypes of one precision mode, as numpy dtype names."""

    params: str  # dtype of the parameter vector and the optimizer state
    data: str  # dtype of x and y


POLICIES = {
    "lecture": Policy(params="float32", data="float64"),
    "float64": Policy(params="float64", data="float64"),
    "float32": Policy(params="float32", data="float32"),
}


def policy(dtype: str) -> Policy:
    """The `Policy` of a mode name in `DTYPES`; InputError naming ``dtype`` otherwise."""
    return POLICIES[choice("dtype", dtype, DTYPES)]


def x64_enabled() -> bool:
    """Whether JAX currently computes with 64-bit types."""
    return bool(jax.config.read("jax_enable_x64"))


def float64():
    """Context manager: JAX's 64-bit mode inside the block, the previous setting after it."""
    return jax.enable_x64(True)


def promoted_dtype(*arrays):
    """The dtype JAX's standard promotion gives `arrays` (float32 with float64: float64),
    whatever promotion mode the program chose.

    The lecture's float32 parameters meet float64 data and predict in float64, as torch's do
    (its ``torch.zeros`` parameters, its ``torch.from_numpy`` data). The models cast to this
    dtype where parameters meet data, so the promotion is a choice the code states: under
    JAX's strict promotion mode (``jax_numpy_dtype_promotion="strict"``, as the tests run) an
    unmeant mix still fails.

    Examples:
      >>> import numpy as np
      >>> with float64():
      ...     print(promoted_dtype(np.zeros(2, np.float32), np.zeros(3)))
      float64
    """
    import jax.numpy as jnp

    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*arrays)


def default_float(value):
    """`value` as a JAX scalar of JAX's default float (float64 in 64-bit mode), the dtype of a
    Python float: torch keeps its learning rates as Python floats, in double."""
    import jax.numpy as jnp

    return jnp.asarray(value, dtype=jnp.result_type(float))


def torch_matmul_precision():
    """A context in which float32 matrix products are computed as torch computes them.

    XLA's default float32 matrix product on an NVIDIA GPU may use TF32 (a 10-bit mantissa):
    a network's loss surface then differs from torch's by about 3e-4 (BENCHMARKS.md, GPU),
    where torch, by default, does not use TF32 for float32 products. This is
    ``jax.default_matmul_precision("highest")``, unless the program has chosen a precision
    (``jax_default_matmul_precision``), which is then kept. On the CPU it changes nothing.
    """
    chosen = getattr(jax.config, "jax_default_matmul_precision", None)
    return jax.default_matmul_precision(chosen or "highest")


def require(dtype: str) -> Policy:
    """The policy of `dtype`, after checking that JAX can honour it.

    Raises:
      PrecisionError: when `dtype` needs float64 and JAX's 64-bit mode is off.
    """
    pol = policy(dtype)
    if "float64" in pol and not x64_enabled():
        raise PrecisionError(
            f"dtype {dtype!r} needs float64, but JAX's 64-bit mode is off. Run inside "
            "`with functional_fit.float64():`, or call "
            "`jax.config.update('jax_enable_x64', True)` at start-up, "
            "or set JAX_ENABLE_X64=1 in the environment."
        )
    return pol


def check_array_dtype(name: str, arr) -> None:
    """Refuse a float64 numpy array when JAX would truncate it to float32 without a word."""
    if np.asarray(arr).dtype == np.float64 and not x64_enabled():
        raise PrecisionError(
            f"{name} is float64 but JAX's 64-bit mode is off, so JAX would compute in float32. "
            "Run inside `with functional_fit.float64():`, or call "
            "`jax.config.update('jax_enable_x64', True)` at start-up, or set JAX_ENABLE_X64=1 "
            "in the environment; or pass float32 data."
        )


__all__ = [
    "DTYPES",
    "POLICIES",
    "Policy",
    "PrecisionError",
    "check_array_dtype",
    "default_float",
    "promoted_dtype",
    "float64",
    "policy",
    "require",
    "x64_enabled",
    "zeros",
]


def zeros(size: int, dtype: str = "float64"):
    """A JAX zero parameter vector of shape (size,) in the parameter dtype of mode `dtype`.

    The lecture starts every fit from zeros (``torch.zeros(p + 1, 1)``).
    """
    import jax.numpy as jnp

    from functional_fit.checks import positive_int

    pol = require(dtype)
    return jnp.zeros(positive_int("size", size), dtype=pol.params)
