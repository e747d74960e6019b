"""Benchmark: reading a CSV of 10^6 rows with `functional_fit.data.read_table`, side by side.

Contenders, on the same file in one run: `read_table` (numpy's C reader, `np.loadtxt`, after
a header sniff and a field count made with numpy); the reader it replaced (`csv.DictReader`
and a Python loop over the rows, as `read_csv` was until issue 13); the csv module's C reader
with the columns taken out by `operator.itemgetter` (no Python loop either); and bare
`np.loadtxt`, the floor. Medians over interleaved rounds; the file is written once, in a
temporary folder, and read from the page cache.

    .venv/bin/python benchmarks/bench_csv.py [--rows N] [--repeats R] [--no-write]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import sys
import tempfile
import time
from operator import itemgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _report import machine, write_section  # noqa: E402
from functional_fit.data import read_table  # noqa: E402


def old_reader(path):
    """`functional_fit.data.read_csv` before issue 13: DictReader, a Python loop over rows."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        reader.fieldnames = [h.strip() for h in reader.fieldnames]
        xs, ys = [], []
        for row in reader:
            xs.append(float(row["x"]))
            ys.append(float(row["y"]))
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)


def csv_module(path):
    """The csv module's C reader; the columns taken with itemgetter; numpy's string cast."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        text = fh.read()
    rows = list(csv.reader(io.StringIO(text.partition("\n")[2])))
    x = np.array(list(map(itemgetter(1), rows))).astype(np.float64)
    y = np.array(list(map(itemgetter(2), rows))).astype(np.float64)
    return x, y


def bare_loadtxt(path):
    xy = np.loadtxt(path, delimiter=",", usecols=(1, 2), skiprows=1, dtype=np.float64,
                    comments=None, ndmin=2, encoding="utf-8-sig")
    return xy[:, 0], xy[:, 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10**6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(args.rows), rng.standard_normal(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.csv")
        with open(path, "w") as fh:  # an id column too: the readers must pick x and y
            fh.write("id,x,y\n")
            fh.write("".join(f"{i},{a!r},{b!r}\n" for i, (a, b) in
                             enumerate(zip(x.tolist(), y.tolist()))))
        size_mb = os.path.getsize(path) / 1e6
        contenders = {
            "`read_table` (sniff, field count, `np.loadtxt`)": lambda: read_table(path)[:2],
            "bare `np.loadtxt` (the floor)": lambda: bare_loadtxt(path),
            "csv module's C reader + `itemgetter`": lambda: csv_module(path),
            "the old reader (`DictReader`, a Python loop)": lambda: old_reader(path),
        }
        for fn in contenders.values():  # each reads every number exactly
            got = fn()
            assert np.array_equal(got[0], x) and np.array_equal(got[1], y)
        times = {k: [] for k in contenders}
        for _ in range(args.repeats):  # interleaved, so all see the same background load
            for name, fn in contenders.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = med[next(iter(contenders))]
    rows = "\n".join(f"| {k} | {v:.3f} s | {v / ours:.2f} |" for k, v in med.items())
    load = os.getloadavg()[0]
    text = f"""## CSV input: 10^6 rows (`benchmarks/bench_csv.py`)

`benchmarks/bench_csv.py`, {time.strftime('%Y-%m-%d')}. Machine: {machine()}. Load average at
the start {load:.1f}.

A file of {args.rows:,} rows and three columns (`id,x,y`, each float written exactly by `repr`),
{size_mb:.0f} MB, read from the page cache; x and y come back exactly. Medians of
{args.repeats} interleaved rounds.

| reader | time | relative to `read_table` |
|---|---|---|
{rows}

Target: 10^6 rows in at most 1 s through a C reader, with no Python loop over the rows:
**{ours:.2f} s** ({'met' if ours <= 1 else 'NOT met'}). A file that holds a missing or
non-numeric value, or quoted fields, is read again row by row by the csv module (about the
old reader's time) to name the line and column, or to drop the rows with `--dropna`.
"""
    print(text)
    if not args.no_write:
        write_section("csv", text)


if __name__ == "__main__":
    main()
