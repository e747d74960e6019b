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
