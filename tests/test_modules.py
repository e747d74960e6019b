"""functional_fit.modules: flax NNX, flax linen and equinox modules as pure model functions.

One small model per library (Linear/Dense, BatchNorm, Dropout, LayerNorm, Dropout, Linear), in
float64. The model function is checked against each library's own way of doing the same thing:
its output and new state against the module's own call (NNX called directly in the same mode,
linen ``apply`` with ``mutable``, equinox called directly under ``jax.vmap``), its gradient
against the library's own (``nnx.grad``, ``eqx.filter_grad``; a central difference for linen),
and a few Adam steps inside ``lax.scan`` against a Python loop over the library's own API
(``nnx.Optimizer``; ``apply`` and optax; ``eqx.filter_grad`` and optax). The dropout masks are
checked against the engine's convention, ``bernoulli(fold_in(key, i), 1 - p, shape)``.

flax's BatchNorm promotes its float32-created statistics with the inputs' dtype inside its call
(``flax/nnx/nn/normalization.py``, ``_compute_stats``), which the tests' strict promotion mode
refuses, so the flax cases run under standard promotion.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, NamedTuple

import equinox as eqx
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from functional_fit import fit
from functional_fit.checks import InputError
from functional_fit.modules import as_model, dropout_mask
from functional_fit.tolerances import GRAD_FLOAT64, TRAJECTORY_FLOAT64, rel_err

F64 = jnp.float64
#: Forward passes and gradients: the same operations in both, compiled or not (GRAD_FLOAT64).
TOL = GRAD_FLOAT64
#: A central difference with step H in float64: truncation ~ H**2 * f''' plus rounding
#: ~ eps * |f| / H = 1e-16 / 1e-5 = 1e-11, relative to the directional derivative.
H = 1e-5
FD_TOL = 1e-7
#: A few Adam steps in a compiled scan against an eager Python loop (TRAJECTORY_FLOAT64).
FIT_TOL = TRAJECTORY_FLOAT64
STEPS = 4
LR = 1e-2
P1, P2 = 0.5, 0.3  # the two dropouts' probabilities
N, D_IN, D_HID, D_OUT = 6, 3, 4, 2

X = jax.random.normal(jax.random.PRNGKey(0), (N, D_IN), F64)  # (N, d_in)
Y = jax.random.normal(jax.random.PRNGKey(1), (N, D_OUT), F64)  # (N, d_out)
COT = jax.random.normal(jax.random.PRNGKey(2), (N, D_OUT), F64)  # (N, d_out) cotangent
KEY = jax.random.PRNGKey(3)


def _close(a, b, tol):
    """Trees a and b agree: same structure and dtypes, and all their leaves together within
    `tol` of b's largest entry (a leaf whose exact value is 0, such as a bias that BatchNorm
    cancels, is judged on the scale of the whole tree)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert len(la) > 0 and [u.dtype for u in la] == [v.dtype for v in lb]
    flat = lambda leaves: np.concatenate([np.ravel(_numbers(u)) for u in leaves])  # noqa: E731
    err = rel_err(flat(la), flat(lb))
    assert err <= tol, err


def _numbers(leaf):
    """A leaf as numbers: a PRNG key as its key data."""
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf), dtype=np.float64)
    return np.asarray(leaf, dtype=np.float64)


def _mse(y_hat, y):
    return jnp.mean((y_hat - y) ** 2)


# --------------------------------------------------------------------------- NNX


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.l = nnx.Linear(D_IN, D_HID, use_bias=False, rngs=rngs, param_dtype=F64)
        self.bn = nnx.BatchNorm(D_HID, momentum=0.9, rngs=rngs, param_dtype=F64)
        self.d1 = nnx.Dropout(P1, rngs=rngs)
        self.ln = nnx.LayerNorm(D_HID, rngs=rngs, param_dtype=F64)
        self.d2 = nnx.Dropout(P2, rngs=rngs)
        self.o = nnx.Linear(D_HID, D_OUT, rngs=rngs, param_dtype=F64)

    def __call__(self, x):  # (N, d_in) -> (N, d_out)
        return self.o(self.d2(self.ln(self.d1(self.bn(self.l(x))))))


def _nnx_build():
    m = NnxNet(nnx.Rngs(7))
    nnx.update(m, jax.tree.map(lambda a: a.astype(F64), nnx.state(m, nnx.BatchStat)))
    return m, None


def _nnx_ready(module, training, key):
    """(copy of `module` in its mode, its Dropouts sharing one stream with key `key`; the
    stream): the NNX way of numbering a forward's draws fold_in(key, 0), fold_in(key, 1)."""
    m = nnx.clone(module)
    m.train() if training else m.eval()
    stream = nnx.RngStream(key, tag="dropout")
    for _, layer in nnx.iter_modules(m):
        if isinstance(layer, nnx.Dropout):
            layer.rngs = stream
    return m, stream


def _nnx_forward(module, variables, training):
    m, _ = _nnx_ready(module, training, KEY)
    y = nnx.jit(lambda m: m(X))(m)
    return y, nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))


def _nnx_grad(module, variables, training):
    m, _ = _nnx_ready(module, training, KEY)
    g = nnx.jit(nnx.grad(lambda m: jnp.sum(m(X) * COT)))(m)
    return nnx.to_pure_dict(g)


def _nnx_fit(module, variables):
    m, stream = _nnx_ready(module, True, KEY)
    opt = nnx.Optimizer(m, optax.adam(LR), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt):
        opt.update(m, nnx.grad(lambda m: _mse(m(X), Y))(m))

    for t in range(STEPS):
        stream.key.set_value(jax.random.wrap_key_data(jax.random.fold_in(KEY, t)))
        stream.count.set_value(jnp.zeros((), jnp.uint32))
        step(m, opt)
    return (nnx.to_pure_dict(nnx.state(m, nnx.Param)),
            nnx.to_pure_dict(nnx.state(m, nnx.BatchStat)))


# --------------------------------------------------------------------------- linen


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool):  # (N, d_in) -> (N, d_out)
        x = linen.Dense(D_HID, use_bias=False, param_dtype=F64)(x)
        x = linen.BatchNorm(use_running_average=not train, momentum=0.9, param_dtype=F64)(x)
        x = linen.Dropout(P1, deterministic=not train)(x)
        x = linen.LayerNorm(param_dtype=F64)(x)
        x = linen.Dropout(P2, deterministic=not train)(x)
        return linen.Dense(D_OUT, param_dtype=F64)(x)


def _linen_build():
    v = LinenNet().init(jax.random.PRNGKey(7), X, train=False)
    return LinenNet(), {"params": v["params"],
                        "batch_stats": jax.tree.map(lambda a: a.astype(F64), v["batch_stats"])}


def _linen_forward(module, variables, training):
    y, new = module.apply(variables, X, train=training, rngs={"dropout": KEY},
                          mutable=["batch_stats"])
    return y, {"batch_stats": new["batch_stats"]}


def _linen_grad(module, variables, training):
    """The gradient's components along a random direction, by central differences: returns
    the directional derivatives in a tree of the params' shape, one per leaf's direction."""
    @jax.jit
    def f(params):
        y, _ = module.apply({**variables, "params": params}, X, train=training,
                            rngs={"dropout": KEY}, mutable=["batch_stats"])
        return jnp.sum(y * COT)

    p = variables["params"]
    leaves, tree = jax.tree.flatten(p)
    out = []
    for i, leaf in enumerate(leaves):
        bump = lambda s: jax.tree.unflatten(tree, [a + s * (j == i) for j, a in  # noqa: E731
                                                   enumerate(leaves)])
        out.append((f(bump(H)) - f(bump(-H))) / (2 * H))  # d f / d (leaf + s), ()
    return jax.tree.unflatten(tree, out)


def _linen_fit(module, variables):
    params, stats = variables["params"], variables["batch_stats"]
    tx = optax.adam(LR)
    opt = tx.init(params)
    for t in range(STEPS):
        def loss(p):
            y, new = module.apply({"params": p, "batch_stats": stats}, X, train=True,
                                  rngs={"dropout": jax.random.fold_in(KEY, t)},
                                  mutable=["batch_stats"])
            return _mse(y, Y), new["batch_stats"]
        g, stats = jax.grad(loss, has_aux=True)(params)
        updates, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, updates)
    return params, {"batch_stats": stats}


# --------------------------------------------------------------------------- equinox


class EqxNet(eqx.Module):
    """One example: x (d_in,) -> (d_out,); its i-th dropout draws from fold_in(key, i)."""

    l: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    d1: eqx.nn.Dropout
    ln: eqx.nn.LayerNorm
    d2: eqx.nn.Dropout
    o: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.l = eqx.nn.Linear(D_IN, D_HID, use_bias=False, dtype=F64, key=k1)
        self.bn = eqx.nn.BatchNorm(D_HID, axis_name="batch", momentum=0.9, dtype=F64,
                                   mode="ema")
        self.d1 = eqx.nn.Dropout(P1)
        self.ln = eqx.nn.LayerNorm(D_HID, dtype=F64)
        self.d2 = eqx.nn.Dropout(P2)
        self.o = eqx.nn.Linear(D_HID, D_OUT, dtype=F64, key=k2)

    def __call__(self, x, state, *, key=None):
        k = (lambda i: None) if key is None else (lambda i: jax.random.fold_in(key, i))
        x, state = self.bn(self.l(x), state)
        x = self.d2(self.ln(self.d1(x, key=k(0))), key=k(1))
        return self.o(x), state


def _eqx_build():
    return eqx.nn.make_with_state(EqxNet)(jax.random.PRNGKey(7))


def _eqx_call(module, state, x, key):
    """The module over a batch, as equinox's docs batch it; example n gets fold_in(key, n)."""
    keys = jax.vmap(lambda n: jax.random.fold_in(key, n))(jnp.arange(N, dtype=jnp.uint32))
    return jax.vmap(lambda x, s, k: module(x, s, key=k), axis_name="batch",
                    in_axes=(0, None, 0), out_axes=(0, None))(x, state, keys)


@eqx.filter_jit
def _eqx_forward(module, state, training):
    return _eqx_call(eqx.nn.inference_mode(module, not training), state, X, KEY)


def _eqx_grad(module, state, training):
    m = eqx.nn.inference_mode(module, not training)
    g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(_eqx_call(m, state, X, KEY)[0] * COT)))(m)
    return eqx.filter(g, eqx.is_inexact_array)


def _eqx_fit(module, state):
    tx = optax.adam(LR)
    m = eqx.nn.inference_mode(module, False)
    opt = tx.init(eqx.filter(m, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(m, state, opt, key):
        def loss(m):
            y, new = _eqx_call(m, state, X, key)
            return _mse(y, Y), new
        g, state = eqx.filter_grad(loss, has_aux=True)(m)
        updates, opt = tx.update(g, opt, eqx.filter(m, eqx.is_inexact_array))
        return eqx.apply_updates(m, updates), state, opt

    for t in range(STEPS):
        m, state, opt = step(m, state, opt, jax.random.fold_in(KEY, t))
    return eqx.filter(m, eqx.is_inexact_array), state


# --------------------------------------------------------------------------- the table


class Lib(NamedTuple):
    name: str
    build: Callable  # () -> (module, variables)
    forward: Callable  # (module, variables, training) -> (y (N, d_out), new state)
    grad: Callable  # (module, variables, training) -> d sum(y * COT) / d params
    grad_tol: float
    fit: Callable  # (module, variables) -> (params, state) after STEPS Adam steps
    options: dict  # as_model's keywords besides training
    flax: bool  # runs under standard promotion (the module docstring)


LIBS = [
    Lib("nnx", _nnx_build, _nnx_forward, _nnx_grad, TOL, _nnx_fit, {}, True),
    Lib("linen", _linen_build, _linen_forward, _linen_grad, FD_TOL, _linen_fit,
        {"train_kwarg": "train"}, True),
    Lib("equinox", _eqx_build, _eqx_forward, _eqx_grad, TOL, _eqx_fit, {}, False),
]
MODES = {"train": True, "eval": False}


def _promotion(lib: Lib):
    return jax.numpy_dtype_promotion("standard") if lib.flax else contextlib.nullcontext()


def _fd_projection(model, params, state, training):
    """The model's gradient as the linen reference gives it: the sum of each leaf's entries."""
    g = jax.grad(lambda p: jnp.sum(model(p, state, X, KEY)[0] * COT))(params)
    return jax.tree.map(jnp.sum, g)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.name)
def test_forward_and_new_state_equal_the_modules_own_call(lib, mode):
    with _promotion(lib):
        module, variables = lib.build()
        model, params, state = as_model(module, variables, training=MODES[mode], **lib.options)
        y, new = jax.jit(model)(params, state, X, KEY)
        y_ref, new_ref = lib.forward(module, variables, MODES[mode])
    _close(y, y_ref, TOL)
    _close(new, new_ref, TOL)
    moved = rel_err(jax.tree.leaves(new)[0], jax.tree.leaves(state)[0])
    assert (moved > 0) == (mode == "train")  # running statistics move in training mode only


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.name)
def test_gradient_equals_the_librarys_own(lib, mode):
    with _promotion(lib):
        module, variables = lib.build()
        model, params, state = as_model(module, variables, training=MODES[mode], **lib.options)
        ref = lib.grad(module, variables, MODES[mode])
        if lib.name == "linen":
            g = _fd_projection(model, params, state, MODES[mode])
        else:
            g = jax.jit(jax.grad(lambda p: jnp.sum(model(p, state, X, KEY)[0] * COT)))(params)
    _close(g, ref, lib.grad_tol)


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.name)
def test_adam_in_a_scan_equals_a_loop_over_the_librarys_api(lib):
    # optax's Adam raises its betas to an int32 count, which strict promotion refuses
    with jax.numpy_dtype_promotion("standard"):
        module, variables = lib.build()
        model, params, state = as_model(module, variables, training=True, **lib.options)
        tx = optax.adam(LR)

        def step(carry, t):
            p, s, opt = carry
            loss = lambda p: (lambda ys: (_mse(ys[0], Y), ys[1]))(  # noqa: E731
                model(p, s, X, jax.random.fold_in(KEY, t)))
            g, s = jax.grad(loss, has_aux=True)(p)
            updates, opt = tx.update(g, opt, p)
            return (optax.apply_updates(p, updates), s, opt), None

        (p, s, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(STEPS)))(
            (params, state, tx.init(params)))
        p_ref, s_ref = lib.fit(module, variables)
    _close(p, p_ref, FIT_TOL)
    _close(s, s_ref, FIT_TOL)
    assert rel_err(jax.tree.leaves(p)[0], jax.tree.leaves(params)[0]) > 1e-4  # it trained


# --------------------------------------------------------------------------- dropout masks


class NnxMasks(nnx.Module):
    """Returns the masks its two Dropouts draw, in forward order: (N, 5) and (N, 3) booleans."""

    def __init__(self, rngs):
        self.d1 = nnx.Dropout(P1, rngs=rngs)
        self.d2 = nnx.Dropout(P2, rngs=rngs)

    def __call__(self, x):  # x (N, 8) ones
        return self.d2(x[:, :3]) != 0, self.d1(x[:, :5]) != 0  # d2 is called first


def test_nnx_masks_follow_the_engines_convention():
    model, params, state = as_model(NnxMasks(nnx.Rngs(0)))
    assert model.dropout_convention == "batch" and model.stateful and state is None
    for key in (KEY, jax.random.key(5)):
        (first, second), new = model(params, state, jnp.ones((N, 8), F64), key)
        assert new is None
        for i, (mask, p) in enumerate([(first, P2), (second, P1)]):
            expected = jax.random.bernoulli(jax.random.fold_in(key, i), 1 - p, mask.shape)
            np.testing.assert_array_equal(mask, expected)
            np.testing.assert_array_equal(mask, dropout_mask(key, i, p, mask.shape))
        assert not np.array_equal(first, second[:, :3])  # two draws, not one


class EqxMasks(eqx.Module):
    """One example: the masks of its two Dropouts, (5,) and (3,) booleans."""

    d1: eqx.nn.Dropout
    d2: eqx.nn.Dropout

    def __call__(self, x, *, key):  # x (8,) ones
        return (self.d1(x[:5], key=jax.random.fold_in(key, 0)) != 0,
                self.d2(x[:3], key=jax.random.fold_in(key, 1)) != 0)


def test_equinox_masks_follow_the_per_example_convention():
    model, params, state = as_model(EqxMasks(eqx.nn.Dropout(P1), eqx.nn.Dropout(P2)))
    assert model.dropout_convention == "per_example" and state is None
    masks, _ = model(params, state, jnp.ones((N, 8), F64), KEY)
    for i, (mask, p) in enumerate(zip(masks, (P1, P2))):
        for n in range(N):
            key = jax.random.fold_in(jax.random.fold_in(KEY, n), i)
            np.testing.assert_array_equal(mask[n], jax.random.bernoulli(key, 1 - p, mask[n].shape))
        np.testing.assert_array_equal(mask, dropout_mask(KEY, i, p, mask.shape, "per_example"))
    assert not np.array_equal(masks[0][0], masks[0][1])  # each example its own mask


# --------------------------------------------------------------------------- forms and flags


def test_a_module_without_state_or_randomness_is_a_plain_model():
    nnx_lin = nnx.Linear(D_IN, D_OUT, rngs=nnx.Rngs(0), param_dtype=F64)
    eqx_lin = eqx.nn.Linear(D_IN, D_OUT, dtype=F64, key=jax.random.PRNGKey(0))
    dense = linen.Dense(D_OUT, param_dtype=F64)
    v = dense.init(jax.random.PRNGKey(0), X)
    cases = [(nnx_lin, None, nnx_lin(X)), (eqx_lin, None, jax.vmap(eqx_lin)(X)),
             (dense, v, dense.apply(v, X))]
    for module, variables, expected in cases:
        model, params, state = as_model(module, variables, training=False)
        assert state is None and not model.stateful
        _close(jax.jit(model)(params, X), expected, TOL)


def test_linen_masks_are_declared_unshareable_and_nnx_eval_draws_none():
    with jax.numpy_dtype_promotion("standard"):
        module, variables = _linen_build()
        model, _, _ = as_model(module, variables, train_kwarg="train")
        assert model.dropout_convention is None and model.library == "linen"
        module, _ = _nnx_build()
        model, params, state = as_model(module, training=False)
        y, _ = model(params, state, X)  # no key: nothing is dropped in eval mode
        unkeyed, params, state = as_model(module, training=True)
        module.train()
        for _, layer in nnx.iter_modules(module):  # the engine's convention: no key, no drop
            if isinstance(layer, nnx.Dropout):
                layer.deterministic = True
        _close(unkeyed(params, state, X)[0], module(X), TOL)
        module, variables = _linen_build()
        model, params, state = as_model(module, variables, train_kwarg="train")
        with pytest.raises(InputError, match="^key"):
            model(params, state, X)


def test_the_engine_trains_the_plain_models():
    """fit.train takes each library's params as they come (a dict, a module's arrays)."""
    for module, variables in [
            (nnx.Linear(D_IN, D_OUT, rngs=nnx.Rngs(0), param_dtype=F64), None),
            (eqx.nn.MLP(D_IN, D_OUT, 8, 1, dtype=F64, key=KEY), None),
            (linen.Dense(D_OUT, param_dtype=F64),
             linen.Dense(D_OUT, param_dtype=F64).init(KEY, X))]:
        model, params, _ = as_model(module, variables, training=False)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam (test_adam_in_a_scan...)
            res = fit.train(params, X, Y, model=model, loss=_mse, optimizer=optax.adam(LR),
                            steps=20)
        assert jax.tree.structure(res.params) == jax.tree.structure(params)
        assert res.losses[-1] < res.losses[0]


def test_the_module_given_is_not_changed():
    with jax.numpy_dtype_promotion("standard"):
        module, _ = _nnx_build()
        before = nnx.to_pure_dict(nnx.state(module))
        as_model(module, training=False)
        assert not module.d1.deterministic  # its copy went to eval mode, not the module
        model, params, state = as_model(module, training=True)
        _, new = model(params, state, X, KEY)  # updates the running statistics, draws dropout
        assert rel_err(new["bn"]["mean"], state["bn"]["mean"]) > 0
        _close(nnx.to_pure_dict(nnx.state(module)), before, 0.0)


BAD = [
    ("not_a_module", lambda: as_model(lambda x: x), "module"),
    ("a_dict", lambda: as_model({"params": {}}), "module"),
    ("nnx_rngs", lambda: as_model(nnx.Rngs(0)), "module"),
    ("nnx_variable", lambda: as_model(nnx.Param(jnp.zeros(2))), "module"),
    ("linen_without_variables", lambda: as_model(linen.Dense(2)), "variables"),
    ("variables_without_params", lambda: as_model(linen.Dense(2), {"batch_stats": {}}),
     "variables"),
    ("linen_variables_not_a_dict", lambda: as_model(linen.Dense(2), [1.0]), "variables"),
    ("nnx_with_variables", lambda: as_model(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), {"params": 1}),
     "variables"),
    ("linen_masks", lambda: dropout_mask(KEY, 0, 0.5, (2, 3), None), "convention"),
    ("equinox_with_a_dict", lambda: as_model(eqx.nn.Linear(2, 2, key=KEY), {"params": 1}),
     "variables"),
]


@pytest.mark.parametrize("call, argument", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused_in_one_line_naming_the_argument(call, argument):
    with pytest.raises(InputError, match=f"^{argument}") as err:
        call()
    assert "\n" not in str(err.value)


def test_a_missing_library_says_what_to_install(monkeypatch):
    module = eqx.nn.Linear(2, 2, key=KEY)
    monkeypatch.setitem(sys.modules, "equinox", None)  # import equinox now fails
    with pytest.raises(ImportError, match="pip install equinox$") as err:
        as_model(module)
    assert "\n" not in str(err.value)
