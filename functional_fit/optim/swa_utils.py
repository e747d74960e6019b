"""torch.optim.swa_utils in JAX: the averages of `AveragedModel` (SWA, EMA) and `SWALR`.

torch's ``AveragedModel(model)`` is a copy of the module whose parameters are averaged by
``update_parameters(model)``, after each optimizer step or epoch. Here the average is a pair of
pure functions over a parameter pytree, optax's shape:

    torch:  swa_model = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
            ... optimizer.step(); swa_model.update_parameters(model)
            swa_model(x)
    JAX:    ema = AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(0.999))
            avg = ema.init(params)
            ... params = optax.apply_updates(params, updates); avg = ema.update(params, avg)
            model(avg.params, x)

The state `AveragedModelState` holds what torch's copy holds: the averaged parameters (its
``module``'s parameters) and ``n_averaged`` (its buffer of that name). The first update copies the
parameters, as torch's does when n_averaged is 0; later ones apply the averaging function.

What is left out, and why: there is no module to copy (the model is a function of a pytree
here), so no ``model`` and no ``device`` argument; there are no buffers (a JAX model's running
statistics, if any, are parameters or state the caller keeps), so no ``use_buffers`` and no
``update_bn``, which recomputes BatchNorm's buffers.

The averaging functions compute what torch's compute on the CPU, rounding included:
- `get_swa_avg_fn` (the default when neither function is given): a + (c - a) / (n + 1), the exact
  running mean in the parameters' precision.
- `get_swa_multi_avg_fn`: ``torch._foreach_lerp_`` with the weight 1 / (n + 1) computed by torch
  as a float32 tensor (``1 / (n_averaged + 1)``, n_averaged a long tensor), so its mean of
  float64 parameters is off by float32's rounding of that weight: 4e-9 relative after 4
  updates, measured. torch's default on CUDA takes this path; on the CPU the exact one.
- `get_ema_multi_avg_fn(decay)`: lerp towards the parameters with weight 1 - decay, torch's lerp
  (a + w (c - a) for |w| < 0.5, c - (c - a)(1 - w) otherwise); `get_ema_avg_fn(decay)`:
  decay a + (1 - decay) c.
Measured against torch on the CPU in float64 (tests/test_swa_utils.py): the equal averages bit
for bit; the lerps bit for bit under `jax.jit` (XLA fuses a multiply and an add as torch's lerp
kernel does; run eagerly, 2 ulps apart at most); `get_ema_avg_fn` within 1 ulp under `jax.jit`
(there XLA fuses what torch rounds twice).

`SWALR` is here too, as in torch: a schedule (``count -> lr``) like those of `lr_scheduler`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.optim import lr_scheduler
from functional_fit.precision import default_float


class AveragedModelState(NamedTuple):
    """torch's AveragedModel: its module's parameters and its ``n_averaged`` buffer."""

    params: Any  # pytree like the model's parameters, the average
    n_averaged: jax.Array  # shape=() int (int64 in 64-bit mode, torch's long), updates so far


class AveragedModelTransformation(NamedTuple):
    """``init(params) -> AveragedModelState``; ``update(params, state) -> AveragedModelState``."""

    init: Callable
    update: Callable


def _lerp(a, c, w):
    """torch's CPU lerp(a, c, w), elementwise, w a () array or a number."""
    w = jnp.asarray(w).astype(a.dtype)
    return jnp.where(jnp.abs(w) < 0.5, a + w * (c - a), c - (c - a) * (1 - w))


def _decay(decay) -> float:
    decay = _checks.finite_float("decay", decay)
    if decay < 0.0 or decay > 1.0:
        raise InputError(f"decay must be in [0, 1], got {decay}")
    return decay


def get_swa_avg_fn() -> Callable:
    """torch's equal average of one parameter: a + (c - a) / (n + 1).

    Returns:
      ``avg_fn(averaged, current, n_averaged) -> averaged``, arrays of one shape.
    """
    def swa_update(averaged, current, n_averaged):
        count = jnp.broadcast_to((n_averaged + 1).astype(averaged.dtype), averaged.shape)
        # XLA turns a division by a broadcast scalar into a product with its reciprocal (1 ulp
        # apart in a third of the entries); torch divides
        return averaged + (current - averaged) / jax.lax.optimization_barrier(count)

    return swa_update


def get_ema_avg_fn(decay=0.999) -> Callable:
    """torch's exponential moving average of one parameter: decay a + (1 - decay) c.

    Args:
      decay: in [0, 1].

    Returns:
      ``avg_fn(averaged, current, n_averaged) -> averaged``.
    """
    decay = _decay(decay)

    def ema_update(averaged, current, n_averaged):
        del n_averaged
        return decay * averaged + (1 - decay) * current

    return ema_update


def get_swa_multi_avg_fn() -> Callable:
    """torch's equal average of all parameters at once: lerp with weight 1 / (n + 1), that
    weight rounded to float32 as torch's computes it.

    Returns:
      ``multi_avg_fn(averaged_list, current_list, n_averaged) -> averaged_list``.
    """
    def swa_update(averaged, current, n_averaged):
        weight = jnp.float32(1.0) / (n_averaged + 1).astype(jnp.float32)  # () float32, as torch's
        return [_lerp(a, c, weight) for a, c in zip(averaged, current, strict=True)]

    return swa_update


def get_ema_multi_avg_fn(decay=0.999) -> Callable:
    """torch's exponential moving average of all parameters at once: lerp with weight
    1 - decay.

    Args:
      decay: in [0, 1].

    Returns:
      ``multi_avg_fn(averaged_list, current_list, n_averaged) -> averaged_list``.

    Examples:
      >>> import jax.numpy as jnp
      >>> ema = AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(0.5))
      >>> state = ema.init(jnp.zeros(2))
      >>> for p in (jnp.ones(2), 3 * jnp.ones(2)):  # the first update copies
      ...     state = ema.update(p, state)
      >>> state.params.tolist(), int(state.n_averaged)
      ([2.0, 2.0], 2)
    """
    weight = 1 - _decay(decay)

    def ema_update(averaged, current, n_averaged):
        del n_averaged
        return [_lerp(a, c, weight) for a, c in zip(averaged, current, strict=True)]

    return ema_update


def AveragedModel(avg_fn: Callable | None = None,
                  multi_avg_fn: Callable | None = None) -> AveragedModelTransformation:
    """torch's AveragedModel as a pair of pure functions over a parameter pytree.

    ``update(params, state)`` is torch's ``update_parameters(model)``: the first copies
    `params`, each later one averages them in with `multi_avg_fn` (all leaves at once, as a
    list) or `avg_fn` (leaf by leaf), or, when neither is given, with `get_swa_avg_fn` (the
    equal average torch's CPU path computes). Traceable under `jax.jit`.

    Args:
      avg_fn: ``(averaged, current, n_averaged) -> averaged`` for one leaf, or None.
      multi_avg_fn: ``(averaged_list, current_list, n_averaged) -> averaged_list``, or None;
        not both (torch refuses both too). torch's ``model``, ``device`` and ``use_buffers``
        have no counterpart (see the module's docstring).

    Returns:
      `AveragedModelTransformation`: ``init(params) -> AveragedModelState`` (a copy of
      `params`, n_averaged 0, as torch's deepcopy of the model) and
      ``update(params, state) -> AveragedModelState``.
    """
    if avg_fn is not None and multi_avg_fn is not None:
        raise InputError("avg_fn and multi_avg_fn: give only one of them, as torch requires")
    for name, fn in (("avg_fn", avg_fn), ("multi_avg_fn", multi_avg_fn)):
        if fn is not None and not callable(fn):
            raise InputError(f"{name} must be a function or None, got {fn!r}")
    if multi_avg_fn is None:
        one = avg_fn if avg_fn is not None else get_swa_avg_fn()

        def multi_avg_fn(averaged, current, n_averaged):
            return [one(a, c, n_averaged) for a, c in zip(averaged, current, strict=True)]

    def init_fn(params):
        return AveragedModelState(jax.tree.map(jnp.array, params), jnp.zeros((), dtype=int))

    def update_fn(params, state):
        leaves, treedef = jax.tree.flatten(params)
        averaged = jax.tree.leaves(state.params)
        if len(averaged) != len(leaves):
            raise InputError(f"params has {len(leaves)} leaves, the average {len(averaged)}")
        mixed = multi_avg_fn(averaged, leaves, state.n_averaged)
        first = state.n_averaged == 0  # torch copies the parameters on the first update
        new = [jnp.where(first, c, m).astype(a.dtype)
               for a, c, m in zip(averaged, leaves, mixed, strict=True)]
        return AveragedModelState(jax.tree.unflatten(treedef, new), state.n_averaged + 1)

    return AveragedModelTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- SWALR


def _anneal(strategy: str, t: float) -> float:
    return (1 - math.cos(math.pi * t)) / 2 if strategy == "cos" else t


def _swalr_table(lr: float, swa_lr: float, anneal_epochs: int, strategy: str) -> list[float]:
    """torch's SWALR recursion in Python floats: the rate after 0, 1, ... steps, until it is
    swa_lr for good (its construction is step 0)."""
    table, prev = [], lr
    for step_count in range(1, anneal_epochs + 3):
        step = step_count - 1 if anneal_epochs else max(1, step_count - 1)
        prev_alpha = _anneal(strategy, max(0, min(1, (step - 1) / max(1, anneal_epochs))))
        start = swa_lr if prev_alpha == 1 else (prev - prev_alpha * swa_lr) / (1 - prev_alpha)
        alpha = _anneal(strategy, max(0, min(1, step / max(1, anneal_epochs))))
        prev = swa_lr * alpha + start * (1 - alpha)
        table.append(prev)
    return table


def SWALR(lr, swa_lr, anneal_epochs=10, anneal_strategy="cos") -> Callable:
    """torch's SWALR: from lr to swa_lr in anneal_epochs steps, swa_lr after.

    torch's SWALR anneals from the rate the optimizer's group has when it first steps (after
    another scheduler, the rate that one left); here `lr` is that rate. Its values come from
    torch's own recursion (which recovers the start rate from the previous one at each step),
    computed once in Python floats and looked up: equal to torch's, bit for bit. To switch to
    it at step m of another schedule, as torch's SWA recipe does:
    ``SequentialLR(lr0, [schedule, SWALR(float(schedule(m)), swa_lr)], milestones=[m])``
    (a SWALR schedule has no base lr, so SequentialLR takes it).

    Args:
      lr: the rate it starts from.
      swa_lr: the rate it ends at (one number; torch's list, one per param group, is refused).
      anneal_epochs: steps to get there, an integer >= 0 (0: swa_lr from the start).
      anneal_strategy: ``"cos"`` or ``"linear"``.

    Returns:
      A schedule, count -> lr.

    Examples:
      >>> schedule = SWALR(0.1, swa_lr=0.01, anneal_epochs=2, anneal_strategy="linear")
      >>> [round(float(schedule(k)), 6) for k in range(4)]
      [0.1, 0.055, 0.01, 0.01]
    """
    lr = _checks.finite_float("lr", lr)
    if isinstance(swa_lr, list | tuple):
        raise InputError("swa_lr must be one number: a list (one per torch param group) is not "
                         "supported; make one SWALR per group")
    swa_lr = _checks.finite_float("swa_lr", swa_lr)
    _checks.choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
    if isinstance(anneal_epochs, bool) or not isinstance(anneal_epochs, Integral) \
            or anneal_epochs < 0:
        raise InputError(f"anneal_epochs must be an integer >= 0, got {anneal_epochs!r}")
    anneal_epochs = int(anneal_epochs)
    if anneal_epochs > lr_scheduler.MAX_TABLE:
        def rule(count):  # the closed form, which torch's recursion reproduces to rounding
            t = jnp.clip(count / anneal_epochs, 0.0, 1.0)
            alpha = (1 - jnp.cos(math.pi * t)) / 2 if anneal_strategy == "cos" else t
            return swa_lr * alpha + lr * (1 - alpha)
    else:
        values = default_float(jnp.asarray(_swalr_table(lr, swa_lr, anneal_epochs,
                                                        anneal_strategy)))  # (ae + 2,)

        def rule(count):
            return values[jnp.minimum(count, values.shape[0] - 1)]

    rule.__name__ = "SWALR"
    rule.base_lr = None
    return lr_scheduler.full_width(rule)


__all__ = [
    "SWALR",
    "AveragedModel",
    "AveragedModelState",
    "AveragedModelTransformation",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
]
