"""How close JAX and torch must be, and how closeness is measured.

Relative error of a vector is max |a - b| / max |b|: measured against the vector's scale, not
element by element, so a coefficient that happens to be near zero does not blow it up.

Each tolerance is a named constant with where it comes from. The tests, the parity report
(``functional-fit parity``) and the sweeps all use these.
"""

from __future__ import annotations

import math

import numpy as np

#: The lecture's printed numbers, reproduced in lecture mode (float32 parameters). The printed
#: values carry 8 significant digits; float32 parameters carry ~7, and a different but equally
#: valid summation order moves the last float32 bit (2.4e-7 absolute on 3.48, 7e-8 relative).
LECTURE_PRINTED = 1e-6

#: Gradients, float64: the two frameworks sum the same n terms in possibly different orders;
#: each order is within n * eps ~ 100 * 1.1e-16 of the exact sum, relative to the scale.
GRAD_FLOAT64 = 1e-12
#: Gradients, float32: the same argument with eps = 6e-8, for n up to a few hundred.
GRAD_FLOAT32 = 1e-5

#: Whole trajectories, float64. Rounding differences of 1e-16 per step are amplified by the
#: steps that follow; measured on the lecture's degree-12 Adam fit (5,000 steps): 8e-12.
TRAJECTORY_FLOAT64 = 1e-9


#: Unit roundoff u of each dtype: one correctly rounded operation is within u relative.
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}

# --------------------------------------------------------------------------- the rounding model
# Two correct implementations of one step differ by the roundings in which their operations may
# differ (`step_roundings`), each at most u relative (`UNIT_ROUNDOFF`). Along a stable path
# (every update non-expansive) those differences add up at most linearly, so after T steps two
# paths are within T times a step's roundings times u (`accumulated`). (Higham, *Accuracy and
# Stability of Numerical Algorithms*, 2nd ed., sections 3.1 and 4.2.) Every bound below that is
# not a measurement comes from these two functions.

#: Roundings of one optimizer update in which the two frameworks may differ, on top of the
#: gradient's: the longest update (NAdam with weight decay) rounds 17 times per element
#: (moments 5, square root and eps 3, two quotients and their coefficients 5, decay 2, lr 1,
#: the step 1); 20 covers every optimizer of functional_fit.optim and the clip.
OPTIMIZER_ROUNDINGS = 20
#: Roundings of one layer of a network, forward and backward, beyond its sums: the elementwise
#: operations of a layer and its activation's derivative, and their transposes.
ROUNDINGS_PER_LAYER = 6


def step_roundings(batch: int, *, terms: int = 0, layers: int = 0, widest: int = 1,
                   optimizer: bool = False) -> int:
    """Roundings of one step in which two correct implementations may differ.

    Args:
      batch: B, the points of the step's batch: the mean over it and the gradient's sum may be
        reduced in different (pairwise or blocked) orders, ceil(log2 B) roundings.
      terms: roundings of each prediction beyond its sums: a degree-p polynomial sums p + 1
        terms and computes x**k differently (torch's ``pow``, XLA's repeated squaring): p + 2.
      layers: the network's layers, `ROUNDINGS_PER_LAYER` each.
      widest: the longest sum of a matrix product (the widest fan-in), ceil(log2) roundings.
      optimizer: add the update's `OPTIMIZER_ROUNDINGS`.
    """
    return (terms + layers * ROUNDINGS_PER_LAYER + math.ceil(math.log2(max(batch, 1)))
            + math.ceil(math.log2(max(widest, 1))) + (OPTIMIZER_ROUNDINGS if optimizer else 0))


def accumulated(dtype: str, steps: int, roundings: int, safety: float = 1.0) -> float:
    """How far two correct paths may part after `steps` stable steps of `roundings` each:
    ``safety * steps * roundings * u`` (u the unit roundoff of `dtype`), relative."""
    return safety * max(steps, 1) * roundings * UNIT_ROUNDOFF[dtype]


#: Roundings per step in which the two frameworks may legitimately differ, for a batch of
#: B <= 500 points and degree p <= 12 (the domain of the property tests): 14 + 9.
ROUNDINGS_PER_STEP = step_roundings(500, terms=12 + 2)

#: Whole trajectories, float32 (and the lecture mode, whose float32 parameters round every
#: update): per step the two frameworks may differ by ROUNDINGS_PER_STEP * u = 1.4e-6 relative.
#: Inside the parity domain every update is stable (non-expansive: GD/SGD on MSE with
#: lr <= 1 / sum_k max|x|^(2k); L1 and Adam move by at most lr per step and do not amplify a
#: difference until a residual changes sign), so differences add at most linearly:
#: after T steps, <= T * 1.4e-6. The property tests and ``functional-fit parity`` run at most
#: `MAX_STEPS_FLOAT32` = 150 steps, hence 150 * 23 * 2^-24 = 2.1e-4. Measured: <= 5e-7.
#: The same argument in float64 gives 5,000 * 23 * 2^-53 = 1.3e-11 for the lecture's longest
#: fit, consistent with the 8e-12 measured and below TRAJECTORY_FLOAT64.
MAX_STEPS_FLOAT32 = 150
TRAJECTORY_FLOAT32 = accumulated("float32", MAX_STEPS_FLOAT32, ROUNDINGS_PER_STEP)


def trajectory_tol(dtype: str) -> float:
    """The trajectory tolerance of a precision mode (``"float64"``, ``"float32"``, ``"lecture"``)."""
    return TRAJECTORY_FLOAT64 if dtype == "float64" else TRAJECTORY_FLOAT32


def grad_tol(dtype: str) -> float:
    """The gradient tolerance of a precision mode; the lecture mode's gradients are float32."""
    return GRAD_FLOAT64 if dtype == "float64" else GRAD_FLOAT32


def rel_err(a, b) -> float:
    """max |a - b| / max |b| over all elements; a and b of the same shape.

    Returns 0 when both are all zeros, and inf when b is all zeros but a is not.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_err: shapes differ, {a.shape} vs {b.shape}")
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else float("inf")


# --------------------------------------------------------------------------- one loss, two ways


def same_loss(got, want, xp=np, *, same_nonfinite: bool = False):
    """Whether losses `got` are the losses `want` computed another way, beyond doubt of
    rounding, elementwise: ``|got - want| <= sqrt(eps) |want| + 100 tiny``.

    Two correct ways of computing one loss (a streamed sum against a vmapped mean, a quadratic
    from moments against the brute-force MSE) agree to a few eps; a wrong way (a streamed
    "mean" of a loss that is not a mean of per-point terms, a quadratic of a model that is
    not linear) differs by far more than sqrt(eps). `surface` checks its layouts and its exact
    quadratic by this.

    Args:
      got, want: arrays of the same shape; `want`'s dtype sets eps and tiny.
      xp: ``numpy`` or ``jax.numpy`` (inside a compiled function).
      same_nonfinite: count an inf or nan found by both as agreement.
    """
    info = np.finfo(want.dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: nan, which is not close
        close = xp.abs(got - want) <= float(np.sqrt(info.eps)) * xp.abs(want) + 100 * float(info.tiny)
    if same_nonfinite:
        close = close | (got == want) | (xp.isnan(got) & xp.isnan(want))
    return close


# --------------------------------------------------------------------------- functional_fit.optim

#: Steps of the optimizer parity runs (tests/test_optim.py, scripts/atlas.py).
OPTIM_STEPS = 1000

#: float64 paths of functional_fit.optim against torch.optim (TRAJECTORY_FLOAT64 over the path)
#: may also part by at most this much per step: a linear envelope reaching TRAJECTORY_FLOAT64 at
#: OPTIM_STEPS. Rounding that a stable run does not amplify adds up to ~1e-16 per step
#: (measured: <= 7e-17 per step); a run whose differences grow geometrically (a chaotic stretch)
#: leaves the envelope within a few dozen steps of starting to grow, long before 1e-9.
OPTIM_GROWTH_FLOAT64 = TRAJECTORY_FLOAT64 / OPTIM_STEPS

#: float32 paths of functional_fit.optim against torch.optim, MAX_STEPS_FLOAT32 steps: the
#: argument of TRAJECTORY_FLOAT32 with ROUNDINGS_PER_STEP + OPTIMIZER_ROUNDINGS roundings per
#: step (the update is stable, so per-step differences add at most linearly):
#: 150 * 43 * 2^-24 = 3.8e-4. Measured (tests/test_optim.py): <= 2.2e-6.
OPTIM_TRAJECTORY_FLOAT32 = accumulated("float32", MAX_STEPS_FLOAT32,
                                       step_roundings(500, terms=12 + 2, optimizer=True))

#: Learning-rate schedules, float64, against torch's stepped schedulers, relative to the
#: schedule's largest value, for K <= OPTIM_STEPS steps and T_max <= SCHEDULE_MAX_T. torch
#: computes most rates from the previous one, each step rounding at most twice (a product, and
#: a sum in CosineAnnealingLR): <= 2K roundings against the closed form. CosineAnnealingLR adds
#: one more error: past T_max torch restarts its recursion from (lr - eta_min)(1 - cos(pi /
#: T_max)) / 2, whose factor ~ pi^2 / (2 T_max^2) carries an absolute error of u, a relative
#: error of 2 T_max^2 u / pi^2, into every later rate. Measured: 2,045 u with T_max = 100.
SCHEDULE_MAX_T = 100
SCHEDULE_FLOAT64 = (2 * OPTIM_STEPS + 2 * SCHEDULE_MAX_T**2 / np.pi**2) * UNIT_ROUNDOFF["float64"]
