"""Planes of networks: Li et al.'s filter normalization, directions from seeds, and the PCA plane
of several paths, each against a hand-written numpy version."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import numpy as np
import pytest
import torch
from flax import nnx

import parity
import ports
from functional_fit import InputError, surface

RESNET = dict(in_channels=3, width=4, num_classes=5)


def li_normalized(d, w, axis):
    """Li et al.'s ``normalize_direction(d, w, 'filter')`` by hand, a loop over the filters:
    filter f (index f along `axis`) times ||w_f|| / (||d_f|| + 1e-10), in float64."""
    d = np.moveaxis(np.array(d, np.float64), axis, 0)  # (F, ...), a copy
    w = np.moveaxis(np.asarray(w, np.float64), axis, 0)
    for f in range(d.shape[0]):
        d[f] *= np.linalg.norm(w[f]) / (np.linalg.norm(d[f]) + 1e-10)
    return np.moveaxis(d, 0, axis)


def _torch_bias(path, w):
    """Li et al.'s biases and normalization parameters: torch's leaves of <= 1 dimension."""
    return w.ndim <= 1


def li_direction(params, seed, which, axis, include_biases=False, is_bias=_torch_bias):
    """Li et al.'s ``normalize_directions_for_weights`` of the documented draws: leaf i (in
    ``jax.tree.leaves`` order) drawn by ``default_rng((seed, i, which))`` in float64, cast to
    the leaf's dtype; biases zero (``ignore='biasbn'``) or the leaf itself."""
    out = []
    for i, (path, w) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
        w = np.asarray(w)
        if is_bias(path, w):
            out.append(w if include_biases else np.zeros_like(w))
            continue
        d = np.random.default_rng((seed, i, which)).standard_normal(w.shape).astype(w.dtype)
        out.append(li_normalized(d, w, axis))
    return out


def _torch_params(dtype=torch.float64):
    """A small ResNet's state_dict: conv weights (out, in, kh, kw), linear (out, in), BatchNorm's
    weights, biases and running statistics, and num_batches_tracked."""
    return parity.params.from_module(parity.models.ResNet(**RESNET, dtype=dtype, seed=0))


@functools.cache
def _nnx_params():
    """The NNX port's parameters: Conv kernels (kh, kw, in, out), a Dense kernel (in, out)."""
    return nnx.state(ports.nnx_resnet(**RESNET).model, nnx.Param)


@functools.cache
def _linen_params():
    return ports.linen_resnet(**RESNET).model[1]["params"]


def _assert_leaves_close(got, want, rtol):
    got = jax.tree.leaves(got)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == w.dtype and np.shape(g) == w.shape
        np.testing.assert_allclose(np.asarray(g), w, rtol=rtol, atol=0)


#: library -> (its parameters, the axis of its filters: torch's (out, ...) weights, flax's
#: (..., out) kernels).
LAYOUTS = {"torch": (_torch_params, 0), "nnx": (_nnx_params, -1), "linen": (_linen_params, -1)}


@pytest.mark.parametrize("library", LAYOUTS)
def test_filter_normalization_is_li_et_als_in_each_layout(library):
    params, axis = LAYOUTS[library]
    p = params()
    assert any(np.ndim(w) >= 2 for w in jax.tree.leaves(p))
    plane = surface.random_plane(p, seed=3)
    assert jax.tree.structure(plane.u) == jax.tree.structure(p)
    for which, d in enumerate((plane.u, plane.v)):
        _assert_leaves_close(d, li_direction(p, 3, which, axis), rtol=1e-13)
    with_biases = surface.random_plane(p, seed=3, include_biases=True)
    _assert_leaves_close(with_biases.u, li_direction(p, 3, 0, axis, include_biases=True),
                         rtol=1e-13)


def test_an_equinox_convolutions_bias_is_a_bias():
    """equinox keeps a Conv2d's bias as (out, 1, 1): named ``bias``, it moves as torch's does."""
    keys = jax.random.split(jax.random.key(0))
    model = {"conv": eqx.nn.Conv2d(3, 4, 3, key=keys[0]), "fc": eqx.nn.Linear(4, 2, key=keys[1])}
    p = eqx.filter(model, eqx.is_array)

    def is_bias(path, w):
        return w.ndim <= 1 or path[-1].name == "bias"

    plane = surface.random_plane(p, seed=2)
    assert np.shape(plane.u["conv"].bias) == (4, 1, 1)
    for which, d in enumerate((plane.u, plane.v)):
        _assert_leaves_close(d, li_direction(p, 2, which, 0, is_bias=is_bias), rtol=1e-13)


@pytest.mark.parametrize("library, forced", [("torch", -1), ("nnx", 0)])
def test_filter_axis_forces_the_axis(library, forced):
    params, _ = LAYOUTS[library]
    p = params()
    plane = surface.random_plane(p, seed=1, filter_axis=forced)
    _assert_leaves_close(plane.v, li_direction(p, 1, 1, forced), rtol=1e-13)
    with pytest.raises(InputError, match="filter_axis"):
        surface.random_plane(p, filter_axis=1)


def test_each_filter_has_the_weights_norm_and_the_draws_direction_in_float32():
    p = _torch_params(torch.float32)
    plane = surface.random_plane(p, seed=7)
    for i, (w, u) in enumerate(zip(jax.tree.leaves(p), jax.tree.leaves(plane.u))):
        u = np.asarray(u)
        assert u.dtype == w.dtype  # float32, or num_batches_tracked's int64
        if w.ndim <= 1:
            np.testing.assert_array_equal(u, 0)
            continue
        draw = np.random.default_rng((7, i, 0)).standard_normal(w.shape).astype(np.float32)
        axes = tuple(range(1, w.ndim))
        np.testing.assert_allclose(np.linalg.norm(u.reshape(w.shape[0], -1), axis=1),
                                   np.linalg.norm(w.reshape(w.shape[0], -1), axis=1), rtol=1e-5)
        scale = np.sum(u * draw, axis=axes) / np.sum(draw * draw, axis=axes)  # (out,)
        np.testing.assert_allclose(u, scale.reshape(-1, *[1] * (w.ndim - 1)) * draw,
                                   rtol=1e-5, atol=1e-7)


def test_the_same_seed_gives_the_same_directions_and_the_documented_draws():
    p = _nnx_params()
    first, again = surface.random_plane(p, seed=11), surface.random_plane(p, seed=11)
    for s, t in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(s), np.asarray(t))
    other = surface.random_plane(p, seed=12)
    kernel = lambda plane: np.asarray(plane.u["fc"]["kernel"][...])  # noqa: E731
    assert not np.array_equal(kernel(first), kernel(other))
    assert not np.array_equal(kernel(first), np.asarray(first.v["fc"]["kernel"][...]))
    for which in (0, 1):
        draws = jax.tree.leaves(surface.random_draw(p, seed=11, which=which))
        for i, (d, w) in enumerate(zip(draws, jax.tree.leaves(p))):
            want = np.random.default_rng((11, i, which)).standard_normal(w.shape)
            np.testing.assert_array_equal(d, want.astype(w.dtype))


def test_the_flat_vector_plane_keeps_its_signs_from_jax_random():
    """The lecture's vectors: each parameter its own filter, signs of ``jax.random`` draws."""
    w = np.array([0.5, -2.0, 3.0])
    plane = surface.random_plane(w, seed=7)
    key = jax.random.key(7)
    want = np.sign(np.asarray(jax.random.normal(jax.random.fold_in(key, 0), (3,)))) * np.abs(w)
    np.testing.assert_array_equal(np.asarray(plane.u), want)


# --------------------------------------------------------------------------- PCA of paths


def _walks(lengths, p=6, seed=0):
    """Random walks of `lengths` steps from one start, (T_i, p) each."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=p)
    return [start + np.cumsum(np.vstack([np.zeros(p), rng.normal(size=(t - 1, p))]), axis=0)
            * np.linspace(1, 3, p)[None, :] for t in lengths]


def _numpy_pca(paths):
    """The plane of the union by numpy's SVD: displacements from the first path's end, the
    signs making the first path's start >= 0."""
    origin = paths[0][-1]
    d = np.vstack([q - origin[None, :] for q in paths])  # (sum T_i, p)
    _, s, vt = np.linalg.svd(d)
    uv = vt[:2] * np.where(d[0] @ vt[:2].T < 0, -1.0, 1.0)[:, None]  # (2, p)
    return origin, uv, [(q - origin[None, :]) @ uv.T for q in paths], s[:2] ** 2 / np.sum(s**2)


def test_pca_plane_of_several_paths_is_the_pca_of_their_union():
    paths = _walks((30, 12, 45))
    pca = surface.pca_plane(paths)
    origin, uv, on_plane, explained = _numpy_pca(paths)
    np.testing.assert_array_equal(np.asarray(pca.plane.origin), origin)
    np.testing.assert_allclose(np.stack([pca.plane.u, pca.plane.v]), uv, rtol=1e-10, atol=1e-12)
    assert isinstance(pca.path, tuple) and len(pca.path) == 3
    for got, want in zip(pca.path, on_plane):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pca.explained, explained, rtol=1e-12)
    assert np.all(np.asarray(pca.path[0][0]) >= 0)


def test_a_list_of_one_path_gives_the_single_paths_plane():
    (path,) = _walks((20,))
    one, alone = surface.pca_plane([path]), surface.pca_plane(path)
    for s, t in zip(one.plane, alone.plane):
        np.testing.assert_array_equal(s, t)
    np.testing.assert_array_equal(one.path[0], alone.path)
    np.testing.assert_array_equal(one.explained, alone.explained)
    assert not isinstance(alone.path, tuple) and alone.path.shape == (20, 2)


def test_pca_plane_of_several_pytree_paths():
    paths = _walks((15, 25), p=6)
    trees = [{"w": q[:, :4].reshape(-1, 2, 2), "b": q[:, 4:]} for q in paths]  # leaves (T, ...)
    pca = surface.pca_plane(trees)
    flat = [np.hstack([q[:, 4:], q[:, :4]]) for q in paths]  # jax's leaf order: b, then w
    origin, uv, on_plane, _ = _numpy_pca(flat)
    np.testing.assert_allclose(pca.plane.u["w"].reshape(-1), uv[0, 2:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pca.plane.v["b"], uv[1, :2], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(pca.plane.origin["b"], origin[:2])
    for got, want in zip(pca.path, on_plane):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_pca_plane_refuses_paths_of_different_sizes():
    with pytest.raises(InputError, match="same number of parameters"):
        surface.pca_plane([np.zeros((3, 4)), np.zeros((5, 3))])
    with pytest.raises(InputError, match=r"path\[1\] must have shape"):
        surface.pca_plane([np.zeros((3, 4)), np.zeros((0, 4))])


def test_around_path_of_several_paths_holds_each_and_covers_them_all():
    paths = _walks((10, 30), p=3)
    view = surface.around_path(paths, directions="coords", coords=(0, 2))
    assert isinstance(view.path, tuple) and isinstance(view.on_plane, tuple)
    np.testing.assert_array_equal(view.on_plane[1], paths[1][:, [0, 2]])
    np.testing.assert_array_equal(view.plane.origin[1], paths[0][-1][1])  # the first path's end
    union = np.vstack(paths)  # (40, 3)
    assert view.a_range[0] < union[:, 0].min() and view.a_range[1] > union[:, 0].max()
    assert view.b_range[0] < union[:, 2].min() and view.b_range[1] > union[:, 2].max()
    pca = surface.around_path(paths, directions="pca")
    assert pca.labels[0].endswith("of the paths)") and len(pca.on_plane) == 2
    with pytest.raises(InputError, match=r"path\[1\] has 2 parameters"):
        surface.around_path([paths[0], paths[1][:, :2]])
