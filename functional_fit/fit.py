"""Fitting: gradient descent, minibatch SGD and Adam, each whole fit one compiled call.

Three layers, from the inside out:

- ``*_step`` functions: one update, ``step(w, state, batch) -> (w, state, loss)``.
- ``*_scan`` functions: a whole fit as one `jax.lax.scan` over steps. Pure and traceable; no
  input checks; `jax.vmap` them over learning rates, initial parameters or batch orders
  (`functional_fit.sweep` does).
- `gradient_descent`, `stochastic_gradient_descent`, `adam_sgd`: check their inputs on concrete
  values, then call the jit-compiled scan. The names mirror `parity.fit`, the lecture's torch
  loops. A second call with inputs of the same shapes and dtypes does not compile again.

Every fit returns a `FitResult`: final parameters, the path of parameters (one row before the
first step and one after each step) and the loss of every step's batch, taken before that
step's update, as the lecture's loops compute it.

Divergence: the checked wrappers raise `DivergenceError` (an `InputError`) when a loss or the
final parameters are non-finite, naming the first step where the loss was (`first_nonfinite`);
the error carries the whole `FitResult` as ``.result``. The ``*_scan`` and ``*_jit`` functions
do not check: a sweep over learning rates wants the non-finite rows, not an exception.
``parity.fit`` raises the same error at the same step.

Step sizes follow the lecture: GD uses lr / (i + 1) at step i; SGD uses lr / (e + 1) for every
batch of epoch e; Adam (optax) uses a constant lr.

Batch order: SGD and Adam take `order`, shape (epochs, n), one permutation of the data per
epoch (`functional_fit.data.batch_order`). Epoch e is cut into ceil(n / B) consecutive batches;
the last is short when B does not divide n, exactly as ``DataLoader(drop_last=False)`` makes it.
To keep shapes static under `lax.scan`, a short batch is padded and masked: the loss is the
mean over its real points only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_fit import _checks, data as _data, losses as _losses, models as _models
from functional_fit._checks import DivergenceError, first_nonfinite  # noqa: F401 (re-exported)
from functional_fit.precision import check_array_dtype


class FitResult(NamedTuple):
    """What a fit returns."""

    params: jax.Array  # shape=(p+1,) the parameters after the last step
    path: jax.Array  # shape=(steps+1, p+1) the parameters before the first and after every step
    losses: jax.Array  # shape=(steps,) each step's batch loss, before its update


def _float(value):
    """A scalar in JAX's default float (float64 in 64-bit mode), as torch keeps Python floats."""
    return jnp.asarray(value, dtype=jnp.result_type(float))


# --------------------------------------------------------------------------- one step


def gd_step(w, i, x, y, lr, *, model, loss):
    """One step of gradient descent with the lecture's decaying step lr / (i + 1).

    Args:
      w: (p+1,) parameters.
      i: () the step number, from 0.
      x, y: (n,) data; the whole data set, or one batch.
      lr: () the base learning rate.
      model, loss: see `functional_fit.models`, `functional_fit.losses`.

    Returns:
      (w, loss): the updated (p+1,) parameters and the () loss before the update.
    """
    value, g = jax.value_and_grad(lambda w: loss(model(w, x), y))(w)
    scale = (_float(lr) / (i + 1)).astype(w.dtype)  # torch: Python float, then the param dtype
    return w - scale * g, value


def sgd_step(w, epoch, x, y, mask, lr, *, model, loss):
    """One minibatch step with step size lr / (epoch + 1); `mask` (B,) marks real points."""
    value, g = jax.value_and_grad(lambda w: loss(model(w, x), y, mask))(w)
    scale = (_float(lr) / (epoch + 1)).astype(w.dtype)
    return w - scale * g, value


def adam_step(w, opt_state, x, y, mask, *, optimizer, model, loss):
    """One optax step: ``(w, opt_state, batch) -> (w, opt_state, loss)``."""
    value, g = jax.value_and_grad(lambda w: loss(model(w, x), y, mask))(w)
    updates, opt_state = optimizer.update(g, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, value


# --------------------------------------------------------------------------- batches


def batches(order, batch_size: int):
    """Cut a batch order into padded batches, as ``DataLoader(drop_last=False)`` cuts it.

    Args:
      order: (E, n) int, one permutation of range(n) per epoch. May be traced (vmap over it).
      batch_size: B, a Python int.

    Returns:
      idx: (E * nb, B) indices into the data, nb = ceil(n / B); padding points at index 0.
      mask: (E * nb, B) bool, False on padding, or None when B divides n (no padding).
      epoch: (E * nb,) int, the epoch of each batch.
    """
    n_epochs, n = order.shape
    nb = _data.n_batches(n, batch_size)
    pad = nb * batch_size - n
    idx = jnp.pad(order, ((0, 0), (0, pad))).reshape(n_epochs * nb, batch_size)  # (E*nb, B)
    epoch = jnp.repeat(jnp.arange(n_epochs), nb)  # (E*nb,)
    if pad == 0:
        return idx, None, epoch
    real = (jnp.arange(nb * batch_size) < n).reshape(nb, batch_size)  # (nb, B)
    return idx, jnp.tile(real, (n_epochs, 1)), epoch  # (E*nb, B)


def _with_start(w0, ws):
    return jnp.concatenate([w0[None], ws])  # (steps+1, p+1)


# --------------------------------------------------------------------------- whole fits


def gd_scan(w0, x, y, lr, *, model, loss, steps: int) -> FitResult:
    """Full-batch gradient descent, `steps` steps of `gd_step`, as one `lax.scan`.

    Args:
      w0: (p+1,) initial parameters; their dtype is the dtype of the parameters throughout.
      x, y: (n,) data.
      lr: () base learning rate (traced, so it can be vmapped).
      model, loss: functions (static).
      steps: number of steps (static).
    """

    def body(w, i):
        w, value = gd_step(w, i, x, y, lr, model=model, loss=loss)
        return w, (w, value)

    w, (ws, values) = jax.lax.scan(body, w0, jnp.arange(steps))
    return FitResult(w, _with_start(w0, ws), values)


def sgd_scan(w0, x, y, order, lr, *, model, loss, batch_size: int) -> FitResult:
    """Minibatch SGD over `order` (E, n), lr / (e + 1) in epoch e, as one `lax.scan`."""
    idx, mask, epoch = batches(order, batch_size)
    mask = None if mask is None else mask.astype(y.dtype)

    def body(w, batch):
        i, m, e = batch
        w, value = sgd_step(w, e, x[i], y[i], m, lr, model=model, loss=loss)
        return w, (w, value)

    w, (ws, values) = jax.lax.scan(body, w0, (idx, mask, epoch))
    return FitResult(w, _with_start(w0, ws), values)


def adam_scan(w0, x, y, order, lr, *, model, loss, batch_size: int) -> FitResult:
    """Minibatch Adam (``optax.adam(lr)``, torch's defaults) over `order` (E, n), one `lax.scan`."""
    idx, mask, _ = batches(order, batch_size)
    mask = None if mask is None else mask.astype(y.dtype)
    optimizer = optax.adam(lr)

    def body(carry, batch):
        w, opt_state = carry
        i, m = batch
        w, opt_state, value = adam_step(
            w, opt_state, x[i], y[i], m, optimizer=optimizer, model=model, loss=loss
        )
        return (w, opt_state), (w, value)

    (w, _), (ws, values) = jax.lax.scan(body, (w0, optimizer.init(w0)), (idx, mask))
    return FitResult(w, _with_start(w0, ws), values)


gd_jit = jax.jit(gd_scan, static_argnames=("model", "loss", "steps"))
sgd_jit = jax.jit(sgd_scan, static_argnames=("model", "loss", "batch_size"))
adam_jit = jax.jit(adam_scan, static_argnames=("model", "loss", "batch_size"))


# --------------------------------------------------------------------------- checked entry points

_KNOWN_SIZES = {_models.linear: 2}


def check_inputs(w0, x, y, model, lr):
    """Check what every fit takes; returns (w0, x, y) as JAX arrays and lr as a float."""
    x, y = _checks.data(x, y)
    w0 = _checks.vector("w0", w0)
    if model in _KNOWN_SIZES and w0.shape != (_KNOWN_SIZES[model],):
        raise _checks.InputError(
            f"w0 must have shape ({_KNOWN_SIZES[model]},) for the linear model, got {w0.shape}"
        )
    for name, arr in (("w0", w0), ("x", x), ("y", y)):
        check_array_dtype(name, arr)
    lr = _checks.positive_float("lr", lr)
    return jnp.asarray(w0), jnp.asarray(x), jnp.asarray(y), lr


def _finite(where: str, result: FitResult, lr: float) -> FitResult:
    """`result`, or `DivergenceError` at the first step whose loss is non-finite."""
    _checks.check_finite_fit(where, result.losses, result.params, lr, result=result)
    return result


def _check_batching(order, n, batch_size):
    batch_size = _checks.positive_int("batch_size", batch_size)
    order = _data.check_order(order, n)
    return jnp.asarray(order), batch_size


def gradient_descent(
    w0, x, y, *, model=_models.linear, loss=_losses.l1, lr: float = 1.0, steps: int = 100
) -> FitResult:
    """Full-batch gradient descent with step lr / (i + 1), the lecture's ``gradient_descent``.

    Args:
      w0: (p+1,) initial parameters (their dtype sets the parameters' dtype).
      x, y: (n,) data.
      model: ``model(w, x) -> (n,)``; default `functional_fit.models.linear`.
      loss: ``loss(y_hat, y) -> ()``; default `functional_fit.losses.l1`.
      lr: base learning rate, > 0.
      steps: number of steps, > 0.

    Returns:
      `FitResult` with path (steps+1, p+1) and losses (steps,).

    Raises:
      InputError: a bad argument, named in the message.
      DivergenceError: a loss or the final parameters are non-finite; ``.step`` is the first
        step (from 0) with a non-finite loss, ``.result`` the whole `FitResult`.

    Examples:
      >>> import functional_fit as ff
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     res = ff.fit.gradient_descent(ff.zeros(2, "lecture"), x, y, lr=6.0, steps=50)
      >>> [round(float(v), 4) for v in res.params]
      [-0.2733, 3.4818]
    """
    w0, x, y, lr = check_inputs(w0, x, y, model, lr)
    steps = _checks.positive_int("steps", steps)
    res = gd_jit(w0, x, y, _float(lr), model=model, loss=loss, steps=steps)
    return _finite("gradient_descent", res, lr)


def stochastic_gradient_descent(
    w0, x, y, order, *, model=_models.linear, loss=_losses.l1, lr: float = 1.0, batch_size: int = 10
) -> FitResult:
    """Minibatch SGD, the lecture's ``stochastic_gradient_descent``: lr / (e + 1) in epoch e.

    Args:
      w0: (p+1,) initial parameters.
      x, y: (n,) data.
      order: (epochs, n) batch order from `functional_fit.data.batch_order`.
      model, loss, lr: as in `gradient_descent`.
      batch_size: B > 0; the last batch of an epoch is short when B does not divide n.

    Returns:
      `FitResult` with path (steps+1, p+1), steps = epochs * ceil(n / B).

    Raises:
      InputError, DivergenceError: as in `gradient_descent`.
    """
    w0, x, y, lr = check_inputs(w0, x, y, model, lr)
    order, batch_size = _check_batching(order, x.shape[0], batch_size)
    res = sgd_jit(w0, x, y, order, _float(lr), model=model, loss=loss, batch_size=batch_size)
    return _finite("stochastic_gradient_descent", res, lr)


def adam_sgd(
    w0, x, y, order, *, model=_models.linear, loss=_losses.l1, lr: float = 0.1, batch_size: int = 10
) -> FitResult:
    """Minibatch Adam through optax, the lecture's ``adam_sgd`` (torch.optim.Adam defaults).

    Arguments and result as in `stochastic_gradient_descent`; the step size is constant.
    """
    w0, x, y, lr = check_inputs(w0, x, y, model, lr)
    order, batch_size = _check_batching(order, x.shape[0], batch_size)
    res = adam_jit(w0, x, y, order, _float(lr), model=model, loss=loss, batch_size=batch_size)
    return _finite("adam_sgd", res, lr)


OPTIMIZERS = ("gd", "sgd", "adam")


def run(optimizer: str, w0, x, y, *, model=_models.linear, loss=_losses.l1, lr: float,
        steps: int | None = None, order=None, batch_size: int = 10) -> FitResult:
    """The checked fit named `optimizer`, mirroring `parity.fit.run`.

    ``"gd"`` is `gradient_descent` for `steps` steps; ``"sgd"`` and ``"adam"`` are
    `stochastic_gradient_descent` and `adam_sgd` over the batch `order` (epochs, n).
    """
    _checks.choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "gd":
        return gradient_descent(w0, x, y, model=model, loss=loss, lr=lr, steps=steps)
    fit = stochastic_gradient_descent if optimizer == "sgd" else adam_sgd
    return fit(w0, x, y, order, model=model, loss=loss, lr=lr, batch_size=batch_size)


def n_steps(n: int, epochs: int, batch_size: int) -> int:
    """Steps of a minibatch fit: epochs * ceil(n / batch_size)."""
    return epochs * math.ceil(n / batch_size)


def full_loss(w, x, y, *, model=_models.linear, loss=_losses.l1):
    """The loss of parameters `w` (p+1,) on the whole data (n,), as a Python float."""
    return float(loss(model(jnp.asarray(w), jnp.asarray(x)), jnp.asarray(y)))


def as_numpy(result: FitResult) -> FitResult:
    """The same result with numpy arrays (for printing, JSON and comparison)."""
    return FitResult(*(np.asarray(a) for a in result))
