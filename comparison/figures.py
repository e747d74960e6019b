"""The lecture's figure set: fits and surfaces computed, then drawn by `functional_fit.plot`.

This is the comparison layer: `lecture_figures` takes a `comparison.lecture.run` result
(both frameworks' numbers and paths), computes the surfaces the lecture draws with
`functional_fit.surface`, and draws every figure with `functional_fit.plot`, which only draws
the arrays it is given.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from functional_fit import losses as _losses, models as _models, registry
from functional_fit.plot import (DPI, contour_paths, data, fits, path_3d, path_difference,
                                 residuals, surface)
from functional_fit.precision import require
from functional_fit.surface import loss_surface, pca_plane
from comparison import background, lecture
from comparison.lecture import FITS


def _surface(model, loss, x, y, a_values, b_values, *, plane=None):
    """`functional_fit.surface.loss_surface` for the lecture's small grids.

    ``layout="vmap"``: on a 50 x 50 grid the plain layout compiles in about a second, where the
    streamed one, built for big grids, takes far longer to compile for the degree-12 model.
    """
    return loss_surface(model, loss, x, y, a_values, b_values, plane=plane, layout="vmap")


def _span(lo, hi, margin=0.15):
    pad = margin * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _quantile_levels(values, n=30):
    levels = np.unique(np.quantile(values, np.linspace(0, 1, n)))
    return levels if levels.size >= 2 else n


#: One color per optimizer, the same in every figure.
COLORS = {
    "analytic MSE": "tab:orange",
    "GD abs": "tab:green",
    "GD quad abs": "tab:red",
    "SGD quad abs": "tab:purple",
    "Adam quad abs": "tab:brown",
    "Adam degree-12 abs": "tab:pink",
}

#: The fitting steps' labels in the figures, in the lecture's order.
LABELS = {
    "gd_abs_linear": "GD abs",
    "gd_abs_quad": "GD quad abs",
    "sgd_abs_quad": "SGD quad abs",
    "adam_abs_quad": "Adam quad abs",
    "adam_abs_poly12": "Adam degree-12 abs",
}

#: Grid points per side of the lecture's surfaces (cells 12, 15, 50).
GRID = 50


#: Every figure of `lecture_figures`, in the lecture's order.
ORDER = ("data", "ols_fit", "ols_residuals", "mse_surface", "l1_surface", "gd_abs_linear_path",
         "gd_abs_linear_residuals", "gd_abs_quad_residuals", "sgd_abs_quad_path", "fits",
         "adam_abs_poly12_pca", "parity")
#: The figures that draw only JAX's results; the others show torch's paths too.
JAX_ONLY = ("data", "ols_fit", "ols_residuals", "mse_surface", "l1_surface",
            "gd_abs_linear_residuals", "gd_abs_quad_residuals", "fits")
#: Those of them that `run_with_figures` draws in its second process while torch's loops run
#: (about half of the drawing, the two 3-D surfaces with it); the first draws the rest after
#: the loops.
SECOND_PROCESS = ("ols_residuals", "mse_surface", "l1_surface", "gd_abs_linear_residuals")


class _Lecture(NamedTuple):
    """What the lecture's figures are drawn from."""

    result: Any  # the `comparison.lecture.LectureResult`
    x: np.ndarray  # (n,) float64
    y: np.ndarray  # (n,) float64
    grid: int  # points per side of each surface
    curves: dict  # label -> (cx, cy): the analytic line and every fit, in the lecture's order

    def ran(self, step: str) -> bool:
        return step in self.result.steps

    def params(self, step: str) -> np.ndarray:
        """JAX's final parameters of `step`, (p+1,) float64."""
        return np.asarray(self.result.steps[step]["jax"]["params"], dtype=np.float64)

    def fitted(self, step: str, model) -> np.ndarray:
        """`model` at the data with `step`'s parameters, (n,)."""
        return np.asarray(model(jnp.asarray(self.params(step)), jnp.asarray(self.x)))

    def some_curves(self, *labels) -> dict:
        return {k: v for k, v in self.curves.items() if k in labels}


def _curves(result, x) -> dict:
    """label -> (cx, cy) of the analytic line and of every fit that ran, in the lecture's order."""
    steps, curves = result.steps, {}
    if "ols" in steps:
        w = np.asarray(steps["ols"]["jax"]["params"], dtype=np.float64)
        curves["analytic MSE"] = _models.curve(_models.linear, w, x)
    for name in LABELS:
        if name in steps:
            model = registry.model(FITS[name].model).fn
            w = np.asarray(steps[name]["jax"]["params"], dtype=np.float64)
            curves[LABELS[name]] = _models.curve(model, w, x)
    return curves


def _data(c: _Lecture):
    return data(c.x, c.y, title="The lecture's data (cell 4)")


def _ols_fit(c: _Lecture):
    if c.ran("ols"):
        return fits(c.x, c.y, c.some_curves("analytic MSE"), title="Analytic MSE fit (cell 8)",
                    colors=COLORS)


def _ols_residuals(c: _Lecture):
    if c.ran("ols"):
        return residuals(c.x, c.y, c.fitted("ols", _models.linear),
                         curves=c.some_curves("analytic MSE"), colors=COLORS,
                         title="Residuals of the analytic MSE fit (cell 10)")


def _around_ols(c: _Lecture):
    """The grid of cells 12 and 15: the analytic fit +- 1 along each axis."""
    w = c.params("ols")
    return np.linspace(w[0] - 1, w[0] + 1, c.grid), np.linspace(w[1] - 1, w[1] + 1, c.grid)


def _ols_surface(c: _Lecture, loss, loss_name: str, title: str, *, minimum: bool = False):
    """`loss` of the linear model on the grid around the analytic fit, which is marked; with
    `minimum`, the grid's lowest point too."""
    if not c.ran("ols"):
        return None
    a_values, b_values = _around_ols(c)
    values = _surface(_models.linear, loss, c.x, c.y, a_values, b_values)
    at = float(loss(c.fitted("ols", _models.linear), jnp.asarray(c.y)))
    points = {"analytic MSE fit": (*c.params("ols"), at)}
    if minimum:
        j, i = np.unravel_index(np.argmin(values), values.shape)
        points[f"{loss_name} minimum on the grid"] = (a_values[i], b_values[j], values[j, i])
    return surface(values, a_values, b_values, loss_name=loss_name, points=points, title=title)


def _mse_surface(c: _Lecture):
    return _ols_surface(c, _losses.mse, "MSE",
                        "MSE loss of the linear model around the analytic fit (cell 13)")


def _l1_surface(c: _Lecture):
    return _ols_surface(c, _losses.l1, "L1",
                        "L1 loss of the linear model on the same grid (cell 16)", minimum=True)


def _gd_abs_linear_path(c: _Lecture):
    if not c.ran("gd_abs_linear"):
        return None
    paths = c.result.paths["gd_abs_linear"]
    jpath, tpath, w_abs = paths["jax"], paths["torch"], c.params("gd_abs_linear")
    both = np.concatenate([jpath, tpath, w_abs[None]])
    marks = {}
    if c.ran("ols"):
        both = np.concatenate([both, c.params("ols")[None]])
        marks["MSE"] = c.params("ols")
    marks["Abs (GD)"] = w_abs
    a_values = np.linspace(*_cover((-1.0, 1.0), both[:, 0]), c.grid)  # the lecture's range,
    b_values = np.linspace(*_cover((-0.5, 5.0), both[:, 1]), c.grid)  # widened to the path
    values = _surface(_models.linear, _losses.l1, c.x, c.y, a_values, b_values)
    return contour_paths(
        values, a_values, b_values, {"GD path, JAX": jpath, "GD path, torch": tpath},
        points=marks, loss_name="L1",
        title=f"Gradient descent on the L1 loss, {jpath.shape[0] - 1} steps (cell 50)")


def _gd_abs_linear_residuals(c: _Lecture):
    if c.ran("gd_abs_linear"):
        return residuals(c.x, c.y, c.fitted("gd_abs_linear", _models.linear),
                         curves=c.some_curves("analytic MSE", "GD abs"), colors=COLORS,
                         title="Residuals of the GD abs fit (cell 51)")


def _gd_abs_quad_residuals(c: _Lecture):
    if c.ran("gd_abs_quad"):
        return residuals(c.x, c.y, c.fitted("gd_abs_quad", _models.polynomial),
                         curves=c.some_curves("analytic MSE", "GD abs", "GD quad abs"),
                         colors=COLORS, title="Residuals of the quadratic GD abs fit (cell 55)")


def _sgd_abs_quad_path(c: _Lecture):
    if c.ran("sgd_abs_quad"):
        paths = c.result.paths["sgd_abs_quad"]
        return path_3d(paths["jax"], other=paths["torch"],
                       labels=("SGD path, JAX", "SGD path, torch"),
                       title="SGD path of the quadratic model, colored by step (cell 61)")


def _fits(c: _Lecture):
    if len(c.curves) > 1 or c.ran("adam_abs_poly12"):
        return fits(c.x, c.y, c.curves, colors=COLORS,
                    title="Every fit; the degree-12 model on a dense grid (cell 66)")


def _adam_abs_poly12_pca(c: _Lecture):
    if c.ran("adam_abs_poly12"):
        paths = c.result.paths["adam_abs_poly12"]
        return pca_paths(
            _models.polynomial, _losses.l1, c.x, c.y, paths["jax"], other=paths["torch"],
            grid=c.grid,
            title="Degree-12 Adam fit on the plane of its path's top two PCA directions")


def _parity(c: _Lecture):
    paths = c.result.paths
    if paths:
        dtype = np.asarray(next(iter(paths.values()))["jax"]).dtype
        return path_difference(
            paths, eps=float(np.finfo(dtype).eps),
            title=f"JAX against torch at every step ({c.result.dtype} precision, "
                  f"{dtype} parameters)")


#: How each figure of `ORDER` is drawn: ``draw(lecture) -> Figure``, or None when its step
#: was not run.
DRAW = {
    "data": _data, "ols_fit": _ols_fit, "ols_residuals": _ols_residuals,
    "mse_surface": _mse_surface, "l1_surface": _l1_surface,
    "gd_abs_linear_path": _gd_abs_linear_path,
    "gd_abs_linear_residuals": _gd_abs_linear_residuals,
    "gd_abs_quad_residuals": _gd_abs_quad_residuals, "sgd_abs_quad_path": _sgd_abs_quad_path,
    "fits": _fits, "adam_abs_poly12_pca": _adam_abs_poly12_pca, "parity": _parity,
}


def lecture_figures(result, *, grid: int = GRID, only=None) -> dict[str, Figure]:
    """Every figure of the lecture, from a `comparison.lecture.run` result.

    Figures whose step was not run are left out. The surfaces are computed here (`grid` x
    `grid` points each, the lecture's 50 by default) by `functional_fit.surface.loss_surface`;
    the degree-12 path is drawn on the plane of `functional_fit.surface.pca_plane`.

    Args:
      result: a `comparison.lecture.LectureResult`; with ``only=JAX_ONLY``, one whose
        torch side is None will do (`comparison.lecture.combine`).
      grid: points per side of each surface.
      only: names of the figures to draw (the others are not computed); all by default.

    Returns:
      name -> Figure, in the lecture's order:
        data                   the raw data (cell 4)
        ols_fit                the analytic MSE line (cell 8)
        ols_residuals          its residuals (cell 10)
        mse_surface            the MSE surface around the analytic fit (cell 13)
        l1_surface             the L1 surface on the same grid (cell 16)
        gd_abs_linear_path     the GD path on the L1 contour, JAX and torch (cell 50)
        gd_abs_linear_residuals, gd_abs_quad_residuals   (cells 51 and 55)
        sgd_abs_quad_path      the SGD path of the quadratic model in 3-D (cell 61)
        fits                   every fit, the degree-12 one on a dense grid (cell 66)
        adam_abs_poly12_pca    the degree-12 Adam path on the L1 surface of its PCA plane
        parity                 JAX against torch at every step of every fit
    """
    x, y = np.asarray(result.x, dtype=np.float64), np.asarray(result.y, dtype=np.float64)
    lecture = _Lecture(result, x, y, grid, _curves(result, x))
    figs = {}
    for name in ORDER:
        if only is None or name in only:
            fig = DRAW[name](lecture)
            if fig is not None:
                figs[name] = fig
    return figs


def pca_paths(model, loss, x, y, path, *, other=None, labels=("Adam path, JAX", "Adam path, torch"),
              grid: int = GRID, loss_name: str = "L1",
              title: str = "The path on the plane of its top two PCA directions",
              ) -> Figure:  # the figure's options, each a keyword
    """An optimizer path on the loss surface of its own PCA plane (`surface.pca_plane`).

    Args:
      model, loss: the fit's model and loss functions.
      x, y: (n,) data.
      path: (k, p+1) the path whose PCA plane is drawn, e.g. JAX's.
      other: optional (k', p+1) second path (torch's), projected onto the same plane.
      labels: legend labels of `path` and `other`.
      grid: grid points along each axis of the plane.

    Returns:
      `contour_paths` of the surface over a span covering both projected paths.
    """
    path = np.asarray(path, dtype=np.float64)
    plane, coords, explained = pca_plane(path)
    coords, explained = np.asarray(coords), np.asarray(explained)  # (k, 2), (2,)
    drawn = {labels[0]: coords}
    if other is not None:
        uv = np.stack([np.asarray(plane.u), np.asarray(plane.v)])  # (2, p+1)
        drawn[labels[1]] = (np.asarray(other, dtype=np.float64) - np.asarray(plane.origin)) @ uv.T
    both = np.concatenate(list(drawn.values()))  # (k + k', 2)
    a_values = np.linspace(*_span(both[:, 0].min(), both[:, 0].max()), grid)
    b_values = np.linspace(*_span(both[:, 1].min(), both[:, 1].max()), grid)
    values = _surface(model, loss, x, y, a_values, b_values, plane=plane)
    return contour_paths(
        values, a_values, b_values, drawn,
        points={"start": coords[0], "end": coords[-1]}, loss_name=loss_name,
        legend_loc="lower right",  # the path ends at (0, 0), its start has coordinates >= 0
        axis_labels=(f"first PCA direction ({explained[0]:.0%} of the path's spread)",
                     f"second PCA direction ({explained[1]:.0%})"),
        levels=_quantile_levels(values), title=title)


def _cover(lecture_range, values, margin=0.1):
    """The lecture's axis range, widened where needed to hold `values` with a margin."""
    lo, hi = _span(float(np.min(values)), float(np.max(values)), margin)
    return min(lecture_range[0], lo), max(lecture_range[1], hi)


def png(fig: Figure, *, dpi: int = DPI) -> bytes:
    """`fig` as PNG bytes, the same bytes `functional_fit.plot.save` writes to a .png file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _jax_share(x, y, dtype, order_seed, data_meta, grid, dpi):
    """The second process's share of `run_with_figures`: yields the JAX side as soon as it is
    done, then the PNGs of the `SECOND_PROCESS` figures."""
    jax_side = lecture.run_jax(x, y, dtype=dtype, order_seed=order_seed)
    yield jax_side
    partial = lecture.combine(x, y, jax_side, None, dtype=dtype, data_meta=data_meta)
    drawn = lecture_figures(partial, grid=grid, only=SECOND_PROCESS)
    yield {name: png(fig, dpi=dpi) for name, fig in drawn.items()}


def run_with_figures(x, y, *, dtype: str = "lecture", order_seed: int = 0,
                     data_meta: dict | None = None, progress=None, grid: int = GRID,
                     dpi: int = DPI, second_process: bool | None = None,
                     ) -> tuple:  # lecture.run's settings and the figures'
    """Run the lecture in both frameworks and draw its figure set as PNG.

    With `second_process`, a second process (`comparison.background`) runs the JAX
    side, hands it over, and draws the `SECOND_PROCESS` figures (both 3-D surfaces among
    them), while this one runs torch's loops and then draws the other figures. The numbers and
    the figures are those of `lecture.run` and `lecture_figures` in one process, byte for byte.

    Args:
      x, y, dtype, order_seed, data_meta: as `comparison.lecture.run`.
      progress: optional callable, called with a label as each part starts (len(STEPS) + 3
        calls).
      grid: points per side of each surface.
      dpi: resolution of the PNGs.
      second_process: see above; None: when `background.worthwhile()` (more than two cores).

    Returns:
      (`LectureResult`, name -> PNG bytes in the lecture's order, as `lecture_figures`).
    """
    tell = progress or (lambda label: None)
    require(dtype)  # here, before a second process starts
    if second_process is None:
        second_process = background.worthwhile()
    if not second_process:
        result = lecture.run(x, y, dtype=dtype, order_seed=order_seed, data_meta=data_meta,
                             second_process=False, progress=tell)
        tell("figures")
        drawn = lecture_figures(result, grid=grid)
        tell("figures, as PNG")
        pngs = {name: png(fig, dpi=dpi) for name, fig in drawn.items()}
        return result, pngs
    job = background.start(_jax_share, x, y, dtype, order_seed, data_meta, grid, dpi)
    try:
        torch_side = lecture.run_torch(x, y, dtype=dtype, order_seed=order_seed,
                                       progress=lambda name: tell(f"torch: {name}"))
        tell("JAX: every step, in a second process")
        jax_side = job.result()
        result = lecture.combine(x, y, jax_side, torch_side, dtype=dtype, data_meta=data_meta)
        tell("figures")
        here = lecture_figures(result, grid=grid,
                               only=[n for n in ORDER if n not in SECOND_PROCESS])
        pngs = {name: png(fig, dpi=dpi) for name, fig in here.items()}
        tell("figures of the second process")
        pngs.update(job.result())
        job.close()
    except BaseException:
        job.cancel()
        raise
    return result, {name: pngs[name] for name in ORDER if name in pngs}


def write_pngs(pngs: dict, directory) -> list[Path]:
    """Write name -> PNG bytes as ``directory/NAME.png``; the paths written.

    Plain writes: the command line writes the whole set into a temporary folder and swaps it
    into place (`functional_fit_cli.files.atomic_dir`).
    """
    written = []
    for name, data_ in pngs.items():
        path = Path(directory) / f"{name}.png"
        path.write_bytes(data_)
        written.append(path)
    return written


__all__ = ["COLORS", "DRAW", "GRID", "JAX_ONLY", "LABELS", "ORDER", "SECOND_PROCESS",
           "lecture_figures", "pca_paths", "png", "run_with_figures", "write_pngs"]
