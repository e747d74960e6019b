"""Loss surfaces of neural nets: filter-normalized planes, batched surfaces, the torch way."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import parity
import parity.surface
from functional_fit import InputError, losses, models, surface
from functional_fit.tolerances import rel_err


CPU = jax.devices("cpu")  # what these tests measure is the CPU's, whatever the default device


@pytest.fixture(scope="module")
def net():
    module = parity.models.MLP((2, 6, 5, 1), "tanh", dtype=torch.float64, seed=2)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (40, 2))  # (n, 2)
    y = np.sin(x[:, :1] * 3) + x[:, 1:]  # (n, 1)
    return module, parity.params.from_module(module), x, y


def test_random_plane_normalizes_each_filter(net):
    _, p, _, _ = net
    plane = surface.random_plane(p, seed=5)
    assert jax.tree.structure(plane.u) == jax.tree.structure(p)
    for d in (plane.u, plane.v):
        for k, w in p.items():
            d_k = np.asarray(d[k])
            if w.ndim == 1:  # a bias: no direction unless asked
                np.testing.assert_array_equal(d_k, 0)
            else:  # each output unit's row has the norm of the parameters' row
                np.testing.assert_allclose(np.linalg.norm(d_k, axis=1),
                                           np.linalg.norm(w, axis=1), rtol=1e-9)
    assert not np.allclose(plane.u["0.weight"], plane.v["0.weight"])
    with_biases = surface.random_plane(p, seed=5, include_biases=True)
    np.testing.assert_array_equal(with_biases.u["0.bias"], p["0.bias"])  # Li et al.: d = w
    np.testing.assert_array_equal(with_biases.u["0.weight"], plane.u["0.weight"])


def test_random_plane_refuses_a_pytree_without_weights():
    with pytest.raises(InputError, match="include_biases"):
        surface.random_plane({"b": np.zeros(3)})


def test_net_surface_against_the_loss_at_each_point_and_torch(net):
    module, p, x, y = net
    plane = surface.random_plane(p, seed=1)
    a, b = np.linspace(-1, 1, 9), np.linspace(-0.5, 0.5, 7)
    z = surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane, block=5)
    assert z.shape == (7, 9)
    for j, i in ((0, 0), (3, 4), (6, 8)):
        w = jax.tree.map(lambda o, u, v: o + a[i] * u + b[j] * v, *plane)
        assert rel_err(z[j, i], losses.mse(models.mlp(w, x), y)) < 1e-13
    theirs = parity.surface.module_surface(module, torch.nn.functional.mse_loss,
                                           torch.from_numpy(x), torch.from_numpy(y), a, b,
                                           plane=plane, block=11)
    assert rel_err(z, theirs) < 1e-13
    np.testing.assert_array_equal(  # the module's own weights untouched
        module.state_dict()["0.weight"].numpy(), p["0.weight"])


def test_a_network_takes_batched_products_in_bounded_blocks(net, monkeypatch):
    """layout='auto' picks the vmapped layout for weight matrices; its block follows the
    largest intermediate (n x hidden), so memory stays bounded whatever the grid."""
    _, p, x, y = net
    seen = {}
    real = surface._grid

    def spy(kernel, *args, **kw):
        seen.update(kind=type(kernel).__name__, width=kw.get("width"), items=kw.get("items"))
        return real(kernel, *args, **kw)

    monkeypatch.setattr(surface, "_grid", spy)
    plane = surface.random_plane(p)
    surface.loss_surface(models.mlp, losses.mse, x, y, np.zeros(3), np.zeros(2), plane=plane,
                         devices=CPU)
    assert seen["kind"] == "Vmapped"
    assert seen["width"] == 40 * 6  # the (n, 6) activations of the first layer
    assert seen["items"] == surface.VMAP_ITEMS["cpu"]


def _options_seen(monkeypatch):
    """A spy on `surface._grid`: the XLA options of each call, in order."""
    seen = []
    real = surface._grid

    def spy(kernel, *args, **kw):
        seen.append(tuple(kw.get("options", ())))
        return real(kernel, *args, **kw)

    monkeypatch.setattr(surface, "_grid", spy)
    return seen


def _default_compilation(net_surface, monkeypatch):
    """`net_surface()` compiled by XLA's defaults (no `CPU_DOT_OPTIONS`)."""
    with monkeypatch.context() as m:
        m.setattr(surface, "CPU_DOT_OPTIONS", ())
        return net_surface()


@pytest.mark.parametrize("dtype, bound", [("float32", 2e-6), ("float64", 1e-13)])
def test_network_surfaces_take_the_cpu_dot_options_and_agree_with_the_default(
        net, monkeypatch, dtype, bound):
    """On the CPU a network's layers are compiled with `CPU_DOT_OPTIONS` (YNNPACK's kernels):
    the surface is XLA's default compilation's, to rounding, point by point."""
    _, p, x, y = net
    cast = lambda t: jax.tree.map(lambda v: np.asarray(v, dtype), t)  # noqa: E731
    plane, x, y = cast(surface.random_plane(p, seed=3)), cast(x), cast(y)
    a, b = np.linspace(-1, 1, 23, dtype=dtype), np.linspace(-0.5, 0.5, 17, dtype=dtype)

    def net_surface():
        return surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane,
                                    devices=CPU)

    want = _default_compilation(net_surface, monkeypatch)
    seen = _options_seen(monkeypatch)
    got = net_surface()
    assert seen == [surface.CPU_DOT_OPTIONS]  # one call, with the options, check passed
    assert got.dtype == want.dtype == np.dtype(dtype)
    assert rel_err(got, want) < bound


def _small_net_surface(net):
    """A call of a 6 x 5 surface of the fixture's network, on the CPU."""
    _, p, x, y = net
    plane = surface.random_plane(p, seed=4)
    a, b = np.linspace(-1, 1, 6), np.linspace(-1, 1, 5)
    return lambda: surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane,
                                        devices=CPU)


def test_an_xla_that_refuses_the_options_gets_the_default_compilation(net, monkeypatch):
    """An option this XLA does not know (an older or newer jaxlib): XLA's own refusal is
    caught, the surface is computed without it, and it is not asked for again."""
    net_surface = _small_net_surface(net)
    want = _default_compilation(net_surface, monkeypatch)
    bogus = (("xla_cpu_no_such_option_for_this_test", "1"),)
    monkeypatch.setattr(surface, "CPU_DOT_OPTIONS", bogus)
    monkeypatch.setattr(surface, "_refused_options", set())
    seen = _options_seen(monkeypatch)
    np.testing.assert_array_equal(net_surface(), want)
    assert seen == [bogus, ()]
    assert surface._refused_options == {bogus[0][0]}
    np.testing.assert_array_equal(net_surface(), want)
    assert seen == [bogus, (), ()]  # not asked again


def test_options_whose_losses_disagree_at_the_checked_points_are_dropped(net, monkeypatch):
    """The first call's losses at a few points are checked against the default compilation;
    when they disagree (a miscompiled kernel), the default compilation computes the surface."""
    net_surface = _small_net_surface(net)
    want = _default_compilation(net_surface, monkeypatch)
    monkeypatch.setattr(surface, "_per_point_check", lambda *a, **kw: lambda values: False)
    seen = _options_seen(monkeypatch)
    np.testing.assert_array_equal(net_surface(), want)
    assert seen == [surface.CPU_DOT_OPTIONS, ()]


def test_losses_without_matrix_products_are_compiled_as_before(monkeypatch):
    """The lecture's models have no dot: their surfaces never take the options (so they stay
    bit for bit what they were); a dot inside a jitted model is found."""
    x, y = np.linspace(-1, 1, 30), np.linspace(0, 2, 30)
    seen = _options_seen(monkeypatch)
    for model, size in ((models.linear, 2), (models.polynomial, 5)):
        surface.loss_surface(model, losses.l1, x, y, np.zeros(3), np.zeros(2),
                             base=np.zeros(size), layout="vmap", devices=CPU)
    assert seen == [(), ()]
    spec = surface._spec(((x, y), surface.Plane(np.zeros(13), np.zeros(13), np.zeros(13))))

    def dotted(w, x):
        return jax.jit(lambda w, x: x[:, None] ** np.arange(13)[None, :] @ w)(w, x)

    assert surface._traced(dotted, losses.mse, spec)[1]
    assert not surface._traced(models.polynomial, losses.mse, spec)[1]


def test_a_loss_that_is_not_finite_at_the_checked_points_keeps_the_options(net, monkeypatch):
    """An inf or nan that both compilations find is agreement: a diverging network's surface
    is not computed twice."""
    _, p, x, y = net
    plane = surface.random_plane(p, seed=4)
    a, b = np.linspace(-1, 1, 6), np.linspace(-1, 1, 5)

    def overflowing(y_hat, y):  # -inf everywhere: log of an exact zero
        return jax.numpy.log(0.0 * losses.mse(y_hat, y))

    seen = _options_seen(monkeypatch)
    z = surface.loss_surface(models.mlp, overflowing, x, y, a, b, plane=plane, devices=CPU)
    assert seen == [surface.CPU_DOT_OPTIONS]
    assert np.all(z == -np.inf)
