"""Several optimizers on one plane: the figures draw each path in its own colour with a legend
entry, and ``functional-fit surface --optimizer gd,adam`` fits each, takes the PCA plane of all
their paths and saves each path."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

import functional_fit as ff
from functional_fit import losses, models, plot
from functional_fit_cli import main


def _path_lines(ax, labels):
    """The axes' lines of `labels`, in order, each found once."""
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert len(lines) == len(ax.get_lines())  # no label twice
    return [lines[label] for label in labels]


@pytest.mark.parametrize("count", [2, 3, 12])
def test_each_path_has_its_own_colour_and_one_legend_entry(count):
    a, b = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
    values = np.add.outer(b**2, a**2)  # (4, 5)
    t = np.linspace(0, 1, 6)[:, None]  # (6, 1)
    paths = {f"optimizer {k}": np.hstack([t, t * k / count]) for k in range(count)}
    fig = plot.contour_paths(values, a, b, paths, points={"end": (0.0, 0.0)})
    ax = fig.axes[0]
    lines = _path_lines(ax, list(paths))
    colours = [to_rgba(ln.get_color()) for ln in lines]
    assert len(set(colours)) == count
    for line, path in zip(lines, paths.values()):
        np.testing.assert_array_equal(line.get_xydata(), path)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == [*paths, "end"]
    both = plot.surface(values, a, b, paths=paths)
    assert [ln.get_label() for ln in both.axes[0].get_lines()] == list(paths)


def _figure_spy(monkeypatch):
    """The figures the command saves, in order."""
    saved = []
    real = plot.save

    def spy(fig, path):
        saved.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plot, "save", spy)
    return saved


def test_cli_puts_several_optimizers_on_the_plane_of_their_paths(tmp_path, lecture_xy,
                                                                  monkeypatch, capsys):
    x, y = lecture_xy
    out, png = tmp_path / "s.npz", tmp_path / "s.png"
    figures = _figure_spy(monkeypatch)
    assert main(["surface", "--grid", "9x7", "--directions", "pca", "--optimizer", "gd,adam",
                 "--lr", "6,0.1", "--steps", "20", "--epochs", "3", "--out", str(out),
                 "--plot", str(png)]) == 0
    assert "final losses: gd (lr 6)" in capsys.readouterr().out
    saved = np.load(out)
    assert list(saved["optimizers"]) == ["gd", "adam"] and list(saved["lrs"]) == [6.0, 0.1]
    w0 = np.zeros(2)
    gd = np.asarray(ff.fit.gradient_descent(w0, x, y, lr=6.0, steps=20).path)  # (21, 2)
    adam = np.asarray(ff.fit.adam_sgd(w0, x, y, ff.data.batch_order(100, 3), lr=0.1).path)
    np.testing.assert_array_equal(saved["path_gd"], gd)
    np.testing.assert_array_equal(saved["path_adam"], adam)
    # The plane: numpy's SVD of both paths' displacements from gd's end.
    d = np.vstack([gd - gd[-1], adam - gd[-1]])  # (52, 2)
    _, _, vt = np.linalg.svd(d)
    uv = vt[:2] * np.where(d[0] @ vt[:2].T < 0, -1.0, 1.0)[:, None]  # (2, 2)
    np.testing.assert_allclose(np.stack([saved["u"], saved["v"]]), uv, atol=1e-12)
    np.testing.assert_array_equal(saved["origin"], gd[-1])
    for name, path in (("gd", gd), ("adam", adam)):
        np.testing.assert_allclose(saved[f"path_on_plane_{name}"], (path - gd[-1]) @ uv.T,
                                   atol=1e-10)
    for j, i in ((0, 0), (3, 4), (6, 8)):  # the surface at a few points, from its definition
        w = saved["origin"] + saved["a_values"][i] * saved["u"] + saved["b_values"][j] * saved["v"]
        want = losses.l1(models.linear(w, x), y)
        np.testing.assert_allclose(saved["losses"][j, i], want, rtol=1e-12)
    ax = figures[0].axes[0]
    lines = _path_lines(ax, ["gd (lr 6)", "adam (lr 0.1)"])
    assert to_rgba(lines[0].get_color()) != to_rgba(lines[1].get_color())
    assert lines[1].get_xydata().shape == (31, 2)


@pytest.mark.parametrize("argv, match", [
    (["--optimizer", "gd,nope"], "--optimizer must be one of"),
    (["--optimizer", "gd,adam,gd"], "--optimizer names gd more than once"),
    (["--optimizer", "gd,adam", "--lr", "1,2,3"], "one per --optimizer (2)"),
    (["--optimizer", "gd,adam", "--lr", "1,x"], "--lr must be numbers"),
    (["--optimizer", "gd,adam", "--lr", "1,0"], "--lr must be positive"),
    (["--epochs", "3"], "--epochs applies to the minibatch optimizers"),
    (["--optimizer", "adam", "--steps", "3"], "--steps applies to full-batch optimizers"),
    (["--optimizer", "gd,sgd", "--epochs", "0"], "--epochs"),
])
def test_cli_refuses_bad_optimizer_lists_in_one_line(argv, match, capsys):
    assert main(["surface", "--grid", "3x2", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("functional-fit surface: error: ")
    assert match in err
