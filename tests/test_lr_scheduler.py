"""functional_fit.optim.lr_scheduler against torch.optim.lr_scheduler, value by value.

One table of schedules: the JAX schedule evaluated at k = 0 .. K against torch's
``optimizer.param_groups[0]["lr"]`` after k calls of ``scheduler.step()``, the recursive form
torch actually computes. `ConstantLR` and `LinearLR` reproduce torch's recursion and must
agree bit for bit; the others within `SCHEDULE_FLOAT64`. `OneCycleLR`'s momentum (or beta1)
against torch's ``param_groups[0]["momentum"]`` (``["betas"][0]``) too.
"""

from __future__ import annotations

import doctest
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

import functional_fit.optim as fo
from functional_fit import InputError
from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import SCHEDULE_FLOAT64, rel_err

from _paths import EveryKSteps

EXACT = ("ConstantLR", "LinearLR")

# id -> (JAX schedule, torch scheduler on an optimizer, base lr, K steps)
CASES = {
    "step": (lambda: fls.StepLR(0.1, step_size=7, gamma=0.5),
             lambda o: tls.StepLR(o, step_size=7, gamma=0.5), 0.1, 100),
    "step_default_gamma_every_step": (lambda: fls.StepLR(1.0, step_size=1, gamma=0.995),
                                      lambda o: tls.StepLR(o, 1, gamma=0.995), 1.0, 1000),
    "step_default_gamma": (lambda: fls.StepLR(0.3, 10), lambda o: tls.StepLR(o, 10), 0.3, 60),
    "multistep": (lambda: fls.MultiStepLR(0.1, [5, 10, 10, 30], gamma=0.3),
                  lambda o: tls.MultiStepLR(o, [5, 10, 10, 30], gamma=0.3), 0.1, 50),
    "multistep_zero_negative_unsorted": (lambda: fls.MultiStepLR(0.2, [12, -3, 0, 4]),
                                         lambda o: tls.MultiStepLR(o, [12, -3, 0, 4]), 0.2, 20),
    "exponential": (lambda: fls.ExponentialLR(0.1, gamma=0.99),
                    lambda o: tls.ExponentialLR(o, gamma=0.99), 0.1, 1000),
    "cosine_ten_half_periods": (lambda: fls.CosineAnnealingLR(0.1, T_max=100, eta_min=1e-3),
                                lambda o: tls.CosineAnnealingLR(o, T_max=100, eta_min=1e-3),
                                0.1, 1000),
    "cosine_short": (lambda: fls.CosineAnnealingLR(2.0, T_max=3),
                     lambda o: tls.CosineAnnealingLR(o, T_max=3), 2.0, 40),
    "linear_default": (lambda: fls.LinearLR(0.1), lambda o: tls.LinearLR(o), 0.1, 20),
    "linear_up": (lambda: fls.LinearLR(0.05, start_factor=0.1, end_factor=0.9, total_iters=50),
                  lambda o: tls.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=50),
                  0.05, 80),
    "linear_down_to_zero": (lambda: fls.LinearLR(1.0, start_factor=1.0, end_factor=0.0,
                                                 total_iters=20),
                            lambda o: tls.LinearLR(o, start_factor=1.0, end_factor=0.0,
                                                   total_iters=20), 1.0, 30),
    "linear_zero_iters": (lambda: fls.LinearLR(0.1, start_factor=0.5, total_iters=0),
                          lambda o: tls.LinearLR(o, start_factor=0.5, total_iters=0), 0.1, 5),
    "constant_default": (lambda: fls.ConstantLR(0.1), lambda o: tls.ConstantLR(o), 0.1, 10),
    "constant": (lambda: fls.ConstantLR(0.3, factor=0.7, total_iters=12),
                 lambda o: tls.ConstantLR(o, factor=0.7, total_iters=12), 0.3, 30),
    "constant_zero_iters": (lambda: fls.ConstantLR(0.3, factor=0.5, total_iters=0),
                            lambda o: tls.ConstantLR(o, factor=0.5, total_iters=0), 0.3, 5),
    "onecycle_default": (lambda: fls.OneCycleLR(0.1, total_steps=100),
                         lambda o: tls.OneCycleLR(o, 0.1, total_steps=100), None, 100),
    "onecycle_epochs_linear_three_phase": (
        lambda: fls.OneCycleLR(1.0, epochs=7, steps_per_epoch=13, pct_start=0.25,
                               anneal_strategy="linear", three_phase=True, div_factor=10.0,
                               final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9),
        lambda o: tls.OneCycleLR(o, 1.0, epochs=7, steps_per_epoch=13, pct_start=0.25,
                                 anneal_strategy="linear", three_phase=True, div_factor=10.0,
                                 final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9),
        None, 91),
    "onecycle_no_momentum": (lambda: fls.OneCycleLR(0.5, total_steps=30, cycle_momentum=False,
                                                    pct_start=0.5),
                             lambda o: tls.OneCycleLR(o, 0.5, total_steps=30, pct_start=0.5,
                                                      cycle_momentum=False), None, 30),
    "lambda": (lambda: fls.LambdaLR(0.1, lambda k: 0.95**k),
               lambda o: tls.LambdaLR(o, lambda k: 0.95**k), 0.1, 200),
    "lambda_lecture": (lambda: fls.LambdaLR(6.0, lambda i: 1 / (i + 1)),
                       lambda o: tls.LambdaLR(o, lambda i: 1 / (i + 1)), 6.0, 200),
    "sequential_warmup_cosine": (
        lambda: fls.SequentialLR(0.1, [fls.LinearLR(0.1, start_factor=0.1, total_iters=5),
                                       fls.CosineAnnealingLR(0.1, T_max=95)], [5]),
        lambda o: tls.SequentialLR(o, [tls.LinearLR(o, start_factor=0.1, total_iters=5),
                                       tls.CosineAnnealingLR(o, T_max=95)], [5]), 0.1, 150),
    "sequential_three": (
        lambda: fls.SequentialLR(0.2, [fls.ConstantLR(0.2, factor=0.5, total_iters=3),
                                       fls.ExponentialLR(0.2, gamma=0.9),
                                       fls.StepLR(0.2, step_size=4, gamma=0.5)], [6, 20]),
        lambda o: tls.SequentialLR(o, [tls.ConstantLR(o, factor=0.5, total_iters=3),
                                       tls.ExponentialLR(o, gamma=0.9),
                                       tls.StepLR(o, step_size=4, gamma=0.5)], [6, 20]),
        0.2, 40),
    "sequential_milestone_zero": (
        lambda: fls.SequentialLR(0.1, [fls.ExponentialLR(0.1, 0.5),
                                       fls.LinearLR(0.1, start_factor=0.5, total_iters=4)], [0]),
        lambda o: tls.SequentialLR(o, [tls.ExponentialLR(o, 0.5),
                                       tls.LinearLR(o, start_factor=0.5, total_iters=4)], [0]),
        0.1, 10),
}


def torch_values(make_scheduler, lr, steps, optimizer=torch.optim.SGD, every=1, **kwargs):
    """torch's lr (and momentum or beta1) after k = 0 .. steps calls of scheduler.step()."""
    opt = optimizer([torch.zeros(1, requires_grad=True)], lr=lr if lr is not None else 0.1,
                    **kwargs)
    scheduler = make_scheduler(opt)
    if every > 1:
        scheduler = EveryKSteps(scheduler, every)

    def read():
        group = opt.param_groups[0]
        return group["lr"], group["betas"][0] if "betas" in group else group["momentum"]

    values = [read()]
    for _ in range(steps):
        opt.step()  # no gradient: nothing moves, but torch sees the step before the scheduler's
        scheduler.step()
        values.append(read())
    return np.array(values)  # (steps+1, 2)


def jax_values(schedule, steps):
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(steps + 1)))  # (steps+1,)


def check_schedule_values(make_jax, make_torch, lr, steps, exact=()):
    """The schedule `make_jax()` against torch's scheduler `make_torch(opt)` on an SGD of `lr`
    with momentum 0.9, for `steps` steps: equal for the schedulers named in `exact`, else
    within SCHEDULE_FLOAT64; its momentum as torch's, or torch's left alone at 0.9."""
    schedule = make_jax()
    theirs = torch_values(make_torch, lr, steps, momentum=0.9)
    ours = jax_values(schedule, steps)
    assert ours.dtype == np.float64
    if schedule.__name__ in exact:
        np.testing.assert_array_equal(ours, theirs[:, 0])
    else:
        assert rel_err(ours, theirs[:, 0]) <= SCHEDULE_FLOAT64
    momentum = getattr(schedule, "momentum", None)
    if momentum is not None:
        assert rel_err(jax_values(momentum, steps), theirs[:, 1]) <= SCHEDULE_FLOAT64
    else:
        np.testing.assert_array_equal(theirs[:, 1], 0.9)  # torch left the momentum alone


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_values(name):
    check_schedule_values(*CASES[name], exact=EXACT)


def test_onecycle_cycles_adam_beta1_as_torch():
    schedule = fls.OneCycleLR(0.01, total_steps=50, base_momentum=0.8)
    theirs = torch_values(lambda o: tls.OneCycleLR(o, 0.01, total_steps=50, base_momentum=0.8),
                          None, 50, optimizer=torch.optim.Adam, betas=(0.5, 0.999))
    assert rel_err(jax_values(schedule, 50), theirs[:, 0]) <= SCHEDULE_FLOAT64
    assert rel_err(jax_values(schedule.momentum, 50), theirs[:, 1]) <= SCHEDULE_FLOAT64
    assert theirs[0, 1] == 0.95  # torch overwrote the optimizer's beta1 = 0.5 at once


def test_onecycle_past_total_steps_is_nan_where_torch_raises():
    schedule = fls.OneCycleLR(0.1, total_steps=10)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    scheduler = tls.OneCycleLR(opt, 0.1, total_steps=10)
    for _ in range(10):
        opt.step()
        scheduler.step()
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        opt.step()
        scheduler.step()
    values = jax_values(schedule, 11)
    assert np.all(np.isfinite(values[:11])) and np.isnan(values[11])


def test_per_epoch_is_torch_stepped_once_per_epoch():
    schedule = fls.per_epoch(fls.StepLR(0.1, step_size=3, gamma=0.5), steps_per_epoch=7)
    theirs = torch_values(lambda o: tls.StepLR(o, step_size=3, gamma=0.5), 0.1, 70, every=7)
    np.testing.assert_allclose(jax_values(schedule, 70), theirs[:, 0], rtol=1e-15)


def test_per_epoch_onecycle_steps_its_momentum_per_epoch_too():
    schedule = fls.per_epoch(fls.OneCycleLR(0.1, total_steps=10), steps_per_epoch=4)
    theirs = torch_values(lambda o: tls.OneCycleLR(o, 0.1, total_steps=10), None, 40, every=4)
    assert rel_err(jax_values(schedule.momentum, 40), theirs[:, 1]) <= SCHEDULE_FLOAT64


def test_every_scheduler_is_covered_and_named_as_torch():
    from test_lr_scheduler_more import CASES as MORE  # its table imports this module's helpers

    covered = {make_jax().__name__ for make_jax, *_ in (*CASES.values(), *MORE.values())}
    assert covered == set(fls.SCHEDULERS)
    for name, fn in fls.SCHEDULERS.items():
        ours = list(inspect.signature(fn).parameters)
        theirs = [p for p in inspect.signature(getattr(tls, name)).parameters
                  if p not in ("optimizer", "last_epoch")]
        no_lr = name in ("OneCycleLR", "CyclicLR")  # they take max_lr, base_lr in its place
        assert ours == (theirs if no_lr else ["lr", *theirs]), name


# --------------------------------------------------------------------------- refusals

BAD = {
    "step_size zero": (lambda: fls.StepLR(0.1, step_size=0), "step_size"),
    "T_max zero": (lambda: fls.CosineAnnealingLR(0.1, T_max=0), "T_max"),
    "start_factor zero": (lambda: fls.LinearLR(0.1, start_factor=0.0), "start_factor"),
    "end_factor above one": (lambda: fls.LinearLR(0.1, end_factor=1.5), "end_factor"),
    "total_iters negative": (lambda: fls.LinearLR(0.1, total_iters=-1), "total_iters"),
    "factor above one": (lambda: fls.ConstantLR(0.1, factor=2.0), "factor"),
    "factor zero": (lambda: fls.ConstantLR(0.1, factor=0.0), "factor"),
    "milestone not int": (lambda: fls.MultiStepLR(0.1, [1.5]), "milestones"),
    "lr_lambda not callable": (lambda: fls.LambdaLR(0.1, 0.5), "lr_lambda"),
    "onecycle no length": (lambda: fls.OneCycleLR(0.1), "total_steps"),
    "onecycle pct_start": (lambda: fls.OneCycleLR(0.1, total_steps=10, pct_start=1.5),
                           "pct_start"),
    "onecycle anneal": (lambda: fls.OneCycleLR(0.1, 10, anneal_strategy="exp"),
                        "anneal_strategy"),
    "onecycle empty phase": (lambda: fls.OneCycleLR(0.1, total_steps=10, pct_start=0.1),
                             "pct_start"),
    "onecycle cycle flag": (lambda: fls.OneCycleLR(0.1, 10, cycle_momentum="yes"),
                            "cycle_momentum"),
    "sequential milestones count": (lambda: fls.SequentialLR(0.1, [fls.StepLR(0.1, 2)], [3]),
                                    "milestones"),
    "sequential milestones order": (
        lambda: fls.SequentialLR(0.1, [fls.StepLR(0.1, 2)] * 3, [5, 3]), "milestones"),
    "sequential empty": (lambda: fls.SequentialLR(0.1, [], []), "schedulers"),
    "sequential other lr": (
        lambda: fls.SequentialLR(0.1, [fls.StepLR(0.2, 2), fls.StepLR(0.1, 2)], [3]),
        "schedulers[0]"),
    "sequential cycling onecycle": (
        lambda: fls.SequentialLR(0.1, [fls.StepLR(0.1, 2), fls.OneCycleLR(0.1, 10)], [3]),
        "cycle_momentum=False"),
    "per_epoch zero": (lambda: fls.per_epoch(fls.StepLR(0.1, 2), 0), "steps_per_epoch"),
    "onecycle on Adagrad": (lambda: fo.Adagrad(lr=fls.OneCycleLR(0.1, 10)), "Adagrad"),
    "onecycle on Adadelta": (lambda: fo.Adadelta(lr=fls.OneCycleLR(0.1, 10)), "Adadelta"),
    "poly negative iters": (lambda: fls.PolynomialLR(0.1, total_iters=-1), "total_iters"),
    "poly negative power": (lambda: fls.PolynomialLR(0.1, power=-1.0), "power"),
    "multiplicative not callable": (lambda: fls.MultiplicativeLR(0.1, 0.95), "lr_lambda"),
    "restarts T_0 zero": (lambda: fls.CosineAnnealingWarmRestarts(0.1, T_0=0), "T_0"),
    "restarts T_0 float": (lambda: fls.CosineAnnealingWarmRestarts(0.1, T_0=2.0), "T_0"),
    "restarts T_mult zero": (lambda: fls.CosineAnnealingWarmRestarts(0.1, 5, T_mult=0),
                             "T_mult"),
    "restarts eta_min": (lambda: fls.CosineAnnealingWarmRestarts(0.1, 5, eta_min="0"),
                         "eta_min"),
    "cyclic mode": (lambda: fls.CyclicLR(0.1, 1.0, mode="CATS"), "mode"),
    "cyclic scale_mode": (lambda: fls.CyclicLR(0.1, 1.0, scale_fn=lambda x: 1.0,
                                               scale_mode="epochs"), "scale_mode"),
    "cyclic scale_fn": (lambda: fls.CyclicLR(0.1, 1.0, scale_fn=0.5), "scale_fn"),
    "cyclic step up": (lambda: fls.CyclicLR(0.1, 1.0, step_size_up=0), "step_size_up"),
    "cyclic step down": (lambda: fls.CyclicLR(0.1, 1.0, step_size_down=-2), "step_size_down"),
    "cyclic max_lr": (lambda: fls.CyclicLR(0.1, math.nan), "max_lr"),
    "cyclic flag": (lambda: fls.CyclicLR(0.1, 1.0, cycle_momentum=1), "cycle_momentum"),
    "cyclic on Adagrad": (lambda: fo.Adagrad(lr=fls.CyclicLR(0.1, 1.0)), "CyclicLR"),
    "cyclic momentum in SequentialLR": (lambda: fls.SequentialLR(0.1, [
        fls.StepLR(0.1, 2), fls.CyclicLR(0.01, 0.1)], [3]), "CyclicLR"),
    "chained empty": (lambda: fls.ChainedScheduler(0.1, []), "schedulers"),
    "chained not a list": (lambda: fls.ChainedScheduler(0.1, fls.StepLR(0.1, 2)), "schedulers"),
    "chained other lr": (lambda: fls.ChainedScheduler(0.1, [fls.StepLR(0.2, 2)]),
                         "schedulers[0]"),
    "chained sequential": (lambda: fls.ChainedScheduler(0.1, [
        fls.SequentialLR(0.1, [fls.StepLR(0.1, 2)], [])]), "SequentialLR"),
    "chained per_epoch": (lambda: fls.ChainedScheduler(0.1, [
        fls.per_epoch(fls.StepLR(0.1, 2), 5)]), "per_epoch"),
    "chained plain function": (lambda: fls.ChainedScheduler(0.1, [lambda k: 0.1]),
                               "schedulers[0]"),
    "chained lambda after a first cyclic": (lambda: fls.ChainedScheduler(0.1, [
        fls.CyclicLR(0.01, 0.1), fls.LambdaLR(0.1, lambda k: 1.0)]), "initial_lr"),
    "chained restarts after onecycle": (lambda: fls.ChainedScheduler(0.1, [
        fls.StepLR(0.1, 3), fls.OneCycleLR(0.1, 10, cycle_momentum=False),
        fls.CosineAnnealingWarmRestarts(0.1, 4)]), "initial_lr"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_refusals_name_the_argument(name):
    call, word = BAD[name]
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert word in message and "\n" not in message


def test_onecycle_on_adagrad_is_refused_by_torch_too():
    opt = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match="momentum or beta1"):
        tls.OneCycleLR(opt, 0.1, total_steps=10)


def test_docstring_examples_run():
    results = doctest.testmod(fls)
    assert results.attempted >= 8 and results.failed == 0


def test_lecture_gd_and_sgd_through_lambdalr(lecture_xy):
    """The lecture's decaying steps are LambdaLR: GD per step, SGD per epoch.

    ``LambdaLR(1.0, lambda i: lr / (i + 1))`` divides as the lecture's loops do, and gives
    their paths bit for bit; torch's spelling ``LambdaLR(lr, lambda i: 1 / (i + 1))``
    multiplies lr by a rounded 1 / (i + 1), which moves an L1 path by up to 4e-9 here (a
    residual within rounding of 0 takes the other sign), far below the printed digits.
    """
    import functional_fit as ff
    from functional_fit import fit, losses, models
    from functional_fit.tolerances import LECTURE_PRINTED

    from _paths import jax_train

    x, y = lecture_xy
    lecture = np.asarray(fit.gradient_descent(ff.zeros(2), x, y, lr=6.0, steps=50).path)
    order = ff.batch_order(100, 5, seed=0)
    lecture_sgd = np.asarray(fit.stochastic_gradient_descent(
        ff.zeros(3), x, y, order, model=models.polynomial, lr=1.0, batch_size=10).path)
    for exact, gd_rate, sgd_rate in (
            (True, fls.LambdaLR(1.0, lambda i: 6.0 / (i + 1)),
             fls.LambdaLR(1.0, lambda e: 1.0 / (e + 1))),
            (False, fls.LambdaLR(6.0, lambda i: 1 / (i + 1)),
             fls.LambdaLR(1.0, lambda e: 1 / (e + 1)))):
        path = jax_train(ff.zeros(2), x, y, model=models.linear, loss=losses.l1,
                         optimizer=fo.SGD(lr=gd_rate), steps=50)
        sgd = fo.SGD(lr=fls.per_epoch(sgd_rate, math.ceil(100 / 10)))
        path_sgd = jax_train(ff.zeros(3), x, y, model=models.polynomial, loss=losses.l1,
                             optimizer=sgd, order=order, batch_size=10)
        if exact:
            np.testing.assert_array_equal(path, lecture)
            np.testing.assert_array_equal(path_sgd, lecture_sgd)
        else:
            assert rel_err(path, lecture) <= LECTURE_PRINTED
            assert rel_err(path_sgd, lecture_sgd) <= LECTURE_PRINTED
        assert [round(float(v), 4) for v in path[-1]] == [-0.2733, 3.4818]  # as printed
