"""Loss surfaces against independent references: the lecture's own loops, brute force, torch.

Speed is never asserted here; `benchmarks/bench_surface.py` measures it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import functional_fit as ff
from functional_fit import runtime, surface
from parity import losses as tl, models as tm, surface as tsurface

# A surface value is a mean of n = 100 non-negative terms; summed in another order (numpy's
# pairwise sum, torch's vectorized sum, our tree) it moves by a few float64 ulps. 1e-12 is the
# issue's tolerance, about 5000 ulps: room for the sums, none for a wrong term.
F64_RTOL = 1e-12
# float32: the same sums of 100 terms in float32 differ by up to about n * eps32 = 1.2e-5.
F32_RTOL = 2e-5


def lecture_w_mse(x, y):
    """Cells 6-7: the analytic MSE fit, written as the lecture writes it."""
    su = lambda v: (v - np.mean(v)) / np.std(v)  # noqa: E731
    slope = np.mean(su(x) * su(y)) * np.std(y) / np.std(x)
    return np.array([np.mean(y) - slope * np.mean(x), slope])


def lecture_surface(loss, x, y, w0values, w1values):
    """Cells 12 and 15, verbatim: one loss call per row of the meshgrid's tall matrix."""
    model = lambda w, x: w[0] + w[1] * x  # noqa: E731  (cell 5)
    (u, v) = np.meshgrid(w0values, w1values)
    ws = np.vstack((u.flatten(), v.flatten())).transpose()
    return np.array([loss(y, model(w, x)) for w in ws]).reshape(u.shape)


def brute_force(model, loss, x, y, a_values, b_values, origin, u, v):
    """Every grid point by itself, in numpy: loss(model(origin + a u + b v, x), y)."""
    out = np.empty((len(b_values), len(a_values)))
    for j, b in enumerate(b_values):
        for i, a in enumerate(a_values):
            out[j, i] = loss(model(origin + a * u + b * v, x), y)
    return out


np_model = {
    "linear": lambda w, x: w[0] + w[1] * x,
    "poly": lambda w, x: np.sum([w[i] * x**i for i in range(len(w))], axis=0),
}
np_loss = {
    "l1": lambda y_hat, y: np.mean(np.abs(y_hat - y)),
    "mse": lambda y_hat, y: np.mean((y_hat - y) ** 2),
}
ff_model = {"linear": ff.models.linear, "poly": ff.models.polynomial}
ff_loss = {"l1": ff.losses.l1, "mse": ff.losses.mse}


# --------------------------------------------------------------------------- the lecture's grids


@pytest.mark.parametrize(
    "cell, loss_name",
    [(12, "mse"), (15, "l1")],
)
def test_cells_12_and_15_equal_the_lecture_loop(lecture_xy, cell, loss_name):
    x, y = lecture_xy
    w_mse = lecture_w_mse(x, y)
    w0values = np.linspace(w_mse[0] - 1, w_mse[0] + 1, 50)
    w1values = np.linspace(w_mse[1] - 1, w_mse[1] + 1, 50)
    want = lecture_surface(lambda yh, yy: np_loss[loss_name](yy, yh), x, y, w0values, w1values)
    got = surface.loss_surface(ff.models.linear, ff_loss[loss_name], x, y, w0values, w1values)
    assert got.shape == (50, 50) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=F64_RTOL, atol=0)


def test_cell_50_equals_the_lecture_torch_loop(lecture_xy):
    x, y = lecture_xy
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    w0values = np.linspace(-1.0, 1, 50)
    w1values = np.linspace(-0.5, 5, 50)
    (u, v) = np.meshgrid(w0values, w1values)
    ws = np.vstack((u.flatten(), v.flatten())).transpose()
    want = np.array([F.l1_loss(ty, tm.SimpleLinearModel(w)(tx)).item() for w in ws]).reshape(u.shape)
    got = surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, w0values, w1values)
    np.testing.assert_allclose(got, want, rtol=F64_RTOL, atol=0)
    # The meshgrid 'xy' convention: row j is w1values[j], column i is w0values[i].
    j, i = np.unravel_index(np.argmin(got), got.shape)
    assert got[j, i] == pytest.approx(float(ff.losses.l1(w0values[i] + w1values[j] * x, y)))


# --------------------------------------------------------------------------- brute force


CASES = [  # model, loss, p+1, coords
    ("linear", "l1", 2, (1, 0)),
    ("poly", "mse", 4, (2, 0)),
    ("poly", "l1", 13, (0, 12)),
]


@pytest.mark.parametrize("model, loss, size, coords", CASES)
def test_coordinate_surfaces_equal_brute_force(lecture_xy, model, loss, size, coords):
    x, y = lecture_xy
    base = np.linspace(-0.5, 0.7, size)
    a, b = np.linspace(-2, 2, 13), np.linspace(-1, 3, 7)
    got = surface.loss_surface(ff_model[model], ff_loss[loss], x, y, a, b, base=base, coords=coords)
    origin = base.copy()
    origin[list(coords)] = 0
    eye = np.eye(size)
    want = brute_force(np_model[model], np_loss[loss], x, y, a, b, origin, eye[coords[0]], eye[coords[1]])
    np.testing.assert_allclose(got, want, rtol=F64_RTOL, atol=0)
    # The held parameters really are held: the surface at (base[c0], base[c1]) is the loss at base.
    at_base = surface.loss_surface(
        ff_model[model], ff_loss[loss], x, y, base[[coords[0]]], base[[coords[1]]], base=base, coords=coords
    )
    assert at_base[0, 0] == pytest.approx(np_loss[loss](np_model[model](base, x), y), rel=F64_RTOL)


def test_layouts_agree_and_chunking_does_not_change_a_value(lecture_xy):
    x, y = lecture_xy
    a, b = np.linspace(-1, 1, 37), np.linspace(-0.5, 5, 23)  # 851 points: no block divides it
    args = (ff.models.linear, ff.losses.l1, x, y, a, b)
    streamed = surface.loss_surface(*args, layout="streamed")
    vmapped = surface.loss_surface(*args, layout="vmap")
    np.testing.assert_allclose(streamed, vmapped, rtol=F64_RTOL, atol=0)
    rt = runtime.defaults(jax.default_backend(), chunk_points=64)  # 10 blocks of 7 a call: 13
    done = []
    small = surface.loss_surface(*args, layout="streamed", block=7, progress=done.append,
                                 runtime=rt)
    np.testing.assert_array_equal(small, streamed)
    assert sum(done) == 851 and len(done) == 13


def test_odd_data_sizes_are_all_summed():
    x = np.linspace(-1, 1, 13)  # one scan chunk and a rest; then fewer points than a chunk
    y = np.cos(3 * x)
    for n in (13, 3, 1):
        got = surface.loss_surface(ff.models.linear, ff.losses.l1, x[:n], y[:n], [0.5, 1.0], [2.0])
        want = [[np.mean(np.abs(a + 2.0 * x[:n] - y[:n])) for a in (0.5, 1.0)]]
        np.testing.assert_allclose(got, want, rtol=F64_RTOL)


def rmse(y_hat, y):
    return jnp.sqrt(jnp.mean((y_hat - y) ** 2))


def centred_linear(w, x):
    return w[0] + w[1] * (x - jnp.mean(x))  # not pointwise: depends on all of x


@pytest.mark.parametrize(
    "model, loss, np_model_, np_loss_",
    [
        (ff.models.linear, rmse, np_model["linear"], lambda yh, y: np.sqrt(np.mean((yh - y) ** 2))),
        (centred_linear, ff.losses.l1, lambda w, x: w[0] + w[1] * (x - x.mean()), np_loss["l1"]),
    ],
    ids=["loss-not-a-mean", "model-not-pointwise"],
)
def test_auto_layout_is_right_for_any_model_and_loss(lecture_xy, model, loss, np_model_, np_loss_):
    x, y = lecture_xy
    a, b = np.linspace(-1, 1, 11), np.linspace(0, 4, 9)
    got = surface.loss_surface(model, loss, x, y, a, b)
    want = brute_force(np_model_, np_loss_, x, y, a, b, np.zeros(2), np.eye(2)[0], np.eye(2)[1])
    np.testing.assert_allclose(got, want, rtol=F64_RTOL, atol=0)
    # Asked to stream, the same model and loss are refused: streaming would give another number.
    with pytest.raises(ff.InputError, match="layout: 'streamed' needs a loss that is a mean"):
        surface.loss_surface(model, loss, x, y, a, b, layout="streamed")


def test_a_clipped_mean_is_not_streamed_on_a_large_grid():
    """The issue's loss, min(mean((a - b)^2), 60), agrees with the per-point stream where no
    point's term reaches 60 (the first chunk's rows, near the fit) and not elsewhere: it is
    judged by what it is, so the whole grid is right."""
    x = np.linspace(-1, 1, 100)
    y = 2 * x + 0.1 * np.cos(7 * x)
    clipped = lambda a, b: jnp.minimum(jnp.mean((a - b) ** 2), 60.0)  # noqa: E731
    a, b = np.linspace(-1, 1, 300), np.linspace(0, 40, 300)
    rt = runtime.defaults(jax.default_backend(), chunk_points=1200)  # 4 rows a call
    got = surface.loss_surface(ff.models.linear, clipped, x, y, a, b, runtime=rt)
    w0, w1 = np.meshgrid(a, b)  # (300, 300)
    want = np.minimum(np.mean((w0[..., None] + w1[..., None] * x - y) ** 2, axis=-1), 60.0)
    np.testing.assert_allclose(got, want, rtol=F64_RTOL, atol=0)


def _np_huber(r):
    return np.where(np.abs(r) < 1, 0.5 * r**2, np.abs(r) - 0.5)


WEIGHTS = np.linspace(0, 1, 100)  # one per data point of the lecture's data
#: (model, loss, numpy model, numpy loss, proven): losses and models whose jaxpr reads as a mean
#: of per-point terms, and some that do not (each of the latter streams to another number).
PER_POINT = {
    "half mse": (ff.models.linear, lambda a, b: 0.5 * jnp.mean((a - b) ** 2), np_model["linear"],
                 lambda yh, y: 0.5 * np.mean((yh - y) ** 2), True),
    "sum over len": (ff.models.linear, lambda a, b: jnp.sum(jnp.abs(a - b)) / a.shape[0],
                     np_model["linear"], np_loss["l1"], True),
    "huber": (ff.models.linear, lambda a, b: jnp.mean(jnp.where(jnp.abs(a - b) < 1, 0.5 * (a - b) ** 2, jnp.abs(a - b) - 0.5)),
              np_model["linear"], lambda yh, y: np.mean(_np_huber(yh - y)), True),
    "matrix model": (lambda w, x: (x[:, None] * w[None, :]).sum(axis=1) + w[0], ff.losses.mse,
                     lambda w, x: (w[0] + w[1]) * x + w[0], np_loss["mse"], True),
    "hinge with a broadcast 0": (ff.models.linear, lambda a, b: jnp.mean(jnp.where(a - b > 0, a - b, 0.0)),
                                 np_model["linear"], lambda yh, y: np.mean(np.maximum(yh - y, 0.0)), True),
    "sum": (ff.models.linear, lambda a, b: jnp.sum((a - b) ** 2), np_model["linear"],
            lambda yh, y: np.sum((yh - y) ** 2), False),
    "mean times n": (ff.models.linear, lambda a, b: jnp.mean((a - b) ** 2 * a.shape[0]),
                     np_model["linear"], lambda yh, y: np.sum((yh - y) ** 2), False),
    "clipped": (ff.models.linear, lambda a, b: jnp.minimum(jnp.mean((a - b) ** 2), 60.0),
                np_model["linear"], lambda yh, y: min(np.mean((yh - y) ** 2), 60.0), False),
    "weighted": (ff.models.linear, lambda a, b: jnp.mean(jnp.linspace(0, 1, a.shape[0]) * (a - b) ** 2),
                 np_model["linear"], lambda yh, y: np.mean(np.linspace(0, 1, len(y)) * (yh - y) ** 2), False),
    "closed-over weights": (ff.models.linear, lambda a, b: jnp.mean(WEIGHTS * (a - b) ** 2),
                            np_model["linear"], lambda yh, y: np.mean(WEIGHTS * (yh - y) ** 2), False),
    "median": (ff.models.linear, lambda a, b: jnp.median(jnp.abs(a - b)), np_model["linear"],
               lambda yh, y: np.median(np.abs(yh - y)), False),
}


@pytest.mark.parametrize("case", PER_POINT)
def test_only_losses_proven_per_point_are_streamed(lecture_xy, case):
    """Each surface equals the numpy loop's; a proven one is streamed, the others refused."""
    from functional_fit.surface import layouts, perpoint

    model, loss, np_model_, np_loss_, proven = PER_POINT[case]
    x, y = lecture_xy
    a, b = np.linspace(-2, 2, 7), np.linspace(0, 5, 5)
    args = ((jnp.asarray(x), jnp.asarray(y)), surface.coords_plane(np.zeros(2)))
    assert perpoint.proven(model, loss, layouts.spec(args)) is proven
    want = brute_force(np_model_, np_loss_, x, y, a, b, np.zeros(2), np.eye(2)[0], np.eye(2)[1])
    for layout in ("auto", "streamed") if proven else ("auto",):
        got = surface.loss_surface(model, loss, x, y, a, b, layout=layout)
        np.testing.assert_allclose(got, want, rtol=F64_RTOL, atol=0)
    if not proven:
        with pytest.raises(ff.InputError, match="layout: 'streamed'"):
            surface.loss_surface(model, loss, x, y, a, b, layout="streamed")


def test_the_toolkits_losses_and_models_are_known_and_proven(lecture_xy):
    """The known pairs stream without reading their jaxpr; the reading proves them too."""
    from functional_fit.surface import layouts, perpoint

    x, y = lecture_xy
    for model, size in ((ff.models.linear, 2), (ff.models.polynomial, 4), (ff.models.sine, 3)):
        for loss in (ff.losses.l1, ff.losses.mse, ff.losses.bce_with_logits):
            args = ((jnp.asarray(x), jnp.asarray(y)), surface.coords_plane(np.zeros(size)))
            assert perpoint.streamable(model, loss, layouts.spec(args))
            assert perpoint.proven(model, loss, layouts.spec(args))


def test_out_and_memmap(lecture_xy, tmp_path):
    x, y = lecture_xy
    a, b = np.linspace(-1, 1, 50), np.linspace(-0.5, 5, 50)
    mm = np.lib.format.open_memmap(tmp_path / "z.npy", mode="w+", dtype=np.float64, shape=(50, 50))
    got = surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b, out=mm)
    assert got is mm
    mm.flush()
    np.testing.assert_array_equal(
        np.load(tmp_path / "z.npy"), surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b)
    )


# --------------------------------------------------------------------------- torch, side by side

PARITY = [  # model, loss, dtype, rtol
    ("linear", "l1", "float64", F64_RTOL),
    ("linear", "mse", "float64", F64_RTOL),
    ("poly", "mse", "float64", F64_RTOL),
    ("poly", "l1", "float64", F64_RTOL),
    ("linear", "l1", "float32", F32_RTOL),
    ("poly", "mse", "float32", F32_RTOL),
]
t_model = {"linear": tm.linear, "poly": tm.polynomial}
t_loss = {"l1": tl.l1, "mse": tl.mse}


@pytest.mark.parametrize("model, loss, dtype, rtol", PARITY)
def test_jax_and_torch_surfaces_agree(lecture_xy, model, loss, dtype, rtol):
    x, y = lecture_xy
    size = 2 if model == "linear" else 6
    w = np.linspace(1.0, -1.0, size)
    plane = surface.random_plane(jnp.asarray(w), seed=3)
    a, b = np.linspace(-1, 1, 21), np.linspace(-2, 2, 17)
    cast = lambda v: np.asarray(v, dtype=dtype)  # noqa: E731
    got = surface.loss_surface(
        ff_model[model], ff_loss[loss], cast(x), cast(y), cast(a), cast(b),
        plane=surface.Plane(*(cast(p) for p in plane)),
    )
    assert got.dtype == np.dtype(dtype)
    common = dict(plane=tuple(cast(p) for p in plane), dtype=dtype)
    for method in tsurface.METHODS:
        want = tsurface.loss_surface(t_model[model], t_loss[loss], x, y, a, b, method=method, **common)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=method)
    loop = tsurface.loss_surface_loop(t_model[model], t_loss[loss], x, y, a[:5], b[:4], **common)
    np.testing.assert_allclose(got[:4, :5], loop, rtol=rtol, atol=0)


# --------------------------------------------------------------------------- exact MSE


@pytest.mark.parametrize("model, size, coords", [("linear", 2, (0, 1)), ("poly", 13, (12, 3))])
def test_exact_mse_surface_equals_brute_force(lecture_xy, model, size, coords):
    x, y = lecture_xy
    base = np.linspace(0.3, -0.2, size)
    a, b = np.linspace(-3, 1, 29), np.linspace(-0.5, 5, 31)
    exact = surface.mse_surface_exact(ff_model[model], x, y, a, b, base=base, coords=coords)
    origin = base.copy()
    origin[list(coords)] = 0
    want = brute_force(np_model[model], np_loss["mse"], x, y, a, b, origin, *np.eye(size)[list(coords)])
    np.testing.assert_allclose(exact, want, rtol=F64_RTOL, atol=0)


def test_exact_mse_on_a_pca_plane_and_refusing_a_nonlinear_model(lecture_xy):
    x, y = lecture_xy
    steps = np.arange(31)[:, None]  # a made-up path of 4 parameters, curving towards its end
    path = np.array([1.0, 2.0, -1.0, 0.5]) * np.exp(-steps / 8) + 0.1 * np.sin(steps / 3)
    pca = surface.pca_plane(path)
    a, b = np.linspace(-1, 2.5, 15), np.linspace(-1, 1, 9)
    exact = surface.mse_surface_exact(ff.models.polynomial, x, y, a, b, plane=pca.plane)
    streamed = surface.loss_surface(ff.models.polynomial, ff.losses.mse, x, y, a, b, plane=pca.plane)
    np.testing.assert_allclose(exact, streamed, rtol=F64_RTOL, atol=0)
    with pytest.raises(ff.InputError, match="linear in its parameters"):
        surface.mse_surface_exact(lambda w, x: w[0] * jnp.exp(w[1] * x), x, y, a, b)


# --------------------------------------------------------------------------- planes


def test_random_plane_is_normalized_per_parameter_and_reproducible():
    w = jnp.array([0.5, -2.0, 0.0, 3.0])
    p = surface.random_plane(w, seed=7)
    assert jnp.array_equal(p.origin, w)
    rms = float(jnp.sqrt(jnp.mean(w**2)))
    size = np.array([0.5, 2.0, rms, 3.0])  # the zero parameter gets the RMS size
    np.testing.assert_allclose(np.abs(p.u), size, rtol=1e-15)
    np.testing.assert_allclose(np.abs(p.v), size, rtol=1e-15)
    assert not (np.array_equal(p.u, p.v) or np.array_equal(p.u, -p.v))
    assert all(jnp.array_equal(s, t) for s, t in zip(p, surface.random_plane(w, seed=7)))
    for seed in range(8):  # two parameters: half of all sign draws are parallel; never returned
        q = surface.random_plane(jnp.zeros(2), seed=seed)
        assert abs(float(jnp.dot(q.u, q.v))) < 2.0  # |u| = |v| = sqrt(2): parallel gives 2
    with pytest.raises(ff.InputError, match="w must have at least 2"):
        surface.random_plane(jnp.zeros(1))


def test_pca_plane_projects_the_path(lecture_xy):
    x, y = lecture_xy
    res = ff.fit.gradient_descent(ff.zeros(2, "float64"), x, y, lr=6.0, steps=50)
    pca = surface.pca_plane(res.path)
    uv = np.stack([pca.plane.u, pca.plane.v])  # (2, 2)
    np.testing.assert_allclose(uv @ uv.T, np.eye(2), atol=1e-14)
    # Two parameters: the plane is the whole space, so the projection loses nothing.
    back = np.asarray(pca.plane.origin) + np.asarray(pca.path) @ uv
    np.testing.assert_allclose(back, res.path, atol=1e-13)
    np.testing.assert_array_equal(pca.path[-1], [0.0, 0.0])
    assert pca.path[0, 0] >= 0 and pca.path[0, 1] >= 0
    assert float(jnp.sum(pca.explained)) == pytest.approx(1.0)
    assert pca.explained[0] >= pca.explained[1]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(a_values=[]), "a_values is empty"),
        (dict(b_values=[[1.0, 2.0]]), "b_values must be 1-D"),
        (dict(a_values=[0.0, np.nan]), "a_values contains a non-finite"),
        (dict(coords=(1, 1)), "coords must be two distinct"),
        (dict(coords=(0, 5), base=np.zeros(2)), "coords must be two distinct indices below 2"),
        (dict(layout="fast"), "layout must be one of"),
        (dict(a_values=np.zeros(2**15 + 1), b_values=np.zeros(2**15)), "larger than MAX_POINTS"),
        (dict(out=np.zeros((3, 3))), "out must be a C-contiguous numpy array of shape"),
        (dict(base=np.zeros(2), plane=surface.coords_plane(jnp.zeros(2))), "base cannot be combined"),
    ],
)
def test_bad_input_names_the_argument(lecture_xy, kwargs, match):
    x, y = lecture_xy
    args = dict(a_values=np.linspace(-1, 1, 4), b_values=np.linspace(0, 1, 3))
    args.update(kwargs)
    a, b = args.pop("a_values"), args.pop("b_values")
    with pytest.raises(ff.InputError, match=match):
        surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b, **args)


def test_float64_without_x64_is_refused(lecture_xy):
    x, y = lecture_xy
    with jax.enable_x64(False):
        with pytest.raises(ff.PrecisionError, match="x is float64"):
            surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, [0.0], [0.0])
        f32 = [np.asarray(v, np.float32) for v in (x, y, [0.0, 1.0], [0.0])]
        z = surface.loss_surface(ff.models.linear, ff.losses.l1, *f32)
        assert z.dtype == np.float32 and z.shape == (1, 2)


# --------------------------------------------------------------------------- the command line


def test_cli_writes_the_surface_and_the_figure(lecture_xy, tmp_path, capsys):
    from functional_fit_cli import main

    out, png = tmp_path / "s.npz", tmp_path / "s.png"
    rc = main(["surface", "--grid", "13x7", "--range=-1:1,-0.5:5", "--out", str(out),
               "--plot", str(png)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "grid 13 x 7 = 91 points" in printed and "done in" in printed
    saved = np.load(out)
    x, y = lecture_xy
    a, b = np.linspace(-1, 1, 13), np.linspace(-0.5, 5, 7)
    np.testing.assert_array_equal(saved["a_values"], a)
    np.testing.assert_allclose(
        saved["losses"], lecture_surface(lambda yh, yy: np.mean(np.abs(yh - yy)), x, y, a, b),
        rtol=F64_RTOL,
    )
    assert saved["path"].shape == (51, 2) and png.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "s.png"]  # no temporary left


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--grid", "0x5"], "--grid needs at least one point"),
        (["--grid", "abc"], "--grid must look like"),
        (["--grid", "100000x100000"], "--grid 100000x100000 asks for 74.5 GiB"),
        (["--range", "1:0,2:3"], "--range needs finite A0 < A1"),
        (["--range", "a:b"], "--range must look like"),
        (["--coords", "0,7", "--model", "poly", "--degree", "3"], "--coords must be two distinct"),
        (["--directions", "up"], "--directions must be one of"),
        (["--exact"], "--exact needs --loss mse"),
        (["--model", "poly", "--degree", "12", "--loss", "mse", "--steps", "200"], "the fit diverged"),
    ],
)
def test_cli_bad_options_fail_in_one_line(argv, match, capsys):
    from functional_fit_cli import main

    grid = [] if "--grid" in argv else ["--grid", "3x2"]  # an option given twice is refused
    assert main(["surface", *grid, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("functional-fit surface: error: ")
    assert match in err


def test_cli_interrupted_write_leaves_no_file(tmp_path, monkeypatch, capsys):
    from functional_fit_cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    assert main(["surface", "--grid", "13x7", "--out", str(tmp_path / "s.npz")]) == 130
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_the_streamed_layout_prefers_512_bit_vectors_on_the_cpu_bit_for_bit(dtype, loss):
    """``stream_options`` (XLA's loops at 512 bits) change the speed, not one bit."""

    x, y = (v.astype(dtype) for v in ff.lecture_data())
    a, b = np.linspace(-1, 1, 70, dtype=dtype), np.linspace(-0.5, 5, 50, dtype=dtype)
    cpu = jax.devices("cpu")
    fast = runtime.defaults("cpu")
    assert ("xla_cpu_prefer_vector_width", 512) in fast.stream_options
    args = (ff.models.linear, getattr(ff.losses, loss), x, y, a, b)
    got = surface.loss_surface(*args, layout="streamed", devices=cpu, runtime=fast)
    want = surface.loss_surface(*args, layout="streamed", devices=cpu,
                                runtime=runtime.defaults("cpu", stream_options=()))
    np.testing.assert_array_equal(got, want)
