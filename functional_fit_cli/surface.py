"""``functional-fit surface``: a loss surface on a grid, from the command line.

Parsing and printing only; the work is `functional_fit.surface`: `surface.around_fit` fits the
centre (the lecture's gradient descent), chooses the plane, labels the axes and picks the range,
and `surface.loss_surface` computes the grid. The fit's path is drawn on the contour. With
several optimizers (``--optimizer sgd,adam``) each is fitted from the same start
(`functional_fit.fit.run`), and `surface.around_path` of their list puts them on one plane
(``--directions pca``: the PCA of all their paths), drawn together with a legend.
"""

from __future__ import annotations

import argparse
import re
import time
import warnings
from typing import NamedTuple

import numpy as np

from functional_fit import checks as _checks, data as _data, fit, registry, surface
from functional_fit.checks import InputError
from functional_fit.precision import policy
from functional_fit.surface import DIRECTIONS, check_coords
from functional_fit_cli import landscape, resources
from functional_fit_cli.files import together
from functional_fit_cli.options import (LENGTH_OPTIONS, add_data_options, add_dtype_option,
                                        add_model_options, load_data_within, output_file,
                                        progress, refuse, resolve_model)

#: The fit's steps when --steps is not given (cell 49).
STEPS = 50
#: Output bytes `--grid` may ask for (float64: 2**30 points); see `surface.MAX_POINTS`.
MAX_OUTPUT_BYTES = 8 * 2**30


def add_parser(sub):
    p = sub.add_parser(
        "surface",
        help="compute a loss surface on a grid (streamed, multi-device)",
        description="The loss over a grid of parameter vectors w = centre + a u + b v: two "
        "coordinates of w (the lecture's cells 12, 15, 50), two random directions normalized "
        "per parameter (Li et al. 2018), or the top two PCA directions of a gradient-descent "
        "path. The centre is where that fit ends (from zeros; the sine model from amplitude and "
        "frequency 1, where its gradient is not 0), and a grid point unless --range is given. "
        "Several optimizers (--optimizer sgd,adam) are fitted from the same start and drawn "
        "together; --directions pca then takes the plane of all their paths.",
    )
    add_model_options(p, files=True)
    add_data_options(p)
    add_dtype_option(p, default="float64")
    p.add_argument("--grid", default=None, metavar="NAxNB",
                   help="grid points along a (columns) and b (rows), e.g. 1000x1000; at most "
                   f"{MAX_OUTPUT_BYTES // 2**30} GiB of output (1000x1000; a network's "
                   f"{landscape.GRID})")
    p.add_argument("--range", metavar="A0:A1,B0:B1",
                   help="the grid's extent, written with '=' when it starts with a minus "
                   "(--range=-1:1,-0.5:5); default: the fit's path with a margin (coords, pca), "
                   "or -1:1,-1:1 (random)")
    p.add_argument("--directions", default=None,
                   help="coords, random or pca (coords); a network's: random or hessian, the "
                   "top two eigenvectors of the loss's Hessian (random)")
    p.add_argument("--coords", default=None, metavar="I,J",
                   help="the two parameters of --directions coords (0,1); the rest stay at the fit")
    p.add_argument("--direction-seed", type=int, default=None,
                   help="seed of --directions random (0)")
    p.add_argument("--optimizer", default=None, metavar="NAME[,NAME...]",
                   help="the fit's optimizer, or several, comma-separated (sgd,adam), each fitted "
                   f"from the same start: {', '.join(registry.OPTIMIZERS)} (gd)")
    p.add_argument("--lr", default=None, metavar="LR[,LR...]",
                   help="learning rate of the fit (6.0, cell 49): one for every optimizer, or "
                   "one per optimizer, comma-separated")
    p.add_argument("--steps", type=int, default=None,
                   help=f"steps of a full-batch fit: gd and torch.optim's names ({STEPS})")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs of the minibatch optimizers sgd and adam, batches of "
                   f"{_data.DEFAULT_BATCH_SIZE} in the order of seed 0 ({_data.DEFAULT_EPOCHS})")
    p.add_argument("--exact", action="store_true", default=None,
                   help="with --loss mse: the exact surface from moments of the data (cost "
                   "independent of n)")
    p.add_argument("--out", metavar="NPZ", type=output_file("--out"),
                   help="write the surface, grid, plane and path (.npz)")
    p.add_argument("--plot", metavar="PNG", type=output_file("--plot", plot=True),
                   help="write a contour + 3-D figure (.png, .pdf, .svg, ...); with "
                   "--interpolate, the loss against alpha")
    landscape.add_options(p)
    # None: each kind of model has its own (the lecture's: `LECTURE_DEFAULTS`; a network's:
    # `functional_fit_cli.landscape`)
    p.set_defaults(loss=None, dtype=None)
    return p


#: The options' values for the lecture's models when not given.
LECTURE_DEFAULTS = {"grid": "1000x1000", "directions": "coords", "optimizer": "gd", "lr": "6.0",
                    "exact": False, "loss": "l1", "dtype": "float64"}


def lecture_options(args):
    """`args` with the lecture's defaults filled in; the options of a network refused."""
    refuse(args, landscape.NETWORK_ONLY, "applies to a network (--model FILE.py:NAME), not to "
           f"--model {args.model}")
    filled = argparse.Namespace(**vars(args))
    for name, value in LECTURE_DEFAULTS.items():
        if getattr(filled, name) is None:
            setattr(filled, name, value)
    return filled


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
    if not np.isfinite(a1 - a0) or not np.isfinite(b1 - b0):
        raise InputError(f"--range {text!r}: a side's width overflows a float64; keep each "
                         f"side narrower than {np.finfo(np.float64).max:.3g}")
    return (a0, a1), (b0, b1)


def grid_values(range_, count: int, dtype, text) -> np.ndarray:
    """`count` values spanning `range_` in `dtype`; InputError naming --range if they overflow."""
    values = np.linspace(*range_, count, dtype=dtype)  # (count,)
    if not np.all(np.isfinite(values)):
        raise InputError(f"--range {text!r}: the grid's values overflow {np.dtype(dtype).name} "
                         "(the parameters' dtype); give a narrower --range or --dtype float64")
    return values


#: Points of a path drawn on the figure at most: more cannot be told apart, and would only
#: cost memory and time.
MAX_DRAWN = 100_000


def _drawn(path2d):
    """The path to draw: every k-th point and the last, at most `MAX_DRAWN` of them."""
    if path2d is None or path2d.shape[0] <= MAX_DRAWN:
        return path2d
    k = -(-path2d.shape[0] // MAX_DRAWN)
    return np.concatenate([path2d[::k], path2d[-1:]])  # (<= MAX_DRAWN + 1, 2)


def parse_coords(text: str, size: int) -> tuple[int, int]:
    """``"I,J"`` -> (I, J), two distinct parameter indices below `size` (InputError names
    --coords)."""
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", text or "")
    if not m:
        raise InputError(f"--coords must be two parameter indices I,J, got {text!r}")
    return check_coords((int(m.group(1)), int(m.group(2))), size, name="--coords")


def parse_optimizers(text: str) -> tuple[str, ...]:
    """``"sgd,adam"`` -> ("sgd", "adam"): registry names, each once (InputError names
    --optimizer)."""
    names = tuple(t.strip() for t in (text or "").split(","))
    for name in names:
        _checks.choice("--optimizer", name, tuple(registry.OPTIMIZERS))
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"--optimizer names {', '.join(twice)} more than once")
    return names


def parse_lrs(text: str, count: int) -> tuple[float, ...]:
    """``"6"`` or ``"6,0.1"`` -> `count` learning rates > 0: one for every optimizer, or one
    per optimizer (InputError names --lr)."""
    parts = (text or "").split(",")
    if len(parts) not in (1, count):
        raise InputError(f"--lr: give one learning rate, or one per --optimizer ({count}); got "
                         f"{len(parts)} in {text!r}")
    try:
        lrs = [float(t) for t in parts]
    except ValueError:
        raise InputError(f"--lr must be numbers, comma-separated, got {text!r}") from None
    lrs = [_checks.positive_float("--lr", lr) for lr in lrs]
    return tuple(lrs * count if len(lrs) == 1 else lrs)


def fit_lengths(args, optimizers) -> tuple:
    """Each optimizer's `functional_fit.data.Length`: --steps for the full-batch ones (gd,
    torch.optim's names), --epochs of batches of the default size for sgd and adam."""
    steps = STEPS if args.steps is None else args.steps
    lengths = []
    for name in optimizers:
        full = registry.OPTIMIZERS[name].batching != "minibatch"
        lengths.append(_data.fit_length(
            None, "full" if full else "minibatch", steps=steps if full else None,
            epochs=None if full else args.epochs, defaults=True, names=LENGTH_OPTIONS,
            what=f"--optimizer {name}"))
    which = f"--optimizer {','.join(optimizers)}"
    if args.epochs is not None and all(length.full for length in lengths):
        raise InputError(f"--epochs applies to the minibatch optimizers sgd and adam, not "
                         f"{which} (give --steps)")
    if args.steps is not None and not any(length.full for length in lengths):
        raise InputError(f"--steps applies to full-batch optimizers (gd, torch.optim's names), "
                         f"not {which}, which counts passes over the data (give --epochs)")
    return tuple(lengths)


def _plot(path, z, a_values, b_values, paths, points, labels, loss_name):
    """Draw the contour and 3-D figure into `path`, with `paths` (label -> (T, 2)) and `points`
    (label -> (a, b, loss)); InputError naming --range when matplotlib cannot draw the grid's
    extent (values near the float limit), without its warnings."""
    from functional_fit import plot  # matplotlib only when a figure is asked for

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fig = plot.surface(z, a_values, b_values, loss_name=loss_name, axis_labels=labels,
                               points=points, title=f"{loss_name} loss surface",
                               paths={k: _drawn(v) for k, v in paths.items()} or None)
            plot.save(fig, path)
        except (ValueError, OverflowError, FloatingPointError) as exc:
            raise InputError(
                f"--range: matplotlib cannot draw a in [{a_values[0]:.6g}, {a_values[-1]:.6g}], "
                f"b in [{b_values[0]:.6g}, {b_values[-1]:.6g}] for --plot "
                f"({str(exc).splitlines()[0]}); give a --range of moderate values") from None
    for w in caught:  # the figure was drawn: its warnings are shown as they would have been
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class _Settings(NamedTuple):
    """The options, checked."""

    na: int  # grid points along a
    nb: int  # grid points along b
    grid_range: tuple | None  # ((a0, a1), (b0, b1)), or None: around the fit's path
    directions: str  # "coords", "random" or "pca"
    coords: tuple  # the two parameters of "coords"
    seed: int  # the seed of "random"
    model_name: str
    entry: object  # the registry's `Model`
    size: int  # p + 1
    loss_name: str
    loss: object
    pol: object  # the precision policy
    need_path: bool  # keep the fit's path: saved, drawn, the PCA plane, the range
    optimizers: tuple  # registry names, fitted from the same start
    lrs: tuple  # a learning rate per optimizer
    lengths: tuple  # a `data.Length` per optimizer

    @property
    def several(self) -> bool:
        """Whether several optimizers' paths share the plane."""
        return len(self.optimizers) > 1


def _settings(args) -> _Settings:
    """Every option checked, before the data is read."""
    na, nb = parse_grid(args.grid)
    landscape.check_files(args, na, nb)
    grid_range = None if args.range is None else parse_range(args.range)
    directions = _checks.choice("--directions", args.directions, DIRECTIONS)
    model_name, entry, degree, loss_name, loss = resolve_model(args)
    size = entry.n_params(degree)
    if args.exact and loss_name != "mse":
        raise InputError("--exact needs --loss mse")
    if directions != "coords":
        refuse(args, ("--coords",), f"applies to --directions coords, not {directions}")
    if directions != "random":
        refuse(args, ("--direction-seed",), f"applies to --directions random, not {directions}")
    seed = _checks.nonnegative_int("--direction-seed", args.direction_seed or 0)
    optimizers = parse_optimizers(args.optimizer)
    lengths = fit_lengths(args, optimizers)
    lrs = parse_lrs(args.lr, len(optimizers))
    if directions != "coords" and size < 2:
        raise InputError("--directions random and pca need a model with at least 2 parameters")
    coords = parse_coords(args.coords or "0,1", size) if directions == "coords" else (0, 1)
    need_path = bool(args.out or args.plot or directions == "pca" or len(optimizers) > 1
                     or (grid_range is None and directions == "coords"))
    return _Settings(na, nb, grid_range, directions, coords, seed, model_name, entry, size,
                     loss_name, loss, policy(args.dtype), need_path, optimizers, lrs, lengths)


def _needs(args, s: _Settings):
    """The run's memory estimate for n data points (`options.require_memory`)."""
    row = s.size * np.dtype(s.pol.params).itemsize
    copies = (5 if s.directions == "pca" else 3) if s.need_path else 0

    def needs(n):
        rows = sum(length.total(n) + 1 for length in s.lengths)  # every path's points
        option = "--steps" if all(length.full for length in s.lengths) else "--epochs"
        what = (f"the fit's path of {rows} x {s.size} parameters" if not s.several else
                f"the {len(s.lengths)} fits' paths of {rows} x {s.size} parameters in all")
        return [(np.dtype(s.pol.params).itemsize * s.na * s.nb, f"the {s.na}x{s.nb} grid",
                 "--grid"), (copies * rows * row, what, option)]

    return needs


def _view(args, s: _Settings, x, y, rt):
    """The fits, and the plane and range around their paths."""
    if s.optimizers != ("gd",):
        paths = _paths(s, x, y, rt)
        return surface.around_path(paths if s.several else paths[0], directions=s.directions,
                                   coords=s.coords, seed=s.seed, names=s.entry.param_names)
    try:
        with progress(s.lengths[0].steps, "fit", "step") as update:
            return surface.around_fit(
                s.entry.fn, s.loss, x, y, s.entry.start_vector(s.size, s.pol.params),
                lr=s.lrs[0], steps=s.lengths[0].steps, directions=s.directions, coords=s.coords,
                seed=s.seed,
                names=s.entry.param_names, path=s.need_path, progress=update, runtime=rt)
    except _checks.DivergenceError:
        raise InputError(
            f"--lr {args.lr}: the fit diverged (non-finite parameters); try a smaller --lr"
        ) from None


def _paths(s: _Settings, x, y, rt) -> list:
    """Each optimizer's path (T_i, p+1), fitted from the model's start with its learning rate."""
    w0 = s.entry.start_vector(s.size, s.pol.params)  # (p+1,)
    paths = []
    for name, lr, length in zip(s.optimizers, s.lrs, s.lengths):
        kw = (dict(steps=length.steps) if length.full else  # minibatches: seed 0's order
              dict(order=_data.batch_order(x.shape[0], length.epochs),
                   batch_size=length.batch_size))
        try:
            with progress(length.total(x.shape[0]), f"fit {name}", "step") as update:
                res = fit.run(name, w0, x, y, model=s.entry.fn, loss=s.loss, lr=lr,
                              progress=update, runtime=rt, **kw)
        except _checks.DivergenceError:
            raise InputError(f"--lr {lr:g}: the fit of --optimizer {name} diverged (non-finite "
                             "parameters); try a smaller --lr") from None
        paths.append(np.asarray(res.path))  # (T_i, p+1)
    return paths


def _grid(args, s: _Settings, x, y, view, rt):
    """(losses (nb, na), a_values (na,), b_values (nb,)) of the surface around the fit."""
    a_range, b_range = (view.a_range, view.b_range) if s.grid_range is None else s.grid_range
    if s.grid_range is None:  # around the fit's end: the grid holds it
        a_values = surface.centred_values(a_range, s.na, view.centre[0], s.pol.params)  # (na,)
        b_values = surface.centred_values(b_range, s.nb, view.centre[1], s.pol.params)  # (nb,)
    else:
        a_values = grid_values(a_range, s.na, s.pol.params, args.range)  # (na,)
        b_values = grid_values(b_range, s.nb, s.pol.params, args.range)  # (nb,)
    with progress(s.na * s.nb, "surface", "pt") as update:
        if args.exact:
            try:
                z = surface.mse_surface_exact(s.entry.fn, x, y, a_values, b_values,
                                              plane=view.plane, progress=update, runtime=rt)
            except InputError as exc:  # the grid (its range) or the model: name the option
                option = f"--range {args.range}" if args.range else "--exact"
                raise InputError(f"{option}: {exc}") from None
        else:
            z = surface.loss_surface(s.entry.fn, s.loss, x, y, a_values, b_values,
                                     plane=view.plane, progress=update, runtime=rt)
    return np.asarray(z), a_values, b_values  # on an accelerator: one transfer, here


def _save(path, s: _Settings, z, a_values, b_values, view) -> None:
    """The surface, its grid, plane and path as an .npz archive: ``path`` and
    ``path_on_plane`` for one optimizer, ``path_NAME`` and ``path_on_plane_NAME`` for each of
    several; ``optimizers`` and ``lrs`` name them in order."""
    paths = view.path if s.several else (view.path,)
    on_plane = view.on_plane if s.several else (view.on_plane,)
    keys = [f"_{name}" for name in s.optimizers] if s.several else [""]
    each = {}
    for key, q, q2 in zip(keys, paths, on_plane):
        each[f"path{key}"] = q  # (T_i, p+1)
        each[f"path_on_plane{key}"] = np.zeros((0, 2)) if q2 is None else q2  # (T_i, 2)
    with open(path, "wb") as fh:  # a file object: savez adds no suffix
        np.savez(fh, losses=z, a_values=a_values, b_values=b_values, origin=view.plane.origin,
                 u=view.plane.u, v=view.plane.v, **each, optimizers=np.array(s.optimizers),
                 lrs=np.array(s.lrs), directions=s.directions, model=s.model_name,
                 loss=s.loss_name)


def _files(outputs, args, s: _Settings, z, a_values, b_values, view) -> None:
    """--h5 (`surface.save_h5`), --vtp (`surface.save_vtp`) and --html
    (`plot.interactive`, with the paths), each to its temporary of `outputs`."""
    if args.h5:
        surface.save_h5(outputs.file(args.h5), a_values, b_values, z)
    if args.vtp:
        surface.save_vtp(outputs.file(args.vtp), a_values, b_values, z)
    if args.html:
        from functional_fit import plot

        plot.interactive(outputs.file(args.html), a_values, b_values, z,
                         paths={k: _drawn(v) for k, v in _drawn_paths(s, view).items()} or None,
                         title=f"{s.loss_name} loss of the {s.model_name} model",
                         loss_name=s.loss_name, axes=view.labels)


def _drawn_paths(s: _Settings, view) -> dict:
    """label -> (T, 2) each path on the plane, to draw; none on a random plane."""
    if view.on_plane is None:
        return {}
    if not s.several:
        name = s.optimizers[0]
        return {"GD path" if name == "gd" else f"{name} path": view.on_plane}
    return {f"{name} (lr {lr:g})": q for name, lr, q in zip(s.optimizers, s.lrs, view.on_plane)}


def _extremes(z, a_values, b_values, at_centre: float) -> str:
    """The summary's line of the surface's least and largest finite losses, and a count of the
    points that are not finite (an overflowing loss), if any."""
    finite = np.isfinite(z)  # (nb, na)
    if finite.any():
        j, i = np.unravel_index(np.argmin(np.where(finite, z, np.inf)), z.shape)
        line = (f"min loss {z[j, i]:.10g} at a = {a_values[i]:.6g}, b = {b_values[j]:.6g}; "
                f"max {np.max(z[finite]):.10g}; the fit's loss {at_centre:.10g}")
    else:
        line = f"no point of the grid has a finite loss; the fit's loss {at_centre:.10g}"
    if not finite.all():
        line += f"; {z.size - int(finite.sum())} of {z.size} points are not finite"
    return line


def run(args) -> int:
    if landscape.is_network(args.model):
        return landscape.run(args)
    args = lecture_options(args)
    start = time.perf_counter()
    s = _settings(args)
    x, y, meta = load_data_within(args, _needs(args, s))
    x, y = x.astype(s.pol.data), y.astype(s.pol.data)
    rt = resources.runtime()
    view = _view(args, s, x, y, rt)
    z, a_values, b_values = _grid(args, s, x, y, view, rt)
    computed = time.perf_counter() - start
    ends = [q[-1] for q in (view.path if s.several else (view.path,))]  # (p+1,) each
    final = [float(fit.full_loss(w, x, y, model=s.entry.fn, loss=s.loss)) for w in ends]
    at_centre = final[0]
    with together() as outputs:  # all files, or none: renamed into place when all are written
        _files(outputs, args, s, z, a_values, b_values, view)
        if args.out:
            _save(outputs.file(args.out), s, z, a_values, b_values, view)
        if args.plot:
            _plot(outputs.file(args.plot), z, a_values, b_values, _drawn_paths(s, view),
                  {"fit" if not s.several else f"{s.optimizers[0]}'s end":
                   (*view.centre, at_centre)}, view.labels, s.loss_name.upper())
    src = "the lecture's data" if meta.get("lecture") else f"{meta['source']} data"
    print(f"functional-fit surface: {s.loss_name} loss of the {s.model_name} model "
          f"(p+1={s.size}) on {src} (n={meta['n']}), directions {s.directions}, "
          f"dtype {args.dtype}")
    print(f"grid {s.na} x {s.nb} = {s.na * s.nb} points, a in [{a_values[0]:.6g}, "
          f"{a_values[-1]:.6g}], b in [{b_values[0]:.6g}, {b_values[-1]:.6g}]")
    print(_extremes(z, a_values, b_values, at_centre))
    if s.several:
        print("final losses: " + ", ".join(f"{name} (lr {lr:g}) {loss:.10g}" for name, lr, loss
                                           in zip(s.optimizers, s.lrs, final)))
    wrote = [f for f in (args.out, args.plot, args.h5, args.vtp, args.html) if f]
    print(f"done in {time.perf_counter() - start:.2f} s (fit and surface {computed:.2f} s)"
          + (f"; wrote {', '.join(wrote)}" if wrote else ""))
    return 0
