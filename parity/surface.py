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
                      plane=None, dtype: str = "float64") -> np.ndarray:  # loss_surface's, mirrored
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
                 block: int = BLOCK_POINTS,
                 ) -> np.ndarray:  # functional_fit.surface.loss_surface's, mirrored
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
    return out.reshape(nb, na).cpu().numpy()


def module_surface(module, loss_fn, x, y, a_values, b_values, *, plane,
                   block: int = BLOCK_POINTS) -> np.ndarray:
    """The loss of an ``nn.Module`` over a plane of its parameters: `torch.func.vmap`.

    The twin of `functional_fit.surface.loss_surface` for a network: each block of grid
    points becomes a batch of parameter dicts, ``origin + a u + b v`` per ``state_dict``
    name, and ``torch.func.functional_call`` of the module is vmapped over them, so torch
    runs batched matrix products.

    Args:
      module: the ``nn.Module``; its own weights are not used, nor changed.
      loss_fn: ``loss_fn(y_hat, y) -> ()``.
      x, y: tensors or arrays the module and the loss take as they are (x (n, d), say).
      a_values: (na,) and b_values: (nb,) the grid, columns and rows.
      plane: a `functional_fit.surface.Plane` of dicts of ``state_dict`` names -> arrays,
        e.g. ``random_plane(parity.params.from_module(module))``.
      block: grid points per vmapped call; memory grows with it.

    Returns:
      (nb, na) numpy array, in the module's dtype. The work runs on the module's device (a
      module moved to a GPU computes there; x and y are moved to it).
    """
    from torch.func import functional_call

    block = _checks.positive_int("block", block)
    names = [k for k, _ in module.named_parameters()]
    dtype, device = next(module.parameters()).dtype, next(module.parameters()).device
    origin, u, v = ({k: torch.as_tensor(np.array(d[k]), dtype=dtype, device=device)
                     for k in names}
                    for d in plane)  # np.array: a writable copy of each (JAX's are read-only)
    tx, ty = ((torch.as_tensor(np.array(t)) if not isinstance(t, torch.Tensor) else t)
              .to(device) for t in (x, y))
    ta = torch.as_tensor(np.array(a_values), dtype=dtype, device=device)
    tb = torch.as_tensor(np.array(b_values), dtype=dtype, device=device)
    na, nb = ta.shape[0], tb.shape[0]
    out = torch.empty(nb * na, dtype=dtype, device=device)

    def at(p):  # one grid point's parameters -> ()
        return loss_fn(functional_call(module, p, (tx,)), ty)

    with torch.no_grad():
        for start in range(0, nb * na, block):
            q = torch.arange(start, min(start + block, nb * na), device=device)  # (G,)
            a, b = ta[q % na], tb[q // na]  # (G,)
            params = {k: origin[k] + _lead(a, origin[k]) * u[k] + _lead(b, origin[k]) * v[k]
                      for k in names}  # each (G, *shape)
            out[q] = vmap(at)(params)  # (G,)
    return out.reshape(nb, na).cpu().numpy()


def _lead(c, like):
    """(G,) coefficients shaped (G, 1, ..., 1) to scale a parameter of `like`'s shape."""
    return c.reshape((-1,) + (1,) * like.ndim)
