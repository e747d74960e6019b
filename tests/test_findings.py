"""compare's findings: planted bugs, each caught at the right step with the known difference
that explains it, confirmed by re-running the prefix with that one convention switched.

The bugs are the ones porting engineers meet (issue 22's list), planted on the MLP and on the
small ResNet of "Real models": a square weight used untransposed, a convolution kernel with its
spatial axes swapped, flax's BatchNorm momentum left at its default, a head torch uses only
every third step, optax.rmsprop for torch's RMSprop, optax.adamw for Adam(weight_decay=),
optax.clip_by_global_norm for clip_grad_norm_, a schedule computed in float32 in a 64-bit run,
a loss summed on one side and averaged on the other. Each correct pair passes with no finding;
a pair whose difference is not a known one gets none (nothing is kept from names alone).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

import functional_fit as ff
import parity
from comparison.findings import EXPLANATIONS, Switch, combine
from functional_fit import losses, models, nn
from functional_fit.taps import tap

# --------------------------------------------------------------------------- the MLP


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 2)), rng.normal(size=(20, 1))


def _mlp():
    return parity.models.MLP((2, 4, 4, 1), "tanh", dtype=torch.float64, seed=0)


def _port(transposed: bool = True):
    """The MLP's JAX twin, a tap per torch submodule; ``transposed=False`` uses the square
    middle weight as stored (x @ W where torch computes x @ W.T)."""
    def model(p, x):
        h = tap("0", x @ p["0.weight"].T + p["0.bias"][None, :])
        h = tap("1", jnp.tanh(h))
        w = p["2.weight"].T if transposed else p["2.weight"]
        h = tap("3", jnp.tanh(tap("2", h @ w + p["2.bias"][None, :])))
        return tap("4", h @ p["4.weight"].T + p["4.bias"][None, :])
    return model


def _compare(data, model=None, module=None, **kw):
    kw = {"jax_loss": losses.mse, "torch_loss": parity.losses.mse, "steps": 8, **kw}
    with ff.float64():
        return parity.compare(model or _port(), module or _mlp(), *data, **kw)


def _lambda_lr(opt):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1 / (epoch + 1))


def _sgd(p):
    return torch.optim.SGD(p, lr=0.1)


#: name -> (compare's keywords of a correct pair, of the same pair with the bug planted, the
#: finding's id)
OPTIMIZER_BUGS = {
    "rmsprop": ({"optimizer": (optax.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False),
                               lambda p: torch.optim.RMSprop(p, lr=0.01))},
                {"optimizer": (optax.rmsprop(0.01, decay=0.99, eps=1e-8),
                               lambda p: torch.optim.RMSprop(p, lr=0.01))}, "rmsprop_eps"),
    "adamw": ({"optimizer": (optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01)),
                             lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1))},
              {"optimizer": (optax.adamw(0.01, weight_decay=0.1),
                             lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1))},
              "coupled_weight_decay"),
    "clip": ({"optimizer": (optax.chain(ff.optim.clip_grad_norm(0.1), optax.sgd(0.1)), _sgd),
              "max_norm": 0.1},
             {"optimizer": (optax.chain(optax.clip_by_global_norm(0.1), optax.sgd(0.1)), _sgd),
              "max_norm": 0.1}, "clip_eps"),
    # 0.1 / (count + 1) computes in float64 from optax's int32 count in 64-bit mode (JAX
    # promotes a Python float with int32 to the default float); 1 / (count + 1) divides int32
    # by int32, in float32
    "schedule": ({"optimizer": (optax.sgd(lambda count: 0.1 / (count + 1)), _sgd),
                  "scheduler": _lambda_lr},
                 {"optimizer": (optax.sgd(lambda count: 0.1 * (1 / (count + 1))), _sgd),
                  "scheduler": _lambda_lr}, "schedule_dtype"),
}


@pytest.mark.parametrize("case", OPTIMIZER_BUGS)
def test_a_correct_pair_passes_without_a_finding(data, case):
    c = _compare(data, **OPTIMIZER_BUGS[case][0])
    assert c.ok and c.findings == (), c.table()


@pytest.mark.parametrize("case", OPTIMIZER_BUGS)
def test_an_optimizer_bug_is_named_and_confirmed(data, case):
    """Everything agrees at the start, the parameters part at the first update (step 1), and
    the one known difference is found: switched, it brings the two within the tolerance."""
    _, planted, expected = OPTIMIZER_BUGS[case]
    c = _compare(data, **planted)
    assert not c.ok and c.culprit == "optimizer", c.table()
    assert c.first_divergence.step == 1
    assert [f.id for f in c.findings] == [expected], c.table()
    finding = c.findings[0]
    assert finding.after <= c.tolerance.value < finding.before
    assert finding.explanation.startswith(EXPLANATIONS[expected])
    assert f"finding {expected}" in c.table()
    assert c.to_json()["findings"][0]["id"] == expected


def test_a_difference_that_is_not_a_known_one_gets_no_finding(data):
    """optax.rmsprop at its defaults: eps inside the root AND decay 0.9 for torch's 0.99.
    Moving eps alone does not make the two agree, so nothing is blamed on it."""
    c = _compare(data, optimizer=(optax.rmsprop(0.01, eps=1e-8),
                                  lambda p: torch.optim.RMSprop(p, lr=0.01)))
    assert not c.ok and c.culprit == "optimizer"
    assert c.findings == (), c.table()


def test_a_transposed_square_weight_is_found_at_its_layer(data):
    c = _compare(data, _port(transposed=False), optimizer=("SGD", {"lr": 0.1}))
    assert c.culprit == "model" and c.first_layer == "2", c.table()
    assert [f.id for f in c.findings] == ["kernel_layout"]
    assert "2.weight given to the JAX model transposed" in c.findings[0].explanation
    assert c.findings[0].after <= c.tolerance.value


@pytest.mark.parametrize("torch_loss", [parity.losses.mse, torch.nn.MSELoss(reduction="sum")])
def test_a_loss_summed_on_one_side_is_found(data, torch_loss):
    """A sum of squares in JAX against torch's mean (a factor of n = 20 found and switched),
    and JAX's mean against torch's MSELoss(reduction='sum')."""
    sums = isinstance(torch_loss, torch.nn.Module)
    jax_loss = losses.mse if sums else (lambda y_hat, y: jnp.sum((y_hat - y) ** 2))
    c = _compare(data, jax_loss=jax_loss, torch_loss=torch_loss, steps=3)
    assert c.culprit == "loss" and c.first_layer is None, c.table()
    assert [f.id for f in c.findings] == ["loss_reduction"]
    assert c.findings[0].before == pytest.approx(19.0) if not sums else True
    assert c.findings[0].after <= c.tolerance.value


class _EveryThird(torch.nn.Module):
    """A body, a head, and an auxiliary head whose output joins only every third training
    step (its parameters' .grad stays None on the others, and torch's Adam skips them)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(2, 4, dtype=torch.float64)
        self.head = torch.nn.Linear(4, 1, dtype=torch.float64)
        self.aux = torch.nn.Linear(4, 1, dtype=torch.float64)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        h = torch.tanh(self.body(x))
        out, aux = self.head(h), self.aux(h)
        if int(self.calls) % 3 == 0:
            out = out + aux
        if torch.is_grad_enabled():
            self.calls += 1
        return out


def _every_third(p, state, x):
    """`_EveryThird` in JAX: the auxiliary head's gradient is exactly zero on the others."""
    h = jnp.tanh(tap("body", x @ p["body.weight"].T + p["body.bias"][None, :]))
    out = tap("head", h @ p["head.weight"].T + p["head.bias"][None, :])
    aux = tap("aux", h @ p["aux.weight"].T + p["aux.bias"][None, :])
    used = state["calls"] % 3 == 0
    return out + jnp.where(used, aux, 0.0), {"calls": state["calls"] + 1}


def test_a_head_torch_uses_every_third_step_is_a_none_gradient(data):
    """Used at step 0, skipped at steps 1 and 2: torch's Adam leaves the head alone at step 1,
    JAX's takes its zero gradient and moves it by its momentum, so the head parts after the
    second update (step 2); skipping a zero gradient, as torch skips None, makes them agree."""
    c = _compare(data, _every_third, _EveryThird(), optimizer=("Adam", {"lr": 0.01}))
    assert c.culprit == "optimizer" and c.first_divergence.step == 2, c.table()
    assert c.first_divergence.parameter.startswith("aux.")
    assert [f.id for f in c.findings] == ["none_grad"]
    assert c.findings[0].after <= c.tolerance.value


def test_a_jax_start_of_its_own_is_reported_first(data):
    """The JAX side's own start (`jax_params`) differs from torch's: compare still starts both
    from torch's and agrees, and says that the starts alone would part the outputs."""
    own = {k: v + 0.1 for k, v in parity.params.from_module(_mlp()).items()}
    c = _compare(data, jax_params=own, optimizer=("SGD", {"lr": 0.1}))
    assert c.ok and [f.id for f in c.findings] == ["torch_init"], c.table()
    assert c.findings[0].before > c.tolerance.value >= c.findings[0].after
    same = _compare(data, jax_params=parity.params.from_module(_mlp()))
    assert same.ok and same.findings == ()


# --------------------------------------------------------------------------- the ResNet


@pytest.fixture(scope="module")
def images():
    """(24, 3, 8, 8) float64 images and (24,) labels in [0, 5)."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(24, 3, 8, 8)), rng.integers(0, 5, 24)


def _resnet_module():
    return parity.models.ResNet(3, 4, 5, dropout=0.2, dtype=torch.float64, seed=0)


@functools.lru_cache(maxsize=None)
def _resnet(swapped: str | None = None):
    """The ResNet's JAX twin; with `swapped`, that kernel's spatial axes swapped."""
    def model(p, state, x, key=None):
        if swapped is not None:
            p = {**p, swapped: jnp.swapaxes(p[swapped], 2, 3)}
        return models.resnet(p, state, x, key=key, dropout=0.2)
    return model


def _compare_resnet(images, model, **kw):
    kw = {"jax_loss": nn.cross_entropy, "torch_loss": F.cross_entropy,
          "optimizer": ("Adam", {"lr": 0.01}), "epochs": 2, "batch_size": 8, **kw}
    with jax.numpy_dtype_promotion("standard"):  # flax's BatchNorm promotes to >= float32
        return parity.compare(model, _resnet_module(), *images, **kw)


@pytest.mark.slow
def test_a_resnet_kernel_with_its_spatial_axes_swapped_is_found_at_its_layer(images):
    c = _compare_resnet(images, _resnet("layer1.conv2.weight"))
    assert c.culprit == "model" and c.first_layer == "layer1.conv2", c.table()
    assert [f.id for f in c.findings] == ["kernel_layout"]
    assert "layer1.conv2.weight given to the JAX model with its spatial axes swapped" in (
        c.findings[0].explanation)


@pytest.mark.slow
def test_flaxs_default_momentum_is_named_with_flaxs_variance(images):
    """The ResNet ported to flax NNX with BatchNorm's momentum left at flax's default 0.99
    (torch's 0.01) and flax's biased variance: the running statistics part at the first step;
    the momentum inferred from that step (0.01) and the biased variance, switched together in
    torch's BatchNorm, make the two agree, and each is needed. The port's own flax
    initializers are reported first."""
    from tests.test_state import _nnx_resnet

    c = _compare_resnet(images, _nnx_resnet(0.99))
    assert c.culprit == "state" and c.first_divergence.step == 1, c.table()
    assert c.first_divergence.parameter.split(".")[-1] in ("running_mean", "running_var")
    assert c.path_diff["bn1.running_mean"][1] > 1e-3
    assert c.first_layer == c.first_divergence.parameter.rpartition(".")[0]
    assert c.first_layer in {"bn1", "layer1.bn1", "layer1.bn2", "layer2.bn1", "layer2.bn2",
                             "layer2.shortcut.1"}
    ids = [f.id for f in c.findings]
    assert ids == ["torch_init", "batchnorm_momentum", "batchnorm_variance"], c.table()
    assert "take 0.01 of each batch, torch's momentum 0.1" in c.findings[1].explanation
    assert c.findings[2].after <= c.tolerance.value < c.findings[1].before


@pytest.mark.slow
def test_adamw_for_adam_is_found_on_the_resnet(images):
    c = _compare_resnet(images, _resnet(), optimizer=(
        optax.adamw(0.01, weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1)))
    assert c.culprit == "optimizer" and c.first_divergence.step == 1, c.table()
    assert [f.id for f in c.findings] == ["coupled_weight_decay"]


@pytest.mark.parametrize("setting, switched", [({"label_smoothing": 0.1}, "label_smoothing=0.0"),
                                               ({"ignore_index": 0}, "ignore_index=-100")])
def test_torchs_label_smoothing_or_ignore_index_alone_is_found(setting, switched):
    """torch's CrossEntropyLoss with label smoothing, or ignoring class 0, against a plain
    cross-entropy in JAX: the losses part at the start; torch's loss without the setting
    agrees."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 2)), rng.integers(0, 3, 12)
    module = parity.models.MLP((2, 4, 3), "tanh", dtype=torch.float64, seed=0)
    c = _compare((x, y), models.mlp, module, jax_loss=nn.cross_entropy,
                 torch_loss=torch.nn.CrossEntropyLoss(**setting), steps=2)
    assert c.culprit == "loss" and [f.id for f in c.findings] == ["loss_reduction"], c.table()
    assert f"{switched} agrees" in c.findings[0].explanation


def _bfloat16_products(p, x):
    """The MLP with its matrix products rounded to bfloat16 whenever JAX's default matmul
    precision is not "highest": what an accelerator's one-pass products do, on a CPU."""
    rough = str(jax.config.jax_default_matmul_precision or "highest") != "highest"

    def dot(a, w):
        if rough:
            a, w = a.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
        return (a @ w.T).astype(jnp.float32)

    h = jnp.tanh(dot(x, p["0.weight"]) + p["0.bias"][None, :])
    h = jnp.tanh(dot(h, p["2.weight"]) + p["2.bias"][None, :])
    return dot(h, p["4.weight"]) + p["4.bias"][None, :]


def test_reduced_precision_products_are_found(data):
    """float32 with matmul_precision="medium" on a model whose products then drop to bfloat16
    (simulated: a CPU has no such pass): the outputs part at the start, and both sides in
    full float32 agree. With "highest" the same pair agrees outright."""
    kw = dict(jax_loss=losses.mse, torch_loss=parity.losses.mse, steps=3, dtype="float32")
    rough = parity.compare(_bfloat16_products, _mlp(), *data, matmul_precision="medium", **kw)
    assert rough.culprit == "model" and rough.matmul_precision["jax"] == "default"
    assert [f.id for f in rough.findings] == ["matmul_precision"], rough.table()
    exact = parity.compare(_bfloat16_products, _mlp(), *data, matmul_precision="highest", **kw)
    assert exact.ok and exact.findings == ()


def test_the_layers_are_recorded_again_at_the_first_divergent_step(data):
    """An optimizer bug: every layer agrees at the start; at the first divergent step (1),
    each side at its own parameters, the first layer whose output parts is the first one
    (all weights moved apart); with the auxiliary head skipped by torch, it is that head."""
    c = _compare(data, **OPTIMIZER_BUGS["adamw"][1])
    start = [layer for layer in c.layers if layer.step == 0]
    later = [layer for layer in c.layers if layer.step == 1]
    assert [layer.name for layer in start] == [layer.name for layer in later] == list("01234")
    assert not any(layer.parts for layer in start)
    assert c.first_layer == "0" and later[0].parts, c.table()
    head = _compare(data, _every_third, _EveryThird(), optimizer=("Adam", {"lr": 0.01}))
    assert head.first_layer == "aux", head.table()
    assert {layer.name: layer.parts for layer in head.layers if layer.step == 2} == {
        "body": False, "head": False, "aux": True}


def test_switches_combine_in_order():
    """Two changes of the same optimizer compose, the first applied first; BatchNorm's
    settings merge; any other change is the last one's."""
    a = Switch("a", "", {"torch_optimizer": lambda o: o + ["a"], "torch_bn": {"momentum": 0.01},
                         "jax_opt": lambda t: t + ["x"]})
    b = Switch("b", "", {"torch_optimizer": lambda o: o + ["b"], "torch_bn": {"biased": True},
                         "jax_loss_scale": 2.0})
    c = Switch("c", "", {"jax_opt": lambda t: t + ["y"], "jax_loss_scale": 0.5})
    both = combine([a, b, c])
    assert both["torch_optimizer"]([]) == ["a", "b"] and both["jax_opt"]([]) == ["x", "y"]
    assert both["torch_bn"] == {"momentum": 0.01, "biased": True}
    assert both["jax_loss_scale"] == 0.5
