"""Exercises checked against torch: a student's function, run on chosen inputs, told what is wrong.

Four exercises of the lecture (`notebooks/exercises.py`), each written twice, once in torch's
style and once as a JAX pure function, with the same arguments:

- ``l1_grad(w, x, y) -> g``: the gradient of mean|w[0] + w[1] x - y| with respect to w, with
  torch's value 0 where a residual is exactly 0;
- ``gd_step(w, x, y, lr, i) -> w``: one step of the lecture's gradient descent,
  w - lr / (i + 1) * l1_grad(w, x, y), at step i (from 0);
- ``sgd_epoch(w, x, y, order, batch_size, lr) -> w``: one epoch of minibatch SGD on the L1 loss
  of the linear model, batches taken in `order` (a permutation of range(n), numpy, one row of
  `functional_fit.data.batch_order`), the last one short when batch_size does not divide n;
- ``adam_step(w, g, m, v, t, lr, betas, eps) -> (w, m, v)``: one step of Adam at step t (1 for
  the first), as ``torch.optim.Adam`` and ``optax.adam`` take it.

Arrays come in as torch tensors (``framework="torch"``) or JAX arrays (``"jax"``) of one dtype,
float64 and then float32; ``order`` stays a numpy int64 array, the numbers Python numbers.

`check` runs a function on every case of its exercise (`CASES`: the edge cases that catch the
usual mistakes: a residual exactly 0, a short last batch, Adam's bias correction at t = 1) and
compares what it returns with torch itself (``torch.autograd``, ``torch.optim.SGD`` over a
``DataLoader``, ``torch.optim.Adam``) and with the toolkit (`functional_fit.losses.l1` under
``jax.grad``, `functional_fit.fit.stochastic_gradient_descent`, ``optax.adam``), which must agree.
At the first case that fails it names the input, the expected and received values, and a hint:
the received value is matched against what each known mistake (`HINTS`) gives on that input,
computed in numpy. `REFERENCE` holds right answers and `WRONG` typical wrong ones, for the
notebook's ``answers`` switch (`pick`) and the tests.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch.utils.data import DataLoader, TensorDataset

import functional_fit as ff
import parity
from functional_fit.checks import InputError, first_line
from functional_fit.tolerances import GRAD_FLOAT32, TRAJECTORY_FLOAT64
from parity.data import OrderSampler

EXERCISES = ("l1_grad", "gd_step", "sgd_epoch", "adam_step")
FRAMEWORKS = ("torch", "jax")
DTYPES = ("float64", "float32")
#: Each exercise's arguments, in order, and the names of what it returns.
ARGUMENTS = {"l1_grad": ("w", "x", "y"), "gd_step": ("w", "x", "y", "lr", "i"),
             "sgd_epoch": ("w", "x", "y", "order", "batch_size", "lr"),
             "adam_step": ("w", "g", "m", "v", "t", "lr", "betas", "eps")}
OUTPUTS = {"l1_grad": ("g",), "gd_step": ("w",), "sgd_epoch": ("w",),
           "adam_step": ("w", "m", "v")}
#: The arguments that are float arrays, in the case's dtype and framework.
FLOAT_ARRAYS = ("w", "x", "y", "g", "m", "v")
#: Largest difference from torch, relative to max(1, |expected|), that passes: a few steps'
#: roundings, summed in another order (the toolkit's trajectory and gradient tolerances).
TOLERANCE = {"float64": TRAJECTORY_FLOAT64, "float32": GRAD_FLOAT32}

#: What each known mistake looks like, and what to do about it.
HINTS = {
    "abs_at_zero": "jnp.sign(0) is 0 but jax.grad(jnp.abs)(0.) is 1: torch's value at 0 is 0. "
                   "Write the gradient with jnp.sign(r), or differentiate "
                   "functional_fit.losses.l1",
    "sum": "the loss is the mean over the points, not the sum: divide by n",
    "sign_flip": "the residual is y_hat - y (prediction minus target): your gradient has the "
                 "opposite sign",
    "mse": "that is the MSE's gradient, 2 mean(r) and 2 mean(r x): the L1 loss's is "
           "mean(sign(r)) and mean(sign(r) x)",
    "no_decay": "the lecture's step size decays: lr / (i + 1), not lr",
    "decay_i": "steps count from 0: the step size is lr / (i + 1), not lr / i",
    "uphill": "you stepped uphill: gradient descent subtracts the gradient, w - step * g",
    "batch_size": "the last batch is short: divide by its own size (the mean over its points), "
                  "not by batch_size",
    "drop_last": "the last batch is short, and it is still a batch: keep it (DataLoader's "
                 "drop_last is False)",
    "order": "take the points in the given order: batch k is order[k * B:(k + 1) * B] "
             "(torch: DataLoader(..., sampler=OrderSampler(order[None])))",
    "full_batch": "one step per batch, not one step on the whole data",
    "stale": "each batch's gradient is taken at the parameters after the previous batch's step",
    "accumulate": "the gradient accumulates across batches: zero it after each step "
                  "(w.grad = None, w.grad.zero_(), or optimizer.zero_grad())",
    "no_bias_correction": "did you forget Adam's bias correction? m_hat = m / (1 - beta1**t), "
                          "v_hat = v / (1 - beta2**t); at t = 1 it scales m by 10 and v by 1000",
    "eps_inside": "eps goes outside the square root: sqrt(v_hat) + eps",
    "t_shift": "t is this step's number (1 for the first step): the bias correction is "
               "1 - beta**t",
    "not_squared": "v averages the squared gradient: v = beta2 v + (1 - beta2) g**2",
    "betas_swapped": "betas = (beta1, beta2): beta1 (0.9) for m, beta2 (0.999) for v",
    "moments_old": "return the new moments m and v of this step, not the ones you were given",
}


class Case(NamedTuple):
    """One input of an exercise: what the student's function is called with (float64 numpy)."""

    name: str  # says which mistake the case is there to catch
    inputs: dict  # argument name -> numpy array or Python number


@dataclasses.dataclass(frozen=True)
class Result:
    """A check's verdict; truthy when the function passed every case.

    ``str(result)`` is the verdict as `check` prints it. On a failure, `case` and `dtype` name
    the input, `inputs` is its text, `expected` (torch's) and `received` are numpy arrays (one
    per output of the exercise) or None, and `hint` is what to do about it.
    """

    exercise: str
    framework: str
    passed: bool
    message: str  # one line: what was checked, or what went wrong
    case: str | None = None
    dtype: str | None = None
    inputs: str | None = None
    expected: tuple | None = None
    received: tuple | None = None
    hint: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = f"{self.exercise} ({self.framework}): {'PASSED' if self.passed else 'FAILED'}"
        lines = [f"{head}: {self.message}"]
        if self.case is not None:
            lines.append(f"  input ({self.case}, {self.dtype}): {self.inputs}")
        if self.expected is not None:
            lines.append(f"  expected: {_show(self.exercise, self.expected)}   (from "
                         f"{SOURCES[self.exercise]}, which agree)")
        if self.received is not None:
            lines.append(f"  received: {_show(self.exercise, self.received)}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


def _show(exercise: str, values: tuple) -> str:
    return ", ".join(f"{name} = {np.array2string(np.asarray(v), precision=8)}"
                     for name, v in zip(OUTPUTS[exercise], values))


# --------------------------------------------------------------------------- the cases

def _cases() -> dict:
    x7, y7 = ff.lecture_data(n=7, seed=1)  # 7 points: batches of 3, 3 and 1
    zero_x, zero_y = np.array([0.0, 1.0, 2.0, -1.0]), np.array([1.0, 2.0, 5.0, 0.0])
    adam = dict(w=np.array([0.5, -1.0, 2.0]), lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    return {
        "l1_grad": (
            Case("no residual is 0", dict(w=np.array([0.5, -1.0]), x=x7, y=y7)),
            Case("residuals exactly 0 at x = 0 and x = 2",  # w[0] + w[1] x - y = 0, 1, 0, -1
                 dict(w=np.array([1.0, 2.0]), x=zero_x, y=zero_y)),
        ),
        "gd_step": (
            Case("the first step, i = 0", dict(w=np.zeros(2), x=x7, y=y7, lr=6.0, i=0)),
            Case("step i = 4, residuals exactly 0",
                 dict(w=np.array([1.0, 2.0]), x=zero_x, y=zero_y, lr=0.5, i=4)),
        ),
        "sgd_epoch": (
            Case("n = 6, batches of 3", dict(w=np.array([0.2, -0.3]), x=x7[1:], y=y7[1:],
                                            order=np.array([3, 0, 5, 1, 4, 2]),
                                            batch_size=3, lr=0.5)),
            Case("n = 7, batches of 3: the last batch is short (1 point)",
                 dict(w=np.array([0.2, -0.3]), x=x7, y=y7, order=np.array([4, 6, 0, 2, 5, 1, 3]),
                      batch_size=3, lr=0.5)),
        ),
        "adam_step": (
            Case("the first step, t = 1: bias correction at its largest",
                 dict(adam, g=np.array([0.3, -2.0, 0.0]), m=np.zeros(3), v=np.zeros(3), t=1)),
            Case("t = 10, moments carried, betas (0.8, 0.99), eps 1e-3",
                 dict(adam, g=np.array([0.3, -2.0, 0.05]), m=np.array([0.1, -0.5, 0.2]),
                      v=np.array([0.02, 0.3, 0.01]), t=10, lr=0.01, betas=(0.8, 0.99),
                      eps=1e-3)),
        ),
    }


CASES = _cases()


def _in_dtype(inputs: dict, dtype: str) -> dict:
    """The case's float arrays in `dtype` (numpy); the rest as they are."""
    return {k: (np.asarray(v, dtype=dtype) if k in FLOAT_ARRAYS else v) for k, v in inputs.items()}


def _describe(exercise: str, inputs: dict) -> str:
    return ", ".join(f"{k} = {_text(inputs[k])}" for k in ARGUMENTS[exercise])


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=6, max_line_width=10**4)  # one line
    return repr(value)


# ------------------------------------------------------------------ numpy: right and wrong

def _np_l1_grad(inp: dict, mistake: str = "") -> np.ndarray:
    w, x, y = (np.asarray(inp[k], np.float64) for k in ("w", "x", "y"))
    r = w[0] + w[1] * x - y  # (n,)
    if mistake == "mse":
        return np.array([2 * np.mean(r), 2 * np.mean(r * x)])
    s = np.where(r == 0, 1.0 if mistake == "abs_at_zero" else 0.0, np.sign(r))  # (n,)
    g = np.array([np.mean(s), np.mean(s * x)])  # (2,)
    return {"sum": len(x) * g, "sign_flip": -g}.get(mistake, g)


def _np_gd_step(inp: dict, mistake: str = "") -> np.ndarray:
    g = _np_l1_grad(inp, "abs_at_zero" if mistake == "abs_at_zero" else "")
    lr, i = inp["lr"], inp["i"]
    step = {"no_decay": lr, "decay_i": lr / i if i else np.inf}.get(mistake, lr / (i + 1))
    with np.errstate(invalid="ignore"):  # lr / 0 times a zero gradient: nan, as it would be
        return inp["w"] + step * g if mistake == "uphill" else inp["w"] - step * g


def _np_sgd_epoch(inp: dict, mistake: str = "") -> np.ndarray:
    w, x, y, b, lr = (inp[k] for k in ("w", "x", "y", "batch_size", "lr"))
    w = np.asarray(w, np.float64)
    order = np.arange(len(x)) if mistake == "order" else np.asarray(inp["order"])
    starts = range(0, len(x), b) if mistake != "full_batch" else [0]
    size = len(x) if mistake == "full_batch" else b
    w0, g_sum = w, np.zeros_like(w)
    for start in starts:
        idx = order[start:start + size]  # the last batch is short
        if mistake == "drop_last" and len(idx) < b:
            break
        at = w0 if mistake == "stale" else w
        g = _np_l1_grad(dict(w=at, x=x[idx], y=y[idx]))
        if mistake == "batch_size":
            g = g * len(idx) / b
        g_sum = g_sum + g
        w = w - lr * (g_sum if mistake == "accumulate" else g)
    return w


def _np_adam_step(inp: dict, mistake: str = "") -> tuple:
    w, g, m, v = (np.asarray(inp[k], np.float64) for k in ("w", "g", "m", "v"))
    b1, b2 = inp["betas"][::-1] if mistake == "betas_swapped" else inp["betas"]
    t, lr, eps = inp["t"], inp["lr"], inp["eps"]
    m_new = b1 * m + (1 - b1) * g
    v_new = b2 * v + (1 - b2) * (np.abs(g) if mistake == "not_squared" else g * g)
    tb = t + 1 if mistake == "t_shift" else t
    c1, c2 = (1.0, 1.0) if mistake == "no_bias_correction" else (1 - b1**tb, 1 - b2**tb)
    denom = (np.sqrt(v_new / c2 + eps) if mistake == "eps_inside"
             else np.sqrt(v_new / c2) + eps)
    w_new = w - lr * (m_new / c1) / denom
    return (w_new, m, v) if mistake == "moments_old" else (w_new, m_new, v_new)


_NUMPY = {"l1_grad": _np_l1_grad, "gd_step": _np_gd_step, "sgd_epoch": _np_sgd_epoch,
          "adam_step": _np_adam_step}
#: The mistakes each exercise's diagnosis looks for (keys of `HINTS`), in the order tried.
MISTAKES = {
    "l1_grad": ("abs_at_zero", "sum", "sign_flip", "mse"),
    "gd_step": ("no_decay", "decay_i", "uphill", "abs_at_zero"),
    "sgd_epoch": ("batch_size", "drop_last", "order", "full_batch", "stale", "accumulate"),
    "adam_step": ("no_bias_correction", "eps_inside", "t_shift", "not_squared",
                  "betas_swapped", "moments_old"),
}


# --------------------------------------------------------------------------- torch itself

def _torch_l1_grad(a: dict) -> tuple:
    w = a["w"].clone().requires_grad_(True)
    loss = torch.nn.functional.l1_loss(w[0] + w[1] * a["x"], a["y"])
    return torch.autograd.grad(loss, w)


def _torch_gd_step(a: dict) -> tuple:
    w = torch.nn.Parameter(a["w"].clone())
    opt = torch.optim.SGD([w], lr=a["lr"] / (a["i"] + 1))
    torch.nn.functional.l1_loss(w[0] + w[1] * a["x"], a["y"]).backward()
    opt.step()
    return (w.detach(),)


def _torch_sgd_epoch(a: dict) -> tuple:
    w = torch.nn.Parameter(a["w"].clone())
    opt = torch.optim.SGD([w], lr=a["lr"])
    loader = DataLoader(TensorDataset(a["x"], a["y"]), batch_size=a["batch_size"],
                        sampler=OrderSampler(a["order"][None]))  # one epoch of the order
    for xb, yb in loader:
        opt.zero_grad()
        torch.nn.functional.l1_loss(w[0] + w[1] * xb, yb).backward()
        opt.step()
    return (w.detach(),)


def _torch_adam_step(a: dict) -> tuple:
    w = torch.nn.Parameter(a["w"].clone())
    opt = torch.optim.Adam([w], lr=a["lr"], betas=a["betas"], eps=a["eps"])
    opt.state[w] = {"step": torch.tensor(float(a["t"] - 1)),  # the steps taken before this one
                    "exp_avg": a["m"].clone(), "exp_avg_sq": a["v"].clone()}
    w.grad = a["g"].clone()
    opt.step()
    return w.detach(), opt.state[w]["exp_avg"], opt.state[w]["exp_avg_sq"]


_TORCH = {"l1_grad": _torch_l1_grad, "gd_step": _torch_gd_step, "sgd_epoch": _torch_sgd_epoch,
          "adam_step": _torch_adam_step}


# --------------------------------------------------------------------------- the toolkit

def _l1_of(w, x, y):
    return ff.losses.l1(ff.models.linear(w, x), y)


def _ff_l1_grad(a: dict) -> tuple:
    return (jax.grad(_l1_of)(a["w"], a["x"], a["y"]),)


def _ff_gd_step(a: dict) -> tuple:
    return (a["w"] - a["lr"] / (a["i"] + 1) * _ff_l1_grad(a)[0],)


def _ff_sgd_epoch(a: dict) -> tuple:
    fit = ff.fit.stochastic_gradient_descent(a["w"], a["x"], a["y"], a["order"][None],
                                             lr=a["lr"], batch_size=a["batch_size"], trace=False)
    return (fit.params,)  # epoch 0's step size: lr / (0 + 1)


def _ff_adam_step(a: dict) -> tuple:
    b1, b2 = a["betas"]
    opt = optax.adam(a["lr"], b1=b1, b2=b2, eps=a["eps"])
    with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 count with floats
        adam_state, *rest = opt.init(a["w"])
        state = (adam_state._replace(count=jnp.asarray(a["t"] - 1, jnp.int32), mu=a["m"],
                                     nu=a["v"]), *rest)
        updates, state = opt.update(a["g"], state, a["w"])
        return optax.apply_updates(a["w"], updates), state[0].mu, state[0].nu


_TOOLKIT = {"l1_grad": _ff_l1_grad, "gd_step": _ff_gd_step, "sgd_epoch": _ff_sgd_epoch,
            "adam_step": _ff_adam_step}
#: What the expected values come from, for the verdict.
SOURCES = {"l1_grad": "torch.autograd; jax.grad of functional_fit.losses.l1",
           "gd_step": "torch.optim.SGD; jax.grad of functional_fit.losses.l1",
           "sgd_epoch": "torch.optim.SGD over a DataLoader; "
                        "functional_fit.fit.stochastic_gradient_descent",
           "adam_step": "torch.optim.Adam; optax.adam"}


def _as_framework(inputs: dict, framework: str) -> dict:
    """The float arrays as fresh torch tensors or JAX arrays; the rest as they are."""
    convert = torch.tensor if framework == "torch" else jnp.asarray
    return {k: (convert(v) if k in FLOAT_ARRAYS else v) for k, v in inputs.items()}


@functools.lru_cache(maxsize=None)
def expected(exercise: str, case: int, dtype: str) -> tuple:
    """torch's values for ``CASES[exercise][case]`` in `dtype`, checked against the toolkit's.

    Returns:
      one numpy array per output (`OUTPUTS`), in `dtype`.

    Raises:
      RuntimeError: torch and the toolkit disagree beyond `TOLERANCE` (a bug of the checker).
    """
    inputs = _in_dtype(CASES[exercise][case].inputs, dtype)
    want = tuple(t.numpy() for t in _TORCH[exercise](_as_framework(inputs, "torch")))
    toolkit = tuple(np.asarray(a) for a in _TOOLKIT[exercise](_as_framework(inputs, "jax")))
    gap = _distance(toolkit, want)
    if not gap <= TOLERANCE[dtype]:
        raise RuntimeError(f"{exercise}: torch and the toolkit differ by {gap:.2g} on case "
                           f"{case} in {dtype}")
    return want


def _distance(received: tuple, want: tuple) -> float:
    """max |received - want| / max(1, max |want|) over all outputs; inf on another shape or
    another pattern of non-finite values."""
    a = [np.asarray(r, np.float64) for r in received]
    b = [np.asarray(e, np.float64) for e in want]
    if len(a) != len(b) or any(p.shape != q.shape for p, q in zip(a, b)):
        return np.inf
    a, b = np.concatenate([p.ravel() for p in a]), np.concatenate([q.ravel() for q in b])
    finite = np.isfinite(b)
    if not np.array_equal(np.isfinite(a), finite) or not np.array_equal(a[~finite], b[~finite],
                                                                        equal_nan=True):
        return np.inf
    if not finite.any():
        return 0.0
    return float(np.max(np.abs(a[finite] - b[finite])) / max(1.0, np.max(np.abs(b[finite]))))


def diagnose(exercise: str, inputs: dict, received: tuple, want: tuple, dtype: str) -> str:
    """The hint for a wrong value: the first known mistake whose value is `received`.

    Args:
      exercise: one of `EXERCISES`.
      inputs: the case's arguments in `dtype` (numpy arrays and Python numbers).
      received, want: the student's and torch's outputs, one numpy array per `OUTPUTS` name.
      dtype: the case's dtype, for the tolerance.

    Returns:
      ``HINTS[mistake]`` for the first of ``MISTAKES[exercise]`` whose value on `inputs`
      (computed in numpy, float64) is `received` and not `want`; else a hint naming the outputs
      that differ.
    """
    tol = TOLERANCE[dtype]
    for mistake in MISTAKES[exercise]:
        value = _NUMPY[exercise](inputs, mistake)
        value = value if isinstance(value, tuple) else (value,)
        if _distance(value, want) > tol and _distance(received, value) <= 10 * tol:
            return HINTS[mistake]
    wrong = [n for n, r, e in zip(OUTPUTS[exercise], received, want)
             if _distance((r,), (e,)) > tol]
    verb = "differs" if len(wrong) == 1 else "differ"
    return (f"{' and '.join(wrong)} {verb} from torch's; not a mistake this checker knows: "
            "compare your formula with the lecture's, one term at a time")


# --------------------------------------------------------------------------- the check

def _output_problem(out, exercise: str, framework: str, want: tuple, dtype: str):
    """(message, hint) for a returned value of the wrong kind, shape or dtype; None if fine."""
    names = OUTPUTS[exercise]
    parts = tuple(out) if len(names) > 1 and isinstance(out, (tuple, list)) else (out,)
    if len(parts) != len(names):
        return (f"returned {type(out).__name__}, not a tuple of {len(names)}",
                f"return ({', '.join(names)})")
    kind, kind_name = {"torch": (torch.Tensor, "torch.Tensor"),
                       "jax": (jax.Array, "jax.Array")}[framework]
    for name, part, e in zip(names, parts, want):
        if not isinstance(part, kind):
            return (f"{name} is a {type(part).__name__}, not a {kind_name}",
                    f"return a {kind_name}, the kind of the inputs")
        if framework == "torch" and part.requires_grad:
            return (f"{name} is a tensor that requires grad (still part of autograd's graph)",
                    "return w.detach(), or compute the update under torch.no_grad()")
        if tuple(part.shape) != e.shape:
            return (f"{name} has shape {tuple(part.shape)}, expected {e.shape}",
                    "one value per parameter: the shape of w" if exercise != "adam_step"
                    else "w, m and v each have the shape of w")
        got = str(part.dtype).replace("torch.", "")
        if got != dtype:
            return (f"{name} has dtype {got} for {dtype} inputs",
                    "keep the inputs' dtype: a constant made without dtype= (torch.zeros, "
                    "jnp.zeros) is float32")
    return None


def in_place_hint(name: str) -> str:
    """The hint for a function that changed its torch argument `name` in place."""
    return (f"leave the caller's tensors alone: make new ones ({name} = ..., not "
            f"{name}.mul_(...) or {name} -= ...), or work on a copy, {name}.detach().clone()")


def _changed(args: dict, before: dict) -> list:
    """The torch arguments whose values or requires_grad the function changed in place."""
    return [k for k, v in before.items()
            if not torch.equal(args[k].detach(), v) or args[k].requires_grad]


def _case_verdict(exercise: str, fn: Callable, framework: str, index: int, dtype: str):
    """None if `fn` passes case `index` in `dtype`, else the failing `Result`."""
    case = CASES[exercise][index]
    inputs = _in_dtype(case.inputs, dtype)
    want = expected(exercise, index, dtype)
    args = _as_framework(inputs, framework)
    before = {k: v.clone() for k, v in args.items() if isinstance(v, torch.Tensor)}
    fail = functools.partial(Result, exercise, framework, False, case=case.name, dtype=dtype,
                             inputs=_describe(exercise, inputs), expected=want)
    try:
        out = fn(*(args[k] for k in ARGUMENTS[exercise]))
    except NotImplementedError:
        return fail("not written yet (it raises NotImplementedError)",
                    hint="replace the body's `raise NotImplementedError` with your code")
    except Exception as exc:  # the student's error, in one line
        return fail(f"raised {first_line(exc)}", hint="run it on this input yourself")
    problem = _output_problem(out, exercise, framework, want, dtype)
    if problem:
        return fail(problem[0], hint=problem[1])
    changed = _changed(args, before)
    if changed:
        return fail(f"changed its input {', '.join(changed)} in place",
                    hint=in_place_hint(changed[0]))
    parts = tuple(out) if len(OUTPUTS[exercise]) > 1 else (out,)
    received = tuple(np.asarray(p.detach() if framework == "torch" else p) for p in parts)
    gap = _distance(received, want)
    if gap <= TOLERANCE[dtype]:
        return None
    return fail(f"wrong value (off by {gap:.2g} relative; {TOLERANCE[dtype]:.0e} passes)",
                received=received, hint=diagnose(exercise, inputs, received, want, dtype))


def check(exercise: str, fn, *, framework: str, show: bool = True) -> Result:
    """Check a student's function for `exercise` against torch and the toolkit.

    It runs `fn` on every case of ``CASES[exercise]``, in float64 then float32, and stops at the
    first failure. Nothing `fn` does raises through: an exception, a wrong kind of value, a
    tensor that still requires grad, a changed input or a wrong value is the verdict.

    Args:
      exercise: one of `EXERCISES`.
      fn: the student's function, called with ``ARGUMENTS[exercise]`` positionally.
      framework: ``"torch"`` (tensors in and out) or ``"jax"`` (JAX arrays in and out).
      show: print the verdict (for a notebook).

    Returns:
      `Result`, truthy when every case passed. float64 cases are skipped, and said so, when
      JAX's 64-bit mode is off.

    Raises:
      InputError: an unknown exercise or framework.

    Examples:
      >>> check("l1_grad", REFERENCE["l1_grad", "jax"], framework="jax", show=False).passed
      True
    """
    if exercise not in EXERCISES:
        raise InputError(f"exercise must be one of {', '.join(EXERCISES)}; got {exercise!r}")
    if framework not in FRAMEWORKS:
        raise InputError(f"framework must be one of {', '.join(FRAMEWORKS)}; got {framework!r}")
    if not callable(fn):
        result = Result(exercise, framework, False, f"fn must be a function; got "
                        f"{type(fn).__name__} {fn!r:.40}", hint="pass the function itself, "
                        "without calling it: check(..., my_function, ...)")
    else:
        result = _run(exercise, fn, framework)
    if show:
        print(result)
    return result


def _run(exercise: str, fn: Callable, framework: str) -> Result:
    dtypes = DTYPES if jax.config.jax_enable_x64 else ("float32",)
    for dtype in dtypes:
        for index in range(len(CASES[exercise])):
            failed = _case_verdict(exercise, fn, framework, index, dtype)
            if failed is not None:
                return failed
    n = len(CASES[exercise]) * len(dtypes)
    skipped = "" if len(dtypes) == 2 else (" (float64 skipped: turn on JAX's 64-bit mode, "
                                           "jax.config.update('jax_enable_x64', True))")
    return Result(exercise, framework, True, f"{n} cases in {' and '.join(dtypes)} agree with "
                  f"{SOURCES[exercise]}{skipped}")


# ---------------------------------------------------------------- right and wrong answers

def _linear_l1_torch(w, x, y):
    return parity.losses.l1(parity.models.linear(w, x), y)


def _l1_grad_torch(w, x, y):
    w = w.detach().clone().requires_grad_(True)
    _linear_l1_torch(w, x, y).backward()  # torch's abs backward: 0 where a residual is 0
    return w.grad


def _l1_grad_jax(w, x, y):
    r = w[0] + w[1] * x - y  # (n,) residuals
    s = jnp.sign(r)  # 0 where r == 0, as torch
    return jnp.stack([jnp.mean(s), jnp.mean(s * x)])  # (2,)


def _gd_step_torch(w, x, y, lr, i):
    w = w.detach().clone().requires_grad_(True)
    _linear_l1_torch(w, x, y).backward()
    with torch.no_grad():
        w -= lr / (i + 1) * w.grad
    return w.detach()


def _gd_step_jax(w, x, y, lr, i):
    return w - lr / (i + 1) * jax.grad(_l1_of)(w, x, y)


def _sgd_epoch_torch(w, x, y, order, batch_size, lr):
    w = w.detach().clone().requires_grad_(True)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size,
                        sampler=OrderSampler(order[None]))
    for xb, yb in loader:
        _linear_l1_torch(w, xb, yb).backward()
        with torch.no_grad():
            w -= lr * w.grad
        w.grad = None
    return w.detach()


def _sgd_epoch_jax(w, x, y, order, batch_size, lr):
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]  # the last batch may be short
        w = w - lr * jax.grad(_l1_of)(w, x[idx], y[idx])
    return w


def _adam_step(w, g, m, v, t, lr, betas, eps):  # Adam's own arguments; torch's and JAX's alike
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return w - lr * m_hat / ((v_hat**0.5) + eps), m, v


#: Right answers: (exercise, framework) -> function.
REFERENCE = {("l1_grad", "torch"): _l1_grad_torch, ("l1_grad", "jax"): _l1_grad_jax,
             ("gd_step", "torch"): _gd_step_torch, ("gd_step", "jax"): _gd_step_jax,
             ("sgd_epoch", "torch"): _sgd_epoch_torch, ("sgd_epoch", "jax"): _sgd_epoch_jax,
             ("adam_step", "torch"): _adam_step, ("adam_step", "jax"): _adam_step}


# typical wrong answers; each a small change of a right one

def _l1_grad_abs_jax(w, x, y):
    return jax.grad(lambda w: jnp.mean(jnp.abs(w[0] + w[1] * x - y)))(w)  # 1 at r == 0


def _l1_grad_sum_jax(w, x, y):
    return len(x) * _l1_grad_jax(w, x, y)


def _l1_grad_sum_torch(w, x, y):
    w = w.detach().clone().requires_grad_(True)
    (w[0] + w[1] * x - y).abs().sum().backward()
    return w.grad


def _l1_grad_mse_torch(w, x, y):
    w = w.detach().clone().requires_grad_(True)
    ((w[0] + w[1] * x - y) ** 2).mean().backward()
    return w.grad


def _gd_step_no_decay_jax(w, x, y, lr, i):
    return w - lr * jax.grad(_l1_of)(w, x, y)


def _gd_step_uphill_jax(w, x, y, lr, i):
    return w + lr / (i + 1) * jax.grad(_l1_of)(w, x, y)


def _gd_step_graph_torch(w, x, y, lr, i):
    w = w.detach().clone().requires_grad_(True)
    _linear_l1_torch(w, x, y).backward()
    return w - lr / (i + 1) * w.grad  # outside torch.no_grad: still in the graph


def _gd_step_in_place_torch(w, x, y, lr, i):
    w.requires_grad_(True)  # the caller's tensor
    _linear_l1_torch(w, x, y).backward()
    with torch.no_grad():
        w -= lr / (i + 1) * w.grad
    return w.detach().clone()


def _sgd_epoch_batch_size_jax(w, x, y, order, batch_size, lr):
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        r = w[0] + w[1] * x[idx] - y[idx]
        s = jnp.sign(r)
        w = w - lr * jnp.stack([jnp.sum(s), jnp.sum(s * x[idx])]) / batch_size
    return w


def _sgd_epoch_drop_last_jax(w, x, y, order, batch_size, lr):
    for start in range(0, len(order) - batch_size + 1, batch_size):  # full batches only
        idx = order[start:start + batch_size]
        w = w - lr * jax.grad(_l1_of)(w, x[idx], y[idx])
    return w


def _sgd_epoch_no_order_torch(w, x, y, order, batch_size, lr):
    w = w.detach().clone().requires_grad_(True)
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=batch_size):  # order unused
        _linear_l1_torch(w, xb, yb).backward()
        with torch.no_grad():
            w -= lr * w.grad
        w.grad = None
    return w.detach()


def _sgd_epoch_accumulate_torch(w, x, y, order, batch_size, lr):
    w = w.detach().clone().requires_grad_(True)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size,
                        sampler=OrderSampler(order[None]))
    for xb, yb in loader:
        _linear_l1_torch(w, xb, yb).backward()
        with torch.no_grad():
            w -= lr * w.grad  # w.grad is never zeroed
    return w.detach()


def _adam_no_bias_correction(w, g, m, v, t, lr, betas, eps):  # as `_adam_step`
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return w - lr * m / ((v**0.5) + eps), m, v


def _adam_eps_inside(w, g, m, v, t, lr, betas, eps):  # as `_adam_step`
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return w - lr * (m / (1 - b1**t)) / (v / (1 - b2**t) + eps) ** 0.5, m, v


def _adam_in_place_torch(w, g, m, v, t, lr, betas, eps):  # as `_adam_step`
    b1, b2 = betas
    m.mul_(b1).add_((1 - b1) * g)  # torch.optim's style, on the caller's tensors
    v.mul_(b2).add_((1 - b2) * g * g)
    return w - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps), m, v


def _adam_not_squared_torch(w, g, m, v, t, lr, betas, eps):  # as `_adam_step`
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g.abs()
    return w - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps), m, v


class Wrong(NamedTuple):
    """A typical wrong answer, and the hint `check` gives for it."""

    fn: Callable
    hint: str


_GRAPH = "return w.detach(), or compute the update under torch.no_grad()"
#: Typical wrong answers: (exercise, framework) -> `Wrong`s; the first is the notebook's.
WRONG = {
    ("l1_grad", "torch"): (Wrong(_l1_grad_sum_torch, HINTS["sum"]),
                           Wrong(_l1_grad_mse_torch, HINTS["mse"])),
    ("l1_grad", "jax"): (Wrong(_l1_grad_abs_jax, HINTS["abs_at_zero"]),
                         Wrong(_l1_grad_sum_jax, HINTS["sum"])),
    ("gd_step", "torch"): (Wrong(_gd_step_graph_torch, _GRAPH),
                           Wrong(_gd_step_in_place_torch, in_place_hint("w"))),
    ("gd_step", "jax"): (Wrong(_gd_step_no_decay_jax, HINTS["no_decay"]),
                         Wrong(_gd_step_uphill_jax, HINTS["uphill"])),
    ("sgd_epoch", "torch"): (Wrong(_sgd_epoch_no_order_torch, HINTS["order"]),
                             Wrong(_sgd_epoch_accumulate_torch, HINTS["accumulate"])),
    ("sgd_epoch", "jax"): (Wrong(_sgd_epoch_batch_size_jax, HINTS["batch_size"]),
                           Wrong(_sgd_epoch_drop_last_jax, HINTS["drop_last"])),
    ("adam_step", "torch"): (Wrong(_adam_in_place_torch, in_place_hint("m")),
                             Wrong(_adam_not_squared_torch, HINTS["not_squared"])),
    ("adam_step", "jax"): (Wrong(_adam_no_bias_correction, HINTS["no_bias_correction"]),
                           Wrong(_adam_eps_inside, HINTS["eps_inside"])),
}
ANSWERS = ("yours", "reference", "wrong")


def pick(answers: str, exercise: str, framework: str, yours: Callable) -> Callable:
    """The function a notebook checks, chosen by its ``answers`` parameter.

    Args:
      answers: ``"yours"``, ``"reference"`` or ``"wrong"`` (`ANSWERS`).
      exercise, framework: which function.
      yours: the student's function.

    Returns:
      `yours`; the right answer (`REFERENCE`); or the first typical wrong one (`WRONG`).
    """
    if answers not in ANSWERS:
        raise InputError(f"answers must be one of {', '.join(ANSWERS)}; got {answers!r}")
    if answers == "yours":
        return yours
    key = (exercise, framework)
    return REFERENCE[key] if answers == "reference" else WRONG[key][0].fn


def gd_paths(gd_step: Callable, framework: str, *, steps: int = 50, lr: float = 6.0) -> dict:
    """The lecture's gradient descent (cell 48, float64, from zeros) taken with a student's
    `gd_step`, beside torch's (`parity.fit.gradient_descent`), for a figure.

    Args:
      gd_step: ``gd_step(w, x, y, lr, i) -> w`` in `framework`'s arrays.
      framework: ``"torch"`` or ``"jax"``.
      steps, lr: the fit's length and base learning rate (the lecture's 50 and 6).

    Returns:
      label -> (steps+1, 2) path: ``"torch"`` always; ``"yours"`` when `gd_step` runs every
      step to a (2,) value (the path is cut at the first step that raises or returns
      something else).
    """
    x, y = ff.lecture_data()
    model = parity.SimpleLinearModel(dtype=torch.float64)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    paths = {"torch": parity.fit.gradient_descent(model, parity.losses.l1, tx, ty, lr=lr,
                                                  nsteps=steps)}
    args = _as_framework(dict(x=x, y=y), framework)
    w, yours = np.zeros(2), [np.zeros(2)]
    for i in range(steps):
        try:
            w = np.asarray(_detached(gd_step(_as_framework(dict(w=w), framework)["w"],
                                             args["x"], args["y"], lr, i)), np.float64)
        except Exception:  # the check says why; the figure shows how far it went
            break
        if w.shape != (2,):
            break
        yours.append(w)
    if len(yours) > 1:
        paths["yours"] = np.array(yours)
    return paths


def _detached(out):
    return out.detach() if isinstance(out, torch.Tensor) else out
