"""torch.optim.swa_utils against torch: SWALR's values (torch's own test table, and torch stepped
in a loop) and AveragedModel's averages over a sequence of parameters of a float64 nn.Module."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import swa_utils as tsw

import functional_fit.optim as fo
from functional_fit.checks import InputError
from functional_fit.optim import lr_scheduler as fls
from functional_fit.optim import swa_utils as fsw

#: torch's own table asserts with atol=1e-5; SWALR here is torch's recursion itself, and the
#: MultiplicativeLR before it is (tests/test_lr_scheduler_more.py): bit for bit.
EXACT = 0.0
#: AveragedModel's averages under jax.jit against torch's: XLA may fuse a multiply and an add
#: that torch rounds apart (get_ema_avg_fn), 1 ulp measured; 2 ulps of the leaf's largest entry.
AVERAGE_ULPS = 2


def values(schedule, n):
    """The schedule at the int32 counts optax passes, 0 .. n - 1."""
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(n, dtype=jnp.int32)))


# --------------------------------------------------------------------------- SWALR

# torch's test_swalr_*: the optimizer's groups start at 0.05 and 0.5; MultiplicativeLR(0.9)
# until swa_start, SWALR's steps after. Targets written as torch's test writes them.


def torch_swalr_targets(lr, swa_lr, anneal_epochs, strategy, epochs=15, swa_start=5, mult=0.9):
    def coef(t):
        if t + 1 >= anneal_epochs:
            return 0.0
        return ((1 + math.cos(math.pi * (t + 1) / anneal_epochs)) / 2 if strategy == "cos"
                else 1 - (t + 1) / anneal_epochs)

    before = [lr * mult**i for i in range(swa_start + 1)]
    return before + [before[-1] * coef(t) + swa_lr * (1 - coef(t))
                     for t in range(epochs - swa_start - 1)]


@pytest.mark.parametrize("lr", [0.05, 0.5], ids=["group 0", "group 1"])
def test_swalr_no_anneal(lr):  # torch's test_swalr_no_anneal: no scheduler before it
    swa_start, swa_lr = 5, 0.01
    targets = [lr] * (swa_start + 1) + [swa_lr] * (10 - swa_start - 1)
    schedule = fls.SequentialLR(lr, [fls.ConstantLR(lr, factor=1.0, total_iters=0),
                                     fsw.SWALR(lr, swa_lr=swa_lr, anneal_epochs=1)],
                                milestones=[swa_start])
    np.testing.assert_allclose(values(schedule, 10), targets, rtol=EXACT, atol=1e-17)


@pytest.mark.parametrize("lr, swa_lr, anneal_epochs, strategy", [
    (0.05, 0.01, 5, "cos"), (0.5, 0.01, 5, "cos"),  # test_swalr_cosine_anneal_after_multiplicative
    (0.05, 0.01, 4, "linear"), (0.5, 0.02, 4, "linear"),  # ..._linear_anneal_after_...: per group
])
def test_swalr_after_multiplicative_as_torchs_test(lr, swa_lr, anneal_epochs, strategy):
    mult = fls.MultiplicativeLR(lr, lambda i: 0.9)
    start = float(mult(jnp.int32(5)))
    schedule = fls.SequentialLR(lr, [mult, fsw.SWALR(start, swa_lr, anneal_epochs, strategy)],
                                milestones=[5])
    targets = torch_swalr_targets(lr, swa_lr, anneal_epochs, strategy)
    np.testing.assert_allclose(values(schedule, 15), targets, rtol=1e-15, atol=0)


@pytest.mark.parametrize("anneal_epochs", [0, 1, 3, 10])
@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_swalr_equals_torch_stepped(anneal_epochs, strategy):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = tsw.SWALR(opt, swa_lr=0.02, anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    theirs = [opt.param_groups[0]["lr"]]
    for _ in range(anneal_epochs + 4):
        opt.step()
        sched.step()
        theirs.append(opt.param_groups[0]["lr"])
    ours = values(fsw.SWALR(0.3, 0.02, anneal_epochs, strategy), len(theirs))
    assert ours.tolist() == theirs  # torch's recursion, bit for bit


def test_swalr_through_sgds_updates_at_optax_count():
    """SGD(lr=SWALR(...)) in optax's own update (int32 count) steps at torch's rates."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = tsw.SWALR(opt, swa_lr=0.02, anneal_epochs=4)
    tx = fo.SGD(lr=fsw.SWALR(0.3, swa_lr=0.02, anneal_epochs=4))
    state, update = tx.init(jnp.zeros(1)), jax.jit(tx.update)
    for _ in range(7):
        updates, state = update(jnp.ones(1), state, jnp.zeros(1))
        assert float(-updates[0]) == opt.param_groups[0]["lr"]
        opt.step()
        sched.step()


def test_swalr_signature_is_torchs():
    import inspect

    ours = list(inspect.signature(fsw.SWALR).parameters.items())
    theirs = [(k, p) for k, p in inspect.signature(tsw.SWALR).parameters.items()
              if k not in ("optimizer", "last_epoch")]
    assert [k for k, _ in ours] == ["lr", *[k for k, _ in theirs]]
    assert all(dict(ours)[k].default == p.default for k, p in theirs)


SWALR_BAD = {  # torch's test_swalr_hypers, and its messages' words
    "anneal_strategy": dict(anneal_strategy="exponential", swa_lr=1.0),
    "anneal_epochs negative": dict(anneal_epochs=-1, swa_lr=1.0),
    "anneal_epochs float": dict(anneal_epochs=1.7, swa_lr=1.0),
    "swa_lr list": dict(swa_lr=[1.0, 0.1, 0.01]),
}


@pytest.mark.parametrize("name", list(SWALR_BAD))
def test_swalr_refuses_what_torch_refuses(name):
    kwargs = SWALR_BAD[name]
    word = name.split()[0]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    with pytest.raises(ValueError, match=f"{word} must"):
        tsw.SWALR(opt, **kwargs)
    with pytest.raises(InputError, match=word) as info:
        fsw.SWALR(0.3, **kwargs)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- AveragedModel


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(3, 4)
        self.out = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def parameter_sequence(n=7):
    """n parameter sets of the net, as state_dict-named float64 arrays."""
    rng = np.random.default_rng(0)
    shapes = {"hidden.weight": (4, 3), "hidden.bias": (4,), "out.weight": (1, 4), "out.bias": (1,)}
    return [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(n)]


def torch_averages(seq, **kwargs):
    torch.manual_seed(0)
    net = Net().double()
    avg = tsw.AveragedModel(net, **kwargs)
    out = []
    for params in seq:
        net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
        avg.update_parameters(net)
        out.append({k: v.detach().numpy().copy() for k, v in avg.module.named_parameters()})
    return out, int(avg.n_averaged)


#: name: (torch keywords, ours): every averaging function torch offers.
AVERAGES = {
    "default (equal, CPU)": ({}, {}),
    "swa multi (float32 weight)": (dict(multi_avg_fn=tsw.get_swa_multi_avg_fn()),
                                   dict(multi_avg_fn=fsw.get_swa_multi_avg_fn())),
    "ema multi 0.9": (dict(multi_avg_fn=tsw.get_ema_multi_avg_fn(0.9)),
                      dict(multi_avg_fn=fsw.get_ema_multi_avg_fn(0.9))),
    "ema multi 0.3 (lerp's other branch)": (dict(multi_avg_fn=tsw.get_ema_multi_avg_fn(0.3)),
                                            dict(multi_avg_fn=fsw.get_ema_multi_avg_fn(0.3))),
    "ema avg_fn 0.9": (dict(avg_fn=tsw.get_ema_avg_fn(0.9)),
                       dict(avg_fn=fsw.get_ema_avg_fn(0.9))),
    "swa avg_fn": (dict(avg_fn=tsw.get_swa_avg_fn()), dict(avg_fn=fsw.get_swa_avg_fn())),
}


@pytest.mark.parametrize("name", list(AVERAGES))
def test_averages_equal_torchs(name):
    theirs_kw, ours_kw = AVERAGES[name]
    seq = parameter_sequence()
    theirs, n = torch_averages(seq, **theirs_kw)
    avg = fsw.AveragedModel(**ours_kw)
    update = jax.jit(avg.update)
    state = avg.init({k: jnp.zeros_like(v) for k, v in seq[0].items()})
    for k, (params, expected) in enumerate(zip(seq, theirs)):
        state = update({k2: jnp.asarray(v) for k2, v in params.items()}, state)
        for key, value in expected.items():
            np.testing.assert_allclose(np.asarray(state.params[key]), value, rtol=0,
                                       atol=AVERAGE_ULPS * np.finfo(np.float64).eps
                                       * np.abs(value).max(),
                                       err_msg=f"{name}: {key} after update {k + 1}")
    assert int(state.n_averaged) == n == len(seq)


def test_the_first_update_copies_and_the_swa_average_is_the_mean():
    seq = parameter_sequence(5)
    avg = fsw.AveragedModel()
    update = jax.jit(avg.update)
    state = update(seq[0], avg.init(seq[1]))
    np.testing.assert_array_equal(state.params["out.bias"], seq[0]["out.bias"])
    for params in seq[1:]:
        state = update(params, state)
    mean = np.mean([p["hidden.weight"] for p in seq], axis=0)
    np.testing.assert_allclose(state.params["hidden.weight"], mean, rtol=1e-15, atol=1e-16)


def test_torchs_multi_swa_is_off_by_float32s_weight():
    """The docstring's measurement: torch's get_swa_multi_avg_fn rounds 1 / (n + 1) to float32."""
    seq = [{"w": np.array([1.0, 2.0, 3.0]) * (k + 1) ** 0.5} for k in range(4)]
    avg = fsw.AveragedModel(multi_avg_fn=fsw.get_swa_multi_avg_fn())
    state = avg.init(seq[0])
    for params in seq:
        state = avg.update(params, state)
    exact = np.mean([p["w"] for p in seq], axis=0)
    gap = np.max(np.abs(np.asarray(state.params["w"]) - exact) / exact)
    assert 1e-9 < gap < 1e-8


AVG_BAD = {
    "both functions": (lambda: fsw.AveragedModel(avg_fn=fsw.get_swa_avg_fn(),
                                                 multi_avg_fn=fsw.get_swa_multi_avg_fn()),
                       "avg_fn"),
    "decay above one": (lambda: fsw.get_ema_multi_avg_fn(1.5), "decay"),
    "decay negative": (lambda: fsw.get_ema_avg_fn(-0.1), "decay"),
    "avg_fn not a function": (lambda: fsw.AveragedModel(avg_fn=0.9), "avg_fn"),
}


@pytest.mark.parametrize("name", list(AVG_BAD))
def test_averaged_model_refusals(name):
    make, word = AVG_BAD[name]
    with pytest.raises(InputError, match=word) as info:
        make()
    assert "\n" not in str(info.value)


def test_torch_refuses_the_same_decays_and_both_functions():
    with pytest.raises(ValueError, match="decay"):
        tsw.get_ema_multi_avg_fn(1.5)
    with pytest.raises(AssertionError):
        tsw.AveragedModel(Net(), avg_fn=tsw.get_swa_avg_fn(),
                          multi_avg_fn=tsw.get_swa_multi_avg_fn())


def test_docstring_examples_run():
    results = doctest.testmod(fsw)
    assert results.attempted >= 4 and results.failed == 0
