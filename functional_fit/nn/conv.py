"""torch.nn.functional's linear and convolutions in JAX: names, arguments, defaults and layouts.

Inputs are NCHW (NCL for 1-d), weights OIHW (OIL), as torch's; an unbatched input (C, H, W) or
(C, L) is taken as torch takes it and gives an unbatched output. Every convolution is one
`jax.lax.conv_general_dilated` with explicit dimension numbers and ``precision=HIGHEST``, so a
float32 product is not rounded through bfloat16 on accelerators.

``padding="same"`` pads as torch does: a total of ``dilation * (k - 1)``, the odd one on the
right (bottom), so even kernels give torch's output, not XLA's "SAME" (odd one on the left).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from functional_fit.checks import InputError
from functional_fit.nn.shapes import batched_input, int_tuple

_DIMENSIONS = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW")}


def _check_groups(weight, channels: int, groups, nd: int, transposed: bool) -> int:
    """groups as an int, after checking the weight against the input's `channels`."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
        raise InputError(f"groups must be a positive integer, got {groups!r}")
    if weight.ndim != nd + 2:
        raise InputError(f"weight must have {nd + 2} dimensions, got shape {weight.shape}")
    if channels % groups:
        raise InputError(f"groups={groups} must divide the input's {channels} channels")
    expected = channels if transposed else channels // groups  # weight.shape[0] or [1]
    got = weight.shape[0] if transposed else weight.shape[1]
    if got != expected:
        raise InputError(f"weight of shape {weight.shape} does not fit an input with {channels} "
                         f"channels and groups={groups}")
    if not transposed and weight.shape[0] % groups:
        raise InputError(f"groups={groups} must divide weight's {weight.shape[0]} out channels")
    return groups


def _add_bias(y, bias, nd: int):
    """y + bias over the channel axis: y (N, O, *spatial), bias (O,)."""
    if bias is None:
        return y
    bias = jnp.asarray(bias)
    if bias.shape != (y.shape[1],):
        raise InputError(f"bias must have shape ({y.shape[1]},), got {bias.shape}")
    return y + bias.reshape((1, -1) + (1,) * nd)  # (1, O, 1, ...)


def _padding(padding, weight, stride, dilation, nd: int) -> list[tuple[int, int]]:
    """Torch's padding argument as (low, high) pairs per spatial axis."""
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        if any(s != 1 for s in stride):
            raise InputError("padding='same' needs stride=1, as in torch")
        totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
        return [(t // 2, t - t // 2) for t in totals]  # the odd one on the right, as torch
    return [(p, p) for p in int_tuple("padding", padding, nd)]


def _conv(input, weight, bias, stride, padding, dilation, groups, nd: int):  # torch's F.convNd's 7
    """The N-d convolution of conv1d and conv2d (see `conv2d`)."""
    x, batched = batched_input("input", input, nd)
    weight = jnp.asarray(weight)
    groups = _check_groups(weight, x.shape[1], groups, nd, transposed=False)
    stride = int_tuple("stride", stride, nd)
    dilation = int_tuple("dilation", dilation, nd)
    if 0 in stride or 0 in dilation:
        raise InputError(f"stride and dilation must be positive, got {stride}, {dilation}")
    y = lax.conv_general_dilated(x, weight, stride, _padding(padding, weight, stride, dilation, nd),
                                 rhs_dilation=dilation, feature_group_count=groups,
                                 dimension_numbers=_DIMENSIONS[nd],
                                 precision=lax.Precision.HIGHEST)  # (N, O, *spatial)
    y = _add_bias(y, bias, nd)
    return y if batched else y[0]


def linear(input, weight, bias=None):
    """torch's F.linear: ``input @ weight.T + bias``.

    input (*, in), weight (out, in), bias (out,) or None -> (*, out).
    """
    x, weight = jnp.asarray(input), jnp.asarray(weight)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise InputError(f"weight of shape {weight.shape} does not fit input of shape {x.shape}")
    y = jnp.matmul(x, weight.T, precision=lax.Precision.HIGHEST)  # (*, out)
    if bias is None:
        return y
    bias = jnp.asarray(bias)
    if bias.shape != (weight.shape[0],):
        raise InputError(f"bias must have shape ({weight.shape[0]},), got {bias.shape}")
    return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))  # (*, out)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # torch's F.conv1d
    """torch's F.conv1d: input (N, C, L) or (C, L), weight (O, C / groups, k), bias (O,).

    Returns (N, O, L_out) or (O, L_out); padding an int, a 1-tuple, "valid" or "same".
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, nd=1)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # torch's F.conv2d
    """torch's F.conv2d: input (N, C, H, W) or (C, H, W), weight (O, C / groups, kH, kW).

    bias (O,) or None; stride, dilation an int or a pair; padding an int, a pair, "valid" or
    "same" (stride 1; even kernels padded as torch pads them, the extra row and column at the
    bottom and right). Returns (N, O, H_out, W_out), or (O, H_out, W_out) for an unbatched input.
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, nd=2)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):  # torch's F.conv_transpose2d, keyword for keyword
    """torch's F.conv_transpose2d, the gradient of conv2d with respect to its input.

    input (N, C, H, W) or (C, H, W), weight (C, O / groups, kH, kW) (torch's layout: in channels
    first), bias (O,). Output (N, O, H_out, W_out) with H_out = (H - 1) * stride - 2 * padding
    + dilation * (kH - 1) + output_padding + 1.

    Computed as a convolution of the input dilated by `stride` with the spatially flipped kernel,
    its in and out channels swapped within each group, padded by dilation * (k - 1) - padding
    (plus output_padding at the high end).
    """
    x, batched = batched_input("input", input, 2)
    weight = jnp.asarray(weight)
    groups = _check_groups(weight, x.shape[1], groups, 2, transposed=True)
    stride, dilation = int_tuple("stride", stride, 2), int_tuple("dilation", dilation, 2)
    padding, output_padding = int_tuple("padding", padding, 2), int_tuple("output_padding",
                                                                     output_padding, 2)
    if any(o >= max(s, d) for o, s, d in zip(output_padding, stride, dilation)):
        raise InputError(f"output_padding {output_padding} must be smaller than stride or dilation")
    c, o_g, kh, kw = weight.shape
    w = weight.reshape(groups, c // groups, o_g, kh, kw)  # (G, C/G, O/G, kH, kW)
    w = w.transpose(0, 2, 1, 3, 4).reshape(groups * o_g, c // groups, kh, kw)  # (O, C/G, kH, kW)
    w = w[:, :, ::-1, ::-1]  # flipped spatially
    pads = [(d * (k - 1) - p, d * (k - 1) - p + op)
            for d, k, p, op in zip(dilation, (kh, kw), padding, output_padding)]
    y = lax.conv_general_dilated(x, w, (1, 1), pads, lhs_dilation=stride, rhs_dilation=dilation,
                                 feature_group_count=groups, dimension_numbers=_DIMENSIONS[2],
                                 precision=lax.Precision.HIGHEST)  # (N, O, H_out, W_out)
    y = _add_bias(y, bias, 2)
    return y if batched else y[0]
