"""How close JAX and torch must be, and how closeness is measured.

Relative error of a vector is max |a - b| / max |b|: measured against the vector's scale, not
element by element, so a coefficient that happens to be near zero does not blow it up.

Each tolerance is a named constant with where it comes from. The tests, the parity report
(``functional-fit parity``) and the sweeps all use these.
"""

from __future__ import annotations

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

#: Roundings per step in which the two frameworks may legitimately differ, for a batch of
#: B <= 500 points and degree p <= 12 (the domain of the property tests):
#: - each prediction sums p + 1 terms and computes x**k differently (torch ``pow`` vs XLA's
#:   repeated squaring): <= p + 2 roundings, relative to sum_k |w_k x^k|;
#: - the mean over the batch and the gradient's sum over it may be reduced in different orders
#:   (pairwise/blocked in both): <= ceil(log2 B) = 9 roundings, relative to the sum of |terms|.
#: (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., sections 3.1 and 4.2.)
ROUNDINGS_PER_STEP = 12 + 2 + 9

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
TRAJECTORY_FLOAT32 = MAX_STEPS_FLOAT32 * ROUNDINGS_PER_STEP * UNIT_ROUNDOFF["float32"]


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


# --------------------------------------------------------------------------- functional_fit.optim

#: Steps of the optimizer parity runs (tests/test_optim.py, scripts/atlas.py).
OPTIM_STEPS = 1000

#: float64 paths of functional_fit.optim against torch.optim (TRAJECTORY_FLOAT64 over the path)
#: may also part by at most this much per step: a linear envelope reaching TRAJECTORY_FLOAT64 at
#: OPTIM_STEPS. Rounding that a stable run does not amplify adds up to ~1e-16 per step
#: (measured: <= 7e-17 per step); a run whose differences grow geometrically (a chaotic stretch)
#: leaves the envelope within a few dozen steps of starting to grow, long before 1e-9.
OPTIM_GROWTH_FLOAT64 = TRAJECTORY_FLOAT64 / OPTIM_STEPS

#: Roundings of one optimizer update in which the two frameworks may differ, on top of the
#: gradient's ROUNDINGS_PER_STEP: the longest update (NAdam with weight decay) rounds 17 times
#: per element (moments 5, square root and eps 3, two quotients and their coefficients 5, decay
#: 2, lr 1, the step 1); 20 covers every optimizer of functional_fit.optim and the clip.
OPTIMIZER_ROUNDINGS = 20

#: float32 paths of functional_fit.optim against torch.optim, MAX_STEPS_FLOAT32 steps: the
#: argument of TRAJECTORY_FLOAT32 with ROUNDINGS_PER_STEP + OPTIMIZER_ROUNDINGS roundings per
#: step (the update is stable, so per-step differences add at most linearly):
#: 150 * 43 * 2^-24 = 3.8e-4. Measured (tests/test_optim.py): <= 2.2e-6.
OPTIM_TRAJECTORY_FLOAT32 = (
    MAX_STEPS_FLOAT32 * (ROUNDINGS_PER_STEP + OPTIMIZER_ROUNDINGS) * UNIT_ROUNDOFF["float32"]
)

#: Learning-rate schedules, float64, against torch's stepped schedulers, relative to the
#: schedule's largest value, for K <= OPTIM_STEPS steps and T_max <= SCHEDULE_MAX_T. torch
#: computes most rates from the previous one, each step rounding at most twice (a product, and
#: a sum in CosineAnnealingLR): <= 2K roundings against the closed form. CosineAnnealingLR adds
#: one more error: past T_max torch restarts its recursion from (lr - eta_min)(1 - cos(pi /
#: T_max)) / 2, whose factor ~ pi^2 / (2 T_max^2) carries an absolute error of u, a relative
#: error of 2 T_max^2 u / pi^2, into every later rate. Measured: 2,045 u with T_max = 100.
SCHEDULE_MAX_T = 100
SCHEDULE_FLOAT64 = (2 * OPTIM_STEPS + 2 * SCHEDULE_MAX_T**2 / np.pi**2) * UNIT_ROUNDOFF["float64"]
