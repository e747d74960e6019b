"""The hand-computed expectations of PyTorch's own scheduler tests, as one table.

PyTorch's ``test/optim/test_lrscheduler.py`` writes out, for most of its schedulers, the
learning rates (and momenta) it expects after 0, 1, 2, ... steps. They are copied here, each
under the name of the torch test it comes from (``[group 2]`` for that test's second param
group, whose base rate differs), for every scheduler of `functional_fit.optim.lr_scheduler`
but ReduceLROnPlateau and SWALR (tested elsewhere). Left out: torch's ``_with_epoch`` and
``closed_form`` tests (``scheduler.step(epoch)``, the same rates as the plain tests, or torch
against itself), and CosineAnnealingWarmRestarts ``lr2`` and ``lr3`` (fractional epochs passed
to ``step``, which a step count cannot express).

Each schedule is read through a real optax update, at the int32 count optax passes: the
learning rate as `optax.scale_by_learning_rate` (the last transform of every optimizer of
`functional_fit.optim`) applies it, and the momentum (OneCycleLR, CyclicLR) as
`optax.scale_by_learning_rate` applies it too. torch's tests compare with ``atol=1e-5,
rtol=0``; here also within `SCHEDULE_FLOAT64` of the table's largest value, but for the
`APPROXIMATE` tables, which are not what torch computes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import SCHEDULE_FLOAT64

#: torch's test_lrscheduler.py compares every expected rate with ``atol=1e-5, rtol=0``.
TORCH_TEST_ATOL = 1e-5
#: Tables that are not what torch computes, only within its atol: torch chains a
#: CosineAnnealingLR by its recursion, which parts from the closed form written in these tables
#: by up to 1.5e-9 of the base rate; here as torch computes it (equal to 3e-19 of it, measured).
APPROXIMATE = {"test_compound_cosanneal_and_step_lr", "test_compound_cosanneal_and_multistep_lr",
               "test_compound_cosanneal_and_linearlr", "test_compound_cosanneal_and_exp_lr"}


def _warm_restarts_targets(lr, T_mult, iters=100, eta_min=1e-10, T_i=10):
    """test_CosineAnnealingWarmRestarts_lr1's expectations, computed as that test does."""
    targets, T_cur = [lr], 0
    for _ in range(1, iters):
        T_cur += 1
        if T_cur >= T_i:
            T_cur, T_i = T_cur - T_i, T_mult * T_i
        targets.append(eta_min + (lr - eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2)
    return targets


def _cos(lr, x, epochs, eta_min=1e-10):
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * x / epochs)) / 2


def _poly(lr, power=0.9, total=5, epochs=10):
    return [(1.0 - x / total) ** power * lr for x in range(total)] + [0.0] * (epochs - total)


_XS = [0, 0.25, 0.5, 0.75, 1, 0.75, 0.50, 0.25, 0, 0.25, 0.5, 0.75, 1]
_XS_UP_DOWN = [0.0, 0.5, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0, 0.5, 1.0, 5 / 6, 4 / 6]
_TRIANGULAR = [1, 2, 3, 4, 5, 4, 3, 2, 1, 2, 3]
_TRIANGULAR_MOMENTUM = [5, 4, 3, 2, 1, 2, 3, 4, 5, 4, 3]
_TRIANGULAR2 = [1, 2, 3, 4, 5, 4, 3, 2, 1, 1.5, 2.0, 2.5, 3.0, 2.5, 2.0, 1.5, 1, 1.25, 1.50,
                1.75, 2.00, 1.75]
_TRIANGULAR2_UP_DOWN = [1.0, 3.0, 5.0, 13 / 3, 11 / 3, 9 / 3, 7 / 3, 5 / 3, 1.0, 2.0, 3.0,
                        8 / 3, 7 / 3, 6 / 3, 5 / 3, 4 / 3, 1.0, 3 / 2, 2.0, 11 / 6, 10 / 6,
                        9 / 6, 8 / 6, 7 / 6]
_TRIANGULAR2_UP_DOWN_MOMENTUM = [5.0, 3.0, 1.0, 5 / 3, 7 / 3, 3.0, 11 / 3, 13 / 3, 5.0, 4.0,
                                 3.0, 10 / 3, 11 / 3, 4.0, 13 / 3, 14 / 3, 5.0, 4.5, 4.0,
                                 25 / 6, 13 / 3, 4.5, 14 / 3, 29 / 6]


def _cyclic(**kw):
    return lambda: fls.CyclicLR(**dict(dict(base_lr=1, max_lr=5, step_size_up=4,
                                             base_momentum=1, max_momentum=5), **kw))


def _linear(lr, start, end, iters, epochs):
    """test_linearlr's and test_get_last_lr_linearlr's expectations."""
    return ([lr * (start + i * (end - start) / iters) for i in range(iters)]
            + [lr * end] * (epochs - iters))


def _annealing_cos(start, end, pct):
    """test_onecycle_lr_cosine_annealing's own cosine."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _onecycle(**kw):
    return lambda: fls.OneCycleLR(**dict(dict(max_lr=25, final_div_factor=2, base_momentum=1,
                                              max_momentum=22, total_steps=10), **kw))


_STEP = [0.05] * 3 + [0.005] * 3 + [0.0005] * 3 + [0.00005]
_MULTISTEP = [0.05] * 2 + [0.005] * 3 + [0.0005] * 4 + [0.00005]
_SEQUENTIAL3 = [0.005] * 3 + [0.05, 0.04, 0.032] + [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005]


def _sequential3(lr):
    return fls.SequentialLR(lr, [fls.ConstantLR(lr, factor=0.1, total_iters=3),
                                 fls.ExponentialLR(lr, gamma=0.8),
                                 fls.StepLR(lr, gamma=0.1, step_size=2)], milestones=[3, 6])


#: test name -> (JAX schedule, expected rates after k = 0, 1, ... steps, expected momenta)
TABLE = {
    "test_step_lr": (lambda: fls.StepLR(0.05, gamma=0.1, step_size=3), _STEP, None),
    "test_step_lr[group 2]": (lambda: fls.StepLR(0.5, gamma=0.1, step_size=3),
                              [x * 10 for x in _STEP], None),
    "test_get_last_lr_step_lr": (lambda: fls.StepLR(0.1, 3, gamma=0.1),
                                 [0.1] * 3 + [0.01] * 3 + [0.001] * 3 + [0.0001], None),
    "test_multi_step_lr": (lambda: fls.MultiStepLR(0.05, gamma=0.1, milestones=[2, 5, 9]),
                           _MULTISTEP, None),
    "test_get_last_lr_multi_step_lr[group 2]": (
        lambda: fls.MultiStepLR(0.5, gamma=0.1, milestones=[2, 5, 9]),
        [x * 10 for x in _MULTISTEP], None),
    "test_constantlr": (lambda: fls.ConstantLR(0.05, factor=1.0 / 2, total_iters=5),
                        [0.025] * 5 + [0.05] * 5, None),
    "test_get_last_lr_constantlr[group 2]": (
        lambda: fls.ConstantLR(0.5, factor=1.0 / 2, total_iters=5), [0.25] * 5 + [0.5] * 5,
        None),
    "test_linearlr": (lambda: fls.LinearLR(0.05, start_factor=1.0 / 2, total_iters=4),
                      _linear(0.05, 0.5, 1.0, 4, 10), None),
    "test_get_last_lr_linearlr": (
        lambda: fls.LinearLR(0.05, start_factor=1.0 / 4, end_factor=3.0 / 5, total_iters=4),
        _linear(0.05, 0.25, 0.6, 4, 10), None),
    "test_exp_lr": (lambda: fls.ExponentialLR(0.05, gamma=0.9),
                    [0.05 * 0.9**x for x in range(10)], None),
    "test_cos_anneal_lr": (lambda: fls.CosineAnnealingLR(0.05, T_max=10, eta_min=1e-10),
                           [_cos(0.05, x, 10) for x in range(10)], None),
    "test_cos_anneal_lr[group 2]": (lambda: fls.CosineAnnealingLR(0.5, T_max=10, eta_min=1e-10),
                                    [_cos(0.5, x, 10) for x in range(10)], None),
    "test_lambda_lr": (lambda: fls.LambdaLR(0.05, lambda x1: 0.9**x1),
                       [0.05 * 0.9**x for x in range(10)], None),
    "test_lambda_lr[group 2]": (lambda: fls.LambdaLR(0.4, lambda x2: 0.8**x2),
                                [0.4 * 0.8**x for x in range(10)], None),
    "test_sequentiallr1": (
        lambda: fls.SequentialLR(0.05, [fls.ExponentialLR(0.05, gamma=0.8),
                                        fls.StepLR(0.05, gamma=0.1, step_size=4)], [3]),
        [0.05, 0.04, 0.032] + [0.05] * 4 + [0.005] * 4 + [0.0005] * 4 + [0.00005] * 4, None),
    "test_sequentiallr2": (
        lambda: fls.SequentialLR(0.05, [fls.ConstantLR(0.05, factor=0.1, total_iters=3),
                                        fls.ExponentialLR(0.05, gamma=0.9)], [3]),
        [0.005] * 3 + [0.05 * 0.9**x for x in range(10)], None),
    "test_sequentiallr3": (lambda: _sequential3(0.05), _SEQUENTIAL3, None),
    "test_get_last_lr_sequentiallr[group 2]": (lambda: _sequential3(0.5),
                                               [x * 10 for x in _SEQUENTIAL3], None),
    "test_sequentiallr5": (
        lambda: fls.SequentialLR(0.05, [
            fls.ChainedScheduler(0.05, [fls.LinearLR(0.05, start_factor=0.1, total_iters=5),
                                        fls.ConstantLR(0.05, factor=0.1, total_iters=5)]),
            fls.ConstantLR(0.05, factor=0.5, total_iters=5)], [5]),
        [0.0005, 0.0014, 0.0023, 0.0032, 0.0041] + [0.025] * 5, None),
    "test_sequentiallr_does_not_alias_lr_and_initial_lr": (
        lambda: fls.SequentialLR(2.0, [fls.LinearLR(2.0, 0.1, 0.8, total_iters=4),
                                       fls.LinearLR(2.0, 0.8, 0.1, total_iters=4)], [4]),
        [0.2, 0.55, 0.9, 1.25, 1.6, 1.25, 0.9, 0.55], None),
    "test_onecycle_lr_linear_annealing": (
        _onecycle(anneal_strategy="linear"), [1, 13, 25, 21.5, 18, 14.5, 11, 7.5, 4, 0.5],
        [22, 11.5, 1, 4, 7, 10, 13, 16, 19, 22]),
    "test_onecycle_lr_linear_annealing_three_phases": (
        _onecycle(div_factor=25, anneal_strategy="linear", pct_start=0.4, final_div_factor=4,
                  three_phase=True), [1, 9, 17, 25, 17, 9, 1, 0.75, 0.5, 0.25],
        [22, 15, 8, 1, 8, 15, 22, 22, 22, 22]),
    "test_onecycle_lr_cosine_annealing": (
        _onecycle(), [1, 13, 25] + [_annealing_cos(25, 0.5, i / 7.0) for i in range(1, 7)]
        + [0.5], [22, 11.5, 1] + [_annealing_cos(1, 22, i / 7.0) for i in range(1, 7)] + [22]),
    "test_poly_lr": (lambda: fls.PolynomialLR(0.05, power=0.9, total_iters=5),
                     _poly(0.05), None),
    "test_poly_lr[group 2]": (lambda: fls.PolynomialLR(0.5, power=0.9, total_iters=5),
                              _poly(0.5), None),
    "test_multiplicative_lr": (lambda: fls.MultiplicativeLR(0.05, lambda i: 0.9),
                               [0.05 * 0.9**x for x in range(10)], None),
    "test_multiplicative_lr[group 2]": (lambda: fls.MultiplicativeLR(0.4, lambda i: 0.8),
                                        [0.4 * 0.8**x for x in range(10)], None),
    **{f"test_CosineAnnealingWarmRestarts_lr1[T_mult={m}, lr={lr}]": (
        lambda m=m, lr=lr: fls.CosineAnnealingWarmRestarts(lr, T_0=10, T_mult=m,
                                                           eta_min=1e-10),
        _warm_restarts_targets(lr, m), None) for m in (1, 2, 4) for lr in (0.05, 0.5)},
    "test_cycle_lr_triangular_mode_one_lr": (_cyclic(), _TRIANGULAR,
                                                     _TRIANGULAR_MOMENTUM),
    "test_cycle_lr_triangular_mode_one_lr_no_momentum": (_cyclic(cycle_momentum=False),
                                                         _TRIANGULAR, None),
    "test_cycle_lr_triangular2_mode_one_lr": (
        _cyclic(mode="triangular2"), _TRIANGULAR2, [6 - x for x in _TRIANGULAR2]),
    "test_cycle_lr_exp_range_mode_one_lr": (
        _cyclic(mode="exp_range", gamma=0.9), [1 + x * 4 * 0.9**i for i, x in enumerate(_XS)],
        [5 - x * 4 * 0.9**i for i, x in enumerate(_XS)]),
    "test_cycle_lr_triangular_mode[group 2]": (
        _cyclic(base_lr=2, max_lr=6, base_momentum=2, max_momentum=6),
        [x + 1 for x in _TRIANGULAR], [x + 1 for x in _TRIANGULAR_MOMENTUM]),
    "test_cycle_lr_triangular2_mode[group 2]": (
        _cyclic(base_lr=3, max_lr=7, base_momentum=3, max_momentum=7, mode="triangular2"),
        [x + 2 for x in _TRIANGULAR2], [8 - x for x in _TRIANGULAR2]),
    "test_cycle_lr_exp_range_mode[group 2]": (
        _cyclic(base_lr=5, max_lr=12, base_momentum=5, max_momentum=12, mode="exp_range",
                gamma=0.9), [5 + x * 7 * 0.9**i for i, x in enumerate(_XS)],
        [12 - x * 7 * 0.9**i for i, x in enumerate(_XS)]),
    "test_cycle_lr_triangular_mode_step_size_up_down": (
        _cyclic(step_size_down=6), [1.0, 2.0, 3.0, 4.0, 5.0, 13 / 3, 11 / 3, 9 / 3, 7 / 3,
                                    5 / 3, 1.0],
        [5.0, 4.0, 3.0, 2.0, 1.0, 5 / 3, 7 / 3, 3.0, 11 / 3, 13 / 3, 5.0]),
    "test_cycle_lr_triangular2_mode_step_size_up_down": (
        _cyclic(step_size_up=2, step_size_down=6, mode="triangular2"), _TRIANGULAR2_UP_DOWN,
        _TRIANGULAR2_UP_DOWN_MOMENTUM),
    "test_cycle_lr_triangular2_mode_step_size_up_down[group 2]": (
        _cyclic(step_size_up=2, step_size_down=6, mode="triangular2", base_lr=3, max_lr=7,
                base_momentum=3, max_momentum=7), [x + 2 for x in _TRIANGULAR2_UP_DOWN],
        [x + 2 for x in _TRIANGULAR2_UP_DOWN_MOMENTUM]),
    "test_cycle_lr_exp_range_mode_step_size_up_down": (
        _cyclic(step_size_up=2, step_size_down=6, mode="exp_range", gamma=0.9),
        [1 + x * 4 * 0.9**i for i, x in enumerate(_XS_UP_DOWN)],
        [5 - x * 4 * 0.9**i for i, x in enumerate(_XS_UP_DOWN)]),
    "test_chained_lr1": (
        lambda: fls.ChainedScheduler(0.05, [fls.StepLR(0.05, 3, gamma=0.1)]),
        [0.05] * 3 + [0.005] * 3 + [0.0005] * 3 + [0.00005], None),
    "test_chained_lr2": (
        lambda: fls.ChainedScheduler(0.05, [fls.LinearLR(0.05, start_factor=0.4,
                                                         total_iters=3)]),
        [0.02, 0.03, 0.04] + [0.05] * 7, None),
    "test_chained_lr3": (
        lambda: fls.ChainedScheduler(0.05, [fls.LinearLR(0.05, start_factor=0.4, total_iters=3),
                                            fls.MultiStepLR(0.05, [4, 8, 10], gamma=0.1)]),
        [0.02, 0.03, 0.04, 0.05] + [0.005] * 4 + [0.0005] * 2, None),
    "test_chained_lr4": (
        lambda: fls.ChainedScheduler(0.05, [fls.ExponentialLR(0.05, gamma=0.9),
                                            fls.ConstantLR(0.05, factor=0.2, total_iters=4),
                                            fls.StepLR(0.05, gamma=0.1, step_size=3)]),
        [0.05 * 0.2 * 0.9**x for x in range(3)] + [0.05 * 0.2 * 0.9**3 * 0.1]
        + [0.05 * 0.9**x * 0.1 for x in range(4, 6)]
        + [0.05 * 0.9**x * 0.01 for x in range(6, 9)], None),
    **{f"test_chained_lr5[lr={lr}]": (
        lambda lr=lr: fls.ChainedScheduler(lr, [fls.PolynomialLR(lr, power=0.9, total_iters=5),
                                                fls.ConstantLR(lr, factor=0.1)]),
        [x * 0.1 for x in _poly(lr)], None) for lr in (0.05, 0.5)},
    # torch's test_compound_* step several schedulers of one optimizer in turn: a chain.
    "test_compound_step_and_multistep_lr": (
        lambda: fls.ChainedScheduler(0.05, [fls.StepLR(0.05, gamma=0.1, step_size=3),
                                            fls.MultiStepLR(0.05, [2, 5, 9], gamma=0.1)]),
        [0.05] * 2 + [0.005] * 1 + [5e-4] * 2 + [5e-5] + [5e-6] * 3 + [5e-8], None),
    "test_compound_step_and_exp_lr": (
        lambda: fls.ChainedScheduler(0.05, [fls.StepLR(0.05, gamma=0.1, step_size=3),
                                            fls.ExponentialLR(0.05, gamma=0.9)]),
        [0.05 * 0.1 ** (x // 3) * 0.9**x for x in range(10)], None),
    "test_compound_exp_and_multistep_lr": (
        lambda: fls.ChainedScheduler(0.05, [fls.MultiStepLR(0.05, [2, 5, 9], gamma=0.1),
                                            fls.ExponentialLR(0.05, gamma=0.9)]),
        [0.05 * (0.9**x) for x in range(2)] + [0.005 * (0.9**x) for x in range(2, 5)]
        + [0.0005 * (0.9**x) for x in range(5, 9)] + [0.00005 * 0.9**9], None),
    "test_compound_exp_and_linearlr": (
        lambda: fls.ChainedScheduler(0.05, [fls.LinearLR(0.05, start_factor=0.4,
                                                         end_factor=0.9, total_iters=4),
                                            fls.ExponentialLR(0.05, gamma=0.9)]),
        [0.05 * 0.9**i * (0.4 + i / 4 * 0.5 if i < 4 else 0.9) for i in range(10)], None),
    "test_compound_step_and_constantlr": (
        lambda: fls.ChainedScheduler(0.05, [fls.StepLR(0.05, gamma=0.1, step_size=3),
                                            fls.ConstantLR(0.05, factor=0.4, total_iters=4)]),
        [0.05 * 0.4] * 3 + [0.005 * 0.4] + [0.005] * 2 + [0.0005] * 3 + [0.00005], None),
    "test_compound_linearlr_and_multistep_lr": (
        lambda: fls.ChainedScheduler(0.05, [fls.MultiStepLR(0.05, [2, 5, 9], gamma=0.1),
                                            fls.LinearLR(0.05, start_factor=0.4,
                                                         total_iters=4)]),
        [r * (0.4 + i / 4 * 0.6 if i < 4 else 1)
         for i, r in enumerate([0.05] * 2 + [0.005] * 3 + [0.0005] * 4 + [0.00005])], None),
    "test_compound_cosanneal_and_step_lr": (
        lambda: fls.ChainedScheduler(0.05, [fls.CosineAnnealingLR(0.05, 10, eta_min=1e-10),
                                            fls.StepLR(0.05, gamma=0.1, step_size=3)]),
        [_cos(0.05, x, 10) * 0.1 ** (x // 3) for x in range(10)], None),
    "test_compound_cosanneal_and_multistep_lr": (
        lambda: fls.ChainedScheduler(0.05, [fls.CosineAnnealingLR(0.05, 10, eta_min=1e-10),
                                            fls.MultiStepLR(0.05, [2, 5, 9], gamma=0.1)]),
        [_cos(0.05, x, 10) * m
         for x, m in enumerate([1] * 2 + [0.1] * 3 + [0.01] * 4 + [0.001])], None),
    "test_compound_cosanneal_and_linearlr": (
        lambda: fls.ChainedScheduler(0.05, [fls.LinearLR(0.05, start_factor=0.4,
                                                         total_iters=4),
                                            fls.CosineAnnealingLR(0.05, 10, eta_min=1e-10)]),
        [_cos(0.05, x, 10) * (0.4 + x / 4 * 0.6 if x < 4 else 1) for x in range(10)], None),
    "test_compound_cosanneal_and_exp_lr": (
        lambda: fls.ChainedScheduler(0.05, [fls.CosineAnnealingLR(0.05, 10, eta_min=1e-10),
                                            fls.ExponentialLR(0.05, gamma=0.1)]),
        [_cos(0.05, x, 10) * 0.1**x for x in range(10)], None),
}


def through_optax(schedule, steps: int) -> tuple[np.ndarray, np.dtype]:
    """(steps,) values of `schedule` as optax applies them on steps 1 .. steps, and the dtype
    of the count optax passed: the updates of a gradient of ones by
    `optax.scale_by_learning_rate` (every optimizer's last transform here), whose state counts
    in int32."""
    tx = optax.scale_by_learning_rate(schedule, flip_sign=False)
    ones = jnp.ones(1)

    def step(state, _):
        updates, state = tx.update(ones, state)
        return state, updates[0]

    state, values = jax.jit(lambda s: jax.lax.scan(step, s, length=steps))(tx.init(ones))
    return np.asarray(values), state.count.dtype


@pytest.mark.parametrize("name", list(TABLE))
def test_torch_test_suite_expectations(name):
    make, lrs, momenta = TABLE[name]
    schedule = make()
    for expected, of in ((lrs, schedule), (momenta, getattr(schedule, "momentum", None))):
        if expected is None:
            assert of is None  # no momentum cycled: none given to the optimizer
            continue
        values, count = through_optax(of, len(expected))
        assert count == jnp.int32
        np.testing.assert_allclose(values, expected, rtol=0, atol=TORCH_TEST_ATOL)
        if name not in APPROXIMATE:  # and within rounding of the table's largest value
            scale = max(map(abs, expected))
            np.testing.assert_allclose(values, expected, rtol=0, atol=SCHEDULE_FLOAT64 * scale)


def test_every_scheduler_has_a_table():
    """Every scheduler here but the two tested elsewhere (ReduceLROnPlateau, SWALR)."""
    covered = {make().__name__ for make, _, _ in TABLE.values()}
    assert covered == set(fls.SCHEDULERS) - {"ReduceLROnPlateau", "SWALR"}
    assert len(covered) == 14
