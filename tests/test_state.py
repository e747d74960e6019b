"""Models with state and randomness: the engine, parity.fit and compare, against torch.

A small ResNet (`parity.models.ResNet`: BatchNorm with running statistics, a skip connection,
adaptive pooling, Dropout) and its JAX twin (`functional_fit.models.resnet`) are trained in both
frameworks from the same start, on the same batches, with the same dropout masks
(`parity.dropout` replays JAX's in torch), and their parameters and buffers compared step by
step. Planted bugs in the state's update are caught at the buffer that parts.
"""

from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import functional_fit as ff
import parity
from functional_fit import engine, models, nn

N, CLASSES, WIDTH = 24, 5, 4


@pytest.fixture(scope="module")
def images():
    """(24, 3, 8, 8) float64 images and (24,) labels in [0, 5)."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, 3, 8, 8)), rng.integers(0, CLASSES, N)


@functools.lru_cache(maxsize=None)
def _resnet(dropout=0.2, momentum=0.1):
    """The JAX twin of ``parity.models.ResNet(dropout=dropout)``, BatchNorm's `momentum` (one
    function per setting, so that its fits share their compiled programs)."""

    def model(params, state, x, key=None):
        return models.resnet(params, state, x, key=key, dropout=dropout, momentum=momentum)

    return model


def _split(module):
    """(parameters, buffers) of a module's state_dict, as numpy by name."""
    state = parity.params.from_module(module)
    names = {k for k, _ in module.named_parameters()}
    return ({k: v for k, v in state.items() if k in names},
            {k: v for k, v in state.items() if k not in names})


def _torch_module(dropout=0.2):
    return parity.models.ResNet(3, WIDTH, CLASSES, dropout=dropout, dtype=torch.float64, seed=0)


def _both(images, steps=None, order=None, batch_size=None, key=jax.random.key(7)):
    """The same SGD fit of the ResNet in JAX (fit.train) and torch (parity.fit.train)."""
    x, y = images
    module = _torch_module()
    params, state = _split(module)
    length = dict(steps=steps) if order is None else dict(order=order, batch_size=batch_size)
    jax_fit = ff.fit.train(params, x, y, model=_resnet(), loss=nn.cross_entropy,
                           optimizer=ff.optim.SGD(lr=0.05, momentum=0.9), state=state, key=key,
                           **length)
    torch_fit = parity.fit.train(module, F.cross_entropy, torch.from_numpy(x),
                                 torch.from_numpy(y), key=key, **length,
                                 optimizer=torch.optim.SGD(module.parameters(), lr=0.05,
                                                           momentum=0.9))
    return jax_fit, torch_fit, params, state


def test_a_fit_with_state_and_dropout_follows_torch_parameters_and_buffers(images):
    """Eight minibatch steps: every parameter and every buffer (running mean and variance,
    num_batches_tracked) on JAX's path equals torch's to rounding; the losses too."""
    order = ff.batch_order(N, 2, seed=1)
    jax_fit, torch_fit, params, state = _both(images, order=order, batch_size=7)
    assert jax_fit.losses.shape == (8,)  # 2 epochs of 7, 7, 7, 3
    np.testing.assert_allclose(jax_fit.losses, torch_fit.losses, rtol=1e-12)
    for name in params:
        np.testing.assert_allclose(jax_fit.path[name], torch_fit.path[name], rtol=1e-11,
                                   atol=1e-13, err_msg=name)
    for name in state:
        np.testing.assert_allclose(jax_fit.state_path[name], torch_fit.path[name], rtol=1e-11,
                                   atol=1e-13, err_msg=name)
    assert int(jax_fit.state["bn1.num_batches_tracked"]) == 8
    assert not np.allclose(torch_fit.path["bn1.running_var"][1], 1.0)  # the buffers moved


def _tiny(params, state, x, key=None):
    """Linear(3, 6), BatchNorm1d(6) in training mode, Dropout(0.5) from ``fold_in(key, 0)``,
    Linear(6, 2): (n, 3) -> (n, 2), and the new running statistics."""
    h = nn.linear(x, params["a.weight"], params["a.bias"])
    h, mean, var = nn.batch_norm(h, state["bn.running_mean"], state["bn.running_var"],
                                 params["bn.weight"], params["bn.bias"], training=True)
    if key is not None:
        h = nn.dropout(h, 0.5, key=jax.random.fold_in(key, 0))
    return (nn.linear(h, params["b.weight"], params["b.bias"]),
            {"bn.running_mean": mean, "bn.running_var": var})


@pytest.fixture(scope="module")
def tiny():
    """`_tiny`'s parameters and state (torch's initialization), and (20, 3), (20, 2) data."""
    torch.manual_seed(0)
    module = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 6), "bn": torch.nn.BatchNorm1d(6),
                                  "b": torch.nn.Linear(6, 2)}).double()
    params, state = _split(module)
    del state["bn.num_batches_tracked"]
    rng = np.random.default_rng(3)
    return params, state, rng.normal(size=(20, 3)), rng.normal(size=(20, 2))


def test_the_masks_are_the_keys_the_same_key_the_same_fit(tiny):
    """A fit is a function of its key: the same key gives the same path, another key another
    one (the masks differ), and a fit without a key (no dropout) is not the fit with it."""
    params, state, x, y = tiny
    run = lambda key: ff.fit.train(  # noqa: E731
        params, x, y, model=_tiny, loss=nn.mse_loss, optimizer=ff.optim.Adam(lr=0.01),
        steps=3, state=state, key=key)
    a, b = run(jax.random.key(1)), run(jax.random.key(1))
    c, d = run(jax.random.key(2)), run(None)
    assert np.array_equal(a.path["b.weight"], b.path["b.weight"])
    assert np.array_equal(a.state_path["bn.running_var"], b.state_path["bn.running_var"])
    assert not np.allclose(a.path["b.weight"], c.path["b.weight"])
    assert not np.allclose(a.path["b.weight"], d.path["b.weight"])


def test_a_long_fit_in_chunks_is_the_fit_in_one_call(tiny):
    """Calls of one epoch each carry the state and the step count (the keys) on: bit for bit
    the fit of one compiled call."""
    params, state, x, y = tiny
    kw = dict(model=_tiny, loss=nn.mse_loss, optimizer=ff.optim.Adam(lr=0.01),
              order=ff.batch_order(20, 3, seed=0), batch_size=6, state=state,
              key=jax.random.key(0))
    whole = ff.fit.train(params, x, y, **kw)
    chunks = ff.fit.train(params, x, y, runtime=ff.runtime.defaults("cpu", chunk_work=1), **kw)
    assert whole.losses.shape == (12,)
    for name in params:
        assert np.array_equal(whole.path[name], chunks.path[name]), name
    for name in state:
        assert np.array_equal(whole.state_path[name], chunks.state_path[name]), name
    assert np.array_equal(whole.losses, chunks.losses)


class _TwoDropouts(torch.nn.Module):
    """Linear(3, 6), Dropout(0.5), Linear(6, 6), Dropout(0.3): two masks a forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(3, 6).double(), torch.nn.Linear(6, 6).double()
        self.drop_a, self.drop_b = torch.nn.Dropout(0.5), torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.drop_b(self.b(self.drop_a(self.a(x))))


def _two_dropouts(p, x, key=None):
    """`_TwoDropouts` in JAX: the i-th dropout of the forward from ``fold_in(key, i)``."""
    h = nn.linear(x, p["a.weight"], p["a.bias"])
    h = nn.dropout(h, 0.5, training=key is not None,
                   key=None if key is None else jax.random.fold_in(key, 0))
    h = nn.linear(h, p["b.weight"], p["b.bias"])
    return nn.dropout(h, 0.3, training=key is not None,
                      key=None if key is None else jax.random.fold_in(key, 1))


def test_torch_replays_the_masks_jax_draws_layer_by_layer_and_step_by_step():
    """parity.dropout.shared: in step t, torch's i-th nn.Dropout keeps exactly what
    ``bernoulli(fold_in(fold_in(key, t), i), 1 - p)`` keeps, as JAX's dropout with that key;
    a module in eval mode is left alone; without a key, dropout is off."""
    module = _TwoDropouts()
    params = {k: jnp.asarray(v) for k, v in parity.params.from_module(module).items()}
    x = np.random.default_rng(1).normal(size=(5, 3))
    key = jax.random.key(11)
    for step in (0, 4):
        with parity.dropout.shared(module, key) as masks:
            masks.step = step
            got = module(torch.from_numpy(x)).detach().numpy()
        want = _two_dropouts(params, jnp.asarray(x), engine.step_key(key, step))
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-14, atol=1e-15)
        assert (got == 0).any()
    with parity.dropout.shared(module, None):
        off = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(off, np.asarray(_two_dropouts(params, jnp.asarray(x))),
                               rtol=1e-14)
    assert parity.dropout.dropouts(module.eval()) == []
    assert parity.dropout.dropouts(module.train()) == ["drop_a", "drop_b"]


def test_a_stateless_model_with_dropout_follows_torch_with_the_same_key():
    """No state, only randomness: fit.train(key=) and parity.fit.train(key=) agree."""
    module = _TwoDropouts()
    params = parity.params.from_module(module)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 6))
    key = jax.random.key(5)
    jax_fit = ff.fit.train(params, x, y, model=_two_dropouts, loss=nn.mse_loss,
                           optimizer=ff.optim.Adam(lr=0.01), steps=6, key=key)
    trained = copy.deepcopy(module)
    torch_fit = parity.fit.train(trained, F.mse_loss, torch.from_numpy(x), torch.from_numpy(y),
                                 steps=6, key=key,
                                 optimizer=torch.optim.Adam(trained.parameters(), lr=0.01))
    np.testing.assert_allclose(jax_fit.losses, torch_fit.losses, rtol=1e-12)


def test_compare_follows_a_resnet_over_fifty_adam_steps(images):
    """The issue's case: the ResNet with BatchNorm and Dropout, 51 Adam steps on minibatches,
    the same masks on both sides: every parameter and buffer agrees within the tolerance."""
    x, y = images
    c = parity.compare(_resnet(), _torch_module(), x, y, jax_loss=nn.cross_entropy,
                       torch_loss=F.cross_entropy, optimizer=("Adam", {"lr": 0.01}), epochs=17,
                       batch_size=8)
    assert c.steps == 51 and c.ok and c.culprit == "none" and c.findings == (), c.table()
    assert c.dropout == "shared"
    assert {"bn1.running_mean", "layer2.shortcut.1.running_var",
            "layer1.bn2.num_batches_tracked"} <= set(c.buffers)
    assert set(c.path_diff) >= set(c.buffers)
    assert "buffer" in c.table() and "dropout: the same masks" in c.table()


def test_compare_blames_the_state_when_a_running_statistic_parts(images):
    """BatchNorm's momentum wrong on the JAX side (0.01 for torch's 0.1): everything agrees at
    the start, and the first divergence is a running statistic after the first step."""
    x, y = images
    c = parity.compare(_resnet(momentum=0.01), _torch_module(), x, y, jax_loss=nn.cross_entropy,
                       torch_loss=F.cross_entropy, optimizer=("Adam", {"lr": 0.01}), epochs=2,
                       batch_size=8)
    assert not c.ok and c.culprit == "state", c.table()
    assert c.first_divergence.step == 1
    assert c.first_divergence.parameter.endswith(".running_mean")
    assert c.forward_diff < c.tolerance.value and c.loss_diff < c.tolerance.value


# --------------------------------------------------------------------------- flax NNX, by hand


def _nnx_resnet(momentum):
    """`parity.models.ResNet(3, 4, 5, dropout=0.2)` ported by hand to flax NNX: NCHW in (as
    torch's), BatchNorm's mode from ``train()`` / ``eval()``, flax's `momentum` convention;
    the blocks are tests/ports.py's."""
    from flax import nnx

    from tests import ports

    f64 = {"param_dtype": jnp.float64, "dtype": jnp.float64}

    class ResNet(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(3, WIDTH, (3, 3), padding=1, use_bias=False, rngs=rngs, **f64)
            self.bn1 = nnx.BatchNorm(WIDTH, momentum=momentum, epsilon=1e-5, rngs=rngs, **f64)
            self.layer1 = ports.NnxBlock(WIDTH, WIDTH, 1, momentum, rngs)
            self.layer2 = ports.NnxBlock(WIDTH, 2 * WIDTH, 2, momentum, rngs)
            self.dropout = nnx.Dropout(0.2, rngs=rngs)
            self.fc = nnx.Linear(2 * WIDTH, CLASSES, rngs=rngs, **f64)

        def __call__(self, x):  # (N, C, H, W) -> (N, classes)
            out = nnx.relu(self.bn1(self.conv1(jnp.transpose(x, (0, 2, 3, 1)))))
            out = self.layer2(self.layer1(out))  # (N, H/2, W/2, 2 width)
            return self.fc(self.dropout(jnp.mean(out, axis=(1, 2))))

    return ResNet(nnx.Rngs(0))


def _compare_nnx(images, momentum):
    x, y = images
    with jax.numpy_dtype_promotion("standard"):  # flax's BatchNorm promotes to >= float32
        return parity.compare(_nnx_resnet(momentum), _torch_module(), x, y,
                              jax_loss=nn.cross_entropy, torch_loss=F.cross_entropy,
                              optimizer=("Adam", {"lr": 0.01}), epochs=17, batch_size=8)


def test_an_nnx_port_agrees_in_its_parameters_and_parts_at_the_running_variance(images):
    """The ResNet ported to NNX (flax momentum 0.9 = torch's 0.1), compared as the functional
    twin is: the same masks (NNX's Rngs numbering), every parameter within the tolerance over
    51 steps, the running means too; the running variances part at step 1, at a BatchNorm:
    flax updates them with the biased batch variance, torch with the unbiased one."""
    c = _compare_nnx(images, momentum=0.9)
    assert c.dropout == "shared" and not c.random
    tol = c.tolerance.value
    assert c.forward_diff <= tol and c.loss_diff <= tol
    assert all(d <= tol for d in c.grad_diff.values())
    for name, d in c.path_diff.items():
        if not name.endswith("running_var"):
            assert d.max() <= tol, name
    assert c.culprit == "state" and c.first_divergence.step == 1
    assert c.first_divergence.parameter.endswith("running_var")
    # compare names both: flax's own initializers, and the variance (switched in torch's
    # BatchNorm, the two agree over the prefix)
    assert [f.id for f in c.findings] == ["torch_init", "batchnorm_variance"], c.table()
    first = c.first_divergence.parameter
    jax_var, torch_var = c.jax_path[first][1], c.torch_path[first][1]
    # reconstruct the batch terms: 0.1 * biased (flax) against 0.1 * unbiased (torch)
    start = c.torch_path[first][0]
    n = 8 * {"bn1": 64, "layer1": 64}.get(first.split(".")[0], 16)  # values per channel
    np.testing.assert_allclose((torch_var - 0.9 * start) * (n - 1) / n, jax_var - 0.9 * start,
                               rtol=1e-10)


def _library_ports():
    """An MLP (2 -> 8 -> 1, tanh) in each library, in the layout its users write."""
    import equinox as eqx
    import flax.linen as linen
    from flax import nnx

    f64 = {"param_dtype": jnp.float64}
    nnx_mlp = nnx.Sequential(nnx.Linear(2, 8, rngs=nnx.Rngs(0), **f64), nnx.tanh,
                             nnx.Linear(8, 1, rngs=nnx.Rngs(1), **f64))
    linen_mlp = linen.Sequential([linen.Dense(8, **f64), linen.tanh, linen.Dense(1, **f64)])
    variables = linen_mlp.init(jax.random.key(0), jnp.ones((1, 2)))
    eqx_mlp = eqx.nn.MLP(2, 1, 8, 1, activation=jnp.tanh, key=jax.random.key(0),
                         dtype=jnp.float64)
    return {"nnx": nnx_mlp, "linen": (linen_mlp, variables), "equinox": eqx_mlp}


@pytest.mark.parametrize("library", ["nnx", "linen", "equinox"])
def test_compare_takes_each_librarys_module_as_the_jax_model(library):
    """A flax NNX module, a linen (module, variables) pair and an equinox module are each
    compared with torch's MLP directly (filled from torch's start by parity.params.to_*):
    they agree; the same module with a transposed layer does not."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 1))
    module = parity.models.MLP((2, 8, 1), "tanh", dtype=torch.float64, seed=0)
    with jax.numpy_dtype_promotion("standard"):
        c = parity.compare(_library_ports()[library], module, x, y, jax_loss=nn.mse_loss,
                           torch_loss=F.mse_loss, optimizer=("Adam", {"lr": 0.01}), steps=20)
        assert c.ok and c.culprit == "none", c.table()
        wrong = parity.models.MLP((2, 8, 1), "sigmoid", dtype=torch.float64, seed=0)
        bad = parity.compare(_library_ports()[library], wrong, x, y, jax_loss=nn.mse_loss,
                             torch_loss=F.mse_loss, optimizer=("Adam", {"lr": 0.01}), steps=20)
    assert not bad.ok and bad.culprit == "model"


def test_fit_train_takes_an_nnx_module_with_batchnorm_and_dropout_directly():
    """fit.train(None, x, y, model=nnx_module, key=) trains the module's own parameters and
    running statistics: the fit of `functional_fit.modules.as_model`'s model, state and key;
    and, filled from torch's ResNet, its losses are torch's (biased variance aside, the
    running statistics do not enter a training-mode forward)."""
    from functional_fit.modules import as_model

    x, y = np.random.default_rng(6).normal(size=(16, 3, 8, 8)), np.arange(16) % CLASSES
    port = parity.params.to_nnx(parity.params.from_module(_torch_module()), _nnx_resnet(0.9))
    kw = dict(loss=nn.cross_entropy, optimizer=ff.optim.Adam(lr=0.01), steps=4,
              key=jax.random.key(3))
    with jax.numpy_dtype_promotion("standard"):
        direct = ff.fit.train(None, x, y, model=port, **kw)
        model, params, state = as_model(port)
        by_hand = ff.fit.train(params, x, y, model=model, state=state, **kw)
    module = _torch_module()
    torch_fit = parity.fit.train(module, F.cross_entropy, torch.from_numpy(x),
                                 torch.from_numpy(y), steps=4, key=jax.random.key(3),
                                 optimizer=torch.optim.Adam(module.parameters(), lr=0.01))
    assert np.array_equal(direct.losses, by_hand.losses)
    assert jax.tree.structure(direct.state) == jax.tree.structure(state)
    np.testing.assert_allclose(direct.losses, torch_fit.losses, rtol=1e-12)


def test_a_bias_before_batchnorm_is_named_as_rounding_noise_not_a_bug():
    """A conv bias feeding a training-mode BatchNorm has a gradient that is zero but for
    rounding; Adam turns that noise into steps (up to 1 / eps), so two right ports part there.
    compare measures its gradient against the whole gradient's scale (no false "gradient"
    culprit), names it null, and blames the null gradient, not the port; the same module with
    bias=False agrees."""
    def module(bias):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, bias=bias), torch.nn.BatchNorm2d(2),
                                   torch.nn.Flatten(), torch.nn.Linear(32, 3)).double()

    def port(bias):
        def model(p, s, x):
            h = nn.conv2d(x, p["0.weight"], p.get("0.bias"))
            h, mean, var = nn.batch_norm(h, s["1.running_mean"], s["1.running_var"],
                                         p["1.weight"], p["1.bias"], training=True)
            new = {"1.running_mean": mean, "1.running_var": var,
                   "1.num_batches_tracked": s["1.num_batches_tracked"] + 1}
            return nn.linear(h.reshape(h.shape[0], -1), p["3.weight"], p["3.bias"]), new
        return model

    x = np.random.default_rng(0).normal(size=(8, 1, 6, 6))
    y = np.arange(8) % 3
    kw = dict(jax_loss=nn.cross_entropy, torch_loss=F.cross_entropy,
              optimizer=("Adam", {"lr": 0.01}), steps=5)
    with_bias = parity.compare(port(True), module(True), x, y, **kw)
    assert with_bias.null == ("0.bias",)
    assert with_bias.grad_diff["0.bias"] <= with_bias.tolerance.value
    assert not with_bias.ok and with_bias.culprit == "null_gradient", with_bias.table()
    assert "not a bug of the port" in with_bias.table()
    assert with_bias.first_divergence.parameter in ("0.bias", "1.running_mean")
    without = parity.compare(port(False), module(False), x, y, **kw)
    assert without.ok and without.null == (), without.table()
