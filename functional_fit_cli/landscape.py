"""``functional-fit surface --model FILE.py:NAME``: the loss landscape of a real network.

Loading, parsing and printing only; the work is the library's:

- the model: NAME in FILE.py is a torch module factory (a function of no arguments returning
  an ``nn.Module``, an ``nn.Module`` class with no required arguments, or a module), exported
  with `parity.export.to_jax` and put in the engine's form by `parity.export.as_model`; or a
  JAX function ``model(params, x)`` whose parameters come from ``--checkpoint``;
- ``--checkpoint``: a torch ``state_dict`` (``torch.save``; ``.pt`` or ``.pth``, read with
  ``weights_only=True``) or an ``.npz`` of arrays by name (`read_checkpoint`);
- ``--data``: an ``.npz`` holding arrays x and y, memory-mapped where they are stored
  uncompressed (`npz_arrays`), or a CSV (`functional_fit_cli.compare.load_data`); with
  ``--batch-size``, read in batches (`functional_fit.streams.Stream`);
- the plane: `surface.random_plane` (Li et al.'s filter normalization) or
  `surface.hessian_plane`; the grid: `surface.loss_surface`; ``--interpolate``:
  `surface.interpolate`; ``--hessian K``: `functional_fit.hessian.eigenvalues`;
- the files: ``--out`` (.npz), ``--plot``, ``--h5`` (`surface.save_h5`), ``--vtp``
  (`surface.save_vtp`), ``--html`` (`plot.interactive`), written together or not at all.

Batch normalization: in eval mode (running statistics, ``--batch-norm eval``), or recomputed
from each batch at every grid point (``--batch-norm recompute``: the module exported in
training mode with its dropout layers in eval mode; the model then has state).
"""

from __future__ import annotations

import inspect
import re
import struct
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from functional_fit import checks as _checks, registry
from functional_fit.checks import InputError, first_line
from functional_fit_cli.options import built_module, load_name, output_file, progress, refuse

#: The grid of a network's surface when --grid is not given: Li et al.'s figures use 21 to 51.
GRID = "21x21"
#: The extent of a network's plane when --range is not given (filter-normalized units).
RANGE = ((-1.0, 1.0), (-1.0, 1.0))
#: ``--alphas`` of ``--interpolate`` when not given: Goodfellow et al.'s segment and beyond.
ALPHAS = "-0.5:1.5:41"
#: A network's planes: Li et al.'s random one, or the top two Hessian eigenvectors.
DIRECTIONS = ("random", "hessian")
#: Batch normalization on the surface: running statistics, or each batch's own.
BATCH_NORM = ("eval", "recompute")
#: Checkpoint files by suffix.
TORCH_SUFFIXES = (".pt", ".pth")
#: Points of the example batch `parity.export.to_jax` traces and checks the module on.
EXAMPLE_POINTS = 8
#: Forward passes one Hessian-vector product costs, about (a forward and a backward pass,
#: differentiated forward again).
HVP_PASSES = 4
#: The options of the lecture's models that a network refuses, and why.
LECTURE_ONLY = ("--degree", "--coords", "--optimizer", "--lr", "--steps", "--epochs", "--exact",
                "--seed", "--n", "--noise", "--dropna")
#: The options that apply to a network only.
NETWORK_ONLY = ("--checkpoint", "--interpolate", "--alphas", "--batch-size", "--batch-norm",
                "--hessian")


def check_files(args, na: int, nb: int) -> None:
    """--vtp and --html draw a mesh: refused before any work on a grid under 2 points a side."""
    if min(na, nb) < 2:
        refuse(args, ("--vtp", "--html"), f"draws a mesh: give --grid at least 2x2, not "
               f"{na}x{nb}")


def is_network(spec) -> bool:
    """Whether ``--model`` names a file (``FILE.py:NAME``) rather than a registry model."""
    return isinstance(spec, str) and ".py:" in spec


def add_options(parser) -> None:
    """The options of a network's landscape, and the surface files every model may write."""
    g = parser.add_argument_group("networks (--model FILE.py:NAME)")
    g.add_argument("--checkpoint", action="append", default=None, metavar="FILE",
                   help="the parameters: a torch state_dict (.pt, .pth; torch.save) or an .npz "
                   "of arrays by name; twice with --interpolate (start, end)")
    g.add_argument("--interpolate", action="store_true", default=None,
                   help="the loss along the line between the two --checkpoint files, and its "
                   "barrier (surface.interpolate)")
    g.add_argument("--alphas", metavar="A0:A1:COUNT",
                   help=f"the positions along --interpolate's line ({ALPHAS}; 0 and 1 are the "
                   "checkpoints)")
    g.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="read --data in batches of B (functional_fit.streams.Stream); default "
                   "all at once")
    g.add_argument("--batch-norm", choices=BATCH_NORM, default=None,
                   help="eval: BatchNorm's running statistics (default); recompute: each "
                   "batch's own at every grid point (training mode, dropout off)")
    g.add_argument("--hessian", type=int, default=None, metavar="K",
                   help="print the top K eigenvalues of the loss's Hessian at the checkpoint")
    f = parser.add_argument_group("surface files (any model)")
    f.add_argument("--h5", metavar="FILE", type=output_file("--h5"),
                   help="the surface in Li et al.'s h5 layout (their plot_2D.py, h52vtp.py)")
    f.add_argument("--vtp", metavar="FILE", type=output_file("--vtp"),
                   help="the surface as VTK PolyData, which ParaView opens")
    f.add_argument("--html", metavar="FILE", type=output_file("--html"),
                   help="the surface as one self-contained interactive HTML page (plotly)")


# --------------------------------------------------------------------------- the data


def _local_header_end(fh, info: zipfile.ZipInfo) -> int:
    """Where a zip member's bytes begin: after its local header (30 bytes, its name, its extra
    field, whose lengths may differ from the central directory's)."""
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"member {info.filename!r}: no local header where the index says")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_length + extra_length


def _mapped(path: str, info: zipfile.ZipInfo):
    """The ``.npy`` member `info` of the zip file `path` as a read-only ``np.memmap``; None
    when it cannot be mapped (compressed, empty, or holding Python objects)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as fh:
        fh.seek(_local_header_end(fh, info))
        version = np.lib.format.read_magic(fh)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
    if dtype.hasobject or 0 in shape or not shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


def npz_arrays(path: str, names, option: str = "--data") -> dict:
    """Arrays `names` of an ``.npz`` file: each a read-only ``np.memmap`` of the file when it
    is stored uncompressed (``np.savez``), read into memory when compressed (``savez_compressed``).

    ``np.load(mmap_mode="r")`` maps ``.npy`` files only, not an archive's members; a stored
    member is an ``.npy`` file's bytes at a known offset of the archive (its local header's end),
    so it is mapped there. InputError naming `option`.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(i.filename).stem: i for i in archive.infolist()
                       if i.filename.endswith(".npy")}
            missing = [k for k in names if k not in members]
            if missing:
                raise InputError(f"{option} {path}: holds no array {missing[0]!r} (it holds "
                                 f"{', '.join(sorted(members)) or 'none'}; --x and --y name them)")
            arrays = {k: _mapped(path, members[k]) for k in names}
        if any(a is None for a in arrays.values()):
            with np.load(path, allow_pickle=False) as held:
                arrays = {k: held[k] if a is None else a for k, a in arrays.items()}
        return arrays
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{option} {path}: no such file") from None
    except Exception as exc:  # not a zip, a damaged header, an object array
        raise InputError(f"{option} {path}: not an .npz file numpy can read "
                         f"({first_line(exc)})") from None


def read_data(args, labels: bool) -> tuple:
    """(x (n, ...), y (n, ...)) of ``--data``: an ``.npz``'s arrays (memory-mapped where
    stored), or a CSV's columns (`functional_fit_cli.compare.load_data`)."""
    from functional_fit_cli import compare

    if args.data is None:
        raise InputError("--data FILE is required with --model FILE.py:NAME (an .npz holding "
                         "x and y, or a CSV)")
    x_name, y_name = args.x or "x", args.y or "y"
    if not args.data.lower().endswith(".npz"):
        return compare.load_data(args.data, x_name, y_name, labels=labels)
    arrays = npz_arrays(args.data, (x_name, y_name))
    x, y = arrays[x_name], arrays[y_name]
    for name, a in ((f"--x {x_name}", x), (f"--y {y_name}", y)):
        if a.ndim < 1 or a.shape[0] == 0 or not (np.issubdtype(a.dtype, np.number)
                                                  or a.dtype == bool):
            raise InputError(f"--data {args.data}: {name} must be an array of numbers with a "
                             f"first axis of points, got shape {a.shape} {a.dtype}")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"--data {args.data}: x and y must have the same number of points, got "
                         f"{x.shape[0]} and {y.shape[0]}")
    return x, y


def _cast(a, dtype):
    """`a` in `dtype` when it is floating (integer labels and tokens stay)."""
    return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) and a.dtype != dtype else a


def data_source(x, y, batch_size, dtype):
    """What the surface functions take as (x, y): the arrays, or with `batch_size` a
    `functional_fit.streams.Stream` and None; floating arrays in `dtype`, batch by batch."""
    from functional_fit.streams import Stream

    if batch_size is None:
        return _cast(np.asarray(x), dtype), _cast(np.asarray(y), dtype)
    batch_size = _checks.positive_int("--batch-size", batch_size)
    if _cast(x[:1], dtype).dtype == x.dtype and _cast(y[:1], dtype).dtype == y.dtype:
        return Stream(x, y, batch_size=batch_size), None  # as stored: slices of the memmap
    n = x.shape[0]

    def batches():
        for start in range(0, n, batch_size):
            stop = start + batch_size
            yield _cast(np.asarray(x[start:stop]), dtype), _cast(np.asarray(y[start:stop]), dtype)

    return Stream(batches), None


# --------------------------------------------------------------------------- the parameters


def read_checkpoint(path: str, option: str = "--checkpoint") -> dict:
    """name -> numpy array of a checkpoint: a torch ``state_dict`` (``.pt``/``.pth``, read with
    ``torch.load(weights_only=True)``) or an ``.npz``; InputError naming `option`."""
    file = Path(path)
    if not file.is_file():
        what = "is not a file" if file.exists() else "no such file"
        raise InputError(f"{option} {path}: {what}")
    suffix = file.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(file, allow_pickle=False) as held:
                return {k: held[k] for k in held.files}
        except Exception as exc:
            raise InputError(f"{option} {path}: not an .npz file numpy can read "
                             f"({first_line(exc)})") from None
    if suffix not in TORCH_SUFFIXES:
        raise InputError(f"{option} {path}: give a torch state_dict (.pt, .pth) or an .npz")
    import torch

    try:
        held = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{option} {path}: not a checkpoint torch.load reads with "
                         f"weights_only=True ({first_line(exc)})") from None
    if not isinstance(held, Mapping) or not all(isinstance(v, torch.Tensor)
                                                for v in held.values()):
        raise InputError(f"{option} {path}: holds a {type(held).__name__}, not a state_dict "
                         "(tensors by name: torch.save(module.state_dict(), path))")
    return {k: v.detach().cpu().numpy() for k, v in held.items()}


class Network(NamedTuple):
    """A network in the engine's form, at each checkpoint."""

    model: object  # model(params, x), or model(params, state, x, key=None) -> (y, new_state)
    params: tuple  # one parameter pytree per checkpoint (the module's own with none given)
    state: object  # the state (buffers) of a stateful model at the first checkpoint, or None
    kind: str  # "torch" or "jax"


def _is_factory(found) -> bool:
    """Whether NAME is a torch module factory (a module, a module class, or a function of no
    required arguments) rather than a JAX function ``model(params, x)``."""
    import torch

    if isinstance(found, torch.nn.Module):
        return True
    if isinstance(found, type):
        return issubclass(found, torch.nn.Module)
    try:
        parameters = inspect.signature(found).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in parameters)


def _loaded(module, path: str, state: dict) -> dict:
    """`state` (a checkpoint) loaded into `module`, strictly; its state_dict as numpy arrays."""
    import torch

    try:
        module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    except RuntimeError as exc:  # missing or unexpected names, other shapes
        text = " ".join(str(exc).split())
        raise InputError(f"--checkpoint {path} does not fit the module: "
                         f"{text[:300]}{'…' if len(text) > 300 else ''}") from None
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _dropout_off(module) -> None:
    """Training mode with every dropout layer in eval mode: BatchNorm uses each batch's own
    statistics, and no mask is drawn."""
    import torch

    module.train()
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d,
                              torch.nn.Dropout3d, torch.nn.AlphaDropout,
                              torch.nn.FeatureAlphaDropout)):
            layer.eval()


def torch_network(spec: str, found, checkpoints, example, dtype, batch_norm: str) -> Network:
    """A torch module factory's network: built, moved to `dtype`, loaded with each checkpoint
    (none: its own parameters), exported once at the first (`parity.export.to_jax` on the
    example batch, in eval mode or, with ``batch_norm="recompute"``, training mode with
    dropout off) and put in the engine's form (`parity.export.as_model`)."""
    import torch

    from parity import export

    module = built_module("--model", spec, found).to(dtype=getattr(torch, np.dtype(dtype).name))
    states = [read_checkpoint(path) for path in checkpoints] or [None]
    first = _loaded(module, checkpoints[0], states[0]) if checkpoints else None
    if batch_norm == "recompute":
        _dropout_off(module)
    else:
        module.eval()
    try:
        fn, params = export.to_jax(module, torch.from_numpy(np.array(example)))
    except InputError as exc:
        raise InputError(f"--model {spec}: {exc}") from None
    except Exception as exc:  # torch.export's or JAX's own: one line, naming the option
        raise InputError(f"--model {spec}: parity.export.to_jax failed "
                         f"({first_line(exc)})") from None
    if first is not None:
        params = first
    model, trainable, state = export.as_model(fn, params)
    ends = [trainable]
    for path, held in zip(checkpoints[1:], states[1:]):
        ends.append(export.as_model(fn, _loaded(module, path, held))[1])
    return Network(model, tuple(ends), state, "torch")


def jax_network(spec: str, model, checkpoints, dtype) -> Network:
    """A JAX function ``model(params, x)`` with its parameters from each checkpoint: a dict
    of arrays by name, floating ones in `dtype`."""
    import jax.numpy as jnp

    if not callable(model):
        raise InputError(f"--model {spec} is of type {type(model).__name__}: give a torch "
                         "module factory or a JAX function model(params, x)")
    if not checkpoints:
        raise InputError(f"--model {spec} is a JAX function: give its parameters with "
                         "--checkpoint FILE (.npz or .pt of arrays by name)")
    ends = tuple({k: jnp.asarray(_cast(v, dtype)) for k, v in read_checkpoint(path).items()}
                 for path in checkpoints)
    return Network(model, ends, None, "jax")


# --------------------------------------------------------------------------- the options


class Plan(NamedTuple):
    """A network's options, checked before anything is read."""

    spec: str  # FILE.py:NAME
    interpolate: bool
    na: int
    nb: int
    grid_range: tuple  # ((a0, a1), (b0, b1))
    alphas: np.ndarray | None  # (m,) positions of --interpolate
    directions: str
    seed: int
    loss_name: str
    loss: object
    batch_norm: str
    hessian: int | None  # K of --hessian


def parse_alphas(text: str) -> np.ndarray:
    """``"A0:A1:COUNT"`` -> (COUNT,) positions from A0 to A1 (InputError names --alphas)."""
    number = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
    m = re.fullmatch(f"{number}:{number}:\\s*(\\d+)\\s*", text or "")
    if not m:
        raise InputError(f"--alphas must look like -0.5:1.5:41 (A0:A1:COUNT), got {text!r}")
    a0, a1, count = float(m.group(1)), float(m.group(2)), int(m.group(3))
    if not (np.isfinite(a0) and np.isfinite(a1) and a0 < a1 and count >= 2):
        raise InputError(f"--alphas needs finite A0 < A1 and COUNT >= 2, got {text!r}")
    return np.linspace(a0, a1, count)  # (COUNT,)


def plan(args) -> Plan:
    """Every option of a network's landscape checked, before the model or data is read."""
    from functional_fit_cli.surface import parse_grid, parse_range

    refuse(args, LECTURE_ONLY, "applies to the lecture's models (--model linear, poly, sine), "
           "not to a network (--model FILE.py:NAME)")
    checkpoints = args.checkpoint or []
    if args.interpolate:
        if len(checkpoints) != 2:
            raise InputError(f"--interpolate needs two --checkpoint files (start and end), got "
                             f"{len(checkpoints)}")
        refuse(args, ("--grid", "--range", "--directions", "--direction-seed", "--vtp",
                      "--html"), "applies to a surface, not to --interpolate's line")
    else:
        refuse(args, ("--alphas",), "applies to --interpolate")
        if len(checkpoints) > 1:
            raise InputError(f"--checkpoint: a surface takes one, got {len(checkpoints)} (two "
                             "with --interpolate)")
    directions = _checks.choice("--directions", args.directions or "random", DIRECTIONS)
    if directions != "random":
        refuse(args, ("--direction-seed",), f"applies to --directions random, not {directions}")
    if args.dtype == "lecture":
        raise InputError("--dtype lecture applies to the lecture's models; a network computes "
                         "in float32 or float64 (default: its data's)")
    loss_name = _checks.choice("--loss", args.loss or "mse", tuple(registry.LOSSES))
    hessian = None if args.hessian is None else _checks.positive_int("--hessian", args.hessian)
    na, nb = parse_grid(args.grid or GRID)
    check_files(args, na, nb)
    grid_range = RANGE if args.range is None else parse_range(args.range)
    alphas = parse_alphas(args.alphas or ALPHAS) if args.interpolate else None
    seed = _checks.nonnegative_int("--direction-seed", args.direction_seed or 0)
    if args.batch_size is not None:
        _checks.positive_int("--batch-size", args.batch_size)
    return Plan(args.model, bool(args.interpolate), na, nb, grid_range, alphas, directions, seed,
                loss_name, registry.LOSSES[loss_name], args.batch_norm or "eval", hessian)


def run_dtype(args, x) -> np.dtype:
    """The network's dtype: --dtype's, or the data's floating dtype (float64 for other data)."""
    if args.dtype is not None:
        return np.dtype(args.dtype)
    if x.dtype in (np.float32, np.float64):
        return x.dtype
    return np.dtype(np.float64)


def network(args, p: Plan, x, dtype) -> Network:
    """The network of ``--model`` at its checkpoints (`torch_network` or `jax_network`)."""
    found = load_name("--model", p.spec, {})
    checkpoints = list(args.checkpoint or [])
    for path in checkpoints:  # a missing file is named before the module is built
        if not Path(path).is_file():
            what = "is not a file" if Path(path).exists() else "no such file"
            raise InputError(f"--checkpoint {path}: {what}")
    if _is_factory(found):
        example = _cast(np.asarray(x[:EXAMPLE_POINTS]), dtype)
        return torch_network(p.spec, found, checkpoints, example, dtype, p.batch_norm)
    if p.batch_norm != "eval":
        raise InputError(f"--batch-norm applies to a torch module; --model {p.spec} is a JAX "
                         "function")
    return jax_network(p.spec, found, checkpoints, dtype)


# --------------------------------------------------------------------------- the cost


def pilot_seconds(net: Network, loss, xb, yb) -> float:
    """Seconds of one compiled forward pass and loss over the batch (xb, yb), the second call
    timed (the first compiles)."""
    import jax

    params = net.params[0]
    if net.state is None:
        f = jax.jit(lambda p, s, x, y: loss(net.model(p, x), y))
    else:
        f = jax.jit(lambda p, s, x, y: loss(net.model(p, s, x)[0], y))
    jax.block_until_ready(f(params, net.state, xb, yb))
    start = time.perf_counter()
    jax.block_until_ready(f(params, net.state, xb, yb))
    return time.perf_counter() - start


def announce(passes: int, hvps: int, n: int, batches: int, seconds: float) -> str:
    """The line said before the work: the forward passes over the data, and about how long
    they take at the measured `seconds` per batch; each of at most `hvps` Hessian-vector
    products counts as `HVP_PASSES` passes."""
    hvp = f" and at most {hvps} Hessian-vector products (about {HVP_PASSES} passes each)" \
        if hvps else ""
    total = seconds * batches * (passes + HVP_PASSES * hvps)
    return (f"{passes} forward passes over the {n} data points ({batches} batch"
            f"{'es' if batches > 1 else ''}){hvp}: about {_duration(total)} besides compiling "
            f"(one pass over the first batch took {_duration(seconds)})")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min" if seconds < 7200 else f"{seconds / 3600:.3g} h"


def first_batch(data):
    """The first (x_batch, y_batch) of what the surface functions take as (x, y)."""
    x, y = data
    if y is not None:
        return x, y
    return next(iter(x.batches()))


# --------------------------------------------------------------------------- the run


def lanczos_products(p: Plan, size: int) -> int:
    """Hessian-vector products --hessian K and --directions hessian make at most: Lanczos'
    default bound in `functional_fit.hessian.eigenvalues`, min(p, max(4k + 40, 60)) for k
    eigenvalues of p parameters (fewer when the top ones converge first)."""
    calls = ([p.hessian] if p.hessian is not None else []) + ([2] if p.directions == "hessian"
                                                            and not p.interpolate else [])
    return sum(min(size, max(4 * k + 40, 60)) for k in calls)


def _eigenvalues(p: Plan, net: Network, data):
    """`functional_fit.hessian.Eigen` of the top K at the (first) checkpoint."""
    from functional_fit import hessian

    return hessian.eigenvalues(net.model, p.loss, *data, net.params[0], k=p.hessian,
                               state=net.state)


def _plane(p: Plan, net: Network, data):
    from functional_fit import surface

    if p.directions == "random":
        return surface.random_plane(net.params[0], seed=p.seed)
    return surface.hessian_plane(net.model, p.loss, *data, net.params[0], state=net.state)


def _surface(args, p: Plan, net: Network, data, batches: int, dtype) -> tuple:
    """(z (nb, na), a (na,), b (nb,), plane) of the network's surface around the checkpoint."""
    from functional_fit import surface
    from functional_fit_cli.surface import grid_values

    plane = _plane(p, net, data)
    a = grid_values(p.grid_range[0], p.na, dtype, args.range)  # (na,)
    b = grid_values(p.grid_range[1], p.nb, dtype, args.range)  # (nb,)
    with progress(p.na * p.nb * batches, "surface", "pt") as update:
        z = surface.loss_surface(net.model, p.loss, *data, a, b, plane=plane, progress=update,
                                 state=net.state)
    return np.asarray(z), a, b, plane


def _line(p: Plan, net: Network, data, batches: int):
    """`surface.interpolate` between the two checkpoints (the first one's state held)."""
    from functional_fit import surface

    with progress((p.alphas.shape[0] + 2) * batches, "line", "pt") as update:
        return surface.interpolate(net.model, p.loss, *data, net.params[0], net.params[1],
                                   p.alphas, state=net.state, progress=update)


def _line_figure(line, loss_name: str):
    """The loss against alpha, the checkpoints at 0 and 1 marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(line.alphas, line.losses, marker=".", label="loss along the line")
    for (alpha, loss), name in zip(line.ends, ("start", "end")):
        ax.plot([alpha], [loss], "o", label=f"{name} checkpoint (alpha {alpha:g})")
    ax.set_xlabel("alpha: (1 - alpha) start + alpha end")
    ax.set_ylabel(f"{loss_name} loss")
    ax.set_title(f"{loss_name} loss between the checkpoints; barrier {line.barrier:.4g}")
    ax.legend()
    return fig


def _write_line(args, p: Plan, line, eig) -> None:
    from functional_fit import plot, surface
    from functional_fit_cli.files import together

    with together() as outputs:
        if args.out:
            with open(outputs.file(args.out), "wb") as fh:
                np.savez(fh, alphas=line.alphas, losses=line.losses, barrier=line.barrier,
                         ends=np.asarray(line.ends), model=p.spec, loss=p.loss_name,
                         **({} if eig is None else {"eigenvalues": eig.values}))
        if args.h5:
            surface.save_h5(outputs.file(args.h5), line.alphas, None, line.losses)
        if args.plot:
            plot.save(_line_figure(line, p.loss_name), outputs.file(args.plot))


def _write_surface(args, p: Plan, z, a, b, plane, eig) -> None:
    from functional_fit import plot, surface
    from functional_fit_cli.files import together

    labels = ("a", "b") if p.directions == "random" else ("a (top eigenvector)",
                                                          "b (second eigenvector)")
    with together() as outputs:
        if args.out:
            flat = {k: np.asarray(surface.flatten(v)[0]) for k, v in zip(("origin", "u", "v"),
                                                                         plane)}
            with open(outputs.file(args.out), "wb") as fh:
                np.savez(fh, losses=z, a_values=a, b_values=b, **flat, directions=p.directions,
                         model=p.spec, loss=p.loss_name,
                         **({} if eig is None else {"eigenvalues": eig.values}))
        if args.h5:
            surface.save_h5(outputs.file(args.h5), a, b, z)
        if args.vtp:
            surface.save_vtp(outputs.file(args.vtp), a, b, z)
        if args.html:
            plot.interactive(outputs.file(args.html), a, b, z, axes=labels,
                             loss_name=p.loss_name, title=f"{p.loss_name} loss of {p.spec}")
        if args.plot:
            plot.save(plot.surface(z, a, b, loss_name=p.loss_name, axis_labels=labels,
                                   title=f"{p.loss_name} loss of {p.spec}"),
                      outputs.file(args.plot))


def _extremes(z, a, b) -> str:
    finite = np.isfinite(z)  # (nb, na)
    if not finite.any():
        return "no point of the grid has a finite loss"
    j, i = np.unravel_index(np.argmin(np.where(finite, z, np.inf)), z.shape)
    line = (f"min loss {z[j, i]:.10g} at a = {a[i]:.6g}, b = {b[j]:.6g}; max "
            f"{np.max(z[finite]):.10g}")
    if not finite.all():
        line += f"; {z.size - int(finite.sum())} of {z.size} points are not finite"
    return line


def run(args) -> int:
    """``functional-fit surface --model FILE.py:NAME``: the landscape of a network."""
    import jax

    start = time.perf_counter()
    p = plan(args)
    x, y = read_data(args, labels=p.loss_name == "cross_entropy")
    dtype = run_dtype(args, x)
    net = network(args, p, x, dtype)
    data = data_source(x, y, args.batch_size, dtype)
    n = x.shape[0]
    batches = 1 if args.batch_size is None else -(-n // args.batch_size)
    size = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(net.params[0]))
    print(f"functional-fit surface: {p.loss_name} loss of {p.spec} ({net.kind}, {size} "
          f"parameters, {np.dtype(dtype).name}) on {args.data} (n={n})", flush=True)
    passes = p.alphas.shape[0] + 2 if p.interpolate else p.na * p.nb
    print(announce(passes, lanczos_products(p, size), n, batches,
                   pilot_seconds(net, p.loss, *first_batch(data))), flush=True)
    eig = None if p.hessian is None else _eigenvalues(p, net, data)
    if p.interpolate:
        line = _line(p, net, data, batches)
        _write_line(args, p, line, eig)
        (a0, l0), (a1, l1) = line.ends
        finite = np.isfinite(line.losses)
        low = int(np.argmin(np.where(finite, line.losses, np.inf)))
        print(f"line of {line.alphas.shape[0]} points, alpha in [{line.alphas[0]:.6g}, "
              f"{line.alphas[-1]:.6g}]: loss {l0:.10g} at alpha {a0:g}, {l1:.10g} at alpha "
              f"{a1:g}; min {line.losses[low]:.10g} at alpha {line.alphas[low]:.6g}")
        print(f"barrier {line.barrier:.10g} (the largest rise above the straight line between "
              "the checkpoints' losses)")
    else:
        z, a, b, plane = _surface(args, p, net, data, batches, dtype)
        _write_surface(args, p, z, a, b, plane, eig)
        print(f"directions {p.directions}; grid {p.na} x {p.nb} = {p.na * p.nb} points, a in "
              f"[{a[0]:.6g}, {a[-1]:.6g}], b in [{b[0]:.6g}, {b[-1]:.6g}]")
        print(_extremes(z, a, b))
    if eig is not None:
        k = eig.values.shape[0]
        print(f"top {k} Hessian eigenvalue{'s' if k > 1 else ''}: "
              + ", ".join(f"{v:.10g}" for v in eig.values)
              + f" ({eig.iterations} Hessian-vector products)")
    wrote = [f for f in (args.out, args.plot, args.h5, args.vtp, args.html) if f]
    print(f"done in {time.perf_counter() - start:.2f} s"
          + (f"; wrote {', '.join(wrote)}" if wrote else ""))
    return 0


__all__ = ["ALPHAS", "BATCH_NORM", "DIRECTIONS", "GRID", "Network", "Plan", "RANGE",
           "add_options", "announce", "check_files", "data_source", "first_batch", "is_network",
           "jax_network", "network", "npz_arrays", "parse_alphas", "pilot_seconds", "plan",
           "read_checkpoint", "read_data", "run", "run_dtype", "torch_network"]
