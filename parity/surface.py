"""Loss surfaces the torch way (cells 12, 15 and 50): a loop, broadcasting, `torch.func.vmap`.

The same surfaces as `functional_fit.surface.loss_surface`, row j and column i the loss at
``plane.origin + a_values[i] * plane.u + b_values[j] * plane.v`` (by default the coordinate
plane of w[0] and w[1]), computed three ways a torch user would:

- `loss_surface_loop`: the lecture's loop, one model call and one ``.item()`` per grid point.
- `loss_surface` with ``method="broadcast"``: the model called on a (p+1, G, 1) block of
  parameters, so its arithmetic broadcasts to (G, n) predictions; the loss unreduced
  (``reduction="none"``), then a mean over the data. Blocks of grid points bound the memory.
- ``method="vmap"``: ``torch.func.vmap`` of the loss at one parameter vector over a block.

The planes (`functional_fit.surface.coords_plane`, `random_plane`, `pca_plane`) are plain
arrays and are shared with the JAX side rather than drawn again here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import vmap

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from parity import losses as _losses
from parity.data import torch_dtype

#: Grid points per block: a (G, n) float64 block of predictions is 8 * G * n bytes (3 MB
#: for n = 100), small enough to stay in cache between torch's passes over it.
BLOCK_POINTS = 2**12
METHODS = ("broadcast", "vmap")

# The broadcasting form needs each loss unreduced: the per-point terms, (G, n) -> (G, n).
_UNREDUCED = {
    _losses.l1: lambda y_hat, y: F.l1_loss(y_hat, y, reduction="none"),
    _losses.mse: lambda y_hat, y: F.mse_loss(y_hat, y, reduction="none"),
}


def _plane(base, coords, plane, dtype):
    """(origin, u, v) as (p+1,) tensors of `dtype`."""
    if plane is not None:
        return tuple(torch.as_tensor(np.array(t), dtype=dtype) for t in plane)  # copies: writable
    i, j = coords
    base = np.zeros(max(i, j) + 1) if base is None else np.array(base)
    origin = torch.as_tensor(base, dtype=dtype).clone()
    origin[[i, j]] = 0
    eye = torch.eye(origin.shape[0], dtype=dtype)  # (p+1, p+1)
    return origin, eye[i], eye[j]


def _inputs(x, y, a_values, b_values, dtype):
    x, y = _checks.data(x, y)
    a = _checks.vector("a_values", a_values)
    b = _checks.vector("b_values", b_values)
    dt = torch_dtype(dtype)
    return (*(torch.as_tensor(np.array(v), dtype=dt) for v in (x, y, a, b)), dt)


def loss_surface_loop(model, loss, x, y, a_values, b_values, *, base=None, coords=(0, 1),
                      plane=None, dtype: str = "float64") -> np.ndarray:
    """The lecture's loop: ``loss(model(w, tx), ty).item()`` for every w of the meshgrid.

    Args:
      model: ``model(w, x)`` of `parity.models` (w (p+1,)), or any function of that form.
      loss: ``loss(y_hat, y) -> ()`` (``F.l1_loss``, `parity.losses.l1`, ...).
      x, y: (n,) data; a_values (na,), b_values (nb,): the grid; base, coords, plane: as in
        `functional_fit.surface.loss_surface`.
      dtype: ``"float64"`` or ``"float32"``, for data and parameters.

    Returns:
      (nb, na) numpy array.
    """
    tx, ty, ta, tb, dt = _inputs(x, y, a_values, b_values, dtype)
    origin, u, v = _plane(base, coords, plane, dt)
    (uu, vv) = np.meshgrid(ta.numpy(), tb.numpy())  # (nb, na) each, as cell 50 makes them
    ws = np.vstack((uu.flatten(), vv.flatten())).transpose()  # (nb * na, 2)
    with torch.no_grad():
        values = np.array([
            loss(model(origin + float(a) * u + float(b) * v, tx), ty).item() for a, b in ws
        ])
    return values.reshape(uu.shape)


def loss_surface(model, loss, x, y, a_values, b_values, *, base=None, coords=(0, 1), plane=None,
                 method: str = "broadcast", dtype: str = "float64",
                 block: int = BLOCK_POINTS) -> np.ndarray:
    """The surface by broadcasting (``method="broadcast"``) or ``torch.func.vmap``, in blocks.

    Args:
      model, loss, x, y, a_values, b_values, base, coords, plane, dtype: as in
        `loss_surface_loop`. ``"broadcast"`` needs `parity.losses.l1` or `parity.losses.mse`
        (it calls their unreduced forms) and a model written with elementwise arithmetic on
        w[i], as the lecture's models are.
      method: ``"broadcast"`` or ``"vmap"``.
      block: grid points per block.

    Returns:
      (nb, na) numpy array.
    """
    method = _checks.choice("method", method, METHODS)
    block = _checks.positive_int("block", block)
    if method == "broadcast" and loss not in _UNREDUCED:
        raise InputError(
            "loss: method='broadcast' needs parity.losses.l1 or mse; use method='vmap'"
        )
    tx, ty, ta, tb, dt = _inputs(x, y, a_values, b_values, dtype)
    origin, u, v = _plane(base, coords, plane, dt)
    na, nb = ta.shape[0], tb.shape[0]
    out = torch.empty(nb * na, dtype=dt)
    at = lambda w: loss(model(w, tx), ty)  # noqa: E731  (p+1,) -> ()
    with torch.no_grad():
        for start in range(0, nb * na, block):
            q = torch.arange(start, min(start + block, nb * na))  # (G,) point numbers, row-major
            a, b = ta[q % na], tb[q // na]  # (G,)
            w = origin[:, None] + u[:, None] * a + v[:, None] * b  # (p+1, G)
            if method == "vmap":
                out[q] = vmap(at, in_dims=1)(w)  # (G,)
            else:
                y_hat = model(w[:, :, None], tx)  # (p+1, G, 1) with (n,) -> (G, n)
                out[q] = _UNREDUCED[loss](y_hat, ty.expand_as(y_hat)).mean(dim=1)  # (G,)
    return out.reshape(nb, na).numpy()
