"""The lecture's pictures: each figure a function that takes results and returns a Figure.

matplotlib only, through its object API (`matplotlib.figure.Figure`): no pyplot state, so
making a figure opens no window and leaks nothing, and a figure is collected like any other
object. Save one with ``fig.savefig("name.png")``; in a notebook, leave it as a cell's value.

Functions take plain arrays, so they draw results from JAX, from torch, or from anywhere:

  `data`             the raw data (cell 4)
  `fits`             the data with fitted curves (cells 8 and 66)
  `residuals`        residual lines to one fit, with a residual panel below (cells 10, 51, 55)
  `surface`          a loss surface as a contour and a 3-D surface side by side (cells 13, 16)
  `contour_paths`    a contour with optimizer paths and marked points drawn on it (cell 50)
  `path_3d`          a parameter path in 3-D, colored by step (cell 61)
  `path_difference`  JAX against torch: the largest parameter difference at every step
  `sweep`            final loss against learning rate
  `benchmark`        time against grid size, log-log
  `interactive`      a loss surface with paths as one self-contained, rotatable HTML page

The lecture's figure set, which runs fits and surfaces before it draws, is
`comparison.figures.lecture_figures`; ``functional-fit lecture --out DIR`` writes it.

Axis convention for surfaces: ``values`` has shape (len(b_values), len(a_values)), row j and
column i holding the loss at (a_values[i], b_values[j]) -- ``np.meshgrid``'s 'xy' layout, as the
lecture's cell 12 and `functional_fit.surface.loss_surface` make it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.models import curve  # noqa: F401  (a model's curve, under its old name)
from functional_fit.surface import files as _files

#: Size of a figure with one panel, and of one with two side by side, in inches (at the
#: 120 dpi `save` uses: 960 x 600 and 1560 x 660 pixels).
SIZE = (8.0, 5.0)
WIDE = (13.0, 5.5)
DPI = 120

#: The lecture's names of its two linear-model parameters, in order.
LINEAR_AXES = ("intercept w[0]", "slope w[1]")

#: Grid points per side drawn at most; a bigger surface is thinned (see `surface`).
MAX_SIDE = 1000
#: Paths longer than this are drawn as lines without a marker at every step.
MARKED_STEPS = 200
JAX_STYLE = dict(color="white", marker="o", markersize=3, linewidth=1.2)
TORCH_STYLE = dict(color="black", marker="x", markersize=4, linewidth=0.8, linestyle="--")


def _figure(size=SIZE, **kwargs) -> Figure:
    return Figure(figsize=size, layout="constrained", **kwargs)


# --------------------------------------------------------------------------- data and fits


def data(x, y, *, title: str = "The lecture's data") -> Figure:
    """The raw data as points (cell 4).

    Args:
      x, y: (n,) data.
      title: the figure's title.

    Returns:
      A Figure with one axes holding one scatter collection of n points.
    """
    fig = _figure()
    ax = fig.subplots()
    ax.scatter(x, y, s=16, color="tab:blue", label="raw data")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(loc="best")
    return fig


def _draw_curves(ax, curves: Mapping, colors: Mapping | None, ylim=None):
    for i, (label, (cx, cy)) in enumerate(curves.items()):
        color = (colors or {}).get(label, f"C{(i + 1) % 10}")
        ax.plot(cx, cy, label=label, color=color, linewidth=1.8)
    if ylim is not None:
        ax.set_ylim(*ylim)


def _data_ylim(y, margin: float = 0.25):
    """y limits that hold the data with a margin, so a wild curve does not flatten the data."""
    lo, hi = float(np.min(y)), float(np.max(y))
    pad = margin * (hi - lo or 1.0)
    return lo - pad, hi + pad


def fits(x, y, curves: Mapping, *, title: str = "Fits to the lecture's data",
         colors: Mapping | None = None) -> Figure:
    """The data with fitted curves (cells 8 and 66).

    Args:
      x, y: (n,) data.
      curves: label -> (cx, cy), each of shape (m,): a fit evaluated at points cx, e.g. a
        dense grid for a polynomial (`functional_fit.models.curve`).
      title: the figure's title.
      colors: label -> matplotlib color, for curves that keep one color in every figure (the
        lecture's: `comparison.figures.COLORS`); others take matplotlib's cycle.

    Returns:
      A Figure with one axes: a scatter of the data and one line per curve, in order. The y
      range is the data's, so a high-degree fit that leaves it does not flatten the picture.
    """
    fig = _figure()
    ax = fig.subplots()
    ax.scatter(x, y, s=16, color="tab:blue", label="raw data")
    _draw_curves(ax, curves, colors, ylim=_data_ylim(y))
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(loc="best")
    return fig


def residuals(x, y, y_hat, *, curves: Mapping | None = None, title: str = "Residuals",
              colors: Mapping | None = None) -> Figure:
    """Residual lines from each point to a fit, and the residuals in a panel below (cell 10).

    Args:
      x, y: (n,) data.
      y_hat: (n,) the fit at x, to which the residual lines run.
      curves: label -> (cx, cy) fitted curves drawn over the data, as in `fits`.
      title: the figure's title.
      colors: label -> color of the curves, as in `fits`.

    Returns:
      A Figure with two axes sharing x: above, n residual segments (one LineCollection), the
      data and the curves; below, the n residuals y - y_hat and the zero line.
    """
    x, y, y_hat = (np.asarray(a, dtype=np.float64) for a in (x, y, y_hat))
    fig = _figure((8.0, 7.0))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    segments = np.stack([np.stack([x, y], 1), np.stack([x, y_hat], 1)], 1)  # (n, 2, 2)
    top.add_collection(LineCollection(segments, colors="black", linewidths=0.5,
                                      label="residual"))
    top.scatter(x, y, s=16, color="tab:blue", label="raw data", zorder=3)
    _draw_curves(top, curves or {}, colors)
    top.set_ylim(*_data_ylim(np.concatenate([y, y_hat])))
    top.set(ylabel="y", title=title)
    top.legend(loc="best")
    r = y - y_hat  # (n,)
    bottom.scatter(x, r, s=16, color="tab:red", label="residual y - ŷ")
    bottom.axhline(0.0, color="gray", linewidth=1)
    bottom.set(xlabel="x", ylabel="residual")
    bottom.legend(loc="best")
    return fig


# --------------------------------------------------------------------------- surfaces


def _points_3d(ax, points):
    for i, (label, p) in enumerate((points or {}).items()):
        a, b, z = (float(v) for v in p)
        # zorder is honoured because the axes is made with computed_zorder=False: the point
        # stays visible in front of the surface it lies on.
        ax.scatter([a], [b], [z], s=60, color=f"C{(i + 1) % 10}", edgecolors="black",
                   depthshade=False, zorder=10, label=label)


def _points_2d(ax, points):
    for i, (label, p) in enumerate((points or {}).items()):
        ax.scatter([p[0]], [p[1]], s=70, color=f"C{(i + 1) % 10}", edgecolors="black",
                   zorder=4, label=label)


def surface(values, a_values, b_values, *, loss_name: str = "MSE",
            axis_labels=LINEAR_AXES, points: Mapping | None = None, paths: Mapping | None = None,
            levels=30, max_side: int = MAX_SIDE,
            title: str | None = None) -> Figure:  # the figure's options, each a keyword
    """A loss surface as a filled contour and a 3-D surface side by side (cells 13 and 16).

    The lecture labels its 3-D axes 'Slope' on the intercept axis and 'MSE Loss' on the L1
    surface; here both panels use `axis_labels` in order and the z axis names `loss_name`.

    Args:
      values: (len(b_values), len(a_values)) the loss, meshgrid 'xy' layout.
      a_values: (A,) values of the first parameter, along x.
      b_values: (B,) values of the second parameter, along y.
      loss_name: "MSE" or "L1" (any name): the z label is f"{loss_name} loss".
      axis_labels: names of the first and second parameter.
      points: label -> (a, b, loss), marked in both panels (e.g. the optimum).
      paths: label -> (k, 2) optimizer paths in (a, b), drawn on the contour as in
        `contour_paths`.
      levels: contour levels, a count or increasing values.
      max_side: a bigger grid is drawn thinned to every k-th row and column, at most this
        many per side (the 3-D panel draws at most 50 per side in any case).
      title: the figure's title; by default f"{loss_name} loss surface".

    Returns:
      A Figure with a 2-D axes (contour, points, colorbar) and a 3-D axes (surface, points).
    """
    values = np.asarray(values)
    a_values, b_values = np.asarray(a_values), np.asarray(b_values)
    _check_grid(values, a_values, b_values)
    values, a_values, b_values = thin(values, a_values, b_values, max_side)
    values = values.astype(np.float64)
    fig = _figure(WIDE)
    ax2 = fig.add_subplot(1, 2, 1)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d", computed_zorder=False)
    cs = ax2.contourf(a_values, b_values, values, levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=ax2, label=f"{loss_name} loss")
    _draw_paths(ax2, paths or {})
    _points_2d(ax2, {k: v[:2] for k, v in (points or {}).items()})
    ax2.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title="contour",
            xlim=(a_values[0], a_values[-1]), ylim=(b_values[0], b_values[-1]))
    u, v = np.meshgrid(a_values, b_values)  # (B, A) each
    ax3.plot_surface(u, v, values, cmap="viridis", alpha=0.85, linewidth=0)
    _points_3d(ax3, points)
    ax3.set(xlabel=axis_labels[0], ylabel=axis_labels[1], zlabel=f"{loss_name} loss",
            title="surface")
    _few_ticks(ax3)
    if points or paths:
        ax2.legend(loc="upper right")
    fig.suptitle(title or f"{loss_name} loss surface")
    return fig


def _draw_paths(ax, paths: Mapping):
    """Each path (k, 2) as one line of k points and one legend entry, each in its own colour:
    a first and second path (JAX and torch) in styles that stay visible when they coincide,
    more in matplotlib's ten colours, more than ten in colours spread around the hue circle."""
    n = len(paths)
    for i, (label, path) in enumerate(paths.items()):
        path = np.asarray(path)
        color = f"C{i}" if n <= 10 else colormaps["hsv"](i / n)
        style = dict((JAX_STYLE, TORCH_STYLE)[i] if n <= 2 else {"color": color})
        if path.shape[0] > MARKED_STEPS:  # thousands of markers would hide the contour
            style.pop("marker", None)
        ax.plot(path[:, 0], path[:, 1], label=label, **style)


def contour_paths(values, a_values, b_values, paths: Mapping, *, points: Mapping | None = None,
                  loss_name: str = "L1", axis_labels=LINEAR_AXES, levels=30,
                  legend_loc: str = "upper right", max_side: int = MAX_SIDE,
                  title: str | None = None) -> Figure:  # the figure's options, each a keyword
    """Optimizer paths drawn on a loss contour (cell 50).

    Two paths of the same fit (JAX and torch) lie on top of each other when they agree:
    the first is drawn as a white line with dots, the second as a black dashed line with
    crosses, so both stay visible. More paths (several optimizers on the plane of
    `functional_fit.surface.pca_plane` of their list) each get a colour of their own.

    Args:
      values, a_values, b_values: the surface, as in `surface`.
      paths: label -> (k, 2) the path in the plane's coordinates, one row per step.
      points: label -> (a, b) marked points (e.g. the MSE and L1 fits).
      loss_name, axis_labels, levels, max_side: as in `surface`.
      legend_loc: where the legend goes (a matplotlib ``loc``).
      title: the figure's title.

    Returns:
      A Figure with one axes: the filled contour, one line per path with k points each (in
      the order of `paths`, each its own colour and legend entry), and the marked points.
    """
    values = np.asarray(values)
    a_values, b_values = np.asarray(a_values), np.asarray(b_values)
    _check_grid(values, a_values, b_values)
    values, a_values, b_values = thin(values, a_values, b_values, max_side)
    values = values.astype(np.float64)
    fig = _figure()
    ax = fig.subplots()
    cs = ax.contourf(a_values, b_values, values, levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=ax, label=f"{loss_name} loss", format="%.3g")
    _draw_paths(ax, paths)
    _points_2d(ax, points)
    ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1],
           title=title or f"{loss_name} loss with the optimizer's path")
    ax.set_xlim(a_values[0], a_values[-1])
    ax.set_ylim(b_values[0], b_values[-1])
    ax.legend(loc=legend_loc)
    return fig


def path_3d(path, *, other=None, labels=("JAX", "torch"),
            axis_labels=("intercept w[0]", "slope w[1]", "quadratic w[2]"),
            title: str = "Parameter path") -> Figure:
    """A path of three parameters in 3-D, each step a point colored by its time (cell 61).

    Args:
      path: (k, 3) the parameters before the first step and after every step.
      other: optional (k', 3) a second path of the same fit (torch's), drawn as a thin line.
      labels: legend names of `path` and `other`.
      axis_labels: names of the three parameters.
      title: the figure's title.

    Returns:
      A Figure with a 3-D axes holding one scatter of k points whose color array is the step
      number, and, with `other`, one line; and a colorbar.
    """
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 3:
        raise ValueError(f"path must have shape (k, 3), got {path.shape}")
    fig = _figure((8.0, 7.0))
    ax = fig.add_subplot(projection="3d")
    steps = np.arange(path.shape[0])  # (k,)
    sc = ax.scatter(path[:, 0], path[:, 1], path[:, 2], c=steps, cmap="viridis", s=8,
                    depthshade=False, label=labels[0])
    if other is not None:
        other = np.asarray(other, dtype=np.float64)
        ax.plot(other[:, 0], other[:, 1], other[:, 2], color="black", linewidth=0.6,
                label=labels[1])
    fig.colorbar(sc, ax=ax, label="step", shrink=0.6)
    ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1], zlabel=axis_labels[2], title=title)
    _few_ticks(ax)
    ax.legend(loc="upper left")
    return fig


def _few_ticks(ax, n: int = 5):
    """At most `n` ticks per axis of a 3-D axes, so their labels do not run together."""
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(n))


def thin(values, a_values, b_values, max_side: int = MAX_SIDE):
    """At most `max_side` evenly spaced rows and columns, the first and last among them.

    A contour of a 10^4 x 10^4 surface would take minutes and gigabytes to draw and shows no
    more than one of 1000 x 1000 at any printable size.

    Args:
      values: (nb, na) a surface; a_values (na,) and b_values (nb,) its axes.
      max_side: rows and columns kept at most.

    Returns:
      (values (nb', na'), a_values (na',), b_values (nb',)), nb' and na' at most `max_side`.
    """

    def keep(n):
        return np.unique(np.linspace(0, n - 1, min(n, max_side)).round().astype(int))

    ia, ib = keep(a_values.shape[0]), keep(b_values.shape[0])
    return values[np.ix_(ib, ia)], a_values[ia], b_values[ib]


def _check_grid(values, a_values, b_values):
    if values.shape != (b_values.shape[0], a_values.shape[0]):
        raise ValueError(
            f"values must have shape (len(b_values), len(a_values)) = "
            f"({b_values.shape[0]}, {a_values.shape[0]}), got {values.shape}"
        )


# --------------------------------------------------------------------------- JAX vs torch


def path_difference(paths: Mapping, *, eps: float | None = None,
                    title: str = "JAX against torch, step by step") -> Figure:
    """The largest |JAX - torch| over the parameters at every step of every fit.

    Args:
      paths: name -> {"jax": (k, p+1), "torch": (k, p+1)}, as `LectureResult.paths`.
      eps: optional machine epsilon of the parameters' dtype, drawn as a dashed line for scale.
      title: the figure's title.

    Returns:
      A Figure with one log-log axes and one line per fit (k - 1 points: steps 1 .. k-1).
      A difference of exactly 0 leaves a gap, since a log axis has no 0.
    """
    fig = _figure()
    ax = fig.subplots()
    for i, (name, pair) in enumerate(paths.items()):
        j = np.asarray(pair["jax"], dtype=np.float64)
        t = np.asarray(pair["torch"], dtype=np.float64)
        diff = np.max(np.abs(j - t), axis=1)[1:]  # (k-1,) step 0 is the shared start
        diff[diff == 0] = np.nan
        ax.plot(np.arange(1, j.shape[0]), diff, label=name, color=f"C{i}", linewidth=1.2)
    if eps is not None:
        ax.axhline(eps, color="gray", linestyle="--", linewidth=1, label=f"machine ε = {eps:.2g}")
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel="max |JAX - torch| over parameters",
           title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best")
    return fig


# --------------------------------------------------------------------------- sweeps and timings


def _series_style(i: int) -> dict:
    """Color, line and marker of series i: series that coincide (JAX and torch) stay visible."""
    return dict(color=f"C{i % 10}", linestyle=("-", "--", ":", "-.")[i % 4],
                marker="oxs^v"[i % 5], markersize=4 + (i % 2))


def _loss_axis(ax, finite) -> None:
    """A loss axis that shows no loss that is not there: without any finite loss (every run
    diverged), an unlabelled 0..1 axis that says so; with non-negative losses, from 0 at least
    (matplotlib's margin would reach below it)."""
    if not finite.size:
        ax.set_ylim(0.0, 1.0)
        ax.set_yticks([])
        ax.text(0.5, 0.5, "every run diverged: no finite loss", transform=ax.transAxes,
                ha="center", va="center")
    elif finite.min() >= 0 and ax.get_yscale() == "linear":
        ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]))


def sweep(lrs, losses: Mapping, *, loss_name: str = "L1",
          title: str = "Final loss against learning rate") -> Figure:
    """Final loss against learning rate, one line per fit, framework or seed (log-scale lr).

    Args:
      lrs: (m,) learning rates shared by every line, or label -> (m_label,) per line.
      losses: label -> final loss at each learning rate. A non-finite value (a diverged fit)
        leaves a gap in its line and is marked with a red x at the top of the axes.
      loss_name: the loss's name, for the y label.
      title: the figure's title.

    Returns:
      A Figure with one axes, x on a log scale, one line per entry of `losses` (plus one
      "diverged" series of markers when any fit diverged).
    """
    fig = _figure()
    ax = fig.subplots()
    diverged = []
    for i, (label, ls) in enumerate(losses.items()):
        x = np.asarray(lrs[label] if isinstance(lrs, Mapping) else lrs, dtype=np.float64)
        ls = np.asarray(ls, dtype=np.float64)
        if ls.shape != x.shape:
            raise ValueError(f"losses[{label!r}] must have shape {x.shape}, got {ls.shape}")
        ok = np.isfinite(ls)
        diverged.extend(x[~ok].tolist())
        ax.plot(x, np.where(ok, ls, np.nan), label=label, **_series_style(i))
    if diverged:  # no finite loss to draw: mark the learning rate along the top edge
        ax.plot(diverged, np.full(len(diverged), 0.97), "x", color="red", label="diverged",
                transform=ax.get_xaxis_transform(), clip_on=False)
    ax.set(xscale="log", xlabel="learning rate", ylabel=f"final {loss_name} loss", title=title)
    finite = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in losses.values()])
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_yscale("log")  # near-divergent runs would flatten the rest
    _loss_axis(ax, finite)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best")
    return fig


def sweep_result(results, *, loss_name: str = "L1",
                 title: str = "Final loss against learning rate") -> Figure:
    """`sweep` of a `functional_fit.sweep.SweepResult`: one line per (seed, start) of the runs.

    Args:
      results: a `SweepResult`, or label -> `SweepResult` (one per optimizer, say); the labels
        prefix the lines' names. Diverged runs (``diverged``) are drawn as diverged.
      loss_name, title: as in `sweep`.
    """
    from functional_fit.sweep import NO_SEED, SweepResult

    if isinstance(results, SweepResult):
        results = {"": results}
    lrs, losses = {}, {}
    for label, res in results.items():
        lr, seed, init = (np.asarray(a) for a in (res.lr, res.seed, res.init))
        loss = np.where(np.asarray(res.diverged), np.inf, np.asarray(res.loss, dtype=np.float64))
        keys = sorted(set(zip(seed.tolist(), init.tolist())))
        for s, i in keys:
            rows = (seed == s) & (init == i)
            order = np.argsort(lr[rows])
            name = [label] if label else []
            if s != NO_SEED and len({k[0] for k in keys}) > 1:
                name.append(f"seed {s}")
            if len({k[1] for k in keys}) > 1:
                name.append(f"start {i}")
            name = ", ".join(name) or "final loss"
            lrs[name], losses[name] = lr[rows][order], loss[rows][order]
    return sweep(lrs, losses, loss_name=loss_name, title=title)


def benchmark(sizes, times: Mapping, *, xlabel: str = "grid points",
              title: str = "Time against grid size") -> Figure:
    """Time against problem size, log-log, one line per implementation.

    Args:
      sizes: (m,) problem sizes (e.g. grid points of a surface).
      times: label -> (m,) seconds; NaN where an implementation was not run at that size.
      xlabel: what the sizes count.
      title: the figure's title.

    Returns:
      A Figure with one log-log axes and one line of m points per implementation.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    fig = _figure()
    ax = fig.subplots()
    for i, (label, ts) in enumerate(times.items()):
        ts = np.asarray(ts, dtype=np.float64)
        if ts.shape != sizes.shape:
            raise ValueError(f"times[{label!r}] must have shape {sizes.shape}, got {ts.shape}")
        ax.plot(sizes, ts, label=label, **_series_style(i))
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="time (s)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    return fig


def save(fig: Figure, path, *, dpi: int = DPI) -> None:
    """Write `fig` to `path` at `dpi` (the format from the suffix, e.g. .png).

    A plain ``fig.savefig``; the command line writes into a temporary file and renames it
    (`functional_fit_cli.files.atomic_path`), so that no half-written figure is left.
    """
    fig.savefig(path, dpi=dpi)


__all__ = [
    "atlas",
    "benchmark",
    "contour_paths",
    "curve",
    "data",
    "fits",
    "path_3d",
    "path_difference",
    "residuals",
    "save",
    "surface",
    "sweep",
    "thin",
]


# --------------------------------------------------------------------------- optimizer atlas


def atlas(rows, *, tolerance: float = 1e-9, floor: float = 1e-17,
          title: str = "torch.optim in optax: naive translation vs verified translation",
          xlabel: str = "relative difference from torch.optim, final parameters") -> Figure:
    """Per torch optimizer setting (or scheduler), how far the name-for-name optax port and the
    verified translation (`functional_fit.optim`) end from torch, as two log-scale bars.

    Args:
      rows: sequence of (label, naive, verified): the torch setting and the two relative
        differences (scripts/atlas.py measures them; the README's atlas lists them). naive is
        None where optax has no function of that name: that row has one bar.
      tolerance: drawn as a dashed line (the float64 agreement bound of the tests).
      floor: differences of exactly 0 are drawn at this value.
      title, xlabel: the axes' texts.

    Returns:
      The Figure, one horizontal pair of bars per row (one bar where naive is None).
    """
    labels = [r[0] for r in rows]
    has = np.array([r[1] is not None for r in rows], dtype=bool)  # (rows,)
    naive = np.maximum([r[1] for r in rows if r[1] is not None], floor)  # (rows with one,)
    verified = np.maximum([r[2] for r in rows], floor)  # (rows,)
    y = np.arange(len(rows))  # (rows,)
    fig = _figure((SIZE[0] + 2.0, 0.45 * len(rows) + 1.5))
    ax = fig.add_subplot()
    ax.barh(y[has] - 0.2, naive, height=0.4, color="tab:red", label="name-for-name optax call")
    ax.barh(y + 0.2, verified, height=0.4, color="tab:green", label="functional_fit.optim")
    ax.axvline(tolerance, color="black", linestyle="--", linewidth=0.8,
               label=f"tolerance {tolerance:g}")
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 2.0)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return fig


# --------------------------------------------------------------------------- an interactive page

#: Grid points per side that `interactive` draws at most; a bigger surface is thinned (`thin`),
#: which keeps the page a few MB and quick to rotate.
PAGE_SIDE = 500
#: The colours of `interactive`'s paths, in order (D3's, red first: it stands out on viridis).
PATH_COLORS = ("#d62728", "#ff7f0e", "#e377c2", "#17becf", "#8c564b", "#bcbd22", "#1f77b4",
               "#2ca02c", "#9467bd", "#7f7f7f")


def interactive(path, a, b, z, paths: Mapping | None = None, *, title: str = "Loss surface",
                loss_name: str = "loss", axes=("a", "b")) -> None:
    """Write a loss surface, and paths on it, as one self-contained HTML page.

    The page holds a plotly 3-D surface with its contours drawn on it and projected below,
    which the mouse rotates and zooms, beside a 2-D contour map of the same surface; each path
    is one colour and one legend entry, a 3-D line on the surface and a line on the map.
    plotly's JavaScript is inlined and MathJax left out: the page loads nothing from the
    network and opens offline. Needs the ``plotly`` package (imported here).

    Non-finite losses (diverged points) are left out of the drawing: gaps in the surface. A
    grid larger than `PAGE_SIDE` points on a side is drawn thinned to that (`thin`), and the
    paths' heights are read from the surface drawn, so that they lie on it.

    Args:
      path: the .html file to write (replaced if it exists); its folder must exist.
      a: (na,) the grid's x values, strictly increasing, na >= 2.
      b: (nb,) its y values, strictly increasing, nb >= 2.
      z: (nb, na) the losses, row j at b[j] and column i at a[i] (as `surface.loss_surface`
        returns them).
      paths: name -> (T, 2) points (a, b), drawn at the surface's height there (interpolated
        bilinearly; a gap where a point lies outside the grid), or (T, 3) points (a, b, loss).
      title: the page's title.
      loss_name: the loss's name, on the z axis and the colour bar.
      axes: the names of a and b, on the axes.

    Returns:
      None.
    """
    path = _files.output_path("path", path)
    a, b, z = _files.grid(a, b, z, least=2)
    if not np.isfinite(z).any():
        raise InputError("z has no finite value: nothing to draw")
    z, a, b = thin(np.where(np.isfinite(z), z, np.nan), a, b, PAGE_SIDE)  # plotly leaves nan out
    lines = _path_points(paths, a, b, z)
    names = [_text(n, v) for n, v in (("title", title), ("loss_name", loss_name))]
    labels = _axis_names(axes)
    page = _page(a, b, z, lines, names[0], names[1], labels)
    with _files.atomic_output(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")


def _text(name: str, value) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {value!r}")
    return value


def _axis_names(axes) -> tuple[str, str]:
    if isinstance(axes, str) or not isinstance(axes, Sequence) or len(axes) != 2:
        raise InputError(f"axes must be two names (of a and of b), got {axes!r}")
    return _text("axes[0]", axes[0]), _text("axes[1]", axes[1])


def _path_points(paths, a, b, z) -> dict:
    """The paths checked, as name -> (T, 3) points (a, b, height)."""
    if paths is None:
        return {}
    if not isinstance(paths, Mapping):
        raise InputError(f"paths must map names to (T, 2) arrays, got {type(paths).__name__}")
    lines = {}
    for name, points in paths.items():
        label = f"paths[{name!r}]"
        if not isinstance(name, str):
            raise InputError(f"{label}: a path's name must be a string")
        points = _checks.array(label, points, ndims=(2,), dtype=np.float64)
        if points.shape[1] not in (2, 3):
            raise InputError(f"{label} must have shape (T, 2) or (T, 3), got {points.shape}")
        if points.shape[1] == 2:
            points = np.concatenate([points, surface_at(a, b, z, points)[:, None]], axis=1)
        lines[name] = points  # (T, 3)
    return lines


def surface_at(a, b, z, points) -> np.ndarray:
    """The surface z (nb, na) over a (na,) x b (nb,), interpolated bilinearly at the (T, 2)
    points (a, b): (T,), nan at points outside the grid.

    Examples:
      >>> a, b = np.array([0.0, 1.0]), np.array([0.0, 2.0])
      >>> surface_at(a, b, a[None, :] + b[:, None], np.array([[0.5, 1.0], [2.0, 0.0]]))
      array([1.5, nan])
    """
    pa, pb = points[:, 0], points[:, 1]  # (T,) each
    i = np.clip(np.searchsorted(a, pa, side="right") - 1, 0, a.shape[0] - 2)  # (T,)
    j = np.clip(np.searchsorted(b, pb, side="right") - 1, 0, b.shape[0] - 2)  # (T,)
    ta = (pa - a[i]) / (a[i + 1] - a[i])  # (T,)
    tb = (pb - b[j]) / (b[j + 1] - b[j])  # (T,)
    low = (1 - ta) * z[j, i] + ta * z[j, i + 1]  # (T,) along a, at b[j]
    high = (1 - ta) * z[j + 1, i] + ta * z[j + 1, i + 1]  # (T,) along a, at b[j + 1]
    inside = (pa >= a[0]) & (pa <= a[-1]) & (pb >= b[0]) & (pb <= b[-1])
    return np.where(inside, (1 - tb) * low + tb * high, np.nan)


def _page(a, b, z, lines: dict, title: str, loss_name: str, labels) -> str:
    """The HTML page of `interactive`: a 3-D surface beside a contour map, paths on both."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4],
                        specs=[[{"type": "scene"}, {"type": "xy"}]])
    contours = dict(show=True, usecolormap=True, project_z=True)
    scale = dict(colorscale="Viridis", cmin=np.nanmin(z), cmax=np.nanmax(z))
    fig.add_trace(go.Surface(x=a, y=b, z=z, contours_z=contours, name=loss_name,
                             colorbar=dict(title=loss_name, x=-0.08), **scale), row=1, col=1)
    fig.add_trace(go.Contour(x=a, y=b, z=z, colorscale="Viridis", zmin=scale["cmin"],
                             zmax=scale["cmax"], showscale=False, name=loss_name), row=1, col=2)
    for k, (name, points) in enumerate(lines.items()):
        color = PATH_COLORS[k % len(PATH_COLORS)]
        fig.add_trace(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2],
                                   mode="lines", line=dict(color=color, width=6), name=name,
                                   legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=points[:, 0], y=points[:, 1], mode="lines",
                                 line=dict(color=color, width=2), name=name, legendgroup=name,
                                 showlegend=False), row=1, col=2)
    fig.update_layout(
        title=title, height=650,
        scene=dict(xaxis_title=labels[0], yaxis_title=labels[1], zaxis_title=loss_name),
        xaxis=dict(title=labels[0]), yaxis=dict(title=labels[1]),
        legend=dict(orientation="h", y=-0.05))
    page = fig.to_html(include_plotlyjs=True, include_mathjax=False, full_html=True,
                       div_id="landscape", config={"displaylogo": False})
    return page.replace("<head>", f"<head><title>{html.escape(title)}</title>", 1)
