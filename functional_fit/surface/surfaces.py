"""The public surfaces: `loss_surface` and `mse_surface_exact`, their inputs checked once.

Each checks its inputs on concrete values (`checked`), builds the `grid.Grid` it runs on, and
hands the rest to the layouts (`functional_fit.surface.layouts`) or to the exact quadratic.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks, registry, runtime as _runtime, tolerances
from functional_fit.checks import InputError
from functional_fit.precision import check_array_dtype
from functional_fit.streams import stream_of
from functional_fit.surface import datasets, grid as _grid, layouts, states
from functional_fit.surface.kernels import Quadratic, Vmapped
from functional_fit.surface.planes import (Plane, check_coords, coords_plane, flat, is_vector,
                                           unraveled)

#: The largest grid a surface function accepts: 2**30 points, a float64 output of 8 GiB.
MAX_POINTS = 2**30


class Inputs(NamedTuple):
    """A surface's inputs, checked: the kernels' arguments and the grid's values."""

    args: tuple  # ((x, y), plane): x (n,) or (n, d), y (n, ...), a `Plane` of (p+1,) vectors
    a_values: jax.Array  # (na,)
    b_values: jax.Array  # (nb,)


def _grid_values(a_values, b_values):
    """The grid's axes as vectors, refused beyond `MAX_POINTS` points."""
    a_values = _checks.vector("a_values", a_values)
    b_values = _checks.vector("b_values", b_values)
    total = a_values.shape[0] * b_values.shape[0]
    if total > MAX_POINTS:
        raise InputError(
            f"grid of {b_values.shape[0]} x {a_values.shape[0]} = {total} points is larger than "
            f"MAX_POINTS = {MAX_POINTS}; compute it in pieces"
        )
    return a_values, b_values


def _flat_plane(base, coords, plane, a_values, b_values, model) -> tuple[dict, tuple]:
    """The plane's vectors by name, as flat numpy vectors (a pytree plane or base flattened),
    and the coords of a plane made from `base`. A model of the registry checks their length
    (`registry.check_size`); its default base is its own length of zeros."""
    if plane is not None and not is_vector(plane[0]):  # a pytree plane: flat vectors inside
        plane = Plane(*(flat(v) for v in plane))
    if base is not None and not is_vector(base):
        base = flat(base)
    if plane is not None:
        if base is not None:
            raise InputError("base cannot be combined with plane (the plane has an origin)")
        vectors = {f"plane.{k}": _checks.vector(f"plane.{k}", v)
                   for k, v in zip(("origin", "u", "v"), plane)}
        shapes = [v.shape for v in vectors.values()]
        if not shapes[0] == shapes[1] == shapes[2]:
            raise InputError(f"plane: origin, u and v must have the same shape (p+1,), got "
                             f"{shapes[0]}, {shapes[1]} and {shapes[2]}")
        registry.check_size(model, "plane.origin", vectors["plane.origin"])
        return vectors, None
    if base is None:
        i, j = check_coords(coords, 2**31)
        entry = registry.model_of(model)
        size = entry.n_params() if entry is not None and not entry.uses_degree else 0
        base = np.zeros(max(i + 1, j + 1, size),
                        dtype=np.result_type(a_values, b_values, np.float32))
    base = _checks.vector("base", base)
    registry.check_size(model, "base", base)
    return {"base": base}, coords


def _check_out(out, a_values, b_values) -> None:
    if out is None:
        return
    want = (b_values.shape[0], a_values.shape[0])
    if not isinstance(out, np.ndarray) or out.shape != want or not out.flags.c_contiguous:
        raise InputError(f"out must be a C-contiguous numpy array of shape {want}")
    if not np.issubdtype(out.dtype, np.floating) or not out.flags.writeable:
        raise InputError(f"out must be a writable floating-point array (float32 or float64: "
                         f"a loss is a real number), got dtype {out.dtype}"
                         f"{'' if out.flags.writeable else ', read-only'}")


def checked(x, y, a_values, b_values, *, base, coords, plane, out,
            model=None) -> Inputs:  # 9 arguments: the surface's data, grid and plane, named
    """Every input of a surface checked, on concrete values, as JAX arrays; with `model`, a
    registry model's parameter vectors checked against its length."""
    tree = plane[0] if plane is not None else base
    network = tree is not None and not is_vector(tree)  # images, sequences: (n, ...) data
    x, y = _checks.points(x, y, ndims=None if network else (1, 2))  # (n,) or (n, d) or ...
    a_values, b_values = _grid_values(a_values, b_values)
    vectors, coords = _flat_plane(base, coords, plane, a_values, b_values, model)
    for name, arr in dict(x=x, y=y, a_values=a_values, b_values=b_values, **vectors).items():
        check_array_dtype(name, arr)
    if coords is not None:
        plane = coords_plane(vectors["base"], coords)
    else:
        plane = Plane(*(jnp.asarray(vectors[f"plane.{k}"]) for k in ("origin", "u", "v")))
    _check_out(out, a_values, b_values)
    return Inputs(((jnp.asarray(x), jnp.asarray(y)), plane), jnp.asarray(a_values),
                  jnp.asarray(b_values))


def _grid_of(inputs: Inputs, *, devices: tuple, block, out, progress, keep_on_device,
             runtime) -> _grid.Grid:  # the grid's settings, as loss_surface takes them
    """The `grid.Grid` of checked inputs on checked `devices`."""
    rt = _runtime.resolve(runtime, devices[0].platform)
    return _grid.Grid(inputs.a_values, inputs.b_values, devices, block, out, progress,
                      keep_on_device, rt)


def loss_surface(
    model,
    loss,
    x,
    y,
    a_values,
    b_values,
    *,
    base=None,
    coords=(0, 1),
    plane: Plane | None = None,
    layout: str = "auto",
    devices=None,
    block: int | None = None,
    out: np.ndarray | None = None,
    progress=None,
    keep_on_device: bool | None = None,
    runtime=None,
    state=None,
):  # 17 arguments: the data, the grid and its plane, and how to run it, each named
    """The loss at every point of a grid, as the lecture's loop computes it, streamed.

    Row j, column i is the loss at ``w[coords[0]] = a_values[i]``, ``w[coords[1]] =
    b_values[j]``, every other parameter from `base`: the meshgrid 'xy' convention of the
    lecture's ``np.meshgrid(w0values, w1values)``. With `plane`, the point is
    ``plane.origin + a_values[i] * plane.u + b_values[j] * plane.v`` instead.

    Args:
      model: pure ``model(w, x) -> (n,)`` with w (p+1,) and x (n,), e.g. `models.linear`;
        or a model of any parameter pytree, with `plane` (or `base`) pytrees of its structure
        (flattened inside with `jax.flatten_util.ravel_pytree`).
      loss: pure ``loss(y_hat, y) -> ()``, e.g. `losses.l1`.
      x, y: (n,) data; or (n, ...) inputs and (n, ...) targets for a network; or a
        `functional_fit.streams.Stream` as x, with y None: the loss over all its points (the
        batches' mean losses weighted by their sizes), each batch read once, in memory
        bounded by one batch and a chunk's workspace.
      a_values: (na,) values along the first axis (the columns of the result).
      b_values: (nb,) values along the second axis (the rows).
      base: (p+1,) parameters held fixed; default zeros of length max(coords) + 1 (of the
        model's length, for a model of the registry that has one: linear 2, sine 3).
      coords: the two indices of w that a_values and b_values set.
      plane: a `Plane` to use instead of `base` and `coords`.
      layout: ``"streamed"`` (a loss known or proven to be a mean of per-point terms, see
        `functional_fit.surface.perpoint`; any other is refused), ``"vmap"`` (any loss), or
        ``"auto"`` (streamed where it is right, else vmapped).
      devices: the devices to split the grid across; default all of ``jax.devices()``.
      block: grid points per block (default: from the layout's workspace, at most a whole
        call of the runtime's ``chunk_points``).
      out: optional C-contiguous (nb, na) numpy array (or ``np.memmap``) to write into.
      progress: optional callable, called with the number of points done after each chunk
        (with a `Stream`, for each batch: a whole surface is points times batches).
      keep_on_device: return a `jax.Array` left where it was computed, with no copy to the
        host (``np.asarray`` of it is then the one transfer). None (default): on accelerators
        when `out` is None; on the CPU a numpy array, which costs nothing there. With `out`
        (a numpy array or memmap) each chunk is copied to the host while the next computes.
      runtime: chunk sizes and compiler options (`functional_fit.runtime`); None: those of the
        devices' platform.
      state: the state of a stateful ``model(params, state, x) -> (y_hat, new_state)`` (a
        network with BatchNorm), held fixed at every grid point; `plane` is then over the
        parameters alone (`functional_fit.surface.states`). BatchNorm uses the running
        statistics in eval mode, each batch's own in training mode: the model's mode.

    Returns:
      (nb, na) losses, in the dtype JAX computes the loss in: a numpy array (on the CPU), a
      `jax.Array` (on an accelerator, or with ``keep_on_device=True``), or `out` if given.

    Examples:
      >>> import functional_fit as ff, numpy as np
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     z = loss_surface(ff.models.linear, ff.losses.l1, x, y,
      ...                      np.linspace(-1, 1, 50), np.linspace(-0.5, 5, 50))
      >>> z.shape, round(float(z.min()), 4)
      ((50, 50), 1.2097)
    """
    layout = _checks.choice("layout", layout, layouts.LAYOUTS)
    model, loss = registry.resolve(model, loss)
    stream = stream_of(x, y)
    if stream is not None:
        devices = datasets.local_devices(devices, stream)
    devices = tuple(_checks.devices("devices", devices))
    if state is not None:
        if plane is None:
            raise InputError("state: a stateful model's surface needs a plane over its "
                             "parameters (random_plane(params), say)")
        model, plane = states.with_state(model, plane, state)
    tree = plane[0] if plane is not None else base
    if tree is not None and not is_vector(tree):  # pytree parameters: the model unravels
        model = unraveled(model, tree)
    if keep_on_device and out is not None:
        raise InputError("keep_on_device: the surface is written into out, on the host; pass "
                         "one of out and keep_on_device=True")
    # A network's weight matrices: the vmapped layout turns a block's grid points into batched
    # matrix products; streaming over the data would make them matrix-vector products.
    matrices = tree is not None and any(np.ndim(leaf) >= 2 for leaf in jax.tree.leaves(tree))
    where = dict(devices=devices, block=block, progress=progress, runtime=runtime)

    def check(x, y, out=out):
        return checked(x, y, a_values, b_values, base=base, coords=coords, plane=plane,
                       out=out, model=model)

    if stream is not None:
        if keep_on_device:
            raise InputError("keep_on_device: a Stream's surface is summed on the host")
        a_values, b_values = _grid_values(a_values, b_values)
        _check_out(out, a_values, b_values)
        target = datasets.Target((b_values.shape[0], a_values.shape[0]),
                                 np.result_type(a_values, b_values), out)
        return datasets.surface(
            model, loss, stream, lambda xb, yb: check(xb, yb, None),
            lambda inputs, scratch: _grid_of(inputs, out=scratch, keep_on_device=False, **where),
            layout, matrices, target)
    inputs = check(x, y)
    grid = _grid_of(inputs, out=out, keep_on_device=keep_on_device, **where)
    return layouts.compute(model, loss, inputs.args, grid, layout, matrices)


def mse_surface_exact(
    model, x, y, a_values, b_values, *, base=None, coords=(0, 1), plane=None, devices=None,
    out=None, progress=None, runtime=None,
) -> np.ndarray:  # 12 arguments: `loss_surface`'s, less the loss and the layout
    """The MSE surface of a model linear in its parameters, from moments of the data.

    For ``model(w, x) = V w + m`` (linear and polynomial models), the residual on the plane is
    ``r(a, b) = r0 + da * Vu + db * Vv`` about the grid centre (a0, b0), with da = a - a0,
    db = b - b0, r0 the residual there and Vu, Vv the model's derivatives along u and v. So

        MSE(a, b) = q0 + qa da + qb db + qaa da^2 + qab da db + qbb db^2,

    q0 = mean(r0^2), qa = 2 mean(r0 Vu), qb = 2 mean(r0 Vv), qaa = mean(Vu^2),
    qab = 2 mean(Vu Vv), qbb = mean(Vv^2): one pass over the data, then O(1) per grid point.
    Expanding about the grid centre keeps the terms as small as the grid allows (no cancellation
    of large moments). A model that is not linear in w is refused: the quadratic is checked
    against the brute-force MSE at the grid's corners.

    Args and Returns: as `loss_surface` (the loss is `functional_fit.losses.mse`).

    Raises:
      InputError: the model is not linear in its parameters.
    """
    from functional_fit import losses

    model = registry.resolve(model, losses.mse)[0]
    devices = tuple(_checks.devices("devices", devices))
    inputs = checked(x, y, a_values, b_values, base=base, coords=coords, plane=plane, out=out,
                     model=model)
    grid = _grid_of(inputs, devices=devices, block=None, out=out, progress=progress,
                    keep_on_device=None, runtime=runtime)
    coef = _mse_coefficients(model, *inputs)
    a4 = jnp.asarray(np.asarray(inputs.a_values)[[0, -1, 0, -1]])  # (4,) the grid's corners
    b4 = jnp.asarray(np.asarray(inputs.b_values)[[0, 0, -1, -1]])
    want = np.asarray(layouts.at_points(Vmapped(model, losses.mse), inputs.args, a4, b4))
    got = np.asarray(layouts.at_points(Quadratic(), coef, a4, b4))
    if not np.all(np.isfinite(want)):  # nothing to check the quadratic against
        raise InputError(
            f"a_values, b_values: the MSE overflows {want.dtype} at a corner of the grid, so "
            "the exact surface cannot be checked there; narrow the grid's range")
    if not np.all(tolerances.same_loss(got, want)):
        raise InputError(
            "model: the exact MSE surface needs a model linear in its parameters; "
            "use loss_surface(model, losses.mse, ...) instead"
        )
    return _grid.run(Quadratic(), coef, grid)


@functools.partial(jax.jit, static_argnames=("model",))
def _mse_coefficients(model, args, a_values, b_values):
    """(a0, b0, q0, qa, qb, qaa, qab, qbb), all (), of `mse_surface_exact`."""
    (x, y), plane = args
    a0 = (a_values[0] + a_values[-1]) / 2
    b0 = (b_values[0] + b_values[-1]) / 2
    w0 = plane.origin + a0 * plane.u + b0 * plane.v  # (p+1,)
    f = lambda w: model(w, x)  # noqa: E731
    y0, vu = jax.jvp(f, (w0,), (plane.u,))  # (n,), (n,)
    vv = jax.jvp(f, (w0,), (plane.v,))[1]  # (n,)
    r0 = y0 - y  # (n,)
    return (a0, b0, jnp.mean(r0**2), 2 * jnp.mean(r0 * vu), 2 * jnp.mean(r0 * vv),
            jnp.mean(vu**2), 2 * jnp.mean(vu * vv), jnp.mean(vv**2))


__all__ = ["Inputs", "MAX_POINTS", "checked", "loss_surface", "mse_surface_exact"]
