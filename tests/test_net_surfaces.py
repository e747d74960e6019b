"""Loss surfaces of neural nets: filter-normalized planes, batched surfaces, the torch way."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import parity
import parity.surface
from functional_fit import InputError, losses, models, runtime, surface
from functional_fit.surface import grid, layouts
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


def _runs_seen(monkeypatch):
    """A spy on the grid driver (`functional_fit.surface.grid.run`): each run's kernel, its
    width and workspace, and its XLA options, in order."""
    seen = []
    real = grid.run

    def spy(kernel, args, g, **kw):
        seen.append(dict(kind=type(kernel).__name__, width=kw.get("width"),
                         items=kw.get("items"), options=tuple(kw.get("options", ()))))
        return real(kernel, args, g, **kw)

    monkeypatch.setattr(grid, "run", spy)
    return seen


def _options(seen) -> list:
    """The XLA options of each run `_runs_seen` saw, in order."""
    return [r["options"] for r in seen]


def test_a_network_takes_batched_products_in_bounded_blocks(net, monkeypatch):
    """layout='auto' picks the vmapped layout for weight matrices; its block follows the
    largest intermediate (n x hidden), so memory stays bounded whatever the grid."""
    _, p, x, y = net
    seen = _runs_seen(monkeypatch)
    plane = surface.random_plane(p)
    surface.loss_surface(models.mlp, losses.mse, x, y, np.zeros(3), np.zeros(2), plane=plane,
                         devices=CPU)
    assert seen[0]["kind"] == "Vmapped"
    assert seen[0]["width"] == 40 * 6  # the (n, 6) activations of the first layer
    assert seen[0]["items"] == runtime.defaults("cpu").vmap_items


#: XLA's default compilation: no dot options.
DEFAULT = runtime.defaults("cpu", dot_options=())
DOT_OPTIONS = runtime.defaults("cpu").dot_options


@pytest.mark.parametrize("dtype, bound", [("float32", 2e-6), ("float64", 1e-13)])
def test_network_surfaces_take_the_cpu_dot_options_and_agree_with_the_default(
        net, monkeypatch, dtype, bound):
    """On the CPU a network's layers are compiled with the runtime's dot options (YNNPACK's
    kernels): the surface is XLA's default compilation's, to rounding, point by point."""
    _, p, x, y = net
    cast = lambda t: jax.tree.map(lambda v: np.asarray(v, dtype), t)  # noqa: E731
    plane, x, y = cast(surface.random_plane(p, seed=3)), cast(x), cast(y)
    a, b = np.linspace(-1, 1, 23, dtype=dtype), np.linspace(-0.5, 0.5, 17, dtype=dtype)

    def net_surface(rt=None):
        return surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane,
                                    devices=CPU, runtime=rt)

    want = net_surface(DEFAULT)
    seen = _runs_seen(monkeypatch)
    got = net_surface()
    assert _options(seen) == [DOT_OPTIONS]  # one call, with the options, check passed
    assert got.dtype == want.dtype == np.dtype(dtype)
    assert rel_err(got, want) < bound


def _small_net_surface(net):
    """A call of a 6 x 5 surface of the fixture's network, on the CPU."""
    _, p, x, y = net
    plane = surface.random_plane(p, seed=4)
    a, b = np.linspace(-1, 1, 6), np.linspace(-1, 1, 5)
    return lambda rt=None: surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane,
                                                devices=CPU, runtime=rt)


def test_an_xla_that_refuses_the_options_gets_the_default_compilation(net, monkeypatch):
    """An option this XLA does not know (an older or newer jaxlib): XLA's own refusal is
    caught, and the surface is computed without it."""
    net_surface = _small_net_surface(net)
    want = net_surface(DEFAULT)
    bogus = (("xla_cpu_no_such_option_for_this_test", "1"),)
    seen = _runs_seen(monkeypatch)
    np.testing.assert_array_equal(net_surface(runtime.defaults("cpu", dot_options=bogus)), want)
    assert _options(seen) == [bogus, ()]


def test_options_whose_losses_disagree_at_the_checked_points_are_dropped(net, monkeypatch):
    """The first call's losses at a few points are checked against the default compilation;
    when they disagree (a miscompiled kernel), the default compilation computes the surface."""
    net_surface = _small_net_surface(net)
    want = net_surface(DEFAULT)
    monkeypatch.setattr(layouts, "per_point_check", lambda *a, **kw: lambda values: False)
    seen = _runs_seen(monkeypatch)
    np.testing.assert_array_equal(net_surface(), want)
    assert _options(seen) == [DOT_OPTIONS, ()]


def test_losses_without_matrix_products_are_compiled_as_before(monkeypatch):
    """The lecture's models have no dot: their surfaces never take the options (so they stay
    bit for bit what they were); a dot inside a jitted model is found."""
    x, y = np.linspace(-1, 1, 30), np.linspace(0, 2, 30)
    seen = _runs_seen(monkeypatch)
    for model, size in ((models.linear, 2), (models.polynomial, 5)):
        surface.loss_surface(model, losses.l1, x, y, np.zeros(3), np.zeros(2),
                             base=np.zeros(size), layout="vmap", devices=CPU)
    assert _options(seen) == [(), ()]
    spec = layouts.spec(((x, y), surface.Plane(np.zeros(13), np.zeros(13), np.zeros(13))))

    def dotted(w, x):
        return jax.jit(lambda w, x: jax.numpy.stack([x**k for k in range(13)], axis=1) @ w)(w, x)

    assert layouts.traced(dotted, losses.mse, spec)[1]
    assert not layouts.traced(models.polynomial, losses.mse, spec)[1]


def test_a_loss_that_is_not_finite_at_the_checked_points_keeps_the_options(net, monkeypatch):
    """An inf or nan that both compilations find is agreement: a diverging network's surface
    is not computed twice."""
    _, p, x, y = net
    plane = surface.random_plane(p, seed=4)
    a, b = np.linspace(-1, 1, 6), np.linspace(-1, 1, 5)

    def overflowing(y_hat, y):  # -inf everywhere: log of an exact zero
        return jax.numpy.log(0.0 * losses.mse(y_hat, y))

    seen = _runs_seen(monkeypatch)
    z = surface.loss_surface(models.mlp, overflowing, x, y, a, b, plane=plane, devices=CPU)
    assert _options(seen) == [DOT_OPTIONS]
    assert np.all(z == -np.inf)
