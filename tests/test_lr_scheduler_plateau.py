"""ReduceLROnPlateau against torch: its own test table, torch stepped live, training runs.

(a) torch's hand-computed expectations (test/optim/test_lrscheduler.py, test_reduce_lr_on_plateau1
to 8 and test_add_param_group_does_not_break_reduce_lr_on_plateau), and torch's scheduler itself
stepped on the same metrics, every attribute compared after every step; (b) float64 training runs
through `functional_fit.fit.train`, stepped on each batch's loss and on each epoch's mean, against
torch's loop; (c) refusals.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit.checks import InputError
from functional_fit.optim import lr_scheduler as fls

#: torch's own table asserts with atol=1e-5; the rates here are products of a few factors,
#: computed as torch computes them, so they agree to the last bits.
TABLE_RTOL = 1e-15
#: Parameters after 40 float64 steps: XLA's and torch's matrix products round in other orders
#: (1e-16 a step), which a few dozen steps of a well-conditioned regression do not amplify
#: beyond this.
PATH_RTOL = 1e-12


def plateau_lrs(transformation, metrics):
    """The rate after each metric, and the last state: one `lax.scan` under `jax.jit`."""
    def run(metrics):
        def one(state, metric):
            _, state = transformation.update(jnp.ones(2), state, value=metric)
            return state, state.lr
        return jax.lax.scan(one, transformation.init(jnp.zeros(2)), metrics)

    state, lrs = jax.jit(run)(jnp.asarray(metrics, dtype=jnp.float64))
    return np.asarray(lrs), state


# --------------------------------------------------------------------------- (a) torch's table

#: name: (keywords, metrics, expected rates after each metric), from torch's test file; the
#: optimizer's groups all start at lr 0.5 there. Test 8 has two groups with min_lr [0.4, 0.3]:
#: here one run per group (`min_lr` a list is refused; each group's rule is the same).
TORCH_TABLE = {
    "plateau1": (dict(threshold_mode="abs", mode="min", threshold=0.01, patience=5, cooldown=5),
                 [10 - i * 0.0167 for i in range(10)], [0.5] * 10),
    "plateau2": (dict(patience=5, cooldown=0, threshold_mode="abs", mode="min", threshold=0.1),
                 [10 - i * 0.0165 for i in range(22)],
                 [0.5] * 6 + [0.05] * 7 + [0.005] * 7 + [0.0005] * 2),
    "plateau3": (dict(mode="max", patience=5, cooldown=5, threshold_mode="abs"),
                 [-0.8] * 2 + [-0.234] * 20, [0.5] * (2 + 6) + [0.05] * (5 + 6) + [0.005] * 4),
    "plateau4": (dict(mode="max", patience=3, threshold_mode="rel", threshold=0.1),
                 [1.5 * (1.025**i) for i in range(20)], [0.5] * 20),
    "plateau5": (dict(mode="max", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
                 [1.5 * (1.005**i) for i in range(20)], [0.5] * 6 + [0.05] * (5 + 6) + [0.005] * 4),
    "plateau6": (dict(mode="min", threshold_mode="rel", threshold=0.1),
                 [1.5 * (0.85**i) for i in range(20)], [0.5] * 20),
    "plateau7": (dict(mode="min", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
                 [1] * 7 + [0.6] + [0.5] * 12, [0.5] * 6 + [0.05] * (5 + 6) + [0.005] * 4),
    "plateau8 group 0": (dict(mode="max", threshold_mode="rel", min_lr=0.4, threshold=0.1,
                              patience=5, cooldown=5),
                         [1.5 * (1.005**i) for i in range(20)], [0.5] * 6 + [0.4] * 14),
    "plateau8 group 1": (dict(mode="max", threshold_mode="rel", min_lr=0.3, threshold=0.1,
                              patience=5, cooldown=5),
                         [1.5 * (1.005**i) for i in range(20)], [0.5] * 6 + [0.3] * 14),
    "add_param_group scalar min_lr": (dict(mode="min", threshold_mode="rel", threshold=0.1,
                                           patience=5, cooldown=5, min_lr=0),
                                      [1] * 7 + [0.6] + [0.5] * 12,
                                      [0.5] * 6 + [0.05] * (5 + 6) + [0.005] * 4),
}


@pytest.mark.parametrize("name", list(TORCH_TABLE))
def test_torchs_own_expectations(name):
    kwargs, metrics, expected = TORCH_TABLE[name]
    lrs, _ = plateau_lrs(fls.ReduceLROnPlateau(0.5, **kwargs), metrics)
    # torch's loop runs over its `epochs`, which some of its target lists outrun
    np.testing.assert_allclose(lrs, expected[:len(metrics)], rtol=TABLE_RTOL, atol=0)


# --------------------------------------------------------------------------- torch, live


def torch_states(lr, kwargs, metrics):
    """torch's scheduler stepped on `metrics`: (lr, best, num_bad_epochs, cooldown_counter,
    last_epoch) after each step."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for m in metrics:
        sched.step(m)
        out.append((opt.param_groups[0]["lr"], sched.best, sched.num_bad_epochs,
                    sched.cooldown_counter, sched.last_epoch))
    return out


def jax_states(lr, kwargs, metrics):
    t = fls.ReduceLROnPlateau(lr, **kwargs)
    state, out = t.init(jnp.zeros(1)), []
    for m in metrics:
        _, state = t.update(jnp.ones(1), state, value=m)
        out.append((float(state.lr), float(state.best), int(state.num_bad_epochs),
                    int(state.cooldown_counter), int(state.last_epoch)))
    return out


RISING = [1.0 + 0.01 * i for i in range(12)]
#: name: (lr, keywords, metrics): what torch's table leaves out, each against torch itself.
LIVE = {
    "eps stops the reductions": (1e-6, dict(factor=0.5, patience=0, eps=3e-7), RISING),
    "min_lr floor": (1.0, dict(factor=0.5, patience=1, min_lr=0.3), RISING),
    "max abs cooldown": (0.2, dict(mode="max", threshold_mode="abs", threshold=0.05, patience=1,
                                   cooldown=2), [0.0, 0.1, 0.12, 0.14, 0.3, 0.31, 0.2, 0.2, 0.2,
                                                 0.2, 0.4, 0.4]),
    "ties are bad, threshold 0": (0.1, dict(threshold=0.0, patience=2),
                                  [3.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]),
    "a nan metric is a bad one": (0.1, dict(patience=1), [1.0, math.nan, 0.5, math.nan, math.nan,
                                                          0.4, 0.4]),
    "factor 0": (0.1, dict(factor=0.0, patience=0), [1.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("name", list(LIVE))
def test_every_attribute_as_torchs(name):
    lr, kwargs, metrics = LIVE[name]
    theirs, ours = torch_states(lr, kwargs, metrics), jax_states(lr, kwargs, metrics)
    assert len({t[0] for t in theirs}) > 1 or name == "ties are bad, threshold 0"
    for k, (t, o) in enumerate(zip(theirs, ours)):
        assert o[2:] == t[2:], (k, o, t)
        assert o[0] == t[0] and (o[1] == t[1] or (math.isnan(o[1]) and math.isnan(t[1]))), (k, o, t)


def test_min_lr_per_group_through_multi_transform_as_torchs():
    """torch's test_reduce_lr_on_plateau8 (min_lr=[0.4, 0.3]) with its two-group optimizer,
    against torch stepped live: one ReduceLROnPlateau per group in optax.multi_transform."""
    kwargs = dict(mode="max", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5)
    metrics = [1.5 * (1.005**i) for i in range(20)]
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.5)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.4, 0.3], **kwargs)
    tx = optax.multi_transform(
        {g: optax.chain(fo.SGD(lr=0.5), fls.ReduceLROnPlateau(0.5, min_lr=m, **kwargs))
         for g, m in (("a", 0.4), ("b", 0.3))}, {"a": "a", "b": "b"})
    params = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    state, update = tx.init(params), jax.jit(tx.update)
    seen = set()
    for metric in metrics:
        grads = {"a": jnp.ones(2), "b": jnp.ones(3)}
        updates, state = update(grads, state, params, value=metric)
        lrs = [g["lr"] for g in opt.param_groups]  # the rates of this step
        assert [float(-updates["a"][0]), float(-updates["b"][0])] == lrs
        seen.add(tuple(lrs))
        opt.step()
        sched.step(metric)
    assert seen == {(0.5, 0.5), (0.4, 0.3)}


def test_the_updates_use_the_rate_before_the_metric():
    t = fls.ReduceLROnPlateau(1.0, factor=0.5, patience=0)
    state = t.init(jnp.zeros(1))
    seen = []
    for metric in (1.0, 2.0, 3.0, 4.0):
        updates, state = t.update(jnp.ones(1), state, value=metric)
        seen.append(float(updates[0]))
    assert seen == [1.0, 1.0, 0.5, 0.25]  # torch: opt.step() at the old rate, then step(metric)


def test_signature_is_torchs():
    ours = inspect.signature(fls.ReduceLROnPlateau).parameters
    theirs = {k: p for k, p in inspect.signature(
        torch.optim.lr_scheduler.ReduceLROnPlateau).parameters.items() if k != "optimizer"}
    assert list(ours) == ["lr", *theirs]
    for k, p in theirs.items():
        assert ours[k].default == p.default, k


# --------------------------------------------------------------------------- (b) training runs

N, B, EPOCHS = 24, 5, 8  # 5 batches an epoch, the last of 4 points: 40 steps


def problem():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.8 * rng.normal(size=N)
    return x, y, ff.data.batch_order(N, EPOCHS, seed=1)


def torch_fit(x, y, order, make_opt, kwargs, epoch_mean):
    """torch's loop: ``sched.step(loss.item())`` after every step, or the epoch's mean batch
    loss after every epoch. Returns the (steps+1, 4) path of (w, b) and the last lr."""
    module = torch.nn.Linear(3, 1).double()
    with torch.no_grad():
        module.weight.zero_()
        module.bias.zero_()
    opt = make_opt(module.parameters())
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    path = [np.r_[module.weight.detach().numpy()[0], module.bias.detach().numpy()]]
    for perm in order:
        epoch_loss, nb = 0.0, 0
        for i in range(0, N, B):
            idx = torch.from_numpy(perm[i:i + B])
            opt.zero_grad()
            loss = ((module(xt[idx])[:, 0] - yt[idx]) ** 2).mean()
            loss.backward()
            opt.step()
            if epoch_mean:
                epoch_loss, nb = epoch_loss + loss.item(), nb + 1
            else:
                sched.step(loss.item())
            path.append(np.r_[module.weight.detach().numpy()[0], module.bias.detach().numpy()])
        if epoch_mean:
            sched.step(epoch_loss / nb)
    return np.array(path), opt.param_groups[0]["lr"]


OPTIMIZERS = {
    "SGD momentum": (0.05, lambda lr: fo.SGD(lr=lr, momentum=0.9),
                     lambda lr: lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    "AdamW": (0.5, lambda lr: fo.AdamW(lr=lr, weight_decay=0.1),
              lambda lr: lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.1)),
}
#: On batch losses, and on epoch means (fewer, smoother): each reduces at least twice in torch.
PLATEAU = {False: dict(factor=0.5, patience=1, threshold=0.05),
           True: dict(factor=0.5, patience=0, threshold=0.1, cooldown=1)}


@pytest.mark.parametrize("epoch_mean", [False, True], ids=["per step", "per epoch"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_fit_matches_torchs(name, epoch_mean):
    lr, ours, theirs = OPTIMIZERS[name]
    x, y, order = problem()
    tpath, last_lr = torch_fit(x, y, order, theirs(lr), PLATEAU[epoch_mean], epoch_mean)
    assert last_lr <= lr / 4, last_lr  # at least two reductions happened in torch
    plateau = fls.ReduceLROnPlateau(lr, **PLATEAU[epoch_mean])
    if epoch_mean:
        plateau = fls.per_epoch(plateau, steps_per_epoch=ff.data.n_batches(N, B))
    res = ff.fit.train({"w": jnp.zeros(3), "b": jnp.zeros(())}, x, y,
                       model=lambda p, x: x @ p["w"] + p["b"], loss=ff.losses.mse,
                       optimizer=optax.chain(ours(lr), plateau), order=order, batch_size=B)
    jpath = np.c_[np.asarray(res.path["w"]), np.asarray(res.path["b"])]  # (41, 4)
    assert jpath.shape == tpath.shape == (EPOCHS * 5 + 1, 4)
    np.testing.assert_allclose(jpath, tpath, rtol=PATH_RTOL, atol=PATH_RTOL * np.abs(tpath).max())


# --------------------------------------------------------------------------- (c) refusals

BAD = {
    "factor 1": (lambda: fls.ReduceLROnPlateau(0.1, factor=1.0), "factor"),
    "mode": (lambda: fls.ReduceLROnPlateau(0.1, mode="minimum"), "mode"),
    "threshold_mode": (lambda: fls.ReduceLROnPlateau(0.1, threshold_mode="relative"),
                       "threshold_mode"),
    "min_lr list": (lambda: fls.ReduceLROnPlateau(0.1, min_lr=[0.0, 0.1]), "min_lr"),
    "patience": (lambda: fls.ReduceLROnPlateau(0.1, patience=2.5), "patience"),
    "cooldown": (lambda: fls.ReduceLROnPlateau(0.1, cooldown=-1), "cooldown"),
    "lr": (lambda: fls.ReduceLROnPlateau(math.inf), "lr"),
    "steps_per_epoch": (lambda: fls.per_epoch(fls.ReduceLROnPlateau(0.1), 0), "steps_per_epoch"),
    "as an optimizer's lr": (lambda: fo.SGD(lr=fls.ReduceLROnPlateau(0.1)), "lr"),
    "inside SequentialLR": (lambda: fls.SequentialLR(0.1, [fls.ExponentialLR(0.1, 0.9),
                                                           fls.ReduceLROnPlateau(0.1)], [3]),
                            "schedulers"),
    "inside ChainedScheduler": (lambda: fls.ChainedScheduler(0.1, [fls.ReduceLROnPlateau(0.1)]),
                                "schedulers"),
    "no value": (lambda: fls.ReduceLROnPlateau(0.1).update(jnp.ones(1), fls.ReduceLROnPlateau(
        0.1).init(jnp.ones(1))), "value"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_refused_in_one_line(name):
    make, argument = BAD[name]
    with pytest.raises(InputError, match=argument) as info:
        make()
    assert "\n" not in str(info.value)


def test_torch_refuses_the_same():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for kwargs in (dict(factor=1.0), dict(mode="minimum"), dict(threshold_mode="relative")):
        with pytest.raises(ValueError):
            torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
