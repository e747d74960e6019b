"""torch.optim.lr_scheduler's schedulers as optax schedules.

Each function has its torch class's name and keywords, with the optimizer argument replaced by
the base learning rate ``lr`` (`OneCycleLR` takes none: ``max_lr / div_factor`` is its start),
and returns an optax schedule, ``schedule(count) -> lr``, traceable under `jax.jit`. Its value
at count k is torch's ``optimizer.param_groups[0]["lr"]`` after k calls of
``scheduler.step()``, so

    torch:  opt = torch.optim.SGD(model.parameters(), lr=0.1)
            sched = StepLR(opt, step_size=50, gamma=0.5)
            ... opt.step(); sched.step()          # once per optimizer step
    JAX:    functional_fit.optim.SGD(lr=StepLR(0.1, step_size=50, gamma=0.5))

optax calls the schedule with the number of updates made so far, which is torch's number of
``sched.step()`` calls when torch steps its scheduler once per optimizer step. optax counts in
int32, and JAX divides int32 by int32 in float32 even in 64-bit mode; every schedule here
receives the count at full width (int64 in 64-bit mode, `full_width`), so a rule computes in
float64 what torch computes from Python ints. A scheduler
stepped once per epoch is ``per_epoch(schedule, steps_per_epoch)``.

Closed forms and torch's recursion. Stepped without an epoch, torch computes most rates from
the previous one (``group["lr"] * gamma``), not from its closed form (``lr * gamma**k``); the
two agree in exact arithmetic and differ by rounding, which the recursion accumulates. Here:
- `ConstantLR` and `LinearLR` take few distinct values; they are computed by torch's own
  recursion, in Python floats, once, and looked up: equal to torch's, bit for bit.
- `LambdaLR` and `OneCycleLR` are not recursive in torch either: the same formula.
- `StepLR`, `MultiStepLR`, `ExponentialLR`: lr * gamma**j against torch's j products, within
  j + 1 roundings.
- `CosineAnnealingLR`: the closed form. torch's recursion divides by 1 + cos(pi (k-1) / T_max),
  which is small near k = T_max; past T_max (where the rate climbs again, as torch's does)
  its error is up to about 0.2 T_max**2 roundings relative to lr
  (`functional_fit.tolerances.SCHEDULE_FLOAT64` bounds the lot).
- `SequentialLR` evaluates schedule i at k - milestones[i-1], which is what torch does: at a
  milestone it restarts the next scheduler from its closed form at 0.

The lecture's decaying steps are `LambdaLR`. Gradient descent with lr / (i + 1) at step i is

    SGD(lr=LambdaLR(lr, lambda i: 1 / (i + 1)))

and the lecture's minibatch SGD, lr / (e + 1) for every batch of epoch e, is that schedule
stepped once per epoch: ``SGD(lr=per_epoch(LambdaLR(lr, lambda e: 1 / (e + 1)), nb))`` with
nb = ceil(n / batch_size). LambdaLR computes lr * (1 / (i + 1)), as torch's does, where the
lecture's loops compute lr / (i + 1): the rates differ in the last bit at times, which on an
L1 path (whose gradient jumps where a residual crosses 0) moved the lecture's GD by 4e-9
relative, far below its printed digits. ``LambdaLR(1.0, lambda i: lr / (i + 1))`` divides as
the lecture does and gives its numbers bit for bit (tests/test_lr_scheduler.py).

`OneCycleLR` and momentum: with ``cycle_momentum=True`` (torch's default) the returned schedule
carries the momentum schedule as its ``momentum`` attribute, and the optimizers of
`functional_fit.optim` use it in place of their momentum or beta1, as torch's scheduler
overwrites them. It is reproduced, not ignored; nesting such a schedule in `SequentialLR` is
refused (torch would cycle the momentum in that phase only).

Left out: torch's ``last_epoch`` (to resume, keep the optimizer state, whose count is the
epoch) and lists of rates for several parameter groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.precision import default_float

#: Beyond this many distinct rates `LinearLR` uses its closed form instead of a table.
MAX_TABLE = 100_000


def _widened(count):
    """An integer step count as the widest integer JAX has now: int64 in 64-bit mode.

    optax counts in int32, and JAX divides int32 by int32 in float32 even in 64-bit mode
    (``1 / (count + 1)`` is 0.33333334 at count 2), where torch divides Python ints in float64.
    A float count (a caller's own) is left as it is.
    """
    count = jnp.asarray(count)  # () or any shape the caller evaluates at
    if not jnp.issubdtype(count.dtype, jnp.integer):
        return count
    return count.astype(jax.dtypes.canonicalize_dtype(jnp.int64))


def _schedule(rule: Callable, name: str, base_lr: float | None, momentum=None) -> Callable:
    """A schedule of `rule`, tagged with its name, its base lr (`SequentialLR` checks it) and
    its momentum.

    torch's schedulers compute in Python floats from an integer step count; a rule here mixes
    floats and the integer count the same way, on purpose, so it is evaluated under JAX's
    standard promotion whatever promotion mode the program chose, and it receives the count
    at full width (`full_width`).
    """
    def fn(count):
        with jax.numpy_dtype_promotion("standard"):
            return rule(_widened(count))

    fn.__name__ = fn.__qualname__ = name
    fn.base_lr = base_lr
    fn.full_width = True
    if momentum is not None:
        fn.momentum = momentum
    return fn


def full_width(schedule: Callable) -> Callable:
    """`schedule` called with the step count at full width: int64 in 64-bit mode.

    optax passes its count as int32, and JAX divides int32 by int32 in float32 even in 64-bit
    mode, so ``lambda i: 1 / (i + 1)`` gives 0.33333334 at i = 2 where torch's Python ints give
    0.3333333333333333. Every schedule of this module widens the count itself; the optimizers of
    `functional_fit.optim` pass any other schedule given as ``lr`` through here. A momentum
    schedule it carries (`OneCycleLR`) is widened too; a float count is passed as it is.

    Args:
      schedule: count -> value.

    Returns:
      A schedule with the same values at full width, and the same ``base_lr`` and
      ``momentum``; `schedule` itself when it already widens.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(full_width(lambda i: 1 / (i + 1))(jnp.int32(2)))  # in 64-bit mode
      0.3333333333333333
    """
    if not callable(schedule):
        raise InputError(f"schedule must be a function of the step count, got {schedule!r}")
    if getattr(schedule, "full_width", False):
        return schedule
    momentum = getattr(schedule, "momentum", None)
    return _schedule(schedule, getattr(schedule, "__name__", "schedule"),
                     getattr(schedule, "base_lr", None),
                     None if momentum is None else full_width(momentum))


def _int(name: str, value, *, positive: bool = False) -> int:
    return (_checks.positive_int if positive else _checks.nonnegative_int)(name, value)


def _factor(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    value = _checks.finite_float(name, value)
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise InputError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value}")
    return value


def _lookup(table: Sequence[float]):
    """count -> table[min(count, len - 1)]: rates computed once in Python floats."""
    values = default_float(np.asarray(table, dtype=np.float64))
    last = len(table) - 1
    return lambda count: values[jnp.minimum(count, last)]


# --------------------------------------------------------------------------- the schedulers


def LambdaLR(lr, lr_lambda: Callable):
    """torch's LambdaLR: lr * lr_lambda(k).

    Args:
      lr: the base learning rate.
      lr_lambda: a function of the step count k (an integer array, int64 in 64-bit mode), written
        with operators or `jax.numpy`: ``lambda k: 0.95 ** k``, not ``math.pow(0.95, k)``.

    Returns:
      A schedule, count -> lr.

    Examples:
      >>> schedule = LambdaLR(6.0, lambda i: 1 / (i + 1))  # the lecture's lr / (i + 1)
      >>> [float(schedule(i)) for i in range(3)]
      [6.0, 3.0, 2.0]
    """
    lr = _checks.finite_float("lr", lr)
    if not callable(lr_lambda):
        raise InputError(f"lr_lambda must be a function of the step count, got {lr_lambda!r}")
    return _schedule(lambda count: lr * lr_lambda(count), "LambdaLR", lr)


def StepLR(lr, step_size: int, gamma=0.1):
    """torch's StepLR: lr * gamma ** (k // step_size).

    Examples:
      >>> schedule = StepLR(0.1, step_size=50, gamma=0.5)
      >>> [round(float(schedule(k)), 6) for k in (0, 49, 50, 100)]
      [0.1, 0.1, 0.05, 0.025]
    """
    lr = _checks.finite_float("lr", lr)
    step_size = _int("step_size", step_size, positive=True)
    gamma = _checks.finite_float("gamma", gamma)
    return _schedule(lambda count: lr * default_float(gamma) ** (count // step_size), "StepLR",
                     lr)


def MultiStepLR(lr, milestones: Sequence[int], gamma=0.1):
    """torch's MultiStepLR: lr * gamma ** (number of milestones m with 0 <= m <= k).

    A milestone given twice multiplies by gamma twice, as torch's ``Counter`` does; negative
    milestones are never reached, as in torch's recursion.
    """
    lr = _checks.finite_float("lr", lr)
    if isinstance(milestones, str | bytes) or not isinstance(milestones, Sequence | np.ndarray):
        raise InputError(f"milestones must be a list of integers, got {milestones!r}")
    for m in milestones:
        if isinstance(m, bool) or not isinstance(m, Integral | np.integer):
            raise InputError(f"milestones must be integers, got {m!r}")
    gamma = _checks.finite_float("gamma", gamma)
    reached = jnp.asarray(sorted(int(m) for m in milestones if m >= 0), dtype=jnp.int32)  # (m,)

    def schedule(count):
        n = jnp.sum(reached <= count)  # () how many milestones are behind
        return lr * default_float(gamma) ** n

    return _schedule(schedule, "MultiStepLR", lr)


def ExponentialLR(lr, gamma):
    """torch's ExponentialLR: lr * gamma ** k."""
    lr = _checks.finite_float("lr", lr)
    gamma = _checks.finite_float("gamma", gamma)
    return _schedule(lambda count: lr * default_float(gamma) ** count, "ExponentialLR", lr)


def CosineAnnealingLR(lr, T_max: int, eta_min=0.0):
    """torch's CosineAnnealingLR: eta_min + (lr - eta_min) (1 + cos(pi k / T_max)) / 2.

    Past T_max the rate climbs back to lr and falls again (period 2 T_max), as torch's
    recursion makes it; it is not held at eta_min.

    Examples:
      >>> schedule = CosineAnnealingLR(0.1, T_max=10)
      >>> [round(float(schedule(k)), 6) for k in (0, 5, 10, 20)]
      [0.1, 0.05, 0.0, 0.1]
    """
    lr = _checks.finite_float("lr", lr)
    T_max = _int("T_max", T_max, positive=True)
    eta_min = _checks.finite_float("eta_min", eta_min)

    def schedule(count):
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * count / T_max)) / 2

    return _schedule(schedule, "CosineAnnealingLR", lr)


def LinearLR(lr, start_factor=1.0 / 3, end_factor=1.0, total_iters: int = 5):
    """torch's LinearLR: lr * factor, the factor moving linearly from start to end.

    Computed by torch's own recursion, once, for k <= total_iters; constant after.

    Examples:
      >>> schedule = LinearLR(0.1, start_factor=0.5, total_iters=2)
      >>> [round(float(schedule(k)), 6) for k in range(4)]
      [0.05, 0.075, 0.1, 0.1]
    """
    lr = _checks.finite_float("lr", lr)
    start = _factor("start_factor", start_factor, 0.0, 1.0, low_open=True)
    end = _factor("end_factor", end_factor, 0.0, 1.0)
    total = _int("total_iters", total_iters)
    if total > MAX_TABLE:
        def schedule(count):
            return lr * (start + (end - start) * jnp.minimum(count, total) / total)
        return _schedule(schedule, "LinearLR", lr)
    table = [lr * start]  # torch: last_epoch == 0
    for k in range(1, total + 1):
        table.append(table[-1] * (1.0 + (end - start) / (total * start + (k - 1) * (end - start))))
    return _schedule(_lookup(table), "LinearLR", lr)


def ConstantLR(lr, factor=1.0 / 3, total_iters: int = 5):
    """torch's ConstantLR: lr * factor for k < total_iters, lr after.

    After: ``(lr * factor) * (1 / factor)``, as torch's recursion computes it.
    """
    lr = _checks.finite_float("lr", lr)
    factor = _factor("factor", factor, 0.0, 1.0)
    total = _int("total_iters", total_iters)
    if factor == 0 and total > 0:
        raise InputError("factor must be positive when total_iters > 0: torch divides by it "
                         "at step total_iters")
    table = [lr * factor]
    if total > 0:  # torch: unchanged until last_epoch == total_iters, then * (1 / factor)
        table += [table[0]] * (total - 1) + [table[0] * (1.0 / factor)]
    return _schedule(_lookup(table), "ConstantLR", lr)


def OneCycleLR(max_lr, total_steps: int | None = None, epochs: int | None = None,
               steps_per_epoch: int | None = None, pct_start=0.3, anneal_strategy="cos",
               cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0,
               final_div_factor=1e4, three_phase=False):  # torch's OneCycleLR, keyword for keyword
    """torch's OneCycleLR: up from max_lr / div_factor to max_lr, then down to
    max_lr / (div_factor * final_div_factor), in two phases (or three).

    With ``cycle_momentum`` (the default) the momentum moves the other way, between
    max_momentum and base_momentum; the schedule returned carries it as ``.momentum``
    (count -> momentum), and `functional_fit.optim`'s SGD, RMSprop and Adam family use it
    in place of their momentum or beta1, as torch's scheduler overwrites them.

    torch raises when stepped more than total_steps times; under `jax.jit` that cannot raise,
    so the schedule is nan there, and a fit that runs too long ends non-finite.

    Args:
      max_lr: the peak learning rate.
      total_steps: the number of steps; or give epochs and steps_per_epoch.
      pct_start: in [0, 1], the part of the cycle spent increasing.
      anneal_strategy: ``"cos"`` or ``"linear"``.
      cycle_momentum, base_momentum, max_momentum: see above.
      div_factor: the start is max_lr / div_factor.
      final_div_factor: the end is the start / final_div_factor.
      three_phase: a third phase, from the start down to the end.

    Returns:
      A schedule, count -> lr, with a ``momentum`` schedule when cycle_momentum.

    Examples:
      >>> schedule = OneCycleLR(1.0, total_steps=10, anneal_strategy="linear")
      >>> [round(float(schedule(k)), 4) for k in (0, 2, 9)], round(float(schedule.momentum(2)), 4)
      ([0.04, 1.0, 0.0], 0.85)
    """
    max_lr = _checks.finite_float("max_lr", max_lr)
    if total_steps is not None:
        total = _int("total_steps", total_steps, positive=True)
    elif epochs is not None and steps_per_epoch is not None:
        total = (_int("epochs", epochs, positive=True)
                 * _int("steps_per_epoch", steps_per_epoch, positive=True))
    else:
        raise InputError("OneCycleLR needs total_steps, or epochs and steps_per_epoch")
    pct = _factor("pct_start", pct_start, 0.0, 1.0)
    _checks.choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
    cycle = _checks.flag("cycle_momentum", cycle_momentum)
    three = _checks.flag("three_phase", three_phase)
    div = _checks.finite_float("div_factor", div_factor)
    final_div = _checks.finite_float("final_div_factor", final_div_factor)
    base_m = _checks.finite_float("base_momentum", base_momentum)
    max_m = _checks.finite_float("max_momentum", max_momentum)
    initial = max_lr / div
    low = initial / final_div
    if three:  # (end_step, start_lr, end_lr, start_momentum, end_momentum), as torch's table
        phases = [(float(pct * total) - 1, initial, max_lr, max_m, base_m),
                  (float(2 * pct * total) - 2, max_lr, initial, base_m, max_m),
                  (total - 1, initial, low, max_m, max_m)]
    else:
        phases = [(float(pct * total) - 1, initial, max_lr, max_m, base_m),
                  (total - 1, max_lr, low, base_m, max_m)]
    starts = [0.0] + [p[0] for p in phases[:-1]]
    # torch divides by each phase's length; a phase of length 0 that a step reaches (the first
    # when it ends at step 0, the last always) raises ZeroDivisionError there.
    if phases[0][0] == 0.0 or phases[-1][0] == starts[-1]:
        raise InputError(f"pct_start={pct} with total_steps={total} leaves a phase of the "
                         "cycle empty, and torch divides by its length; change pct_start or "
                         "total_steps")

    def anneal(a, b, p):
        if anneal_strategy == "cos":
            return b + (a - b) / 2.0 * (jnp.cos(math.pi * p) + 1)
        return (b - a) * p + a

    def along(which):  # which: 1 for the lr, 3 for the momentum
        def schedule(count):
            value = jnp.nan  # past total_steps, where torch raises
            for start, phase in reversed(list(zip(starts, phases))):
                end = phase[0]
                p = (count - start) / (end - start)
                here = anneal(phase[which], phase[which + 1], p)
                last = phase is phases[-1]
                inside = (count <= total) if last else (count <= end)
                value = jnp.where(inside, here, value)
            # weakly typed (Python floats and an int32 count): optax.inject_hyperparams casts
            # a momentum to the params' dtype, as torch's float32 kernels cast it
            return value

        return schedule

    momentum = _schedule(along(3), "OneCycleLR.momentum", None) if cycle else None
    return _schedule(along(1), "OneCycleLR", None, momentum)


def SequentialLR(lr, schedulers: Sequence[Callable], milestones: Sequence[int]):
    """torch's SequentialLR: schedulers[i] from milestones[i-1] on, restarted at 0 there.

    Warm-up then cosine, as torch writes it with ``SequentialLR(opt, [warm, cos], [5])``:

    Examples:
      >>> warm = LinearLR(0.1, start_factor=0.1, total_iters=5)
      >>> cos = CosineAnnealingLR(0.1, T_max=95)
      >>> schedule = SequentialLR(0.1, [warm, cos], milestones=[5])
      >>> [round(float(schedule(k)), 4) for k in (0, 4, 5, 100)]
      [0.01, 0.082, 0.1, 0.0]

    Args:
      lr: the base learning rate; every scheduler of this module in `schedulers` must have
        been made with it (in torch they all share the optimizer's).
      schedulers: schedules; the first runs from step 0.
      milestones: len(schedulers) - 1 non-decreasing step counts.

    Returns:
      A schedule, count -> lr.
    """
    lr = _checks.finite_float("lr", lr)
    schedulers = list(schedulers)
    if not schedulers:
        raise InputError("schedulers must hold at least one schedule")
    for i, s in enumerate(schedulers):
        if not callable(s):
            raise InputError(f"schedulers[{i}] must be a schedule (count -> lr), got {s!r}")
        if getattr(s, "momentum", None) is not None:
            raise InputError(f"schedulers[{i}] is a OneCycleLR that cycles the momentum; inside "
                             "SequentialLR pass it cycle_momentum=False")
        base = getattr(s, "base_lr", None)
        if base is not None and base != lr:
            raise InputError(f"schedulers[{i}] was made with lr={base:g}, but SequentialLR has "
                             f"lr={lr:g}; in torch they share the optimizer's")
    milestones = [_int(f"milestones[{i}]", m) for i, m in enumerate(milestones)]
    if len(milestones) != len(schedulers) - 1:
        raise InputError(f"milestones must hold len(schedulers) - 1 = {len(schedulers) - 1} "
                         f"step counts, got {len(milestones)}")
    if milestones != sorted(milestones):
        raise InputError(f"milestones must be non-decreasing, got {milestones}")

    def schedule(count):
        value = default_float(schedulers[0](count))
        for m, s in zip(milestones, schedulers[1:]):
            value = jnp.where(count >= m, default_float(s(jnp.maximum(count - m, 0))), value)
        return value

    return _schedule(schedule, "SequentialLR", lr)


def per_epoch(schedule: Callable, steps_per_epoch: int):
    """A schedule stepped once per epoch, as a schedule of optimizer steps: k -> schedule(k // s).

    torch's ``for epoch ...: (for batch ...: opt.step()); sched.step()`` with s batches per
    epoch. The momentum schedule of a cycling `OneCycleLR` is stepped per epoch too.

    Examples:
      >>> schedule = per_epoch(LambdaLR(1.0, lambda e: 1 / (e + 1)), steps_per_epoch=10)
      >>> [float(schedule(k)) for k in (0, 9, 10, 25)]
      [1.0, 1.0, 0.5, 0.3333333333333333]
    """
    if not callable(schedule):
        raise InputError(f"schedule must be a schedule (count -> lr), got {schedule!r}")
    s = _int("steps_per_epoch", steps_per_epoch, positive=True)
    momentum = getattr(schedule, "momentum", None)
    if momentum is not None:
        momentum = per_epoch(momentum, s)
    name = getattr(schedule, "__name__", "schedule")
    return _schedule(lambda count: schedule(count // s), f"per_epoch({name})",
                     getattr(schedule, "base_lr", None), momentum)



SCHEDULERS = {f.__name__: f for f in (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR,
                                      LinearLR, ConstantLR, OneCycleLR, LambdaLR, SequentialLR)}

__all__ = [
    "SCHEDULERS",
    "ConstantLR",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "SequentialLR",
    "StepLR",
    "full_width",
    "per_epoch",
]
