"""Models and losses beyond the lecture, in both frameworks: MLP, logistic regression,
binary and multi-class cross-entropy, and parameters handed between the two exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import parity
from functional_fit import InputError, losses, models
from functional_fit.tolerances import GRAD_FLOAT64, rel_err

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "gelu"])
@pytest.mark.parametrize("sizes", [(1, 8, 1), (3, 5, 4, 2)])
def test_mlp_is_its_torch_twin(activation, sizes):
    module = parity.models.MLP(sizes, activation, dtype=torch.float64, seed=1)
    p = parity.params.from_module(module)
    assert list(p) == [f"{2 * k}.{w}" for k in range(len(sizes) - 1) for w in ("weight", "bias")]
    x = RNG.normal(size=(11, sizes[0]))
    ours = np.asarray(models.mlp(p, jnp.asarray(x), activation))
    theirs = module(torch.from_numpy(x)).detach().numpy()
    assert ours.shape == theirs.shape == (11, sizes[-1])
    assert rel_err(ours, theirs) < 1e-14
    # gradients with respect to every parameter, through a loss
    y = RNG.normal(size=(11, sizes[-1]))
    g = jax.grad(lambda p: losses.mse(models.mlp(p, jnp.asarray(x), activation), jnp.asarray(y)))(p)
    F.mse_loss(module(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    for k, par in module.named_parameters():
        assert rel_err(g[k], par.grad.numpy()) < GRAD_FLOAT64, k


def test_relu_at_zero_has_torch_gradient():
    """Where torch makes a choice, relu'(0) = 0: a unit exactly at 0 gets no gradient."""
    module = parity.models.MLP((1, 2, 1), "relu", dtype=torch.float64)
    p = {"0.weight": np.array([[1.0], [1.0]]), "0.bias": np.array([0.0, -1.0]),
         "2.weight": np.array([[1.0, 1.0]]), "2.bias": np.array([0.0])}
    parity.params.load(module, p)
    x = np.array([[0.0]])
    g = jax.grad(lambda p: jnp.sum(models.mlp(p, jnp.asarray(x), "relu")))(p)
    module(torch.from_numpy(x)).sum().backward()
    for k, par in module.named_parameters():
        np.testing.assert_array_equal(g[k], par.grad.numpy())


def test_logistic_is_a_linear_layer():
    module = parity.models.Logistic(3, 1, dtype=torch.float64, seed=0)
    p = parity.params.from_module(module)
    x = RNG.normal(size=(6, 3))
    ours = np.asarray(models.logistic(p, jnp.asarray(x)))
    assert ours.shape == (6,)
    np.testing.assert_allclose(ours, module(torch.from_numpy(x)).detach().numpy(), rtol=1e-15)


def _assert_loss_matches_torch(jax_loss, torch_loss, z, target):
    """The loss of logits z and its gradient: finite, torch's value, torch's gradient to the ulp."""
    v, g = jax.value_and_grad(jax_loss)(jnp.asarray(z), jnp.asarray(target))
    tz = torch.tensor(z, requires_grad=True)
    tv = torch_loss(tz, torch.from_numpy(target))
    tv.backward()
    assert np.isfinite(float(v)) and rel_err(float(v), tv.item()) < 1e-14
    np.testing.assert_allclose(g, tz.grad.numpy(), rtol=1e-15, atol=1e-17)


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_bce_with_logits_matches_torch(scale):
    z = RNG.normal(size=20) * scale
    y = np.concatenate([RNG.uniform(size=10), np.round(RNG.uniform(size=10))])
    _assert_loss_matches_torch(losses.bce_with_logits, F.binary_cross_entropy_with_logits, z, y)


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_cross_entropy_matches_torch(scale):
    z = RNG.normal(size=(12, 5)) * scale
    z[0] = 0.0  # a tie: every class equally likely
    labels = RNG.integers(0, 5, 12)
    _assert_loss_matches_torch(losses.cross_entropy, F.cross_entropy, z, labels)


def test_losses_refuse_what_torch_would_broadcast_or_misread():
    with pytest.raises(InputError, match="labels must lie in"):
        losses.cross_entropy(jnp.zeros((3, 2)), jnp.array([0, 1, 2]))
    with pytest.raises(InputError, match="labels must lie in"):
        parity.losses.cross_entropy(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="integer"):
        losses.cross_entropy(jnp.zeros((3, 2)), jnp.array([0.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="same shape"):
        losses.bce_with_logits(jnp.zeros((3, 1)), jnp.zeros(3))


def test_params_round_trip_bit_for_bit():
    module = parity.models.MLP((2, 7, 3), "gelu", seed=3)  # float32
    p = parity.params.from_module(module)
    assert {k: (v.shape, v.dtype) for k, v in p.items()} == {
        k: (tuple(v.shape), np.dtype("float32")) for k, v in module.state_dict().items()}
    other = parity.models.MLP((2, 7, 3), "gelu", seed=4)
    parity.params.load(other, p)
    for k, v in other.state_dict().items():
        assert v.numpy().tobytes() == p[k].tobytes()
    p["0.weight"][0, 0] = 99.0  # a copy: the module is untouched
    assert module.state_dict()["0.weight"][0, 0].item() != 99.0


@pytest.mark.parametrize("change, word", [
    (lambda p: p.pop("2.bias"), "missing '2.bias'"),
    (lambda p: p.update({"4.weight": np.zeros((1, 1))}), "not in the module '4.weight'"),
    (lambda p: p.update({"0.weight": np.zeros((7, 3))}), "params['0.weight'] has shape (7, 3)"),
])
def test_params_refuse_a_name_or_shape_that_does_not_match(change, word):
    module = parity.models.MLP((2, 7, 3), seed=0)
    p = parity.params.from_module(module)
    change(p)
    with pytest.raises(InputError) as info:
        parity.params.load(module, p)
    assert word in str(info.value)
