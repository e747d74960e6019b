"""The Hessian through its products, against the dense Hessian (`jax.hessian`, `eigh`) in
float64 and against PyHessian on the same torch CNN."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.flatten_util import ravel_pytree

import parity
from functional_fit import InputError, hessian, losses, models, nn, surface
from functional_fit.streams import Stream


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(0)
    p = {"0.weight": rng.normal(size=(5, 2)), "0.bias": rng.normal(size=5),
         "2.weight": rng.normal(size=(1, 5)), "2.bias": rng.normal(size=1)}
    x = rng.uniform(-1, 1, (31, 2))  # (n, 2)
    y = np.sin(x[:, :1] * 3)  # (n, 1)
    return p, x, y


def dense(model, loss, x, y, params, state=None):
    """The dense Hessian (p, p) of the loss over all of x, in ravel_pytree's order."""
    w, unravel = ravel_pytree(params)

    def f(w):
        out = model(unravel(w), x) if state is None else model(unravel(w), state, x)[0]
        return loss(out, y)

    return np.asarray(jax.hessian(f)(w))


def cnn(p, x):  # (B, 2, 6, 6) -> (B, 3)
    h = nn.relu(nn.conv2d(x, p["conv.weight"], p["conv.bias"]))  # (B, 3, 4, 4)
    return nn.linear(h.reshape(h.shape[0], -1), p["fc.weight"], p["fc.bias"])


@pytest.fixture(scope="module")
def conv():
    rng = np.random.default_rng(1)
    p = {"conv.weight": rng.normal(size=(3, 2, 3, 3)) * 0.5, "conv.bias": rng.normal(size=3),
         "fc.weight": rng.normal(size=(3, 48)) * 0.2, "fc.bias": np.zeros(3)}
    x = rng.normal(size=(13, 2, 6, 6))
    y = rng.integers(0, 3, 13)
    return p, x, y


def _check_top(got, h, k):
    want, vecs = np.linalg.eigh(h)
    want, vecs = want[::-1][:k], vecs[:, ::-1][:, :k]
    np.testing.assert_allclose(got.values, want, rtol=1e-8, atol=1e-10)
    for i, v in enumerate(got.vectors):
        flat = np.asarray(ravel_pytree(v)[0])
        assert abs(np.linalg.norm(flat) - 1) < 1e-10
        assert abs(abs(flat @ vecs[:, i]) - 1) < 1e-6  # the same vector, up to its sign
    assert np.all(got.residuals < 1e-6)


def test_top_eigenvalues_of_an_mlp_over_a_stream_against_eigh(mlp):
    p, x, y = mlp
    got = hessian.eigenvalues(models.mlp, losses.mse, Stream(x, y, batch_size=8), None, p, k=3)
    _check_top(got, dense(models.mlp, losses.mse, x, y, p), 3)
    arrays = hessian.eigenvalues(models.mlp, losses.mse, x, y, p, k=3)
    np.testing.assert_allclose(arrays.values, got.values, rtol=1e-12)


def test_a_hessian_of_rank_two_gives_its_zero_eigenvalues_too():
    """A linear model on inputs of rank 2: the Krylov space closes after 3 products and
    Lanczos goes on from fresh vectors; the top 4 are the two nonzero eigenvalues and 0, 0."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 2)) @ rng.normal(size=(2, 10))  # (20, 10), rank 2
    y = rng.normal(size=20)
    w = {"w": rng.normal(size=10)}

    def model(p, x):
        return x @ p["w"]

    got = hessian.eigenvalues(model, losses.mse, x, y, w, k=4)
    want = np.linalg.eigvalsh(2 * x.T @ x / 20)[::-1][:4]  # MSE's Hessian, closed form
    np.testing.assert_allclose(got.values, want, rtol=1e-10, atol=1e-10)
    flat = np.array([v["w"] for v in got.vectors])  # (4, 10)
    np.testing.assert_allclose(flat @ flat.T, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm((2 * x.T @ x / 20) @ flat.T - flat.T * got.values,
                                              axis=0), 0, atol=1e-9)


def test_float32_parameters_work_in_float32(mlp):
    """float64 data is cast to the parameters' float32; the answer is float64's to float32's
    precision, its vectors float32 pytrees."""
    p, x, y = mlp
    p32 = {k: np.asarray(v, np.float32) for k, v in p.items()}
    got = hessian.eigenvalues(models.mlp, losses.mse, Stream(x, y, batch_size=8), None, p32,
                              k=2)
    want = np.linalg.eigvalsh(dense(models.mlp, losses.mse, x, y, p))[::-1][:2]
    np.testing.assert_allclose(got.values, want, rtol=1e-4)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(got.vectors))


def test_top_eigenvalues_of_a_cnn_against_eigh(conv):
    p, x, y = conv
    got = hessian.eigenvalues(cnn, losses.cross_entropy, Stream(x, y, batch_size=5), None, p,
                              k=2)
    _check_top(got, dense(cnn, losses.cross_entropy, x, y, p), 2)


def test_each_layer_is_its_block_of_the_hessian(conv):
    p, x, y = conv
    h = dense(cnn, losses.cross_entropy, x, y, p)
    got = hessian.eigenvalues(cnn, losses.cross_entropy, x, y, p, k=2, layers=True)
    assert sorted(got) == sorted(p)
    start = 0
    for name in sorted(p):  # ravel_pytree's order: the dict's sorted keys
        size = np.size(p[name])
        block = h[start : start + size, start : start + size]
        start += size
        want = np.linalg.eigvalsh(block)[::-1][:2]
        np.testing.assert_allclose(got[name].values, want, rtol=1e-8, atol=1e-10)
        other = [k for k in p if k != name]
        for k in other:  # an eigenvector of a block is zero on the other leaves
            assert not np.any(np.asarray(got[name].vectors[0][k]))
    group = hessian.eigenvalues(cnn, losses.cross_entropy, x, y, p, k=2, layers=["conv"])
    size = np.size(p["conv.bias"]) + np.size(p["conv.weight"])  # adjacent, sorted first
    want = np.linalg.eigvalsh(h[:size, :size])[::-1][:2]
    np.testing.assert_allclose(group["conv"].values, want, rtol=1e-8, atol=1e-10)


def test_hutchinson_is_the_mean_of_v_h_v_over_its_rademacher_vectors(mlp):
    p, x, y = mlp
    h = dense(models.mlp, losses.mse, x, y, p)
    t = hessian.trace(models.mlp, losses.mse, Stream(x, y, batch_size=10), None, p, samples=40,
                      seed=3)
    vs = np.random.default_rng(3).choice([-1.0, 1.0], size=(40, h.shape[0]))  # as documented
    want = np.einsum("si,ij,sj->s", vs, h, vs)  # (40,)
    np.testing.assert_allclose(t.samples, want, rtol=1e-10)
    assert t.estimate == pytest.approx(want.mean(), rel=1e-10)
    assert t.stderr == pytest.approx(want.std(ddof=1) / np.sqrt(40), rel=1e-10)
    assert abs(t.estimate - np.trace(h)) < 4 * t.stderr  # unbiased: within its error
    per = hessian.trace(models.mlp, losses.mse, x, y, p, samples=5, seed=1, layers=["0"])
    assert set(per) == {"0"}  # the group 0.bias, 0.weight: the first 15 in sorted order
    vs = np.random.default_rng(1).choice([-1.0, 1.0], size=(5, 15))
    np.testing.assert_allclose(per["0"].samples, np.einsum("si,ij,sj->s", vs, h[:15, :15], vs),
                               rtol=1e-10)


def test_one_compiled_product_serves_every_function_on_the_same_model(mlp):
    """eigenvalues, trace and density on one model and loss trace its product once; a model
    that cannot be hashed (a callable holding arrays) is compiled per operator, same values."""
    p, x, y = mlp
    traced = []

    def counted(params, x):  # a fresh function: nothing of it compiled before this test
        traced.append(1)
        return models.mlp(params, x)

    first = hessian.eigenvalues(counted, losses.mse, x, y, p, k=2)
    hessian.trace(counted, losses.mse, x, y, p, samples=3)
    hessian.density(counted, losses.mse, x, y, p, iterations=5)
    assert len(traced) == 1

    class Unhashable:  # as an equinox module holding arrays
        __hash__ = None

        def __call__(self, params, x):
            traced.append(1)
            return models.mlp(params, x)

    model = Unhashable()
    again = hessian.eigenvalues(model, losses.mse, x, y, p, k=2)
    hessian.trace(model, losses.mse, x, y, p, samples=3)
    assert len(traced) == 3  # once per operator
    np.testing.assert_allclose(again.values, first.values, rtol=1e-12)


def test_a_distributed_stream_adds_the_processes_sums(mlp, monkeypatch):
    """Each process's products and point count are added: two processes holding the same
    data (process_sum doubling every sum) give the one-process Hessian."""
    p, x, y = mlp
    want = hessian.eigenvalues(models.mlp, losses.mse, x, y, p, k=2).values
    monkeypatch.setattr(hessian, "process_sum", lambda v: 2 * np.asarray(v))
    got = hessian.eigenvalues(models.mlp, losses.mse, Stream(x, y, batch_size=8,
                                                             distributed=True), None, p, k=2)
    np.testing.assert_allclose(got.values, want, rtol=1e-12)


def test_slq_reproduces_the_moments_of_the_spectrum_seen_from_its_start(mlp):
    p, x, y = mlp
    h = dense(models.mlp, losses.mse, x, y, p)
    d = hessian.density(models.mlp, losses.mse, x, y, p, iterations=6, runs=2, seed=4)
    assert d.nodes.shape == d.weights.shape == (2, 6)
    for r in range(2):
        v = np.random.default_rng((4, r)).choice([-1.0, 1.0], size=h.shape[0])  # documented
        v = v / np.linalg.norm(v)
        for k in range(12):  # Gauss quadrature with m nodes is exact to degree 2m - 1
            want = v @ np.linalg.matrix_power(h, k) @ v
            got = np.sum(d.weights[r] * d.nodes[r] ** k)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, rel=1e-9)
    full = hessian.density(models.mlp, losses.mse, x, y, p, iterations=h.shape[0])
    np.testing.assert_allclose(np.sort(full.nodes[0]), np.linalg.eigvalsh(h), rtol=1e-7,
                               atol=1e-9)  # all p steps: the whole spectrum


def pyhessian_density(eigenvalues, weights, num_bins=10000, sigma_squared=1e-5,
                      overhead=0.01):
    """PyHessian's density_plot.density_generate, transcribed (numpy, loops vectorized)."""
    lambda_max = np.mean(np.max(eigenvalues, axis=1), axis=0) + overhead
    lambda_min = np.mean(np.min(eigenvalues, axis=1), axis=0) - overhead
    grids = np.linspace(lambda_min, lambda_max, num=num_bins)
    var = sigma_squared * max(1, (lambda_max - lambda_min))
    g = np.exp(-(grids[None, None, :] - eigenvalues[:, :, None]) ** 2 / (2.0 * var)) / np.sqrt(
        2 * np.pi * var)  # (runs, m, bins)
    density = np.mean(np.sum(g * weights[:, :, None], axis=1), axis=0)
    return density / (np.sum(density) * (grids[1] - grids[0])), grids


def test_the_smoothed_density_is_pyhessians(mlp):
    p, x, y = mlp
    d = hessian.density(models.mlp, losses.mse, x, y, p, iterations=8, runs=3, seed=1)
    want, grid = pyhessian_density(d.nodes, d.weights)
    np.testing.assert_allclose(d.grid, grid, rtol=1e-14)
    ratio = d.density[want > 1e-3 * want.max()] / want[want > 1e-3 * want.max()]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-10)  # the same curve, up to the rule
    assert ratio[0] == pytest.approx(1.0, rel=1e-3)  # trapezoid against Riemann sum
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, rel=1e-12)


@functools.lru_cache(maxsize=None)
def _eval_resnet():
    def model(params, state, x):
        return models.resnet(params, state, x, dropout=0.0, training=False)

    return model


@pytest.mark.slow
def test_a_resnet_with_state_in_eval_mode_against_eigh():
    module = parity.models.ResNet(2, 2, 2, dropout=0.0, dtype=torch.float64, seed=0)
    names = {k for k, _ in module.named_parameters()}
    sd = parity.params.from_module(module)
    params = {k: v for k, v in sd.items() if k in names}
    state = {k: v for k, v in sd.items() if k not in names}
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 2, 4, 4)), rng.integers(0, 2, 4)
    got = hessian.eigenvalues(_eval_resnet(), losses.cross_entropy, x, y, params, k=2,
                              state=state)
    _check_top(got, dense(_eval_resnet(), losses.cross_entropy, x, y, params, state), 2)


def test_the_hessian_plane_bends_as_its_eigenvalues(mlp):
    p, x, y = mlp
    top = hessian.eigenvalues(models.mlp, losses.mse, x, y, p, k=2)
    plane = surface.hessian_plane(models.mlp, losses.mse, x, y, p)
    s = 1e-3
    a = np.array([-s, 0.0, s])
    z = surface.loss_surface(models.mlp, losses.mse, x, y, a, a, plane=plane)  # (3, 3)
    assert (z[1, 0] - 2 * z[1, 1] + z[1, 2]) / s**2 == pytest.approx(top.values[0], rel=1e-5)
    assert (z[0, 1] - 2 * z[1, 1] + z[2, 1]) / s**2 == pytest.approx(top.values[1], rel=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, k=22), "k must be at"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, k=0), "k must be"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, layers=["conv"]),
     "no parameter or group named 'conv'"),
    (lambda p, x, y: hessian.trace(models.mlp, losses.mse, x, y, p, samples=0), "samples"),
    (lambda p, x, y: hessian.density(models.mlp, losses.mse, x, y, p, sigma=-1.0), "sigma"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, Stream(x, y), y, p),
     "y must be None"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, {**p, "n": np.int64(3)}),
     "leaf 'n' is not floating"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, layers="0.bias"),
     "layers must be"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, layers=[]),
     "layers must be"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, k=2,
                                         layers=["2.bias"]), "parameters in '2.bias' \\(1\\)"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, None, p), "y is missing"),
    (lambda p, x, y: hessian.trace(None, losses.mse, x, y, p), "model must be a function"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, tol=0.0), "tol"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, p, k=3, iterations=2),
     "iterations must be at least k"),
    (lambda p, x, y: hessian.density(models.mlp, losses.mse, x, y, p, grid=[1.0, 0.0]),
     "grid must be increasing"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x, y, {}), "params has no"),
    (lambda p, x, y: hessian.eigenvalues(models.mlp, losses.mse, x[:5], y, p), "same number"),
])
def test_bad_input_is_one_line_naming_the_argument(mlp, call, match):
    with pytest.raises(InputError, match=match) as err:
        call(*mlp)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True:UserWarning")  # theirs
def test_the_top_eigenvalue_of_a_torch_cnn_as_pyhessian_finds_it():
    pyhessian = pytest.importorskip("pyhessian")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 6 * 6, 3)).double()
    x = torch.randn(40, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    theirs, _ = pyhessian.hessian(module, torch.nn.CrossEntropyLoss(), data=(x, y),
                                  cuda=False).eigenvalues(top_n=1, maxIter=300, tol=1e-6)
    fn, params = parity.export.to_jax(module, x[:2])
    model, trainable, _ = parity.export.as_model(fn, params)
    ours = hessian.eigenvalues(model, losses.cross_entropy, Stream(x.numpy(), y.numpy(),
                                                                   batch_size=16), None,
                               trainable, k=1)
    assert ours.values[0] == pytest.approx(theirs[0], rel=1e-4)
