"""functional_fit.nn's linear, convolutions, pooling and activations against torch.nn.functional.

One table of named cases per family (`CONV`, `POOL`, `ACTIVATION`), all run by one test: the
same random input, weight and bias go to torch and to JAX; the outputs must agree, and so must
the gradients of a random linear functional sum(c * output) with respect to input, weight and
bias (jax.grad against torch autograd). `BAD` is the bad-input table: one line of InputError
that names the argument.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import functional_fit.nn as fnn
from functional_fit.checks import InputError
from functional_fit.tolerances import UNIT_ROUNDOFF

#: Relative agreement, max |jax - torch| / max |torch|. float64: the issue's bound. float32:
#: each output sums at most ~100 products (rounded once each, in a different order on each side)
#: and its gradient as many again; 200 unit roundoffs (2^-24) is 1.2e-5.
TOLERANCE = {"float64": 1e-12, "float32": 200 * UNIT_ROUNDOFF["float32"]}


class Case(NamedTuple):
    name: str
    fn: str                     # the name in both torch.nn.functional and functional_fit.nn
    input: tuple                # input shape
    weight: tuple | None = None  # weight shape, for linear and the convolutions
    bias: bool = False          # a bias of the weight's output channels
    kwargs: dict = {}
    dtype: str = "float64"


CONV = [
    Case("linear_3d_input", "linear", (2, 3, 5), (4, 5), True),
    Case("linear_vector_no_bias", "linear", (5,), (4, 5)),
    Case("conv1d_stride_padding_dilation", "conv1d", (2, 3, 11), (4, 3, 3), True,
         dict(stride=2, padding=2, dilation=2)),
    Case("conv1d_same_even_kernel", "conv1d", (2, 3, 10), (4, 3, 4), True, dict(padding="same")),
    Case("conv1d_groups_unbatched", "conv1d", (4, 9), (6, 2, 3), True, dict(groups=2)),
    Case("conv2d_padding", "conv2d", (2, 3, 7, 6), (4, 3, 3, 3), True, dict(padding=1)),
    Case("conv2d_same_even_kernel", "conv2d", (2, 3, 7, 6), (4, 3, 4, 2), True,
         dict(padding="same")),
    Case("conv2d_same_even_kernel_dilated", "conv2d", (2, 3, 8, 9), (4, 3, 2, 4), True,
         dict(padding="same", dilation=(2, 3))),
    Case("conv2d_valid", "conv2d", (2, 3, 7, 6), (4, 3, 3, 2), False, dict(padding="valid")),
    Case("conv2d_stride_dilation_asymmetric", "conv2d", (2, 3, 9, 8), (4, 3, 3, 2), True,
         dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
    Case("conv2d_groups", "conv2d", (2, 6, 7, 7), (9, 2, 3, 3), True, dict(groups=3, stride=2)),
    Case("conv2d_depthwise", "conv2d", (2, 4, 6, 6), (8, 1, 3, 3), True, dict(groups=4)),
    Case("conv2d_unbatched", "conv2d", (3, 7, 6), (4, 3, 3, 3), True, dict(padding=1)),
    Case("conv2d_float32", "conv2d", (2, 3, 7, 6), (4, 3, 4, 2), True, dict(padding="same"),
         "float32"),
    Case("conv_transpose2d_output_padding", "conv_transpose2d", (2, 4, 5, 5), (4, 3, 3, 3), True,
         dict(stride=2, padding=1, output_padding=1)),
    Case("conv_transpose2d_groups_dilation", "conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 2), True,
         dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2))),
    # padding beyond dilation * (k - 1): the equivalent convolution pads negatively (crops)
    Case("conv_transpose2d_padding_beyond_kernel", "conv_transpose2d", (2, 4, 6, 6), (4, 3, 2, 2),
         True, dict(stride=3, padding=(1, 3), output_padding=2)),
    Case("conv_transpose2d_unbatched", "conv_transpose2d", (4, 5, 5), (4, 2, 2, 2), True,
         dict(stride=2)),
    Case("conv_transpose2d_float32", "conv_transpose2d", (2, 4, 5, 5), (4, 3, 3, 3), True,
         dict(stride=2, padding=1, output_padding=1), "float32"),
]

POOL = [
    # H = W = 5, k = 3, s = 3, p = 1, ceil_mode: a third window would start in the padding
    Case("max_pool2d_ceil_window_in_padding", "max_pool2d", (2, 3, 5, 5), kwargs=dict(
        kernel_size=3, stride=3, padding=1, ceil_mode=True)),
    Case("max_pool2d_ceil_rectangular", "max_pool2d", (2, 3, 8, 9), kwargs=dict(
        kernel_size=(2, 3), stride=2, padding=(1, 1), ceil_mode=True)),
    Case("max_pool2d_dilation", "max_pool2d", (2, 3, 9, 8), kwargs=dict(
        kernel_size=3, stride=2, padding=1, dilation=2)),
    Case("max_pool2d_default_stride_unbatched", "max_pool2d", (3, 7, 6), kwargs=dict(
        kernel_size=2)),
    Case("max_pool2d_float32", "max_pool2d", (2, 3, 8, 9), kwargs=dict(
        kernel_size=3, stride=2, padding=1, ceil_mode=True), dtype="float32"),
    Case("avg_pool2d_ceil_window_in_padding", "avg_pool2d", (2, 3, 5, 5), kwargs=dict(
        kernel_size=3, stride=3, padding=1, ceil_mode=True)),
    Case("avg_pool2d_ceil_include_pad", "avg_pool2d", (2, 3, 8, 7), kwargs=dict(
        kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    Case("avg_pool2d_ceil_exclude_pad", "avg_pool2d", (2, 3, 8, 7), kwargs=dict(
        kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    Case("avg_pool2d_divisor_override", "avg_pool2d", (2, 3, 8, 7), kwargs=dict(
        kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), divisor_override=5)),
    Case("avg_pool2d_unbatched", "avg_pool2d", (3, 6, 6), kwargs=dict(kernel_size=2)),
    Case("avg_pool2d_float32", "avg_pool2d", (2, 3, 8, 7), kwargs=dict(
        kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dtype="float32"),
    Case("adaptive_avg_pool2d_7_to_3", "adaptive_avg_pool2d", (2, 3, 7, 7), kwargs=dict(
        output_size=3)),
    Case("adaptive_avg_pool2d_5_to_2", "adaptive_avg_pool2d", (2, 3, 5, 5), kwargs=dict(
        output_size=2)),
    Case("adaptive_avg_pool2d_rectangular_none", "adaptive_avg_pool2d", (2, 3, 7, 5), kwargs=dict(
        output_size=(3, None))),
    Case("adaptive_avg_pool2d_global_unbatched", "adaptive_avg_pool2d", (3, 7, 5), kwargs=dict(
        output_size=1)),
    Case("adaptive_avg_pool2d_float32", "adaptive_avg_pool2d", (2, 3, 7, 5), kwargs=dict(
        output_size=(3, 2)), dtype="float32"),
]

ACTIVATION = [
    Case("relu", "relu", (3, 4, 5)),
    Case("gelu", "gelu", (3, 4, 5)),
    Case("gelu_tanh", "gelu", (3, 4, 5), kwargs=dict(approximate="tanh")),
    Case("silu", "silu", (3, 4, 5)),
    Case("tanh", "tanh", (3, 4, 5)),
    Case("sigmoid", "sigmoid", (3, 4, 5)),
    Case("softmax_dim1", "softmax", (3, 4, 5), kwargs=dict(dim=1)),
    Case("softmax_last_dim", "softmax", (3, 4, 5), kwargs=dict(dim=-1)),
    Case("log_softmax_dim0", "log_softmax", (3, 4, 5), kwargs=dict(dim=0)),
    Case("gelu_float32", "gelu", (3, 4, 5), dtype="float32"),
    Case("log_softmax_float32", "log_softmax", (3, 4, 5), kwargs=dict(dim=-1), dtype="float32"),
]


def _arrays(case: Case) -> list[np.ndarray]:
    """[input, weight?, bias?] as random arrays of the case's dtype."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    shapes = [case.input] + ([case.weight] if case.weight else [])
    if case.bias:
        out = case.weight[1] * case.kwargs.get("groups", 1) if case.fn == "conv_transpose2d" \
            else case.weight[0]
        shapes.append((out,))
    return [rng.standard_normal(s).astype(case.dtype) for s in shapes]


def _rel(a, b) -> float:
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# torch's note that it copies the input to pad an even kernel "same": about its speed, not values
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("case", CONV + POOL + ACTIVATION, ids=lambda c: c.name)
def test_matches_torch_values_and_gradients(case):
    arrays = _arrays(case)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_t = getattr(F, case.fn)(*tensors, **case.kwargs)
    c = np.random.default_rng(0).standard_normal(tuple(out_t.shape)).astype(case.dtype)
    (out_t * torch.tensor(c)).sum().backward()

    def functional(*xs):
        return jnp.sum(getattr(fnn, case.fn)(*xs, **case.kwargs) * jnp.asarray(c))

    out_j = getattr(fnn, case.fn)(*[jnp.asarray(a) for a in arrays], **case.kwargs)
    grads_j = jax.grad(functional, argnums=tuple(range(len(arrays))))(*map(jnp.asarray, arrays))
    assert out_j.shape == tuple(out_t.shape) and out_j.dtype == jnp.dtype(case.dtype)
    tol = TOLERANCE[case.dtype]
    assert _rel(out_j, out_t.detach().numpy()) <= tol, "output"
    for name, g_j, t in zip(("input", "weight", "bias"), grads_j, tensors):
        assert _rel(g_j, t.grad.numpy()) <= tol, f"gradient with respect to {name}"


class Bad(NamedTuple):
    name: str
    call: object   # a function of no arguments that must raise
    argument: str  # the name the message must contain


def _zeros(*shape):
    return np.zeros(shape)


BAD = [
    Bad("conv2d_input_ndim", lambda: fnn.conv2d(_zeros(3, 4), _zeros(2, 3, 1, 1)), "input"),
    Bad("conv1d_input_ndim", lambda: fnn.conv1d(_zeros(2, 3, 4, 4), _zeros(2, 3, 1)), "input"),
    Bad("conv2d_channels", lambda: fnn.conv2d(_zeros(2, 3, 5, 5), _zeros(4, 2, 3, 3)), "weight"),
    Bad("conv2d_groups_not_dividing",
        lambda: fnn.conv2d(_zeros(2, 4, 5, 5), _zeros(4, 2, 3, 3), groups=3), "groups"),
    Bad("conv2d_same_strided",
        lambda: fnn.conv2d(_zeros(2, 3, 5, 5), _zeros(4, 3, 2, 2), stride=2, padding="same"),
        "padding"),
    Bad("conv2d_bias_shape",
        lambda: fnn.conv2d(_zeros(2, 3, 5, 5), _zeros(4, 3, 3, 3), _zeros(3)), "bias"),
    Bad("conv_transpose2d_channels",
        lambda: fnn.conv_transpose2d(_zeros(2, 3, 5, 5), _zeros(4, 2, 3, 3)), "weight"),
    Bad("conv_transpose2d_output_padding",
        lambda: fnn.conv_transpose2d(_zeros(2, 4, 5, 5), _zeros(4, 2, 3, 3), output_padding=1),
        "output_padding"),
    Bad("linear_features", lambda: fnn.linear(_zeros(2, 5), _zeros(4, 3)), "weight"),
    Bad("max_pool2d_input_ndim", lambda: fnn.max_pool2d(_zeros(5, 5), 2), "input"),
    Bad("max_pool2d_return_indices",
        lambda: fnn.max_pool2d(_zeros(1, 5, 5), 2, return_indices=True), "return_indices"),
    Bad("avg_pool2d_padding_over_half",
        lambda: fnn.avg_pool2d(_zeros(1, 5, 5), 2, padding=2), "padding"),
    Bad("adaptive_output_size", lambda: fnn.adaptive_avg_pool2d(_zeros(1, 5, 5), (2, 0)),
        "output_size"),
    Bad("softmax_without_dim", lambda: fnn.softmax(_zeros(3, 4)), "dim"),
    Bad("log_softmax_dim_out_of_range", lambda: fnn.log_softmax(_zeros(3, 4), dim=2), "dim"),
    Bad("gelu_approximate", lambda: fnn.gelu(_zeros(3), approximate="erf"), "approximate"),
]


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.name)
def test_bad_input_is_one_line_naming_the_argument(bad):
    with pytest.raises(InputError) as err:
        bad.call()
    message = str(err.value)
    assert "\n" not in message and bad.argument in message, message
