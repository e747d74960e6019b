"""``functional-fit surface``: a loss surface on a grid, from the command line.

Parsing and printing only; the work is `functional_fit.surface`. The plane's centre is the end
of a gradient-descent fit (`functional_fit.fit.gradient_descent`, the lecture's decaying step),
whose path is also projected onto the plane and drawn on the contour.
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np

from functional_fit._checks import InputError
from functional_fit.cli._common import add_data_options, add_dtype_option, load_data

DIRECTIONS = ("coords", "random", "pca")
#: Output bytes `--grid` may ask for (float64: 2**30 points); see `surface.MAX_POINTS`.
MAX_OUTPUT_BYTES = 8 * 2**30


def add_parser(sub):
    p = sub.add_parser(
        "surface",
        help="compute a loss surface on a grid (streamed, multi-device)",
        description="The loss over a grid of parameter vectors w = centre + a u + b v: two "
        "coordinates of w (the lecture's cells 12, 15, 50), two random directions normalized "
        "per parameter (Li et al. 2018), or the top two PCA directions of a gradient-descent "
        "path. The centre is where that fit ends.",
    )
    p.add_argument("--model", default="linear", help="linear or poly (default linear)")
    p.add_argument("--degree", type=int, default=2, help="degree of the poly model (2)")
    p.add_argument("--loss", default="l1", help="l1 or mse (default l1)")
    add_data_options(p)
    add_dtype_option(p, default="float64")
    p.add_argument("--grid", default="1000x1000", metavar="NAxNB",
                   help="grid points along a (columns) and b (rows), e.g. 1000x1000; at most "
                   f"{MAX_OUTPUT_BYTES // 2**30} GiB of output")
    p.add_argument("--range", metavar="A0:A1,B0:B1",
                   help="the grid's extent, written with '=' when it starts with a minus "
                   "(--range=-1:1,-0.5:5); default: the fit's path with a margin (coords, pca), "
                   "or -1:1,-1:1 (random)")
    p.add_argument("--directions", default="coords", help="coords, random or pca (coords)")
    p.add_argument("--coords", default="0,1", metavar="I,J",
                   help="the two parameters of --directions coords (0,1); the rest stay at the fit")
    p.add_argument("--direction-seed", type=int, default=0, help="seed of --directions random (0)")
    p.add_argument("--lr", type=float, default=6.0, help="learning rate of the fit (6.0, cell 49)")
    p.add_argument("--steps", type=int, default=50, help="steps of the fit (50)")
    p.add_argument("--exact", action="store_true",
                   help="with --loss mse: the exact surface from moments of the data (cost "
                   "independent of n)")
    p.add_argument("--out", metavar="NPZ", help="write the surface, grid, plane and path (.npz)")
    p.add_argument("--plot", metavar="PNG", help="write a contour + 3-D figure")
    return p


def parse_grid(text: str) -> tuple[int, int]:
    """``"NAxNB"`` -> (na, nb), both > 0, within `MAX_OUTPUT_BYTES` of float64 output."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m:
        raise InputError(f"--grid must look like 1000x1000 (NAxNB), got {text!r}")
    na, nb = int(m.group(1)), int(m.group(2))
    if na < 1 or nb < 1:
        raise InputError(f"--grid needs at least one point per side, got {text!r}")
    if 8 * na * nb > MAX_OUTPUT_BYTES:
        raise InputError(
            f"--grid {na}x{nb} asks for {8 * na * nb / 2**30:.1f} GiB of float64 output; the "
            f"limit is {MAX_OUTPUT_BYTES // 2**30} GiB ({MAX_OUTPUT_BYTES // 8} points)"
        )
    return na, nb


def parse_range(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """``"A0:A1,B0:B1"`` -> ((a0, a1), (b0, b1)), finite, a0 < a1 and b0 < b1."""
    number = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
    m = re.fullmatch(f"{number}:{number},{number}:{number}", text or "")
    if not m:
        raise InputError(f"--range must look like -1:1,-0.5:5 (A0:A1,B0:B1), got {text!r}")
    a0, a1, b0, b1 = (float(g) for g in m.groups())
    if not all(np.isfinite([a0, a1, b0, b1])) or not (a0 < a1 and b0 < b1):
        raise InputError(f"--range needs finite A0 < A1 and B0 < B1, got {text!r}")
    return (a0, a1), (b0, b1)


def parse_coords(text: str, size: int) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", text or "")
    if not m or m.group(1) == m.group(2) or max(int(m.group(1)), int(m.group(2))) >= size:
        raise InputError(
            f"--coords must be two distinct parameter indices below {size}, got {text!r}"
        )
    return int(m.group(1)), int(m.group(2))


def _span(values, margin=0.25, least=0.5):
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = max(margin * (hi - lo), least)
    return lo - pad, hi + pad


def _plot(path, z, a_values, b_values, path2d, centre, labels, loss_name):
    from functional_fit import plot  # matplotlib only when a figure is asked for

    fig = plot.surface(z, a_values, b_values, loss_name=loss_name, axis_labels=labels,
                       points={"fit": centre}, title=f"{loss_name} loss surface",
                       paths=None if path2d is None else {"GD path": path2d})
    plot.save(fig, path)


def run(args) -> int:
    start = time.perf_counter()
    import jax.numpy as jnp

    from functional_fit import _checks, fit, losses, models, surface
    from functional_fit._io import atomic_path
    from functional_fit.precision import policy

    na, nb = parse_grid(args.grid)
    grid_range = None if args.range is None else parse_range(args.range)
    directions = _checks.choice("--directions", args.directions, DIRECTIONS)
    model_name = _checks.choice("--model", args.model, models.MODELS)
    loss_name = _checks.choice("--loss", args.loss, losses.LOSSES)
    size = models.n_params(model_name, _checks.nonnegative_int("--degree", args.degree))
    model, loss = models.get(model_name), losses.get(loss_name)
    pol = policy(args.dtype)
    if args.exact and loss_name != "mse":
        raise InputError("--exact needs --loss mse")
    _checks.nonnegative_int("--direction-seed", args.direction_seed)
    _checks.positive_int("--steps", args.steps)
    _checks.positive_float("--lr", args.lr)
    if directions != "coords" and size < 2:
        raise InputError("--directions random and pca need a model with at least 2 parameters")
    coords = parse_coords(args.coords, size) if directions == "coords" else None
    x, y, meta = load_data(args)
    x, y = x.astype(pol.data), y.astype(pol.data)

    # The centre: where the lecture's gradient descent ends; its path goes on the plane.
    res = fit.gradient_descent(jnp.zeros(size, pol.params), x, y, model=model, loss=loss,
                               lr=args.lr, steps=args.steps)
    path = np.asarray(res.path)  # (steps+1, p+1)
    if not np.all(np.isfinite(path)):
        raise InputError(
            f"--lr {args.lr}: the fit diverged (non-finite parameters); try a smaller --lr"
        )
    centre = path[-1]
    if directions == "coords":
        plane = surface.coords_plane(jnp.asarray(centre), coords)
        path2d = path[:, list(coords)]  # (steps+1, 2)
        names = {0: "intercept", 1: "slope"} if model_name == "linear" else {}
        labels = tuple(f"{names[c]} w[{c}]" if c in names else f"w[{c}]" for c in coords)
    elif directions == "random":
        plane = surface.random_plane(jnp.asarray(centre), seed=args.direction_seed)
        path2d, labels = None, ("a (random direction u)", "b (random direction v)")
    else:
        pca = surface.pca_plane(jnp.asarray(path))
        plane, path2d = pca.plane, np.asarray(pca.path)
        labels = tuple(
            f"PC{i + 1} ({100 * float(e):.1f}% of the path)" for i, e in enumerate(pca.explained)
        )
    plane = surface.Plane(*(np.asarray(v, dtype=pol.params) for v in plane))
    if grid_range is None:
        if path2d is None:
            grid_range = ((-1.0, 1.0), (-1.0, 1.0))
        else:
            grid_range = (_span(path2d[:, 0]), _span(path2d[:, 1]))
    a_values = np.linspace(*grid_range[0], na, dtype=pol.params)  # (na,)
    b_values = np.linspace(*grid_range[1], nb, dtype=pol.params)  # (nb,)

    from tqdm import tqdm

    with tqdm(total=na * nb, desc="surface", unit="pt", unit_scale=True, file=sys.stderr,
              delay=1.0, leave=False) as bar:  # shown only when the work takes over a second
        if args.exact:
            z = surface.mse_surface_exact(model, x, y, a_values, b_values, plane=plane,
                                          progress=bar.update)
        else:
            z = surface.loss_surface(model, loss, x, y, a_values, b_values, plane=plane,
                                     progress=bar.update)
    computed = time.perf_counter() - start

    j, i = np.unravel_index(np.argmin(z), z.shape)
    at_centre = float(fit.full_loss(centre, x, y, model=model, loss=loss))
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:  # a file: savez adds no suffix
            on_plane = np.zeros((0, 2)) if path2d is None else path2d  # (steps+1, 2) or none
            np.savez(fh, losses=z, a_values=a_values, b_values=b_values, origin=plane.origin,
                     u=plane.u, v=plane.v, path=path, path_on_plane=on_plane,
                     directions=directions, model=model_name, loss=loss_name)
    if args.plot:
        ca, cb = (centre[coords[0]], centre[coords[1]]) if directions == "coords" else (0.0, 0.0)
        _plot(args.plot, z, a_values, b_values, path2d, (ca, cb, at_centre), labels,
              loss_name.upper())
    src = "the lecture's data" if meta.get("lecture") else f"{meta['source']} data"
    print(f"functional-fit surface: {loss_name} loss of the {model_name} model (p+1={size}) on "
          f"{src} (n={meta['n']}), directions {directions}, dtype {args.dtype}")
    print(f"grid {na} x {nb} = {na * nb} points, a in [{a_values[0]:.6g}, {a_values[-1]:.6g}], "
          f"b in [{b_values[0]:.6g}, {b_values[-1]:.6g}]")
    print(f"min loss {z[j, i]:.10g} at a = {a_values[i]:.6g}, b = {b_values[j]:.6g}; "
          f"max {np.max(z):.10g}; the fit's loss {at_centre:.10g}")
    wrote = [f for f in (args.out, args.plot) if f]
    print(f"done in {time.perf_counter() - start:.2f} s (fit and surface {computed:.2f} s)"
          + (f"; wrote {', '.join(wrote)}" if wrote else ""))
    return 0
