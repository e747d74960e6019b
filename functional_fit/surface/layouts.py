"""Layouts: which kernel computes a surface, and the checks that make a fast one safe.

- The streamed layout (`kernels.Streamed`) is right when the loss is a mean of per-point terms
  and the model is pointwise. It is taken only for a model and loss known or proven from their
  jaxpr to be so (`functional_fit.surface.perpoint`); any other takes the vmapped layout, so
  any pure ``model(w, x)`` and ``loss(y_hat, y)`` get the right surface. ``layout="auto"``
  also compares a few grid points of the first chunk with the full loss (`per_point_check`),
  an extra guard that falls back to the vmapped layout when they disagree.
- The vmapped layout (`kernels.Vmapped`) takes a network (a pytree with weight matrices): a
  block's grid points become batched matrix products, its block sized by the loss's largest
  intermediate (`traced`). On the CPU a loss with matrix products is compiled with the
  runtime's ``dot_options`` (XLA's YNNPACK dots): an option XLA refuses is dropped, and the
  first chunk's losses at a few points are checked against XLA's default compilation, which
  takes over if they disagree.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import tolerances
from functional_fit.precision import torch_matmul_precision
from functional_fit.checks import InputError
from functional_fit.surface import grid as _grid, perpoint
from functional_fit.surface.kernels import Streamed, Vmapped

LAYOUTS = ("auto", "streamed", "vmap")


def spec(args):
    """The shapes and dtypes of x, y and the plane's origin: what a traced loss depends on."""
    (x, y), plane = args
    return tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, y, plane.origin))


@functools.lru_cache(maxsize=64)
def traced(model, loss, spec) -> tuple[int, bool]:
    """What the vmapped layout keeps per grid point, and whether the loss has matrix products.

    The loss at one point is traced (not run), once per model, loss and shapes. The first is
    the count of numbers in its largest intermediate array: a network's (n, hidden)
    activations dominate, the lecture's models keep a few (n,) arrays.
    """
    xs, ys, ws = spec
    jaxpr = jax.make_jaxpr(lambda w, x, y: loss(model(w, x), y))(ws, xs, ys).jaxpr
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars
             if hasattr(v.aval, "shape")]
    dots = any(e.primitive.name == "dot_general" for e in _equations(jaxpr))
    return max([ws.shape[0], *sizes]), dots


@functools.lru_cache(maxsize=64)
def convolves(model, loss, spec) -> bool:
    """Whether the loss at one point has a convolution (traced once per model, loss and
    shapes)."""
    xs, ys, ws = spec
    jaxpr = jax.make_jaxpr(lambda w, x, y: loss(model(w, x), y))(ws, xs, ys).jaxpr
    return any(e.primitive.name == "conv_general_dilated" for e in _equations(jaxpr))


def one_point_per_call(grid: _grid.Grid) -> _grid.Grid:
    """`grid` computed one grid point per compiled call and device, when its block size is not
    the caller's: XLA's CPU convolutions are several times slower in a loop's body, and a
    convolution vmapped over several points' kernels becomes a slower grouped convolution
    (BENCHMARKS.md, "Loss landscapes of real networks")."""
    if grid.block is not None:
        return grid
    return grid._replace(block=1, runtime=dataclasses.replace(grid.runtime, chunk_points=1))


def _equations(jaxpr):
    """Every equation of `jaxpr`, those of its sub-jaxprs (a jit, a custom_jvp) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(sub, "eqns"):
                    yield from _equations(sub)


@functools.partial(jax.jit, static_argnums=0)
def at_points(kernel, args, a, b):
    """`kernel` at m points (a (m,), b (m,)), one compiled call; -> (m,). The points are
    computed one after another (`jax.lax.map`), so the workspace is one point's, however
    large the data."""
    return _each(kernel, args, a, b)


def _each(kernel, args, a, b):
    """`kernel` at each of m points in turn; -> (m,)."""
    return jax.lax.map(lambda ab: kernel(args, ab[0][None], ab[1][None])[0], (a, b))


def per_point_check(model, loss, args, grid: _grid.Grid, same_nonfinite: bool = False):
    """A check of the first chunk's losses against the full loss (`Vmapped`, compiled by XLA's
    defaults) at a few points: ``check(values) -> bool``.

    The streamed layout is right when the loss is a mean of per-point terms and the model is
    pointwise; a loss or model that is not differs from the full loss far beyond rounding
    (`functional_fit.tolerances.same_loss`). The vmapped layout compiled with dot options is
    checked the same way; there, with `same_nonfinite`, an inf or nan found by both counts as
    agreement (a diverging network).
    """
    na, nb = grid.a_values.shape[0], grid.b_values.shape[0]
    first = min(grid.runtime.chunk_points, na * nb)  # inside the first call's points
    q = np.unique(np.array([0, first - 1, first // 2, first // 3, (2 * first) // 3]))  # (m,)
    a = np.asarray(grid.a_values)[q % na]  # (m,)
    b = np.asarray(grid.b_values)[q // na]
    a, b, kernel = jnp.asarray(a), jnp.asarray(b), Vmapped(model, loss)

    def check(values):  # a few points of the first chunk
        if _grid.on_host(values):  # numpy's view of a CPU array costs nothing
            got = np.asarray(_grid.to_host(values)).reshape(-1)[q]
            want = np.asarray(at_points(kernel, args, a, b))
            return bool(np.all(tolerances.same_loss(got, want, np,
                                                    same_nonfinite=same_nonfinite)))
        # on an accelerator: one compiled comparison, one bool moved
        return bool(_agrees(kernel, same_nonfinite, args, a, b, values, jnp.asarray(q)))

    return check


@functools.partial(jax.jit, static_argnums=(0, 1))
def _agrees(kernel, same_nonfinite, args, a, b, values, q):
    """`per_point_check`'s comparison on the device: the full loss at points q, (m,), against
    the chunk's `values` there; -> () bool."""
    return jnp.all(tolerances.same_loss(values.reshape(-1)[q], _each(kernel, args, a, b), jnp,
                                        same_nonfinite=same_nonfinite))


def streamed(model, loss, args, grid: _grid.Grid, *, checked: bool):
    """The streamed layout; with `checked`, None when its first chunk disagrees with the full
    loss (the loss is not a mean of per-point terms). On the CPU it is compiled with the
    runtime's ``stream_options`` (dropped when XLA refuses one)."""
    return _streamed_planned(model, loss, args, grid, checked)[0]


def _streamed_planned(model, loss, args, grid: _grid.Grid, checked: bool):
    """`streamed`'s values and how to run its kernel again (None, None when refused)."""
    rt = grid.runtime
    check = per_point_check(model, loss, args, grid) if checked else None
    kernel = Streamed(model, loss, rt.data_chunk, rt.max_terms, rt.term_budget)
    width = args[1].origin.shape[0]
    options = tuple(rt.stream_options) if all(d.platform == "cpu" for d in grid.devices) else ()
    if options:
        try:
            result = _grid.run(kernel, args, grid, width=width, check=check, options=options)
            return result, _Again(kernel, options, width, None)
        except jax.errors.JaxRuntimeError as error:  # an XLA without the option refuses it
            if not any(name in str(error) for name, _ in options):
                raise
    result = _grid.run(kernel, args, grid, width=width, check=check)
    return result, _Again(kernel, (), width, None)


def vmapped(model, loss, args, grid: _grid.Grid):
    """The vmapped layout; on the CPU, with the runtime's dot options where they apply.

    Matrix products in float32 are computed as torch computes them (no TF32 on a GPU, unless
    the program asked for it): `functional_fit.precision.torch_matmul_precision`.
    """
    return _vmapped_planned(model, loss, args, grid)[0]


def _vmapped_planned(model, loss, args, grid: _grid.Grid):
    """`vmapped`'s values, and how to compute the same kernel again without its checks."""
    width, dots = traced(model, loss, spec(args))
    kernel, kw = Vmapped(model, loss), dict(width=width, items=grid.runtime.vmap_items)
    options, one = grid.runtime.dot_options, convolves(model, loss, spec(args))
    if one:  # a convolutional network: one point per call, and no dot options
        grid, options = one_point_per_call(grid), ()
    with torch_matmul_precision():
        if dots and options and all(d.platform == "cpu" for d in grid.devices):
            result = _with_options(kernel, model, loss, args, grid, options, kw)
            if result is not None:
                return result, _Again(kernel, tuple(options), kw["width"], kw["items"])
        return (_grid.run(kernel, args, grid, **kw),
                _Again(kernel, (), kw["width"], kw["items"], one))


class _Again(NamedTuple):
    """A kernel already chosen and checked, run again on new arguments: ``again(args, grid)``."""

    kernel: object
    options: tuple  # XLA compiler options, ((name, value), ...)
    width: int
    items: int | None
    one_point: bool = False  # one grid point per call (`one_point_per_call`)

    def __call__(self, args, grid: _grid.Grid):
        if self.one_point:
            grid = one_point_per_call(grid)
        with torch_matmul_precision():
            return _grid.run(self.kernel, args, grid, width=self.width, items=self.items,
                             options=self.options)


def _with_options(kernel, model, loss, args, grid, options, kw):
    """`kernel` compiled with XLA `options`; None when XLA refuses one of them, or when the
    first chunk's losses disagree with XLA's default compilation."""
    check = per_point_check(model, loss, args, grid, same_nonfinite=True)
    try:
        return _grid.run(kernel, args, grid, check=check, options=options, **kw)
    except jax.errors.JaxRuntimeError as error:  # an XLA without the option refuses it
        if not any(name in str(error) for name, _ in options):
            raise
        return None


def compute(model, loss, args, grid: _grid.Grid, layout: str, matrices: bool):
    """The surface in `layout`: "vmap", "streamed", or "auto" (vmapped for a network's weight
    `matrices`, else streamed where the loss is a mean of per-point terms, known or proven:
    `functional_fit.surface.perpoint`). "streamed" with any other loss is refused."""
    return planned(model, loss, args, grid, layout, matrices)[0]


def planned(model, loss, args, grid: _grid.Grid, layout: str, matrices: bool):
    """`compute`'s values, and ``again(args, grid)``: the same kernel, as checked on these
    arguments, run on others of the same kind (the next batches of a `Stream`) unchecked."""
    if layout == "vmap" or (layout == "auto" and matrices):
        return _vmapped_planned(model, loss, args, grid)
    if not perpoint.streamable(model, loss, spec(args)):
        if layout == "streamed":
            raise InputError(
                "layout: 'streamed' needs a loss that is a mean of per-point terms of a model "
                "whose prediction at x[k] depends on x[k] alone, and this one is not proven "
                "to be (functional_fit.surface.perpoint); use layout='auto' or 'vmap'")
        return _vmapped_planned(model, loss, args, grid)
    result, again = _streamed_planned(model, loss, args, grid, layout == "auto")
    if result is None:  # the loss is not a mean of per-point terms: the general layout
        return _vmapped_planned(model, loss, args, grid)
    return result, again


__all__ = ["LAYOUTS", "at_points", "compute", "per_point_check", "planned", "spec", "streamed",
           "traced", "vmapped"]
