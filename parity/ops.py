"""ATen operations in JAX: one short function per operation, one registry (`OPS`).

`parity.export` walks a graph of ``torch.export``'s core ATen IR (``run_decompositions()``)
and calls ``OPS[node.target]`` on each node's arguments, JAX arrays in place of tensors. The
functions take ATen's arguments in ATen's order, positional and keyword as the schema names
them, and return what ATen returns (a tuple where ATen returns several tensors; an output that
only the backward pass reads, such as batch norm's saved mean, is None). The layers reuse
`functional_fit.nn`; the rest is `jax.numpy`.

An operation variant the functions do not cover (a transposed 1-d convolution, ...) raises
`Unsupported`, which `parity.export` reports with the node's module path. `native_dropout`
takes its keep-mask from the caller (``keep=``): the graph's dropouts are numbered there.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import torch
from jax import lax

from functional_fit import nn as _nn
from functional_fit.precision import promoted_dtype

aten = torch.ops.aten
_HI = lax.Precision.HIGHEST  # torch's float32 matmuls on CPU are full precision

#: torch dtypes as numpy/JAX dtypes.
DTYPES = {torch.float64: jnp.float64, torch.float32: jnp.float32, torch.float16: jnp.float16,
          torch.bfloat16: jnp.bfloat16, torch.int64: jnp.int64, torch.int32: jnp.int32,
          torch.int8: jnp.int8, torch.uint8: jnp.uint8, torch.bool: jnp.bool_}


class Unsupported(NotImplementedError):
    """An operation's variant (its arguments) that the registry does not cover."""


OPS: dict = {}


def _op(*targets):
    def register(f):
        for t in targets:
            OPS[t] = f
        return f
    return register


def _kind(x) -> str:
    return "f" if jnp.issubdtype(x.dtype, jnp.floating) else "b" if x.dtype == jnp.bool_ else "i"


def _common_dtype(a, b):
    """torch's result dtype: a 0-d tensor does not promote a tensor of the same kind (float32
    times a float64 scalar is float32); otherwise the standard promotion."""
    if _kind(a) == _kind(b) and (a.ndim == 0) != (b.ndim == 0):
        return b.dtype if a.ndim == 0 else a.dtype
    return promoted_dtype(a.dtype, b.dtype)


def _pair(a, b):
    """a and b promoted to one dtype and broadcast to one shape, as torch does implicitly (the
    tests' strict JAX would refuse both)."""
    if not (isinstance(a, jax.Array) and isinstance(b, jax.Array)):
        return a, b
    dtype = _common_dtype(a, b)
    shape = jnp.broadcast_shapes(a.shape, b.shape)
    return jnp.broadcast_to(a.astype(dtype), shape), jnp.broadcast_to(b.astype(dtype), shape)


def _binary(f):
    def op(a, b, *, alpha=1):
        a, b = _pair(a, b)
        return f(a, b if alpha == 1 else b * alpha)
    return op


# --------------------------------------------------------------------------- elementwise
for _f, _targets in [
        (jnp.add, (aten.add.Tensor, aten.add.Scalar)),
        (jnp.subtract, (aten.sub.Tensor, aten.sub.Scalar)),
        (jnp.multiply, (aten.mul.Tensor, aten.mul.Scalar)),
        (jnp.true_divide, (aten.div.Tensor, aten.div.Scalar)),
        (jnp.power, (aten.pow.Tensor_Tensor, aten.pow.Tensor_Scalar)),
        (jnp.maximum, (aten.maximum.default,)), (jnp.minimum, (aten.minimum.default,)),
        (jnp.equal, (aten.eq.Tensor, aten.eq.Scalar)), (jnp.not_equal, (aten.ne.Tensor, aten.ne.Scalar)),
        (jnp.less, (aten.lt.Tensor, aten.lt.Scalar)), (jnp.greater, (aten.gt.Tensor, aten.gt.Scalar)),
        (jnp.less_equal, (aten.le.Tensor, aten.le.Scalar)),
        (jnp.greater_equal, (aten.ge.Tensor, aten.ge.Scalar)),
        (jnp.logical_and, (aten.logical_and.default,)), (jnp.logical_or, (aten.logical_or.default,))]:
    _op(*_targets)(_binary(_f))

for _f, _target in [
        (jnp.sin, aten.sin.default), (jnp.cos, aten.cos.default), (jnp.exp, aten.exp.default),
        (jnp.log, aten.log.default), (jnp.tanh, aten.tanh.default), (jnp.negative, aten.neg.default),
        (jnp.abs, aten.abs.default), (jnp.sqrt, aten.sqrt.default), (lax.rsqrt, aten.rsqrt.default),
        (jax.nn.sigmoid, aten.sigmoid.default), (_nn.relu, aten.relu.default),
        (jnp.logical_not, aten.logical_not.default), (jax.scipy.special.erf, aten.erf.default)]:
    OPS[_target] = _f


@_op(aten.gelu.default)
def gelu(x, approximate="none"):
    return _nn.gelu(x, approximate=approximate)


@_op(aten.where.self)
def where(condition, x, y):
    x, y = _pair(x, y)
    shape = jnp.broadcast_shapes(jnp.shape(condition), jnp.shape(x), jnp.shape(y))
    return jnp.where(jnp.broadcast_to(condition, shape), jnp.broadcast_to(x, shape),
                     jnp.broadcast_to(y, shape))


@_op(aten._to_copy.default, aten.clone.default, aten.alias.default, aten.detach.default)
def copy(x, *, dtype=None, memory_format=None, layout=None, device=None, pin_memory=None,
         non_blocking=False):
    return x if dtype is None else x.astype(dtype)


# --------------------------------------------------------------------------- reductions
def _axes(dims, ndim):
    return tuple(range(ndim)) if dims is None or len(dims) == 0 else tuple(dims)


@_op(aten.sum.dim_IntList, aten.sum.default)
def sum_(x, dim=None, keepdim=False, *, dtype=None):
    return jnp.sum(x, axis=_axes(dim, x.ndim), keepdims=keepdim, dtype=dtype)


@_op(aten.mean.dim, aten.mean.default)
def mean(x, dim=None, keepdim=False, *, dtype=None):
    return jnp.mean(x, axis=_axes(dim, x.ndim), keepdims=keepdim, dtype=dtype)


@_op(aten.amax.default)
def amax(x, dim=(), keepdim=False):
    return jnp.max(x, axis=_axes(dim, x.ndim), keepdims=keepdim)


@_op(aten.any.dim, aten.any.dims, aten.any.default)
def any_(x, dim=None, keepdim=False):
    dims = [dim] if isinstance(dim, int) else dim
    return jnp.any(x, axis=_axes(dims, x.ndim), keepdims=keepdim)


# --------------------------------------------------------------------------- shapes
@_op(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def view(x, size):
    return jnp.reshape(x, tuple(size))  # (*size)


@_op(aten.permute.default)
def permute(x, dims):
    return jnp.transpose(x, dims)


@_op(aten.t.default)
def t(x):
    return x.T


@_op(aten.transpose.int)
def transpose(x, dim0, dim1):
    return jnp.swapaxes(x, dim0, dim1)


@_op(aten.expand.default)
def expand(x, size, *, implicit=False):
    lead = len(size) - x.ndim
    shape = [x.shape[i - lead] if s == -1 else s for i, s in enumerate(size)]
    return jnp.broadcast_to(x, shape)  # (*size)


@_op(aten.unsqueeze.default)
def unsqueeze(x, dim):
    return jnp.expand_dims(x, dim % (x.ndim + 1))


@_op(aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def squeeze(x, dim=None):
    dims = range(x.ndim) if dim is None else [dim] if isinstance(dim, int) else dim
    return jnp.squeeze(x, tuple(d % x.ndim for d in dims if x.shape[d] == 1))


@_op(aten.select.int)
def select(x, dim, index):
    return lax.index_in_dim(x, index % x.shape[dim], dim, keepdims=False)


@_op(aten.slice.Tensor)
def slice_(x, dim=0, start=None, end=None, step=1):
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, end, step)
    return x[tuple(index)]


@_op(aten.cat.default)
def cat(tensors, dim=0):
    dtype = promoted_dtype(*tensors)
    return jnp.concatenate([a.astype(dtype) for a in tensors], axis=dim)


@_op(aten.stack.default)
def stack(tensors, dim=0):
    return jnp.stack(tensors, axis=dim)


@_op(aten.sym_size.int)
def sym_size(x, dim):
    """A dynamic axis's length: a Python int, also under jit and vmap."""
    return x.shape[dim]


for _f in (operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod):
    OPS[_f] = _f  # arithmetic on the lengths of dynamic axes


@_op(operator.getitem)
def getitem(x, i):
    return x[i]


# --------------------------------------------------------------------------- creation
@_op(aten.full_like.default)
def full_like(x, fill_value, *, dtype=None, layout=None, device=None, pin_memory=None,
              memory_format=None):
    return jnp.full(x.shape, fill_value, dtype=dtype or x.dtype)


@_op(aten.zeros_like.default)
def zeros_like(x, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return jnp.zeros(x.shape, dtype=dtype or x.dtype)


@_op(aten.ones_like.default)
def ones_like(x, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return jnp.ones(x.shape, dtype=dtype or x.dtype)


@_op(aten.scalar_tensor.default)
def scalar_tensor(value, *, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.asarray(value, dtype=dtype or jnp.float32)


@_op(aten.full.default)
def full(size, fill_value, *, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.full(tuple(size), fill_value, dtype=dtype or jnp.float32)


# --------------------------------------------------------------------------- matrix products
@_op(aten.mm.default)
def mm(a, b):
    return jnp.matmul(a, b, precision=_HI)  # (n, m) @ (m, p) -> (n, p)


@_op(aten.bmm.default)
def bmm(a, b):
    return jnp.matmul(a, b, precision=_HI)  # (B, n, m) @ (B, m, p) -> (B, n, p)


@_op(aten.addmm.default)
def addmm(bias, a, b, *, beta=1, alpha=1):
    product = jnp.matmul(a, b, precision=_HI)  # (n, p)
    return jnp.add(*_pair(bias if beta == 1 else beta * bias,
                          product if alpha == 1 else alpha * product))


# --------------------------------------------------------------------------- layers
@_op(aten.convolution.default)
def convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding,
                groups):  # ATen's convolution schema, argument for argument
    nd = len(stride)
    if not transposed and nd in (1, 2):
        conv = _nn.conv1d if nd == 1 else _nn.conv2d
        return conv(x, weight, bias, stride, padding, dilation, groups)
    if transposed and nd == 2:
        return _nn.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
                                    dilation)
    raise Unsupported(f"a {'transposed ' if transposed else ''}{nd}-d convolution")


@_op(aten._native_batch_norm_legit_functional.default)
def batch_norm_functional(x, weight, bias, running_mean, running_var, training, momentum, eps):
    out, mean, var = _nn.batch_norm(x, running_mean, running_var, weight, bias, training,
                                    momentum, eps)
    return out, None, None, mean, var  # (output, saved mean, saved invstd, new mean, new var)


@_op(aten._native_batch_norm_legit_no_training.default)
def batch_norm_eval(x, weight, bias, running_mean, running_var, momentum, eps):
    out, _, _ = _nn.batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)
    return out, None, None


@_op(aten.native_layer_norm.default)
def layer_norm(x, normalized_shape, weight, bias, eps):
    return _nn.layer_norm(x, tuple(normalized_shape), weight, bias, eps), None, None


@_op(aten._softmax.default)
def softmax(x, dim, half_to_float):
    return _nn.softmax(x, dim)


@_op(aten._log_softmax.default)
def log_softmax(x, dim, half_to_float):
    return _nn.log_softmax(x, dim)


@_op(aten.native_dropout.default)
def native_dropout(x, p, train, *, keep):
    """(output, keep-mask); `keep` the (shape of x) booleans, or None where nothing is drawn
    (dropout off: the input as it is)."""
    if not train or p == 0 or keep is None:
        return x, jnp.ones(x.shape, dtype=jnp.bool_)
    if p == 1:
        return x * jnp.zeros((), x.dtype), jnp.zeros(x.shape, dtype=jnp.bool_)
    return _nn.dropout(x, p, mask=keep), keep


@_op(aten.max_pool2d_with_indices.default)
def max_pool2d(x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    out = _nn.max_pool2d(x, kernel_size, stride or None, padding, dilation, ceil_mode)
    return out, None


@_op(aten.avg_pool2d.default)
def avg_pool2d(x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    if divisor_override is not None:
        raise Unsupported("divisor_override")
    return _nn.avg_pool2d(x, kernel_size, stride or None, padding, ceil_mode, count_include_pad)
