"""compare layer by layer: the JAX model's taps against torch's named submodules at the start,
each layer's output and the loss's gradient with respect to it.

A planted forward bug (a square weight used untransposed, a conv kernel with its spatial axes
swapped) is found at its layer: the layers before it agree to rounding, it and every layer
after part; a planted backward bug (a custom VJP with a wrong rule, a misplaced stop_gradient)
leaves every output alike and parts in the gradients from the layer that feeds it, towards the
input. A correct port has no first layer; a model without taps has no layers. flax NNX, linen
and equinox ports and `parity.export.to_jax` twins name their layers as torch does, untapped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import functional_fit as ff
import parity
from comparison import layers
from functional_fit import losses, models, nn, taps
from functional_fit.taps import recording, tap


def _port(transposed: bool = True):
    """`parity.models.MLP((2, 4, 4, 1), "tanh")` with a tap per submodule ("0" ... "4"); with
    ``transposed=False`` the square middle weight is used as stored (a classic port bug)."""
    def model(p, x):
        h = tap("0", x @ p["0.weight"].T + p["0.bias"][None, :])
        h = tap("1", jnp.tanh(h))
        w = p["2.weight"].T if transposed else p["2.weight"]
        h = tap("2", h @ w + p["2.bias"][None, :])
        h = tap("3", jnp.tanh(h))
        return tap("4", h @ p["4.weight"].T + p["4.bias"][None, :])
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 2)), rng.normal(size=(20, 1))


def _compare(model, data):
    module = parity.models.MLP((2, 4, 4, 1), "tanh", dtype=torch.float64, seed=0)
    with ff.float64():
        return parity.compare(model, module, *data, jax_loss=losses.mse,
                              torch_loss=parity.losses.mse, optimizer=("SGD", {"lr": 0.1}),
                              steps=3)


def test_a_correct_port_agrees_at_every_layer(data):
    c = _compare(_port(), data)
    assert [layer.name for layer in c.layers] == ["0", "1", "2", "3", "4"]
    assert c.ok and c.first_layer is None and not any(layer.parts for layer in c.layers)


def test_a_transposed_weight_is_found_at_its_layer(data):
    c = _compare(_port(transposed=False), data)
    assert not c.ok and c.culprit == "model" and c.first_layer == "2", c.table()
    parts = {layer.name: layer.parts for layer in c.layers if layer.step == 0}
    assert parts == {"0": False, "1": False, "2": True, "3": True, "4": True}
    assert "layer 2" in c.table() and "<-- parts" in c.table()


def test_a_model_without_taps_has_no_layers_and_taps_do_nothing_outside(data):
    c = _compare(models.mlp, data)
    assert c.layers == () and c.first_layer is None and c.ok
    x = jnp.ones((3, 2))
    p = {k: jnp.asarray(v) for k, v in parity.params.from_module(
        parity.models.MLP((2, 4, 4, 1), "tanh", dtype=torch.float64, seed=0)).items()}
    with ff.float64():
        assert np.array_equal(_port()(p, x), models.mlp(p, x))  # tap returns its value
        with recording() as tapped:
            _port()(p, x)
    assert [name for name, _ in tapped] == ["0", "1", "2", "3", "4"]


# --------------------------------------------------------------------------- gradients by layer


@jax.custom_vjp
def _tanh_wrong_backward(h):
    """tanh, whose backward uses 1 - tanh (not 1 - tanh**2): the forward is exact."""
    return jnp.tanh(h)


_tanh_wrong_backward.defvjp(lambda h: (jnp.tanh(h), jnp.tanh(h)),
                            lambda t, g: (g * (1 - t),))


def _backward_bug(kind: str):
    """`_port()` with a wrong backward and the same forward: ``"custom_vjp"``, layer 3's
    tanh with a wrong derivative; ``"stop_gradient"``, layer 2's input cut from the graph."""
    def model(p, x):
        h = tap("0", x @ p["0.weight"].T + p["0.bias"][None, :])
        h = tap("1", jnp.tanh(h))
        if kind == "stop_gradient":
            h = jax.lax.stop_gradient(h)
        h = tap("2", h @ p["2.weight"].T + p["2.bias"][None, :])
        h = tap("3", _tanh_wrong_backward(h) if kind == "custom_vjp" else jnp.tanh(h))
        return tap("4", h @ p["4.weight"].T + p["4.bias"][None, :])
    return model


def test_torchs_layer_gradients_follow_the_chain_rule_and_leave_grad_alone(data):
    """d mean((out - y)**2) / d out = 2 (out - y) / n at the last layer, times its weight at
    the layer before; no parameter's ``.grad`` is set."""
    module = parity.models.MLP((2, 4, 4, 1), "tanh", dtype=torch.float64, seed=0)
    x, y = data
    found = layers.torch_layers(module, torch.from_numpy(x), torch.from_numpy(y),
                                parity.losses.mse)
    assert [name for name, _, _ in found] == ["0", "1", "2", "3", "4"]
    out, last = found[4][1], found[4][2]
    np.testing.assert_allclose(last, 2 * (out - y) / len(y), rtol=1e-12)
    np.testing.assert_allclose(found[3][2], last @ module[4].weight.detach().numpy(),
                               rtol=1e-12)
    assert all(p.grad is None for p in module.parameters())


def test_a_correct_port_agrees_in_every_layers_gradient(data):
    c = _compare(_port(), data)
    assert all(0 <= layer.gradient <= layer.gradient_tolerance for layer in c.layers)
    assert c.first_gradient_layer is None


@pytest.mark.parametrize("kind, first", [("custom_vjp", "2"), ("stop_gradient", "1")])
def test_a_wrong_backward_parts_in_the_gradients_only(data, kind, first):
    """The outputs agree at every layer; the gradients agree from the loss down to the wrong
    rule's output and part from its input on: the first gradient layer, in backward order, is
    the layer that feeds the wrong rule (layer 3's custom VJP, layer 2's cut input)."""
    c = _compare(_backward_bug(kind), data)
    assert c.first_layer is None and c.forward_diff <= c.tolerance.value
    assert c.culprit == "gradient" and c.first_gradient_layer == first, c.table()
    cut = int(first)
    assert [layer.gradient_parts for layer in c.layers] == [k <= cut for k in range(5)]
    assert f"layer {first}" in c.table() and "<-- gradient parts" in c.table()


def test_tap_gradients_and_batched_taps_match_closed_forms():
    """`taps.gradients`: d sum(h**2) / dh = 2h; `taps.vmap`: taps inside a map come out
    batched, and their gradients too (d sum((3v)**2) / d(3v) = 6v); a tap inside the mapped
    function's own map is left out."""
    x = jnp.arange(6.0).reshape(3, 2)
    found, grads = taps.gradients(lambda: jnp.sum(tap("h", 2.0 * x) ** 2))
    assert [name for name, _ in found] == ["h"]
    np.testing.assert_allclose(grads[0], 4.0 * x)
    mapped = taps.vmap(lambda v: tap("a", 3.0 * v))
    with jax.disable_jit():
        with recording() as inside:
            mapped(x)
        found, grads = taps.gradients(lambda: jnp.sum(mapped(x) ** 2))
    assert [name for name, _ in inside] == ["a"] and inside[0][1].shape == (3, 2)
    np.testing.assert_allclose(inside[0][1], 3.0 * x)
    np.testing.assert_allclose(grads[0], 6.0 * x)
    np.testing.assert_array_equal(mapped(x), 3.0 * x)  # outside a recording: jax.vmap
    # a tap inside a map of the model's own cannot leave it: left out, the others kept
    nested = taps.vmap(lambda v: tap("b", jax.vmap(lambda e: tap("inside", 2.0 * e))(v)))
    with jax.disable_jit():
        found, grads = taps.gradients(lambda: jnp.sum(nested(x) ** 2))
    assert [name for name, _ in found] == ["b"]
    np.testing.assert_allclose(grads[0], 4.0 * x)


# --------------------------------------------------------------------------- automatic names


def _mlp_ports(transposed: bool = False):
    """`parity.models.MLP((2, 4, 4, 1), "tanh")` as an NNX, linen and equinox module and a
    `parity.export.to_jax` twin; with `transposed`, the square middle weight used as stored
    (a subclass of the library's linear layer; the twin's weight transposed)."""
    import equinox as eqx
    import flax.linen as linen
    from flax import nnx

    class NnxTransposed(nnx.Linear):
        def __call__(self, x):  # (N, in) -> (N, out), the (in, out) kernel used as (out, in)
            return x @ self.kernel[...].T + self.bias[...][None, :]

    class EqxTransposed(eqx.nn.Linear):
        def __call__(self, x, *, key=None):  # (in,) -> (out,), the (out, in) weight as (in, out)
            return self.weight.T @ x + self.bias

    f64 = {"param_dtype": jnp.float64}
    middle = NnxTransposed if transposed else nnx.Linear
    nnx_mlp = nnx.Sequential(nnx.Linear(2, 4, rngs=nnx.Rngs(0), **f64), nnx.tanh,
                             middle(4, 4, rngs=nnx.Rngs(1), **f64), nnx.tanh,
                             nnx.Linear(4, 1, rngs=nnx.Rngs(2), **f64))
    linen_mlp = linen.Sequential([linen.Dense(4, **f64), linen.tanh, linen.Dense(4, **f64),
                                  linen.tanh, linen.Dense(1, **f64)])
    eqx_mlp = eqx.nn.MLP(2, 1, 4, 2, activation=jnp.tanh, key=jax.random.key(0),
                         dtype=jnp.float64)
    if transposed:
        eqx_mlp = eqx.tree_at(lambda m: m.layers[1], eqx_mlp,
                              EqxTransposed(4, 4, key=jax.random.key(1), dtype=jnp.float64))
    module = parity.models.MLP((2, 4, 4, 1), "tanh", dtype=torch.float64, seed=0)
    fn, params = parity.export.to_jax(module, torch.zeros(3, 2, dtype=torch.float64))
    twin, _, _ = parity.export.as_model(fn, params)
    if transposed:
        twin = lambda p, x, twin=twin: twin({**p, "2.weight": p["2.weight"].T}, x)  # noqa: E731
    return {"nnx": nnx_mlp, "linen": (linen_mlp, linen_mlp.init(jax.random.key(0),
                                                                 jnp.ones((1, 2)))),
            "equinox": eqx_mlp, "to_jax": twin}


#: The torch submodules each port taps: the layers with weights (flax's and equinox's
#: activations are functions, not modules), every module in the exported graph.
MLP_LAYERS = {"nnx": ["0", "2", "4"], "linen": ["0", "2", "4"], "equinox": ["0", "2", "4"],
              "to_jax": ["0", "1", "2", "3", "4"]}


@pytest.mark.parametrize("library", list(MLP_LAYERS))
def test_library_ports_and_twins_name_their_layers_as_torch(data, library):
    """A flax NNX, linen or equinox port of torch's MLP, and its to_jax twin, tap their layers
    under torch's names without a tap written: a correct port agrees at every layer; the
    square middle weight used untransposed parts first at its layer, torch's ``2``."""
    with ff.float64(), jax.numpy_dtype_promotion("standard"):
        good = _compare(_mlp_ports()[library], data)
        bad = None if library == "linen" else _compare(_mlp_ports(True)[library], data)
    assert [layer.name for layer in good.layers] == MLP_LAYERS[library]
    assert good.ok and good.first_layer is None and good.first_gradient_layer is None
    if bad is not None:
        assert bad.culprit == "model" and bad.first_layer == "2", bad.table()


#: The ResNet's layers a flax or equinox port taps, in torch's forward order: every torch
#: submodule it calls (its ReLUs and pooling are functions); the twin taps every module of
#: the exported graph (the shortcut's Sequential, the pooling, the dropout too).
RESNET_LAYERS = ["conv1", "bn1", "layer1.conv1", "layer1.bn1", "layer1.conv2", "layer1.bn2",
                 "layer1", "layer2.conv1", "layer2.bn1", "layer2.conv2", "layer2.bn2",
                 "layer2.shortcut.0", "layer2.shortcut.1", "layer2", "fc"]
TWIN_LAYERS = [*RESNET_LAYERS[:13], "layer2.shortcut", "layer2", "pool", "dropout", "fc"]


def _resnet():
    return parity.models.ResNet(3, 4, 5, dropout=0.0, dtype=torch.float64, seed=0)


def _resnet_port(library: str, swapped: bool = False):
    """`_resnet()` ported to NNX (NHWC inside: its outputs are compared transposed), to
    equinox (one example, CHW; held in a field ``net``, a prefix its names drop) or as the
    to_jax twin; with `swapped`, the twin's ``layer1.conv2`` kernel has its spatial axes
    swapped."""
    import equinox as eqx

    from tests import ports

    class NnxNet(ports.NnxResNet):
        def __call__(self, x):  # (N, C, H, W) -> (N, classes)
            return super().__call__(jnp.transpose(x, (0, 2, 3, 1)), True)

    class EqxNet(eqx.Module):
        net: ports.EqxResNet

        def __init__(self, key):
            self.net = ports.EqxResNet(3, 4, 5, 0.9, key)

        def __call__(self, x, state):  # (C, H, W) -> (classes,), training mode
            return self.net(x, state, False)

    if library == "nnx":
        return NnxNet(3, 4, 5, 0.9)
    if library == "equinox":
        return eqx.nn.make_with_state(EqxNet)(jax.random.key(0))
    fn, params = parity.export.to_jax(_resnet(), torch.zeros(2, 3, 6, 6, dtype=torch.float64))
    twin, _, _ = parity.export.as_model(fn, params)
    if not swapped:
        return twin

    def wrong(p, s, x, key=None):
        w = p["layer1.conv2.weight"]  # (O, I, kh, kw)
        return twin({**p, "layer1.conv2.weight": jnp.swapaxes(w, 2, 3)}, s, x, key)

    return wrong


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return rng.normal(size=(6, 3, 6, 6)), np.arange(6) % 5


def _compare_resnet(model, images):
    with ff.float64(), jax.numpy_dtype_promotion("standard"):
        return parity.compare(model, _resnet(), *images, jax_loss=nn.cross_entropy,
                              torch_loss=F.cross_entropy, optimizer=("SGD", {"lr": 0.1}),
                              steps=1)


@pytest.mark.slow
@pytest.mark.parametrize("port, names", [("nnx", RESNET_LAYERS), ("equinox", RESNET_LAYERS),
                                         ("to_jax", TWIN_LAYERS)])
def test_resnet_ports_agree_at_every_layer_under_torchs_names(images, port, names):
    """The ResNet's NNX and equinox ports and its to_jax twin, BatchNorm in training mode:
    every layer's output and gradient agree with torch's at the start, under torch's names.
    (Their running variances part after the step: flax and equinox update them with the
    biased variance; `tests/test_state.py`.)"""
    c = _compare_resnet(_resnet_port(port), images)
    assert [layer.name for layer in c.layers if layer.step == 0] == names
    assert not any(layer.parts or layer.gradient_parts for layer in c.layers
                   if layer.step == 0), c.table()
    assert c.first_gradient_layer is None
    if port == "to_jax":  # torch's own conventions: no divergence, no first layer
        assert c.ok and c.first_layer is None, c.table()
    else:  # the running variance parts at step 1: its BatchNorm is the first layer
        assert c.culprit == "state" and c.first_layer == (
            c.first_divergence.parameter.rpartition(".")[0]), c.table()


@pytest.mark.slow
def test_a_swapped_conv_kernel_is_found_at_its_layer(images):
    c = _compare_resnet(_resnet_port("to_jax", swapped=True), images)
    assert c.culprit == "model" and c.first_layer == "layer1.conv2", c.table()
    assert not any(layer.parts for layer in c.layers[:4])
