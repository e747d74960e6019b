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
