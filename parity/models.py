"""The lecture's models as ``nn.Module`` (cells 35 and 52), plus their plain-function forms.

``SimpleLinearModel`` and ``PolynomialModel`` keep the lecture's layout: one parameter ``w`` of
shape (p+1, 1), zeros by default, and ``numpy_parameters()`` for the path. Extended only by a
``dtype`` (the lecture's zeros are float32; ``dtype=torch.float64`` gives float64 parity).

`linear` and `polynomial` are the same computations as functions of a tensor ``w`` of shape
(p+1,) or (p+1, 1), mirroring `functional_fit.models`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from functional_fit import checks as _checks


def linear(w, x):
    """w[0] + w[1] * x; w (2,) or (2, 1), x (n,) -> (n,)."""
    return w[0] + w[1] * x


def polynomial(w, x):
    """sum_i w[i] * x**i, summed as the lecture does; w (p+1,) or (p+1, 1), x (n,) -> (n,)."""
    return torch.sum(torch.stack([w[i] * x**i for i in range(len(w))]), dim=0)  # (p+1, n) -> (n,)


def sine(w, x):
    """w[0] + w[1] * sin(w[2] * x); w (3,) or (3, 1), x (n,) -> (n,)."""
    return w[0] + w[1] * torch.sin(w[2] * x)


def _parameter(w, size: int | None, dtype, model: str) -> nn.Parameter:
    """The (p+1, 1) parameter: zeros of `size`, or `w` checked (length `size` unless None)."""
    if w is None:  # torch.zeros: float32 unless told otherwise
        return nn.Parameter(torch.zeros(size, 1, dtype=dtype or torch.float32))
    w = _checks.vector("w", w)  # torch.from_numpy keeps w's own dtype unless told otherwise
    if size is not None and w.shape != (size,):
        raise _checks.InputError(f"w must have shape ({size},) for the {model} model, got {w.shape}")
    # A copy: torch.from_numpy would share memory, and the in-place updates of a fit would
    # then rewrite the caller's array.
    return nn.Parameter(torch.tensor(w, dtype=dtype).reshape(-1, 1))  # (p+1, 1)


class _LectureModule(nn.Module):
    def numpy_parameters(self) -> np.ndarray:
        """Return a numpy version of the parameters, shape (p+1,)."""
        return np.array([p.detach().cpu().numpy() for p in self.parameters()]).flatten()


class SimpleLinearModel(_LectureModule):
    """The lecture's linear model: ``w[0] + w[1] * x``.

    Args:
      w: optional initial (2,) parameters; zeros by default, as in the lecture.
      dtype: parameter dtype; by default float32 for the zeros (``torch.zeros``) and w's own
        dtype for a given w (``torch.from_numpy``), as in the lecture.
    """

    def __init__(self, w=None, dtype=None):
        super().__init__()
        # Creating a nn.Parameter object allows torch to track parameters for us
        self.w = _parameter(w, 2, dtype, "linear")

    def forward(self, x):
        return linear(self.w, x)


class PolynomialModel(_LectureModule):
    """The lecture's polynomial model of degree p: ``sum_i w[i] * x**i``.

    Args:
      w: optional initial (p+1,) parameters; zeros by default.
      p: degree, used when `w` is None.
      dtype: parameter dtype; by default as `SimpleLinearModel`'s.
    """

    def __init__(self, w=None, p=2, dtype=None):
        super().__init__()
        # As in the lecture, a given w sets the degree (p is used only for zeros).
        size = _checks.nonnegative_int("p", p) + 1 if w is None else None
        self.w = _parameter(w, size, dtype, "polynomial")

    def forward(self, x):
        return polynomial(self.w, x)


class SineModel(_LectureModule):
    """A sine wave, ``w[0] + w[1] * sin(w[2] * x)``: the README's worked example of a new model.

    Args:
      w: optional initial (3,) offset, amplitude and frequency; zeros by default.
      dtype: parameter dtype; by default as `SimpleLinearModel`'s.
    """

    def __init__(self, w=None, dtype=None):
        super().__init__()
        self.w = _parameter(w, 3, dtype, "sine")

    def forward(self, x):
        return sine(self.w, x)


#: Activations as torch modules, by the names of `functional_fit.models.ACTIVATIONS`.
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Sequential):
    """``nn.Sequential(Linear, act, Linear, ..., Linear)``: the twin of `functional_fit.models.mlp`.

    Its ``state_dict`` names are ``"0.weight"`` (out, in), ``"0.bias"``, ``"2.weight"``, ...

    Args:
      sizes: layer widths, input first: ``(1, 16, 1)`` is 1 -> 16 -> 1.
      activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"gelu"``.
      dtype: the parameters' dtype (torch's default float32 when None).
      seed: seeds torch's initialization (``torch.manual_seed``) when given.
    """

    def __init__(self, sizes, activation: str = "tanh", dtype=None, seed: int | None = None):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise _checks.InputError(f"sizes must list at least two positive widths, got {sizes}")
        _checks.choice("activation", activation, tuple(ACTIVATIONS))
        if seed is not None:
            torch.manual_seed(seed)
        layers = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if k:
                layers.append(ACTIVATIONS[activation]())
            layers.append(nn.Linear(a, b, dtype=dtype))
        super().__init__(*layers)


class Logistic(nn.Linear):
    """Logistic regression, an ``nn.Linear(d, k)``: the twin of `functional_fit.models.logistic`.

    Its ``state_dict`` is ``"weight"`` (k, d) and ``"bias"`` (k,). It takes (n, d) inputs, or
    (n,) as (n, 1), and returns (n, k) logits, or (n,) when k = 1, as its JAX twin.
    """

    def __init__(self, d: int = 1, k: int = 1, dtype=None, seed: int | None = None):
        if seed is not None:
            torch.manual_seed(seed)
        super().__init__(d, k, dtype=dtype)

    def forward(self, x):
        z = super().forward(x[:, None] if x.ndim == 1 else x)  # (n, k)
        return z[:, 0] if z.shape[1] == 1 else z


class BasicBlock(nn.Module):
    """ResNet's basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the input (through a strided 1x1
    conv and BN when the shape changes), then ReLU. (N, in, H, W) -> (N, out, H/stride, W/stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dtype=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(out_channels, dtype=dtype)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(out_channels, dtype=dtype)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False, dtype=dtype),
                nn.BatchNorm2d(out_channels, dtype=dtype))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))  # (N, out, H', W')
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet: the twin of `functional_fit.models.resnet`.

    conv3x3-BN-ReLU, a basic block at `width` channels, a strided one at 2 * `width`, adaptive
    average pooling to 1 x 1, Dropout, and a linear head. (N, in_channels, H, W) images ->
    (N, num_classes) logits. Its ``state_dict`` holds the parameters and BatchNorm's buffers
    (``running_mean``, ``running_var``, ``num_batches_tracked``).

    Args:
      in_channels: the images' channels.
      width: the first block's channels.
      num_classes: the head's outputs.
      dropout: Dropout's probability before the head.
      dtype: the parameters' dtype (torch's default float32 when None).
      seed: seeds torch's initialization (``torch.manual_seed``) when given.
    """

    def __init__(self, in_channels: int = 3, width: int = 8, num_classes: int = 10,
                 dropout: float = 0.1, dtype=None, seed: int | None = None):
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(width, dtype=dtype)
        self.layer1 = BasicBlock(width, width, dtype=dtype)
        self.layer2 = BasicBlock(width, 2 * width, stride=2, dtype=dtype)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * width, num_classes, dtype=dtype)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))  # (N, width, H, W)
        out = self.layer2(self.layer1(out))  # (N, 2 width, H/2, W/2)
        out = torch.flatten(self.pool(out), 1)  # (N, 2 width)
        return self.fc(self.dropout(out))  # (N, num_classes)
