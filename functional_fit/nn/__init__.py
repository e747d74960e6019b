"""torch.nn.functional's pieces in JAX, torch's names, arguments and defaults."""

from functional_fit.nn.init import (
    bias_uniform,
    calculate_gain,
    conv2d_params,
    fan_in_and_fan_out,
    kaiming_uniform,
    linear_params,
    normal,
    uniform,
)
from functional_fit.nn.loss import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)

__all__ = [
    "bias_uniform",
    "calculate_gain",
    "conv2d_params",
    "fan_in_and_fan_out",
    "kaiming_uniform",
    "linear_params",
    "normal",
    "uniform",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
]
