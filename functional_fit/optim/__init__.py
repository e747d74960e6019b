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
``lr`` is a float or a schedule (``count -> lr``, see `functional_fit.optim.lr_scheduler`),
evaluated at the number of updates made so far, as torch's scheduler sets
``param_groups[0]["lr"]`` before each step.

What each is built from (torch's order: maximize, then weight decay, then the rest):

  ==========  ==============================================================================
  SGD         add_decayed_weights, optax.trace (dampening: `transforms.scale_by_torch_momentum`)
  Adam        add_decayed_weights, optax.scale_by_adam (amsgrad: `scale_by_torch_amsgrad`)
  AdamW       Adam(decoupled_weight_decay=True): scale_by_adam, then add_decayed_weights
  RMSprop     optax.scale_by_rms / scale_by_stddev(eps_in_sqrt=False), then optax.trace
  Adagrad     `scale_by_torch_adagrad`, lr / (1 + t * lr_decay) as a schedule
  Adamax      optax.scale_by_adamax
  NAdam       `scale_by_torch_nadam` (the momentum-decay schedule; mu_product in float32)
  RAdam       `scale_by_torch_radam` (eps scaled by sqrt(1 - b2^t), as torch does)
  Adadelta    optax.scale_by_adadelta
  ==========  ==============================================================================

each followed by ``optax.scale_by_learning_rate(lr)``; ``maximize`` is ``optax.scale(-1.0)``
first. Where optax's own function with the same name differs from torch, and by how much, see
``README.md`` (``python scripts/atlas.py``) and the docstrings in `transforms`.

Keywords left out: torch's ``foreach``, ``fused``, ``capturable`` and ``differentiable`` choose
kernels, CUDA-graph capture and autograd through the step; none changes the update in exact
arithmetic, and XLA makes those choices itself. They are not accepted, so passing one is a
``TypeError`` rather than a silent no-op. Where torch has one of them before ``maximize`` among
its positional parameters (RMSprop, Adagrad, Adamax, Adadelta), ``maximize`` is keyword-only
here; every other parameter keeps torch's position.

Checks: each function refuses what torch's constructor refuses (a negative lr, eps, weight
decay or momentum, betas outside [0, 1), ``nesterov`` with dampening or without momentum, ...)
with an `InputError` (a ``ValueError``) whose one-line message names the argument. Numbers must
be finite (torch lets an infinite lr through); betas may be ints (torch's Adam wants floats).

`OneCycleLR`: torch's ``OneCycleLR(cycle_momentum=True)`` (its default) overwrites the
optimizer's momentum (SGD, RMSprop) or beta1 (the Adam family) at every step. Given such a
schedule as ``lr``, these functions do the same: the schedule's ``momentum`` replaces the
``momentum`` or ``betas[0]`` argument, through `optax.inject_hyperparams`. Adagrad and Adadelta
have neither and refuse it, as torch does.
"""

from __future__ import annotations

import functools
import inspect
import math
from numbers import Real

import jax
import optax

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.optim import lr_scheduler, transforms
from functional_fit.optim.unused import skip_unused

# --------------------------------------------------------------------------- checks


def _lr(lr):
    """A schedule as it is, or lr as a float >= 0; a JAX array (a traced learning rate, as a
    sweep over learning rates passes it) as it is, checked where it was made."""
    if callable(lr) or isinstance(lr, jax.Array):
        return lr
    return _checks.nonnegative_float("lr", lr)


def _betas(betas) -> tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise InputError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    out = []
    for i, b in enumerate((b1, b2)):
        b = _checks.finite_float(f"betas[{i}]", b)
        if not 0.0 <= b < 1.0:
            raise InputError(f"betas[{i}] must be in [0, 1), got {b}")
        out.append(b)
    return out[0], out[1]


def _cycled(lr, name: str, has_momentum: bool = True):
    """The momentum schedule of a OneCycleLR(cycle_momentum=True) `lr`, or None."""
    momentum = getattr(lr, "momentum", None) if callable(lr) else None
    if momentum is not None and not has_momentum:
        raise InputError(
            f"lr: OneCycleLR(cycle_momentum=True) cycles a momentum or beta1, which {name} does "
            "not have (torch refuses it too); pass cycle_momentum=False")
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
        tx = factory(*args, **kwargs)

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


@_standard_promotion
def SGD(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False):
    """torch.optim.SGD: g <- g + wd * p; b <- momentum * b + (1 - dampening) * g; p <- p - lr * b.

    Args:
      lr: learning rate >= 0, or a schedule.
      momentum: >= 0. Replaced by the schedule's when lr is a `OneCycleLR` that cycles it.
      dampening: of the gradient added to the buffer, from the second step on.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      nesterov: Nesterov momentum; needs momentum > 0 and dampening == 0.
      maximize: ascend instead of descend.

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


@_standard_promotion
def Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
         maximize=False, decoupled_weight_decay=False):
    """torch.optim.Adam, with its ``amsgrad`` and ``decoupled_weight_decay`` (= AdamW).

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1). beta1 is replaced by the schedule's when lr is a
        `OneCycleLR` that cycles it.
      eps: >= 0, added to the corrected square root of the second moment.
      weight_decay: >= 0; an L2 penalty added to the gradient, or with
        ``decoupled_weight_decay`` a decay of the params by lr * weight_decay.
      amsgrad: divide by the running maximum of the second moment (torch's variant).
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
    lr, b1, b2, eps, weight_decay, maximize = _adam_args("Adam", lr, betas, eps, weight_decay,
                                                         maximize)
    amsgrad = _checks.flag("amsgrad", amsgrad)
    decoupled = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    factory = transforms.scale_by_torch_amsgrad if amsgrad else optax.scale_by_adam
    scale = _scheduled(factory, b1=b1, b2=b2, eps=eps)
    return _adam_like(scale, lr, maximize, weight_decay, decoupled)


@_standard_promotion
def AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
          maximize=False):
    """torch.optim.AdamW: ``Adam(..., decoupled_weight_decay=True)``, weight_decay 1e-2.

    ``optax.adamw`` has the same update but a default weight_decay of 1e-4; that alone is the
    1.2e-2 relative difference of a name-for-name port after 300 steps (README.md).

    Args:
      lr, betas, eps, amsgrad, maximize: as in `Adam`.
      weight_decay: >= 0; each step multiplies the params by 1 - lr * weight_decay.

    Returns:
      An `optax.GradientTransformation`.
    """
    return Adam(lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                decoupled_weight_decay=True)


@_standard_promotion
def RMSprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
            maximize=False):
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
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.

    Examples:
      >>> tx = RMSprop(lr=1e-3, alpha=0.9, momentum=0.8, centered=True)
    """
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


@_standard_promotion
def Adagrad(lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
            maximize=False):
    """torch.optim.Adagrad: lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum of g**2) + eps).

    ``optax.adagrad`` puts eps inside the square root and starts the sum at 0.1, not 0
    (see `transforms.scale_by_torch_adagrad`).

    Args:
      lr: learning rate >= 0, or a schedule.
      lr_decay: >= 0.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      initial_accumulator_value: >= 0, the starting sum of squares.
      eps: >= 0.
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    lr = _lr(lr)
    lr_decay = _checks.nonnegative_float("lr_decay", lr_decay)
    weight_decay = _checks.nonnegative_float("weight_decay", weight_decay)
    initial = _checks.nonnegative_float("initial_accumulator_value", initial_accumulator_value)
    eps = _checks.nonnegative_float("eps", eps)
    maximize = _checks.flag("maximize", maximize)
    _cycled(lr, "Adagrad", has_momentum=False)
    rate = lr
    if lr_decay != 0:
        def rate(count):
            base = lr(count) if callable(lr) else lr
            return base / (1 + count * lr_decay)
    return optax.chain(*_head(maximize, weight_decay),
                       transforms.scale_by_torch_adagrad(initial, eps),
                       optax.scale_by_learning_rate(rate))


@_standard_promotion
def Adamax(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *, maximize=False):
    """torch.optim.Adamax, which ``optax.scale_by_adamax`` computes as torch does.

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1); beta1 may be cycled by `OneCycleLR`.
      eps: >= 0, added to |g| in the infinity norm.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    lr, b1, b2, eps, weight_decay, maximize = _adam_args("Adamax", lr, betas, eps,
                                                         weight_decay, maximize)
    scale = _scheduled(optax.scale_by_adamax, b1=b1, b2=b2, eps=eps)
    return _adam_like(scale, lr, maximize, weight_decay, False)


@_standard_promotion
def NAdam(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
          decoupled_weight_decay=False, *, maximize=False):
    """torch.optim.NAdam, with its momentum-decay schedule (`transforms.scale_by_torch_nadam`).

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1); beta1 may be cycled by `OneCycleLR`.
      eps: >= 0.
      weight_decay: >= 0; L2, or decoupled (NAdamW) with ``decoupled_weight_decay``.
      momentum_decay: >= 0, the psi of mu_t = beta1 (1 - 0.5 * 0.96^(t psi)).
      decoupled_weight_decay: multiply the params by 1 - lr * weight_decay instead.
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    lr, b1, b2, eps, weight_decay, maximize = _adam_args("NAdam", lr, betas, eps, weight_decay,
                                                         maximize)
    momentum_decay = _checks.nonnegative_float("momentum_decay", momentum_decay)
    decoupled = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    scale = _scheduled(transforms.scale_by_torch_nadam, b1=b1, b2=b2, eps=eps,
                       momentum_decay=momentum_decay)
    return _adam_like(scale, lr, maximize, weight_decay, decoupled)


@_standard_promotion
def RAdam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
          *, maximize=False):
    """torch.optim.RAdam (`transforms.scale_by_torch_radam`: eps where torch puts it).

    Args:
      lr: learning rate >= 0, or a schedule.
      betas: (beta1, beta2), each in [0, 1); beta1 may be cycled by `OneCycleLR`.
      eps: >= 0.
      weight_decay: >= 0; L2, or decoupled with ``decoupled_weight_decay``.
      decoupled_weight_decay: multiply the params by 1 - lr * weight_decay instead.
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
    lr, b1, b2, eps, weight_decay, maximize = _adam_args("RAdam", lr, betas, eps, weight_decay,
                                                         maximize)
    decoupled = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    scale = _scheduled(transforms.scale_by_torch_radam, b1=b1, b2=b2, eps=eps)
    return _adam_like(scale, lr, maximize, weight_decay, decoupled)


@_standard_promotion
def Adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False):
    """torch.optim.Adadelta, which ``optax.scale_by_adadelta`` computes as torch does.

    Args:
      lr: learning rate >= 0 (torch's default 1.0), or a schedule.
      rho: in [0, 1], the decay of both running means.
      eps: >= 0, inside both square roots.
      weight_decay: >= 0, the L2 penalty added to the gradient.
      maximize: ascend instead of descend.

    Returns:
      An `optax.GradientTransformation`.
    """
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
                                      Adadelta)}

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "RMSprop",
    "clip_grad_norm",
    "lr_scheduler",
    "skip_unused",
    "transforms",
]
