"""parity.compare on your own pair: a correct port passes, four classic porting bugs are caught,
each at its step and parameter, and bad input is refused before anything runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

import functional_fit as ff
import parity
from functional_fit import InputError, losses, models
from comparison.compare import Comparison

SIZES = (1, 16, 16, 1)  # the middle layer is square: an untransposed weight still runs


@pytest.fixture(scope="module")
def data():
    x, y = ff.lecture_data()
    return x[:, None], y[:, None]  # (n, 1), (n, 1): what an nn.Sequential of Linear takes


@pytest.fixture()
def module():
    return parity.models.MLP(SIZES, "tanh", seed=0)


def untransposed(p, x):
    """The port with the middle layer's weight used as stored, (out, in), not transposed."""
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])
    h = jnp.tanh(h @ p["2.weight"] + p["2.bias"][None, :])  # the bug: torch computes h @ W.T
    return h @ p["4.weight"].T + p["4.bias"][None, :]


ADAM = ("Adam", {"lr": 0.01})


def run(module, data, **kw):
    x, y = data
    args = dict(jax_loss=losses.mse, torch_loss=parity.losses.mse, optimizer=ADAM, steps=60)
    args.update(kw)
    model = args.pop("jax_model", models.mlp)
    return parity.compare(model, module, x, y, **args)


def test_a_correct_port_passes(module, data):
    c = run(module, data)
    assert isinstance(c, Comparison) and c.ok and c.first_divergence is None
    assert c.culprit == "none" and c.diverged is None
    assert set(c.path_diff) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"}
    assert all(d.shape == (61,) and d.max() <= c.tolerance.value for d in c.path_diff.values())
    assert "float64" in c.tolerance.derivation and "60 steps" in c.tolerance.derivation
    assert "agree: rounding only" in c.table()
    c.assert_ok()
    before = parity.params.from_module(module)
    assert all(np.array_equal(before[k], v.detach().numpy())  # the module was not trained
               for k, v in module.state_dict().items())


def test_a_correct_port_in_minibatches_and_float32(module, data):
    c = run(module, data, steps=None, epochs=3, batch_size=16, dtype="float32")
    assert c.ok, c.table()
    assert c.steps == 3 * 7 and c.jax_path["0.weight"].dtype == np.float32


BUGS = {
    # name: (compare's keywords, the culprit it must name)
    "weight used untransposed": (dict(jax_model=untransposed), "model"),
    "y_hat (n, 1) against y (n,)": (dict(
        jax_loss=lambda y_hat, y: jnp.mean((y_hat - y) ** 2),  # (n, 1) - (n,): (n, n)
        torch_loss=lambda y_hat, y: F.mse_loss(y_hat[:, 0], y), flat_y=True), "loss"),
    "RMSprop eps inside the square root": (dict(optimizer=(
        optax.rmsprop(1e-3, decay=0.99, eps=1e-8),  # optax's default: eps_in_sqrt=True
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3))), "optimizer"),
    "L2 in the loss against AdamW's decoupled decay": (dict(optimizer=(
        # adding wd/2 ||w||^2 to the loss adds wd * w to the gradient, before Adam's moments
        optax.chain(optax.add_decayed_weights(0.01), optax.adam(0.01)),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.01))), "optimizer"),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_a_planted_bug_is_caught_at_its_step_and_parameter(module, data, bug):
    kw, culprit = BUGS[bug]
    kw = dict(kw)
    if kw.pop("flat_y", False):
        data = (data[0], data[1][:, 0])
    with jax.numpy_rank_promotion("allow"):  # the broadcast is the bug; let it happen
        c = run(module, data, **kw)
    assert not c.ok
    assert c.culprit == culprit
    d = c.first_divergence
    assert d.step == 1  # every one of these parts with the first update
    assert d.parameter in c.path_diff and d.difference > 1e6 * c.tolerance.value
    assert d.jax != d.torch
    assert f"step 1, {d.parameter}" in c.table() and culprit in c.table()
    with pytest.raises(AssertionError):
        c.assert_ok()


def test_the_plot_draws_every_parameter_against_the_bound(module, data):
    c = run(module, data, jax_model=untransposed, steps=10)
    fig = c.plot()
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert set(c.path_diff) <= set(labels)
    assert any(label.startswith("tolerance") for label in labels)
    assert any(label.startswith("first divergence, step 1") for label in labels)


BAD = {
    "params that do not match the module": (
        dict(params={"0.weight": np.zeros((16, 1))}), "params do not match"),
    "a parameter of the wrong shape": (
        dict(params_change=("2.weight", np.zeros((16, 15)))), "params['2.weight'] has shape"),
    "a jax_model that fails on the data's shape": (
        dict(jax_model=lambda p, x: models.mlp(p, x[:, :, None])), "jax_model fails"),
    "forwards of different shapes": (
        dict(jax_model=lambda p, x: models.mlp(p, x)[:, 0]), "differ in shape"),
    "a loss that is not a scalar": (
        dict(jax_loss=lambda a, b: (a - b) ** 2), "jax_loss must return a scalar"),
    "an unknown optimizer": (dict(optimizer=("Shampoo", {"lr": 1.0})), "optimizer must be one of"),
    "an unknown keyword": (dict(optimizer=("SGD", {"lr": 0.1, "momentun": 0.9})),
                           "SGD has no keyword 'momentun'"),
    "non-finite data": (dict(nan_x=True), "x contains a non-finite value"),
    "labels out of range": (dict(labels=True), "labels must lie in [0, 3)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_before_anything_runs(module, data, case):
    kw, says = BAD[case]
    kw = dict(kw)
    x, y = data
    if kw.pop("nan_x", False):
        x = x.copy()
        x[5, 0] = np.nan
    if "params_change" in kw:
        name, value = kw.pop("params_change")
        p = parity.params.from_module(module)
        p[name] = value
        kw["params"] = p
    if kw.pop("labels", False):  # a 3-class classifier given a label 3
        module = parity.models.MLP((1, 4, 3), seed=0)
        y = np.where(np.arange(x.shape[0]) == 7, 3, 0)
        kw.update(jax_loss=losses.cross_entropy, torch_loss=parity.losses.cross_entropy)
    args = dict(jax_loss=losses.mse, torch_loss=parity.losses.mse, optimizer=ADAM, steps=5)
    args.update(kw)
    model = args.pop("jax_model", models.mlp)
    with pytest.raises(InputError) as info:
        parity.compare(model, module, x, y, **args)
    assert says in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- issue 19, group C


def test_a_frozen_parameter_stays_on_both_sides_and_is_named(module, data):
    """requires_grad=False: torch leaves the parameter where it is (momentum and weight decay
    included); JAX's side must too, and the comparison names it instead of blaming the gradient."""
    module.get_submodule("2").bias.requires_grad_(False)
    start = module.get_submodule("2").bias.detach().numpy().copy()
    c = run(module, data, optimizer=("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
            steps=30)
    assert c.ok and c.culprit == "none", c.table()
    assert c.frozen == ("2.bias",) and "2.bias" not in c.grad_diff
    for path in (c.jax_path["2.bias"], c.torch_path["2.bias"]):
        assert (path == start).all()  # (31, 16): not one step moved it
    assert not np.array_equal(c.torch_path["2.weight"][-1], c.torch_path["2.weight"][0])
    assert "frozen (requires_grad=False, not updated on either side): 2.bias" in c.table()


class _WithSpare(torch.nn.Module):
    """parity.models.MLP as "body", and a "spare" Linear its forward never uses."""

    def __init__(self):
        super().__init__()
        self.body = parity.models.MLP(SIZES, "tanh", seed=0)
        self.spare = torch.nn.Linear(16, 1).double()

    def forward(self, x):
        return self.body(x)


def _body(p, x):
    return models.mlp({k.removeprefix("body."): v for k, v in p.items()
                       if k.startswith("body.")}, x)


def test_an_unused_parameter_is_skipped_on_both_sides_and_named(data):
    """torch leaves an unused parameter's .grad None and AdamW skips it (no decoupled weight
    decay); JAX's gradient is zero, and AdamW alone would decay it: compare runs it through
    functional_fit.optim.skip_unused and says so."""
    module = _WithSpare()
    start = module.spare.weight.detach().numpy().copy()
    c = run(module, data, jax_model=_body, optimizer=("AdamW", {"lr": 0.01, "weight_decay": 0.5}),
            steps=20)
    assert c.ok and c.culprit == "none", c.table()
    assert c.unused == ("spare.weight", "spare.bias") and c.frozen == ()
    assert c.grad_diff["spare.weight"] == 0.0  # JAX's gradient is exactly zero there
    for path in (c.jax_path["spare.weight"], c.torch_path["spare.weight"]):
        assert (path == start).all()  # (21, 1, 16): not one step moved it
    assert "unused (torch leaves .grad None; JAX skips their zero gradient" in c.table()


def _dropout_module(p: float):
    """Linear(1, 16), tanh, Dropout(p), Linear(16, 1), float64; JAX's twin is `_dropout_port`."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Dropout(p),
                               torch.nn.Linear(16, 1)).double()


def _dropout_port(p, x):
    """`_dropout_module` without its Dropout (as in eval mode): (n, 1) -> (n, 1)."""
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])
    return h @ p["3.weight"].T + p["3.bias"][None, :]


def _dropout_port_keyed(p, x, key=None):
    """`_dropout_module` in training mode, its Dropout(0.5) drawing the forward's first mask
    from ``fold_in(key, 0)`` (the toolkit's convention); without a key, no dropout."""
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])
    if key is not None:
        h = ff.nn.dropout(h, 0.5, key=jax.random.fold_in(key, 0))
    return h @ p["3.weight"].T + p["3.bias"][None, :]


class _FunctionalDropout(torch.nn.Module):
    """Linear(1, 16), tanh, ``F.dropout`` inside the forward (no module a hook could see)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = torch.nn.Linear(1, 16).double()
        self.outer = torch.nn.Linear(16, 1).double()

    def forward(self, x):
        h = torch.nn.functional.dropout(torch.tanh(self.inner(x)), 0.5, self.training)
        return self.outer(h)


def test_dropout_masks_are_shared_or_switched_off_and_the_table_says_which(data):
    """nn.Dropout in training mode: both sides draw the same masks (JAX's key, replayed in
    torch by hooks) and agree; with dropout='off' both drop nothing and agree; a port that
    drops nothing where torch drops fails at the model."""
    shared = run(_dropout_module(0.5), data, jax_model=_dropout_port_keyed, steps=5)
    assert shared.ok and shared.dropout == "shared", shared.table()
    assert "dropout: the same masks on both sides" in shared.table()
    off = run(_dropout_module(0.5), data, jax_model=_dropout_port, steps=5, dropout="off")
    assert off.ok and off.dropout == "off", off.table()
    assert "switched off on both sides" in off.table()
    other_seed = run(_dropout_module(0.5), data, jax_model=_dropout_port_keyed, steps=5,
                     dropout_seed=3)
    assert other_seed.ok
    assert not np.array_equal(other_seed.torch_path["3.weight"], shared.torch_path["3.weight"])
    evaluated = run(_dropout_module(0.5).eval(), data, jax_model=_dropout_port, steps=5)
    assert evaluated.ok and evaluated.dropout is None, evaluated.table()
    without = run(_dropout_module(0.5), data,
                  jax_model=lambda p, x, key=None: _dropout_port(p, x), steps=5)
    assert not without.ok and without.culprit == "model"


def test_randomness_no_hook_sees_is_said_to_be_so(module, data):
    """F.dropout inside a forward: the comparison says the module is random instead of
    blaming the model; in eval mode the same pair agrees; the check draws nothing from torch's
    random state (a deterministic module's comparison leaves it as it was)."""
    random = run(_FunctionalDropout(), data,
                 jax_model=lambda p, x: _dropout_port({"0.weight": p["inner.weight"],
                                                       "0.bias": p["inner.bias"],
                                                       "3.weight": p["outer.weight"],
                                                       "3.bias": p["outer.bias"]}, x),
                 steps=5)
    assert random.random and random.culprit == "random" and not random.ok
    assert "random: torch_module's forward gives different outputs" in random.table()
    with pytest.raises(AssertionError, match="random"):
        random.assert_ok()
    state = torch.random.get_rng_state()
    assert not run(module, data, steps=1).random
    assert torch.equal(torch.random.get_rng_state(), state)
