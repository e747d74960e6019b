"""Input checks shared by `functional_fit` and `parity`.

Every public entry point checks its arguments here, on concrete values, before anything is
traced or turned into a tensor, so a bad input gets one clear `InputError` that names the
argument instead of a traceback from deep inside JAX or torch.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np


class InputError(ValueError):
    """A bad argument. The message names the argument and says what was expected."""


def positive_int(name: str, value) -> int:
    """`value` as a Python int > 0, or InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, Integral | np.integer):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value}")
    return int(value)


def nonnegative_int(name: str, value) -> int:
    """`value` as a Python int >= 0, or InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, Integral | np.integer):
        raise InputError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise InputError(f"{name} must be a non-negative integer, got {value}")
    return int(value)


def finite_float(name: str, value) -> float:
    """`value` as a finite Python float, or InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, Real | np.floating | np.integer):
        raise InputError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, got {value}")
    return value


def positive_float(name: str, value) -> float:
    """`value` as a finite Python float > 0, or InputError naming `name`."""
    value = finite_float(name, value)
    if value <= 0:
        raise InputError(f"{name} must be positive, got {value}")
    return value


def nonnegative_float(name: str, value) -> float:
    """`value` as a finite Python float >= 0, or InputError naming `name`."""
    value = finite_float(name, value)
    if value < 0:
        raise InputError(f"{name} must be non-negative, got {value}")
    return value


def flag(name: str, value) -> bool:
    """`value` as a bool (True or False, or numpy's), or InputError naming `name`."""
    if not isinstance(value, bool | np.bool_):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def vector(name: str, value, dtype=None) -> np.ndarray:
    """`value` as a non-empty, finite, 1-D numpy array; InputError naming `name` otherwise.

    Accepts numpy arrays, JAX arrays, torch tensors (detached) and sequences; `dtype` casts.
    """
    return array(name, value, ndims=(1,), dtype=dtype)


def array(name: str, value, ndims=(1,), dtype=None) -> np.ndarray:
    """`value` as a non-empty, finite numpy array of numbers with ndim in `ndims` (None: any
    ndim from 1).

    Accepts numpy arrays, JAX arrays, torch tensors (detached) and sequences; refuses complex
    numbers, objects and strings, naming `name`. `dtype` casts the result.
    """
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} must be an array of numbers: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if (arr.ndim < 1) if ndims is None else (arr.ndim not in ndims):
        want = ("at least 1-D, (n, ...)" if ndims is None else "1-D of shape (n,)"
                if ndims == (1,) else " or ".join(f"{d}-D" for d in ndims))
        raise InputError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty: need at least one data point")
    if dtype is not None:
        arr = arr.astype(dtype)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        at = int(bad[0]) if bad.size == 1 else tuple(int(i) for i in bad)
        raise InputError(f"{name} contains a non-finite value ({arr[tuple(bad)]}) at index {at}")
    return arr


def data(x, y, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Check a data set: x and y 1-D, same length, non-empty, finite. Returns numpy arrays."""
    return points(x, y, ndims=(1,), dtype=dtype)


def points(x, y, ndims=(1, 2), dtype=None, *, names=("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """Check inputs and targets: numeric, finite, non-empty arrays with ndim in `ndims` and the
    same number of points (their first axis). Returns numpy arrays.

    Args:
      x: (n,) or (n, d) inputs; y: (n,) or (n, k) targets (integer labels allowed).
      ndims: the numbers of dimensions allowed, for both (None: any from 1: images
        (n, C, H, W), sequences (n, L, E)).
      dtype: cast both to it (None: keep their dtypes).
      names: the two arguments' names in messages.
    """
    x = array(names[0], x, ndims=ndims, dtype=dtype)
    y = array(names[1], y, ndims=ndims, dtype=dtype)
    same_points(x.shape, y.shape, names)
    return x, y


def same_points(x_shape, y_shape, names=("x", "y")) -> None:
    """Refuse inputs and targets of different numbers of points (their first axis)."""
    if tuple(x_shape)[:1] != tuple(y_shape)[:1]:
        raise InputError(f"{names[0]} and {names[1]} must have the same number of points, got "
                         f"{names[0]} of shape {tuple(x_shape)} and {names[1]} of shape "
                         f"{tuple(y_shape)}")


def least_squares_data(x, y, degree: int = 1) -> None:
    """Refuse data whose least-squares fit (a line, or a polynomial of `degree`) its dtype
    cannot compute: x without two distinct values, x whose spread is too small (its squares,
    or its powers up to 2 * degree, underflow) or x or y too large (they overflow).

    Without this the fit returns NaN, or a line of slope 0, with no error. Accepts numpy
    arrays, JAX arrays and torch tensors of shape (n,), already checked by `data`.
    """
    x, y = (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for v in (x, y))
    if x.shape[0] < 2 or np.all(x == x[0]):
        raise InputError("x must hold at least two distinct values for a least-squares fit")
    power = 2 * max(1, degree)
    with np.errstate(all="ignore"):
        for name, v in (("x", x), ("y", y)):
            d = v - np.mean(v)
            if not (np.isfinite(np.mean(d * d)) and np.isfinite(np.max(np.abs(v)) ** power)):
                raise InputError(
                    f"{name}: its values (up to {np.max(np.abs(v)):.3g}) are too large for a "
                    f"least-squares fit in {v.dtype}: their {'squares' if power == 2 else 'powers'}"
                    f" overflow; rescale {name}")
        spread = float(np.max(x) - np.min(x))
        d = x - np.mean(x)
        if np.mean(d * d) < np.finfo(x.dtype).tiny or spread**power < np.finfo(x.dtype).tiny:
            raise InputError(
                f"x: the spread of its values ({spread:.3g}) is too small to fit in {x.dtype} "
                f"(their {'squares' if power == 2 else 'powers'} underflow); rescale x")


def same_shape(y_hat_shape, y_shape) -> None:
    """Refuse silent broadcasting between predictions and targets (the (n, 1) vs (n,) trap)."""
    if tuple(y_hat_shape) != tuple(y_shape):
        raise InputError(
            f"y_hat and y must have the same shape, got y_hat {tuple(y_hat_shape)} and y "
            f"{tuple(y_shape)}; reshape one of them instead of relying on broadcasting"
        )


def params(name: str, w, n_params: int, model_name: str) -> np.ndarray:
    """Check a parameter vector of length `n_params` for `model_name`."""
    w = vector(name, w)
    if w.shape != (n_params,):
        raise InputError(
            f"{name} must have shape ({n_params},) for the {model_name} model, got {w.shape}"
        )
    return w


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its type and its first line.

    Examples:
      >>> first_line(RuntimeError("mat1 and mat2 shapes cannot be multiplied\\n(details)"))
      'RuntimeError: mat1 and mat2 shapes cannot be multiplied'
    """
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def choice(name: str, value, options) -> str:
    """`value` if it is one of `options`, InputError naming `name` otherwise."""
    if value not in options:
        raise InputError(f"{name} must be one of {', '.join(map(str, options))}; got {value!r}")
    return value


def devices(name: str, value) -> list:
    """`value` as a non-empty list of distinct JAX devices; all of ``jax.devices()`` for None."""
    import jax

    if value is None:
        return list(jax.devices())
    try:
        value = list(value)
    except TypeError:
        raise InputError(f"{name} must be a list of JAX devices (from jax.devices()), got "
                         f"{type(value).__name__}") from None
    if not value:
        raise InputError(f"{name} must name at least one device, got an empty list")
    for i, d in enumerate(value):
        if not isinstance(d, jax.Device):
            raise InputError(f"{name}[{i}] must be a JAX device (from jax.devices()), got {d!r}")
    if len(set(value)) != len(value):
        raise InputError(f"{name} names a device more than once")
    return value


# --------------------------------------------------------------------------- outputs


class DivergenceError(InputError):
    """A fit's loss (or its final parameters) became non-finite: it diverged or overflowed.

    An `InputError` because the cause is a setting the caller chose (a learning rate too large
    for the data's scale, data that overflows a high-degree polynomial), and so the command
    line reports it in one line like any other bad input.

    Attributes:
      step: the first step (from 0) whose loss is non-finite; ``steps`` when only the
        parameters after the last step are.
      loss: that step's loss (nan or ±inf), or None when only the final parameters are.
      result: what the fit computed, non-finite values included (a `FitResult` on the JAX
        side; the (steps+1, p+1) path up to the failing step on the torch side).
      where: the fit's name (``"adam_sgd"``), or None.
      what: what went non-finite, as the message says it ("the loss became nan at step 1,
        counting steps from 0"), so that a caller can give its own advice; or None.
    """

    def __init__(self, message: str, *, step: int, loss=None, result=None, where=None,
                 what=None):
        super().__init__(message)
        self.step = step
        self.loss = loss
        self.result = result
        self.where = where
        self.what = what


def first_nonfinite(losses) -> int | None:
    """Index of the first non-finite value of `losses` (steps,), or None when all are finite.

    Examples:
      >>> first_nonfinite([1.0, 2.0, float("inf"), float("nan")])
      2
      >>> first_nonfinite([1.0]) is None
      True
    """
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses, dtype=np.float64)))
    return int(bad[0]) if bad.size else None


def divergence_error(where: str, step: int, loss, lr, result=None) -> DivergenceError:
    """The `DivergenceError` of fit `where` whose loss at `step` is `loss` (None: final params).

    `loss` is ``"non-finite"`` for a fit that kept no losses (``trace=False``), only the step.
    """
    if loss is None:
        what = f"the parameters became non-finite after the last step (step {step - 1})"
    else:
        loss = loss if isinstance(loss, str) else float(loss)  # "non-finite": no losses kept
        what = f"the loss became {loss} at step {step}"
    what = f"{what}, counting steps from 0"
    setting = "the learning rate" if lr is None else f"lr={float(lr):g}"
    return DivergenceError(
        f"{where}: the fit diverged: {what}; {setting} is too large for the data's scale, or "
        "the model overflows on the data: lower it or rescale x and y",
        step=step,
        loss=loss,
        result=result,
        where=where,
        what=what,
    )


def check_finite_fit(where: str, losses, params, lr, result=None) -> None:
    """Raise `DivergenceError` when a finished fit has a non-finite loss or final parameters.

    Args:
      where: the fit's name for the message (``"gradient_descent"``).
      losses: (steps,) each step's loss.
      params: (p+1,) the parameters after the last step.
      lr: the learning rate, named in the message.
      result: attached to the error as ``result``.
    """
    losses = np.asarray(losses, dtype=np.float64).ravel()
    step = first_nonfinite(losses)
    if step is not None:
        raise divergence_error(where, step, losses[step], lr, result)
    if not np.all(np.isfinite(np.asarray(params, dtype=np.float64))):
        raise divergence_error(where, losses.size, None, lr, result)
