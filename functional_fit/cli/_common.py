"""Options shared by the sub-commands: the data, the dtype, the model and loss, and progress."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from functional_fit import data as _data, registry
from functional_fit.checks import InputError, choice, nonnegative_int
from functional_fit.precision import DTYPES


def add_model_options(parser: argparse.ArgumentParser, *, model: str = "linear",
                      loss: str = "l1") -> None:
    """``--model``, ``--degree`` and ``--loss``, named in `functional_fit.registry`."""
    parser.add_argument("--model", default=model,
                        help=f"{', '.join(registry.MODELS)} (default {model})")
    parser.add_argument("--degree", type=int, default=None,
                        help="degree of the poly model (2); refused for other models")
    parser.add_argument("--loss", default=loss, help=f"{', '.join(registry.LOSSES)} (default {loss})")


def resolve_model(args):
    """(name, registry Model, degree, loss name, loss function) from the model options.

    ``--degree`` with a model that has none is refused, never ignored.
    """
    name = choice("--model", args.model, tuple(registry.MODELS))
    entry = registry.MODELS[name]
    if args.degree is not None and not entry.uses_degree:
        raise InputError(f"--degree applies to the poly model only, not to --model {name}")
    degree = nonnegative_int("--degree", 2 if args.degree is None else args.degree)
    loss = choice("--loss", args.loss, tuple(registry.LOSSES))
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


def cache_dir() -> Path:
    """Where the command line keeps JAX's compiled programs between runs.

    ``$FUNCTIONAL_FIT_CACHE_DIR`` when set, else ``functional-fit/jax`` in the user's cache
    folder (``$XDG_CACHE_HOME``, by default ``~/.cache``).
    """
    if os.environ.get("FUNCTIONAL_FIT_CACHE_DIR"):
        return Path(os.environ["FUNCTIONAL_FIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "functional-fit" / "jax"


def use_compilation_cache(args) -> Path | None:
    """Turn on JAX's persistent compilation cache for this process, unless ``--no-cache``.

    The command line, not the library, decides this, as it decides on 64-bit mode: importing
    `functional_fit` changes no global JAX setting. A second run loads what the first
    compiled (the lecture compiles about a hundred small programs: seconds of its start-up)
    instead of compiling it again; the compiled code, and so every number, is the same. Every
    program is kept, however quick its compilation (JAX keeps only those over 1 s by default).
    A folder that cannot be made leaves the cache off.

    Returns:
      The cache folder, or None when the cache is off.
    """
    if getattr(args, "no_cache", False):
        return None
    import jax

    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


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
    g.add_argument("--seed", type=int, default=None, help="seed of the synthetic data (42)")
    g.add_argument("--n", type=int, default=None, help="number of synthetic points (100)")
    g.add_argument("--noise", type=float, default=None, help="noise scale of the data (0.7)")


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

    ``meta["lecture"]`` is True when the data is exactly the lecture's (n=100, seed=42,
    noise=0.7), so the lecture's printed numbers apply.
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
    seed = 42 if args.seed is None else args.seed
    n = 100 if args.n is None else args.n
    noise = 0.7 if args.noise is None else args.noise
    try:
        x, y = _data.lecture_data(n=n, seed=seed, noise=noise)
    except InputError as exc:
        raise InputError(f"--{str(exc)}") from None
    meta = {
        "source": "synthetic",
        "n": n,
        "seed": seed,
        "noise": noise,
        "lecture": (n, seed, noise) == (100, 42, 0.7),
    }
    return x, y, meta
