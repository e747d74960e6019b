"""parity.export.to_jax against torch itself: one table of modules, train and eval, float32 and
float64; values, gradients and updated buffers, under jit, grad and vmap; the engine on exports.

The reference is the eager torch module (a copy, so its buffers update there). Dropout in
training mode replays torch's draws: the exported graph run by torch from the same seed
(`parity.export.run_torch`) draws exactly the eager module's masks, which the test checks too.
"""

import copy
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch import nn

import functional_fit as ff
import parity
from functional_fit import losses, models
from functional_fit.checks import InputError
from functional_fit.tolerances import TRAJECTORY_FLOAT64, rel_err
from parity import export
from parity import models as pm

#: Forward and new buffers, float64: a few roundings per operation (issue 21's bound).
FORWARD_FLOAT64 = 1e-12
#: Gradients, float64: issue 21's bound.
GRADIENT_FLOAT64 = 1e-10
TOL = {torch.float64: (FORWARD_FLOAT64, GRADIENT_FLOAT64),
       torch.float32: (export.FORWARD["float32"], export.GRADIENT["float32"])}
SEED = 3


def _padding_mask():
    return torch.tensor([[False] * 5, [False, False, False, True, True]])  # (N, S) True: padded


class Case(NamedTuple):
    name: str
    make: Callable  # dtype -> module
    inputs: Callable  # dtype -> tuple of example inputs
    slow_float32: bool = False  # the float32 twin compiles as long again: marked slow


def _randn(*shape):
    return lambda dtype: (torch.randn(*shape, generator=torch.Generator().manual_seed(0),
                                      dtype=dtype),)


CASES = [
    Case("linear", lambda d: pm.SimpleLinearModel(w=np.array([0.3, -1.2]), dtype=d), _randn(7)),
    Case("polynomial", lambda d: pm.PolynomialModel(w=np.array([0.1, 0.2, -0.3, 0.4]), dtype=d),
         _randn(7)),
    Case("sine", lambda d: pm.SineModel(w=np.array([0.1, 0.5, 2.0]), dtype=d), _randn(7)),
    Case("mlp", lambda d: pm.MLP((2, 8, 3), "tanh", dtype=d, seed=0), _randn(7, 2)),
    Case("mlp-gelu", lambda d: pm.MLP((2, 8, 1), "gelu", dtype=d, seed=0), _randn(7, 2)),
    Case("logistic", lambda d: pm.Logistic(2, 1, dtype=d, seed=0), _randn(7, 2)),
    Case("resnet", lambda d: pm.ResNet(3, 4, 5, dtype=d, seed=0), _randn(2, 3, 8, 8), True),
    *[Case(f"transformer-norm_first={nf}",
           lambda d, nf=nf: (torch.manual_seed(0), nn.TransformerEncoderLayer(
               8, 2, 16, batch_first=True, norm_first=nf, dtype=d))[1],
           lambda d: (*_randn(2, 5, 8)(d), None, _padding_mask()), True)
      for nf in (False, True)],
]

PARAMS = [pytest.param(case, mode, dtype, id=f"{case.name}-{mode}-{str(dtype)[6:]}",
                       marks=[pytest.mark.slow] if case.slow_float32 and dtype == torch.float32
                       else [])
          for case in CASES for mode in ("train", "eval") for dtype in (torch.float64, torch.float32)]


def _torch_reference(module, inputs, cotangents):
    """The eager module's output, gradient of sum(cotangent * output) and buffers after it."""
    module = copy.deepcopy(module)
    torch.manual_seed(SEED)
    y = module(*inputs)
    named = dict(module.named_parameters())
    grads = torch.autograd.grad(y, list(named.values()), torch.as_tensor(cotangents[0]))
    return (y.detach().numpy(), dict(zip(named, (g.numpy() for g in grads))),
            {k: v.numpy() for k, v in module.state_dict().items() if k not in named})


def _jax_run(fn, params, inputs, masks, cotangent):
    """fn's output, gradient w.r.t. the parameters and new buffers, under jit and grad."""
    names = fn.parameter_names

    def scalar(p):
        out = fn({**params, **p}, *inputs, masks=masks)
        y, new = out if fn.mutated_buffers else (out, {})
        return jnp.sum(cotangent * y), (y, new)

    grads, (y, new) = jax.jit(jax.grad(scalar, has_aux=True))({n: params[n] for n in names})
    return y, grads, new


@pytest.mark.parametrize("case, mode, dtype", PARAMS)
def test_export_matches_torch(case, mode, dtype):
    module, inputs = case.make(dtype).train(mode == "train"), case.inputs(dtype)
    with ff.float64():
        fn, params = export.to_jax(module, *inputs, check=False)
        torch.manual_seed(SEED)
        replay = export.run_torch(fn, params, *inputs)  # torch's own dropout masks
        cot = export.cotangents(replay.output)
        y_torch, g_torch, buffers_torch = _torch_reference(module, inputs, cot)
        assert rel_err(replay.output[0], y_torch) <= TOL[dtype][0]  # the graph is the module
        jax_inputs = [None if x is None else x.numpy() for x in inputs]
        y, grads, new = _jax_run(fn, params, jax_inputs, replay.masks or None, jnp.asarray(cot[0]))
    forward, gradient = TOL[dtype]
    assert y.dtype == y_torch.dtype and rel_err(y, y_torch) <= forward
    assert set(grads) == set(g_torch) and set(g_torch)
    for name, error in export.gradient_errors(grads, g_torch).items():
        assert error <= gradient, name
    assert set(new) == set(fn.mutated_buffers)
    if mode == "train" and case.name == "resnet":
        assert len(new) == 3 * 6  # every BatchNorm's mean, variance and count
    for name, value in new.items():
        assert rel_err(value, buffers_torch[name]) <= forward, name
    assert fn.training == (mode == "train")
    assert fn.dropouts == len(replay.masks)
    if mode == "train" and case.name.startswith("transformer"):
        assert fn.dropouts == 4  # attention's own (a native_dropout of the graph), then three


def _batch_norm_and_dropout(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6, dtype=dtype), nn.BatchNorm1d(6, dtype=dtype), nn.ReLU(),
                         nn.Dropout(0.3), nn.Linear(6, 2, dtype=dtype), nn.Dropout(0.2))


def test_the_check_passes_on_a_module_and_reports_its_agreement():
    with ff.float64():
        module, x = _batch_norm_and_dropout(), torch.randn(5, 3, dtype=torch.float64)
        fn, params = export.to_jax(module, x)  # checks itself
        errors = export.check_against_torch(fn, params, x)
    assert {"output[0]", "1.running_var", "1.num_batches_tracked", "grad 0.weight"} <= set(errors)
    assert max(errors.values()) <= FORWARD_FLOAT64
    assert fn.mutated_buffers and "aten._native_batch_norm_legit_functional.default" in fn.ops


def test_a_wrong_operation_is_caught_by_the_check(monkeypatch):
    monkeypatch.setitem(parity.ops.OPS, torch.ops.aten.tanh.default, jnp.sin)
    with ff.float64(), pytest.raises(InputError, match=r"^to_jax: .*differs from torch's"):
        export.to_jax(pm.MLP((2, 8, 1), dtype=torch.float64, seed=0),
                      torch.randn(4, 2, dtype=torch.float64))


def test_dropout_draws_from_the_key_with_the_projects_convention():
    module, x = _batch_norm_and_dropout(), torch.randn(5, 3, dtype=torch.float64)
    with ff.float64():
        fn, params = export.to_jax(module, x, check=False)
        key = jax.random.key(7)
        masks = [jax.random.bernoulli(jax.random.fold_in(key, 0), 0.7, (5, 6)),
                 jax.random.bernoulli(jax.random.fold_in(key, 1), 0.8, (5, 2))]
        run = jax.jit(fn)
        y_key, _ = run(params, x.numpy(), key=key)
        y_masks, _ = run(params, x.numpy(), masks=masks)
        y_off, _ = run(params, x.numpy())  # no key: dropout off, the engine's convention
        y_eval, _ = jax.jit(export.to_jax(_without_dropout(module), x, check=False)[0])(
            params, x.numpy())
        with pytest.raises(InputError, match="masks: expected 2 keep-masks"):
            fn(params, x.numpy(), masks=masks[:1])
    assert fn.dropouts == 2
    assert np.array_equal(y_key, y_masks)
    assert rel_err(y_off, y_eval) <= FORWARD_FLOAT64 and not np.allclose(y_key, y_off)


def _without_dropout(module):
    """A copy of `module` whose Dropout layers are in eval mode (the rest in training mode)."""
    module = copy.deepcopy(module)
    for sub in module.modules():
        if isinstance(sub, nn.Dropout):
            sub.eval()
    return module


VMAP_CASES = [
    pytest.param(lambda: pm.MLP((2, 8, 3), dtype=torch.float64, seed=0), (7, 2), id="mlp"),
    pytest.param(lambda: pm.ResNet(3, 4, 5, dtype=torch.float64, seed=0).eval(), (2, 3, 8, 8),
                 id="resnet-eval", marks=pytest.mark.slow),
    pytest.param(lambda: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True,
                                                    dtype=torch.float64).eval(), (2, 5, 8),
                 id="transformer-eval"),
]


@pytest.mark.parametrize("make, shape", VMAP_CASES)
def test_vmap_over_inputs_and_over_params(make, shape):
    module = make()
    with ff.float64():
        fn, params = export.to_jax(module, torch.zeros(shape, dtype=torch.float64), check=False)
        xs = np.random.default_rng(0).standard_normal((3, *shape))  # (K, *shape)
        batched = jax.jit(jax.vmap(fn, in_axes=(None, 0)))(params, xs)  # (K, *out)
        looped = np.stack([module(torch.tensor(x)).detach().numpy() for x in xs])
        assert rel_err(batched, looped) <= FORWARD_FLOAT64
        stacked = {k: np.stack([v, 2 * v]) for k, v in params.items()}  # (2, *shape)
        by_params = jax.jit(jax.vmap(fn, in_axes=(0, None)))(stacked, xs[0])
        twice = {k: 2 * v for k, v in params.items()}
        assert rel_err(by_params[1], jax.jit(fn)(twice, xs[0])) <= FORWARD_FLOAT64
        assert rel_err(by_params[0], looped[0]) <= FORWARD_FLOAT64


@pytest.mark.parametrize("make, shape", [VMAP_CASES[0], VMAP_CASES[2]])
def test_other_batch_sizes_than_the_examples(make, shape):
    module = make()
    with ff.float64():
        fn, params = export.to_jax(module, torch.zeros(shape, dtype=torch.float64), check=False)
        x = np.random.default_rng(1).standard_normal((shape[0] + 3, *shape[1:]))  # (N + 3, ...)
        assert rel_err(jax.jit(fn)(params, x), module(torch.tensor(x)).detach().numpy()) \
            <= FORWARD_FLOAT64


class Decompose(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def forward(self, x):
        return self.op(x)


class WithHead(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = Decompose(op)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.parametrize("op, aten_name", [
    (lambda x: torch.linalg.svd(x)[1], "linalg_svd"),
    (lambda x: torch.fft.fft(x).real, "fft"),
], ids=["svd", "fft"])
def test_an_unsupported_operation_is_refused_naming_it_and_its_module(op, aten_name):
    with pytest.raises(InputError, match=rf"^to_jax: aten\.\w*{aten_name}\w*\.\w+ \(from module "
                                         r"'head' \(Decompose\)\) is not supported"):
        export.to_jax(WithHead(op), torch.randn(3, 4))


@pytest.mark.parametrize("args, message", [
    ((lambda x: x, torch.ones(2)), "module must be a torch.nn.Module"),
    ((nn.Linear(2, 1),), "example_inputs: give at least one"),
    ((nn.Linear(2, 1), [[1.0, 2.0]]), r"example_inputs\[0\] must be a torch.Tensor"),
    ((nn.Linear(2, 1), torch.ones(3, 2), np.ones((3, 2))),
     r"example_inputs\[1\] must be a torch.Tensor"),
], ids=["not-a-module", "no-inputs", "a-list", "a-numpy-array"])
def test_bad_arguments_are_refused_naming_them(args, message):
    with pytest.raises(InputError, match=message):
        export.to_jax(*args)


def test_float64_without_jaxs_64_bit_mode_is_refused():
    with jax.enable_x64(False), pytest.raises(InputError, match="float64 tensors need JAX's"):
        export.to_jax(nn.Linear(2, 1, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))


class Structured(nn.Module):
    """Several outputs in a dict and a tuple, a float64 scalar meeting float32 (torch keeps
    float32: a 0-d tensor does not promote), a buffer outside the state_dict."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("offset", torch.tensor([0.5, -1.0]), persistent=False)

    def forward(self, x, scale):
        y = self.linear(x) + self.offset  # (N, 2)
        return {"y": y, "more": (y * scale, y.sum(dim=1))}


def test_the_output_has_torchs_structure_and_dtypes():
    x, scale = torch.randn(4, 3), torch.tensor(2.0, dtype=torch.float64)
    module = Structured()
    with ff.float64():
        fn, params = export.to_jax(module, x, scale)  # checks itself
        out = fn(params, x.numpy(), scale.numpy())
    theirs = module(x, scale)
    assert set(out) == {"y", "more"} and isinstance(out["more"], tuple) and "offset" not in params
    for ours, ref in zip([out["y"], *out["more"]], [theirs["y"], *theirs["more"]]):
        assert ours.dtype == jnp.float32 and ref.dtype == torch.float32
        assert rel_err(ours, ref.detach().numpy()) <= export.FORWARD["float32"]


# --------------------------------------------------------------------------- the engine on exports
FIT_CASES = [
    ("lecture-linear", lambda: pm.SimpleLinearModel(w=np.array([0.5, 0.1]), dtype=torch.float64),
     lambda x: x, 0.05),
    ("mlp", lambda: pm.MLP((1, 8, 1), dtype=torch.float64, seed=0), lambda x: x[:, None], 0.1),
]


@pytest.mark.parametrize("make, shaped, lr", [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit_train_on_an_export_follows_torchs_fit(lecture_xy, make, shaped, lr):
    x, y = lecture_xy
    module = make()
    xt, yt = torch.tensor(shaped(x)), torch.tensor(y)
    fn, params = export.to_jax(module, xt)
    model, params, state = export.as_model(fn, params)
    assert state is None
    order = ff.batch_order(100, 8, seed=0)  # 8 epochs of 4 batches of 30, 30, 30, 10: 32 steps
    theirs = parity.fit.train(module, lambda a, b: parity.losses.mse(a.reshape(b.shape), b), xt,
                              yt, optimizer=torch.optim.SGD(module.parameters(), lr=lr),
                              order=order, batch_size=30)
    ours = ff.fit.train(params, shaped(x), y, model=lambda p, x: model(p, x).reshape(-1),
                        loss=losses.mse, optimizer=optax.sgd(lr), order=order, batch_size=30)
    assert ours.losses.shape == (32,)
    for name in params:
        assert rel_err(ours.path[name], theirs.path[name]) <= TRAJECTORY_FLOAT64, name


def test_loss_surface_and_sweep_on_an_export_equal_the_hand_written_model(lecture_xy):
    x, y = lecture_xy
    fn, params = export.to_jax(pm.SimpleLinearModel(dtype=torch.float64), torch.tensor(x))
    exported, params, _ = export.as_model(fn, params)
    by_hand = lambda p, x: models.linear(p["w"], x)  # noqa: E731
    a, b = np.linspace(-1, 1, 5), np.linspace(-0.5, 5, 4)
    surfaces = [ff.surface.loss_surface(m, losses.l1, x, y, a, b, base=params)
                for m in (exported, by_hand)]
    assert surfaces[0].shape == (4, 5) and np.array_equal(*map(np.asarray, surfaces))
    sweeps = [ff.sweep.sweep("gd", params, x, y, [0.01, 0.1], model=m, loss=losses.mse, steps=20)
              for m in (exported, by_hand)]
    assert rel_err(sweeps[0].params["w"], sweeps[1].params["w"]) <= TRAJECTORY_FLOAT64
    assert np.array_equal(sweeps[0].loss, sweeps[1].loss)


def test_as_model_gives_a_stateful_model_for_batch_norm_and_dropout():
    module, x = _batch_norm_and_dropout(), torch.randn(5, 3, dtype=torch.float64)
    with ff.float64():
        fn, params = export.to_jax(module, x, check=False)
        model, trainable, state = export.as_model(fn, params)
        y, new = jax.jit(model)(trainable, state, x.numpy(), key=jax.random.key(0))
        y_fn, buffers = jax.jit(fn)(params, x.numpy(), key=jax.random.key(0))
    assert set(trainable) == set(fn.parameter_names) and set(state) == set(fn.buffer_names)
    assert rel_err(y, y_fn) <= FORWARD_FLOAT64 and set(new) == set(state)
    assert int(new["1.num_batches_tracked"]) == int(state["1.num_batches_tracked"]) + 1
    assert rel_err(new["1.running_mean"], buffers["1.running_mean"]) <= FORWARD_FLOAT64


STATEFUL_FITS = [
    pytest.param(lambda: pm.ResNet(3, 4, 5, dropout=0.2, dtype=torch.float64, seed=0),
                 (3, 8, 8), "classes", True, id="resnet-train"),
    pytest.param(lambda: pm.ResNet(3, 4, 5, dtype=torch.float64, seed=0).eval(), (3, 8, 8),
                 "classes", False, id="resnet-eval"),
    # attention's own dropout runs inside F.multi_head_attention_forward, where no hook of
    # parity.dropout can replay JAX's masks: the training-mode layer is fitted without dropout
    *[pytest.param(lambda nf=nf: (torch.manual_seed(0), nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, batch_first=True, norm_first=nf, dtype=torch.float64))[1],
        (5, 8), "values", False, id=f"transformer-norm_first={nf}-train")
      for nf in (False, True)],
    pytest.param(lambda: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True,
                                                    dtype=torch.float64).eval(), (5, 8),
                 "values", False, id="transformer-eval"),
]


@pytest.mark.parametrize("make, shape, target, stateful", STATEFUL_FITS)
def test_a_30_step_fit_of_an_export_follows_torchs_with_its_buffers_and_masks(make, shape,
                                                                              target, stateful):
    """fit.train on the export (BatchNorm's buffers as the model's state, dropout from the
    fit's key) follows parity.fit.train on the module, the same masks replayed in torch
    (parity.dropout): 30 Adam steps on minibatches, parameters and buffers within 1e-9."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, *shape))
    y = (rng.integers(0, 5, 20) if target == "classes" else rng.normal(size=(20, *shape)))
    loss, tloss = ((losses.cross_entropy, torch.nn.functional.cross_entropy)
                   if target == "classes" else (ff.nn.mse_loss, torch.nn.functional.mse_loss))
    module, key = make(), jax.random.key(2)
    with ff.float64():
        fn, params = export.to_jax(module, torch.from_numpy(x[:4]), check=False)
        model, params, state = export.as_model(fn, params)
        order = ff.batch_order(20, 10, seed=0)  # 10 epochs of 3 batches (8, 8, 4): 30 steps
        ours = ff.fit.train(params, x, y, model=model, loss=loss, state=state,
                            key=key if state is not None else None, order=order, batch_size=8,
                            optimizer=ff.optim.Adam(lr=0.01))
        theirs = parity.fit.train(module, tloss, torch.from_numpy(x), torch.from_numpy(y),
                                  optimizer=torch.optim.Adam(module.parameters(), lr=0.01),
                                  order=order, batch_size=8, key=key)
    assert ours.losses.shape == (30,)
    assert (state is not None) == stateful  # BatchNorm's buffers and a key, or neither
    for name in params:
        assert rel_err(ours.path[name], theirs.path[name]) <= TRAJECTORY_FLOAT64, name
    for name in state or {}:
        assert rel_err(ours.state_path[name], theirs.path[name]) <= TRAJECTORY_FLOAT64, name


def test_a_cnn_with_max_and_average_pooling_converts_and_its_gradient_runs_under_jit():
    """Pooling's windows are JAX's differentiable max and sum (a concrete identity), so the
    conversion's own gradient check against torch passes and jit(grad) runs."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2),
                                 torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(16, 2)).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    fn, params = export.to_jax(module, x)  # checks forward and gradient against torch itself
    g = jax.jit(jax.grad(lambda p: fn(p, x.numpy()).sum()))(params)
    module(x).sum().backward()
    np.testing.assert_allclose(g["0.weight"], module[0].weight.grad.numpy(), rtol=1e-12)
