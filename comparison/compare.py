"""The parity check for your own pair: a torch module and the JAX function written to match it.

`compare` answers the three questions of a port:

- **Do the two agree?** It runs the same fit in both frameworks, from the same start, on the
  same batches, with the same optimizer: JAX through `functional_fit.fit.train` and
  `functional_fit.optim`, torch through `parity.fit.train` and ``torch.optim``.
- **If not, where do they part?** Per parameter (the ``state_dict`` names) and per step, the
  difference of the two paths; `Comparison.first_divergence` is the first step, and the
  parameter, where it breaks the tolerance.
- **Rounding or a bug?** The tolerance is derived from the dtype, the number of steps and the
  sizes of the reductions, as the parity suite's are (`functional_fit.tolerances`): two correct
  ports differ by roundings that add up step by step, a few per operation; a bug differs by
  far more, usually at once.

It diagnoses before it runs, each with a one-line `InputError`: a module without parameters,
parameters whose names or shapes do not match the module, a `jax_model` that fails on the data
or whose output shape or dtype differs from the module's, losses that are not scalars, an
unknown optimizer or keyword, labels out of range, non-finite data.

State and randomness. A module with buffers in its ``state_dict`` (BatchNorm's running
statistics) is ported by a stateful JAX model, ``jax_model(params, state, x) -> (y_hat,
new_state)`` with ``state`` the buffers by their ``state_dict`` names
(`functional_fit.engine.apply`); both sides carry their buffers through the fit, and the
buffers' paths are compared with the parameters' (`Comparison.buffers`; a first divergence in
a buffer blames ``"state"``: the running statistics' update, not the optimizer). An integer
buffer (``num_batches_tracked``) is compared when the JAX model updates it. A module whose
``nn.Dropout`` layers are active (training mode, p > 0) is run with the same masks on both
sides, drawn once per step and given to both (``dropout="shared"``): JAX's model is called
with ``key=`` (`functional_fit.fit.train`'s convention), and torch's ``nn.Dropout`` layers
replay the same masks through forward hooks (`parity.dropout`). ``dropout="off"`` switches
dropout off on both sides instead; `Comparison.dropout` says which was done.

A parameter with ``requires_grad=False`` is frozen on both sides, as torch freezes it: torch
skips it, and JAX's optimizer gives it zero updates (`Comparison.frozen` names it; its gradient
is not compared). A parameter the forward does not use (torch leaves its ``.grad`` None) is
skipped on both sides, as torch skips it: JAX's optimizer is wrapped in
`functional_fit.optim.skip_unused` for it, which skips a gradient that is exactly zero
(`Comparison.unused` names it, and the table says so). A module whose forward still gives two
outputs for the same x and masks (``F.dropout`` inside a ``forward``, which no hook sees)
cannot be followed step for step: the comparison says so (`Comparison.random`, culprit
``"random"``) instead of blaming a part of the port.

    >>> import parity, functional_fit as ff
    >>> from functional_fit import losses, models
    >>> module = parity.models.MLP((1, 8, 1), seed=0)           # nn.Sequential, (n, 1) -> (n, 1)
    >>> with ff.float64():
    ...     x, y = ff.lecture_data()
    ...     c = parity.compare(models.mlp, module, x[:, None], y[:, None], jax_loss=losses.mse,
    ...                        torch_loss=parity.losses.mse, optimizer=("Adam", {"lr": 0.01}),
    ...                        steps=50)
    >>> c.ok, c.first_divergence
    (True, None)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from comparison import findings as known, layers as _by_layer
from comparison.layers import Layer
from functional_fit import checks as _checks, data as _data, engine, fit, optim, registry
from functional_fit.checks import DivergenceError, InputError, first_line
from functional_fit.precision import policy, require, torch_matmul_precision
from functional_fit.tolerances import (OPTIMIZER_ROUNDINGS, ROUNDINGS_PER_LAYER,  # noqa: F401
                                       UNIT_ROUNDOFF, accumulated, rel_err, step_roundings)
from parity import dropout as tdropout, fit as tfit, modules as tmodules, optim as toptim
from parity import params as tparams
from parity.data import torch_dtype

#: Rounding differences grow at most linearly along a stable path; this margin covers the
#: constant of that growth, measured below 3 on the tests' problems.
SAFETY = 10.0
#: What a comparison of a random module says, in its table and its assertion.
RANDOM = ("random: torch_module's forward gives different outputs for the same x and dropout "
          "masks (F.dropout inside a forward, or another random layer?), so its path cannot "
          "match step for step; use nn.Dropout modules, or compare it in eval mode "
          "(torch_module.eval())")
#: What the table says of each `Comparison.dropout`.
DROPOUT = {"shared": "dropout: the same masks on both sides, drawn once per step (JAX's key, "
                     "replayed in torch's nn.Dropout through forward hooks)",
           "off": "dropout: switched off on both sides (dropout='off')"}


class Divergence(NamedTuple):
    """Where two paths part first."""

    step: int  # the step (0 = the start) whose parameters first break the tolerance
    parameter: str  # its state_dict name
    index: tuple  # the element of the parameter that parts most at that step
    jax: float  # JAX's value there
    torch: float  # torch's value there
    difference: float  # relative difference of the parameter at that step, over its path's scale
    tolerance: float

    def __str__(self):
        where = f"{self.parameter}{list(self.index) if self.index else ''}"
        return (f"step {self.step}, {where}: JAX {self.jax:.10g}, torch {self.torch:.10g} "
                f"(relative difference {self.difference:.2e} > tolerance {self.tolerance:.1e})")


class Tolerance(NamedTuple):
    """How far two correct ports may part, and where that figure comes from."""

    value: float
    derivation: str


class Comparison(NamedTuple):
    """What `compare` measured."""

    forward_diff: float  # relative difference of the two models' outputs at the start
    loss_diff: float  # relative difference of the two losses at the start
    grad_diff: dict  # name -> relative difference of the two gradients at the start
    path_diff: dict  # name -> (steps+1,) relative difference at each step, over the path's scale
    steps: int
    tolerance: Tolerance
    first_divergence: Divergence | None
    jax_path: dict  # name -> (steps+1, *shape), numpy
    torch_path: dict  # name -> (steps+1, *shape), numpy
    diverged: str | None  # "jax", "torch" or "both" when a loss became non-finite, else None
    #: parameters with ``requires_grad=False``: not updated on either side (torch skips them,
    #: JAX's optimizer sets their updates to zero), their gradients not compared
    frozen: tuple = ()
    #: parameters the forward does not use (torch leaves their ``.grad`` None and skips them);
    #: JAX's optimizer runs them through `functional_fit.optim.skip_unused`, which skips an
    #: exactly-zero gradient as torch skips a None one
    unused: tuple = ()
    #: the module's forward gives two outputs for the same x and masks: its path cannot match
    #: a deterministic port's step for step
    random: bool = False
    #: the buffers compared along the path (BatchNorm's running statistics), by state_dict name
    buffers: tuple = ()
    #: ``"shared"`` (the same dropout masks on both sides), ``"off"`` (dropout switched off on
    #: both), or None (the module has no active nn.Dropout)
    dropout: str | None = None
    #: parameters whose gradient is zero up to rounding at the start (a bias just before a
    #: training-mode BatchNorm): the optimizer moves them by rounding noise, which Adam's
    #: normalization amplifies up to 1 / eps, so their paths (and the running means they feed)
    #: may part although both ports are right
    null: tuple = ()
    #: what each side's float32 matrix products used: {"jax": ..., "torch": ...}
    matmul_precision: dict | None = None
    #: each layer's output and its gradient at the start, in torch's forward order, then at
    #: the first divergent step (`Layer.step`), each side at its own parameters there: the
    #: torch submodules whose names the JAX model tapped (`functional_fit.taps.tap`;
    #: `comparison.layers.record`)
    layers: tuple = ()
    #: the known framework differences that explain where the two part, each confirmed by
    #: re-running the prefix with it switched (`comparison.findings.Finding`: ``.id``,
    #: ``.explanation``, ``.before``, ``.after``); a different start (``torch_init``) first
    findings: tuple = ()

    @property
    def first_layer(self) -> str | None:
        """The first layer, in forward order, whose output parts beyond its tolerance: at the
        start; when every layer agrees there and the two part along the path, at the first
        divergent step (the optimizer), or the layer holding the buffer that parts first (the
        state: a BatchNorm's running statistics, which its training-mode output does not
        read). None for a loss or a gradient that parts at the start while the layers agree:
        no layer is to blame."""
        first = next((layer.name for layer in self.layers if layer.step == 0 and layer.parts),
                     None)
        culprit = self.culprit
        if first is not None or culprit in ("model", "loss", "gradient"):
            return first
        if culprit == "state":
            return self.first_divergence.parameter.rpartition(".")[0] or None
        return next((layer.name for layer in self.layers if layer.parts), None)

    @property
    def first_gradient_layer(self) -> str | None:
        """The first layer, in backward order (from the output towards the input), whose
        output's gradient (d loss / d output) parts beyond its tolerance at the start. With
        every output alike (`first_layer` None) it marks a wrong backward: the rule of the
        layer its output feeds (a ``jax.custom_vjp``, a misplaced ``jax.lax.stop_gradient``)."""
        return next((layer.name for layer in reversed(self.layers)
                     if layer.step == 0 and layer.gradient_parts), None)

    @property
    def culprit(self) -> str:
        """Which part of the port the first difference beyond rounding comes from.

        ``"model"`` (the outputs differ at the start), ``"loss"`` (the outputs agree, the
        losses do not), ``"gradient"`` (the losses agree, their gradients do not: a
        derivative, a subgradient at a kink), ``"state"`` (a buffer parts first: the running
        statistics' update, BatchNorm's momentum or its variance), ``"optimizer"`` (everything
        agrees at the start and the parameters part: the update rule, its hyperparameters,
        weight decay), ``"null_gradient"`` (a parameter whose gradient is zero up to rounding
        parts at the first divergent step: rounding noise the optimizer amplified, not a bug
        of the port; remove the parameter, e.g. ``bias=False`` before BatchNorm, or check with
        SGD),
        ``"divergence"`` (a loss became non-finite), ``"random"`` (the torch module is random
        in its mode, e.g. Dropout in training mode: nothing can be blamed), or ``"none"``
        (rounding only).
        """
        tol = self.tolerance.value
        if self.random:
            return "random"
        if self.forward_diff > tol:
            return "model"
        if self.loss_diff > tol:
            return "loss"
        if any(d > tol for d in self.grad_diff.values()):
            return "gradient"
        if self.diverged:
            return "divergence"
        if self.first_divergence is None:
            return "none"
        t = self.first_divergence.step
        if any(self.path_diff[k][t] > tol for k in self.null if k in self.path_diff):
            return "null_gradient"
        return "state" if self.first_divergence.parameter in self.buffers else "optimizer"

    @property
    def ok(self) -> bool:
        """Both fits ran, and they agree within the tolerance at every step."""
        tol = self.tolerance.value
        return (not self.random and self.first_divergence is None and self.diverged is None
                and self.forward_diff <= tol and self.loss_diff <= tol
                and all(d <= tol for d in self.grad_diff.values()))

    def table(self) -> str:
        """The comparison as text: the start, each parameter's path, the verdict."""
        tol = self.tolerance.value
        width = max([20, *map(len, self.path_diff)])
        lines = [f"forward  {self.forward_diff:.2e}", f"loss     {self.loss_diff:.2e}", "",
                 f"{'parameter':<{width}} {'grad at start':>14} {'max path diff':>14}  "
                 "worst step"]
        for name, d in self.path_diff.items():
            worst = int(np.argmax(d)) if d.size else 0
            grad = self.grad_diff.get(name, 0.0)
            flag = "" if (d <= tol).all() and grad <= tol else "  <-- parts"
            shown = ("frozen" if name in self.frozen else "unused" if name in self.unused
                     else "buffer" if name in self.buffers else
                     f"~0 ({grad:.1e})" if name in self.null else f"{grad:.2e}")
            lines.append(f"{name:<{width}} {shown:>14} {float(np.max(d)):>14.2e}  "
                         f"{worst}{flag}")
        lines += ["", f"tolerance {tol:.1e}: {self.tolerance.derivation}"]
        if self.frozen:
            lines.append(f"frozen (requires_grad=False, not updated on either side): "
                         f"{', '.join(self.frozen)}")
        if self.unused:
            lines.append(f"unused (torch leaves .grad None; JAX skips their zero gradient, "
                         f"functional_fit.optim.skip_unused): {', '.join(self.unused)}")
        for layer in self.layers:  # the output's gradient, then the output
            grad = "" if math.isnan(layer.gradient) else f"{layer.gradient:.2e}"
            flag = ("  <-- parts" if layer.parts else
                    "  <-- gradient parts" if layer.gradient_parts else "")
            lines.append(f"layer {layer.name:<{width - 6}} {grad:>14} {layer.difference:>14.2e}  "
                         f"{layer.step or 'start'}{flag}")
        if self.null:
            lines.append(f"gradient zero up to rounding at the start (~0: a bias before "
                         f"BatchNorm?): {', '.join(self.null)}; the optimizer moves them by "
                         "rounding noise (Adam amplifies it up to 1 / eps)")
        if self.dropout:
            lines.append(DROPOUT[self.dropout])
        if self.matmul_precision:
            lines.append(f"float32 matrix products: JAX {self.matmul_precision['jax']}, "
                         f"torch {self.matmul_precision['torch']}")
        if self.random:
            lines.append(RANDOM)
        if self.diverged:
            lines.append(f"diverged: the loss became non-finite in {self.diverged}")
        if self.first_divergence is not None:
            lines.append(f"first divergence: {self.first_divergence}")
        lines += [f"finding {f}" for f in self.findings]
        lines.append("agree: rounding only" if self.ok else
                     "DIFFER: torch_module is random (see above)" if self.random else
                     "DIFFER: rounding noise on a parameter with a null gradient (see above), "
                     "not a bug of the port" if self.culprit == "null_gradient" else
                     f"DIFFER beyond rounding; first in the {self.culprit}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The verdict as plain Python values (what ``functional-fit compare --json`` prints).

        ``{"ok", "culprit", "first_divergence" (None, or the `Divergence`'s fields, the index
        a list), "forward_diff", "loss_diff", "parameters": {name: {"kind" (trained, frozen,
        unused or buffer), "grad_diff" (None where no gradient is compared), "max_path_diff",
        "worst_step"}}, "tolerance": {"value", "derivation"}, "steps", "diverged", "random",
        "dropout", "findings": [{"id", "explanation", "before", "after"}]}``. A non-finite
        difference stays a float (inf); `json.dumps` with ``allow_nan=False`` needs it cleaned
        first.
        """
        first = self.first_divergence
        parameters = {}
        for name, d in self.path_diff.items():
            kind = ("frozen" if name in self.frozen else "unused" if name in self.unused
                    else "buffer" if name in self.buffers else "trained")
            grad = self.grad_diff.get(name) if kind in ("trained", "unused") else None
            parameters[name] = {"kind": kind, "grad_diff": None if grad is None else float(grad),
                                "max_path_diff": float(np.max(d)) if d.size else 0.0,
                                "worst_step": int(np.argmax(d)) if d.size else 0}
        return {"ok": bool(self.ok), "culprit": self.culprit,
                "first_divergence": None if first is None else
                {**first._asdict(), "index": list(first.index)},
                "forward_diff": float(self.forward_diff), "loss_diff": float(self.loss_diff),
                "parameters": parameters,
                "tolerance": {"value": float(self.tolerance.value),
                              "derivation": self.tolerance.derivation},
                "steps": int(self.steps), "diverged": self.diverged, "random": bool(self.random),
                "dropout": self.dropout,
                "findings": [{"id": f.id, "explanation": f.explanation,
                              "before": float(f.before), "after": float(f.after)}
                             for f in self.findings]}

    def plot(self, *, title: str = "JAX against torch, per parameter"):
        """Per step, each parameter's relative difference against the tolerance (log scale)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = fig.add_subplot()
        tiny = np.finfo(np.float64).tiny
        for name, d in self.path_diff.items():
            ax.plot(np.arange(d.size), np.maximum(d, 1e-18), label=name, linewidth=1.2)
        ax.axhline(self.tolerance.value, color="black", linestyle="--", linewidth=0.9,
                   label=f"tolerance {self.tolerance.value:.1e}")
        if self.first_divergence is not None:
            ax.axvline(self.first_divergence.step, color="tab:red", linewidth=0.8,
                       label=f"first divergence, step {self.first_divergence.step}")
        ax.set(yscale="log", xlabel="step", ylabel="max |JAX - torch| / max |torch path|",
               title=title)
        ax.set_ylim(bottom=max(tiny, 1e-18))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        return fig

    def assert_ok(self) -> None:
        """Raise an `AssertionError` naming where the two part (for use inside pytest)."""
        if self.ok:
            return
        tol = self.tolerance.value
        if self.random:
            raise AssertionError(RANDOM)
        if self.diverged:
            raise AssertionError(f"the loss became non-finite in {self.diverged}")
        if self.forward_diff > tol:
            raise AssertionError(f"the models' outputs differ at the start by "
                                 f"{self.forward_diff:.2e} > {tol:.1e}")
        if self.loss_diff > tol:
            raise AssertionError(f"the losses differ at the start by {self.loss_diff:.2e} > "
                                 f"{tol:.1e}")
        bad = {k: v for k, v in self.grad_diff.items() if v > tol}
        if bad:
            name = max(bad, key=bad.get)
            raise AssertionError(f"the gradients differ at the start: {name} by "
                                 f"{bad[name]:.2e} > {tol:.1e}")
        raise AssertionError(f"the paths part at {self.first_divergence}")


# --------------------------------------------------------------------------- diagnose


@functools.lru_cache(maxsize=64)
def _cached_twin(name: str, lr, items: tuple):
    return optim.OPTIMIZERS[name](lr=lr, **dict(items))


def _twin(name: str, lr, kwargs: dict):
    """The `functional_fit.optim` twin of a named torch optimizer; the same object for the
    same name and keywords (when they hash), so that a later compare of the same model and
    loss in the process finds its fit's program compiled."""
    items = tuple(sorted(kwargs.items()))
    try:
        hash((lr, items))
    except TypeError:
        return optim.OPTIMIZERS[name](lr=lr, **kwargs)
    return _cached_twin(name, lr, items)


def _optimizers(optimizer, module_params):
    """(optax transformation, torch optimizer) from a torch name or a pair."""
    if isinstance(optimizer, tuple) and len(optimizer) == 2 and isinstance(optimizer[0], str):
        name, kwargs = optimizer
        kwargs = dict(kwargs or {})
        _checks.choice("optimizer", name, tuple(optim.OPTIMIZERS))
        default = inspect.signature(optim.OPTIMIZERS[name]).parameters["lr"].default
        lr = kwargs.pop("lr", default)
        registry.optimizer(name, **kwargs)  # keywords named and checked as torch checks them
        return (_twin(name, lr, kwargs), getattr(torch.optim, name)(module_params, lr=lr,
                                                                     **kwargs))
    if isinstance(optimizer, tuple) and len(optimizer) == 2:
        jax_opt, factory = optimizer
        if not isinstance(jax_opt, optax.GradientTransformation):
            raise InputError("optimizer: the pair's first item must be an optax "
                             "GradientTransformation")
        if not callable(factory):
            raise InputError("optimizer: the pair's second item must be a function "
                             "params -> torch.optim.Optimizer")
        torch_opt = factory(module_params)
        if not isinstance(torch_opt, torch.optim.Optimizer):
            raise InputError("optimizer: the pair's factory must return a "
                             f"torch.optim.Optimizer, got {type(torch_opt).__name__}")
        return jax_opt, torch_opt
    raise InputError("optimizer must be (torch name, keywords), e.g. ('SGD', {'lr': 0.01}), or "
                     "(optax transformation, params -> torch.optim.Optimizer)")


#: ``matmul_precision`` -> (JAX's ``default_matmul_precision``, torch's float32 matmul
#: precision): float32 products in full float32, in TF32 (or XLA's 3-pass bfloat16), or in
#: bfloat16. torch's convolutions follow (``cudnn.allow_tf32``). On a CPU nothing changes.
PRECISIONS = {"highest": ("highest", "highest"), "high": ("high", "high"),
              "medium": ("default", "medium")}


@contextlib.contextmanager
def matmul_precisions(choice: str | None = None):
    """Both frameworks' float32 matrix products as `choice` (`PRECISIONS`) says, within the
    block, and put back after; yields ``{"jax": ..., "torch": ...}``, what each side used.
    None: JAX's products as torch's default (`functional_fit.precision.torch_matmul_precision`)
    and torch's settings as they are."""
    if choice is None:
        with torch_matmul_precision():
            jax_used = getattr(jax.config, "jax_default_matmul_precision", None) or "highest"
            conv = (", convolutions TF32" if torch.backends.cudnn.is_available()
                    and torch.backends.cudnn.allow_tf32 else "")  # cudnn's, on a GPU
            yield {"jax": jax_used, "torch": torch.get_float32_matmul_precision() + conv}
        return
    jax_choice, torch_choice = PRECISIONS[_checks.choice("matmul_precision", choice,
                                                         tuple(PRECISIONS))]
    saved = torch.get_float32_matmul_precision()
    cudnn = torch.backends.cudnn
    try:
        torch.set_float32_matmul_precision(torch_choice)
        # cudnn's own context manager: setting the flag directly is refused once torch's
        # testing utilities have called torch.backends.disable_global_flags()
        # (None: a flag left as it is)
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                         benchmark_limit=None, deterministic=cudnn.deterministic,
                         allow_tf32=torch_choice != "highest", fp32_precision=None,
                         depthwise_kernel=None), \
                jax.default_matmul_precision(jax_choice):
            yield {"jax": jax_choice, "torch": torch_choice}
    finally:
        torch.set_float32_matmul_precision(saved)


class _TrainStep(NamedTuple):
    """The rest of a training step, both sides: optimizer, scheduler, gradient clipping."""

    jax: Any  # the optax transformation (the schedule inside it)
    torch: Any  # the torch optimizer
    scheduler: Any = None  # the torch scheduler of `torch`, stepped after each step, or None
    clip: tuple | None = None  # (max_norm, norm_type) of clip_grad_norm_, or None
    named: bool = True  # a named optimizer: JAX's twin gets the schedule and the clipping


def _training_step(optimizer, module, scheduler, max_norm, norm_type,
                   switch=None) -> _TrainStep:
    """`_TrainStep` of compare's arguments. A named optimizer with a scheduler gets its JAX
    twin from the live pair (`parity.optim.transformation`: the schedule of the same name); a
    pair ``(optax transformation, factory)`` is used as given, its schedule the user's.
    `switch` (torch optimizer -> torch optimizer) changes torch's before its scheduler is
    made (a finding's switch)."""
    jax_opt, torch_opt = _optimizers(optimizer, module.parameters())
    if switch is not None:
        torch_opt = switch(torch_opt)
    sched = None
    if scheduler is not None:
        if not callable(scheduler):
            raise InputError("scheduler must be a function of the torch optimizer, e.g. "
                             "lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10)")
        sched = scheduler(torch_opt)
        kinds = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if not isinstance(sched, kinds):
            raise InputError(f"scheduler must return a torch.optim.lr_scheduler scheduler of "
                             f"the optimizer, got {type(sched).__name__}")
        if isinstance(optimizer[0], str):
            jax_opt = toptim.transformation(torch_opt, module, sched)
    clip = None
    if max_norm is not None:
        clip = (_checks.positive_float("max_norm", max_norm), float(norm_type))
    return _TrainStep(jax_opt, torch_opt, sched, clip, isinstance(optimizer[0], str))


def _with_clip(jax_opt, clip, p0: dict, frozen: tuple):
    """`jax_opt` after torch's ``clip_grad_norm_`` over the trained parameters: the frozen
    ones' gradients (torch has none) are zeroed first, so that they are not in the norm."""
    if clip is None:
        return jax_opt
    parts = [optim.clip_grad_norm(*clip), jax_opt]
    if frozen:
        parts.insert(0, optax.masked(optax.set_to_zero(), {k: k in frozen for k in p0}))
    return optax.chain(*parts)


def _arrays(x, y, pol):
    """x as the policy's data float (numpy), y too unless it holds integer labels."""
    x, y = _checks.points(x, y, ndims=None)
    x = x.astype(pol.data)
    if not np.issubdtype(y.dtype, np.integer):
        y = y.astype(pol.data)
    return x, y


def _check_module(module) -> None:
    """InputError naming ``torch_module`` when it has no parameter: nothing to fit."""
    if not any(True for _ in module.parameters()):
        raise InputError(f"torch_module ({type(module).__name__}) has no parameters: nothing "
                         "to fit")


def _start(module, params, pol):
    """A copy of the module in the policy's dtype, loaded with `params` (or its own weights):
    (module, its parameters, its buffers), each a dict of ``state_dict`` names -> numpy. An
    integer buffer is int64 in float64 and int32 in float32, as JAX holds it there."""
    _check_module(module)
    module = copy.deepcopy(module).to(torch_dtype(pol.params))
    if params is not None:
        tparams.load(module, params)
    state = tparams.from_module(module)
    names = {k for k, _ in module.named_parameters()}
    ints = np.int64 if pol.params == "float64" else np.int32
    buffers = {k: (v.astype(ints) if np.issubdtype(v.dtype, np.integer) else v)
               for k, v in state.items() if k not in names}
    return module, {k: v for k, v in state.items() if k in names}, buffers


def _own_start(jax_model, jax_params, module, p0: dict):
    """The JAX side's own start, its parameters by state_dict name: `jax_params` (checked
    against `p0`'s names), or a flax or equinox port's own arrays, or None."""
    if jax_params is None:
        own = tmodules.own_start(jax_model, module)
        return None if own is None else {k: own[k] for k in p0 if k in own}
    if not isinstance(jax_params, dict) or set(jax_params) != set(p0):
        raise InputError(f"jax_params must be a dict of the module's parameters by state_dict "
                         f"name ({', '.join(p0)})")
    return {k: np.asarray(v) for k, v in jax_params.items()}


def _dropout(module, dropout: str, seed: int):
    """(the masks' key or None, `Comparison.dropout`) for the module's active ``nn.Dropout``
    layers; with ``"off"`` they are put in eval mode (the module is compare's own copy)."""
    names = tdropout.dropouts(module)
    if not names:
        return None, None
    if dropout == "off":
        for name in names:
            module.get_submodule(name).eval()
        return None, "off"
    return jax.random.key(seed), "shared"


def _jax_model(jax_model, module, s0: dict, shared: str | None):
    """(the JAX model over torch's names, its dropout convention): a flax or equinox port
    wrapped by `parity.modules.as_model`, a function as it is. InputError when the masks
    cannot be shared (linen's)."""
    if tmodules.kind(jax_model) is None:
        return jax_model, "batch"
    model = tmodules.as_model(jax_model, module, tuple(s0))
    if shared == "shared" and model.dropout_convention is None:
        raise InputError("jax_model is a linen module, whose dropout masks follow no order "
                         "torch could replay: pass dropout='off'")
    return model, model.dropout_convention


class _Port(NamedTuple):
    """The two halves of a port, at their common start, and the data in both frameworks."""

    jax_model: Any
    jax_loss: Any
    module: Any  # the torch module, a copy loaded with the start
    torch_loss: Any
    p0: dict  # the start, state_dict names -> numpy arrays
    x: np.ndarray  # (n, ...)
    y: np.ndarray  # (n, ...)
    tx: Any  # x as a tensor
    ty: Any  # y as a tensor
    s0: dict | None = None  # the buffers at the start (the JAX model's state), or None
    key: Any = None  # the dropout masks' key (both sides), or None
    convention: str = "batch"  # how the JAX model draws its masks (parity.dropout.shared)
    step: int = 0  # the step whose dropout masks the forwards draw

    def jax_forward(self, p):
        """JAX's output at `p` on the whole data, with `step`'s masks (and its new state)."""
        k = None if self.key is None else engine.step_key(self.key, self.step)
        return engine.apply(self.jax_model, p, self.s0, jnp.asarray(self.x), k)


def _probe(port: _Port):
    """A copy of the torch module to diagnose on (a forward in training mode updates
    BatchNorm's buffers), its dropout layers drawing the port's step's masks when shared."""
    probe = copy.deepcopy(port.module)
    return probe, (_masks(probe, port) if port.key is not None else contextlib.nullcontext())


@contextlib.contextmanager
def _masks(probe, port: _Port):
    """Within the block, `probe`'s dropout layers draw the masks of `port.step`."""
    with tdropout.shared(probe, port.key, port.convention) as masks:
        masks.step = port.step
        yield masks


def _at_step(port: _Port, jpath: dict, tpath: dict, step: int):
    """(JAX's side at `step`: its parameters and state there; torch's: a probe loaded with its
    parameters and buffers there, and the context drawing that step's masks)."""
    at = port._replace(p0={k: jpath[k][step] for k in port.p0}, step=step,
                       s0=None if port.s0 is None else {k: jpath[k][step] for k in port.s0})
    probe, masks = _probe(at)
    tparams.load(probe, {k: tpath[k][step] for k in (*port.p0, *(port.s0 or {}))})
    return at, probe, masks


def _forwards(port: _Port, probe):
    """JAX's forward traced (its output's shape and dtype: `_at_start` computes it) and
    torch's run, at the start; InputError when one fails or they differ in shape or dtype."""
    stateful = ("" if port.s0 is None else f"; torch_module has buffers ({', '.join(port.s0)}"
                f"), so jax_model must be jax_model(params, state, x) -> (y_hat, new_state)")
    try:
        out, new = jax.eval_shape(port.jax_forward, jax.tree.map(jnp.asarray, port.p0))
    except Exception as exc:
        raise InputError(f"jax_model fails on the parameters and the data's shape x "
                         f"{port.x.shape} ({first_line(exc)}){stateful}") from None
    if port.s0 is not None and (not isinstance(new, dict) or set(new) != set(port.s0)):
        got = sorted(new) if isinstance(new, dict) else type(new).__name__
        raise InputError(f"jax_model's new state must be a dict of the buffers "
                         f"{sorted(port.s0)}, got {got}{stateful}")
    try:
        with torch.no_grad():
            tout = probe(port.tx)
    except Exception as exc:
        raise InputError(f"torch_module fails on the data's shape x {tuple(port.tx.shape)} "
                         f"({first_line(exc)})") from None
    if tuple(np.shape(out)) != tuple(tout.shape):
        raise InputError(f"the two forwards differ in shape: jax_model gives "
                         f"{tuple(np.shape(out))}, torch_module {tuple(tout.shape)}")
    if np.dtype(out.dtype) != np.dtype(str(tout.dtype).removeprefix("torch.")):
        raise InputError(f"the two forwards differ in dtype: jax_model gives {out.dtype}, "
                         f"torch_module {tout.dtype}")
    return out, tout


def _loss(name: str, output: str, fn, *args):
    """``fn(*args)``, a loss of `output` and y; any failure but an InputError as one
    InputError naming the loss."""
    try:
        return fn(*args)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{name} fails on {output} and y ({first_line(exc)})") from None


def _start_values(p, state, x, y, key, *, model, loss):
    """((loss, output (n, ...)), the loss's gradient, a dict like `p`) of `model` at `p` on
    the whole data x (n, ...), y (n, ...), with step 0's `key`."""

    def value(q):
        out = engine.apply(model, q, state, x, key)[0]
        return loss(out, y), out

    return jax.value_and_grad(value, has_aux=True)(p)


#: `_start_values` compiled once per model, loss and shapes: a second compare of the same
#: pair in a process finds it again.
_start_values_jit = jax.jit(_start_values, static_argnames=("model", "loss"))


def _at_start(port: _Port):
    """((JAX's loss, its output), the loss's gradient) at the start, in one compiled program:
    the forward, the loss and the backward that the diagnostics need."""
    key = None if port.key is None else engine.step_key(port.key, port.step)
    args = (jax.tree.map(jnp.asarray, port.p0), port.s0, jnp.asarray(port.x),
            jnp.asarray(port.y), key)
    try:
        return _start_values_jit(*args, model=port.jax_model, loss=port.jax_loss)
    except ValueError as exc:  # an unhashable model or loss: compiled for this call alone
        if "Non-hashable static arguments" not in str(exc):
            raise
    return jax.jit(lambda *a: _start_values(*a, model=port.jax_model, loss=port.jax_loss))(*args)


def _diagnose(port: _Port, probe):
    """Run both forwards and losses once, on the start; InputError on any mismatch. JAX's
    are traced first (`jax.eval_shape`, the targets concrete, so that a loss checks its labels'
    range), then run with the gradient in one program (`_at_start`).

    Returns:
      (JAX's output, torch's output, JAX's loss, torch's loss) as numpy and floats, and JAX's
      gradient at the start (a dict of the parameters' names).
    """
    spec, tout = _forwards(port, probe)
    y = jnp.asarray(port.y)
    value = _loss("jax_loss", "the model's output", jax.eval_shape,
                  lambda out: port.jax_loss(out, y), spec)
    with torch.no_grad():
        tvalue = _loss("torch_loss", "the module's output", port.torch_loss, tout, port.ty)
    for name, v in (("jax_loss", np.shape(value)), ("torch_loss", tuple(tvalue.shape))):
        if tuple(v) != ():
            raise InputError(f"{name} must return a scalar, got shape {tuple(v)}")
    (value, out), grads = _at_start(port)
    return np.asarray(out), tout.numpy(), float(value), float(tvalue), grads


def _random(port: _Port, probe) -> bool:
    """Whether the module's forward, in its own mode and with the shared masks, gives two
    outputs for the same x (torch's random state is put back: the fit draws what it would
    have drawn)."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        first, second = probe(port.tx), probe(port.tx)
    return not torch.equal(torch.nan_to_num(first), torch.nan_to_num(second))


def _frozen(module) -> tuple:
    """The names of the parameters with ``requires_grad=False``, which torch does not update."""
    return tuple(name for name, p in module.named_parameters() if not p.requires_grad)


def _freeze(jax_opt, p0: dict, frozen: tuple, unused: tuple = ()):
    """`jax_opt` on the trained parameters, zero updates for the `frozen` (as torch skips a
    parameter without a gradient, weight decay and momentum included), and for the `unused`
    `jax_opt` under `functional_fit.optim.skip_unused` (skipped on a step whose gradient is
    exactly zero, as torch skips a None ``.grad``)."""
    if not frozen and not unused:
        return jax_opt
    labels = {k: "frozen" if k in frozen else "unused" if k in unused else "trained"
              for k in p0}
    return optax.multi_transform({"trained": jax_opt, "frozen": optax.set_to_zero(),
                                  "unused": optim.skip_unused(jax_opt)}, labels)


def _gradients(port: _Port, probe, g: dict, frozen: tuple = (), tol: float = 0.0) -> tuple:
    """(name -> relative difference of the two gradients at the start, JAX's `g` against
    torch's, for every parameter but the `frozen`; the names of the unused: torch leaves their
    ``.grad`` None; the names of the null: gradients zero up to rounding). An unused
    parameter's JAX gradient is compared with zero (inf when it is not zero: the JAX model
    uses what the torch module does not). A
    parameter whose gradients on both sides are within `tol` of the whole gradient's scale G
    (a bias just before a training-mode BatchNorm, which cancels it) is null: its difference
    is measured against G, as its own scale is rounding."""
    probe.zero_grad()
    port.torch_loss(probe(port.tx), port.ty).backward()
    tg = {k: v.grad.detach().numpy() for k, v in probe.named_parameters()
          if v.grad is not None}
    unused = tuple(k for k in port.p0 if k not in frozen and k not in tg)
    scale = max([float(np.max(np.abs(v))) for v in tg.values() if v.size] + [0.0])
    null = tuple(k for k in tg if k not in frozen and scale > 0
                 and max(np.max(np.abs(tg[k])), np.max(np.abs(np.asarray(g[k])))) <= tol * scale)
    diffs = {k: (float(np.max(np.abs(np.asarray(g[k]) - tg[k]))) / scale if k in null
                 else rel_err(np.asarray(g[k]), tg[k])) if k in tg else
             (0.0 if not np.any(np.asarray(g[k])) else math.inf)
             for k in port.p0 if k not in frozen}
    return diffs, unused, null


# --------------------------------------------------------------------------- the tolerance


def tolerance(dtype: str, steps: int, batch: int, widest: int, layers: int) -> Tolerance:
    """The bound two correct ports stay within, relative to each parameter's path's scale.

    One step may differ by ``r = (L * ROUNDINGS_PER_LAYER + OPTIMIZER_ROUNDINGS + ceil(log2 B)
    + ceil(log2 W)) u``: the layers' elementwise work, the optimizer's update, the sum over the
    batch and the widest matrix product's sum, in pairwise order (u the unit roundoff;
    `functional_fit.tolerances.step_roundings`). On a stable path these add up linearly:
    ``tol = SAFETY * max(T, 1) * r`` (`functional_fit.tolerances.accumulated`).
    """
    return _tolerance(policy(dtype), steps, batch, widest, layers)


def _tolerance(pol, steps: int, batch: int, widest: int, layers: int) -> Tolerance:
    per_step = step_roundings(batch, layers=layers, widest=widest, optimizer=True)
    value = accumulated(pol.params, steps, per_step, safety=SAFETY)
    u = UNIT_ROUNDOFF[pol.params]
    return Tolerance(value, f"{pol.params} (u = {u:.1e}), {steps} steps x {per_step} roundings a "
                            f"step ({layers} layers, batch {batch}, widest sum {widest}, the "
                            f"optimizer's {OPTIMIZER_ROUNDINGS}) x safety {SAFETY:g}")


# --------------------------------------------------------------------------- compare


class _Length(NamedTuple):
    """A comparison's fit length: the keywords of both `train` functions, and its sizes."""

    run: dict  # steps=T, or order=(epochs, n) and batch_size=B
    steps: int  # the number of steps
    batch: int  # the points of a step's batch


def _length(n, steps, epochs, batch_size, order_seed) -> _Length:
    """`functional_fit.data.fit_length` of the comparison (100 full-batch steps by default);
    minibatches take the order ``batch_order(n, epochs, order_seed)``."""
    length = _data.fit_length(n, steps=steps, epochs=epochs, batch_size=batch_size,
                              defaults=steps is None and epochs is None)
    if length.full:
        return _Length(dict(steps=length.steps), length.steps, n)
    order = _data.batch_order(n, length.epochs, _checks.nonnegative_int("order_seed", order_seed))
    return _Length(dict(order=order, batch_size=length.batch_size), length.total(n),
                   length.batch_size)


def _jax_path(port: _Port, jax_opt, length: _Length):
    """JAX's path (name -> (steps+1, *shape) numpy: the parameters', then the buffers') and
    whether its loss became non-finite."""
    try:
        result = fit.train(port.p0, port.x, port.y, model=port.jax_model, loss=port.jax_loss,
                           optimizer=jax_opt, state=port.s0, key=port.key, **length.run)
        diverged = False
    except DivergenceError as exc:
        result, diverged = exc.result, True
    path = {**result.path, **(result.state_path or {})}
    return {k: np.asarray(v) for k, v in path.items()}, diverged


def _torch_path(port: _Port, step: _TrainStep, length: _Length):
    """torch's path (name -> (steps+1, *shape), parameters and buffers) and whether its loss
    became non-finite."""
    clip = {} if step.clip is None else dict(max_norm=step.clip[0], norm_type=step.clip[1])
    try:
        return tfit.train(port.module, port.torch_loss, port.tx, port.ty, optimizer=step.torch,
                          scheduler=step.scheduler, key=port.key,
                          dropout_convention=port.convention, **clip, **length.run).path, False
    except DivergenceError as exc:
        return exc.result.path, True


def _divergent_layers(port: _Port, c: Comparison, pol, batch: int, widest: int,
                      precision) -> Comparison:
    """`c` with its layers at the first divergent step added, when the two part along the path
    (everything agreed at the start) and the JAX model taps its layers: each side at its own
    parameters, state and dropout masks there, on the whole data."""
    first = c.first_divergence
    if first is None or first.step == 0 or not c.layers or c.culprit not in (
            "state", "optimizer", "null_gradient"):
        return c
    at, probe, masks = _at_step(port, c.jax_path, c.torch_path, first.step)
    with matmul_precisions(precision), masks:
        return c._replace(layers=c.layers + _record(at, probe, pol, batch, widest))


def _record(port: _Port, probe, pol, batch: int, widest: int) -> tuple:
    """`comparison.layers.record` of the port at its step (its parameters, state and masks)."""
    return _by_layer.record(
        lambda: port.jax_forward(jax.tree.map(jnp.asarray, port.p0))[0], port.jax_loss,
        jnp.asarray(port.y), probe, port.tx, port.ty, port.torch_loss, pol, batch, widest,
        safety=SAFETY, step=port.step)


def _compared_buffers(s0, jpath) -> tuple:
    """The buffers whose paths are compared: every floating one, and an integer one
    (``num_batches_tracked``) when the JAX model updates it."""
    return tuple(k for k, v in (s0 or {}).items()
                 if np.issubdtype(v.dtype, np.floating) or np.any(jpath[k] != jpath[k][:1]))


def _paths_apart(p0, jpath, tpath, tol: Tolerance):
    """(name -> (steps+1,) relative difference over the path's scale, the first `Divergence`
    beyond `tol` or None), for the names of `p0`, over the steps both paths reached."""
    shared = min(min(v.shape[0] for v in jpath.values()), min(v.shape[0] for v in tpath.values()))
    path_diff = {}
    for k in p0:
        a = jpath[k][:shared].astype(np.float64)
        b = tpath[k][:shared].astype(np.float64)
        scale = max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
        d = np.abs(a - b).reshape(shared, -1)  # (steps+1, size)
        path_diff[k] = np.where(np.isnan(d), np.inf, d).max(axis=1) / scale  # (steps+1,)
    for t in range(shared):
        worst = max(path_diff, key=lambda k: path_diff[k][t])
        if path_diff[worst][t] > tol.value:
            a, b = jpath[worst][t], tpath[worst][t]
            flat = np.argmax(np.where(np.isnan(a - b), np.inf, np.abs(a - b)).ravel())
            index = np.unravel_index(flat, np.shape(a)) if np.ndim(a) else ()
            return path_diff, Divergence(t, worst, tuple(int(i) for i in index),
                                         float(np.ravel(a)[flat]), float(np.ravel(b)[flat]),
                                         float(path_diff[worst][t]), tol.value)
    return path_diff, None


# --------------------------------------------------------------------------- findings


class _Rerun(NamedTuple):
    """What re-running a comparison's prefix needs: its arguments and its first runs."""

    port: _Port  # its module at the start
    step: _TrainStep  # the first run's step: JAX's transformation, the clipping, its kind
    optimizer: Any  # compare's `optimizer`, `scheduler`, `max_norm`, `norm_type`: torch's
    #: optimizer is made again on each fresh copy of the module
    scheduler: Any
    clip: tuple  # (max_norm, norm_type)
    frozen: tuple
    unused: tuple
    length: _Length
    prefix: int  # the steps re-run: the first divergence and a few after it
    precision: str | None
    jpath: dict  # the first runs' paths
    tpath: dict
    names: tuple  # the parameters and buffers compared


#: Steps re-run after the first divergent one, to see a switch hold beyond it.
AFTER = 4
_JAX_CHANGES = ("jax_params", "jax_loss_scale", "jax_opt")
_TORCH_CHANGES = ("torch_loss", "torch_optimizer", "torch_clip", "torch_bn", "torch_twin")


def _prefix(length: _Length, steps: int) -> _Length:
    """The first `steps` steps of `length` (whole epochs for minibatches)."""
    if "steps" in length.run:
        return _Length(dict(steps=steps), steps, length.batch)
    order = length.run["order"]
    per_epoch = math.ceil(order.shape[1] / length.run["batch_size"])
    epochs = min(order.shape[0], math.ceil(steps / per_epoch))
    return _Length({**length.run, "order": order[:epochs]}, epochs * per_epoch, length.batch)


def _switched_port(port: _Port, changes: dict) -> _Port:
    """`port` with the JAX model's parameters mapped, its loss scaled and torch's loss as
    `changes` say."""
    model, loss = port.jax_model, port.jax_loss
    if "jax_params" in changes:
        fix = changes["jax_params"]
        model = (lambda m: lambda p, *args, **kw: m(fix(p), *args, **kw))(model)
    if "jax_loss_scale" in changes:
        factor = changes["jax_loss_scale"]
        loss = (lambda f: lambda y_hat, y: factor * f(y_hat, y))(loss)
    return port._replace(jax_model=model, jax_loss=loss,
                         torch_loss=changes.get("torch_loss", port.torch_loss))


def _rebuild(rr: _Rerun, module, switch=None) -> _TrainStep:
    """The training step of `rr`'s arguments on `module` (a fresh copy of the start)."""
    return _training_step(rr.optimizer, module, rr.scheduler, *rr.clip, switch=switch)


def _jax_opt(rr: _Rerun, step: _TrainStep, core):
    """compare's JAX optimizer around `core`: the frozen and unused wrappers, a named
    optimizer's clipping."""
    jax_opt = _freeze(core, rr.port.p0, rr.frozen, rr.unused)
    return _with_clip(jax_opt, step.clip, rr.port.p0, rr.frozen) if step.named else jax_opt


def _rerun_jax(rr: _Rerun, changes: dict, length: _Length) -> dict:
    """JAX's path over `length` with the JAX side's `changes` (parameters mapped, loss
    scaled, optimizer wrapped)."""
    core = changes.get("jax_opt", lambda tx: tx)(rr.step.jax)
    return _jax_path(_switched_port(rr.port, changes), _jax_opt(rr, rr.step, core), length)[0]


def _rerun_torch(rr: _Rerun, changes: dict, length: _Length) -> dict:
    """torch's path over `length`, from a fresh copy of the start, with torch's `changes`
    (its optimizer, clipping, BatchNorm or loss switched; or its step run through a switched
    JAX twin)."""
    module = copy.deepcopy(rr.port.module)
    step = _rebuild(rr, module, changes.get("torch_optimizer"))
    if "torch_twin" in changes:  # torch's step, switched, run in JAX (the twin is torch's)
        return _jax_path(rr.port, _jax_opt(rr, step._replace(named=True),
                                           changes["torch_twin"]), length)[0]
    if "torch_bn" in changes:
        known.patch_batchnorm(module, **changes["torch_bn"])
    if changes.get("torch_clip") is False:
        step = step._replace(clip=None)
    port = _switched_port(rr.port, changes)._replace(module=module)
    return _torch_path(port, step, length)[0]


def _largest(names, jpath: dict, tpath: dict, steps: int) -> float:
    """The largest relative difference of the two paths over their first `steps` + 1 rows."""
    diffs, _ = _paths_apart(names, {k: jpath[k][:steps + 1] for k in names},
                            {k: tpath[k][:steps + 1] for k in names}, Tolerance(math.inf, ""))
    return max((float(np.max(d)) for d in diffs.values()), default=0.0)


def _path_measure(rr: _Rerun):
    """changes -> the two runs' largest difference over the prefix, each side re-run only
    when a change touches it."""
    length = _prefix(rr.length, rr.prefix)

    def measure(changes: dict) -> float:
        both = "precision" in changes
        with matmul_precisions(changes.get("precision", rr.precision)):
            jpath = (_rerun_jax(rr, changes, length)
                     if both or any(k in changes for k in _JAX_CHANGES) else rr.jpath)
            tpath = (_rerun_torch(rr, changes, length)
                     if both or any(k in changes for k in _TORCH_CHANGES) else rr.tpath)
        return _largest(rr.names, jpath, tpath, min(rr.prefix, length.steps))

    return measure


def _start_measure(rr: _Rerun, culprit: str, tol: float):
    """changes -> the two sides' largest difference at the start, up to the culprit's part:
    the outputs, then the losses, then the gradients."""
    def measure(changes: dict) -> float:
        port = _switched_port(rr.port, changes)
        with matmul_precisions(changes.get("precision", rr.precision)):
            probe, masks = _probe(port)
            with masks:
                out, tout, value, tvalue, g = _diagnose(port, probe)
                found = [rel_err(out, tout)]
                if culprit != "model":
                    found.append(rel_err(value, tvalue))
                if culprit == "gradient":
                    found += list(_gradients(port, probe, g, rr.frozen, tol)[0].values())
        return max(found)

    return measure


def _optimizer_suspects(rr: _Rerun, torch_opt, pol) -> list:
    """The optimizer's known differences that apply to the pair: torch's re-runs first, then
    JAX's (each compiles a program), skipping zero gradients last (it compiles the slowest)."""
    out, groups = [], torch_opt.param_groups
    if isinstance(torch_opt, torch.optim.Adam) and any(g["weight_decay"] for g in groups):
        decoupled = groups[0].get("decoupled_weight_decay",
                                  isinstance(torch_opt, torch.optim.AdamW))
        out.append(known.Switch("coupled_weight_decay", f"torch's {type(torch_opt).__name__} "
                                f"{'coupled' if decoupled else 'decoupled'} agrees",
                                {"torch_optimizer": known.flip_weight_decay}))
    if rr.clip[0] is not None:
        out.append(known.Switch("clip_eps", "torch's clipping without the 1e-6 agrees",
                                {"torch_optimizer": known.clip_without_eps(*rr.clip),
                                 "torch_clip": False}))
    if isinstance(torch_opt, torch.optim.RMSprop) and len(groups) == 1 and rr.scheduler is None:
        out.append(known.Switch("rmsprop_eps", "torch's RMSprop with eps inside the root "
                                "agrees", {"torch_twin": known.rmsprop_eps_inside(groups[0])}))
    if pol.params == "float64" and known.int32_counts(rr.step.jax, rr.port.p0):
        out.append(known.Switch("schedule_dtype", "JAX's optimizer counting in int64 agrees",
                                {"jax_opt": known.widen_counts}))
    out.append(known.Switch("none_grad", "JAX's optimizer skipping zero gradients agrees",
                            {"jax_opt": optim.skip_unused}))
    return out


def _state_suspects(rr: _Rerun, step: int) -> list:
    """BatchNorm's conventions, the momentum inferred from the running means' first steps:
    m_jax = m_torch * (JAX's change) / (torch's change), the median over the elements."""
    layers = known.batchnorms(rr.port.module)
    if not layers or step < 1:
        return []
    ratios = []
    for name, layer in layers:
        k = f"{name}.running_mean" if name else "running_mean"
        dj = rr.jpath[k][step] - rr.jpath[k][step - 1]
        dt = rr.tpath[k][step] - rr.tpath[k][step - 1]
        keep = np.abs(dt) > 1e-8 * max(float(np.max(np.abs(dt))), np.finfo(float).tiny)
        ratios += list(layer.momentum * dj[keep] / dt[keep])
    out = []
    torch_m = layers[0][1].momentum
    if ratios and torch_m is not None:
        m = known.snap(float(np.median(ratios)))
        if abs(m - torch_m) > 1e-6 * abs(torch_m) and m > 0:
            out.append(known.Switch("batchnorm_momentum", f"JAX's running statistics take "
                                    f"{m:g} of each batch, torch's momentum {torch_m:g}",
                                    {"torch_bn": {"momentum": m}}))
    out.append(known.Switch("batchnorm_variance", "torch's running variance from the biased "
                            "batch variance agrees", {"torch_bn": {"biased": True}}))
    return out


def _loss_suspects(port: _Port, out_shape, value: float, tvalue: float) -> list:
    """The loss's known differences: a count between the two losses (mean against sum), and
    torch's loss with its reduction, label smoothing or ignore_index flipped."""
    out = []
    factor = known.reduction_factor(value, tvalue, np.shape(port.y), out_shape)
    if factor is not None:
        word = "summed" if factor > 1 else "averaged"
        out.append(known.Switch("loss_reduction", f"torch's loss is {word} where JAX's is not: "
                                f"JAX's times {factor:.6g} agrees",
                                {"jax_loss_scale": factor}))
    out += [known.Switch("loss_reduction", detail, {"torch_loss": switched})
            for detail, switched in known.loss_switches(port.torch_loss)]
    return out


def _suspects(rr: _Rerun, c: Comparison, torch_opt, pol, start: tuple) -> list:
    """The known differences that could explain where `c` parts first (`start`: the output's
    shape, JAX's loss and torch's at the start)."""
    precision = ([known.Switch("matmul_precision", "both sides in full float32 agree",
                               {"precision": "highest"})]
                 if pol.params == "float32" and set(c.matmul_precision.values()) != {"highest"}
                 else [])
    culprit = c.culprit
    if culprit == "model":
        return [*(known.Switch("kernel_layout", f"{name} given to the JAX model {what} agrees",
                               {"jax_params": known.swapped(name, axes)})
                  for name, axes, what in known.layout_swaps(rr.port.p0, c.first_layer)),
                *precision]
    if culprit == "loss":
        return _loss_suspects(rr.port, *start)
    if culprit == "gradient":
        return precision
    if culprit == "state":
        return _state_suspects(rr, c.first_divergence.step)
    if culprit == "optimizer":
        return [*_optimizer_suspects(rr, torch_opt, pol), *precision]
    return []


def _findings(rr: _Rerun, c: Comparison, torch_opt, pol, start: tuple) -> tuple:
    """`c`'s confirmed `comparison.findings.Finding`s (`comparison.findings.confirm`): at
    the start for a culprit there (the model, the loss, the gradient), else over the prefix
    up to the first divergence and `AFTER` steps more."""
    suspects = _suspects(rr, c, torch_opt, pol, start)
    if not suspects:
        return ()
    tol = c.tolerance.value
    culprit = c.culprit
    if culprit in ("model", "loss", "gradient"):
        found = [c.forward_diff, *([c.loss_diff] if culprit != "model" else []),
                 *(c.grad_diff.values() if culprit == "gradient" else [])]
        return known.confirm(suspects, _start_measure(rr, culprit, tol), max(found), tol)
    measure = _path_measure(rr)
    return known.confirm(suspects, measure, measure({}), tol)


def _torch_init(port: _Port, own, tout, forward_diff: float, tol: float):
    """The ``torch_init`` `comparison.findings.Finding` when the JAX model's own start `own`
    (state_dict names -> arrays, its parameters) makes the outputs part where torch's start
    does not; None otherwise."""
    if own is None:
        return None
    own = {k: np.asarray(own[k], dtype=v.dtype) if k in own else v for k, v in port.p0.items()}
    differ = [k for k in port.p0 if np.shape(own[k]) != np.shape(port.p0[k])
              or not np.array_equal(own[k], port.p0[k])]
    if not differ or any(np.shape(own[k]) != np.shape(port.p0[k]) for k in differ):
        return None
    out, _ = jax.jit(port.jax_forward)(jax.tree.map(jnp.asarray, own))
    before = rel_err(np.asarray(out), tout)
    if not before > tol >= forward_diff:
        return None
    where = (f"the JAX model's own start differs from torch's in {len(differ)} of "
             f"{len(port.p0)} parameters ({', '.join(differ[:3])}"
             f"{', ...' if len(differ) > 3 else ''}); compare starts both from torch's")
    return known.Finding("torch_init", f"{known.EXPLANATIONS['torch_init']}; {where}", before,
                         forward_diff)


def compare(jax_model, torch_module, x, y, *, jax_loss, torch_loss,
            optimizer=("SGD", {"lr": 0.01}), steps: int | None = None,
            epochs: int | None = None, batch_size: int | None = None, order_seed: int = 0,
            dtype: str = "float64", params=None, dropout: str = "shared",
            dropout_seed: int = 0, scheduler=None, max_norm: float | None = None,
            norm_type: float = 2.0, matmul_precision: str | None = None,
            jax_params=None) -> Comparison:  # 20: a port's two halves, named
    """Run one fit in JAX and in torch from the same start and compare, step by step.

    Args:
      jax_model: ``jax_model(params, x) -> y_hat``, params a dict of ``state_dict`` names; for
        a module with buffers ``jax_model(params, state, x) -> (y_hat, new_state)``, state the
        buffers by name; called with ``key=`` as well when the module has active dropout. Or
        a flax NNX module, an equinox module (or (module, ``eqx.nn.State``)), or a linen
        (module, variables) pair: filled from the torch module's names at every step
        (`parity.modules.as_model`).
      torch_module: the ``nn.Module`` it ports; it is copied, never trained in place.
      x: (n, ...) inputs; y: (n, ...) targets (integer labels for a classifier).
      jax_loss, torch_loss: ``loss(y_hat, y) -> ()`` in each framework.
      optimizer: a torch name and its keywords, used on both sides (``("SGD", {"lr": 0.01})``:
        `functional_fit.optim.SGD` and ``torch.optim.SGD``); or a pair ``(optax
        transformation, params -> torch.optim.Optimizer)`` for your own.
      steps: full-batch steps; or `epochs` with `batch_size`: minibatches in the order
        ``functional_fit.data.batch_order(n, epochs, order_seed)``, fed to torch's
        ``DataLoader`` through `parity.data.OrderSampler`. Default: 100 full-batch steps.
      dtype: ``"float64"`` or ``"float32"``: the parameters and the data, both sides.
      params: the start, a dict of ``state_dict`` names -> arrays (parameters and buffers);
        default the module's own.
      jax_params: the JAX side's own start (its initializers' values), a dict of
        ``state_dict`` names -> arrays; a flax or equinox module's own by default. Both sides
        still start from torch's (or `params`); when the JAX side's own start alone makes the
        outputs part, `Comparison.findings` says so first (``torch_init``).
      dropout: ``"shared"``: the module's active ``nn.Dropout`` layers and the JAX model draw
        the same masks, from ``jax.random.key(dropout_seed)`` (`parity.dropout`); ``"off"``:
        dropout switched off on both sides (JAX's model is called without a key).
      dropout_seed: the masks' seed.
      scheduler: the rest of a torch training step, as torch code has it: a function of the
        torch optimizer returning its ``torch.optim.lr_scheduler`` scheduler, stepped after
        every optimizer step as `parity.fit.train` steps it (on the step's loss for
        ``ReduceLROnPlateau``). A named optimizer's JAX twin then carries the schedule of the
        same name (`parity.optim.transformation`); a pair's is the user's own.
      max_norm, norm_type: torch's ``clip_grad_norm_`` between ``backward`` and ``step``;
        a named optimizer's JAX twin chains `functional_fit.optim.clip_grad_norm` before it,
        a pair's transformation is compared as given (it clips itself, or not).
      matmul_precision: ``"highest"``, ``"high"`` or ``"medium"``: both sides' float32
        matrix products (`PRECISIONS`: torch's ``set_float32_matmul_precision`` and
        ``cudnn.allow_tf32``, JAX's ``default_matmul_precision``); None: JAX's as torch's
        default, torch's as they are. `Comparison.matmul_precision` says what each used.

    Returns:
      `Comparison`; ``.ok``, ``.first_divergence``, ``.table()``, ``.plot()``,
      ``.assert_ok()``.

    Raises:
      InputError: one line, before anything runs, naming what does not match.
    """
    pol = require(_checks.choice("dtype", dtype, ("float64", "float32")))  # checked once, here
    _checks.choice("dropout", dropout, ("shared", "off"))
    dropout_seed = _checks.nonnegative_int("dropout_seed", dropout_seed)
    if not isinstance(torch_module, torch.nn.Module):
        raise InputError(f"torch_module must be an nn.Module, got {type(torch_module).__name__}")
    x, y = _arrays(x, y, pol)
    length = _length(x.shape[0], steps, epochs, batch_size, order_seed)
    module, p0, s0 = _start(torch_module, params, pol)
    key, shared = _dropout(module, dropout, dropout_seed)
    own = _own_start(jax_model, jax_params, module, p0)
    jax_model, convention = _jax_model(jax_model, module, s0, shared)
    port = _Port(jax_model, jax_loss, module, torch_loss, p0, x, y, torch.from_numpy(x),
                 torch.from_numpy(y), s0 or None, key, convention)
    # the widest sum of a weight's product: in (Linear), in x kh x kw (Conv)
    fan_in = max([math.prod(v.shape[1:]) for v in p0.values() if v.ndim >= 2] + [1])
    layers = sum(1 for v in p0.values() if v.ndim >= 2) or 1
    tol = _tolerance(pol, length.steps, length.batch, fan_in, layers)
    # both sides' float32 matrix products set alike: like is compared with like
    with matmul_precisions(matmul_precision) as used:
        probe, masks = _probe(port)
        with masks:
            out, tout, value, tvalue, g = _diagnose(port, probe)
            random, frozen = _random(port, probe), _frozen(module)
            grads, unused, null = _gradients(port, probe, g, frozen, tol.value)
            layers = _record(port, probe, pol, length.batch, fan_in)
        trained = copy.deepcopy(module)  # port.module stays at the start, for re-runs
        step = _training_step(optimizer, trained, scheduler, max_norm, norm_type)
        jax_opt = _freeze(step.jax, p0, frozen, unused)
        if step.named:  # a pair's own transformation is compared as given
            jax_opt = _with_clip(jax_opt, step.clip, p0, frozen)
        jpath, jax_diverged = _jax_path(port, jax_opt, length)
        tpath, torch_diverged = _torch_path(port._replace(module=trained), step, length)
    buffers = _compared_buffers(port.s0, jpath)
    names = {**p0, **{k: s0[k] for k in buffers}}
    path_diff, first = _paths_apart(names, jpath, tpath, tol)
    diverged = [side for side, bad in (("jax", jax_diverged), ("torch", torch_diverged)) if bad]
    c = Comparison(
        forward_diff=rel_err(out, tout), loss_diff=rel_err(value, tvalue), grad_diff=grads,
        path_diff=path_diff, steps=length.steps, tolerance=tol, first_divergence=first,
        jax_path=jpath, torch_path=tpath,
        diverged=None if not diverged else ("both" if len(diverged) == 2 else diverged[0]),
        frozen=frozen, unused=unused, random=random, buffers=buffers, dropout=shared,
        null=null, matmul_precision=used, layers=layers)
    rr = _Rerun(port, step, optimizer, scheduler, (max_norm, norm_type), frozen, unused, length,
                0 if first is None else min(length.steps, first.step + AFTER), matmul_precision,
                jpath, tpath, tuple(names))
    found = (() if c.ok or c.culprit in ("none", "random", "divergence", "null_gradient")
             else _findings(rr, c, step.torch, pol, (np.shape(out), value, tvalue)))
    init = _torch_init(port, own, tout, c.forward_diff, tol.value)
    c = _divergent_layers(port, c, pol, length.batch, fan_in, matmul_precision)
    return c._replace(findings=known.with_first(found, init))

__all__ = ["Comparison", "Divergence", "Layer", "PRECISIONS", "Tolerance", "compare",
           "matmul_precisions", "tolerance"]
