"""torch.nn.functional's 2-d pooling in JAX: NCHW or unbatched (C, H, W), torch's output sizes.

The output size is torch's: floor (or ceil, with ``ceil_mode``) of
(H + 2 * padding - dilation * (k - 1) - 1) / stride, plus 1, where a ceil_mode window that
would start in the right padding is dropped. `avg_pool2d` divides each window as torch does:
by the window clipped to the padded input (``count_include_pad=True``), by its real elements
only (False), or by ``divisor_override``. `adaptive_avg_pool2d` averages torch's windows
[floor(i * H / out), ceil((i + 1) * H / out)), which overlap when out does not divide H.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from functional_fit.checks import InputError
from functional_fit.nn.shapes import batched_input, int_tuple


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling output length along one axis."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window would start in the right padding
    return out


def _windows(name, input, kernel_size, stride, padding, dilation, ceil_mode):  # the pool's 7 args
    """(x (N, C, H, W), batched, k, s, p, d, out sizes), torch's arguments checked."""
    x, batched = batched_input(name, input, 2)
    k = int_tuple("kernel_size", kernel_size, 2)
    s = k if stride is None or stride == [] else int_tuple("stride", stride, 2)
    p, d = int_tuple("padding", padding, 2), int_tuple("dilation", dilation, 2)
    if 0 in k or 0 in s or 0 in d:
        raise InputError(f"kernel_size, stride and dilation must be positive, got {k}, {s}, {d}")
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        raise InputError(f"padding {p} must be at most half of kernel_size {k}")
    out = tuple(_out_size(n, *a, ceil_mode) for n, a in zip(x.shape[2:], zip(k, s, p, d)))
    if min(out) < 1:
        raise InputError(f"input of shape {x.shape} is too small for kernel_size {k}")
    return x, batched, k, s, p, d, out


def _reduce(x, init, op, k, s, p, d, out):
    """lax.reduce_window over H, W with torch's padding and output size: (N, C, *out).

    `init` is a numpy scalar: a concrete identity (-inf for max, 0 for add) is what lets JAX
    take its differentiable max and sum windows, under jit too (a traced init makes the
    generic reduce_window, which has no reverse-mode rule).
    """
    highs = [max((o - 1) * si + di * (ki - 1) + 1 - n - pi, 0)
             for o, si, di, ki, n, pi in zip(out, s, d, k, x.shape[2:], p)]
    y = lax.reduce_window(x, init, op, (1, 1) + k, (1, 1) + s,
                          [(0, 0), (0, 0)] + [(pi, h) for pi, h in zip(p, highs)],
                          window_dilation=(1, 1) + d)  # (N, C, >= out_h, >= out_w)
    return y[:, :, :out[0], :out[1]]  # (N, C, out_h, out_w)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):  # torch's F.max_pool2d, keyword for keyword
    """The largest element of each window: (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out).

    Padding counts as -inf. ``return_indices=True`` is refused (use `jnp.argmax` on windows).
    """
    if return_indices:
        raise InputError("return_indices=True is not supported by functional_fit.nn.max_pool2d")
    x, batched, k, s, p, d, out = _windows("input", input, kernel_size, stride, padding,
                                           dilation, ceil_mode)
    if d == (1, 1):
        y = _reduce(x, np.array(-np.inf, x.dtype), lax.max, k, s, p, d, out)
    else:
        y = _dilated_max(x, k, s, p, d, out)
    return y if batched else y[0]


def _dilated_max(x, k, s, p, d, out):
    """max_pool2d with dilation, whose reduce_window JAX cannot differentiate: (N, C, *out).

    The kH * kW strided views are stacked in torch's row-major window order and the first
    largest is taken, so the gradient goes to the element torch's backward picks.
    """
    spans = [(o - 1) * si + di * (ki - 1) + 1 for o, si, di, ki in zip(out, s, d, k)]
    pads = [(pi, max(span - n - pi, 0)) for pi, span, n in zip(p, spans, x.shape[2:])]
    xp = jnp.pad(x, [(0, 0), (0, 0)] + pads, constant_values=-jnp.inf)  # (N, C, H + .., W + ..)
    lh, lw = [(o - 1) * si + 1 for o, si in zip(out, s)]  # one window's start to the last's
    views = jnp.stack([xp[:, :, i * d[0]:i * d[0] + lh:s[0], j * d[1]:j * d[1] + lw:s[1]]
                       for i in range(k[0]) for j in range(k[1])])  # (kH * kW, N, C, *out)
    first = jnp.argmax(views, axis=0)[None]  # (1, N, C, *out)
    return jnp.take_along_axis(views, first, axis=0)[0]  # (N, C, *out)


def _counts(size: int, k: int, s: int, p: int, out: int, include_pad: bool) -> np.ndarray:
    """Torch's averaging divisor along one axis, per output position: (out,)."""
    starts = np.arange(out) * s - p
    ends = np.minimum(starts + k, size + p)
    if include_pad:
        return (ends - starts).astype(np.float64)
    return (np.minimum(ends, size) - np.maximum(starts, 0)).astype(np.float64)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):  # torch's F.avg_pool2d
    """The mean of each window: (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out).

    Padding counts as 0. The divisor: ``divisor_override`` if given; else the window clipped to
    the padded input (``count_include_pad``), or to the input alone.
    """
    x, batched, k, s, p, _, out = _windows("input", input, kernel_size, stride, padding, 1,
                                           ceil_mode)
    sums = _reduce(x, np.array(0, x.dtype), lax.add, k, s, p, (1, 1), out)  # (N, C, *out)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, int) \
                or divisor_override <= 0:
            raise InputError(f"divisor_override must be a positive int, got {divisor_override!r}")
        return (sums / divisor_override) if batched else (sums / divisor_override)[0]
    ch, cw = (_counts(n, *a, count_include_pad) for n, a in zip(x.shape[2:], zip(k, s, p, out)))
    y = sums / jnp.asarray(np.outer(ch, cw)[None, None], x.dtype)  # (N, C, out_h, out_w)
    return y if batched else y[0]


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """(out, size): row i averages torch's window [floor(i*size/out), ceil((i+1)*size/out))."""
    m = np.zeros((out, size))
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool2d(input, output_size):
    """Means over torch's adaptive windows: (N, C, H, W) or (C, H, W) -> (N, C, *output_size).

    output_size an int or a pair, None in a pair keeping that input size.
    """
    x, batched = batched_input("input", input, 2)
    sizes = (output_size,) * 2 if isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != 2:
        raise InputError(f"output_size must be an int or a pair, got {output_size!r}")
    sizes = tuple(n if o is None else o for o, n in zip(sizes, x.shape[2:]))
    if not all(isinstance(o, int) and o > 0 for o in sizes):
        raise InputError(f"output_size must hold positive ints or None, got {output_size!r}")
    mh, mw = (jnp.asarray(_adaptive_matrix(n, o), x.dtype) for n, o in zip(x.shape[2:], sizes))
    y = jnp.einsum("oh,nchw,pw->ncop", mh, x, mw,
                   precision="highest")  # (N, C, out_h, out_w)
    return y if batched else y[0]
