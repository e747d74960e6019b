"""Per-point losses: whether ``loss(model(w, x), y)`` is a mean of per-point terms, proven.

The streamed layout (`kernels.Streamed`) computes ``sum_k loss(model(w, x[k:k+1]), y[k:k+1]) / n``.
That is the loss on the whole data exactly when the loss is a mean of per-point terms and the
model's prediction at x[k] depends on x[k] alone: ``loss(model(w, x), y) = c / n * sum_k f(w,
x[k], y[k])`` with the same f and c at every n. Anything else (a clipped mean, a root mean
square, a model that centres x on its mean) streams to a different number, so it is decided
from what the function is, never from a few sample values:

- the toolkit's own models and losses are known to be (`KNOWN_MODELS`, `KNOWN_LOSSES`);
- any other pair is traced with `jax.make_jaxpr` (nothing is computed) and its equations read
  (`proven`): every equation that touches the data must act on each point alone (elementwise
  operations, reshapes and reductions that keep the point axis, matrix products that contract
  other axes), followed by one sum over all axes and a scaling by constants. The same is traced
  at one point, and the per-point parts must be the same equations with the same constants,
  and the scales c_n and c_1 must satisfy n c_n = c_1 (a mean, not a sum).

Anything the reading does not recognise is not proven, and takes the vmapped layout.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import numpy as np
from jax.extend import core as jcore

from functional_fit import losses, models

#: The toolkit's losses: each is a mean of per-point terms (`functional_fit.losses`).
KNOWN_LOSSES = frozenset({losses.mse, losses.l1, losses.bce_with_logits, losses.cross_entropy})
#: The toolkit's models of a vector: each one's prediction at x[k] depends on x[k] alone.
KNOWN_MODELS = frozenset({models.linear, models.polynomial, models.sine})

#: Primitives that act on each element alone (all operands of one shape, or scalars).
ELEMENTWISE = frozenset("""
    abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type copy
    copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag integer_pow
    is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not or pow real
    reduce_precision rem round rsqrt select_n sign sin sinh sqrt square stop_gradient sub tan
    tanh xor
""".split())
#: Primitives that call a sub-jaxpr on their operands, and the parameter that holds it.
CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
         "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
         "custom_vjp_call_jaxpr": "fun_jaxpr", "remat": "jaxpr", "checkpoint": "jaxpr"}
#: Parameters that change with n, left out of the comparison of the two traces.
SHAPE_PARAMS = frozenset({"shape", "new_sizes", "limit_indices", "start_indices", "sharding",
                          "out_sharding"})


class NotProven(Exception):
    """The reading met something it cannot prove to act on each point alone."""


class Val(NamedTuple):
    """What the reading knows of one value of the jaxpr."""

    kind: str  # "free" (independent of the data), "point" (per point), "total" (c * sum)
    axis: int | None = None  # "point": the axis of the data points
    constant_axes: frozenset = frozenset()  # "free": axes along which it is constant
    value: object = None  # "free": its value when known and small; "total": the scale c


def _free(value=None, constant_axes=frozenset()) -> Val:
    return Val("free", constant_axes=frozenset(constant_axes), value=value)


class _Reading:
    """One pass over a jaxpr: the kinds of its values and the per-point equations met."""

    def __init__(self):
        self.signature = []  # per-point equations: (primitive, parameters, constants)

    def read(self, jaxpr, consts, args):  # -> list of Val, the jaxpr's outputs
        env = {}
        for var, value in zip(jaxpr.constvars, consts):  # closed-over arrays: known if small
            env[var] = _free(np.asarray(value) if np.size(value) <= 16 else None)
        env.update(zip(jaxpr.invars, args))
        for eqn in jaxpr.eqns:
            ins = [self._get(env, v) for v in eqn.invars]
            outs = self._eqn(eqn, ins)
            env.update(zip(eqn.outvars, outs))
        return [self._get(env, v) for v in jaxpr.outvars]

    @staticmethod
    def _get(env, var):
        if isinstance(var, jcore.Literal):
            return _free(np.asarray(var.val), range(np.ndim(var.val)))
        return env[var]

    def _eqn(self, eqn, ins):
        name = eqn.primitive.name
        if name in CALLS:
            sub = eqn.params[CALLS[name]]
            return self.read(getattr(sub, "jaxpr", sub), getattr(sub, "consts", ()), ins)
        if all(v.kind == "free" for v in ins):
            return [_free_out(eqn, ins, out) for out in eqn.outvars]
        if any(v.kind == "total" for v in ins):
            return [_scaled(name, eqn, ins)]
        self.signature.append((name, _params(eqn), tuple(_constant(v) for v in ins)))
        return [_point_out(name, eqn, ins)]


def _params(eqn) -> tuple:
    """The equation's parameters that do not change with n, for comparing two traces."""
    keep = (bool, int, float, str, tuple, type(None), np.dtype)
    return tuple(sorted((k, repr(v)) for k, v in eqn.params.items()
                        if k not in SHAPE_PARAMS and isinstance(v, keep)))


def _constant(v: Val):
    """A free operand's value where known (a number the per-point part uses), else its kind."""
    if v.kind == "free" and v.value is not None:
        return tuple(np.ravel(v.value).tolist())
    return v.kind


def _known(eqn, ins, shape):
    """The value of a free equation's output where its inputs' are known: the array when it is
    small, or one number for an array whose elements all equal it (a broadcast number, and
    elementwise operations of such), so that it reads the same at any n; else None."""
    values = [v.value for v in ins]
    if any(v is None for v in values):
        return None
    name = eqn.primitive.name
    if name == "broadcast_in_dim" and np.ndim(values[0]) == 0:
        return values[0]  # every element is this number
    if name in ELEMENTWISE and all(np.ndim(v) == 0 for v in values):
        pass  # numbers, standing for arrays whose elements all equal them
    elif math.prod(shape) > 16 or any(np.shape(v) != var.aval.shape
                                      for v, var in zip(values, eqn.invars)):
        return None
    try:
        return np.asarray(eqn.primitive.bind(*values, **eqn.params))
    except Exception:  # a primitive that cannot run here: its value stays unknown
        return None


def _free_out(eqn, ins, out) -> Val:
    """A value computed from free values alone: its value where known, and its constant axes."""
    shape = out.aval.shape
    value = _known(eqn, ins, shape)
    if len(shape) == 0:
        return _free(value, ())
    name = eqn.primitive.name
    if name in ELEMENTWISE:
        axes = frozenset(range(len(shape)))
        for v, var in zip(ins, eqn.invars):
            if len(var.aval.shape):
                axes &= v.constant_axes
        return _free(value, axes)
    if name == "broadcast_in_dim":
        dims, src = eqn.params["broadcast_dimensions"], eqn.invars[0].aval.shape
        kept = {d for i, d in enumerate(dims) if i in ins[0].constant_axes or src[i] == 1}
        return _free(value, (set(range(len(shape))) - set(dims)) | kept)
    return _free(value, ())


def _scaled(name, eqn, ins) -> Val:
    """``c * sum`` times a known constant: still a scaled sum; anything else is not proven."""
    total = next(v for v in ins if v.kind == "total")
    others = [v for v in ins if v is not total]
    if name in ("convert_element_type", "copy", "copy_p") and not others:
        return total
    if name == "neg" and not others:
        return total._replace(value=-total.value)
    if name in ("mul", "div") and len(others) == 1 and others[0].kind == "free" \
            and others[0].value is not None and np.ndim(others[0].value) == 0:
        c = float(others[0].value)
        if name == "mul":
            return total._replace(value=total.value * c)
        if ins[0] is total and c != 0:
            return total._replace(value=total.value / c)
    raise NotProven(f"{name} of the summed loss")


def _point_out(name, eqn, ins) -> Val:
    """The point axis of an equation's output that acts on each point alone."""
    points = [v for v in ins if v.kind == "point"]
    a = points[0].axis
    shapes = [var.aval.shape for var in eqn.invars]
    if name in ELEMENTWISE:
        for v, shape in zip(ins, shapes):
            ok = (v.kind == "point" and v.axis == a) or len(shape) == 0 or (
                v.kind == "free" and a in v.constant_axes)
            if not ok:
                raise NotProven(f"{name} mixes the points with an array that varies along them")
        return Val("point", a)
    if len(points) != len(ins) and name not in ("dot_general", "concatenate", "stack"):
        raise NotProven(f"{name} with the points and another array")
    return _STRUCTURAL.get(name, _unknown)(eqn, ins, shapes, a)


def _unknown(eqn, ins, shapes, a):
    raise NotProven(eqn.primitive.name)


def _broadcast(eqn, ins, shapes, a):
    dims, shape = eqn.params["broadcast_dimensions"], eqn.params["shape"]
    if shape[dims[a]] != shapes[0][a]:
        raise NotProven("broadcast_in_dim along the points")
    return Val("point", dims[a])


def _reshape(eqn, ins, shapes, a):
    old, new = shapes[0], eqn.params["new_sizes"]
    if eqn.params.get("dimensions") is not None:
        raise NotProven("reshape with dimensions")
    before = math.prod(old[:a])
    for b in range(len(new)):  # row-major: the axis keeps its points where what precedes agrees
        if math.prod(new[:b]) == before and new[b] == old[a]:
            return Val("point", b)
    raise NotProven("reshape across the points")


def _squeeze(eqn, ins, shapes, a):
    dims = eqn.params["dimensions"]
    if a in dims:
        raise NotProven("squeeze of the points")
    return Val("point", a - sum(d < a for d in dims))


def _transpose(eqn, ins, shapes, a):
    return Val("point", list(eqn.params["permutation"]).index(a))


def _reduce(eqn, ins, shapes, a):
    axes = eqn.params["axes"]
    if a not in axes:
        return Val("point", a - sum(d < a for d in axes))
    if eqn.primitive.name == "reduce_sum" and len(axes) == len(shapes[0]):
        return Val("total", value=1.0)  # the sum over the points: its scale follows
    raise NotProven(f"{eqn.primitive.name} over the points")


def _slice(eqn, ins, shapes, a):
    p = eqn.params
    if p["start_indices"][a] != 0 or p["limit_indices"][a] != shapes[0][a] or (
            p["strides"] is not None and p["strides"][a] != 1):
        raise NotProven("slice of the points")
    return Val("point", a)


def _joined(eqn, ins, shapes, a):  # concatenate and stack of per-point arrays
    axis = eqn.params["dimension" if eqn.primitive.name == "concatenate" else "axis"]
    for v in ins:
        if not ((v.kind == "point" and v.axis == a) or (v.kind == "free" and a in v.constant_axes)):
            raise NotProven(f"{eqn.primitive.name} of arrays that vary along the points")
    if eqn.primitive.name == "concatenate":
        if axis == a:
            raise NotProven("concatenate along the points")
        return Val("point", a)
    return Val("point", a + (axis <= a))


def _dot(eqn, ins, shapes, a):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = ins
    free_l = [d for d in range(len(shapes[0])) if d not in lc and d not in lb]
    free_r = [d for d in range(len(shapes[1])) if d not in rc and d not in rb]
    if lhs.kind == "point" and rhs.kind == "point":
        if lhs.axis in lb and rhs.axis in rb and lb.index(lhs.axis) == rb.index(rhs.axis):
            return Val("point", list(lb).index(lhs.axis))
    elif lhs.kind == "point" and lhs.axis in free_l:
        return Val("point", len(lb) + free_l.index(lhs.axis))
    elif rhs.kind == "point" and rhs.axis in free_r:
        return Val("point", len(lb) + len(free_l) + free_r.index(rhs.axis))
    raise NotProven("dot_general across the points")


_STRUCTURAL = {"broadcast_in_dim": _broadcast, "reshape": _reshape, "squeeze": _squeeze,
               "transpose": _transpose, "reduce_sum": _reduce, "reduce_max": _reduce,
               "reduce_min": _reduce, "reduce_prod": _reduce, "slice": _slice,
               "concatenate": _joined, "stack": _joined, "dot_general": _dot}


def _read(model, loss, w, n: int, x, y):
    """(signature, scale) of ``loss(model(w, x), y)`` on n points; NotProven if it is not a
    scaled sum of per-point terms."""
    xs = jax.ShapeDtypeStruct((n,) + x.shape[1:], x.dtype)
    ys = jax.ShapeDtypeStruct((n,) + y.shape[1:], y.dtype)
    closed = jax.make_jaxpr(lambda w, x, y: loss(model(w, x), y))(w, xs, ys)
    reading = _Reading()
    (out,) = reading.read(closed.jaxpr, closed.consts,
                          [_free(), Val("point", 0), Val("point", 0)])
    if out.kind != "total":
        raise NotProven("the loss is not a sum over the points")
    return reading.signature, out.value


@functools.lru_cache(maxsize=64)
def proven(model, loss, spec) -> bool:
    """Whether ``loss(model(w, x), y)`` is proven to be a mean of per-point terms.

    Args:
      model, loss: pure functions, as `functional_fit.surface.loss_surface` takes them.
      spec: the `jax.ShapeDtypeStruct` of x (n, ...), y (n, ...) and w (p+1,).

    Returns:
      True when both traces (at n and at one point) read as ``c_n * sum_k f(w, x[k], y[k])``
      with the same per-point equations and n c_n = c_1; False otherwise.
    """
    xs, ys, ws = spec
    try:
        sig_n, c_n = _read(model, loss, ws, xs.shape[0], xs, ys)
        sig_1, c_1 = _read(model, loss, ws, 1, xs, ys)
    except NotProven:
        return False
    except Exception:  # a function that does not trace on these shapes: not proven here
        return False
    return sig_n == sig_1 and math.isclose(c_n * xs.shape[0], c_1, rel_tol=1e-9)


def streamable(model, loss, spec) -> bool:
    """Whether the streamed layout computes this surface: known, or `proven`."""
    if loss in KNOWN_LOSSES and model in KNOWN_MODELS:
        return True
    try:
        return proven(model, loss, spec)
    except TypeError as exc:  # an unhashable model or loss: read without remembering
        if "unhashable" not in str(exc):
            raise
        return proven.__wrapped__(model, loss, spec)


__all__ = ["KNOWN_LOSSES", "KNOWN_MODELS", "NotProven", "proven", "streamable"]
