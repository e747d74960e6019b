"""Known framework differences, named and confirmed: what `parity.compare` blames when two ports
part.

When the two runs of a comparison part, `compare` lists the differences between the frameworks
that could explain where they part (`suspects`): each is a `Switch`, one convention set the
other way on one side (torch's running statistics updated with flax's momentum, JAX's
optimizer skipping a zero gradient as torch skips a None one, a weight transposed, ...).
`confirm` re-runs the short prefix up to the first divergence with the switches and keeps only
those that make the two agree: one at a time first; when none does alone, greedily, the one
that brings the two closest, then the next on top of it (a flax port with its default
momentum differs in both BatchNorm conventions at once). Each kept switch is then checked to
be needed: without it, the others leave the two apart. A `Finding` is such a switch with the
difference measured before and after it; nothing is ever kept from names alone.

The ids, and what each switch changes:

=====================  ===================================================================
``rmsprop_eps``        torch's RMSprop run with eps inside the square root, as
                       ``optax.rmsprop`` has it by default (``eps_in_sqrt=True``)
``coupled_weight_decay``  torch's Adam with its weight decay decoupled (AdamW's), or AdamW's
                       coupled (Adam's L2 term); ``optax.adamw`` decouples, ``optax.adam``
                       with ``add_decayed_weights`` before it couples
``clip_eps``           torch's ``clip_grad_norm_`` without the 1e-6 it adds to the norm, as
                       ``optax.clip_by_global_norm`` computes it
``none_grad``          JAX's optimizer skipping a parameter whose gradient is exactly zero (the
                       step's forward did not use it), as torch skips one whose ``.grad`` is
                       None (`functional_fit.optim.skip_unused`)
``kernel_layout``      one weight given to the JAX model transposed, or a convolution kernel
                       with its spatial axes (or its channel axes) swapped
``batchnorm_momentum`` torch's BatchNorm updating its running statistics with the momentum
                       JAX's update shows (flax's and equinox's momentum is one minus torch's)
``batchnorm_variance`` torch's BatchNorm updating its running variance with the biased batch
                       variance, as flax and equinox do
``matmul_precision``   both sides' float32 matrix products in full float32
``schedule_dtype``     JAX's optimizer counting its steps in int64, so that a schedule of the
                       count computes at full width in a 64-bit run
``torch_init``         the JAX model's own start (its library's initializers) against torch's
``loss_reduction``     the JAX loss times the count torch's divides by (mean against sum), or
                       torch's loss with its own reduction, ``ignore_index`` or
                       ``label_smoothing`` as the JAX loss has it
=====================  ===================================================================
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import types
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F

#: One line for each id: what differs between the frameworks, and the fix.
EXPLANATIONS = {
    "rmsprop_eps": "RMSprop's eps: torch adds it outside the square root, g / (sqrt(v) + eps); "
                   "optax.rmsprop inside, g / sqrt(v + eps), unless eps_in_sqrt=False "
                   "(functional_fit.optim.RMSprop is torch's)",
    "coupled_weight_decay": "weight decay: torch's Adam(weight_decay=) adds it to the gradient "
                            "(an L2 term, coupled), AdamW and optax.adamw subtract lr * wd * p "
                            "apart from the gradient (decoupled)",
    "clip_eps": "gradient clipping: torch's clip_grad_norm_ scales by max_norm / (norm + 1e-6), "
                "optax.clip_by_global_norm by max_norm / norm "
                "(functional_fit.optim.clip_grad_norm is torch's)",
    "none_grad": "a parameter the step's forward did not use: torch leaves its .grad None and "
                 "skips it (no momentum, no weight decay, no step count), JAX's optimizer "
                 "takes its zero gradient (wrap it in functional_fit.optim.skip_unused)",
    "kernel_layout": "a weight used in the other layout: torch's Linear computes x @ W.T with "
                     "W (out, in), flax's kernel is (in, out); torch's convolution kernels are "
                     "(out, in, kh, kw), flax's (kh, kw, in, out)",
    "batchnorm_momentum": "BatchNorm's momentum: torch's running statistic is (1 - m) r + m b, "
                          "flax's and equinox's m r + (1 - m) b: torch's 0.1 is their 0.9, and "
                          "flax's default 0.99 is torch's 0.01",
    "batchnorm_variance": "BatchNorm's running variance: torch mixes in the unbiased batch "
                          "variance (n / (n - 1) times it), flax and equinox the biased one",
    "matmul_precision": "float32 matrix products: TF32 or bfloat16 passes on one side, full "
                        "float32 on the other (compare(matmul_precision='highest') sets both)",
    "schedule_dtype": "a learning-rate schedule of optax's int32 step count computes in "
                      "float32 (1 / (count + 1)) where torch's Python ints give float64 "
                      "(functional_fit.optim widens the count: lr_scheduler.full_width)",
    "torch_init": "different initial parameters: the JAX model's own initializers are not "
                  "torch's (Linear and Conv: kaiming_uniform(a=sqrt(5)) weights, uniform "
                  "biases); load torch's start with parity.params.to_nnx/to_linen/to_equinox",
    "loss_reduction": "the loss's reduction: a mean on one side, a sum on the other, or "
                      "torch's ignore_index or label_smoothing on one side only",
}


class Finding(NamedTuple):
    """A known framework difference that the tool confirmed on the pair."""

    id: str  # one of `EXPLANATIONS`
    explanation: str  # one line: the difference, and where it was seen
    before: float  # the two runs' largest relative difference over the prefix, without it
    after: float  # the same with it switched (and the findings before it in the list)

    def __str__(self):
        return (f"{self.id}: {self.explanation} (difference {self.before:.2e} -> "
                f"{self.after:.2e} when switched)")


class Switch(NamedTuple):
    """One convention set the other way on one side of a comparison's runs.

    `changes` name what the comparison's runner changes (`parity.compare`'s re-runs):
    ``jax_params`` (p -> p given to the JAX model), ``jax_loss_scale`` (a factor),
    ``jax_opt`` (the JAX transformation -> another, before compare's own wrappers),
    ``torch_loss`` (a loss), ``torch_optimizer`` (torch optimizer -> torch optimizer over the
    same parameters), ``torch_clip`` (False: no ``clip_grad_norm_`` between backward and step),
    ``torch_bn`` (``{"momentum": m}`` and/or ``{"biased": True}``: `patch_batchnorm`),
    ``torch_twin`` (an optax transformation: the torch side run in JAX with it),
    ``precision`` (both sides' ``matmul_precision``).
    """

    id: str
    detail: str  # where: the parameter, the value inferred
    changes: dict


def combine(switches) -> dict:
    """The changes of several switches at once: the changes of JAX's optimizer and of
    torch's each composed in order (the first applied first), BatchNorm's settings merged,
    the rest the last one's."""
    out: dict = {}
    for s in switches:
        for k, v in s.changes.items():
            if k in ("jax_opt", "torch_optimizer") and k in out:
                out[k] = (lambda f, g: lambda tx: g(f(tx)))(out[k], v)
            elif k == "torch_bn":
                out[k] = {**out.get(k, {}), **v}
            else:
                out[k] = v
    return out


def confirm(suspects, measure: Callable[[dict], float], before: float,
            tol: float) -> tuple:
    """The `Finding`s among `suspects` (`Switch`es): the switches that, switched together,
    make the two agree within `tol` (``measure(changes) -> difference``), each one needed.

    One at a time first, in the order given (the cheapest re-runs first), until one makes
    them agree; when none does alone, greedily: the switch that brings the two closest (at
    least ten times closer), then the others on top of it, until they agree. Each switch kept
    is checked once more without it: a switch the rest do not need is dropped. Nothing is
    kept when no combination makes the two agree; a switched run that fails confirms nothing.
    """
    suspects, applied, measured = list(suspects), [], []
    current = before
    while suspects and current > tol:
        trials = []
        for i, s in enumerate(suspects):  # in order, the cheapest first: stop at agreement
            trials.append((_measured(measure, combine([*applied, s])), i))
            if trials[-1][0] <= tol:
                break
        best, i = min(trials, key=lambda t: (_finite(t[0]), t[1]))
        if not _finite(best) < current / 10:
            break
        applied.append(suspects.pop(i))
        measured.append((current, best))
        current = best
    if current > tol or not applied:
        return ()
    if len(applied) > 1:
        needed = [s for s in applied
                  if _measured(measure, combine([a for a in applied if a is not s])) > tol]
        if len(needed) != len(applied):
            return confirm(needed, measure, before, tol) if needed else ()
    return tuple(Finding(s.id, f"{EXPLANATIONS[s.id]}; {s.detail}" if s.detail
                         else EXPLANATIONS[s.id], b, a)
                 for s, (b, a) in zip(applied, measured))


def _measured(measure, changes: dict) -> float:
    """``measure(changes)``; inf when the switched run fails (a transformation the switch
    cannot wrap, a run that diverges): such a switch is not confirmed."""
    try:
        return float(measure(changes))
    except Exception:  # noqa: BLE001 - any failure of a re-run only withholds the finding
        return math.inf


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def snap(value: float) -> float:
    """`value` to three significant digits when that is within 1e-6 of it relative (a
    momentum inferred from a step: 0.0100000003 -> 0.01), else as it is."""
    if not math.isfinite(value) or value == 0:
        return value
    digits = 2 - int(math.floor(math.log10(abs(value))))
    nice = round(value, digits)
    return nice if abs(nice - value) <= 1e-6 * abs(value) else value


def with_first(findings: tuple, first: Any) -> tuple:
    """`findings` with `first` (a `Finding` or None) ahead of them."""
    return findings if first is None else (first, *findings)


# --------------------------------------------------------------------------- the switches


def rmsprop_eps_inside(group: dict) -> optax.GradientTransformation:
    """torch's RMSprop of one param group (lr, alpha, eps, momentum, centered, weight_decay)
    with eps inside the square root: `functional_fit.optim.RMSprop`'s chain with
    ``eps_in_sqrt=True``, as ``optax.rmsprop`` has it by default."""
    by = optax.scale_by_stddev if group["centered"] else optax.scale_by_rms
    parts = [by(decay=group["alpha"], eps=group["eps"], eps_in_sqrt=True)]
    if group["weight_decay"]:
        parts.insert(0, optax.add_decayed_weights(group["weight_decay"]))
    if group["momentum"]:
        parts.append(optax.trace(decay=group["momentum"]))
    return optax.chain(*parts, optax.scale_by_learning_rate(group["lr"]))


def flip_weight_decay(optimizer):
    """A torch Adam or AdamW over the same param groups with its weight decay the other way:
    ``torch.optim.Adam(decoupled_weight_decay=not ...)`` (decoupled is AdamW's)."""
    known = set(inspect.signature(torch.optim.Adam).parameters) - {"params"}
    groups = [{**{k: v for k, v in g.items() if k in known or k == "params"},
               "decoupled_weight_decay": not g.get("decoupled_weight_decay",
                                                   isinstance(optimizer, torch.optim.AdamW))}
              for g in optimizer.param_groups]
    return torch.optim.Adam(groups)


def clip_without_eps(max_norm: float, norm_type: float):
    """torch optimizer -> the same optimizer, clipping its gradients before each step as
    ``optax.clip_by_global_norm`` does: by max_norm / norm when norm > max_norm, nothing
    added to the norm (run it with torch's own ``clip_grad_norm_`` off)."""
    def add(optimizer):
        def clip(opt, args, kwargs):
            grads = [p.grad for g in opt.param_groups for p in g["params"]
                     if p.grad is not None]
            norm = float(torch.nn.utils.get_total_norm(grads, norm_type))
            if norm > max_norm:
                for grad in grads:
                    grad.mul_(max_norm / norm)
        optimizer.register_step_pre_hook(clip)
        return optimizer
    return add


def widen_counts(tx) -> optax.GradientTransformationExtraArgs:
    """`tx` with every int32 leaf of its state (optax's step counts) int64, so that a
    schedule of the count computes at full width in 64-bit mode."""
    tx = optax.with_extra_args_support(tx)

    def init(params):
        return jax.tree.map(lambda a: a.astype(jnp.int64) if a.dtype == jnp.int32 else a,
                            tx.init(params))

    return optax.GradientTransformationExtraArgs(init, tx.update)


def int32_counts(tx, params) -> bool:
    """Whether `tx`'s state for `params` holds an int32 leaf (a step count)."""
    state = jax.eval_shape(tx.init, params)
    return any(leaf.dtype == jnp.int32 for leaf in jax.tree.leaves(state))


_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def batchnorms(module) -> list:
    """(name, layer) of the module's training-mode BatchNorm layers that track statistics."""
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, _NORMS) and m.track_running_stats and m.training]


def patch_batchnorm(module, momentum: float | None = None, biased: bool = False) -> None:
    """The module's training-mode BatchNorm layers (in place) updating their running
    statistics with `momentum` (None: their own) and, when `biased`, the biased batch
    variance, as flax and equinox do: ``r <- (1 - m) r + m b``; their outputs unchanged."""
    for _, layer in batchnorms(module):
        layer.forward = types.MethodType(_batchnorm_forward(
            layer.momentum if momentum is None else momentum, biased), layer)


def _batchnorm_forward(momentum: float, biased: bool):
    def forward(self, x):  # (N, C, ...) -> (N, C, ...)
        out = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            dims = [0, *range(2, x.dim())]
            mean, var = x.mean(dims), x.var(dims, correction=0 if biased else 1)
            self.running_mean.mul_(1 - momentum).add_(momentum * mean)
            self.running_var.mul_(1 - momentum).add_(momentum * var)
            self.num_batches_tracked.add_(1)
        return out
    return forward


def loss_switches(torch_loss) -> list:
    """(detail, torch loss) pairs: `torch_loss` with its reduction the other way (mean and
    sum), its ``label_smoothing`` off, its ``ignore_index`` torch's default: for an
    ``nn.Module`` loss (its attributes) or a ``functools.partial`` (its keywords)."""
    settings = (torch_loss.keywords if isinstance(torch_loss, functools.partial)
                else vars(torch_loss) if isinstance(torch_loss, torch.nn.Module) else {})
    out = []
    flips = {"reduction": {"mean": "sum", "sum": "mean"}.get(settings.get("reduction")),
             "label_smoothing": 0.0 if settings.get("label_smoothing") else None,
             "ignore_index": -100 if settings.get("ignore_index", -100) != -100 else None}
    for name, value in flips.items():
        if value is None:
            continue
        if isinstance(torch_loss, functools.partial):
            switched = functools.partial(torch_loss.func, *torch_loss.args,
                                         **{**torch_loss.keywords, name: value})
        else:
            switched = copy.deepcopy(torch_loss)
            setattr(switched, name, value)
        out.append((f"torch's loss with {name}={value!r} agrees", switched))
    return out


def counts(y_shape: tuple, out_shape: tuple) -> list:
    """The counts a loss's mean may divide by: the batch, the targets' and the outputs'
    elements, and the elements per example."""
    n = y_shape[0] if y_shape else 1
    found = {n, math.prod(y_shape), math.prod(out_shape), math.prod(out_shape[1:]),
             math.prod(y_shape[1:])}
    return sorted(c for c in found if c > 1)


def reduction_factor(jax_value: float, torch_value: float, y_shape, out_shape):
    """The count c (or 1 / c) with ``c * jax_value`` equal to `torch_value` within 1e-6
    relative, or None."""
    if not (np.isfinite(jax_value) and np.isfinite(torch_value)) or jax_value == 0:
        return None
    ratio = torch_value / jax_value
    for c in counts(tuple(y_shape), tuple(out_shape)):
        for f in (c, 1 / c):
            if abs(ratio - f) <= 1e-6 * abs(f):
                return f
    return None


def layout_swaps(params: dict, first_layer: str | None) -> list:
    """(parameter, axes, what) of every weight that could be used in the other layout and
    keep its shape: a square matrix transposed, a convolution kernel (O, I, kh, kw) with its
    spatial axes swapped (kh == kw) or its channel axes (O == I). With `first_layer`, its own
    parameters only."""
    out = []
    for name, value in params.items():
        if first_layer is not None and not name.startswith(first_layer + "."):
            continue
        shape = np.shape(value)
        n = len(shape)
        if n == 2 and shape[0] == shape[1]:
            out.append((name, (1, 0), "transposed"))
        if n >= 4 and shape[-1] == shape[-2]:
            out.append((name, (*range(n - 2), n - 1, n - 2), "with its spatial axes swapped"))
        if n >= 3 and shape[0] == shape[1]:
            out.append((name, (1, 0, *range(2, n)), "with its channel axes swapped"))
    return out


def swapped(name: str, axes: tuple) -> Callable:
    """params -> params with `name` transposed by `axes`."""
    def swap(params):
        return {**params, name: jnp.transpose(params[name], axes)}
    return swap


__all__ = ["EXPLANATIONS", "Finding", "Switch", "batchnorms", "clip_without_eps", "combine",
           "confirm", "counts", "flip_weight_decay", "int32_counts", "layout_swaps",
           "loss_switches", "patch_batchnorm", "reduction_factor", "rmsprop_eps_inside", "snap",
           "swapped", "widen_counts", "with_first"]
