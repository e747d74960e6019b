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
- `ConstantLR`, `LinearLR` and `PolynomialLR` take few distinct values; they are computed by
  torch's own recursion, in Python floats, once, and looked up: equal to torch's, bit for bit.
- `MultiplicativeLR` is the product itself, factor by factor in torch's order (bit for bit;
  k factors at count k).
- `LambdaLR`, `OneCycleLR`, `CyclicLR` and `CosineAnnealingWarmRestarts` are not recursive in
  torch either: the same formula.
- `StepLR`, `MultiStepLR`, `ExponentialLR`: lr * gamma**j against torch's j products, within
  j + 1 roundings.
- `CosineAnnealingLR`: the closed form. torch's recursion divides by 1 + cos(pi (k-1) / T_max),
  which is small near k = T_max; past T_max (where the rate climbs again, as torch's does)
  its error is up to about 0.2 T_max**2 roundings relative to lr
  (`functional_fit.tolerances.SCHEDULE_FLOAT64` bounds the lot).
- `SequentialLR` evaluates schedule i at k - milestones[i-1], which is what torch does: at a
  milestone it restarts the next scheduler from its closed form at 0.
- `ChainedScheduler` composes torch's steps of its schedulers: in closed form when each
  scales or sets the rate, by torch's recursion itself when one is a `CosineAnnealingLR`.

The lecture's decaying steps are `LambdaLR`. Gradient descent with lr / (i + 1) at step i is

    SGD(lr=LambdaLR(lr, lambda i: 1 / (i + 1)))

and the lecture's minibatch SGD, lr / (e + 1) for every batch of epoch e, is that schedule
stepped once per epoch: ``SGD(lr=per_epoch(LambdaLR(lr, lambda e: 1 / (e + 1)), nb))`` with
nb = ceil(n / batch_size). LambdaLR computes lr * (1 / (i + 1)), as torch's does, where the
lecture's loops compute lr / (i + 1): the rates differ in the last bit at times, which on an
L1 path (whose gradient jumps where a residual crosses 0) moved the lecture's GD by 4e-9
relative, far below its printed digits. ``LambdaLR(1.0, lambda i: lr / (i + 1))`` divides as
the lecture does and gives its numbers bit for bit (tests/test_lr_scheduler.py).

`OneCycleLR`, `CyclicLR` and momentum: with ``cycle_momentum=True`` (torch's default) the
returned schedule carries the momentum schedule as its ``momentum`` attribute, and the
optimizers of `functional_fit.optim` use it in place of their momentum or beta1, as torch's
scheduler overwrites them. It is reproduced, not ignored; nesting such a schedule in
`SequentialLR` is refused (torch would cycle the momentum in that phase only); in
`ChainedScheduler` the last cycling scheduler's momentum is the one torch leaves.

`ReduceLROnPlateau` reads a metric, not the step count, so it is not a schedule but an optax
transformation chained after the optimizer: ``optax.chain(AdamW(lr=1e-3),
ReduceLROnPlateau(1e-3, patience=5))``, whose ``update`` takes the metric as ``value=`` (the
batch loss `functional_fit.fit.train` passes; ``per_epoch`` makes it step on each epoch's mean).
Its state, `ReduceLROnPlateauState`, holds torch's attributes under torch's names. torch's
SWALR is in `functional_fit.optim.swa_utils`, as it is in torch.

Left out: torch's ``last_epoch`` argument (to resume a torch run, `parity.optim.to_optax`
reads the scheduler's position into the optimizer state's count) and lists of rates for
several parameter groups (give each group its own schedule, `functional_fit.optim.groups`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
    schedule = _schedule(lambda count: lr * default_float(gamma) ** (count // step_size),
                         "StepLR", lr)
    return _scales(schedule, lambda count: jnp.where((count > 0) & (count % step_size == 0),
                                                     gamma, 1.0))


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

    return _scales(_schedule(schedule, "MultiStepLR", lr),
                   lambda count: default_float(gamma) ** jnp.sum(reached == count))


def ExponentialLR(lr, gamma):
    """torch's ExponentialLR: lr * gamma ** k."""
    lr = _checks.finite_float("lr", lr)
    gamma = _checks.finite_float("gamma", gamma)
    return _scales(_schedule(lambda count: lr * default_float(gamma) ** count, "ExponentialLR",
                             lr), _scale_after(1.0, lambda count: gamma))


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

    def torch_step(count, prev):  # torch's recursive step, for ChainedScheduler
        restart = (count - 1 - T_max) % (2 * T_max) == 0
        up = prev + (lr - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
        ratio = ((1 + jnp.cos(math.pi * count / T_max))
                 / (1 + jnp.cos(math.pi * (count - 1) / T_max)))
        return jnp.where(count == 0, prev,
                         jnp.where(restart, up, ratio * (prev - eta_min) + eta_min))

    cosine = _schedule(schedule, "CosineAnnealingLR", lr)
    cosine.torch_step = torch_step
    return cosine


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
    ratio = _scale_after(start, lambda count: jnp.where(
        count > total, 1.0, 1.0 + (end - start) / (total * start + (count - 1) * (end - start))))
    if total > MAX_TABLE:
        def schedule(count):
            return lr * (start + (end - start) * jnp.minimum(count, total) / total)
        return _scales(_schedule(schedule, "LinearLR", lr), ratio)
    table = [lr * start]  # torch: last_epoch == 0
    for k in range(1, total + 1):
        table.append(table[-1] * (1.0 + (end - start) / (total * start + (k - 1) * (end - start))))
    return _scales(_schedule(_lookup(table), "LinearLR", lr), ratio)


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
    ratio = _scale_after(factor, lambda count: jnp.where(
        count == total, 1.0 / (factor if factor else 1.0), 1.0))
    return _scales(_schedule(_lookup(table), "ConstantLR", lr), ratio)


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
        _not_plateau(f"schedulers[{i}]", s)
        if not callable(s):
            raise InputError(f"schedulers[{i}] must be a schedule (count -> lr), got {s!r}")
        if getattr(s, "momentum", None) is not None:
            raise InputError(f"schedulers[{i}] ({s.__name__}) cycles the momentum; inside "
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

    A `ReduceLROnPlateau` given here is stepped at each epoch's end on the epoch's mean batch
    loss, the plain mean of the `steps_per_epoch` losses `functional_fit.fit.train` passes as
    ``value=`` (torch: ``epoch_loss += loss.item()`` per batch, ``sched.step(epoch_loss / nb)``
    after the epoch). Many torch scripts weight each batch by its size instead
    (``loss.item() * len(xb)``, divided by n); that differs when the last batch is short. Every
    step of epoch e uses the rate the end of epoch e - 1 set. Its state is a
    `ReduceLROnPlateauEpochState`.
    """
    if isinstance(schedule, _Plateau):
        return schedule.epochs(_int("steps_per_epoch", steps_per_epoch, positive=True))
    if not callable(schedule):
        raise InputError(f"schedule must be a schedule (count -> lr), got {schedule!r}")
    s = _int("steps_per_epoch", steps_per_epoch, positive=True)
    momentum = getattr(schedule, "momentum", None)
    if momentum is not None:
        momentum = per_epoch(momentum, s)
    name = getattr(schedule, "__name__", "schedule")
    return _schedule(lambda count: schedule(count // s), f"per_epoch({name})",
                     getattr(schedule, "base_lr", None), momentum)



# --------------------------------------------------------------------------- more schedulers
#
# ChainedScheduler needs to know how torch steps each member: a member that *scales* the rate
# (lr <- lr * ratio(k), ``schedule.ratio``) or one that *sets* it from its own base (`_SETS`).


def _scales(schedule: Callable, ratio: Callable) -> Callable:
    """`schedule`, tagged with torch's step as `ChainedScheduler` sees it: lr <- lr * ratio(k),
    k = 0 being the step torch takes when the scheduler is made."""
    schedule.ratio = ratio
    return schedule


def _scale_after(k0: float, ratio: Callable) -> Callable:
    """k -> k0 at k = 0 (the step at construction), ratio(k) after."""
    return lambda count: jnp.where(count == 0, k0, ratio(count))


def PolynomialLR(lr, total_iters: int = 5, power=1.0):
    """torch's PolynomialLR: lr * (1 - min(k, total_iters) / total_iters) ** power.

    Computed by torch's own recursion, once, for k <= total_iters (equal to torch's, bit for
    bit); constant after. ``total_iters=0`` keeps lr, as torch's does.

    Examples:
      >>> schedule = PolynomialLR(0.1, total_iters=4, power=2.0)
      >>> [round(float(schedule(k)), 6) for k in (0, 2, 4, 9)]
      [0.1, 0.025, 0.0, 0.0]
    """
    lr = _checks.finite_float("lr", lr)
    total = _int("total_iters", total_iters)
    power = _checks.nonnegative_float("power", power)  # negative: torch divides 0 ** -p

    def ratio(count):  # torch's step k in 1 .. total_iters: ((T - k) / (T - k + 1)) ** power
        inside = (count >= 1) & (count <= total)
        left = (total - count) * 1.0  # () float, 0 at k = T as torch's
        return jnp.where(inside, (left / jnp.maximum(left + 1.0, 1.0)) ** power, 1.0)

    if total > MAX_TABLE:
        def schedule(count):
            return lr * (1.0 - jnp.minimum(count, total) / float(total)) ** power
        return _scales(_schedule(schedule, "PolynomialLR", lr), ratio)
    table = [lr]  # torch: unchanged at last_epoch == 0
    for k in range(1, total + 1):
        table.append(table[-1] * ((1.0 - k / total) / (1.0 - (k - 1) / total)) ** power)
    return _scales(_schedule(_lookup(table), "PolynomialLR", lr), ratio)


def MultiplicativeLR(lr, lr_lambda: Callable):
    """torch's MultiplicativeLR: lr * lr_lambda(1) * ... * lr_lambda(k).

    The product is taken in torch's order, one factor per step, so each evaluation at count k
    costs k calls of lr_lambda (a `jax.lax.fori_loop`).

    Args:
      lr: the base learning rate.
      lr_lambda: a function of the step count i >= 1 (an integer array under `jax.jit`),
        written with operators or `jax.numpy`: ``lambda i: 0.95``.

    Examples:
      >>> schedule = MultiplicativeLR(1.0, lambda i: 1 / (i + 1))  # lr / (k + 1)!
      >>> [round(float(schedule(k)), 6) for k in range(4)]
      [1.0, 0.5, 0.166667, 0.041667]
    """
    lr = _checks.finite_float("lr", lr)
    if not callable(lr_lambda):
        raise InputError(f"lr_lambda must be a function of the step count, got {lr_lambda!r}")

    def schedule(count):
        def times(i, value):
            return default_float(value * lr_lambda(i))
        return jax.lax.fori_loop(jnp.ones_like(count), count + 1, times, default_float(lr))

    ratio = _scale_after(1.0, lambda count: lr_lambda(jnp.maximum(count, 1)))
    return _scales(_schedule(schedule, "MultiplicativeLR", lr), ratio)


def CosineAnnealingWarmRestarts(lr, T_0: int, T_mult: int = 1, eta_min=0.0):
    """torch's CosineAnnealingWarmRestarts (SGDR), stepped once per step.

    eta_min + (lr - eta_min) (1 + cos(pi T_cur / T_i)) / 2, where T_cur counts the steps since
    the last restart and T_i, the length of the current cycle, is T_0 * T_mult ** n in cycle n
    (cycle n starts at T_0 (T_mult ** n - 1) / (T_mult - 1)), as torch's stepwise counters are.
    Restart points are counted to 2 ** 31 steps.

    Examples:
      >>> schedule = CosineAnnealingWarmRestarts(0.1, T_0=2, T_mult=2)
      >>> [round(float(schedule(k)), 6) for k in range(7)]
      [0.1, 0.05, 0.1, 0.085355, 0.05, 0.014645, 0.1]
    """
    lr = _checks.finite_float("lr", lr)
    T_0 = _int("T_0", T_0, positive=True)
    T_mult = _int("T_mult", T_mult, positive=True)
    eta_min = _checks.finite_float("eta_min", eta_min)
    starts, periods = [0], [T_0]  # restart points below 2 ** 31 and the cycle lengths
    while T_mult > 1 and starts[-1] + periods[-1] < 2**31:
        starts.append(starts[-1] + periods[-1])
        periods.append(periods[-1] * T_mult)
    starts = jnp.asarray(starts, dtype=jnp.int32)  # (cycles,)
    periods = default_float(np.asarray(periods, dtype=np.float64))  # (cycles,)

    def schedule(count):
        n = jnp.sum(starts <= count) - 1  # () the current cycle
        t_cur = (count % T_0) if T_mult == 1 and T_0 < 2**31 else count - starts[n]
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * t_cur / periods[n])) / 2

    return _schedule(schedule, "CosineAnnealingWarmRestarts", lr)


def CyclicLR(base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular",
             gamma=1.0, scale_fn=None, scale_mode="cycle", cycle_momentum=True,
             base_momentum=0.8, max_momentum=0.9):  # torch's CyclicLR, keyword for keyword
    """torch's CyclicLR: the rate climbs from base_lr towards max_lr in step_size_up steps and
    falls back in step_size_down, the climb's height scaled by a policy.

    Modes: ``"triangular"`` (height 1), ``"triangular2"`` (halved each cycle), ``"exp_range"``
    (gamma ** k); or ``scale_fn``, a function of the cycle number (``scale_mode="cycle"``,
    cycles count from 1) or of the step count (``"iterations"``), written with operators or
    `jax.numpy`, which replaces ``mode``. A mode sets its own scale_mode, as torch's does.

    With ``cycle_momentum`` (the default) the momentum moves the other way, from max_momentum
    down towards base_momentum; the schedule carries it as ``.momentum`` and
    `functional_fit.optim`'s SGD, RMSprop and Adam family use it in place of their momentum or
    beta1, as with `OneCycleLR`.

    Args:
      base_lr, max_lr: the bounds of the cycle (base_lr takes the place of torch's optimizer).
      step_size_up: steps in the rising half (> 0); step_size_down: in the falling half
        (default: step_size_up).
      mode, gamma, scale_fn, scale_mode: the policy, see above.
      cycle_momentum, base_momentum, max_momentum: see above.

    Returns:
      A schedule, count -> lr, with a ``momentum`` schedule when cycle_momentum.

    Examples:
      >>> schedule = CyclicLR(0.1, 1.0, step_size_up=2, mode="triangular2")
      >>> [round(float(schedule(k)), 4) for k in range(7)], float(schedule.momentum(2))
      ([0.1, 0.55, 1.0, 0.55, 0.1, 0.325, 0.55], 0.8)
    """
    base_lr = _checks.finite_float("base_lr", base_lr)
    max_lr = _checks.finite_float("max_lr", max_lr)
    up = _checks.positive_float("step_size_up", step_size_up)
    down = up if step_size_down is None else _checks.positive_float("step_size_down",
                                                                    step_size_down)
    gamma = _checks.finite_float("gamma", gamma)
    if scale_fn is None:
        _checks.choice("mode", mode, ("triangular", "triangular2", "exp_range"))
        scale_mode = "iterations" if mode == "exp_range" else "cycle"
        scale_fn = {"triangular": lambda x: 1.0, "triangular2": lambda x: 1 / (2.0 ** (x - 1)),
                    "exp_range": lambda x: gamma**x}[mode]
    elif not callable(scale_fn):
        raise InputError(f"scale_fn must be None or a function, got {scale_fn!r}")
    _checks.choice("scale_mode", scale_mode, ("cycle", "iterations"))
    cycle_momentum = _checks.flag("cycle_momentum", cycle_momentum)
    base_m = _checks.finite_float("base_momentum", base_momentum)
    max_m = _checks.finite_float("max_momentum", max_momentum)
    total = up + down
    step_ratio = up / total

    def height(count):  # torch's scale_factor and scale_fn(...)
        count = jnp.asarray(count)
        cycle = jnp.floor(1 + count / total)
        x = 1.0 + count / total - cycle
        factor = jnp.where(x <= step_ratio, x / step_ratio, (x - 1) / (step_ratio - 1))
        scale = scale_fn(cycle.astype(count.dtype) if scale_mode == "cycle" else count)
        return factor, scale

    def lr_rule(count):
        factor, scale = height(count)
        return base_lr + (max_lr - base_lr) * factor * scale

    def momentum_rule(count):
        factor, scale = height(count)
        return max_m - (max_m - base_m) * factor * scale

    momentum = (_schedule(momentum_rule, "CyclicLR.momentum", None) if cycle_momentum
                else None)
    return _schedule(lr_rule, "CyclicLR", None, momentum)


#: Schedulers whose torch step sets the rate from their own base, whatever it was.
_SETS = ("LambdaLR", "OneCycleLR", "CyclicLR", "CosineAnnealingWarmRestarts")
#: How the others tell their torch step: ``ratio(k)`` (lr <- lr * ratio) or, for a step that
#: is not a product, ``torch_step(k, lr) -> lr`` (CosineAnnealingLR).
_STEPS = ("ratio", "torch_step")


def _torch_step(s: Callable) -> Callable:
    """(k, lr) -> lr after member `s` takes torch's step k."""
    if s.__name__ in _SETS:
        return lambda count, prev: default_float(s(count))
    if getattr(s, "ratio", None) is not None:
        return lambda count, prev: prev * s.ratio(count)
    return s.torch_step


def _scales_or_sets(s: Callable) -> bool:
    return s.__name__ in _SETS or getattr(s, "ratio", None) is not None


def _closed_chain(lr: float, members) -> Callable:
    """torch's recursion in closed form, for members that scale or set the rate: the last
    setter's rate times each later member's step ratio, or lr times every member's factor."""
    setters = [i for i, s in enumerate(members) if s.__name__ in _SETS]
    head = members[setters[-1]] if setters else None
    tail = members[setters[-1] + 1:] if setters else members

    def schedule(count):
        count = jnp.asarray(count)  # a Python int would divide by zero where torch's step is 1
        if head is not None:
            value = default_float(head(count))
            for s in tail:
                value = value * s.ratio(count)
            return value
        value = default_float(lr)
        for s in tail:  # lr * prod_i (s_i(k) / lr): each one's factors multiplied up to k
            value = value * (default_float(s(count)) / lr) if lr != 0 else value
        return value

    return schedule


def _recursion(lr: float, members) -> Callable:
    """torch's recursion itself, step by step from 0 to k: k steps of every member."""
    steps = [_torch_step(s) for s in members]

    def schedule(count):
        def one(k, value):
            for step in steps:
                value = default_float(step(k, value))
            return value
        return jax.lax.fori_loop(jnp.zeros_like(count), count + 1, one, default_float(lr))

    return schedule


def _chain_members(lr: float, schedulers) -> list:
    """`schedulers` flattened (a chained chain steps its members in turn), each checked."""
    if isinstance(schedulers, str | bytes) or not isinstance(schedulers, Sequence):
        raise InputError(f"schedulers must be a list of schedules, got {schedulers!r}")
    members = []
    for i, s in enumerate(schedulers):
        name = getattr(s, "__name__", None)
        _not_plateau(f"schedulers[{i}]", s)
        if not callable(s):
            raise InputError(f"schedulers[{i}] must be a schedule (count -> lr), got {s!r}")
        base = getattr(s, "base_lr", None)
        if base is not None and base != lr:
            raise InputError(f"schedulers[{i}] was made with lr={base:g}, but ChainedScheduler "
                             f"has lr={lr:g}; in torch they share the optimizer's")
        if getattr(s, "members", None) is not None:
            members += s.members
        elif name in _SETS or any(getattr(s, a, None) is not None for a in _STEPS):
            members.append(s)
        else:
            raise InputError(
                f"schedulers[{i}] ({name}) cannot be chained: ChainedScheduler takes this "
                "module's schedulers, not SequentialLR (torch restarts its schedulers at a "
                "milestone), per_epoch schedules or other functions")
    return members


def _check_bases(members) -> None:
    """torch's LambdaLR and CosineAnnealingWarmRestarts scale the group's initial_lr, which a
    OneCycleLR made before them sets to max_lr / div_factor, and a CyclicLR made first to its
    base_lr: refused, not silently different."""
    resets = None
    for i, s in enumerate(members):
        if s.__name__ == "OneCycleLR" or (i == 0 and s.__name__ == "CyclicLR"):
            resets = s.__name__
        elif resets and s.__name__ in ("LambdaLR", "CosineAnnealingWarmRestarts"):
            raise InputError(f"schedulers: torch's {s.__name__} after this {resets} would scale "
                             f"the initial_lr {resets} set, not lr; put another scheduler first")


def ChainedScheduler(lr, schedulers: Sequence[Callable]):
    """torch's ChainedScheduler: every scheduler stepped in turn on the same rate, each step.

    A scheduler that scales the rate (StepLR, ExponentialLR, LinearLR, ...) multiplies what the
    ones before it left; one that sets it (LambdaLR, OneCycleLR, CyclicLR,
    CosineAnnealingWarmRestarts) replaces it. So the rate at step k is lr times every scaling
    scheduler's own factor when none sets it, and otherwise the last setter's rate times the
    factor by which each scaling scheduler after it steps at k (its ratio from k - 1 to k), as
    torch's recursion makes it. CosineAnnealingLR's step is not a product (it shifts by
    eta_min, and past T_max it adds to the rate): a chain holding one runs torch's recursion
    itself, every member's step for 0 .. k (a `jax.lax.fori_loop`, k steps at count k). The
    momentum is the last cycling scheduler's. Schedulers are made in list order, as torch's
    are before they are chained; SequentialLR and `per_epoch` schedules are refused.

    Examples:
      >>> warm = ConstantLR(0.05, factor=0.1, total_iters=20)  # torch's docstring example
      >>> schedule = ChainedScheduler(0.05, [warm, ExponentialLR(0.05, gamma=0.9)])
      >>> [round(float(schedule(k)), 5) for k in (0, 1, 2, 19, 20, 21)]
      [0.005, 0.0045, 0.00405, 0.00068, 0.00608, 0.00547]

    Args:
      lr: the base learning rate; every scheduler in `schedulers` made with a base rate must
        have been made with it (in torch they share the optimizer's).
      schedulers: the schedules, in torch's order; a ChainedScheduler among them is unrolled.

    Returns:
      A schedule, count -> lr (with ``.momentum`` when a member cycles it).
    """
    lr = _checks.finite_float("lr", lr)
    members = _chain_members(lr, schedulers)
    if not members:
        raise InputError("schedulers must hold at least one schedule")
    _check_bases(members)
    schedule = (_closed_chain(lr, members) if all(_scales_or_sets(s) for s in members)
                else _recursion(lr, members))
    cycling = [s.momentum for s in members if getattr(s, "momentum", None) is not None]
    chained = _schedule(schedule, "ChainedScheduler", lr, cycling[-1] if cycling else None)
    chained.members = members
    return chained



# --------------------------------------------------------------------------- ReduceLROnPlateau


class ReduceLROnPlateauState(NamedTuple):
    """torch's ReduceLROnPlateau, attribute for attribute (its ``state_dict`` keys).

    ``lr`` is torch's ``optimizer.param_groups[0]["lr"]`` (and ``scheduler._last_lr[0]``): the
    rate the next step uses. torch's settings (factor, patience, ``min_lrs``, ...) are
    arguments of `ReduceLROnPlateau` here, not state.
    """

    lr: jax.Array  # shape=() float, the current learning rate
    best: jax.Array  # shape=() float, the best metric so far (inf in mode "min" at first)
    num_bad_epochs: jax.Array  # shape=() int32, metrics since the last improvement
    cooldown_counter: jax.Array  # shape=() int32, steps of cooldown left
    last_epoch: jax.Array  # shape=() int32, the number of metrics seen


class ReduceLROnPlateauEpochState(NamedTuple):
    """`ReduceLROnPlateau` stepped once per epoch (`per_epoch`): the epoch so far and torch's
    scheduler state, which changes at the epoch's end only."""

    step: jax.Array  # shape=() int32, steps taken in the current epoch
    loss_sum: jax.Array  # shape=() float, the sum of their losses (torch: ``epoch_loss +=``)
    plateau: ReduceLROnPlateauState


class _Plateau(optax.GradientTransformationExtraArgs):
    """A ReduceLROnPlateau transformation; ``per_epoch(t, s)`` calls ``t.epochs(s)``."""


def _not_plateau(name: str, s) -> None:
    if isinstance(s, optax.GradientTransformation):
        raise InputError(f"{name} is a transformation (ReduceLROnPlateau reads a metric), not a "
                         "schedule: chain it after the optimizer instead")


def _plateau_step(settings: dict, state: ReduceLROnPlateauState, value) -> ReduceLROnPlateauState:
    """torch's ``ReduceLROnPlateau.step(metrics)``, line for line, under `jax.jit`."""
    current = jnp.asarray(value).astype(state.best.dtype)  # torch: float(metrics)
    rel, threshold = settings["threshold_mode"] == "rel", settings["threshold"]
    if settings["mode"] == "min":  # torch's _is_better(a, best)
        better = current < (state.best * (1.0 - threshold) if rel else state.best - threshold)
    else:
        better = current > (state.best * (threshold + 1.0) if rel else state.best + threshold)
    best = jnp.where(better, current, state.best)
    bad = jnp.where(better, 0, state.num_bad_epochs + 1)
    cooling = state.cooldown_counter > 0  # torch's in_cooldown
    counter = jnp.where(cooling, state.cooldown_counter - 1, state.cooldown_counter)
    bad = jnp.where(cooling, 0, bad)  # bad epochs in cooldown are ignored
    reduce = bad > settings["patience"]
    new_lr = jnp.maximum(state.lr * settings["factor"], settings["min_lr"])  # torch's _reduce_lr
    lr = jnp.where(reduce & (state.lr - new_lr > settings["eps"]), new_lr, state.lr)
    counter = jnp.where(reduce, settings["cooldown"], counter).astype(jnp.int32)
    bad = jnp.where(reduce, 0, bad).astype(jnp.int32)
    return ReduceLROnPlateauState(lr, best, bad, counter, state.last_epoch + 1)


def _scaled(updates, state: ReduceLROnPlateauState, lr: float):
    """The optimizer's updates (made with `lr`) at the rate `state` holds: times lr_now / lr.

    Exactly 1 until the first reduction, so the updates are the optimizer's bit for bit.
    """
    ratio = state.lr / lr if lr != 0 else jnp.ones_like(state.lr)
    return jax.tree.map(lambda u: u * ratio.astype(u.dtype), updates)


def _metric(value):
    if value is None:
        raise InputError("value is missing: ReduceLROnPlateau's update reads the metric, "
                         "update(updates, state, params, value=loss), as fit.train passes it")
    return value


def _plateau_init(settings: dict, lr: float):
    def init_fn(params):
        del params
        mode_worse = math.inf if settings["mode"] == "min" else -math.inf
        zero = jnp.zeros((), jnp.int32)
        return ReduceLROnPlateauState(default_float(lr), default_float(mode_worse), zero, zero,
                                      zero)
    return init_fn


def _plateau_epochs(settings: dict, lr: float, steps_per_epoch: int):
    """`ReduceLROnPlateau` stepped on the mean loss of each epoch of `steps_per_epoch` steps."""
    plateau_init = _plateau_init(settings, lr)

    def init_fn(params):
        inner = plateau_init(params)
        return ReduceLROnPlateauEpochState(jnp.zeros((), jnp.int32), jnp.zeros_like(inner.best),
                                           inner)

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        value = jnp.asarray(_metric(value)).astype(state.loss_sum.dtype)
        loss_sum = state.loss_sum + value  # () in torch's order: epoch_loss += loss.item()
        step = state.step + 1
        end = step == steps_per_epoch
        stepped = _plateau_step(settings, state.plateau, loss_sum / steps_per_epoch)
        plateau = jax.tree.map(lambda a, b: jnp.where(end, a, b), stepped, state.plateau)
        new = ReduceLROnPlateauEpochState(jnp.where(end, 0, step).astype(jnp.int32),
                                          jnp.where(end, jnp.zeros_like(loss_sum), loss_sum),
                                          plateau)
        return _scaled(updates, state.plateau, lr), new

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _plateau_settings(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr,
                      eps) -> dict:  # torch's eight keywords, checked as torch checks them
    factor = _checks.finite_float("factor", factor)
    if factor >= 1.0:
        raise InputError(f"factor must be < 1.0 (torch: 'Factor should be < 1.0.'), got {factor}")
    if mode not in ("min", "max"):
        raise InputError(f"mode must be 'min' or 'max' (torch: 'mode {mode} is unknown!')")
    if threshold_mode not in ("rel", "abs"):
        raise InputError(f"threshold_mode must be 'rel' or 'abs' (torch: 'threshold mode "
                         f"{threshold_mode} is unknown!')")
    if isinstance(min_lr, list | tuple):
        raise InputError(
            "min_lr must be one number: for torch's list (one per param group) chain one "
            "ReduceLROnPlateau with its group's min_lr after each group's optimizer in "
            "optax.multi_transform")
    return {"mode": mode, "factor": factor, "patience": _int("patience", patience),
            "threshold": _checks.finite_float("threshold", threshold),
            "threshold_mode": threshold_mode, "cooldown": _int("cooldown", cooldown),
            "min_lr": _checks.finite_float("min_lr", min_lr),
            "eps": _checks.finite_float("eps", eps)}


def ReduceLROnPlateau(lr, mode="min", factor=0.1, patience=10, threshold=1e-4,
                      threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8
                      ) -> optax.GradientTransformationExtraArgs:  # torch's keywords, and lr
    """torch's ReduceLROnPlateau: the rate times `factor` after more than `patience` metrics
    without improvement; an optax transformation chained after the optimizer.

    torch reads a metric, so this is not a schedule of the step count but a transformation
    whose ``update`` takes the metric as ``value=`` (optax's convention, which
    `functional_fit.fit.train` follows: it passes each step's batch loss). Chain it after an
    optimizer made with the same `lr`:

        torch:  opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
                sched = ReduceLROnPlateau(opt, patience=5)
                ... opt.step(); sched.step(loss)          # once per optimizer step
        JAX:    optax.chain(AdamW(lr=1e-3), ReduceLROnPlateau(1e-3, patience=5))

    In torch's order: a step's updates use the rate as it stood before this step's metric
    (the optimizer's updates times state.lr / lr, exactly 1 until the first reduction), and
    the metric then sets the rate of the next step. Stepped once per epoch on the epoch's
    mean batch loss: ``per_epoch(ReduceLROnPlateau(...), steps_per_epoch)``.

    The rule, as torch's code has it: a metric is better than ``best`` when it is below
    best * (1 - threshold) (mode "min", threshold_mode "rel"), below best - threshold ("abs"),
    above best * (1 + threshold) or best + threshold (mode "max"); otherwise it is a bad
    epoch. During cooldown bad epochs are not counted. When more than `patience` are counted
    the rate becomes max(lr * factor, min_lr), unless that changes it by eps or less.
    Computed in JAX's default float (float64 in 64-bit mode, as torch's Python floats), the
    metric converted to it as torch's float(metrics) does.

    How it differs from ``optax.contrib.reduce_on_plateau``: optax applies the new scale to
    the same step's updates (torch: from the next step); it compares avg < (1 - rtol) best -
    atol, both tolerances at once, and only for minimising (torch: one of "rel" or "abs", and
    a mode "max"); it reduces after `patience` bad metrics (torch: after more than
    `patience`); its floor is a scale (min_scale; torch: an absolute min_lr) and it has no
    eps; its accumulation_size averages the values of several steps, which torch leaves to the
    user (here `per_epoch`).

    Where it differs from torch: an optimizer whose step is not proportional to its lr is
    scaled by the ratio here, where torch's changed lr changes its inner computation. Measured
    on a 40-step float64 regression with two or more reductions (the problem of
    tests/test_lr_scheduler_plateau.py): Rprop, whose lr is only its first step size
    (torch's reductions change nothing after step 1), 0.9 apart relative; ASGD (eta =
    lr / (1 + lambd lr t) ** alpha) 5e-2; Adafactor, proportional while lr < 1 / sqrt(step),
    3e-16; Adagrad with lr_decay 6e-17. Chain it after SGD, the Adam family, RMSprop,
    Adagrad, Adadelta (Adafactor at small lr); LBFGS, whose line search uses lr, is not
    proportional either. With a schedule as the optimizer's lr the reductions multiply it, as torch's chained schedulers
    do, but min_lr and eps compare the plateau's own rate (lr times its reductions), not the
    product. With param groups every group is scaled by the same ratio, which is torch's
    per-group rate while no group reaches min_lr or its eps floor. torch's list of min_lr,
    one per group, is refused: chain one ReduceLROnPlateau per group, each with its min_lr,
    in ``optax.multi_transform``, which passes ``value=`` on (tested against torch's
    test_reduce_lr_on_plateau8).

    Args:
      lr: the optimizer's base learning rate (a number).
      mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps: torch's, with
        its defaults; factor >= 1 and an unknown mode are refused, as torch refuses them;
        patience and cooldown are non-negative integers.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``init(params) ->
      ReduceLROnPlateauState``, ``update(updates, state, params=None, *, value)``, `value`
      the metric, a () array or number.

    Examples:
      >>> import jax.numpy as jnp
      >>> t = ReduceLROnPlateau(0.5, patience=1)
      >>> state = t.init(jnp.zeros(2))
      >>> for loss in (1.0, 1.0, 1.0):
      ...     _, state = t.update(jnp.ones(2), state, value=loss)
      >>> float(state.lr), int(state.num_bad_epochs)
      (0.05, 0)
    """
    lr = _checks.finite_float("lr", lr)
    settings = _plateau_settings(mode, factor, patience, threshold, threshold_mode, cooldown,
                                 min_lr, eps)

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        return _scaled(updates, state, lr), _plateau_step(settings, state, _metric(value))

    plateau = _Plateau(_plateau_init(settings, lr), update_fn)
    plateau.epochs = lambda steps_per_epoch: _plateau_epochs(settings, lr, steps_per_epoch)
    return plateau


SCHEDULERS = {f.__name__: f for f in (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR,
                                      LinearLR, ConstantLR, OneCycleLR, LambdaLR, SequentialLR,
                                      PolynomialLR, MultiplicativeLR, CosineAnnealingWarmRestarts,
                                      CyclicLR, ChainedScheduler)}

__all__ = [
    "SCHEDULERS",
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "ReduceLROnPlateauEpochState",
    "ReduceLROnPlateauState",
    "SequentialLR",
    "StepLR",
    "full_width",
    "per_epoch",
]
