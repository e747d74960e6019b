"""One engine on each side: `functional_fit.fit.train` and `parity.fit.train`.

Any pytree of parameters, any model and loss, any optax optimizer on the JAX side and any
``torch.optim`` optimizer (and scheduler) on the torch side; the two must trace the same path.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import InputError, fit, losses, models, registry, runtime, surface
from functional_fit import sweep as sw
from functional_fit.tolerances import TRAJECTORY_FLOAT64, rel_err

SIZES = (1, 8, 1)


def regression(p, x):
    """The MLP on (n,) inputs with (n,) outputs."""
    return models.mlp(p, x[:, None])[:, 0]  # (n, 1) -> (n,)


def torch_mlp(seed=0):
    return parity.models.MLP(SIZES, "tanh", dtype=torch.float64, seed=seed)


def start(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


class Regression(torch.nn.Module):
    """The torch MLP on (n,) inputs with (n,) outputs, as a torch user writes it."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        return self.mlp(x[:, None])[:, 0]


def torch_path(module, x, y, make_opt, **length):
    wrapped = Regression(module)
    res = parity.fit.train(wrapped, parity.losses.mse, *parity.tensors(x, y),
                           optimizer=make_opt(wrapped.parameters()), **length)
    return {k.removeprefix("mlp."): v for k, v in res.path.items()}, res


def assert_same_path(jax_path, torch_path_, tol=TRAJECTORY_FLOAT64):
    assert set(jax_path) == set(torch_path_)
    for k in jax_path:
        assert np.asarray(jax_path[k]).shape == torch_path_[k].shape
        assert rel_err(jax_path[k], torch_path_[k]) <= tol, k


@pytest.mark.parametrize("length", [dict(steps=60), dict(batch_size=7)])
def test_mlp_with_momentum_matches_torch(lecture_xy, length):
    """A dict-of-arrays MLP, optax.sgd(0.1, momentum=0.9) against torch.optim.SGD, step for step."""
    x, y = lecture_xy
    if "batch_size" in length:  # 100 points in batches of 7: every epoch ends with a short one
        length = dict(length, order=ff.batch_order(100, 3, seed=1))
    module = torch_mlp()
    p0 = start(module)
    res = fit.train(p0, x, y, model=regression, loss=losses.mse,
                    optimizer=optax.sgd(0.1, momentum=0.9), **length)
    theirs, tres = torch_path(module, x, y, lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
                              **length)
    steps = length.get("steps") or 3 * 15
    assert res.losses.shape == (steps,)
    assert all(v.shape == (steps + 1,) + p0[k].shape for k, v in res.path.items())
    assert_same_path(res.path, theirs)
    assert rel_err(res.losses, tres.losses) <= TRAJECTORY_FLOAT64


def test_torch_scheduler_steps_once_per_optimizer_step(lecture_xy):
    """parity.fit.train's scheduler against an optax schedule: lr * 0.5^(k // 10)."""
    x, y = lecture_xy
    module = torch_mlp(1)
    p0 = start(module)
    # Not optax.exponential_decay: on optax's int32 step count it computes in float32, and
    # rounds 0.05 to 0.0500000007 (a 3.6e-9 difference within 4 steps).
    schedule = lambda count: 0.05 * 0.5 ** (count // 10).astype(jnp.float64)  # noqa: E731
    res = fit.train(p0, x, y, model=regression, loss=losses.mse, optimizer=optax.sgd(schedule),
                    steps=40)
    wrapped = Regression(module)
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    tres = parity.fit.train(wrapped, parity.losses.mse, *parity.tensors(x, y), optimizer=opt,
                            scheduler=sched, steps=40)
    assert_same_path(res.path, {k.removeprefix("mlp."): v for k, v in tres.path.items()})


def test_mlp_sweep_over_64_learning_rates(lecture_xy):
    """The same MLP swept over 64 learning rates: every member is the single fit."""
    x, y = lecture_xy
    p0 = start(torch_mlp())
    lrs = np.logspace(-3, -0.5, 64)
    res = sw.as_numpy(sw.sweep(lambda lr: optax.sgd(lr, momentum=0.9), p0, x, y, lrs,
                               model=regression, loss=losses.mse, steps=30))
    assert res.loss.shape == (64,) and not res.diverged.any()
    assert {k: v.shape for k, v in res.params.items()} == {k: (64,) + v.shape for k, v in p0.items()}
    for r in (0, 31, 63):
        one = fit.train(p0, x, y, model=regression, loss=losses.mse,
                        optimizer=optax.sgd(lrs[r], momentum=0.9), steps=30)
        for k in p0:
            assert rel_err(res.params[k][r], one.params[k]) <= 1e-12
        assert rel_err(res.loss[r], fit.full_loss(one.params, x, y, model=regression,
                                                  loss=losses.mse)) <= 1e-12


def test_mlp_random_plane_surface(lecture_xy):
    """random_plane and loss_surface of a dict-of-arrays model, against the loss at each point."""
    x, y = lecture_xy
    p0 = start(torch_mlp())
    plane = surface.random_plane(p0, seed=3)
    assert jax.tree.structure(plane.u) == jax.tree.structure(p0)
    a, b = np.linspace(-1, 1, 7), np.linspace(-0.5, 0.5, 5)
    z = surface.loss_surface(regression, losses.mse, x, y, a, b, plane=plane)
    assert z.shape == (5, 7)
    for j, i in ((0, 0), (2, 3), (4, 6)):
        w = jax.tree.map(lambda o, u, v: o + a[i] * u + b[j] * v, *plane)
        assert rel_err(z[j, i], fit.full_loss(w, x, y, model=regression, loss=losses.mse)) < 1e-12
    pca = surface.pca_plane(fit.train(p0, x, y, model=regression, loss=losses.mse,
                                      optimizer=optax.adam(0.01), steps=20).path)
    assert pca.path.shape == (21, 2)
    assert jax.tree.structure(pca.plane.origin) == jax.tree.structure(p0)


def _fits_compiled(caplog, call) -> int:
    """How many times `call()` compiled the fit's program (JAX's own compile log)."""
    caplog.clear()
    with jax.log_compiles(), caplog.at_level(logging.WARNING, logger="jax"):
        call()
    return sum(r.getMessage().startswith("Compiling jit(recipe_scan)") for r in caplog.records)


def test_a_second_train_does_not_compile_again(lecture_xy, caplog):
    x, y = lecture_xy
    opt = optax.adam(0.01)
    model = lambda p, x: models.polynomial(p["w"], x)  # noqa: E731  (new: compiled once here)
    assert _fits_compiled(caplog, lambda: fit.train(
        {"w": jnp.zeros(3)}, x, y, model=model, loss=losses.l1, optimizer=opt, steps=7)) == 1
    assert _fits_compiled(caplog, lambda: fit.train(
        {"w": jnp.ones(3)}, x * 2, y, model=model, loss=losses.l1, optimizer=opt, steps=7)) == 0


def test_names_resolve_through_the_registry(lecture_xy):
    x, y = lecture_xy
    by_name = fit.train(np.zeros(3), x, y, model="poly", loss="mse", optimizer=optax.sgd(0.1),
                        steps=5)
    by_fn = fit.train(np.zeros(3), x, y, model=models.polynomial, loss=losses.mse,
                      optimizer=optax.sgd(0.1), steps=5)
    np.testing.assert_array_equal(by_name.path, by_fn.path)


BAD_TRAIN = {
    "pytree does not match the model": (
        dict(params={"weights": np.zeros(3)}), "params"),
    "non-optax optimizer": (dict(optimizer=torch.optim.SGD), "optimizer"),
    "both steps and order": (dict(order=ff.batch_order(100, 1), batch_size=10), "both"),
    "neither steps nor order": (dict(steps=None), "neither"),
    "model as an unknown name": (dict(model="cubic"), "model"),
    "loss not a scalar": (dict(loss=lambda a, b: a - b), "scalar"),
    "complex x": (dict(x=np.zeros(100, complex)), "x"),
    "torch tensor params": (dict(params={"w": torch.zeros(3)}), "torch"),
    "batch_size without order": (dict(batch_size=4), "batch_size"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_train_refuses_bad_input(lecture_xy, case):
    x, y = lecture_xy
    kw = dict(params={"w": np.zeros(3)}, x=x, y=y,
              model=lambda p, x: models.polynomial(p["w"], x), loss=losses.mse,
              optimizer=optax.sgd(0.1), steps=5)
    change, word = BAD_TRAIN[case]
    kw.update(change)
    with pytest.raises(InputError, match=word):
        fit.train(kw.pop("params"), kw.pop("x"), kw.pop("y"), **kw)


def test_torch_train_refuses_bad_input(lecture_xy):
    tx, ty = parity.tensors(*lecture_xy)
    m = parity.PolynomialModel(p=2, dtype=torch.float64)
    with pytest.raises(InputError, match="optimizer"):
        parity.fit.train(m, parity.losses.mse, tx, ty, optimizer=optax.sgd(0.1), steps=3)
    with pytest.raises(InputError, match="neither"):
        parity.fit.train(m, parity.losses.mse, tx, ty, optimizer=torch.optim.SGD(m.parameters(), 0.1))
    with pytest.raises(InputError, match="order"):
        parity.fit.train(m, parity.losses.mse, tx, ty, optimizer=torch.optim.SGD(m.parameters(), 0.1),
                         order=ff.batch_order(50, 2), batch_size=10)


# --------------------------------------------------------------------------- the worked example


def test_every_name_has_a_twin_on_each_side():
    assert set(registry.MODELS) == set(parity.registry.MODELS)
    assert set(registry.LOSSES) == set(parity.registry.LOSSES)
    assert set(registry.OPTIMIZERS) == set(parity.registry.OPTIMIZERS)
    for name, entry in registry.OPTIMIZERS.items():
        assert parity.registry.OPTIMIZERS[name].batching == entry.batching


@pytest.mark.parametrize("optimizer", ["gd", "sgd", "adam"])
def test_the_sine_model_in_both_frameworks(lecture_xy, optimizer):
    """The README's worked example: a model added by its two functions and two registry lines."""
    x, y = lecture_xy
    w0 = np.array([0.5, 2.0, 1.5])
    order = ff.batch_order(100, 5, seed=2)
    ours = fit.run(optimizer, w0, x, y, model="sine", loss="mse", lr=0.05, steps=40, order=order,
                   batch_size=10)
    module = parity.registry.module("sine", w=w0, dtype=torch.float64)
    theirs = parity.fit.run(optimizer, module, parity.registry.loss("mse"), *parity.tensors(x, y),
                            lr=0.05, steps=40, order=order, batch_size=10)
    assert rel_err(ours.path, theirs) <= TRAJECTORY_FLOAT64
    assert fit.full_loss(ours.params, x, y, model="sine", loss="mse") < fit.full_loss(
        w0, x, y, model="sine", loss="mse")


def test_the_sine_model_on_the_command_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "functional_fit", "sweep", "--model", "sine", "--loss", "mse",
         "--lr", "0.01:0.1:3", "--steps", "20", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"model": "sine"' in out.stdout and '"degree"' not in out.stdout


def test_torch_names_in_fit_sweep_and_cli(lecture_xy):
    """Every torch.optim name (functional_fit.optim) runs through fit.run, sweep and the CLI."""
    x, y = lecture_xy
    opt = registry.optimizer("RMSprop", alpha=0.9, momentum=0.5)
    lrs = [1e-3, 1e-2]
    res = sw.as_numpy(sw.sweep(opt, np.zeros(3), x, y, lrs, model="poly", loss="mse", epochs=3,
                               batch_size=10))
    order = ff.batch_order(100, 3, seed=0)
    for r, lr in enumerate(lrs):
        one = fit.run(opt, np.zeros(3), x, y, model="poly", loss="mse", lr=lr, order=order)
        assert rel_err(res.params[r], one.params) <= 1e-12
    out = subprocess.run(
        [sys.executable, "-m", "functional_fit", "sweep", "--optimizer", "NAdam", "--opt",
         "momentum_decay=0.01", "--model", "poly", "--lr", "0.001:0.01:2", "--epochs", "2",
         "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"opt": {"momentum_decay": 0.01}' in out.stdout


@pytest.mark.parametrize("what", ["gd", "sgd", "adam", "train"])
def test_a_fit_run_in_chunks_is_the_fit_run_whole(lecture_xy, what):
    """Long fits run as several compiled calls carrying their state (Ctrl-C, progress): the
    result, path and losses are bit for bit those of one call, and divergence is found at the
    same step."""
    x, y = lecture_xy
    order = ff.batch_order(100, 6, seed=3)

    def go(rt=None):
        if what == "train":
            return fit.train({"w": np.zeros(3)}, x, y, model=lambda p, x: models.polynomial(p["w"], x),
                             loss=losses.mse, optimizer=optax.adam(0.05), order=order, batch_size=7,
                             runtime=rt)
        return fit.run(what, np.zeros(3), x, y, model=models.polynomial, loss=losses.l1, lr=0.5,
                       steps=90, order=order, batch_size=7, runtime=rt)

    whole = go()
    cpu = runtime.defaults("cpu")
    small = runtime.defaults("cpu", chunk_work=40 * (cpu.step_overhead + 7 * 3))  # ~40 steps
    chunked = go(small)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(chunked)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if what == "gd":  # divergence: the same first non-finite step, chunked or not
        with pytest.raises(ff.DivergenceError) as chunked_error:
            fit.run("gd", np.zeros(2), x, y, loss=losses.mse, lr=1e6, steps=100, runtime=small)
        with pytest.raises(ff.DivergenceError) as whole_error:
            fit.run("gd", np.zeros(2), x, y, loss=losses.mse, lr=1e6, steps=100)
        assert chunked_error.value.step == whole_error.value.step == 30
