"""compare layer by layer: the JAX model's taps against torch's named submodules at the start.

A planted bug (a square weight used untransposed) is found at its layer: the layers before it
agree to rounding, it and every layer after part; a correct port has no first layer; a model
without taps has no layers.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import losses, models
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
        with recording() as taps:
            _port()(p, x)
    assert [name for name, _ in taps] == ["0", "1", "2", "3", "4"]
