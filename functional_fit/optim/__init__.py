"""torch.optim's optimizers as optax transformations, each checked against torch step for step.

Porting a training script name for name (``torch.optim.RMSprop`` -> ``optax.rmsprop``) gives a
different optimizer more often than not: eps inside or outside the square root, another default
weight decay, a momentum applied before or after the learning rate. Each function here has the
name, the keywords and the defaults of its ``torch.optim`` class, without the ``params``
argument, and returns an `optax.GradientTransformation` whose updates are torch's:

    torch:  opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.8, centered=True)
    JAX:    opt = functional_fit.optim.RMSprop(lr=1e-3, momentum=0.8, centered=True)

Parameters may be any pytree of float32 or float64 arrays (a flat vector, or a dict of weight
matrices like a ``state_dict``); updates and state keep the parameters' dtype, as torch's do.
``lr`` is a float or a schedule (``count -> lr``, see `functional_fit.optim.lr_scheduler`;
``lr_scheduler.ReduceLROnPlateau`` is a transformation chained after the optimizer instead, and
`swa_utils` has torch's SWA and EMA averages and SWALR),
evaluated at the number of updates made so far, as torch's scheduler sets
``param_groups[0]["lr"]`` before each step. A schedule receives that count at full width
(int64 in 64-bit mode, `lr_scheduler.full_width`), so ``lambda i: 1 / (i + 1)`` computes in
float64 what torch's Python ints compute, not in float32 from optax's int32 count.

What each is built from (torch's order: maximize, then weight decay, then the rest):

  ==========  ==============================================================================
  SGD         add_decayed_weights, optax.trace (dampening: `transforms.scale_by_torch_momentum`)
  Adam        add_decayed_weights, optax.scale_by_adam (amsgrad: `scale_by_torch_amsgrad`)
  AdamW       Adam(decoupled_weight_decay=True): scale_by_adam, then add_decayed_weights
  RMSprop     optax.scale_by_rms / scale_by_stddev(eps_in_sqrt=False), then optax.trace
  Adagrad     `scale_by_torch_adagrad` (lr_decay over its own step count)
  Adamax      optax.scale_by_adamax
  NAdam       `scale_by_torch_nadam` (the momentum-decay schedule; mu_product in float32)
  RAdam       `scale_by_torch_radam` (eps scaled by sqrt(1 - b2^t), as torch does)
  Adadelta    optax.scale_by_adadelta
  Rprop       `scale_by_torch_rprop` (optax.scale_by_rprop skips the clip where s == 0), no lr
  ASGD        `scale_by_torch_asgd` (optax has none): decayed SGD, its average in the state
  Adafactor   `scale_by_torch_adafactor` (optax.adafactor is another algorithm), lr inside
  Muon        `scale_by_torch_muon` (NS in bfloat16, as torch), `scale_by_torch_muon_lr`,
              add_decayed_weights; 2-D leaves only (optax.contrib.muon is another variant)
  SparseAdam  `scale_by_torch_sparse_adam`: Adam on the rows whose gradient is nonzero
  LBFGS       `lbfgs.scale_by_torch_lbfgs`: one update is torch's step(closure), up to
              max_iter iterations through optax's value_fn (optax.lbfgs makes one per update)
  ==========  ==============================================================================

each but Rprop, ASGD, Adafactor and LBFGS (whose step sizes are their own) followed by
``optax.scale_by_learning_rate(lr)``; ``maximize`` is ``optax.scale(-1.0)``
first. Where optax's own function with the same name differs from torch, and by how much, see
``README.md`` (``python scripts/atlas.py``) and the docstrings in `transforms`.

Learning rates and betas as tensors: ``lr`` may be a 1-element torch tensor, numpy array or
JAX array, as torch's may, and ``betas`` elements 1-element tensors; each is read at its own
precision (a float32 ``torch.tensor(0.001)`` is float32(0.001) = 0.0010000000474974513), which
is what torch's SGD, RMSprop, Adagrad, RAdam and Adadelta compute with. Two cases torch
computes differently, in the tensor's own precision, are refused rather than approximated: a
lr narrower than the parameters in Adam, AdamW, Adamax and NAdam (their step size
lr / (1 - beta1^t) becomes a float32 tensor: 8e-7 apart after 30 AdamW steps), refused at the
first update, where the parameters' dtype is known; and betas narrower than float64 (torch's
bias corrections in float32: 2e-8 apart), refused at once. A JAX array lr is used as the array
it is, unchecked, since it may be traced (a sweep over learning rates passes one).

torch's implementation flags, each where torch's class has it: ``foreach`` (True, False or
None) chooses a loop or batched kernels, with the same numbers in float64 (in float32, RAdam's
batched kernel rounds in another order: 1e-9 apart after 30 steps), and is accepted; ``fused``
(SGD, Adam, AdamW, Adagrad) is accepted as None, False or True: torch's fused CPU kernels
compute the same update, rounded in another order (1e-16 apart in float64 after 30 steps, as
XLA's own rounding is). ``capturable=True`` (CUDA-graph capture, CUDA only in torch) and
``differentiable=True`` in Adam, AdamW and NAdam (autograd through the step, which keeps
their step count as a float32 tensor and moves their updates: 4e-6 apart after 2,000 float64
steps) are refused with a one-line reason; their False is accepted. In the other optimizers
``differentiable=True`` leaves torch's numbers as they are and is accepted: a JAX update is
differentiable as it is. A flag a torch class does not have is a ``TypeError`` here too.
Every parameter has torch's position and kind (RMSprop's ``capturable`` and ``foreach`` come
before ``maximize``, positionally, as in torch).

Checks: each function refuses what torch's constructor refuses (a negative lr, eps, weight
decay or momentum, betas outside [0, 1), ``nesterov`` with dampening or without momentum, ...)
with an `InputError` (a ``ValueError``) whose one-line message names the argument. Numbers must
be finite (torch lets an infinite lr through); betas may be ints (torch's Adam wants floats).

Param groups: every function takes a keyword-only ``param_groups``, torch's list of dicts,
whose "params" is a glob over the parameters' dotted names (``"*.bias"``), a list of names or a
predicate ``(name, leaf) -> bool``, and whose other keys override the optimizer's keywords for
the parameters it selects; see `groups`. LBFGS refuses them, as torch's does.

LBFGS needs the loss as well as the gradient, and evaluates it again as often as its
iterations and line search need (torch's closure): its ``update`` takes optax's extra
arguments ``value=`` and ``value_fn=`` (as `optax.lbfgs`'s does), which
`functional_fit.fit.train` passes. `optax.lbfgs` makes one iteration per update with its own
zoom line search: after 3 updates its path is 0.77 (a cubic's least squares) to 0.94 (a small
network) of the path's size away from torch's LBFGS, ours within 1e-12.

`OneCycleLR`: torch's ``OneCycleLR(cycle_momentum=True)`` (its default) overwrites the
optimizer's momentum (SGD, RMSprop) or beta1 (the Adam family) at every step. Given such a
schedule as ``lr``, these functions do the same: the schedule's ``momentum`` replaces the
``momentum`` or ``betas[0]`` argument, through `optax.inject_hyperparams`. Adagrad and Adadelta
have neither and refuse it, as torch does; so do Rprop, ASGD, Adafactor and LBFGS.
Muon's momentum and SparseAdam's beta1 cycle, as torch's do.
"""

from __future__ import annotations

import functools
import inspect
import math
from numbers import Real

import jax
import jax.numpy as jnp
import optax

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.optim import groups, lbfgs, lr_scheduler, swa_utils, transforms
from functional_fit.optim.unused import skip_unused

# --------------------------------------------------------------------------- checks


def _is_tensor(value) -> bool:
    """Whether `value` is a tensor or array (anything with ``.item()``), not a Python number."""
    return not isinstance(value, bool | Real) and hasattr(value, "item")


def _scalar(name: str, value):
    """A 1-element tensor or array (torch, numpy, anything with ``.item()``) as the Python
    number it holds, exactly: a float32 tensor of 0.001 is float32(0.001) = 0.0010000000474974513,
    as torch reads it. Other values as they are, for the checks that follow."""
    if not _is_tensor(value):
        return value
    shape = tuple(getattr(value, "shape", ()))
    if math.prod(shape) != 1:
        raise InputError(f"{name} must be a number or a 1-element tensor, got shape {shape}")
    try:
        return value.item()
    except jax.errors.ConcretizationTypeError:
        raise InputError(f"{name} must be a number, not an array traced by jax.jit") from None


def _tensor_hyper(lr, betas, foreach) -> None:
    """torch's Adam (and AdamW) refuses a tensor lr or tensor betas with ``foreach=True``
    (its batched kernel takes them only with capturable=True, on CUDA): so does this.

    torch also refuses betas of two kinds (a float and a tensor); here any float64 number,
    array or tensor is the number it holds, so a float64 pair of two kinds is accepted."""
    try:
        tensor_betas = any(_is_tensor(b) for b in betas)
    except TypeError:
        tensor_betas = False  # not a pair: `_betas` says so
    for name, given in (("lr", _is_tensor(lr)), ("betas", tensor_betas)):
        if given and foreach:
            raise InputError(f"{name} as a tensor needs foreach=False or None (torch refuses "
                             f"foreach=True with a tensor {name} and capturable=False too)")


def _width(value) -> int:
    """The bits of a tensor's or array's float dtype (torch, numpy or JAX); 64 for a number."""
    dtype = getattr(value, "dtype", None)
    return getattr(dtype, "itemsize", 8) * 8 if dtype is not None else 64


def _lr(lr):
    """A schedule, called with the count at full width (`lr_scheduler.full_width`); a JAX array
    (a traced learning rate, as a sweep over learning rates passes it) of one element, as it
    is; or lr as a float >= 0, a 1-element tensor read at its own precision."""
    if callable(lr):
        return lr_scheduler.full_width(lr)
    if isinstance(lr, optax.GradientTransformation):  # ReduceLROnPlateau reads a metric
        raise InputError("lr is a transformation, not a schedule: chain it after the optimizer, "
                         "optax.chain(SGD(lr=0.1), ReduceLROnPlateau(0.1))")
    if isinstance(lr, jax.Array):
        if lr.size != 1:
            raise InputError(f"lr must be a number or a 1-element array, got shape {lr.shape}")
        return lr.reshape(())
    return _checks.nonnegative_float("lr", _scalar("lr", lr))


def _betas(betas) -> tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise InputError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    out = []
    for i, b in enumerate((b1, b2)):
        if _width(b) < 64:
            raise InputError(
                f"betas[{i}] is a {_width(b)}-bit tensor; torch computes the bias corrections "
                "from it at that precision (2e-8 apart after 30 steps); pass a float or a "
                "float64 tensor")
        b = _checks.finite_float(f"betas[{i}]", _scalar(f"betas[{i}]", b))
        if not 0.0 <= b < 1.0:
            raise InputError(f"betas[{i}] must be in [0, 1), got {b}")
        out.append(b)
    return out[0], out[1]


def _flags(foreach=None, fused=None, capturable=False, differentiable=False,
           moved_by_differentiable: str | None = None):
    """torch's implementation flags, accepted where they cannot change torch's numbers.

    foreach (True, False, None) picks a loop or a batched kernel; fused=True (where torch has
    it) a fused CPU kernel that rounds differently, as any compiler does; capturable=True
    needs CUDA; differentiable=True keeps torch's step count as a float32 tensor in Adam,
    AdamW and NAdam (`moved_by_differentiable` names the optimizer then), and leaves the
    others' numbers as they are.
    """
    if foreach is not None:
        foreach = _checks.flag("foreach", foreach)
    if fused is not None and _checks.flag("fused", fused) and foreach:
        raise InputError("fused=True and foreach=True cannot be given together (torch "
                         "refuses it too)")
    if capturable is not None and _checks.flag("capturable", capturable):
        raise InputError("capturable=True captures torch's step in a CUDA graph, on CUDA "
                         "only; XLA compiles the step here: pass capturable=False")
    if _checks.flag("differentiable", differentiable) and moved_by_differentiable:
        raise InputError(
            f"differentiable=True is not reproduced: torch's {moved_by_differentiable} then "
            "keeps its step count as a float32 tensor, which moves its updates (4e-6 apart "
            "after 2,000 steps); a JAX update is differentiable as it is")


def _real(name: str) -> optax.GradientTransformation:
    """A stateless check, at init, that no parameter is complex: torch's `name` refuses them
    (Muon at its first step, SparseAdam when built)."""

    def init_fn(params):
        if any(jnp.iscomplexobj(p) for p in jax.tree.leaves(params)):
            raise InputError(f"params: {name} does not support complex parameters (torch "
                             "refuses them too)")
        return optax.EmptyState()

    return optax.GradientTransformation(init_fn, lambda updates, state, params=None:
                                        (updates, state))


def _narrow_lr(name: str, lr) -> list:
    """[] or a stateless check for Adam, AdamW, Adamax, NAdam, Muon and SparseAdam given a
    tensor lr narrower than float64: torch computes their step size from such a tensor at its
    precision (a float32 lr with float64 params: 8e-7 apart after 30 AdamW steps, 5e-7 after
    30 Muon steps), which is not reproduced."""
    if callable(lr) or isinstance(lr, jax.Array) or _width(lr) >= 64:
        return []
    width = _width(lr)

    def update_fn(updates, state, params=None):
        wide = [u.dtype for u in jax.tree.leaves(updates) if u.dtype.itemsize * 8 > width]
        if wide:
            raise InputError(
                f"lr is a {width}-bit tensor and the parameters are {wide[0]}: torch's {name} "
                f"then computes its step size in {width} bits, which is not reproduced here; "
                "pass float(lr) or a tensor of the parameters' dtype")
        return updates, state

    return [optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)]


def _cycled(lr, name: str, has_momentum: bool = True):
    """The momentum schedule of a OneCycleLR or CyclicLR(cycle_momentum=True) `lr`, or None."""
    momentum = getattr(lr, "momentum", None) if callable(lr) else None
    if momentum is not None and not has_momentum:
        raise InputError(
            f"lr: {lr.__name__} cycles a momentum or beta1 (cycle_momentum=True), which {name} "
            "does not have (torch refuses it too); pass cycle_momentum=False")
    return momentum


def _adam_args(name: str, lr, betas, eps, weight_decay, maximize):
    """The Adam family's shared arguments, checked as torch checks them; beta1 replaced by a
    cycling OneCycleLR's momentum. Returns (lr, b1, b2, eps, weight_decay, maximize)."""
    lr = _lr(lr)
    b1, b2 = _betas(betas)
    eps = _checks.nonnegative_float("eps", eps)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    maximize = _checks.flag("maximize", maximize)
    return lr, _cycled(lr, name) or b1, b2, eps, weight_decay, maximize


# --------------------------------------------------------------------------- building blocks


def _standard_promotion(factory):
    """`factory`, its transformation's init and update run under JAX's standard promotion.

    optax's own arithmetic mixes dtypes on purpose (Adam's bias correction raises a Python
    float to the int32 step count), as torch's Python-float hyperparameters do; so the
    optimizers work whatever promotion mode the program chose (the tests run in strict mode).
    """

    @functools.wraps(factory)
    def make(*args, **kwargs):
        tx = optax.with_extra_args_support(factory(*args, **kwargs))  # value=, ... pass by

        def init(params):
            with jax.numpy_dtype_promotion("standard"):
                return tx.init(params)

        def update(updates, state, params=None, **extra_args):
            with jax.numpy_dtype_promotion("standard"):
                return tx.update(updates, state, params, **extra_args)

        return optax.GradientTransformationExtraArgs(init, update)

    return make



def _scheduled(factory, **hyper) -> optax.GradientTransformation:
    """``factory(**hyper)``; a callable (scheduled) hyperparameter goes through
    `optax.inject_hyperparams`, the others stay Python floats (as torch's do)."""
    cycled = {k: v for k, v in hyper.items() if callable(v)}
    if not cycled:
        return factory(**hyper)
    fixed = {k: v for k, v in hyper.items() if k not in cycled}

    def inner(**values):
        return factory(**fixed, **values)

    inner.__signature__ = inspect.Signature(
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in cycled])
    return optax.inject_hyperparams(inner)(**cycled)


def _head(maximize: bool, weight_decay: float) -> list:
    """torch's first two moves: negate the gradient, then add weight_decay * params."""
    head = [optax.scale(-1.0)] if maximize else []
    if weight_decay != 0:
        head.append(optax.add_decayed_weights(weight_decay))
    return head


def _adam_like(scale, lr, maximize, weight_decay, decoupled):
    """chain(maximize, [L2], scale, [decoupled decay], lr): torch's Adam/NAdam/RAdam order.

    Decoupled decay multiplies the params by 1 - lr * weight_decay before the step; adding
    weight_decay * params after the scaling and before the lr gives the same update.
    """
    if decoupled:
        parts = _head(maximize, 0) + [scale]
        if weight_decay != 0:
            parts.append(optax.add_decayed_weights(weight_decay))
    else:
        parts = _head(maximize, weight_decay) + [scale]
    return optax.chain(*parts, optax.scale_by_learning_rate(lr))


# --------------------------------------------------------------------------- the optimizers


@groups.with_param_groups
@_standard_promotion
def SGD(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False,
        foreach=None, differentiable=False, fused=None):  # torch's SGD, keyword for keyword
    """torch.optim.SGD: g <- g + wd * p; b <- momentum * b + (1 - dampening) * g; p <- p - lr * b.

    Args:
      lr: learning rate >= 0, or a schedule.
      momentum: >= 0. Replaced by the schedule's when lr is a `OneCycleLR` that cycles it.
      dampening: of the gradient added to the buffer, from the second step on.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      nesterov: Nesterov momentum; needs momentum > 0 and dampening == 0.
      maximize: ascend instead of descend.
      foreach, differentiable, fused: torch's implementation flags (module docstring).

    Returns:
      An `optax.GradientTransformation`; its update needs ``params`` when weight_decay > 0.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> updates, state = tx.update({"w": jnp.array([0.5, 0.5])}, tx.init(params), params)
      >>> [round(float(u), 6) for u in updates["w"]]  # -0.1 * (1 + 0.9) * (g + 1e-4 * w)
      [-0.095019, -0.094962]
    """
    _flags(foreach, fused, differentiable=differentiable)
    lr = _lr(lr)
    momentum = _checks.nonnegative_float("momentum", momentum)
    dampening = _checks.finite_float("dampening", dampening)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    nesterov, maximize = _checks.flag("nesterov", nesterov), _checks.flag("maximize", maximize)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise InputError(f"nesterov=True needs momentum > 0 and dampening == 0, got "
                         f"momentum={momentum:g} and dampening={dampening:g}")
    momentum = _cycled(lr, "SGD") or momentum
    if not callable(momentum) and momentum == 0:
        trace = optax.identity()
    elif dampening == 0:
        trace = _scheduled(optax.trace, decay=momentum, nesterov=nesterov)
    else:
        trace = _scheduled(transforms.scale_by_torch_momentum, momentum=momentum,
                           dampening=dampening, nesterov=nesterov)
    return optax.chain(*_head(maximize, weight_decay), trace, optax.scale_by_learning_rate(lr))


@groups.with_param_groups
@_standard_promotion
def Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
         foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
         decoupled_weight_decay=False):  # torch's Adam, keyword for keyword
    """torch.optim.Adam, with its ``amsgrad`` and ``decoupled_weight_decay`` (= AdamW).

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1). beta1 is replaced by the schedule's when lr is a
        `OneCycleLR` that cycles it.
      eps: >= 0, added to the corrected square root of the second moment.
      weight_decay: >= 0; an L2 penalty added to the gradient, or with
        ``decoupled_weight_decay`` a decay of the params by lr * weight_decay.
      amsgrad: divide by the running maximum of the second moment (torch's variant).
      foreach, capturable, differentiable, fused: torch's implementation flags (module
        docstring); foreach=True with a tensor lr or tensor betas is refused, as torch's Adam
        refuses it.
      maximize: ascend instead of descend.
      decoupled_weight_decay: AdamW's decay.

    Returns:
      An `optax.GradientTransformation`.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = Adam(lr=0.1)
      >>> p = jnp.zeros(2)
      >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(p), p)
      >>> [round(float(u), 6) for u in updates]  # the first Adam step is -lr * sign(g)
      [-0.1, 0.1]
    """
    name = "AdamW" if decoupled_weight_decay is True else "Adam"
    _flags(foreach, fused, capturable, differentiable, moved_by_differentiable=name)
    _tensor_hyper(lr, betas, foreach)
    guard = _narrow_lr(name, lr)
    lr, b1, b2, eps, weight_decay, maximize = _adam_args(name, lr, betas, eps, weight_decay,
                                                         maximize)
    amsgrad = _checks.flag("amsgrad", amsgrad)
    decoupled = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    factory = transforms.scale_by_torch_amsgrad if amsgrad else optax.scale_by_adam
    scale = _scheduled(factory, b1=b1, b2=b2, eps=eps)
    return optax.chain(*guard, _adam_like(scale, lr, maximize, weight_decay, decoupled))


@groups.with_param_groups
@_standard_promotion
def AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
          maximize=False, foreach=None, capturable=False, differentiable=False,
          fused=None):  # torch's AdamW, keyword for keyword
    """torch.optim.AdamW: ``Adam(..., decoupled_weight_decay=True)``, weight_decay 1e-2.

    ``optax.adamw`` has the same update but a default weight_decay of 1e-4; that alone is the
    1.2e-2 relative difference of a name-for-name port after 300 steps (README.md).

    Args:
      lr, betas, eps, amsgrad, maximize, foreach, capturable, differentiable, fused: as in
        `Adam`.
      weight_decay: >= 0; each step multiplies the params by 1 - lr * weight_decay.

    Returns:
      An `optax.GradientTransformation`.
    """
    return Adam(lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                capturable=capturable, differentiable=differentiable, fused=fused,
                decoupled_weight_decay=True)


@groups.with_param_groups
@_standard_promotion
def RMSprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
            capturable=False, foreach=None, maximize=False,
            differentiable=False):  # torch's RMSprop, in its order
    """torch.optim.RMSprop: g / (sqrt(v) + eps), with momentum applied before the lr.

    ``optax.rmsprop`` puts eps inside the square root unless ``eps_in_sqrt=False``, defaults
    to decay 0.9 (torch's alpha is 0.99) and multiplies by the lr before its momentum trace
    (the same for a constant lr, not for a schedule). Here: ``scale_by_rms`` (or
    ``scale_by_stddev`` when centered) with ``eps_in_sqrt=False``, then ``optax.trace``, then
    the lr.

    Args:
      lr: learning rate >= 0, or a schedule.
      alpha: >= 0, the decay of the running mean of g**2 (torch allows alpha > 1 too).
      eps: >= 0, added to the square root.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      momentum: >= 0. Replaced by the schedule's when lr is a `OneCycleLR` that cycles it.
      centered: divide by the standard deviation sqrt(v - mean(g)**2) instead.
      capturable, foreach, differentiable: torch's implementation flags (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.

    Examples:
      >>> tx = RMSprop(lr=1e-3, alpha=0.9, momentum=0.8, centered=True)
    """
    _flags(foreach, None, capturable, differentiable)
    lr = _lr(lr)
    alpha = _checks.nonnegative_float("alpha", alpha)
    eps = _checks.nonnegative_float("eps", eps)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    momentum = _checks.nonnegative_float("momentum", momentum)
    centered, maximize = _checks.flag("centered", centered), _checks.flag("maximize", maximize)
    momentum = _cycled(lr, "RMSprop") or momentum
    by = optax.scale_by_stddev if centered else optax.scale_by_rms
    scale = by(decay=alpha, eps=eps, eps_in_sqrt=False)
    trace = (optax.identity() if not callable(momentum) and momentum == 0
             else _scheduled(optax.trace, decay=momentum))
    return optax.chain(*_head(maximize, weight_decay), scale, trace,
                       optax.scale_by_learning_rate(lr))


@groups.with_param_groups
@_standard_promotion
def Adagrad(lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
            foreach=None, *, maximize=False, differentiable=False,
            fused=None):  # torch's Adagrad, in its order
    """torch.optim.Adagrad: lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum of g**2) + eps).

    ``optax.adagrad`` puts eps inside the square root and starts the sum at 0.1, not 0
    (see `transforms.scale_by_torch_adagrad`).

    Args:
      lr: learning rate >= 0, or a schedule.
      lr_decay: >= 0.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      initial_accumulator_value: >= 0, the starting sum of squares.
      eps: >= 0.
      foreach, differentiable, fused: torch's implementation flags (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    _flags(foreach, fused, differentiable=differentiable)
    lr = _lr(lr)
    lr_decay = _checks.nonnegative_float("lr_decay", lr_decay)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    initial = _checks.nonnegative_float("initial_accumulator_value", initial_accumulator_value)
    eps = _checks.nonnegative_float("eps", eps)
    maximize = _checks.flag("maximize", maximize)
    _cycled(lr, "Adagrad", has_momentum=False)
    return optax.chain(*_head(maximize, weight_decay),
                       transforms.scale_by_torch_adagrad(initial, eps, lr_decay),
                       optax.scale_by_learning_rate(lr))


@groups.with_param_groups
@_standard_promotion
def Adamax(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
           maximize=False, differentiable=False, capturable=False):
    """torch.optim.Adamax, which ``optax.scale_by_adamax`` computes as torch does.

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1); beta1 may be cycled by `OneCycleLR`.
      eps: >= 0, added to |g| in the infinity norm.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      foreach, differentiable, capturable: torch's implementation flags (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    _flags(foreach, None, capturable, differentiable)
    guard = _narrow_lr("Adamax", lr)
    lr, b1, b2, eps, weight_decay, maximize = _adam_args("Adamax", lr, betas, eps,
                                                         weight_decay, maximize)
    scale = _scheduled(optax.scale_by_adamax, b1=b1, b2=b2, eps=eps)
    return optax.chain(*guard, _adam_like(scale, lr, maximize, weight_decay, False))


@groups.with_param_groups
@_standard_promotion
def NAdam(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
          decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
          differentiable=False):  # torch's NAdam, keyword for keyword
    """torch.optim.NAdam, with its momentum-decay schedule (`transforms.scale_by_torch_nadam`).

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1); beta1 may be cycled by `OneCycleLR`.
      eps: >= 0.
      weight_decay: >= 0; L2, or decoupled (NAdamW) with ``decoupled_weight_decay``.
      momentum_decay: >= 0, the psi of mu_t = beta1 (1 - 0.5 * 0.96^(t psi)).
      decoupled_weight_decay: multiply the params by 1 - lr * weight_decay instead.
      foreach, capturable, differentiable: torch's implementation flags (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    _flags(foreach, None, capturable, differentiable, moved_by_differentiable="NAdam")
    guard = _narrow_lr("NAdam", lr)
    lr, b1, b2, eps, weight_decay, maximize = _adam_args("NAdam", lr, betas, eps, weight_decay,
                                                         maximize)
    momentum_decay = _checks.nonnegative_float("momentum_decay", momentum_decay)
    decoupled = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    scale = _scheduled(transforms.scale_by_torch_nadam, b1=b1, b2=b2, eps=eps,
                       momentum_decay=momentum_decay)
    return optax.chain(*guard, _adam_like(scale, lr, maximize, weight_decay, decoupled))


@groups.with_param_groups
@_standard_promotion
def RAdam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
          *, foreach=None, maximize=False, capturable=False,
          differentiable=False):  # torch's RAdam, keyword for keyword
    """torch.optim.RAdam (`transforms.scale_by_torch_radam`: eps where torch puts it).

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1); beta1 may be cycled by `OneCycleLR`.
      eps: >= 0.
      weight_decay: >= 0; L2, or decoupled with ``decoupled_weight_decay``.
      decoupled_weight_decay: multiply the params by 1 - lr * weight_decay instead.
      foreach, capturable, differentiable: torch's implementation flags (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    _flags(foreach, None, capturable, differentiable)
    lr, b1, b2, eps, weight_decay, maximize = _adam_args("RAdam", lr, betas, eps, weight_decay,
                                                         maximize)
    decoupled = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    scale = _scheduled(transforms.scale_by_torch_radam, b1=b1, b2=b2, eps=eps)
    return _adam_like(scale, lr, maximize, weight_decay, decoupled)


@groups.with_param_groups
@_standard_promotion
def Adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
             maximize=False, differentiable=False):  # torch's Adadelta, in its order
    """torch.optim.Adadelta, which ``optax.scale_by_adadelta`` computes as torch does.

    Args:
      lr: learning rate >= 0 (torch's default 1.0), or a schedule.
      rho: in [0, 1], the decay of both running means.
      eps: >= 0, inside both square roots.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      foreach, capturable, differentiable: torch's implementation flags (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    _flags(foreach, None, capturable, differentiable)
    lr = _lr(lr)
    rho = _checks.finite_float("rho", rho)
    if not 0.0 <= rho <= 1.0:
        raise InputError(f"rho must be in [0, 1], got {rho}")
    eps = _checks.nonnegative_float("eps", eps)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    maximize = _checks.flag("maximize", maximize)
    _cycled(lr, "Adadelta", has_momentum=False)
    return optax.chain(*_head(maximize, weight_decay), optax.scale_by_adadelta(rho, eps),
                       optax.scale_by_learning_rate(lr))


def _pair(name: str, value, names: tuple[str, str]) -> tuple[float, float]:
    """`value` as a pair of finite floats, or InputError naming `name`."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a pair ({names[0]}, {names[1]}), got {value!r}"
                         ) from None
    return _checks.finite_float(f"{name}[0]", a), _checks.finite_float(f"{name}[1]", b)


def _first_lr(lr):
    """The learning rate at the first step: a schedule's value at 0, or lr itself."""
    return lr(0) if callable(lr) else lr


@groups.with_param_groups
@_standard_promotion
def Rprop(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, capturable=False, foreach=None,
          maximize=False, differentiable=False):
    """torch.optim.Rprop: every element steps by its own step size against the gradient's sign.

    A step size grows by etas[1] while its gradient keeps its sign and shrinks by etas[0]
    when the sign flips (and that step is skipped), within step_sizes
    (`transforms.scale_by_torch_rprop`, which says where ``optax.rprop`` differs).

    torch reads the learning rate only when it creates the optimizer's state, at the first
    step: a scheduler's later rates leave Rprop's path alone. Given a schedule as lr, the
    first step sizes are its value at 0, and the rest of it is unused, as in torch.

    Args:
      lr: the first step size, >= 0, or a schedule (only its first value counts).
      etas: (etaminus, etaplus) with 0 < etaminus < 1 < etaplus.
      step_sizes: (min, max) with 0 <= min <= max, the bounds of every step size (torch
        does not check them; with min > max it clamps every step size to max).
      capturable, foreach, differentiable: torch's implementation flags (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`; it has no weight decay, as torch's has none.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = Rprop(lr=0.1)
      >>> p = jnp.zeros(2)
      >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(p), p)
      >>> [round(float(u), 6) for u in updates]  # the first step is -lr * sign(g)
      [-0.1, 0.1]
    """
    lr = _lr(lr)
    etaminus, etaplus = _pair("etas", etas, ("etaminus", "etaplus"))
    if not 0.0 < etaminus < 1.0 < etaplus:
        raise InputError(f"etas must be (etaminus, etaplus) with 0 < etaminus < 1 < etaplus, "
                         f"got ({etaminus:g}, {etaplus:g})")
    low, high = _pair("step_sizes", step_sizes, ("min", "max"))
    if not 0.0 <= low <= high:
        raise InputError(f"step_sizes must be (min, max) with 0 <= min <= max, got "
                         f"({low:g}, {high:g})")
    maximize = _checks.flag("maximize", maximize)
    _flags(foreach, None, capturable, differentiable)
    _cycled(lr, "Rprop", has_momentum=False)
    return optax.chain(*_head(maximize, 0),
                       transforms.scale_by_torch_rprop(_first_lr(lr), etaminus, etaplus,
                                                       low, high))


@groups.with_param_groups
@_standard_promotion
def ASGD(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0, foreach=None, maximize=False,
         differentiable=False, capturable=False):  # torch's ASGD, keyword for keyword
    """torch.optim.ASGD: SGD with a decaying step size, and the average of its iterates.

    The parameters move as torch's do (`transforms.scale_by_torch_asgd`); the average that
    torch keeps in ``state["ax"]`` is in the state, and `asgd_average` reads it. torch's
    ``lambd`` also decays the parameters, by ``1 - lambd * eta`` each update. ``maximize`` is
    keyword-only here: torch has ``foreach`` before it.

    Args:
      lr: learning rate >= 0, or a schedule. A schedule's rate at update t sets the step size
        of update t + 1, as torch computes the next eta from the group's lr of this step.
      lambd: the decay term (a finite float).
      alpha: the power of the step size's decay (a finite float).
      t0: the update after which averaging starts (a finite float).
      weight_decay: >= 0, the L2 penalty added to the gradient.
      foreach, differentiable, capturable: torch's implementation flags (module docstring;
        foreach=True is refused: torch's batched ASGD moves its own numbers).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`; its update needs ``params``.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = ASGD(lr=0.5, t0=0)
      >>> p = jnp.array([2.0])
      >>> updates, state = tx.update(jnp.array([1.0]), tx.init(p), p)
      >>> round(float(updates[0]), 6), round(float(asgd_average(state)[0]), 6)
      (-0.5001, 1.4999)
    """
    lr = _lr(lr)
    lambd = _checks.finite_float("lambd", lambd)
    alpha = _checks.finite_float("alpha", alpha)
    t0 = _checks.finite_float("t0", t0)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    maximize = _checks.flag("maximize", maximize)
    _flags(foreach, None, capturable, differentiable)
    if foreach:
        raise InputError("foreach=True is not reproduced for ASGD: torch's batched ASGD "
                         "computes its step size otherwise than its loop, which this follows "
                         "(4e-9 apart, measured); pass foreach=False or None")
    _cycled(lr, "ASGD", has_momentum=False)
    return optax.chain(*_head(maximize, weight_decay),
                       transforms.scale_by_torch_asgd(lr, lambd, alpha, t0))


@groups.with_param_groups
@_standard_promotion
def Adafactor(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, *,
              foreach=None, maximize=False):
    """torch.optim.Adafactor: factored second moments, a relative step size, RMS clipping.

    Each leaf is one torch tensor: a leaf of 2 or more dimensions keeps row and column
    factors of its second moment over its last two axes, any other leaf a full one; the step
    is scaled by the leaf's RMS and clipped by its update's RMS (`transforms.scale_by_torch_adafactor`,
    which says how ``optax.adafactor`` differs). So a model kept as one flat vector is one
    unfactored tensor: give the weight matrices their shapes (a dict, like a ``state_dict``)
    to factor them as torch does.

    Args:
      lr: learning rate >= 0, or a schedule; the step size is min(lr, 1 / sqrt(t)) times
        the leaf's RMS (at least eps[1]).
      beta2_decay: <= 0, the second moment's weight at update t is t**beta2_decay.
      eps: (eps1, eps2): eps1 >= 0 or None (the params' machine epsilon), the floor of the
        estimate (squared); eps2 >= 0, the floor of the params' RMS.
      d: >= 1, the clipping threshold of the update's RMS.
      weight_decay: >= 0, decoupled: the params are multiplied by 1 - lr * weight_decay.
      foreach: torch's implementation flag (module docstring).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`; its update needs ``params``. Its init refuses
      complex params with an InputError, where torch raises a RuntimeError at its first step.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = Adafactor(lr=0.5)
      >>> p = jnp.full(4, 2.0)
      >>> updates, _ = tx.update(jnp.full(4, 3.0), tx.init(p), p)
      >>> float(updates[0])  # -min(0.5, 1) * rms(p) * sign(g), the first step
      -1.0
    """
    lr = _lr(lr)
    beta2_decay = _checks.finite_float("beta2_decay", beta2_decay)
    if beta2_decay > 0:
        raise InputError(f"beta2_decay must be <= 0, got {beta2_decay:g}")
    try:
        eps1, eps2 = eps
    except (TypeError, ValueError):
        raise InputError(f"eps must be a pair (eps1 or None, eps2), got {eps!r}") from None
    eps1 = None if eps1 is None else _checks.nonnegative_float("eps[0]", eps1)
    eps2 = _checks.nonnegative_float("eps[1]", eps2)
    d = _checks.finite_float("d", d)
    if d < 1:
        raise InputError(f"d, the clipping threshold, must be >= 1, got {d:g}")
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    maximize = _checks.flag("maximize", maximize)
    _flags(foreach)
    _cycled(lr, "Adafactor", has_momentum=False)
    return optax.chain(*_head(maximize, 0),
                       transforms.scale_by_torch_adafactor(lr, beta2_decay, eps1, eps2, d,
                                                           weight_decay))


_MUON_LR_FNS = (None, "original", "match_rms_adamw")


@groups.with_param_groups
@_standard_promotion
def Muon(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
         ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5,
         adjust_lr_fn=None):  # torch's Muon, keyword for keyword
    """torch.optim.Muon: momentum, orthogonalized by Newton-Schulz, for 2-D parameters only.

    The update of an (R, C) matrix is -lr (ratio * NS(u) + weight_decay * p), with u the
    momentum (`transforms.scale_by_torch_muon`) and ratio torch's learning-rate adjustment
    (`transforms.muon_lr_ratio`): the parameter is multiplied by 1 - lr * weight_decay, then
    moved by lr * ratio * NS(u), as torch does. NS runs in bfloat16 (8 significant bits), as
    torch's does, whatever the parameters' dtype, rounded where torch rounds: on the 2-layer
    MLP of tests/test_optim_muon_sparse.py the float64 paths agree to 9e-16 over 50 steps.
    torch's float32 matrix products sum in their own order, so on larger matrices an element
    now and then rounds to the neighbouring bfloat16 (2^-8 relative; see
    `transforms.scale_by_torch_muon`), and with float32 parameters the gradients' own rounding
    (1e-7) tips elements near a bfloat16 boundary the other way: float32 paths part by up to
    lr * 2^-8 per step (1.4e-3 after 50 steps at lr 0.02 on that MLP).

    Muon takes 2-D parameters only, as torch's does: any other leaf is refused, by its dotted
    name. torch's docstring gives the rest of a model (biases, norms, embeddings) to AdamW, as
    a second optimizer; here that is `optax.partition`:

        labels = lambda params: jax.tree.map(lambda p: "muon" if p.ndim == 2 else "adamw", params)
        tx = optax.partition({"muon": Muon(lr=0.02), "adamw": AdamW(lr=3e-4)}, labels)

    ``param_groups`` cannot do it: its groups are one optimizer with other keywords.

    How ``optax.contrib.muon`` differs: its momentum is the same average, but bias-corrected
    (torch's is not), which changes the Nesterov mix of b and g in the first steps; it divides
    by ||u||_F + eps (eps 1e-8) where torch divides by max(||u||_F, eps); it computes NS in the
    parameters' dtype, not bfloat16; its weight_decay defaults to 0, not 0.1; its shape scale
    sqrt(max(1, C / R)) reads an (R, C) weight as (in, out), the transpose of torch's
    (out, in) layout, whose scale is sqrt(max(1, R / C)) (``consistent_rms=0.2`` is
    "match_rms_adamw"); and it runs AdamW itself on the leaves that are not 2-D, where torch
    and this refuse them. Measured on that MLP (torch's defaults at lr 0.02, AdamW at 1e-2 on
    the biases on both sides): after 50 steps the first layer's weights are 0.32 from torch's
    (they moved 0.75), where this is 9e-16 from them.

    Args:
      lr: learning rate >= 0, or a schedule.
      weight_decay: >= 0, decoupled: the params are multiplied by 1 - lr * weight_decay.
      momentum: >= 0 (torch's default 0.95); may be cycled by `OneCycleLR`.
      nesterov: orthogonalize the Nesterov direction lerp(g, b, momentum) instead of b.
      ns_coefficients: (a, b, c), the quintic's coefficients.
      eps: the floor of the Frobenius norm the update is divided by.
      ns_steps: the number of Newton-Schulz steps, 0 to 99 (torch refuses 100 or more).
      adjust_lr_fn: None or "original" (lr * sqrt(max(1, R / C))), or "match_rms_adamw"
        (lr * 0.2 * sqrt(max(R, C))).

    Returns:
      An `optax.GradientTransformation`; its update needs ``params`` when weight_decay != 0.
    """
    guard = [_real("Muon"), *_narrow_lr("Muon", lr)]
    lr = _lr(lr)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    momentum = _checks.nonnegative_float("momentum", momentum)
    nesterov = _checks.flag("nesterov", nesterov)
    try:
        coefficients = tuple(_checks.finite_float(f"ns_coefficients[{i}]", c)
                             for i, c in enumerate(ns_coefficients))
    except TypeError:
        raise InputError(f"ns_coefficients must be three numbers (a, b, c), got "
                         f"{ns_coefficients!r}") from None
    if len(coefficients) != 3:
        raise InputError(f"ns_coefficients must be three numbers (a, b, c), got "
                         f"{ns_coefficients!r}")
    eps = _checks.finite_float("eps", eps)
    ns_steps = _checks.nonnegative_int("ns_steps", ns_steps)
    if ns_steps >= 100:
        raise InputError(f"ns_steps must be less than 100 (torch refuses more), got {ns_steps}")
    if adjust_lr_fn not in _MUON_LR_FNS:
        raise InputError(f"adjust_lr_fn must be None, 'original' or 'match_rms_adamw', got "
                         f"{adjust_lr_fn!r}")
    direction = _scheduled(transforms.scale_by_torch_muon, momentum=_cycled(lr, "Muon") or momentum,
                           nesterov=nesterov, ns_coefficients=coefficients, eps=eps,
                           ns_steps=ns_steps)
    decay = [optax.add_decayed_weights(weight_decay)] if weight_decay != 0 else []
    return optax.chain(*guard, direction, transforms.scale_by_torch_muon_lr(adjust_lr_fn),
                       *decay, optax.scale_by_learning_rate(lr))


@groups.with_param_groups
@_standard_promotion
def SparseAdam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
    """torch.optim.SparseAdam, for embeddings: Adam on the rows a step looked up.

    torch's SparseAdam takes the sparse gradient of ``nn.Embedding(sparse=True)`` and updates
    only the rows in it (the tokens the batch looked up, each once however often it occurs):
    their moments decay and take the gradient, and they move; the other rows keep their
    moments and values. JAX's gradients are dense, so here a row counts as looked up when its
    gradient has a nonzero element (`transforms.present_rows`; rows are the first axis, the
    elements of a 1-D leaf). That is torch's rule except for a looked-up row whose gradient
    is exactly zero everywhere: torch still decays its moments and moves it by its momentum,
    this leaves it alone. The step count advances every step, for every row, as torch's
    ``state["step"]`` does for every parameter with a gradient; so a row looked up for the
    first time at step t gets step t's bias correction, as in torch.

    torch refuses a dense gradient (a ``RuntimeError`` at its step); here every leaf is
    treated row by row, so a weight that every step updates whole is plain Adam without
    weight decay (m and v of every row whose gradient is nonzero).

    Args:
      lr: learning rate > 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1); beta1 may be cycled by `OneCycleLR`.
      eps: > 0, added to sqrt(v).
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = SparseAdam(lr=0.1)
      >>> w = jnp.ones((3, 2))  # 3 tokens
      >>> g = jnp.array([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]])  # the batch looked up token 1
      >>> updates, state = tx.update(g, tx.init(w), w)
      >>> round(float(updates[1, 0]), 6), bool(jnp.all(updates[0] == 0))  # -lr * sign(g) first
      (-0.1, True)
    """
    guard = [_real("SparseAdam"), *_narrow_lr("SparseAdam", lr)]
    lr = _lr(lr)
    if not callable(lr) and not isinstance(lr, jax.Array) and lr <= 0:
        raise InputError(f"lr must be > 0 (torch's SparseAdam refuses 0), got {lr!r}")
    b1, b2 = _betas(betas)
    eps = _checks.positive_float("eps", eps)
    maximize = _checks.flag("maximize", maximize)
    scale = _scheduled(transforms.scale_by_torch_sparse_adam, b1=_cycled(lr, "SparseAdam") or b1,
                       b2=b2, eps=eps)
    return optax.chain(*guard, *_head(maximize, 0), scale, optax.scale_by_learning_rate(lr))


@groups.without_param_groups
@_standard_promotion
def LBFGS(lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
          history_size=100, line_search_fn=None):  # torch's LBFGS, keyword for keyword
    """torch.optim.LBFGS: one ``update`` is one ``opt.step(closure)``, its loss evaluations
    made through optax's ``value_fn`` (`lbfgs.scale_by_torch_lbfgs`).

    Its update needs the loss, as torch's step needs a closure: ``update(grads, state,
    params, value=loss, value_fn=params -> loss)``, optax's convention (`optax.lbfgs`'s), which
    `functional_fit.fit.train` follows (on a minibatch, value_fn is that batch's loss, as a
    torch closure over the batch is). All parameters are flattened into one vector, as torch
    does, and param_groups are refused, as torch refuses them. Chain nothing before it that
    changes the gradient: the later evaluations read value_fn's own gradient (torch's closure
    would clip each of them itself).

    Args:
      lr: the step length >= 0 (a float, a 1-element tensor, or a schedule read once per
        update). The first iteration of all steps moves min(1, 1 / |g|_1) * lr.
      max_iter: >= 1, iterations per update.
      max_eval: >= 1, loss evaluations per update (None: max_iter * 5 // 4, torch's).
      tolerance_grad: stop when max |g| <= tolerance_grad.
      tolerance_change: stop when the step, the loss change or the slope along the
        direction is smaller.
      history_size: >= 1, the (y, s) pairs kept.
      line_search_fn: None (a fixed step lr) or "strong_wolfe".

    Returns:
      An `optax.GradientTransformationExtraArgs` whose updates are the params' change over
      the step; its state is an `lbfgs.LBFGSState` (torch's state keys).

    Differs from torch: max_iter, max_eval and history_size below 1 are refused (torch does
    nothing with max_iter 0, fails inside its line search with max_eval 0 and inside its step
    with history_size 0); an unknown line_search_fn is refused here, where torch refuses it
    at the step that first needs it. Paths agree with torch's to 1e-12 or better on smooth
    float64 problems (tests/test_optim_lbfgs.py); each loss, gradient and dot product rounds
    as XLA rounds it, and L-BFGS can grow such 1e-16 differences by ~10x per iteration on an
    ill-conditioned problem (as torch's own path from a start moved by 1e-16). In float32 the
    loss is kept in float32 (torch converts it to a Python float): 1.4e-6 apart after 4 steps
    of 5 iterations of a small network, measured.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> tx = LBFGS(line_search_fn="strong_wolfe")
      >>> def f(w): return jnp.sum((w - 3.0) ** 2)
      >>> w = jnp.zeros(2)
      >>> loss, g = jax.value_and_grad(f)(w)
      >>> updates, state = tx.update(g, tx.init(w), w, value=loss, grad=g, value_fn=f)
      >>> [round(float(u), 6) for u in updates], int(state.n_iter)
      ([3.0, 3.0], 2)
    """
    if callable(lr):
        _cycled(lr, "LBFGS", has_momentum=False)
    lr = _lr(lr)
    max_iter = _checks.positive_int("max_iter", max_iter)
    max_eval = (max_iter * 5 // 4 if max_eval is None
                else _checks.positive_int("max_eval", max_eval))
    tolerance_grad = _checks.finite_float("tolerance_grad", tolerance_grad)
    tolerance_change = _checks.finite_float("tolerance_change", tolerance_change)
    history_size = _checks.positive_int("history_size", history_size)
    if line_search_fn not in (None, "strong_wolfe"):
        raise InputError(f"line_search_fn must be None or 'strong_wolfe' (torch: \"only "
                         f"'strong_wolfe' is supported\"), got {line_search_fn!r}")
    return lbfgs.scale_by_torch_lbfgs(lr, max_iter, max_eval, tolerance_grad, tolerance_change,
                                      history_size, line_search_fn)


def asgd_average(state) -> optax.Params:
    """The averaged parameters (torch's ``state["ax"]``) in the state of an `ASGD`.

    Args:
      state: the state of an `ASGD` transformation, alone or inside a chain.

    Returns:
      A pytree shaped like the params: their running average from update t0 on, and the
      params themselves (after the last update) before it.
    """
    found = optax.tree.get(state, "ax")
    if found is None:
        raise InputError("state: no ASGD state in it (no field 'ax')")
    return found


# --------------------------------------------------------------------------- clipping


@_standard_promotion
def clip_grad_norm(max_norm, norm_type=2.0) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_``, to chain before the optimizer.

    ``optax.chain(clip_grad_norm(1.0), Adam(lr=1e-3))`` is torch's ``loss.backward();
    clip_grad_norm_(model.parameters(), 1.0); opt.step()``.

    torch multiplies every gradient by min(1, max_norm / (total_norm + 1e-6)), where
    total_norm is the `norm_type`-norm of the per-tensor norms. `optax.clip_by_global_norm`
    differs in two ways: it rescales to exactly max_norm, without the 1e-6, and it leaves the
    gradient untouched when total_norm < max_norm, where torch already scales by
    max_norm / (total_norm + 1e-6) < 1 in the band max_norm - 1e-6 < total_norm < max_norm.
    And it has the 2-norm only.

    Left out: ``error_if_nonfinite`` (an exception cannot come out of a compiled step) and
    ``foreach``.

    Args:
      max_norm: >= 0 (inf: never clip).
      norm_type: p > 0 of the p-norm, or ``math.inf`` for the largest |g|.

    Returns:
      A stateless `optax.GradientTransformation`.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = clip_grad_norm(1.0)
      >>> g = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
      >>> clipped, _ = tx.update(g, tx.init(g))
      >>> round(float(clipped["a"][0]), 6), round(float(clipped["b"][0]), 6)  # / (5 + 1e-6)
      (0.6, 0.8)
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, Real) or not max_norm >= 0:
        raise InputError(f"max_norm must be a non-negative number, got {max_norm!r}")
    if isinstance(norm_type, bool) or not isinstance(norm_type, Real) or not norm_type > 0:
        raise InputError(f"norm_type must be positive (p of the p-norm) or inf, got {norm_type!r}")
    norm_type = float(norm_type)
    return transforms.clip_by_torch_grad_norm(float(max_norm), math.inf if math.isinf(norm_type)
                                              else norm_type)


OPTIMIZERS = {f.__name__: f for f in (SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, NAdam, RAdam,
                                      Adadelta, Rprop, ASGD, Adafactor, Muon, SparseAdam,
                                      LBFGS)}

__all__ = [
    "ASGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "LBFGS",
    "Muon",
    "NAdam",
    "OPTIMIZERS",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SGD",
    "SparseAdam",
    "asgd_average",
    "clip_grad_norm",
    "groups",
    "lbfgs",
    "lr_scheduler",
    "skip_unused",
    "swa_utils",
    "transforms",
]
