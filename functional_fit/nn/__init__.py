"""torch.nn.functional in JAX: torch's names, arguments, defaults and layouts (NCHW, (out, in)).

Porting an ``F.`` call is a change of import: ``torch.nn.functional.conv2d(x, w, b, padding=1)``
becomes ``functional_fit.nn.conv2d(x, w, b, padding=1)``. Where torch mutates in place
(`batch_norm`'s running statistics in training mode) the function returns the new values as
well. torch's default initialization is `functional_fit.nn.init`, as ``torch.nn.init``. Each
function is checked against torch in float64, values and gradients (tests/test_nn_conv.py,
tests/test_nn_norm.py, tests/test_nn_loss.py; the initializers statistically,
tests/test_nn_init.py).
"""

from functional_fit.nn import init
from functional_fit.nn.activation import gelu, log_softmax, relu, sigmoid, silu, softmax, tanh
from functional_fit.nn.attention import multi_head_attention_forward, scaled_dot_product_attention
from functional_fit.nn.conv import conv1d, conv2d, conv_transpose2d, linear
from functional_fit.nn.dropout import dropout, dropout_keep
from functional_fit.nn.loss import (binary_cross_entropy_with_logits, cross_entropy, huber_loss,
                                    l1_loss, mse_loss, nll_loss, smooth_l1_loss)
from functional_fit.nn.normalization import batch_norm, group_norm, layer_norm
from functional_fit.nn.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from functional_fit.nn.sparse import embedding

__all__ = [
    "linear", "conv1d", "conv2d", "conv_transpose2d",
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "relu", "gelu", "silu", "tanh", "sigmoid", "softmax", "log_softmax",
    "batch_norm", "layer_norm", "group_norm",
    "embedding",
    "dropout", "dropout_keep",
    "scaled_dot_product_attention", "multi_head_attention_forward",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "nll_loss", "cross_entropy",
    "binary_cross_entropy_with_logits",
    "init",
]
