"""functional_fit.optim.Muon and SparseAdam against torch.optim's, step by step.

Muon: a 2-layer tanh MLP whose weights torch's Muon trains and whose biases its AdamW trains
(torch's own recipe), against `optax.partition` of `Muon` and `AdamW`; float64 and float32,
30 steps; and torch's Newton-Schulz iteration alone, bfloat16 for bfloat16.
SparseAdam: two ``nn.Embedding(sparse=True)`` tables looked up by batches that leave rows
out, float64, 60 steps, parameters and state (step, exp_avg, exp_avg_sq) after every step.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz

import functional_fit.optim as fo
from functional_fit.checks import InputError
from functional_fit.optim import lr_scheduler as fls
from functional_fit.optim import transforms
from torch.optim import lr_scheduler as tls

STEPS = 30
#: float64, against torch: Newton-Schulz rounds to bfloat16 as torch's does and sums these small
#: products exactly, so only the float64 arithmetic around it rounds differently, ~1e-16 per
#: step; three hundred times that over 30 steps. Measured: 7.8e-16.
TOL_FLOAT64 = 1e-13
#: float32: the gradients differ from torch's by float32 rounding, and the bfloat16 cast
#: can tip an element near a rounding boundary the other way: NS's output (|O| <= 2) may
#: then differ by one bfloat16 unit, 2^-7 at most, each step, moved by lr * ratio (ratio
#: <= sqrt(2) here). Measured at lr 0.02: 5.4e-7 over these 30 steps, where no element has
#: tipped yet; 1.4e-3 over 50.
MUON_LR = 0.02


def tol_float32(lr: float) -> float:
    return STEPS * lr * np.sqrt(2) * 2.0**-7


# --------------------------------------------------------------------------- Muon


def mlp(dtype: str):
    """torch's 3 -> 6 -> 2 tanh MLP and its data x (16, 3), y (16, 2) as numpy `dtype`."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)).astype(dtype), rng.normal(size=(16, 2)).astype(dtype)
    return net.to(getattr(torch, dtype)), x, y


def mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])  # (n, 6)
    return jnp.mean((h @ p["2.weight"].T + p["2.bias"][None, :] - y) ** 2)


def two_d(params):
    """`optax.partition`'s labels: Muon for the weights, AdamW for the rest."""
    return {k: "muon" if v.ndim == 2 else "adamw" for k, v in params.items()}


class MuonCase(NamedTuple):
    kwargs: dict  # the same keywords on both sides
    second_group: dict | None = None  # torch's group of "2.weight", and ours ("params" added)
    one_cycle: bool = False  # OneCycleLR(max_lr=kwargs["lr"]) on Muon, cycling its momentum


MUON_CASES = {
    "defaults": MuonCase({}),
    "lr": MuonCase(dict(lr=MUON_LR)),
    "every_keyword": MuonCase(dict(lr=MUON_LR, weight_decay=0.01, momentum=0.9, nesterov=False,
                                   ns_coefficients=(3.0, -3.2, 1.2), eps=1e-5, ns_steps=3,
                                   adjust_lr_fn="match_rms_adamw")),
    "groups": MuonCase(dict(lr=MUON_LR, adjust_lr_fn="original"),
                       dict(lr=0.005, adjust_lr_fn="match_rms_adamw", weight_decay=0.0)),
    "one_cycle": MuonCase(dict(lr=MUON_LR), one_cycle=True),
}


def muon_paths(case: MuonCase, dtype: str):
    """(JAX, torch) params after every step, each a list of dicts of numpy arrays."""
    net, x, y = mlp(dtype)
    params = {k: jnp.array(v.detach().numpy(), copy=True) for k, v in net.state_dict().items()}
    named = dict(net.named_parameters())
    kwargs = dict(case.kwargs)
    if case.one_cycle:
        kwargs["lr"] = fls.OneCycleLR(case.kwargs["lr"], total_steps=STEPS)
    if case.second_group:
        torch_muon = torch.optim.Muon([{"params": [named["0.weight"]]},
                                       {"params": [named["2.weight"]], **case.second_group}],
                                      **case.kwargs)
        muon = fo.Muon(**kwargs, param_groups=[{"params": "2.weight", **case.second_group}])
    else:
        torch_muon = torch.optim.Muon([named["0.weight"], named["2.weight"]], **case.kwargs)
        muon = fo.Muon(**kwargs)
    scheduler = (tls.OneCycleLR(torch_muon, max_lr=case.kwargs["lr"], total_steps=STEPS)
                 if case.one_cycle else None)
    torch_adamw = torch.optim.AdamW([named["0.bias"], named["2.bias"]], lr=1e-2)
    tx = optax.partition({"muon": muon, "adamw": fo.AdamW(lr=1e-2)}, two_d)

    @jax.jit
    def step(p, state):
        updates, state = tx.update(jax.grad(mlp_loss)(p, x, y), state, p)
        return optax.apply_updates(p, updates), state

    state, ours, theirs = tx.init(params), [], []
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(STEPS):
        for opt in (torch_muon, torch_adamw):
            opt.zero_grad()
        torch.mean((net(xt) - yt) ** 2).backward()
        torch_muon.step()
        torch_adamw.step()
        if scheduler is not None:
            scheduler.step()
        params, state = step(params, state)
        ours.append({k: np.asarray(v) for k, v in params.items()})
        theirs.append({k: v.detach().numpy().copy() for k, v in net.state_dict().items()})
    return ours, theirs


def worst(ours, theirs) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for a, b in zip(ours, theirs) for k in a)


@pytest.mark.parametrize("name", [n for n in MUON_CASES if n != "lr"])  # "lr": in float32
def test_muon_and_adamw_match_torch_float64(name):
    ours, theirs = muon_paths(MUON_CASES[name], "float64")
    moved = max(float(np.max(np.abs(theirs[-1][k] - theirs[0][k]))) for k in theirs[0])
    assert moved > 1e-3
    assert worst(ours, theirs) <= TOL_FLOAT64


@pytest.mark.parametrize("name", ["lr"])
def test_muon_float32_within_a_bfloat16_unit_per_step(name):
    ours, theirs = muon_paths(MUON_CASES[name], "float32")
    assert all(v.dtype == np.float32 for v in ours[-1].values())
    assert worst(ours, theirs) <= tol_float32(MUON_CASES[name].kwargs["lr"])


@pytest.mark.parametrize("shape", [(3, 5), (6, 3), (8, 8)])
def test_newton_schulz_is_torchs_bfloat16_for_bfloat16(shape):
    """With momentum 0 and no Nesterov the direction is NS(g) itself; small matrices, every
    element equal (larger ones sum in another order: see `transforms.scale_by_torch_muon`)."""
    rng = np.random.default_rng(1)
    tx = transforms.scale_by_torch_muon(momentum=0.0, nesterov=False)
    update = jax.jit(tx.update)
    for scale in (1e-3, 1.0, 30.0):
        g = rng.normal(size=shape) * scale
        ours, _ = update(jnp.asarray(g), tx.init(jnp.asarray(g)))
        theirs = torch_newton_schulz(torch.from_numpy(g), (3.4445, -4.7750, 2.0315), 5, 1e-7)
        np.testing.assert_array_equal(np.asarray(ours), theirs.double().numpy())


def test_muon_refuses_what_torch_refuses():
    for kwargs, word in [(dict(lr=-1.0), "lr"), (dict(momentum=-0.1), "momentum"),
                         (dict(weight_decay=-1e-3), "weight_decay"),
                         (dict(adjust_lr_fn="rms"), "adjust_lr_fn"),
                         (dict(ns_steps=100), "ns_steps"),
                         (dict(ns_coefficients=(1.0, 2.0)), "ns_coefficients")]:
        with pytest.raises(InputError, match=word) as info:
            fo.Muon(**kwargs)
        assert "\n" not in str(info.value)


def test_muon_refuses_a_parameter_that_is_not_2d_by_name():
    net, _, _ = mlp("float64")
    with pytest.raises(ValueError, match="2D"):  # torch's own refusal
        torch.optim.Muon(net.parameters())
    params = {k: jnp.array(v.detach().numpy(), copy=True) for k, v in net.state_dict().items()}
    with pytest.raises(InputError, match=r"0\.bias has shape \(6,\)") as info:
        fo.Muon().init(params)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=r"layer\.0 has shape \(3, 2, 1\)"):
        fo.Muon().init({"layer": [jnp.zeros((3, 2, 1))]})


def test_signatures_are_torchs():
    for name in ("Muon", "SparseAdam"):
        ours = inspect.signature(getattr(fo, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        assert list(ours) == [k for k in theirs if k != "params"]
        assert all(ours[k].default == theirs[k].default for k in ours)


# --------------------------------------------------------------------------- SparseAdam

TOKENS, POSITIONS, DIM, BATCH = 12, 5, 3, 6
SPARSE_STEPS = 60
#: float64, relative and absolute, element by element: the same arithmetic as torch's on every
#: present row, rounded alike but for the step size's order and the gradients' sums (~1e-16 per
#: step). Measured over the three cases: parameters <= 2.8e-16 of the largest, moments <= 1.9e-15.
TOL = 1e-14


def lookups(steps: int):
    """(steps, BATCH) token ids from the first 8 of 12 (4 rows never looked up, and many rows
    absent on each step, some twice in a batch) and (steps, BATCH) positions."""
    rng = np.random.default_rng(2)
    return rng.integers(0, 8, size=(steps, BATCH)), rng.integers(0, POSITIONS, size=(steps, BATCH))


def embeddings():
    """torch's two sparse tables, float64, and a fixed read-out v (DIM,) and targets (BATCH,)."""
    torch.manual_seed(1)
    tok = torch.nn.Embedding(TOKENS, DIM, sparse=True).double()
    pos = torch.nn.Embedding(POSITIONS, DIM, sparse=True).double()
    rng = np.random.default_rng(3)
    return tok, pos, rng.normal(size=DIM), rng.normal(size=BATCH)


def sparse_loss(p, tokens, positions, v, target, sign):
    out = p["tok"][tokens] + p["pos"][positions]  # (BATCH, DIM)
    return sign * jnp.sum((out @ v - target) ** 2)


def state_of(state, key: str, field: str):
    """The `transforms.TorchSparseAdamState` field of parameter `key` ("tok" or "pos") in the
    state of a `SparseAdam`, with or without param groups (one state per group there)."""
    is_state = lambda x: isinstance(x, transforms.TorchSparseAdamState)  # noqa: E731
    found = [getattr(s, field) if field == "step" else getattr(s, field)[key]
             for s in jax.tree.leaves(state, is_leaf=is_state) if is_state(s)
             and not isinstance(s.exp_avg[key], optax.MaskedNode)]
    assert len(found) == 1
    return np.asarray(found[0])


SPARSE_CASES = {
    "defaults": dict(kwargs={}),
    "every_keyword": dict(kwargs=dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, maximize=True)),
    "groups": dict(kwargs=dict(lr=0.05), pos_group=dict(lr=0.01, betas=(0.5, 0.9))),
    "one_cycle": dict(kwargs=dict(lr=0.05), one_cycle=True),  # cycles beta1, as torch's
}


@pytest.mark.parametrize("name", list(SPARSE_CASES))
def test_sparse_adam_matches_torch_on_embeddings(name):
    kwargs, pos_group = SPARSE_CASES[name]["kwargs"], SPARSE_CASES[name].get("pos_group")
    tok, pos, v, target = embeddings()
    sign = -1.0 if kwargs.get("maximize") else 1.0
    if pos_group:
        opt = torch.optim.SparseAdam([{"params": tok.parameters()},
                                      {"params": pos.parameters(), **pos_group}], **kwargs)
        tx = fo.SparseAdam(**kwargs, param_groups=[{"params": "pos", **pos_group}])
    else:
        opt = torch.optim.SparseAdam([*tok.parameters(), *pos.parameters()], **kwargs)
        tx = fo.SparseAdam(**kwargs)
    scheduler = None
    if SPARSE_CASES[name].get("one_cycle"):
        tx = fo.SparseAdam(lr=fls.OneCycleLR(kwargs["lr"], total_steps=SPARSE_STEPS))
        scheduler = tls.OneCycleLR(opt, max_lr=kwargs["lr"], total_steps=SPARSE_STEPS)
    params = {"tok": jnp.array(tok.weight.detach().numpy(), copy=True),
              "pos": jnp.array(pos.weight.detach().numpy(), copy=True)}

    @jax.jit
    def step(p, state, tokens, positions):
        grads = jax.grad(sparse_loss)(p, tokens, positions, v, target, sign)
        updates, state = tx.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    state, start = tx.init(params), tok.weight.detach().numpy().copy()
    vt, tt = torch.from_numpy(v), torch.from_numpy(target)
    for tokens, positions in zip(*lookups(SPARSE_STEPS)):
        opt.zero_grad()
        out = tok(torch.from_numpy(tokens)) + pos(torch.from_numpy(positions))
        (sign * torch.sum((out @ vt - tt) ** 2)).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        params, state = step(params, state, tokens, positions)
        for key, module in (("tok", tok), ("pos", pos)):
            torch_state = opt.state[module.weight]
            np.testing.assert_allclose(params[key], module.weight.detach().numpy(), rtol=TOL,
                                       atol=TOL)
            for field in ("exp_avg", "exp_avg_sq"):
                np.testing.assert_allclose(state_of(state, key, field),
                                           torch_state[field].numpy(), rtol=TOL, atol=TOL)
            assert int(state_of(state, key, "step")) == torch_state["step"]
    moved = np.abs(tok.weight.detach().numpy() - start)
    assert np.all(moved[8:] == 0) and np.all(np.asarray(params["tok"])[8:] == start[8:])
    assert np.all(np.max(moved[:8], axis=1) > 1e-4)


def test_sparse_adam_a_looked_up_row_with_zero_gradient():
    """The documented difference: torch moves a row looked up with an exactly zero gradient
    (its momentum), this leaves it; the other rows agree."""
    tok = torch.nn.Embedding(4, 2, sparse=True).double()
    w = jnp.array(tok.weight.detach().numpy(), copy=True)  # not a view of torch's
    opt, tx = torch.optim.SparseAdam(tok.parameters(), lr=0.1), fo.SparseAdam(lr=0.1)
    state = tx.init(w)
    for tokens, weights in [([0, 1], [1.0, 1.0]), ([0, 1], [0.0, 1.0])]:  # row 0: zero at 2
        opt.zero_grad()
        rows = tok(torch.tensor(tokens))  # (2, 2)
        (torch.tensor(weights, dtype=torch.float64)[:, None] * rows).sum().backward()
        theirs_before = tok.weight.detach().numpy().copy()
        opt.step()
        g = jnp.zeros((4, 2)).at[jnp.asarray(tokens)].add(jnp.asarray(weights)[:, None])
        updates, state = tx.update(g, state, w)
        w_before, w = w, optax.apply_updates(w, updates)
    theirs = tok.weight.detach().numpy()
    np.testing.assert_array_equal(w[0], w_before[0])  # here: row 0 left alone at step 2
    assert np.all(np.abs(theirs[0] - theirs_before[0]) > 1e-2)  # torch moved it
    np.testing.assert_allclose(w[1:], theirs[1:], rtol=0, atol=1e-15)


def test_present_rows():
    g = jnp.array([[0.0, 0.0], [0.0, -1e-300], [2.0, 0.0]])
    np.testing.assert_array_equal(transforms.present_rows(g)[:, 0], [False, True, True])
    np.testing.assert_array_equal(transforms.present_rows(jnp.array([0.0, 3.0])), [False, True])


def test_sparse_adam_refuses_what_torch_refuses():
    for kwargs, word in [(dict(lr=0.0), "lr"), (dict(eps=0.0), "eps"),
                         (dict(betas=(1.0, 0.9)), r"betas\[0\]"),
                         (dict(betas=(0.9, -0.1)), r"betas\[1\]")]:
        with pytest.raises(ValueError):
            torch.optim.SparseAdam([torch.zeros(2, requires_grad=True)], **kwargs)
        with pytest.raises(InputError, match=word) as info:
            fo.SparseAdam(**kwargs)
        assert "\n" not in str(info.value)
