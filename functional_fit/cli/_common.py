"""Options shared by the sub-commands: where the data comes from, and the dtype."""

from __future__ import annotations

import argparse

from functional_fit import data as _data
from functional_fit._checks import InputError
from functional_fit.precision import DTYPES


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data CSV | --seed S --n N --noise SIGMA`` (the lecture's data by default)."""
    g = parser.add_argument_group("data (the lecture's data by default)")
    g.add_argument("--data", metavar="CSV", help="CSV file with a header and columns x and y")
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
        x, y = _data.read_csv(args.data)
        return x, y, {"source": "csv", "path": str(args.data), "n": int(x.shape[0]), "lecture": False}
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
