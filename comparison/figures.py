"""The lecture's figure set: fits and surfaces computed, then drawn by `functional_fit.plot`.

This is the comparison layer: `lecture_figures` takes a `comparison.lecture.run` result
(both frameworks' numbers and paths), computes the surfaces the lecture draws with
`functional_fit.surface`, and draws every figure with `functional_fit.plot`, which only draws
the arrays it is given.
"""

from __future__ import annotations

import io
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from functional_fit import losses as _losses, models as _models, registry
from functional_fit.plot import (DPI, contour_paths, curve, data, fits, path_3d, path_difference,
                                 residuals, surface)
from functional_fit.surface import loss_surface, pca_plane
from functional_fit.precision import require
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
    steps, paths = result.steps, result.paths
    figs: dict[str, Figure] = {}
    linear, poly = _models.linear, _models.polynomial

    def want(name):
        return only is None or name in only

    def params(name):
        return np.asarray(steps[name]["jax"]["params"], dtype=np.float64)

    if want("data"):
        figs["data"] = data(x, y, title="The lecture's data (cell 4)")

    curves = {}
    if "ols" in steps:
        w_mse = params("ols")
        curves["analytic MSE"] = curve(linear, w_mse, x)
    if "ols" in steps and want("ols_fit"):
        figs["ols_fit"] = fits(x, y, dict(curves), title="Analytic MSE fit (cell 8)")
    if "ols" in steps and want("ols_residuals"):
        figs["ols_residuals"] = residuals(
            x, y, np.asarray(linear(jnp.asarray(w_mse), jnp.asarray(x))), curves=dict(curves),
            title="Residuals of the analytic MSE fit (cell 10)")
    if "ols" in steps and (want("mse_surface") or want("l1_surface")):
        a_values = np.linspace(w_mse[0] - 1, w_mse[0] + 1, grid)
        b_values = np.linspace(w_mse[1] - 1, w_mse[1] + 1, grid)
        mse_values = _surface(linear, _losses.mse, x, y, a_values, b_values)
        l1_values = _surface(linear, _losses.l1, x, y, a_values, b_values)
        mse_at = float(_losses.mse(linear(jnp.asarray(w_mse), jnp.asarray(x)), jnp.asarray(y)))
        l1_at = float(_losses.l1(linear(jnp.asarray(w_mse), jnp.asarray(x)), jnp.asarray(y)))
        figs["mse_surface"] = surface(
            mse_values, a_values, b_values, loss_name="MSE",
            points={"analytic MSE fit": (*w_mse, mse_at)},
            title="MSE loss of the linear model around the analytic fit (cell 13)")
        j, i = np.unravel_index(np.argmin(l1_values), l1_values.shape)
        figs["l1_surface"] = surface(
            l1_values, a_values, b_values, loss_name="L1",
            points={"analytic MSE fit": (*w_mse, l1_at),
                    "L1 minimum on the grid": (a_values[i], b_values[j], l1_values[j, i])},
            title="L1 loss of the linear model on the same grid (cell 16)")

    for name in LABELS:
        if name in steps:
            model = registry.model(FITS[name].model).fn
            curves[LABELS[name]] = curve(model, params(name), x)

    if "gd_abs_linear" in steps and want("gd_abs_linear_path"):
        jpath, tpath = paths["gd_abs_linear"]["jax"], paths["gd_abs_linear"]["torch"]
        w_abs = params("gd_abs_linear")
        both = np.concatenate([jpath, tpath, w_abs[None]])
        if "ols" in steps:
            both = np.concatenate([both, params("ols")[None]])
        a_values = np.linspace(*_cover((-1.0, 1.0), both[:, 0]), grid)  # the lecture's range,
        b_values = np.linspace(*_cover((-0.5, 5.0), both[:, 1]), grid)  # widened to the path
        values = _surface(linear, _losses.l1, x, y, a_values, b_values)
        marks = {"MSE": params("ols")} if "ols" in steps else {}
        marks["Abs (GD)"] = w_abs
        figs["gd_abs_linear_path"] = contour_paths(
            values, a_values, b_values, {"GD path, JAX": jpath, "GD path, torch": tpath},
            points=marks, loss_name="L1",
            title=f"Gradient descent on the L1 loss, {jpath.shape[0] - 1} steps (cell 50)")
    if "gd_abs_linear" in steps and want("gd_abs_linear_residuals"):
        w_abs = params("gd_abs_linear")
        figs["gd_abs_linear_residuals"] = residuals(
            x, y, np.asarray(linear(jnp.asarray(w_abs), jnp.asarray(x))),
            curves={k: v for k, v in curves.items() if k in ("analytic MSE", "GD abs")},
            title="Residuals of the GD abs fit (cell 51)")

    if "gd_abs_quad" in steps and want("gd_abs_quad_residuals"):
        w = params("gd_abs_quad")
        figs["gd_abs_quad_residuals"] = residuals(
            x, y, np.asarray(poly(jnp.asarray(w), jnp.asarray(x))),
            curves={k: v for k, v in curves.items()
                    if k in ("analytic MSE", "GD abs", "GD quad abs")},
            title="Residuals of the quadratic GD abs fit (cell 55)")

    if "sgd_abs_quad" in steps and want("sgd_abs_quad_path"):
        figs["sgd_abs_quad_path"] = path_3d(
            paths["sgd_abs_quad"]["jax"], other=paths["sgd_abs_quad"]["torch"],
            labels=("SGD path, JAX", "SGD path, torch"),
            title="SGD path of the quadratic model, colored by step (cell 61)")

    if (len(curves) > 1 or "adam_abs_poly12" in steps) and want("fits"):
        figs["fits"] = fits(x, y, curves, title="Every fit; the degree-12 model on a dense grid "
                                                "(cell 66)")

    if "adam_abs_poly12" in steps and want("adam_abs_poly12_pca"):
        figs["adam_abs_poly12_pca"] = pca_paths(
            poly, _losses.l1, x, y, paths["adam_abs_poly12"]["jax"],
            other=paths["adam_abs_poly12"]["torch"], grid=grid,
            title="Degree-12 Adam fit on the plane of its path's top two PCA directions")

    if paths and want("parity"):
        dtype = np.asarray(next(iter(paths.values()))["jax"]).dtype
        figs["parity"] = path_difference(
            paths, eps=float(np.finfo(dtype).eps),
            title=f"JAX against torch at every step ({result.dtype} precision, "
                  f"{dtype} parameters)")
    return {name: fig for name, fig in figs.items() if want(name)}


def pca_paths(model, loss, x, y, path, *, other=None, labels=("Adam path, JAX", "Adam path, torch"),
              grid: int = GRID, loss_name: str = "L1",
              title: str = "The path on the plane of its top two PCA directions") -> Figure:
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
                     dpi: int = DPI, second_process: bool | None = None) -> tuple:
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


__all__ = ["GRID", "JAX_ONLY", "LABELS", "ORDER", "SECOND_PROCESS", "lecture_figures", "pca_paths",
           "png", "run_with_figures", "write_pngs"]
