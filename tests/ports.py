"""Hand ports of torch models to flax NNX, flax linen and equinox, for tests/test_flax_params.py.

`parity.models.ResNet`, `Mixer` (Embedding, LayerNorm, self-attention, an MLP) and `Signal`
(Conv1d, GroupNorm, Linear) in each library, float64, layers defined in torch's
``state_dict`` order. Each port is a factory that
takes the torch model's sizes and returns a ``Port``: the library's model (an NNX module, linen
variables, or an equinox module with its state) and ``forward(model, x, train) -> (y, model)``
on torch's inputs (NCHW images, (N, T) tokens), the model coming back with its new running
statistics.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import flax.linen as linen
import jax
import jax.numpy as jnp
import torch
from flax import nnx
from torch import nn

from parity import params as pp

F64 = {"param_dtype": jnp.float64, "dtype": jnp.float64}


def _standard_promotion(fn):
    """`fn` under JAX's standard dtype promotion: flax's normalization layers promote to at
    least float32 with ``jnp.promote_types``, which the tests' strict mode refuses for float64."""
    def run(*args, **kwargs):
        with jax.numpy_dtype_promotion("standard"):
            return fn(*args, **kwargs)
    return run


class Mixer(nn.Module):
    """Embedding -> LayerNorm -> self-attention (residual) -> Linear -> tanh -> Linear.

    (N, T) token ids -> (N, T, out).
    """

    def __init__(self, vocab=11, dim=8, heads=2, hidden=6, out=3, dtype=torch.float64):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, dtype=dtype)
        self.norm = nn.LayerNorm(dim, dtype=dtype)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True, dtype=dtype)
        self.fc1 = nn.Linear(dim, hidden, dtype=dtype)
        self.fc2 = nn.Linear(hidden, out, dtype=dtype)

    def forward(self, ids):
        h = self.norm(self.embed(ids))  # (N, T, dim)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.fc2(torch.tanh(self.fc1(h)))  # (N, T, out)


class Signal(nn.Module):
    """Conv1d -> GroupNorm -> tanh -> mean over length -> Linear: (N, C, L) -> (N, out)."""

    def __init__(self, channels=2, width=4, groups=2, out=3, dtype=torch.float64):
        super().__init__()
        self.conv = nn.Conv1d(channels, width, 3, padding=1, dtype=dtype)
        self.norm = nn.GroupNorm(groups, width, dtype=dtype)
        self.fc = nn.Linear(width, out, dtype=dtype)

    def forward(self, x):
        h = torch.tanh(self.norm(self.conv(x)))  # (N, width, L)
        return self.fc(h.mean(dim=2))  # (N, out)


class Port(NamedTuple):
    model: object  # NNX module; linen (module, variables); equinox (module, state)
    forward: object  # (model, x, train) -> (y, model)
    order: list | None = None  # NNX, linen: the layers' paths in definition order


def _nlc(x):
    return jnp.transpose(jnp.asarray(x), (0, 2, 1))  # (N, C, L) -> (N, L, C)


def _nhwc(x):
    return jnp.transpose(jnp.asarray(x), (0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)


# --- flax NNX ----------------------------------------------------------------------------

class NnxBlock(nnx.Module):
    def __init__(self, cin, cout, stride, momentum, rngs):
        conv = dict(use_bias=False, rngs=rngs, **F64)
        bn = dict(momentum=momentum, epsilon=1e-5, rngs=rngs, **F64)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, padding=1, **conv)
        self.bn1 = nnx.BatchNorm(cout, **bn)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=1, **conv)
        self.bn2 = nnx.BatchNorm(cout, **bn)
        self.shortcut = nnx.List([
            nnx.Conv(cin, cout, (1, 1), strides=stride, padding="VALID", **conv),
            nnx.BatchNorm(cout, **bn)] if stride != 1 or cin != cout else [])

    def __call__(self, x, train=None):  # (N, H, W, cin) -> (N, H/stride, W/stride, cout)
        average = None if train is None else not train  # None: the module's train()/eval()
        out = nnx.relu(self.bn1(self.conv1(x), use_running_average=average))
        out = self.bn2(self.conv2(out), use_running_average=average)
        if len(self.shortcut):
            x = self.shortcut[1](self.shortcut[0](x), use_running_average=average)
        return nnx.relu(out + x)


class NnxResNet(nnx.Module):
    def __init__(self, in_channels, width, num_classes, momentum, seed=0):
        rngs = nnx.Rngs(seed)
        self.conv1 = nnx.Conv(in_channels, width, (3, 3), padding=1, use_bias=False,
                              rngs=rngs, **F64)
        self.bn1 = nnx.BatchNorm(width, momentum=momentum, epsilon=1e-5, rngs=rngs, **F64)
        self.layer1 = NnxBlock(width, width, 1, momentum, rngs)
        self.layer2 = NnxBlock(width, 2 * width, 2, momentum, rngs)
        self.fc = nnx.Linear(2 * width, num_classes, rngs=rngs, **F64)

    def __call__(self, x, train):  # (N, H, W, C) -> (N, num_classes)
        out = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
        out = self.layer2(self.layer1(out, train), train)  # (N, H/2, W/2, 2 width)
        return self.fc(jnp.mean(out, axis=(1, 2)))  # dropout 0 in the tests' train mode


@_standard_promotion
def _nnx_forward(model, x, train):
    # a copy, so that the argument keeps its running statistics; its attributes come back
    # sorted by name, hence the ports' order
    model = nnx.merge(*nnx.split(model))
    return model(x, train), model


def _attention_f64(query, key, value, **kwargs):
    """flax's attention without its fast path: with dropout 0, ``nnx.dot_product_attention``
    calls ``jax.nn.dot_product_attention``, which takes the softmax in float32 (7e-9 from torch
    in float64 here). (N, T, heads, head_dim) each -> (N, T, heads, head_dim)."""
    weights = linen.dot_product_attention_weights(query, key)  # (N, heads, T, T)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value)


class NnxMixer(nnx.Module):
    def __init__(self, vocab, dim, heads, hidden, out, seed=0):
        rngs = nnx.Rngs(seed)
        self.embed = nnx.Embed(vocab, dim, rngs=rngs, **F64)
        self.norm = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs, **F64)
        self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs,
                                           attention_fn=_attention_f64, **F64)
        self.fc1 = nnx.Linear(dim, hidden, rngs=rngs, **F64)
        self.fc2 = nnx.Linear(hidden, out, rngs=rngs, **F64)

    def __call__(self, ids, train):  # (N, T) -> (N, T, out)
        h = self.norm(self.embed(ids))  # (N, T, dim)
        h = h + self.attn(h, deterministic=True)
        return self.fc2(jnp.tanh(self.fc1(h)))


class NnxSignal(nnx.Module):
    def __init__(self, channels, width, groups, out, seed=0):
        rngs = nnx.Rngs(seed)
        self.conv = nnx.Conv(channels, width, (3,), padding=1, rngs=rngs, **F64)
        self.norm = nnx.GroupNorm(width, num_groups=groups, epsilon=1e-5, rngs=rngs, **F64)
        self.fc = nnx.Linear(width, out, rngs=rngs, **F64)

    def __call__(self, x, train):  # (N, L, C) -> (N, out)
        return self.fc(jnp.mean(jnp.tanh(self.norm(self.conv(x))), axis=1))


def _nnx_port(model, forward):
    return Port(model, forward, pp.nnx_order(model))


def nnx_resnet(in_channels, width, num_classes, momentum=0.9):
    return _nnx_port(NnxResNet(in_channels, width, num_classes, momentum),
                     lambda m, x, train: _nnx_forward(m, _nhwc(x), train))


def nnx_mixer(vocab, dim, heads, hidden, out):
    return _nnx_port(NnxMixer(vocab, dim, heads, hidden, out),
                     lambda m, x, train: _nnx_forward(m, jnp.asarray(x), train))


def nnx_signal(channels, width, groups, out):
    return _nnx_port(NnxSignal(channels, width, groups, out),
                     lambda m, x, train: _nnx_forward(m, _nlc(x), train))


# --- flax linen --------------------------------------------------------------------------

class LinenBlock(linen.Module):
    cout: int
    stride: int
    momentum: float

    @linen.compact
    def __call__(self, x, train):  # (N, H, W, cin) -> (N, H/stride, W/stride, cout)
        conv = dict(use_bias=False, **F64)
        bn = dict(use_running_average=not train, momentum=self.momentum, epsilon=1e-5, **F64)
        s = (self.stride, self.stride)
        out = linen.Conv(self.cout, (3, 3), s, padding=1, name="conv1", **conv)(x)
        out = linen.relu(linen.BatchNorm(name="bn1", **bn)(out))
        out = linen.Conv(self.cout, (3, 3), padding=1, name="conv2", **conv)(out)
        out = linen.BatchNorm(name="bn2", **bn)(out)
        if self.stride != 1 or x.shape[-1] != self.cout:
            x = linen.Conv(self.cout, (1, 1), s, padding="VALID", name="shortcut_0", **conv)(x)
            x = linen.BatchNorm(name="shortcut_1", **bn)(x)
        return linen.relu(out + x)


class LinenResNet(linen.Module):
    width: int
    num_classes: int
    momentum: float

    @linen.compact
    def __call__(self, x, train):  # (N, H, W, C) -> (N, num_classes)
        bn = dict(use_running_average=not train, momentum=self.momentum, epsilon=1e-5, **F64)
        out = linen.Conv(self.width, (3, 3), padding=1, use_bias=False, name="conv1", **F64)(x)
        out = linen.relu(linen.BatchNorm(name="bn1", **bn)(out))
        out = LinenBlock(self.width, 1, self.momentum, name="layer1")(out, train)
        out = LinenBlock(2 * self.width, 2, self.momentum, name="layer2")(out, train)
        return linen.Dense(self.num_classes, name="fc", **F64)(jnp.mean(out, axis=(1, 2)))


class LinenMixer(linen.Module):
    vocab: int
    dim: int
    heads: int
    hidden: int
    out: int

    @linen.compact
    def __call__(self, ids, train):  # (N, T) -> (N, T, out)
        h = linen.Embed(self.vocab, self.dim, name="embed", **F64)(ids)
        h = linen.LayerNorm(epsilon=1e-5, name="norm", **F64)(h)  # (N, T, dim)
        h = h + linen.MultiHeadDotProductAttention(self.heads, name="attn", **F64)(h, h)
        h = jnp.tanh(linen.Dense(self.hidden, name="fc1", **F64)(h))
        return linen.Dense(self.out, name="fc2", **F64)(h)


class LinenSignal(linen.Module):
    width: int
    groups: int
    out: int

    @linen.compact
    def __call__(self, x, train):  # (N, L, C) -> (N, out)
        h = linen.Conv(self.width, (3,), padding=1, name="conv", **F64)(x)
        h = linen.GroupNorm(self.groups, epsilon=1e-5, name="norm", **F64)(h)
        return linen.Dense(self.out, name="fc", **F64)(jnp.mean(jnp.tanh(h), axis=1))


@_standard_promotion
def _linen_port(module, x):
    variables = module.init(jax.random.key(0), x, False)
    order = pp.linen_order(module, x, False)

    @_standard_promotion
    def forward(model, x, train):
        _, variables = model
        if not train:
            return module.apply(variables, x, False), model
        y, new = module.apply(variables, x, True, mutable=["batch_stats"])
        return y, (module, {**variables, **new})
    return Port((module, variables), forward, order)


def linen_resnet(in_channels, width, num_classes, momentum=0.9):
    module = LinenResNet(width, num_classes, momentum)
    port = _linen_port(module, jnp.zeros((2, 8, 8, in_channels)))
    return port._replace(forward=lambda m, x, train: port.forward(m, _nhwc(x), train))


def linen_mixer(vocab, dim, heads, hidden, out):
    port = _linen_port(LinenMixer(vocab, dim, heads, hidden, out), jnp.zeros((2, 5), jnp.int64))
    return port._replace(forward=lambda m, x, train: port.forward(m, jnp.asarray(x), train))


def linen_signal(channels, width, groups, out):
    port = _linen_port(LinenSignal(width, groups, out), jnp.zeros((2, 6, channels)))
    return port._replace(forward=lambda m, x, train: port.forward(m, _nlc(x), train))


# --- equinox -----------------------------------------------------------------------------

class EqxBlock(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    bn2: eqx.nn.BatchNorm
    shortcut: list

    def __init__(self, cin, cout, stride, momentum, key):
        k1, k2, k3 = jax.random.split(key, 3)
        bn = dict(axis_name="batch", momentum=momentum, mode="ema", dtype=jnp.float64)
        conv = dict(use_bias=False, dtype=jnp.float64)
        self.conv1 = eqx.nn.Conv2d(cin, cout, 3, stride, padding=1, key=k1, **conv)
        self.bn1 = eqx.nn.BatchNorm(cout, **bn)
        self.conv2 = eqx.nn.Conv2d(cout, cout, 3, 1, padding=1, key=k2, **conv)
        self.bn2 = eqx.nn.BatchNorm(cout, **bn)
        self.shortcut = [eqx.nn.Conv2d(cin, cout, 1, stride, key=k3, **conv),
                         eqx.nn.BatchNorm(cout, **bn)] if stride != 1 or cin != cout else []

    def __call__(self, x, state, inference):  # (cin, H, W) -> (cout, H/stride, W/stride)
        out, state = self.bn1(self.conv1(x), state, inference=inference)
        out, state = self.bn2(self.conv2(jax.nn.relu(out)), state, inference=inference)
        if self.shortcut:
            x, state = self.shortcut[1](self.shortcut[0](x), state, inference=inference)
        return jax.nn.relu(out + x), state


class EqxResNet(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    layer1: EqxBlock
    layer2: EqxBlock
    fc: eqx.nn.Linear

    def __init__(self, in_channels, width, num_classes, momentum, key):
        k = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(in_channels, width, 3, padding=1, use_bias=False, key=k[0],
                                   dtype=jnp.float64)
        self.bn1 = eqx.nn.BatchNorm(width, "batch", momentum=momentum, mode="ema",
                                    dtype=jnp.float64)
        self.layer1 = EqxBlock(width, width, 1, momentum, k[1])
        self.layer2 = EqxBlock(width, 2 * width, 2, momentum, k[2])
        self.fc = eqx.nn.Linear(2 * width, num_classes, key=k[3], dtype=jnp.float64)

    def __call__(self, x, state, inference):  # (C, H, W) -> (num_classes,)
        out, state = self.bn1(self.conv1(x), state, inference=inference)
        out, state = self.layer1(jax.nn.relu(out), state, inference)
        out, state = self.layer2(out, state, inference)
        return self.fc(jnp.mean(out, axis=(1, 2))), state


class EqxMixer(eqx.Module):
    embed: eqx.nn.Embedding
    norm: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear

    def __init__(self, vocab, dim, heads, hidden, out, key):
        k = jax.random.split(key, 4)
        self.embed = eqx.nn.Embedding(vocab, dim, key=k[0], dtype=jnp.float64)
        self.norm = eqx.nn.LayerNorm(dim, eps=1e-5, dtype=jnp.float64)
        self.attn = eqx.nn.MultiheadAttention(
            heads, dim, use_query_bias=True, use_key_bias=True, use_value_bias=True,
            use_output_bias=True, key=k[1], dtype=jnp.float64)
        self.fc1 = eqx.nn.Linear(dim, hidden, key=k[2], dtype=jnp.float64)
        self.fc2 = eqx.nn.Linear(hidden, out, key=k[3], dtype=jnp.float64)

    def __call__(self, ids, state, inference):  # (T,) -> (T, out)
        h = jax.vmap(self.norm)(jax.vmap(self.embed)(ids))  # (T, dim)
        h = h + self.attn(h, h, h)
        return jax.vmap(self.fc2)(jnp.tanh(jax.vmap(self.fc1)(h))), state


def _eqx_forward(model, x, train):
    module, state = model
    y, state = jax.vmap(lambda xi, s: module(xi, s, not train), in_axes=(0, None),
                        out_axes=(0, None), axis_name="batch")(jnp.asarray(x), state)
    return y, (module, state)


def eqx_resnet(in_channels, width, num_classes, momentum=0.9):
    model = eqx.nn.make_with_state(EqxResNet)(in_channels, width, num_classes, momentum,
                                              jax.random.key(0))
    return Port(model, _eqx_forward)


def eqx_mixer(vocab, dim, heads, hidden, out):
    return Port((EqxMixer(vocab, dim, heads, hidden, out, jax.random.key(0)), None),
                _eqx_forward)


class EqxSignal(eqx.Module):
    conv: eqx.nn.Conv1d
    norm: eqx.nn.GroupNorm
    fc: eqx.nn.Linear

    def __init__(self, channels, width, groups, out, key):
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv1d(channels, width, 3, padding=1, key=k1, dtype=jnp.float64)
        self.norm = eqx.nn.GroupNorm(groups, width, eps=1e-5, dtype=jnp.float64)
        self.fc = eqx.nn.Linear(width, out, key=k2, dtype=jnp.float64)

    def __call__(self, x, state, inference):  # (C, L) -> (out,)
        return self.fc(jnp.mean(jnp.tanh(self.norm(self.conv(x))), axis=1)), state


def eqx_signal(channels, width, groups, out):
    return Port((EqxSignal(channels, width, groups, out, jax.random.key(0)), None), _eqx_forward)
