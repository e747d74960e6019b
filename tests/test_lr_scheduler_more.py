"""PolynomialLR, MultiplicativeLR, CosineAnnealingWarmRestarts, CyclicLR and ChainedScheduler
against torch.optim.lr_scheduler, value by value and along whole training paths.

Two references: torch 2.13's own schedulers, stepped as a training loop steps them
(``optimizer.step(); scheduler.step()``), float64, over enough steps to pass every phase; and
1,000-step optimizer paths against torch's, as in tests/test_optim.py. The hand-computed
expectations of PyTorch's ``test/optim/test_lrscheduler.py`` are tests/test_lr_scheduler_torch.py.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import (
    OPTIM_GROWTH_FLOAT64,
    OPTIM_STEPS,
    SCHEDULE_FLOAT64,
    TRAJECTORY_FLOAT64,
    rel_err,
)

from _paths import flat, growth
from test_lr_scheduler import check_schedule_values, jax_values, torch_values
from test_optim import Case, run, sched

#: Schedules computed by torch's own recursion (a table, or its product in its order).
EXACT = ("PolynomialLR", "MultiplicativeLR")


def chained(*makers):
    """torch's ChainedScheduler of schedulers made, in order, on one optimizer."""
    return lambda o: tls.ChainedScheduler([make(o) for make in makers])


# id -> (JAX schedule, torch scheduler on an optimizer, optimizer lr, K steps)
CASES = {
    "poly_default": (lambda: fls.PolynomialLR(0.1), lambda o: tls.PolynomialLR(o), 0.1, 10),
    "poly_square_150": (lambda: fls.PolynomialLR(0.1, total_iters=150, power=2.0),
                        lambda o: tls.PolynomialLR(o, total_iters=150, power=2.0), 0.1, 200),
    "poly_root": (lambda: fls.PolynomialLR(0.05, total_iters=7, power=0.5),
                  lambda o: tls.PolynomialLR(o, total_iters=7, power=0.5), 0.05, 12),
    "poly_zero_iters": (lambda: fls.PolynomialLR(0.3, total_iters=0),
                        lambda o: tls.PolynomialLR(o, total_iters=0), 0.3, 5),
    "multiplicative_constant": (lambda: fls.MultiplicativeLR(0.1, lambda i: 0.95),
                                lambda o: tls.MultiplicativeLR(o, lambda i: 0.95), 0.1, 300),
    "multiplicative_of_step": (
        lambda: fls.MultiplicativeLR(0.5, lambda i: 1 - 0.3 / (i + 2)),
        lambda o: tls.MultiplicativeLR(o, lambda i: 1 - 0.3 / (i + 2)), 0.5, 100),
    "warm_restarts": (lambda: fls.CosineAnnealingWarmRestarts(0.1, T_0=10, eta_min=1e-3),
                      lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=10, eta_min=1e-3),
                      0.1, 100),
    "warm_restarts_double": (lambda: fls.CosineAnnealingWarmRestarts(0.1, T_0=5, T_mult=2),
                             lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2),
                             0.1, 400),
    "warm_restarts_triple_from_one": (
        lambda: fls.CosineAnnealingWarmRestarts(2.0, T_0=1, T_mult=3, eta_min=0.5),
        lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=3, eta_min=0.5), 2.0, 400),
    "cyclic_triangular": (lambda: fls.CyclicLR(0.01, 0.1, step_size_up=10),
                          lambda o: tls.CyclicLR(o, 0.01, 0.1, step_size_up=10), 0.01, 100),
    "cyclic_triangular2_up_down": (
        lambda: fls.CyclicLR(0.001, 0.1, step_size_up=3, step_size_down=8, mode="triangular2",
                             base_momentum=0.7, max_momentum=0.95),
        lambda o: tls.CyclicLR(o, 0.001, 0.1, step_size_up=3, step_size_down=8,
                               mode="triangular2", base_momentum=0.7, max_momentum=0.95),
        0.001, 100),
    "cyclic_exp_range": (
        lambda: fls.CyclicLR(0.01, 0.2, step_size_up=7, mode="exp_range", gamma=0.99),
        lambda o: tls.CyclicLR(o, 0.01, 0.2, step_size_up=7, mode="exp_range", gamma=0.99),
        0.01, 200),
    "cyclic_float_steps": (
        lambda: fls.CyclicLR(0.01, 0.1, step_size_up=2.5, step_size_down=3.5),
        lambda o: tls.CyclicLR(o, 0.01, 0.1, step_size_up=2.5, step_size_down=3.5), 0.01, 40),
    "cyclic_scale_fn_cycle": (
        lambda: fls.CyclicLR(0.01, 0.1, 4, scale_fn=lambda c: 1 / c, mode="ignored"),
        lambda o: tls.CyclicLR(o, 0.01, 0.1, 4, scale_fn=lambda c: 1 / c, mode="ignored"),
        0.01, 60),
    "cyclic_scale_fn_iterations_no_momentum": (
        lambda: fls.CyclicLR(0.02, 0.1, 5, scale_fn=lambda k: 1 / (1 + k / 50),
                             scale_mode="iterations", cycle_momentum=False),
        lambda o: tls.CyclicLR(o, 0.02, 0.1, 5, scale_fn=lambda k: 1 / (1 + k / 50),
                               scale_mode="iterations", cycle_momentum=False), 0.02, 60),
    "chained_docstring": (
        lambda: fls.ChainedScheduler(0.05, [fls.ConstantLR(0.05, factor=0.1, total_iters=20),
                                            fls.ExponentialLR(0.05, gamma=0.9)]),
        chained(lambda o: tls.ConstantLR(o, factor=0.1, total_iters=20),
                lambda o: tls.ExponentialLR(o, gamma=0.9)), 0.05, 100),
    "chained_linear_multistep_poly": (
        lambda: fls.ChainedScheduler(0.1, [fls.LinearLR(0.1, start_factor=0.4, total_iters=3),
                                           fls.MultiStepLR(0.1, [4, 8, 8, 10], gamma=0.5),
                                           fls.PolynomialLR(0.1, total_iters=30, power=1.5)]),
        chained(lambda o: tls.LinearLR(o, start_factor=0.4, total_iters=3),
                lambda o: tls.MultiStepLR(o, [4, 8, 8, 10], gamma=0.5),
                lambda o: tls.PolynomialLR(o, total_iters=30, power=1.5)), 0.1, 40),
    "chained_step_multiplicative_nested": (
        lambda: fls.ChainedScheduler(0.2, [
            fls.StepLR(0.2, 3, gamma=0.5),
            fls.ChainedScheduler(0.2, [fls.MultiplicativeLR(0.2, lambda i: 0.99),
                                       fls.ConstantLR(0.2, factor=0.5, total_iters=6)])]),
        lambda o: tls.ChainedScheduler([
            tls.StepLR(o, 3, gamma=0.5),
            tls.ChainedScheduler([tls.MultiplicativeLR(o, lambda i: 0.99),
                                  tls.ConstantLR(o, factor=0.5, total_iters=6)])]), 0.2, 30),
    "chained_lambda_then_scaling": (
        lambda: fls.ChainedScheduler(0.1, [fls.ExponentialLR(0.1, 0.8),
                                           fls.LambdaLR(0.1, lambda i: 1 / (i + 1)),
                                           fls.LinearLR(0.1, start_factor=0.2, end_factor=0.0,
                                                        total_iters=5),
                                           fls.StepLR(0.1, 4, gamma=0.3)]),
        chained(lambda o: tls.ExponentialLR(o, 0.8),
                lambda o: tls.LambdaLR(o, lambda i: 1 / (i + 1)),
                lambda o: tls.LinearLR(o, start_factor=0.2, end_factor=0.0, total_iters=5),
                lambda o: tls.StepLR(o, 4, gamma=0.3)), 0.1, 20),
    "chained_cyclic_momentum_then_exponential": (
        lambda: fls.ChainedScheduler(0.01, [fls.ExponentialLR(0.01, 0.9),
                                            fls.CyclicLR(0.01, 0.1, step_size_up=5),
                                            fls.ExponentialLR(0.01, 0.95)]),
        chained(lambda o: tls.ExponentialLR(o, 0.9),
                lambda o: tls.CyclicLR(o, 0.01, 0.1, step_size_up=5),
                lambda o: tls.ExponentialLR(o, 0.95)), 0.01, 40),
    "chained_warm_restarts_constant": (
        lambda: fls.ChainedScheduler(0.1, [fls.CosineAnnealingWarmRestarts(0.1, 4, 2),
                                           fls.ConstantLR(0.1, factor=0.25, total_iters=9)]),
        chained(lambda o: tls.CosineAnnealingWarmRestarts(o, 4, 2),
                lambda o: tls.ConstantLR(o, factor=0.25, total_iters=9)), 0.1, 40),
    "chained_linear_cosine_past_tmax": (
        lambda: fls.ChainedScheduler(0.1, [fls.LinearLR(0.1, start_factor=0.1, total_iters=5),
                                           fls.CosineAnnealingLR(0.1, T_max=10, eta_min=1e-3)]),
        chained(lambda o: tls.LinearLR(o, start_factor=0.1, total_iters=5),
                lambda o: tls.CosineAnnealingLR(o, T_max=10, eta_min=1e-3)), 0.1, 45),
    "chained_cosine_exponential": (
        lambda: fls.ChainedScheduler(0.05, [fls.CosineAnnealingLR(0.05, T_max=20),
                                            fls.ExponentialLR(0.05, 0.97)]),
        chained(lambda o: tls.CosineAnnealingLR(o, T_max=20),
                lambda o: tls.ExponentialLR(o, 0.97)), 0.05, 60),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_values(name):
    check_schedule_values(*CASES[name], exact=EXACT)


def test_cyclic_cycles_adam_beta1_as_torch():
    schedule = fls.CyclicLR(1e-3, 1e-2, step_size_up=4, mode="triangular2")
    theirs = torch_values(lambda o: tls.CyclicLR(o, 1e-3, 1e-2, step_size_up=4,
                                                 mode="triangular2"),
                          1e-3, 40, optimizer=torch.optim.Adam, betas=(0.5, 0.999))
    assert rel_err(jax_values(schedule, 40), theirs[:, 0]) <= SCHEDULE_FLOAT64
    assert rel_err(jax_values(schedule.momentum, 40), theirs[:, 1]) <= SCHEDULE_FLOAT64
    assert theirs[0, 1] == 0.9  # torch overwrote the optimizer's beta1 = 0.5 at once


def test_per_epoch_cyclic_and_chain_step_once_per_epoch():
    for make_jax, make_torch in (
            (lambda: fls.CyclicLR(0.01, 0.1, step_size_up=3, mode="triangular2"),
             lambda o: tls.CyclicLR(o, 0.01, 0.1, step_size_up=3, mode="triangular2")),
            (CASES["chained_linear_cosine_past_tmax"][0],
             CASES["chained_linear_cosine_past_tmax"][1])):
        schedule = fls.per_epoch(make_jax(), steps_per_epoch=4)
        theirs = torch_values(make_torch, 0.1, 120, every=4, momentum=0.9)
        assert rel_err(jax_values(schedule, 120), theirs[:, 0]) <= SCHEDULE_FLOAT64
        if getattr(schedule, "momentum", None) is not None:
            assert rel_err(jax_values(schedule.momentum, 120), theirs[:, 1]) <= SCHEDULE_FLOAT64


@pytest.mark.parametrize("name", ["warm_restarts_double", "cyclic_triangular2_up_down",
                                  "chained_linear_cosine_past_tmax", "multiplicative_of_step"])
def test_int32_counts_give_the_same_rates(name):
    """optax passes an int32 count: no division of two integer arrays may round to float32
    (1e-8 relative); XLA may still order a float64 operation differently (an ulp or two)."""
    schedule = CASES[name][0]()
    counts = jnp.arange(61, dtype=jnp.int32)
    at_int32 = np.asarray(jax.vmap(schedule)(counts))
    assert at_int32.dtype == np.float64
    assert rel_err(at_int32, jax_values(schedule, 60)) <= SCHEDULE_FLOAT64


def test_python_int_counts_give_the_same_rates():
    """Called with a Python int (as in the docstrings), past PolynomialLR's and LinearLR's end,
    where torch's step divides by zero in its unused branch."""
    schedule = fls.ChainedScheduler(0.1, [fls.LambdaLR(0.1, lambda k: 1.0),
                                          fls.LinearLR(0.1, start_factor=0.5, total_iters=0),
                                          fls.PolynomialLR(0.1, total_iters=3)])
    theirs = torch_values(chained(lambda o: tls.LambdaLR(o, lambda k: 1.0),
                                  lambda o: tls.LinearLR(o, start_factor=0.5, total_iters=0),
                                  lambda o: tls.PolynomialLR(o, total_iters=3)), 0.1, 7)
    ours = np.array([float(schedule(k)) for k in range(8)])
    assert rel_err(ours, theirs[:, 0]) <= SCHEDULE_FLOAT64
    assert rel_err(jax_values(schedule, 7), theirs[:, 0]) <= SCHEDULE_FLOAT64
    assert ours[3] == theirs[3, 0] == 0.0  # one step: (1 - 3/3) / (1 - 2/3)


# --------------------------------------------------------------------------- training paths

PATHS = {
    "sgd_cyclic_triangular2_momentum": Case("SGD", dict(lr=0.01, momentum=0.9), "poly2",
                                            schedule=sched(
        lambda: fls.CyclicLR(0.01, 0.05, step_size_up=40, step_size_down=60,
                             mode="triangular2"),
        lambda o: tls.CyclicLR(o, 0.01, 0.05, step_size_up=40, step_size_down=60,
                               mode="triangular2"))),
    "adam_cyclic_exp_range_beta1": Case("Adam", dict(lr=1e-3), schedule=sched(
        lambda: fls.CyclicLR(1e-3, 1e-2, step_size_up=50, mode="exp_range", gamma=0.999),
        lambda o: tls.CyclicLR(o, 1e-3, 1e-2, step_size_up=50, mode="exp_range",
                               gamma=0.999))),
    "adamw_warm_restarts": Case("AdamW", dict(lr=1e-2), "poly2", batch_size=10,
                                schedule=sched(
        lambda: fls.CosineAnnealingWarmRestarts(1e-2, T_0=20, T_mult=2, eta_min=1e-4),
        lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=20, T_mult=2, eta_min=1e-4))),
    "sgd_polynomial": Case("SGD", dict(lr=0.05, momentum=0.5), "linear", schedule=sched(
        lambda: fls.PolynomialLR(0.05, total_iters=600, power=2.0),
        lambda o: tls.PolynomialLR(o, total_iters=600, power=2.0))),
    "rmsprop_multiplicative": Case("RMSprop", dict(lr=2e-3), "poly2", schedule=sched(
        lambda: fls.MultiplicativeLR(2e-3, lambda i: 0.999),
        lambda o: tls.MultiplicativeLR(o, lambda i: 0.999))),
    "sgd_chained_warmup_cosine": Case("SGD", dict(lr=0.05, momentum=0.9), "poly2",
                                      schedule=sched(
        lambda: fls.ChainedScheduler(0.05, [fls.LinearLR(0.05, start_factor=0.1,
                                                         total_iters=50),
                                            fls.CosineAnnealingLR(0.05, T_max=400)]),
        chained(lambda o: tls.LinearLR(o, start_factor=0.1, total_iters=50),
                lambda o: tls.CosineAnnealingLR(o, T_max=400)))),
}


@pytest.mark.parametrize("name", list(PATHS))
def test_paths_agree_float64(name):
    jpath, tpath = run(PATHS[name], "float64", OPTIM_STEPS)
    a, b = flat(jpath), flat(tpath)
    assert a.shape == b.shape and a.shape[0] >= OPTIM_STEPS + 1
    assert np.max(np.abs(b[-1] - b[0])) > 1e-3 * np.max(np.abs(b))  # the parameters moved
    g = growth(jpath, tpath)
    assert rel_err(a, b) <= TRAJECTORY_FLOAT64
    assert np.all(g <= OPTIM_GROWTH_FLOAT64 * np.maximum(np.arange(g.size), 1))


# --------------------------------------------------------------------------- names, refusals

NEW = ("PolynomialLR", "MultiplicativeLR", "CosineAnnealingWarmRestarts", "CyclicLR",
       "ChainedScheduler")


@pytest.mark.parametrize("name", NEW)
def test_named_as_torch(name):
    ours = list(inspect.signature(getattr(fls, name)).parameters)
    theirs = [p for p in inspect.signature(getattr(tls, name)).parameters
              if p not in ("optimizer", "last_epoch")]
    assert ours == (theirs if name == "CyclicLR" else ["lr", *theirs])
    assert fls.SCHEDULERS[name] is getattr(fls, name)
    defaults = {p.name: p.default
                for p in inspect.signature(getattr(fls, name)).parameters.values()}
    for p in inspect.signature(getattr(tls, name)).parameters.values():
        if p.name in defaults and p.default is not inspect.Parameter.empty:
            assert defaults[p.name] == p.default, p.name


def test_chained_setters_read_the_initial_lr_torch_reads():
    """Refused above: a setter after a first CyclicLR or any OneCycleLR. Torch's initial_lr
    is the optimizer's lr otherwise, and a LambdaLR after a later CyclicLR scales lr."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    tls.ChainedScheduler([tls.CyclicLR(opt, 0.01, 0.1, 5), tls.LambdaLR(opt, lambda k: 1.0)])
    assert opt.param_groups[0]["initial_lr"] == 0.01
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    tls.OneCycleLR(opt, 1.0, total_steps=10)
    assert opt.param_groups[0]["initial_lr"] == 1.0 / 25
    make_torch = chained(lambda o: tls.ExponentialLR(o, 0.9),
                         lambda o: tls.CyclicLR(o, 0.01, 0.1, 5),
                         lambda o: tls.LambdaLR(o, lambda k: 0.5 + 1 / (k + 1)))
    schedule = fls.ChainedScheduler(0.1, [fls.ExponentialLR(0.1, 0.9), fls.CyclicLR(0.01, 0.1, 5),
                                          fls.LambdaLR(0.1, lambda k: 0.5 + 1 / (k + 1))])
    theirs = torch_values(make_torch, 0.1, 30, momentum=0.9)
    assert rel_err(jax_values(schedule, 30), theirs[:, 0]) <= SCHEDULE_FLOAT64
    assert rel_err(jax_values(schedule.momentum, 30), theirs[:, 1]) <= SCHEDULE_FLOAT64


def test_torch_refuses_what_is_refused_here():
    opt = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match="momentum or beta1"):
        tls.CyclicLR(opt, 0.1, 1.0)
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for make in (lambda: tls.CyclicLR(sgd, 0.1, 1.0, mode="CATS"),
                 lambda: tls.CosineAnnealingWarmRestarts(sgd, T_0=0),
                 lambda: tls.CosineAnnealingWarmRestarts(sgd, T_0=2.0),
                 lambda: tls.CosineAnnealingWarmRestarts(sgd, 5, T_mult=0),
                 lambda: tls.ChainedScheduler([])):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(TypeError, match="lr_lambda should be a function"):
        tls.MultiplicativeLR(sgd, 0.95)
