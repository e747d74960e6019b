"""parity.params.to_nnx / to_linen / to_equinox and their inverses, against torch in float64.

Hand ports (tests/ports.py) of `parity.models.ResNet` and of a Mixer (Embedding, LayerNorm,
nn.MultiheadAttention, Linear) to flax NNX, flax linen and equinox, filled from a torch float64
``state_dict``: their forward passes agree with torch's, in eval and in train mode (BatchNorm
on the batch's statistics, dropout 0), and so do their gradients with respect to the torch-named
parameters, through ``jax.jit(jax.grad(...))``; round trips are bitwise; a mismatched layer is
refused naming both layers and both shapes; BatchNorm's momentum and variance conventions show
up in the running statistics, not in the converters.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import parity
from functional_fit.checks import InputError
from parity import params as pp
from tests import ports

#: float64 forward passes of a few layers: rounding of sums of tens of products, well below.
FORWARD_RTOL = 1e-12
#: gradients: the same sums, backwards.
GRAD_RTOL = 1e-12

RESNET = dict(in_channels=3, width=4, num_classes=5)
MIXER = dict(vocab=11, dim=8, heads=2, hidden=6, out=3)
SIGNAL = dict(channels=2, width=4, groups=2, out=3)


def _torch_resnet(seed=0, **sizes):
    model = parity.models.ResNet(**{**RESNET, **sizes}, dropout=0.0, dtype=torch.float64,
                                 seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # BatchNorm's affine and running statistics away from 1 and 0
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen,
                                                     dtype=torch.float64))
                m.num_batches_tracked.fill_(3)
    return model


def _torch_mixer(seed=0):
    torch.manual_seed(seed)
    return ports.Mixer(**MIXER)


def _torch_signal(seed=0):
    torch.manual_seed(seed)
    model = ports.Signal(**SIGNAL)
    with torch.no_grad():  # GroupNorm's affine away from 1 and 0
        model.norm.weight.normal_()
        model.norm.bias.normal_()
    return model


def _signals(n=3):
    return torch.randn(n, SIGNAL["channels"], 6, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(7))  # (N, C, L)


def _images(n=4):
    return torch.randn(n, RESNET["in_channels"], 8, 8, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(7))  # (N, C, H, W)


def _tokens(n=3):
    return torch.randint(0, MIXER["vocab"], (n, 5), generator=torch.Generator().manual_seed(7))


#: model name -> (torch model, inputs, {library: its port}). A port is built once: the
#: converters and the ports' forward passes leave it as it was (tested below for NNX).
MODELS = {
    "resnet": (_torch_resnet, _images,
               {"nnx": functools.cache(lambda: ports.nnx_resnet(**RESNET)),
                "linen": functools.cache(lambda: ports.linen_resnet(**RESNET)),
                "equinox": functools.cache(lambda: ports.eqx_resnet(**RESNET))}),
    "mixer": (_torch_mixer, _tokens,
              {"nnx": functools.cache(lambda: ports.nnx_mixer(**MIXER)),
               "linen": functools.cache(lambda: ports.linen_mixer(**MIXER)),
               "equinox": functools.cache(lambda: ports.eqx_mixer(**MIXER))}),
    "conv1d": (_torch_signal, _signals,
               {"nnx": functools.cache(lambda: ports.nnx_signal(**SIGNAL)),
                "linen": functools.cache(lambda: ports.linen_signal(**SIGNAL)),
                "equinox": functools.cache(lambda: ports.eqx_signal(**SIGNAL))}),
}


def _fill(library, state_dict, port, like=None):
    """The port's model holding `state_dict`, in the shape its forward takes."""
    if library == "nnx":
        return pp.to_nnx(state_dict, port.model, like=like)
    if library == "linen":
        module, variables = port.model
        return module, pp.to_linen(state_dict, variables, port.order, like=like)
    module, state = port.model
    filled = pp.to_equinox(state_dict, module, state, like=like)
    return filled if state is not None else (filled, None)


def _read(library, model, like, port):
    if library == "nnx":
        return pp.from_nnx(model, like, port.order)
    if library == "linen":
        return pp.from_linen(model[1], like, port.order)
    return pp.from_equinox(model[0], like, model[1])


def _leaves(library, model):
    """Every array of the library's model, in a fixed order."""
    if library == "nnx":
        return jax.tree.leaves(nnx.split(model)[1])
    return jax.tree.leaves(model if library == "equinox" else model[1])


CASES = [(lib, name) for name in MODELS for lib in ("nnx", "linen", "equinox")]


def _relative(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("library,name", CASES)
def test_the_filled_port_computes_what_torch_does(library, name, train):
    make_torch, inputs, port_of = MODELS[name]
    model, x, port = make_torch(), inputs(), port_of[library]()
    model.train(train)
    with torch.no_grad():
        expected = model(x).numpy()
    state = {k: jnp.asarray(v.numpy()) for k, v in model.state_dict().items()}
    # through jax.jit, `state` comes in sorted by name: `like` gives torch's order back
    y = jax.jit(lambda s: port.forward(_fill(library, s, port, model), x.numpy(), train)[0])(
        state)
    assert y.shape == expected.shape
    assert _relative(y, expected) <= FORWARD_RTOL


@pytest.mark.parametrize("library,name", CASES)
def test_gradients_through_the_converter_are_torchs(library, name):
    """The converter inside jax.jit(jax.grad(...)): the port as a function of torch's params."""
    make_torch, inputs, port_of = MODELS[name]
    model, x, port = make_torch(), inputs(), port_of[library]()
    model.eval()
    model(x).square().sum().backward()
    state = {k: jnp.asarray(v.numpy()) for k, v in model.state_dict().items()}
    names = [k for k, _ in model.named_parameters()]

    @jax.jit
    @jax.grad
    def grad(p):
        y, _ = port.forward(_fill(library, {**state, **p}, port, model), x.numpy(), False)
        return jnp.sum(jnp.square(y))

    g = grad({k: state[k] for k in names})
    for k, p in model.named_parameters():
        assert _relative(g[k], p.grad.numpy()) <= GRAD_RTOL, k


@pytest.mark.parametrize("library,name", CASES)
def test_torch_to_library_and_back_is_exact(library, name):
    make_torch, _, port_of = MODELS[name]
    model, port = make_torch(), port_of[library]()
    state = model.state_dict()
    back = _read(library, _fill(library, state, port), model, port)
    assert list(back) == list(state)
    for k, v in state.items():
        assert np.asarray(back[k]).dtype == v.numpy().dtype, k
        assert np.array_equal(np.asarray(back[k]), v.numpy()), k


@pytest.mark.parametrize("library,name", CASES)
def test_library_to_torch_and_back_is_exact(library, name):
    make_torch, _, port_of = MODELS[name]
    like, port = make_torch(), port_of[library]()
    back = _fill(library, _read(library, port.model, like, port), port)
    before, after = _leaves(library, port.model), _leaves(library, back)
    assert len(before) == len(after) > 0
    for a, b in zip(before, after):
        a, b = np.asarray(a), np.asarray(b)
        # flax's float32 BatchNorm statistics come back widened to torch's float64, not rounded
        assert b.dtype == (np.promote_types(a.dtype, np.float64) if a.dtype.kind == "f"
                           else a.dtype)
        assert np.array_equal(a, b)


def test_filling_leaves_the_nnx_module_as_it_was():
    port = ports.nnx_resnet(**RESNET)
    before = [np.array(a) for a in _leaves("nnx", port.model)]
    filled = pp.to_nnx(_torch_resnet().state_dict(), port.model)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, _leaves("nnx", port.model)))
    # the copy keeps the definition order (nnx.merge alone would sort the attributes)
    assert pp.nnx_order(filled) == pp.nnx_order(port.model) == port.order
    assert pp.nnx_order(nnx.merge(*nnx.split(port.model))) != port.order


def _bn_sizes(model, x) -> dict:
    """BatchNorm name -> the number of values per channel of its input in `model(x)`."""
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(
        name, i[0].numel() // i[0].shape[1]))
        for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model(x)
    for h in hooks:
        h.remove()
    return sizes


#: (flax momentum, whether the running statistics follow torch's momentum 0.1)
MOMENTA = [(0.9, True), (0.99, False)]


@pytest.mark.parametrize("momentum,agrees", MOMENTA, ids=["0.9", "flax-default-0.99"])
@pytest.mark.parametrize("library", ["nnx", "linen"])
def test_batchnorm_momentum_and_variance_conventions(library, momentum, agrees):
    """One train-mode step: flax's new mean is torch's when its momentum is one minus torch's;
    its new variance mixes in the biased batch variance, torch's the unbiased one."""
    model, x = _torch_resnet(), _images()
    old = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with torch.no_grad():
        sizes = _bn_sizes(model, x)  # one train forward: torch's running statistics move
    make = {"nnx": ports.nnx_resnet, "linen": ports.linen_resnet}[library]
    port = make(**RESNET, momentum=momentum)
    _, new = port.forward(_fill(library, old, port), x.numpy(), True)
    flax = _read(library, new, model, port)
    for name, n in sizes.items():
        mean, var = f"{name}.running_mean", f"{name}.running_var"
        close = _relative(flax[mean], model.state_dict()[mean].numpy()) <= FORWARD_RTOL
        assert close == agrees, name
        if agrees:  # the batch terms: torch's is n / (n - 1) times flax's
            batch_torch = (model.state_dict()[var].numpy() - 0.9 * old[var].numpy()) / 0.1
            batch_flax = (np.asarray(flax[var]) - 0.9 * old[var].numpy()) / 0.1
            assert not np.allclose(batch_torch, batch_flax, rtol=1e-6)
            # undoing the 0.9 * old term cancels a digit or two: 5e-14 measured
            assert _relative(batch_flax * n / (n - 1), batch_torch) <= 1e-12, name


def _without(state, prefix):
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def _dense_first():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(11, 8, dtype=torch.float64))


#: (case, torch model's state_dict, port, library, what the message must name)
REFUSALS = [
    ("wider", lambda: _torch_resnet(width=6).state_dict(), "resnet", "nnx",
     ["torch layer 'conv1'", "weight (6, 3, 3, 3)", "flax layer 'conv1'",
      "kernel (3, 3, 3, 4)", "shapes"]),
    ("wider", lambda: _torch_resnet(width=6).state_dict(), "resnet", "linen",
     ["torch layer 'conv1'", "weight (6, 3, 3, 3)", "flax layer 'conv1'",
      "kernel (3, 3, 3, 4)"]),
    ("wider", lambda: _torch_resnet(width=6).state_dict(), "resnet", "equinox",
     ["torch layer 'conv1'", "weight (6, 3, 3, 3)", "equinox layer 'conv1'",
      "weight (4, 3, 3, 3)"]),
    ("kind", lambda: _dense_first().state_dict(), "mixer", "nnx",
     ["torch layer '0' (Linear: weight (8, 11), bias (8,))", "flax layer 'embed'",
      "embedding (11, 8)", "kinds differ"]),
    ("kind", lambda: _dense_first().state_dict(), "mixer", "equinox",
     ["torch layer '0'", "equinox layer 'embed' (Embedding: weight (11, 8))", "kinds differ"]),
    ("conv-as-linear", lambda: {"conv.weight": torch.zeros(4, 2), **{
        k: v for k, v in _torch_signal().state_dict().items() if k != "conv.weight"}},
     "conv1d", "linen", ["torch layer 'conv' (Linear: weight (4, 2), bias (4,))",
                         "flax layer 'conv' (Conv: kernel (3, 2, 4), bias (4,))"]),
    ("no-head", lambda: _without(_torch_resnet().state_dict(), "fc."), "resnet", "nnx",
     ["no torch layer", "flax layer 'fc'", "kernel (8, 5)", "numbers of layers"]),
    ("no-bias", lambda: _without(_torch_mixer().state_dict(), "fc2.bias"), "mixer", "linen",
     ["torch layer 'fc2'", "flax layer 'fc2'", "bias (3,)", "one side only"]),
    ("attention-heads-dim", lambda: {**_torch_mixer().state_dict(),
                                     "attn.in_proj_weight": torch.zeros(24, 7)},
     "mixer", "nnx", ["torch layer 'attn'", "in_proj_weight (24, 7)", "flax layer 'attn'",
                      "query.kernel (8, 2, 4)"]),
]


@pytest.mark.parametrize("case,state,name,library,named", REFUSALS,
                         ids=[f"{r[0]}-{r[3]}" for r in REFUSALS])
def test_a_layer_that_does_not_match_is_refused_naming_both(case, state, name, library, named):
    port = MODELS[name][2][library]()
    with pytest.raises(InputError) as info:
        _fill(library, state(), port)
    message = str(info.value)
    assert "\n" not in message
    for part in named:
        assert part in message, (part, message)


def test_from_refuses_a_like_that_does_not_match():
    port = ports.nnx_resnet(**RESNET)
    with pytest.raises(InputError, match=r"torch layer 'conv1'.*\(6, 3, 3, 3\).*'conv1'"):
        pp.from_nnx(port.model, _torch_resnet(width=6))


def test_linen_variables_without_their_order_are_refused():
    """A tree through jax.tree (or jax.jit) has its dicts sorted by name: bn1 before conv1,
    told apart by kind; with `linen_order`'s order it fills."""
    port, state = ports.linen_resnet(**RESNET), _torch_resnet().state_dict()
    variables = jax.tree.map(lambda a: a, port.model[1])
    assert list(variables["params"])[:2] == ["bn1", "conv1"]
    with pytest.raises(InputError, match=r"torch layer 'conv1' .* flax layer 'bn1' .*kinds"):
        pp.to_linen(state, variables)
    filled = pp.to_linen(state, variables, port.order)
    assert np.array_equal(filled["params"]["conv1"]["kernel"],
                          state["conv1.weight"].numpy().transpose(2, 3, 1, 0))


def test_an_equinox_batchnorm_needs_its_state():
    port = ports.eqx_resnet(**RESNET)
    with pytest.raises(InputError, match="'bn1'.*state="):
        pp.to_equinox(_torch_resnet().state_dict(), port.model[0])


def test_an_equinox_batchnorm_in_batch_mode_is_refused():
    """Its state is debiased hidden statistics, which torch's running ones are not."""
    import equinox as eqx

    bn, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(4, "batch", mode="batch",
                                                          dtype=jnp.float64)
    torch_bn = torch.nn.BatchNorm1d(4, dtype=torch.float64)
    with pytest.raises(InputError, match="mode='batch'"):
        pp.to_equinox(torch_bn.state_dict(), bn, state)


#: (function, its arguments, the modules made missing, what to install)
MISSING = [
    (pp.to_nnx, ({}, None), ("flax", "flax.nnx"), "flax"),
    (pp.from_nnx, (None, {}), ("flax", "flax.nnx"), "flax"),
    (pp.to_linen, ({}, {}), ("flax", "flax.core"), "flax"),
    (pp.from_linen, ({}, {}), ("flax", "flax.linen"), "flax"),
    (pp.linen_order, (None,), ("flax", "flax.linen"), "flax"),
    (pp.to_equinox, ({}, None), ("equinox",), "equinox"),
    (pp.from_equinox, (None, {}), ("equinox",), "equinox"),
]


@pytest.mark.parametrize("fn,args,modules,package", MISSING, ids=[m[0].__name__ for m in MISSING])
def test_a_missing_library_is_named_in_one_line(monkeypatch, fn, args, modules, package):
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)
    with pytest.raises(ImportError) as info:
        fn(*args)
    assert str(info.value).endswith(f"pip install {package}")
    assert "\n" not in str(info.value)


def test_importing_parity_params_loads_neither_library():
    code = ("import sys, parity.params\n"
            "print(sorted({'flax', 'equinox'} & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
