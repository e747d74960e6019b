"""The step count at full width, tensor learning rates and torch's implementation flags.

The count: optax passes its step count to a schedule as int32, and JAX divides int32 by int32
in float32 even in 64-bit mode, so ``lambda i: 1 / (i + 1)`` would give 0.33333334 where
torch's Python ints give 0.3333333333333333. Checked where optax actually calls the schedule,
inside a real ``update`` and a whole `fit.train` path, against torch's own SGD + LambdaLR.

Tensors: a 1-element torch tensor, numpy array or JAX array as ``lr`` (or betas) is read at its
own precision, against torch given the same tensor; the cases torch computes in the tensor's
precision are refused. Flags: ``foreach``, ``fused``, ``capturable``, ``differentiable`` are
accepted where torch's numbers do not change (checked against torch with the same flags), and
refused in one line where they do or where torch refuses them too.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit import InputError
from functional_fit.optim import lr_scheduler as fls
from functional_fit.tolerances import OPTIM_TRAJECTORY_FLOAT32, UNIT_ROUNDOFF, rel_err

from _paths import EveryKSteps, flat, jax_train, torch_train
from comparison.problems import make

N = 100  # the lecture's data
STEPS = 300

#: Two float64 paths of the same SGD on the same rates part by rounding only: each step rounds
#: a few times in each library, so a few units of roundoff per step, accumulated over the path.
SAME_RATES_FLOAT64 = 4 * STEPS * UNIT_ROUNDOFF["float64"]


def _jax_path(tx, problem="linear", steps=STEPS, dtype="float64"):
    """The path of `tx` on `problem`, full batch, as a (steps+1, P) matrix."""
    pb = make(problem, dtype)
    return flat(jax_train(pb.params, pb.x, pb.y, model=pb.model, loss=pb.loss, optimizer=tx,
                          steps=steps))


def _torch_path(torch_optimizer, problem="linear", scheduler=None, steps=STEPS,
                dtype="float64"):
    """The path of ``torch_optimizer(params) -> optimizer`` on `problem`, full batch;
    `scheduler` makes torch's scheduler on the optimizer."""
    pb = make(problem, dtype)
    opt = torch_optimizer(pb.module.parameters())
    return flat(torch_train(pb.module, pb.loss_fn, *map(torch.from_numpy, (pb.x, pb.y)),
                            optimizer=opt, scheduler=scheduler(opt) if scheduler else None,
                            steps=steps))


def _paths(tx, torch_optimizer, problem="linear", scheduler=None, steps=STEPS, dtype="float64"):
    """(JAX path, torch path), as `_jax_path` and `_torch_path` make them."""
    return (_jax_path(tx, problem, steps, dtype),
            _torch_path(torch_optimizer, problem, scheduler, steps, dtype))


# --------------------------------------------------------------------------- the count


def _torch_lambda_rates(lr, lr_lambda, steps):
    """torch's param_groups[0]["lr"] before each of `steps` steps of SGD + LambdaLR."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = tls.LambdaLR(opt, lr_lambda)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(rates)


def _update_rates(tx, steps):
    """The rate of each of `steps` real updates of a plain-SGD `tx`: -update / g, with g = 1
    (so exact), under `jax.jit` as a training loop runs it."""
    params = jnp.zeros(3)
    g = jnp.ones(3)
    update = jax.jit(tx.update)
    state, rates = tx.init(params), []
    for _ in range(steps):
        u, state = update(g, state, params)
        rates.append(-float(u[0]))
    return np.array(rates)


@pytest.mark.parametrize("how", ["LambdaLR", "plain function"])
def test_rates_at_the_count_optax_passes_are_torchs(how):
    """Inside a real update, bit for bit: 1 / (i + 1) in float64, as torch's Python ints."""
    def lr_lambda(i):
        return 1 / (i + 1)

    lr = fls.LambdaLR(0.1, lr_lambda) if how == "LambdaLR" else (lambda i: 0.1 * lr_lambda(i))
    ours = _update_rates(fo.SGD(lr=lr), 50)
    np.testing.assert_array_equal(ours, _torch_lambda_rates(0.1, lr_lambda, 50))


def test_lambda_lr_path_is_torchs_to_rounding():
    """SGD + LambdaLR(1 / (i + 1)), 300 float64 steps of fit.train, against torch's path."""
    lr, lr_lambda = 0.05, (lambda i: 1 / (i + 1))
    a, b = _paths(fo.SGD(lr=fls.LambdaLR(lr, lr_lambda)),
                  lambda p: torch.optim.SGD(p, lr=lr), problem="mlp",
                  scheduler=lambda o: tls.LambdaLR(o, lr_lambda))
    assert np.max(np.abs(b[-1] - b[0])) > 1e-3 * np.max(np.abs(b))  # the parameters moved
    assert rel_err(a, b) <= SAME_RATES_FLOAT64


def test_per_epoch_lambda_and_adagrad_decay_are_full_width():
    """Every place a rate is computed from the count: per_epoch's count // s, and Adagrad's
    lr / (1 + k lr_decay) around a scheduled lr."""
    epoch = fls.per_epoch(fls.LambdaLR(1.0, lambda e: 1 / (e + 1)), steps_per_epoch=4)
    ours = _update_rates(fo.SGD(lr=epoch), 40)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = EveryKSteps(tls.LambdaLR(opt, lambda e: 1 / (e + 1)), 4)
    theirs = []
    for _ in range(40):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_array_equal(ours, theirs)
    a, b = _paths(fo.Adagrad(lr=fls.LambdaLR(0.1, lambda i: 3 / (i + 3)), lr_decay=0.01),
                  lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.01), problem="mlp",
                  scheduler=lambda o: tls.LambdaLR(o, lambda i: 3 / (i + 3)), steps=100)
    assert rel_err(a, b) <= SAME_RATES_FLOAT64


def test_full_width_keeps_a_schedule_and_its_momentum():
    one_cycle = fls.OneCycleLR(0.1, total_steps=20)
    assert fls.full_width(one_cycle) is one_cycle
    plain = fls.full_width(lambda i: 1 / (i + 1))
    assert plain(jnp.int32(2)).dtype == jnp.float64 and float(plain(jnp.int32(2))) == 1 / 3
    assert float(plain(2.5)) == 1 / 3.5  # a float count as it is
    with pytest.raises(ff.InputError, match="schedule"):
        fls.full_width(0.1)


# --------------------------------------------------------------------------- tensor rates

F32_LR = torch.tensor(0.001)  # float32: read as float32(0.001) = 0.0010000000474974513

#: The optimizers that compute with a tensor lr's value as it is, whatever the params' dtype.
AS_IT_IS = ["SGD", "RMSprop", "Adagrad", "RAdam", "Adadelta"]
#: Those that compute their step size in the tensor's precision (refused when it is narrower).
NARROW_STEP = ["Adam", "AdamW", "Adamax", "NAdam"]


@pytest.mark.parametrize("name", AS_IT_IS)
def test_float32_tensor_lr_is_read_as_torch_reads_it(name):
    a, b = _paths(fo.OPTIMIZERS[name](lr=F32_LR),
                  lambda p: getattr(torch.optim, name)(p, lr=F32_LR), problem="mlp", steps=100)
    assert rel_err(a, b) <= SAME_RATES_FLOAT64
    # and that is the float32 value, not 0.001: the path of lr=0.001 is measurably elsewhere
    c = _jax_path(fo.OPTIMIZERS[name](lr=0.001), problem="mlp", steps=100)
    assert rel_err(c, b) > 100 * SAME_RATES_FLOAT64


@pytest.mark.parametrize("lr", [np.float32(0.001), np.array([0.001], np.float32),
                                jnp.float32(0.001), torch.tensor([[0.001]])],
                         ids=["numpy scalar", "numpy (1,)", "jax", "torch (1, 1)"])
def test_any_one_element_array_is_read_at_its_precision(lr):
    ours = _update_rates(fo.SGD(lr=lr), 2)
    np.testing.assert_array_equal(ours, float(np.float32(0.001)))


@pytest.mark.parametrize("name", NARROW_STEP)
def test_float64_tensor_lr_and_float32_tensor_with_float32_params(name):
    """Where the tensor is as wide as the parameters, torch's step size is the usual one."""
    lr64 = torch.tensor(0.001, dtype=torch.float64)
    a, b = _paths(fo.OPTIMIZERS[name](lr=lr64),
                  lambda p: getattr(torch.optim, name)(p, lr=lr64), problem="mlp", steps=100)
    assert rel_err(a, b) <= SAME_RATES_FLOAT64
    a, b = _paths(fo.OPTIMIZERS[name](lr=F32_LR),
                  lambda p: getattr(torch.optim, name)(p, lr=F32_LR), problem="mlp", steps=30,
                  dtype="float32")
    assert rel_err(a, b) <= OPTIM_TRAJECTORY_FLOAT32


@pytest.mark.parametrize("name", NARROW_STEP)
def test_narrow_tensor_lr_with_wider_params_is_refused_at_the_first_update(name):
    tx = fo.OPTIMIZERS[name](lr=F32_LR)
    params = jnp.zeros(3)
    with pytest.raises(ff.InputError, match=r"^lr is a 32-bit tensor.*float64") as info:
        tx.update(params, tx.init(params), params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RAdam"])
def test_float64_tensor_betas_are_torchs(name):
    betas = (torch.tensor(0.8, dtype=torch.float64), torch.tensor(0.99, dtype=torch.float64))
    a, b = _paths(fo.OPTIMIZERS[name](lr=1e-3, betas=betas),
                  lambda p: getattr(torch.optim, name)(p, lr=1e-3, betas=betas), problem="mlp",
                  steps=100)
    assert rel_err(a, b) <= SAME_RATES_FLOAT64


def test_betas_of_any_float64_kind_are_the_numbers_they_hold():
    params = jnp.linspace(-1.0, 2.0, 5)
    plain = fo.Adam(betas=(0.8, 0.99))
    expected, _ = plain.update(params, plain.init(params), params)
    b2 = torch.tensor(0.99, dtype=torch.float64)
    for betas in [(jnp.float64(0.8), np.float64(0.99)), (np.array([0.8]), b2)]:
        tx = fo.Adam(betas=betas)
        updates, _ = tx.update(params, tx.init(params), params)
        np.testing.assert_array_equal(updates, expected)
    with pytest.raises(ff.InputError, match="betas.*traced"):
        jax.jit(lambda b: fo.Adam(betas=(b, 0.99)).init(params))(jnp.float64(0.8))


@pytest.mark.parametrize("kwargs, word", [
    (dict(betas=(torch.tensor(0.9), 0.999)), "betas[0] is a 32-bit tensor"),
    (dict(betas=(0.9, np.float32(0.999))), "betas[1] is a 32-bit tensor"),
    (dict(lr=torch.tensor([0.1, 0.2])), "lr must be a number or a 1-element"),
    (dict(lr=jnp.ones(2)), "lr must be a number or a 1-element"),
    (dict(lr=torch.tensor(-0.1)), "lr must be non-negative"),
    (dict(betas=(torch.tensor(1.0, dtype=torch.float64), 0.9)), "betas[0] must be in"),
    # torch refuses tensor hyperparameters with foreach=True (optim_db's error inputs)
    (dict(lr=torch.tensor(1e-3, dtype=torch.float64), foreach=True), "lr as a tensor"),
    (dict(betas=(torch.tensor(0.9, dtype=torch.float64),) * 2, foreach=True),
     "betas as a tensor"),
])
def test_bad_tensors_are_refused_in_one_line(kwargs, word):
    with pytest.raises(ff.InputError) as info:
        fo.Adam(**kwargs)
    assert str(info.value).startswith(word) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- the flags

FLAGS = ("foreach", "fused", "capturable", "differentiable")


def _flags_of(name):
    return [k for k in inspect.signature(getattr(torch.optim, name)).parameters if k in FLAGS]


def _accepted(name):
    """Every flag value torch's CPU optimizer takes without changing its numbers."""
    values = {"foreach": [None, False, True], "fused": [None, False, True],
              "capturable": [False], "differentiable": [False]}
    if name in MOVED_BY_FOREACH:
        values["foreach"] = [None, False]
    return [{k: v} for k in _flags_of(name) for v in values[k]]


#: Optimizers whose batched (foreach=True) torch kernel moves torch's own numbers: refused.
MOVED_BY_FOREACH = ("ASGD",)


@pytest.mark.parametrize("name", MOVED_BY_FOREACH)
def test_foreach_is_refused_where_it_moves_torchs_numbers(name):
    loop = _torch_path(lambda p: getattr(torch.optim, name)(p, lr=1e-3, foreach=False),
                       problem="mlp", steps=30)
    batched = _torch_path(lambda p: getattr(torch.optim, name)(p, lr=1e-3, foreach=True),
                          problem="mlp", steps=30)
    assert rel_err(batched, loop) > 100 * SAME_RATES_FLOAT64  # torch against itself
    with pytest.raises(InputError, match=f"foreach=True is not reproduced for {name}"):
        fo.OPTIMIZERS[name](lr=1e-3, foreach=True)


# LBFGS has none of torch's implementation flags (torch's LBFGS takes none)
@pytest.mark.parametrize("name", [n for n in fo.OPTIMIZERS if _flags_of(n)])
def test_accepted_flags_agree_with_torch_given_the_same(name):
    """An accepted flag leaves our update as it is (bit for bit), and torch's path with that
    flag agrees with it: torch's numbers did not move either."""
    ours = _jax_path(fo.OPTIMIZERS[name](lr=1e-3), problem="mlp", steps=30)
    params = {"w": jnp.linspace(-1.0, 2.0, 5)}
    plain = fo.OPTIMIZERS[name](lr=1e-3)
    expected, _ = plain.update(params, plain.init(params), params)
    for flags in _accepted(name):
        tx = fo.OPTIMIZERS[name](lr=1e-3, **flags)
        updates, _ = tx.update(params, tx.init(params), params)
        np.testing.assert_array_equal(updates["w"], expected["w"])
        theirs = _torch_path(lambda p, f=flags: getattr(torch.optim, name)(p, lr=1e-3, **f),
                             problem="mlp", steps=30)
        assert rel_err(ours, theirs) <= SAME_RATES_FLOAT64, flags


#: torch's differentiable=True keeps these optimizers' step counts as float32 tensors.
MOVED_BY_DIFFERENTIABLE = ["Adam", "AdamW", "NAdam"]


def _torch_differentiable(name, differentiable, steps=200):
    """torch's `name` on a smooth function of 7 float64 parameters, with differentiable as
    given; the parameters are plain tensors (torch's differentiable step cannot update a leaf
    that requires grad in place), their gradients computed on a copy."""
    p = torch.linspace(-1, 2, 7, dtype=torch.float64)
    opt = getattr(torch.optim, name)([p], lr=1e-2, differentiable=differentiable)
    for _ in range(steps):
        q = p.detach().requires_grad_(True)
        (((q - 0.3) ** 4).sum() + q.sin().sum()).backward()
        p.grad = q.grad
        opt.step()
    return p.numpy().copy()


@pytest.mark.parametrize("name", [n for n in fo.OPTIMIZERS if "differentiable" in _flags_of(n)])
def test_differentiable_is_accepted_exactly_where_torchs_numbers_stay(name):
    moved = _torch_differentiable(name, True) - _torch_differentiable(name, False)
    if name in MOVED_BY_DIFFERENTIABLE:
        assert np.max(np.abs(moved)) > 0  # why it is refused
        with pytest.raises(ff.InputError, match=f"differentiable=True.*{name}") as info:
            fo.OPTIMIZERS[name](differentiable=True)
        assert "\n" not in str(info.value)
    else:
        np.testing.assert_array_equal(moved, 0.0)
        params = jnp.linspace(-1.0, 2.0, 7)
        plain, tx = fo.OPTIMIZERS[name](lr=1e-2), fo.OPTIMIZERS[name](lr=1e-2,
                                                                      differentiable=True)
        np.testing.assert_array_equal(tx.update(params, tx.init(params), params)[0],
                                      plain.update(params, plain.init(params), params)[0])


@pytest.mark.parametrize("name", list(fo.OPTIMIZERS))
def test_refused_flags_name_themselves_and_torch_refuses_them_too(name):
    refused = []
    if "capturable" in _flags_of(name):
        refused.append(dict(capturable=True))
    if "fused" in _flags_of(name):
        refused.append(dict(fused=True, foreach=True))
    for flags in refused:
        word = next(iter(flags))
        with pytest.raises(ff.InputError, match=word) as info:
            fo.OPTIMIZERS[name](**flags)
        assert "\n" not in str(info.value)
        with pytest.raises((RuntimeError, AssertionError)):  # at construction or first step
            p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
            opt = getattr(torch.optim, name)([p], **flags)
            p.grad = torch.ones(2, dtype=torch.float64)
            opt.step()


def test_a_flag_torchs_class_lacks_is_a_type_error_on_both_sides():
    for name, flag in [("RMSprop", "fused"), ("SGD", "capturable"), ("Adamax", "fused")]:
        with pytest.raises(TypeError):
            getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], **{flag: False})
        with pytest.raises(TypeError):
            fo.OPTIMIZERS[name](**{flag: False})
