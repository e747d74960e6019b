"""The lecture's figures: what each Figure holds, and the PNG files the CLI writes.

Figures are inspected as objects (axes, lines, collections, labels, titles), not as pixels:
a path drawn with the wrong number of points or a surface with swapped axis labels fails here.
"""

import json

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

import functional_fit as ff
from functional_fit import plot
from comparison import figures as lecture_figures, lecture

#: A smaller data set than the lecture's keeps the torch loops short; every step still runs.
N = 40
#: The figures `lecture_figures` makes when every step ran, in order.
FIGURES = [
    "data", "ols_fit", "ols_residuals", "mse_surface", "l1_surface", "gd_abs_linear_path",
    "gd_abs_linear_residuals", "gd_abs_quad_residuals", "sgd_abs_quad_path", "fits",
    "adam_abs_poly12_pca", "parity",
]
#: Smallest and largest sensible PNG size, in pixels per side.
MIN_PX, MAX_PX = 600, 2500


@pytest.fixture(scope="module")
def result():
    x, y = ff.lecture_data(n=N)
    return lecture.run(x, y, dtype="float64")


@pytest.fixture(scope="module")
def figures(result):
    return lecture_figures.lecture_figures(result)


def _line(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


def _title(fig):
    return fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()


def test_every_lecture_figure_is_made_and_titled(figures):
    assert list(figures) == FIGURES
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        assert _title(fig), f"{name} has no title"
        w, h = fig.get_size_inches() * plot.DPI
        assert MIN_PX <= w <= MAX_PX and MIN_PX // 2 <= h <= MAX_PX, name


def test_data_figure_holds_every_point(figures, result):
    (ax,) = figures["data"].axes
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_array_equal(points.get_offsets(), np.stack([result.x, result.y], 1))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")


def test_fits_figure_has_every_fit_the_degree_12_on_a_dense_grid(figures):
    (ax,) = figures["fits"].axes
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["analytic MSE", "GD abs", "GD quad abs", "SGD quad abs", "Adam quad abs",
                      "Adam degree-12 abs"]
    assert _line(ax, "Adam degree-12 abs").get_xydata().shape == (1000, 2)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["raw data", *labels]


@pytest.mark.parametrize("name, fit, curves", [
    ("ols_residuals", "ols", 1),
    ("gd_abs_linear_residuals", "gd_abs_linear", 2),
    ("gd_abs_quad_residuals", "gd_abs_quad", 3),
])
def test_residual_figures(figures, result, name, fit, curves):
    top, bottom = figures[name].axes
    assert top.get_shared_x_axes().joined(top, bottom)
    (segments,) = [c for c in top.collections if isinstance(c, LineCollection)]
    assert len(segments.get_segments()) == N
    assert len(top.get_lines()) == curves
    (res,) = [c for c in bottom.collections if isinstance(c, PathCollection)]
    r = res.get_offsets()[:, 1]
    w = np.asarray(result.steps[fit]["jax"]["params"])
    y_hat = np.polynomial.polynomial.polyval(result.x, w)
    np.testing.assert_allclose(r, result.y - y_hat, atol=1e-9)
    assert (top.get_ylabel(), bottom.get_ylabel(), bottom.get_xlabel()) == ("y", "residual", "x")


@pytest.mark.parametrize("name, loss", [("mse_surface", "MSE"), ("l1_surface", "L1")])
def test_surface_figures_label_their_axes_correctly(figures, name, loss):
    fig = figures[name]
    contour, surf = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert surf.name == "3d" and contour.name == "rectilinear"
    for ax in (contour, surf):  # the lecture put 'Slope' on its 3-D intercept axis
        assert "intercept" in ax.get_xlabel() and "slope" in ax.get_ylabel()
    assert surf.get_zlabel() == f"{loss} loss"  # the lecture said 'MSE Loss' on the L1 surface
    assert surf.collections, "no surface drawn"
    assert "analytic MSE fit" in [t.get_text() for t in contour.get_legend().get_texts()]


def test_l1_surface_marks_its_grid_minimum_and_the_mse_fit(figures, result):
    contour = figures["l1_surface"].axes[0]
    marks = {c.get_label(): c.get_offsets()[0] for c in contour.collections
             if isinstance(c, PathCollection)}
    np.testing.assert_allclose(marks["analytic MSE fit"], result.steps["ols"]["jax"]["params"])
    assert "L1 minimum on the grid" in marks


@pytest.mark.parametrize("name, fit, label", [
    ("gd_abs_linear_path", "gd_abs_linear", "GD path"),
    ("adam_abs_poly12_pca", "adam_abs_poly12", "Adam path"),
])
def test_paths_are_drawn_whole_jax_and_torch(figures, result, name, fit, label):
    ax = figures[name].axes[0]
    for side in ("jax", "torch"):
        line = _line(ax, f"{label}, {'JAX' if side == 'jax' else 'torch'}")
        assert line.get_xydata().shape == (result.paths[fit][side].shape[0], 2)
    if fit == "gd_abs_linear":  # drawn in parameter coordinates: the path itself
        np.testing.assert_array_equal(_line(ax, "GD path, JAX").get_xydata(),
                                      result.paths[fit]["jax"])
    else:  # drawn on the plane through its last point: it ends at the origin
        np.testing.assert_allclose(_line(ax, "Adam path, JAX").get_xydata()[-1], 0, atol=1e-12)


def test_sgd_path_in_3d_is_colored_by_step(figures, result):
    ax = [a for a in figures["sgd_abs_quad_path"].axes if a.name == "3d"][0]
    (points,) = ax.collections
    k = result.paths["sgd_abs_quad"]["jax"].shape[0]
    np.testing.assert_array_equal(points.get_array(), np.arange(k))
    assert ax.get_zlabel().startswith("quadratic")


def test_parity_figure_has_one_line_per_fit(figures, result):
    (ax,) = [a for a in figures["parity"].axes]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for name, pair in result.paths.items():
        assert lines[name].get_xydata().shape == (pair["jax"].shape[0] - 1, 2)
    assert ax.get_yscale() == "log"


def test_figures_of_a_partial_lecture(lecture_xy):
    res = lecture.run(*lecture_xy, dtype="float64", steps=("ols",))
    assert list(lecture_figures.lecture_figures(res, grid=8)) == [
        "data", "ols_fit", "ols_residuals", "mse_surface", "l1_surface"]


def test_sweep_and_benchmark_figures():
    lrs = np.geomspace(1e-3, 1, 7)
    fig = plot.sweep(lrs, {"JAX": np.linspace(2, 1, 7), "torch": np.r_[np.linspace(2, 1, 6), np.inf]})
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    jax_line, torch_line, diverged = ax.get_lines()
    assert jax_line.get_xydata().shape == torch_line.get_xydata().shape == (7, 2)
    assert np.isnan(torch_line.get_ydata()[-1])  # the diverged fit leaves a gap ...
    assert diverged.get_xdata().tolist() == [lrs[-1]]  # ... and is marked at its lr
    assert ax.get_legend_handles_labels()[1] == ["JAX", "torch", "diverged"]
    fig = plot.benchmark([2500, 10**6], {"functional_fit": [1e-3, 1e-2], "loop": [1.0, np.nan]})
    (ax,) = fig.axes
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_ylabel() == "time (s)" and len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="shape"):
        plot.benchmark([1, 2], {"a": [1.0]})


def test_a_sweep_plot_never_shows_a_negative_loss_axis():
    """Every run diverged: no loss to draw, and an axis that says so, not -0.05..0.05; losses
    near 0 on a linear axis start the axis at 0, not below it."""
    lrs = np.geomspace(1e-3, 1, 4)
    fig = plot.sweep(lrs, {"JAX": np.full(4, np.inf), "torch": np.full(4, np.nan)})
    (ax,) = fig.axes
    assert ax.get_ylim() == (0.0, 1.0) and len(ax.get_yticks()) == 0
    assert "every run diverged" in [t.get_text() for t in ax.texts][0]
    assert ax.get_lines()[-1].get_xdata().tolist() == [*lrs, *lrs]  # each marked at its lr
    fig = plot.sweep(lrs, {"JAX": [0.01, 0.02, 0.5, 1.0]})
    (ax,) = fig.axes
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0.0


def test_surface_refuses_a_transposed_grid():
    with pytest.raises(ValueError, match=r"len\(b_values\), len\(a_values\)"):
        plot.surface(np.zeros((3, 4)), np.arange(3), np.arange(4))


def test_cli_writes_results_and_every_figure_as_png(tmp_path, result, capsys, monkeypatch):
    from PIL import Image

    from functional_fit_cli import main

    # The lecture itself is tested elsewhere; here it is the module's result, run once.
    monkeypatch.setattr(lecture_figures, "run_with_figures", lambda *args, **kwargs: (
        result, {n: lecture_figures.png(f) for n, f in lecture_figures.lecture_figures(result).items()}))
    out = tmp_path / "out"
    assert main(["lecture", "--n", str(N), "--dtype", "float64", "--out", str(out)]) == 0
    assert "12 figures" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["dtype"] == "float64"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(f"{name}.png" for name in FIGURES)
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            w, h = im.size
        assert MIN_PX <= w <= MAX_PX and MIN_PX // 2 <= h <= MAX_PX, (name, w, h)
    assert sorted(p.name for p in out.iterdir()) == sorted([*pngs, "results.json", "index.html",
                                                            "manifest.json"])  # no temp files


def test_a_big_surface_is_drawn_thinned():
    a, b = np.linspace(0, 1, 3001), np.linspace(0, 2, 2501)
    values = a[None, :] + b[:, None]  # (2501, 3001)
    fig = plot.surface(values, a, b, loss_name="L1", max_side=1000)
    contour = fig.axes[0]
    assert contour.get_xlim() == (0.0, 1.0) and contour.get_ylim() == (0.0, 2.0)  # whole range
    (surf,) = [ax for ax in fig.axes if ax.name == "3d"]
    assert surf.get_zlabel() == "L1 loss"
    v, ta, tb = plot.thin(values, a, b, 1000)
    assert v.shape == (1000, 1000) and (ta[-1], tb[-1]) == (1.0, 2.0)
    np.testing.assert_array_equal(v, ta[None, :] + tb[:, None])


def test_surface_draws_a_path_on_its_contour_within_the_grid():
    a, b = np.linspace(-1, 1, 20), np.linspace(0, 4, 30)
    values = a[None, :] ** 2 + (b[:, None] - 2) ** 2  # (30, 20)
    path = np.stack([np.linspace(-3, 0, 11), np.linspace(0, 2, 11)], 1)  # starts off the grid
    fig = plot.surface(values, a, b, paths={"GD path": path}, points={"end": (0.0, 2.0, 0.0)})
    contour = fig.axes[0]
    np.testing.assert_array_equal(_line(contour, "GD path").get_xydata(), path)
    assert contour.get_xlim() == (-1.0, 1.0) and contour.get_ylim() == (0.0, 4.0)
