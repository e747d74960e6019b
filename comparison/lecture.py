"""The whole lecture, run in both frameworks: every step by `functional_fit` and by `parity`.

`run` takes a data set and a precision mode and returns, for each step of the lecture, what
JAX computed, what torch computed, how far apart they are, and (on the lecture's own data)
what the lecture printed. ``functional-fit lecture`` prints it; the tests check it.

Steps (`STEPS`), with the lecture's settings:
  ols               analytic MSE fit, standard units (cells 6-7)
  l1_at_zero        L1 loss and its gradient at w = 0 (cells 40-43)
  autodiff          z(θ) = (1 - log(1 + e^θ))^2 and dz/dθ at θ = 1 (cells 19-29)
  gd_abs_linear     linear model, L1, gradient descent, lr 6, 50 steps (cell 49)
  gd_abs_quad       quadratic model, L1, gradient descent, lr 10, 500 steps (cell 54)
  sgd_abs_quad      quadratic, L1, SGD, lr 1, 20 epochs, batch 10 (cell 60)
  adam_abs_quad     quadratic, L1, Adam, lr 0.1, 100 epochs, batch 10 (cell 64)
  adam_abs_poly12   degree 12, L1, Adam, lr 0.01, 500 epochs, batch 10 (cell 65)

The two sides are independent until they are compared: `run_jax` and `run_torch` compute
them, `combine` puts them side by side, and `run` does all three, the JAX side in a second
process (`comparison.background`) where more than two cores make that pay.

SGD and Adam use one batch order made from ``order_seed`` for both frameworks. The lecture
shuffled with an unseeded ``DataLoader``, so its printed SGD and Adam numbers come from a
batch order nobody can reproduce; they are shown for reference, not compared.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch

import parity
from functional_fit import autodiff, checks as _checks, data, fit, losses, models, ols, registry
from functional_fit.precision import policy, require
from comparison import background
from parity.data import torch_dtype


class Step(NamedTuple):
    """The settings of one fitting step of the lecture."""

    model: str  # "linear" or "poly"
    degree: int  # polynomial degree (1 for the linear model)
    optimizer: str  # "gd", "sgd" or "adam"
    lr: float  # base learning rate
    steps: int = 0  # GD steps
    epochs: int = 0  # SGD/Adam epochs
    batch_size: int = 0  # SGD/Adam batch size
    cell: int = 0  # the lecture's cell


FITS = {
    "gd_abs_linear": Step("linear", 1, "gd", 6.0, steps=50, cell=49),
    "gd_abs_quad": Step("poly", 2, "gd", 10.0, steps=500, cell=54),
    "sgd_abs_quad": Step("poly", 2, "sgd", 1.0, epochs=20, batch_size=10, cell=60),
    "adam_abs_quad": Step("poly", 2, "adam", 0.1, epochs=100, batch_size=10, cell=64),
    "adam_abs_poly12": Step("poly", 12, "adam", 0.01, epochs=500, batch_size=10, cell=65),
}
STEPS = ("ols", "l1_at_zero", "autodiff", *FITS)

#: What the lecture printed (cells 7, 27, 41-43, 49, 54, 60, 64, 65), on its own data.
#: ``reproducible`` is False where it came from an unseeded DataLoader shuffle.
PRINTED = {
    "ols": {"params": [-0.26649881, 2.64187294], "reproducible": True},
    "l1_at_zero": {"value": 1.93830832356722, "grad": [-0.1400, -0.4201], "reproducible": True},
    "autodiff": {"grad": 0.4580252880326174, "reproducible": True},
    "gd_abs_linear": {"params": [-0.27327734, 3.4817758], "loss": 1.2089461825984116,
                      "reproducible": True},
    "gd_abs_quad": {"params": [1.039725, 3.1892092, -3.9294097], "loss": 0.7172377433786304,
                    "reproducible": True},
    "sgd_abs_quad": {"params": [0.9064927, 3.1799238, -3.5135746], "loss": 0.7305556363312209,
                     "reproducible": False},
    "adam_abs_quad": {"params": [1.082267, 2.9985147, -3.742899], "loss": 0.7377409619912195,
                      "reproducible": False},
    "adam_abs_poly12": {"loss": 0.5377868130145049, "reproducible": False},
}


def _floats(a) -> list[float]:
    return [float(v) for v in np.asarray(a).ravel()]


def _max_abs_diff(a: dict, b: dict) -> float:
    """Largest |a - b| over the numbers two sides reported."""
    diffs = [
        np.max(np.abs(np.asarray(a[k], dtype=np.float64) - np.asarray(b[k], dtype=np.float64)))
        for k in a
        if k in b
    ]
    return float(max(diffs))


# --------------------------------------------------------------------------- the JAX side


def _jax_fit(step: Step, x, y, order, params_dtype):
    entry = registry.model(step.model)
    model = entry.fn
    w0 = jnp.zeros(entry.n_params(step.degree), dtype=params_dtype)
    res = fit.as_numpy(fit.run(step.optimizer, w0, x, y, model=model, loss=losses.l1, lr=step.lr,
                               steps=step.steps, order=order, batch_size=step.batch_size))
    loss = fit.full_loss(res.params, x, y, model=model, loss=losses.l1)
    return {"params": _floats(res.params), "loss": loss}, res.path


@jax.jit
def _mse_linear(w, x, y):
    return losses.mse(models.linear(w, x), y)


_l1_linear_value_and_grad = jax.jit(jax.value_and_grad(
    lambda w, x, y: losses.l1(models.linear(w, x), y)))


def _jax_step(name, x, y, pol):
    if name == "ols":
        w = ols.ols(x, y)
        return {"params": _floats(w), "loss": float(_mse_linear(w, x, y))}
    if name == "l1_at_zero":
        value, g = _l1_linear_value_and_grad(jnp.zeros(2, dtype=pol.params), x, y)
        return {"value": float(value), "grad": _floats(g)}
    if name == "autodiff":
        value, grad = autodiff.value_and_grad(1.0)
        return {"value": value, "grad": grad}
    raise KeyError(name)


# --------------------------------------------------------------------------- the torch side


def _torch_fit(step: Step, tx, ty, order, params_dtype):
    model = parity.registry.module(step.model, step.degree, dtype=params_dtype)
    path = parity.fit.run(step.optimizer, model, parity.losses.l1, tx, ty, lr=step.lr,
                          steps=step.steps, order=order, batch_size=step.batch_size)
    loss = parity.losses.l1(model(tx), ty).item()
    return {"params": _floats(model.numpy_parameters()), "loss": loss}, path


def _torch_step(name, tx, ty, params_dtype):
    if name == "ols":
        w = parity.ols.ols(tx, ty)
        return {"params": _floats(w), "loss": parity.losses.mse(parity.models.linear(w, tx), ty).item()}
    if name == "l1_at_zero":
        model = parity.SimpleLinearModel(dtype=params_dtype)
        loss = parity.losses.l1(model(tx), ty)
        loss.backward()
        return {"value": loss.item(), "grad": _floats(model.w.grad)}
    if name == "autodiff":
        value, grad = parity.autodiff.value_and_grad(1.0)
        return {"value": value, "grad": grad}
    raise KeyError(name)


# --------------------------------------------------------------------------- both


def check_scale(x, y, dtype: str = "float64") -> None:
    """Refuse data too large for the lecture in `dtype`: it squares residuals and deviations.

    The analytic fit (its standard deviations) and every MSE sum n squares; beyond
    sqrt(max / 4n) (6.7e152 for 100 float64 points) that sum overflows, and the lecture
    would print NaN parameters instead of numbers.

    Raises:
      InputError: naming x or y, its largest value and the bound.
    """
    for name, v in (("x", x), ("y", y)):
        v = np.asarray(v, dtype=np.float64)
        bound = float(np.sqrt(np.finfo(dtype).max / (4 * max(1, v.shape[0]))))
        top = float(np.max(np.abs(v))) if v.size else 0.0
        if top > bound:
            raise _checks.InputError(
                f"the data's {name} values reach {top:.3g}, whose squares overflow {dtype} (the "
                f"lecture's MSE and least-squares fit square them); keep |{name}| below "
                f"{bound:.3g}, or rescale the data")


class LectureResult(NamedTuple):
    """The lecture in both frameworks."""

    data: dict  # where the data came from; ``lecture`` True on the lecture's own data
    dtype: str  # the precision mode
    steps: dict  # name -> {"jax": {...}, "torch": {...}, "max_abs_diff": float, "lecture": {...}|None}
    paths: dict  # name -> {"jax": (steps+1, p+1), "torch": (steps+1, p+1)} for the fitting steps
    x: np.ndarray  # (n,) the data
    y: np.ndarray  # (n,)

    def to_json(self) -> dict:
        """The JSON object ``functional-fit lecture --json`` prints."""
        return {"data": self.data, "dtype": self.dtype, "steps": self.steps}


def _orders(steps, n: int, order_seed: int) -> dict:
    """name -> the (epochs, n) batch order both frameworks consume, for SGD and Adam steps."""
    return {name: data.batch_order(n, FITS[name].epochs, order_seed)
            for name in steps if name in FITS and FITS[name].optimizer != "gd"}


def _check(x, y, order_seed, steps, pol):
    x, y = _checks.data(x, y, dtype=pol.data)
    check_scale(x, y, pol.data)
    order_seed = _checks.nonnegative_int("order_seed", order_seed)
    for s in steps:
        _checks.choice("steps", s, STEPS)
    return x, y, order_seed


def run_jax(x, y, *, dtype: str = "lecture", order_seed: int = 0, steps=STEPS,
            progress=None) -> dict:
    """The JAX side of the lecture's steps: name -> (numbers, path or None).

    Needs JAX's 64-bit mode for ``"lecture"`` and ``"float64"``, as `run` does.
    """
    pol = require(dtype)
    x, y, order_seed = _check(x, y, order_seed, steps, pol)
    return _jax_side(x, y, pol, order_seed, steps, progress)


def _jax_side(x, y, pol, order_seed, steps, progress=None) -> dict:
    """`run_jax` of checked inputs."""
    orders = _orders(steps, x.shape[0], order_seed)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    out = {}
    for name in steps:
        if progress is not None:
            progress(name)
        if name in FITS:
            out[name] = _jax_fit(FITS[name], jx, jy, orders.get(name), pol.params)
        else:
            out[name] = (_jax_step(name, jx, jy, pol), None)
    return out


def run_torch(x, y, *, dtype: str = "lecture", order_seed: int = 0, steps=STEPS,
              progress=None) -> dict:
    """The torch side of the lecture's steps: name -> (numbers, path or None).

    Uses no JAX (its 64-bit mode included).
    """
    pol = policy(dtype)
    x, y, order_seed = _check(x, y, order_seed, steps, pol)
    return _torch_side(x, y, pol, order_seed, steps, progress)


def _torch_side(x, y, pol, order_seed, steps, progress=None) -> dict:
    """`run_torch` of checked inputs."""
    orders = _orders(steps, x.shape[0], order_seed)
    t_params, t_data = torch_dtype(pol.params), torch_dtype(pol.data)
    tx, ty = torch.as_tensor(x, dtype=t_data), torch.as_tensor(y, dtype=t_data)
    out = {}
    for name in steps:
        if progress is not None:
            progress(name)
        if name in FITS:
            out[name] = _torch_fit(FITS[name], tx, ty, orders.get(name), t_params)
        else:
            out[name] = (_torch_step(name, tx, ty, t_params), None)
    return out


def combine(x, y, jax_side: dict, torch_side: dict | None, *, dtype: str = "lecture",
            data_meta: dict | None = None) -> LectureResult:
    """A `LectureResult` from `run_jax` and `run_torch`.

    With ``torch_side=None`` the torch numbers and paths are None (and so is ``max_abs_diff``):
    a partial result, for what needs only the JAX side (the figures that draw JAX's fits).
    """
    x, y = _checks.data(x, y, dtype=policy(dtype).data)
    return _combined(x, y, jax_side, torch_side, dtype, data_meta)


def _combined(x, y, jax_side, torch_side, dtype, data_meta) -> LectureResult:
    """`combine` of checked data."""
    data_meta = dict(data_meta or {"source": "arrays", "n": int(x.shape[0]), "lecture": False})
    on_lecture_data = bool(data_meta.get("lecture"))
    out, paths = {}, {}
    for name, (j, jpath) in jax_side.items():
        t, tpath = torch_side[name] if torch_side is not None else (None, None)
        if name in FITS:
            paths[name] = {"jax": jpath, "torch": tpath}
        out[name] = {
            "jax": j,
            "torch": t,
            "max_abs_diff": None if t is None else _max_abs_diff(j, t),
            "lecture": PRINTED.get(name) if on_lecture_data else None,
        }
        if name == "autodiff":  # the third way: the lecture's hand-derived formula (cell 28)
            value, grad = autodiff.hand(1.0)
            out[name]["hand"] = {"value": value, "grad": grad}
        if name in FITS:
            out[name]["settings"] = {k: v for k, v in FITS[name]._asdict().items() if v or k == "degree"}
    return LectureResult(data_meta, dtype, out, paths, x, y)


def run(x, y, *, dtype: str = "lecture", order_seed: int = 0, data_meta: dict | None = None,
        steps=STEPS, progress=None, second_process: bool | None = None) -> LectureResult:
    """Run the lecture's steps on (x, y) in JAX and in torch.

    Args:
      x, y: (n,) data.
      dtype: precision mode (`functional_fit.precision.DTYPES`); needs JAX's 64-bit mode for
        ``"lecture"`` and ``"float64"``.
      order_seed: seed of the batch order shared by SGD and Adam in both frameworks.
      data_meta: description of the data for the result; ``{"lecture": True}`` attaches the
        lecture's printed numbers.
      steps: names of the steps to run, from `STEPS`.
      progress: optional callable, called with "torch: NAME" before each step's torch side
        runs and once with "JAX: ..." for the JAX side (len(steps) + 1 calls).
      second_process: run the JAX side in a second process (`background.start`) while the
        torch side runs here; the numbers are the same either way. None: when
        `background.worthwhile()`, that is with more than two cores.

    Returns:
      `LectureResult`.
    """
    pol = require(dtype)
    x, y, order_seed = _check(x, y, order_seed, steps, pol)
    steps = tuple(steps)

    def tell(side):
        return None if progress is None else lambda name: progress(f"{side}: {name}")

    if second_process is None:
        second_process = background.worthwhile()
    if not second_process:
        if progress is not None:
            progress("JAX: every step")
        jax_side = _jax_side(x, y, pol, order_seed, steps)
        torch_side = _torch_side(x, y, pol, order_seed, steps, tell("torch"))
    else:  # the second process is a new start: it checks what it is handed (`run_jax`)
        job = background.start(run_jax, x, y, dtype=dtype, order_seed=order_seed, steps=steps)
        try:
            torch_side = _torch_side(x, y, pol, order_seed, steps, tell("torch"))
            if progress is not None:
                progress("JAX: every step, in a second process")
            jax_side = job.result()
            job.close()
        except BaseException:
            job.cancel()
            raise
    return _combined(x, y, jax_side, torch_side, dtype, data_meta)


__all__ = ["FITS", "PRINTED", "STEPS", "LectureResult", "Step", "check_scale", "combine", "run",
           "run_jax", "run_torch"]
