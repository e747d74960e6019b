"""torch.nn.functional in JAX: torch's names, arguments, defaults and layouts (NCHW, (out, in)).

Porting an ``F.`` call is a change of import: ``torch.nn.functional.conv2d(x, w, b, padding=1)``
becomes ``functional_fit.nn.conv2d(x, w, b, padding=1)``. Each function is checked against
torch.nn.functional in float64, values and gradients (tests/test_nn_conv.py).
"""

from functional_fit.nn.activation import gelu, log_softmax, relu, sigmoid, silu, softmax, tanh
from functional_fit.nn.conv import conv1d, conv2d, conv_transpose2d, linear
from functional_fit.nn.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d

__all__ = [
    "linear", "conv1d", "conv2d", "conv_transpose2d",
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "relu", "gelu", "silu", "tanh", "sigmoid", "softmax", "log_softmax",
]
