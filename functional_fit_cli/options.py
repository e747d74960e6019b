"""Options shared by the sub-commands: the data, the dtype, the model and loss, outputs, memory
and progress."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import stat
import sys
from pathlib import Path

from functional_fit import data as _data, registry
from functional_fit_cli import signals
from functional_fit_cli.cache import cache_dir
from functional_fit.checks import InputError, choice, first_line, nonnegative_int
from functional_fit.precision import DTYPES


#: The command line's names of a fit's length, in `functional_fit.data.fit_length`'s messages.
LENGTH_OPTIONS = {"steps": "--steps", "epochs": "--epochs", "batch_size": "--batch-size"}


def add_model_options(parser: argparse.ArgumentParser, *, model: str = "linear",
                      loss: str = "l1", files: bool = False) -> None:
    """``--model``, ``--degree`` and ``--loss``, named in `functional_fit.registry`; with
    `files`, ``--model`` also takes a network's ``FILE.py:NAME``."""
    network = (", or FILE.py:NAME: a torch module factory (exported with "
               "parity.export.to_jax) or a JAX function model(params, x)") if files else ""
    parser.add_argument("--model", default=model,
                        help=f"{', '.join(registry.MODELS)} (default {model}){network}")
    parser.add_argument("--degree", type=int, default=None,
                        help="degree of the poly model (2); refused for other models")
    losses = ", ".join(registry.REGRESSION_LOSSES)
    more = (f"; a network's: {', '.join(registry.LOSSES)} (default mse)") if files else ""
    parser.add_argument("--loss", default=loss, help=f"{losses} (default {loss}){more}")


def add_optimizer_options(parser: argparse.ArgumentParser, default: str = "gd") -> None:
    """``--optimizer NAME`` and ``--opt KEY=VALUE`` (repeatable), named in the registry."""
    lecture = ", ".join(k for k, v in registry.OPTIMIZERS.items() if v.batching != "any")
    torch_names = ", ".join(k for k, v in registry.OPTIMIZERS.items() if v.batching == "any")
    parser.add_argument("--optimizer", default=default,
                        help=f"the lecture's {lecture} (gd: full batch, lr/(i+1); sgd: "
                        f"lr/(epoch+1); adam), or torch.optim's {torch_names}, verified "
                        f"(functional_fit.optim) (default {default})")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword of a torch.optim optimizer, e.g. --opt momentum=0.9 "
                        "--opt nesterov=True; repeatable, checked against its signature")


def parse_opts(items, option: str = "--opt") -> dict:
    """The keywords of repeated ``--opt KEY=VALUE`` (or another `option`'s), each value a
    Python literal (`ast.literal_eval`: ``0.9``, ``True``, ``(0.9, 0.999)``, ``'min'``);
    InputError naming `option`."""
    import ast

    kwargs = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} must look like KEY=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise InputError(f"{option} {item}: {text!r} is not a number, True/False, a quoted "
                             "string or a tuple") from None
        kwargs[key.strip()] = value
    return kwargs


def resolve_optimizer(args):
    """The registry optimizer of ``--optimizer`` with the keywords of ``--opt``."""
    name = choice("--optimizer", args.optimizer, tuple(registry.OPTIMIZERS))
    kwargs = parse_opts(args.opt)
    try:
        return registry.optimizer(name, **kwargs)
    except InputError as exc:
        raise InputError(f"--opt: {exc}") from None


def resolve_model(args):
    """(name, registry Model, degree, loss name, loss function) from the model options.

    ``--degree`` with a model that has none is refused, never ignored.
    """
    name = choice("--model", args.model, tuple(registry.MODELS))
    entry = registry.MODELS[name]
    if args.degree is not None and not entry.uses_degree:
        raise InputError(f"--degree applies to the poly model only, not to --model {name}")
    degree = nonnegative_int("--degree", 2 if args.degree is None else args.degree)
    loss = choice("--loss", args.loss, registry.REGRESSION_LOSSES)
    return name, entry, degree, loss, registry.LOSSES[loss]


def refuse(args, names, why: str) -> None:
    """InputError for the first option of `names` the user gave, saying `why` it does not apply."""
    for name in names:
        if getattr(args, name.lstrip("-").replace("-", "_")) is not None:
            raise InputError(f"{name} {why}")


@contextlib.contextmanager
def progress(total: int, desc: str, unit: str, *, delay: float = 1.0):
    """A tqdm bar on stderr, shown only when the work takes over `delay` s: yields ``update(k)``.

    ``update`` takes a count, or a step's name (counted as one and shown beside the bar).
    """
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "pt", file=sys.stderr,
               delay=delay, leave=False, disable=None)

    def update(done=1):
        signals.check()  # a Ctrl-C that Python dropped on its way: stop here
        if isinstance(done, str):
            bar.set_postfix_str(done, refresh=False)
            done = 1
        bar.update(done)

    try:
        yield update
    finally:
        bar.close()


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    """``--no-cache``: every command keeps JAX's compiled programs in `cache_dir` unless told."""
    parser.add_argument("--no-cache", action="store_true",
                        help=f"compile afresh: do not read or write JAX's compilation cache "
                        f"({cache_dir()}; $FUNCTIONAL_FIT_CACHE_DIR moves it)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data CSV | --seed S --n N --noise SIGMA`` (the lecture's data by default)."""
    g = parser.add_argument_group("data (the lecture's data by default)")
    g.add_argument("--data", metavar="CSV",
                   help="CSV file with a header row (UTF-8, a byte-order mark allowed; "
                   "delimiter ',', ';' or tab, sniffed); '-' reads standard input")
    g.add_argument("--x", metavar="COLUMN", default=None, help="the x column of --data (x)")
    g.add_argument("--y", metavar="COLUMN", default=None, help="the y column of --data (y)")
    g.add_argument("--dropna", action="store_true", default=None,
                   help="leave out rows of --data with a missing or non-numeric x or y, and "
                   "say how many")
    lecture = _data.LECTURE
    g.add_argument("--seed", type=int, default=None,
                   help=f"seed of the synthetic data ({lecture.seed})")
    g.add_argument("--n", type=int, default=None,
                   help=f"number of synthetic points ({lecture.n})")
    g.add_argument("--noise", type=float, default=None,
                   help=f"noise scale of the data ({lecture.noise})")


def _stdin():
    """Standard input as bytes (so the CSV reader checks its encoding), or InputError."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    if stream is None:
        raise InputError("--data -: standard input is closed")
    return stream


def add_dtype_option(parser: argparse.ArgumentParser, default: str = "lecture") -> None:
    parser.add_argument(
        "--dtype",
        default=default,
        choices=DTYPES,
        help=f"precision mode, one of {', '.join(DTYPES)} (default {default}): "
        "'lecture' keeps float32 parameters with float64 data, as the lecture does",
    )


def load_data(args) -> tuple:
    """(x, y, meta) from the parsed data options; meta describes the data for JSON output.

    ``meta["lecture"]`` is True when the data is exactly the lecture's (`data.LECTURE`), so the
    lecture's printed numbers apply.
    """
    synthetic = (args.seed, args.n, args.noise)
    if args.data is not None:
        if any(v is not None for v in synthetic):
            raise InputError("--data cannot be combined with --seed, --n or --noise")
        x_col = "x" if args.x is None else args.x
        y_col = "y" if args.y is None else args.y
        source = _stdin() if args.data == "-" else args.data  # "-": standard input, as Unix tools
        table = _data.read_table(source, x_col, y_col, dropna=bool(args.dropna))
        if table.dropped:  # said once, on stderr, so that --json output stays one object
            print(f"functional-fit {args.command}: --dropna left out {table.dropped} row(s) of "
                  f"{args.data} with a missing or non-numeric {x_col} or {y_col}",
                  file=sys.stderr)
        return table.x, table.y, {
            "source": "csv", "path": str(args.data), "n": int(table.x.shape[0]),
            "lecture": False, "columns": [x_col, y_col], "dropped": table.dropped}
    refuse(args, ("--x", "--y", "--dropna"), "applies to --data only")
    lecture = _data.LECTURE
    seed = lecture.seed if args.seed is None else args.seed
    n = lecture.n if args.n is None else args.n
    noise = lecture.noise if args.noise is None else args.noise
    try:
        x, y = _data.lecture_data(n=n, seed=seed, noise=noise)
    except InputError as exc:
        raise InputError(f"--{str(exc)}") from None
    meta = {
        "source": "synthetic",
        "n": n,
        "seed": seed,
        "noise": noise,
        "lecture": (n, seed, noise) == tuple(lecture),
    }
    return x, y, meta


# --------------------------------------------------------------------------- FILE.py:NAME


def _split(option: str, spec: str) -> tuple[Path, str]:
    """``FILE.py:NAME`` -> (the file, NAME); InputError naming `option`."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise InputError(f"{option} must look like FILE.py:NAME, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        what = "is not a file" if file.exists() else "does not exist"
        raise InputError(f"{option} {spec}: {path!r} {what}")
    return file, name


def _import(option: str, file: Path, spec: str):
    """The module of `file`, imported under a private name with its folder on ``sys.path``;
    InputError naming `option` when it fails to import."""
    name = "_functional_fit_file_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    loader = importlib.util.spec_from_file_location(name, file)
    if loader is None:
        raise InputError(f"{option} {spec}: {str(file)!r} is not a Python file")
    module = importlib.util.module_from_spec(loader)
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        loader.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise InputError(f"{option} {spec}: importing {str(file)!r} failed "
                         f"({first_line(exc)})") from None
    finally:
        sys.path.remove(folder)
    return module


def built_module(option: str, spec: str, found):
    """The ``nn.Module`` of ``FILE.py:NAME``: NAME itself when it is a module, else NAME called
    with no arguments (a factory, or a module class); InputError naming `option`."""
    import torch

    if isinstance(found, torch.nn.Module):
        return found
    if not callable(found):
        raise InputError(f"{option} {spec} is of type {type(found).__name__}, not a function "
                         "returning an nn.Module")
    try:
        module = found()
    except Exception as exc:
        raise InputError(f"{option} {spec}: calling it with no arguments failed "
                         f"({first_line(exc)})") from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{option} {spec} returned an object of type {type(module).__name__}, "
                         "not an nn.Module")
    return module


def load_name(option: str, spec: str, files: dict):
    """The object NAME of ``FILE.py:NAME``, its file imported once per run (`files`, keyed by
    the resolved path); InputError naming `option`."""
    file, name = _split(option, spec)
    key = file.resolve()
    if key not in files:
        files[key] = _import(option, file, spec)
    module = files[key]
    if not hasattr(module, name):
        defined = sorted(k for k in vars(module) if not k.startswith("_"))
        raise InputError(f"{option} {spec}: {str(file)!r} defines no {name!r} (it defines "
                         f"{', '.join(defined) or 'nothing public'})")
    return getattr(module, name)


# --------------------------------------------------------------------------- outputs
# Output paths are checked by the parser, before anything is computed: a bad one is one line
# naming the option and exit status 2, not a traceback after the whole computation. What
# needs two options at once (an output that is the input, two outputs that are one file, a
# folder that holds the user's files without --overwrite) is checked by `check_outputs`.

#: Bytes a temporary name adds to an output's name (``.NAME.xxxxxxxx`` and ``.old.``).
TEMP_NAME_BYTES = 16


class OutputPath(str):
    """An output path as typed (a ``str``), knowing its option and kind ("file" or "folder")."""

    option: str
    kind: str
    names: object  # for a folder: names() -> the file names the command writes in it


def _output(text: str, option: str, kind: str, names=None) -> OutputPath:
    out = OutputPath(text)
    out.option, out.kind, out.names = option, kind, names
    return out


def _shown(text: str) -> str:
    """A path as typed, quoted; a very long one shortened in the middle."""
    return repr(str(text)) if len(text) <= 200 else repr(text[:100] + "…" + text[-50:])


def _limit(folder, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def _check_lengths(text: str) -> None:
    """Refuse a path, or a name in it, longer than the system allows (with a temporary's name)."""
    folder = os.path.dirname(os.path.abspath(text)) or os.sep
    longest_path = _limit(os.sep, "PC_PATH_MAX", 4096)
    if len(os.fsencode(os.path.abspath(text))) + TEMP_NAME_BYTES >= longest_path:
        raise argparse.ArgumentTypeError(f"{_shown(text)}: the path is longer than this system "
                                         f"allows ({longest_path} bytes)")
    parts = Path(text).parts
    longest = _limit(folder, "PC_NAME_MAX", 255)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1  # its temporary's name is longer by TEMP_NAME_BYTES
        if len(os.fsencode(part)) + (TEMP_NAME_BYTES if last else 0) > longest:
            note = f", less {TEMP_NAME_BYTES} for a temporary name" if last else ""
            raise argparse.ArgumentTypeError(
                f"{_shown(text)}: the name {_shown(part)} is longer than this file system "
                f"allows ({longest} bytes{note})")


def _status(text: str) -> os.stat_result | None:
    """os.stat of `text` (following links), None when there is nothing there."""
    try:
        return os.stat(text)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a loop of links, no permission on a folder above, ...
        raise argparse.ArgumentTypeError(f"{_shown(text)}: {exc.strerror or exc}") from None


def _writable_folder(option: str, text: str, folder: Path) -> None:
    status = _status(str(folder))
    if status is None:
        raise argparse.ArgumentTypeError(f"{_shown(text)}: folder {_shown(str(folder))} does "
                                         "not exist")
    if not stat.S_ISDIR(status.st_mode):
        raise argparse.ArgumentTypeError(f"{_shown(text)}: {_shown(str(folder))} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{_shown(text)}: folder {_shown(str(folder))} is not "
                                         "writable")


def output_file(option: str, *, plot: bool = False):
    """An argparse ``type`` for a file to write: its folder exists and is writable, the path is
    not a folder (nor a device or a pipe), its names fit the file system, and with
    ``plot=True`` its suffix is a format matplotlib writes. Returns an `OutputPath`."""

    def check(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError("an empty path; give a file name")
        _check_lengths(text)
        path = Path(text)
        status = _status(text)
        if (status is not None and stat.S_ISDIR(status.st_mode)) or text.endswith(os.sep):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
        if status is not None and not stat.S_ISREG(status.st_mode):
            raise argparse.ArgumentTypeError(f"{text!r} exists and is not a regular file")
        _writable_folder(option, text, path.parent)
        if plot:
            from matplotlib.figure import Figure  # only when a figure is asked for

            formats = Figure().canvas.get_supported_filetypes()
            suffix = path.suffix.lower().lstrip(".")
            if suffix not in formats:
                what = f"format {suffix!r}" if suffix else "a name without a suffix"
                raise argparse.ArgumentTypeError(
                    f"{text!r}: matplotlib cannot write {what}; end the name in one of "
                    f"{', '.join('.' + f for f in sorted(formats))}")
        return _output(text, option, "file")

    return check


def output_dir(option: str, names=None):
    """An argparse ``type`` for a folder a command fills as a whole (`functional_fit_cli.files.atomic_dir`).

    The folder may be new or exist; what it holds is checked by `check_outputs`, which knows
    whether ``--overwrite`` was given.

    Args:
      names: ``names() -> iterable of str``, the file names a run of the command writes: an
        existing folder without a manifest (from an earlier version) is replaced only when it
        holds nothing else.
    """

    def check(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError("an empty path; give a folder name")
        _check_lengths(text)
        path = Path(text)
        if path.name in ("", ".", "..") or path.resolve() in (Path.cwd(), *Path.cwd().parents):
            raise argparse.ArgumentTypeError(f"{text!r}: give a folder of its own (it is "
                                             "replaced as a whole), e.g. results")
        status = _status(text)
        if status is not None and not stat.S_ISDIR(status.st_mode):
            raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
        target = Path(os.path.realpath(text)) if path.is_symlink() else path
        _writable_folder(option, text, target.parent)
        return _output(text, option, "folder", names)

    return check


def _foreign(out: OutputPath) -> str | None:
    """The first entry of folder `out` that no run of the command wrote, or None."""
    from functional_fit_cli import files

    try:
        entries = sorted(os.scandir(out), key=lambda e: e.name)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{out.option} {_shown(out)}: cannot read it: {exc.strerror}") from None
    listed = files.manifest(out)
    if listed is None:  # no manifest: an earlier version's folder, or the user's own
        listed = set(out.names() if out.names else ())
    else:
        listed = set(listed) | {files.MANIFEST}
    for entry in entries:
        if not entry.is_file(follow_symlinks=False) or entry.name not in listed:
            return entry.name
    return None


def _identity(path: str):
    """What names one file: its device and inode when it exists, else its resolved path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def _within(path: str, folder: str) -> bool:
    inner, outer = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([inner, outer]) == outer


def check_outputs(args) -> None:
    """Refuse an output that is an input, two outputs that are one file, and a folder of the
    user's: InputError naming the option.

    Every spelling of a path is seen through (relative, ``..``, a symbolic or a hard link):
    files are compared by device and inode, new ones by their resolved path. An output folder
    (`output_dir`) is replaced as a whole: it must not hold the data, another output, or a
    file that no run of the command wrote (its manifest says which), unless ``--overwrite``.
    """
    outputs = [v for v in vars(args).values() if isinstance(v, OutputPath)]
    data = getattr(args, "data", None)
    inputs = [("--data", data)] if data not in (None, "-") else []
    inputs += [("--checkpoint", path) for path in getattr(args, "checkpoint", None) or []]
    for i, out in enumerate(outputs):
        for option, path in inputs:
            if _identity(out) == _identity(path) or (out.kind == "folder" and _within(path, out)):
                raise InputError(f"{out.option} {_shown(out)} would overwrite the input "
                                 f"{option} {_shown(path)}; write the output elsewhere")
        for other in outputs[i + 1:]:
            if _identity(out) == _identity(other):
                raise InputError(f"{out.option} and {other.option} name the same file "
                                 f"{_shown(out)}; give each its own")
            for folder, inner in ((out, other), (other, out)):
                if folder.kind == "folder" and _within(inner, folder):
                    raise InputError(f"{inner.option} {_shown(inner)} is inside "
                                     f"{folder.option} {_shown(folder)}, which is replaced as "
                                     "a whole; write it elsewhere")
        if out.kind == "folder" and not getattr(args, "overwrite", False):
            name = _foreign(out)
            if name is not None:
                raise InputError(f"{out.option} {_shown(out)} holds {name!r}, which a run of "
                                 "this command does not write; the folder is replaced as a "
                                 "whole, so give a new or empty one, or --overwrite")


# --------------------------------------------------------------------------- memory


def require_memory(needs) -> None:
    """Refuse a run whose memory estimate exceeds what the machine has (`functional_fit_cli.resources`).

    Args:
      needs: (bytes, what, option) for each large thing the run holds at once; the message
        names the option of the largest.
    """
    from functional_fit_cli import resources

    needs = [n for n in needs if n[0] > 0]
    if not needs:
        return
    total = sum(n[0] for n in needs)
    nbytes, what, option = max(needs, key=lambda n: n[0])
    if len(needs) > 1:
        what = f"the most for {what}, {resources.gib(nbytes)}"
    resources.require(total, what=what, change=option)


def data_points(args) -> int | None:
    """The number of synthetic data points the options ask for; None for ``--data``."""
    if args.data is not None:
        return None
    n = _data.LECTURE.n if args.n is None else args.n
    return n if isinstance(n, int) and n > 0 else None  # a bad --n is refused by load_data


#: Bytes a run holds per data point beyond its own arrays: x and y as made, checked, converted
#: to the run's dtype and handed to JAX (float64 each), and numpy's temporaries.
DATA_BYTES = 64


def load_data_within(args, needs) -> tuple:
    """`load_data`, within the memory the run will need: refused before synthetic data is made
    (or after a CSV is read) when it would not fit.

    Args:
      needs: ``needs(n) -> [(bytes, what, option), ...]``, the run's estimate for n data
        points (`require_memory`), the data itself not included.
    """
    n = data_points(args)
    if n is not None:
        require_memory([(DATA_BYTES * n, f"{n} data points", "--n"), *needs(n)])
    x, y, meta = load_data(args)
    if n is None:
        n = int(x.shape[0])
        require_memory([(DATA_BYTES * n, f"{n} data points", "--data"), *needs(n)])
    return x, y, meta


def json_text(doc, **kwargs) -> str:
    """`doc` as strict JSON: a non-finite float (NaN, inf), which JSON cannot hold, is null."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(a) for k, a in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(a) for a in v]
        return v

    return json.dumps(clean(doc), allow_nan=False, **kwargs)
