"""Options shared by the sub-commands: the data, the dtype, the model and loss, outputs, memory
and progress."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from functional_fit import data as _data, registry
from functional_fit_cli import signals
from functional_fit_cli.cache import cache_dir
from functional_fit.checks import InputError, choice, nonnegative_int
from functional_fit.precision import DTYPES


#: The command line's names of a fit's length, in `functional_fit.data.fit_length`'s messages.
LENGTH_OPTIONS = {"steps": "--steps", "epochs": "--epochs", "batch_size": "--batch-size"}


def add_model_options(parser: argparse.ArgumentParser, *, model: str = "linear",
                      loss: str = "l1") -> None:
    """``--model``, ``--degree`` and ``--loss``, named in `functional_fit.registry`."""
    parser.add_argument("--model", default=model,
                        help=f"{', '.join(registry.MODELS)} (default {model})")
    parser.add_argument("--degree", type=int, default=None,
                        help="degree of the poly model (2); refused for other models")
    parser.add_argument("--loss", default=loss, help=f"{', '.join(registry.REGRESSION_LOSSES)} (default {loss})")


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


def resolve_optimizer(args):
    """The registry optimizer of ``--optimizer`` with the keywords of ``--opt``."""
    import ast

    name = choice("--optimizer", args.optimizer, tuple(registry.OPTIMIZERS))
    kwargs = {}
    for item in args.opt:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--opt must look like KEY=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise InputError(f"--opt {item}: {text!r} is not a number, True/False or a tuple"
                             ) from None
        kwargs[key.strip()] = value
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
                   "delimiter ',', ';' or tab, sniffed)")
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
        table = _data.read_table(args.data, x_col, y_col, dropna=bool(args.dropna))
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


# --------------------------------------------------------------------------- outputs
# Output paths are checked by the parser, before anything is computed: a bad one is one line
# naming the option and exit status 2, not a traceback after the whole computation.


def _writable_folder(option: str, text: str, folder: Path) -> None:
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"{text!r}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: folder {str(folder)!r} is not writable")
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(Path(text).name)) > longest - 16:  # the temporary name adds a few
        raise argparse.ArgumentTypeError(f"{text[:40]!r}...: the name is longer than this "
                                         f"file system allows ({longest} bytes)")


def output_file(option: str, *, plot: bool = False):
    """An argparse ``type`` for a file to write: its folder exists and is writable, the path is
    not a folder (nor a device or a pipe), and with ``plot=True`` its suffix is a format
    matplotlib writes."""

    def check(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError("an empty path; give a file name")
        path = Path(text)
        if path.is_dir() or text.endswith(os.sep):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
        if path.exists() and not path.is_file():
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
        return text

    return check


def output_dir(option: str, suffixes=(".json", ".png", ".html")):
    """An argparse ``type`` for a folder a command fills as a whole (`functional_fit_cli.files.atomic_dir`).

    The folder may be new, or hold only files that a run of the command writes (names ending
    in `suffixes`): it is replaced as a whole, so anything else of the user's in it is refused.
    """

    def check(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError("an empty path; give a folder name")
        path = Path(text)
        if path.name in ("", ".", "..") or path.resolve() in (Path.cwd(), *Path.cwd().parents):
            raise argparse.ArgumentTypeError(f"{text!r}: give a folder of its own (it is "
                                             "replaced as a whole), e.g. results")
        if path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
        if path.is_dir():
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except OSError as exc:
                raise argparse.ArgumentTypeError(f"{text!r}: cannot read it: {exc.strerror}")
            for entry in entries:
                if not entry.is_file(follow_symlinks=False) or not entry.name.endswith(suffixes):
                    raise argparse.ArgumentTypeError(
                        f"{text!r} holds {entry.name!r}, which a run of this command does not "
                        "write; the folder is replaced as a whole, so give a new or empty one")
        _writable_folder(option, text, path.parent)
        return text

    return check


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
