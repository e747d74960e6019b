"""Benchmark: the lecture's L1 surface at 512-bit vectors, against the hand-vectorized C loop.

XLA's CPU loops vectorize at 256 bits unless told to prefer 512 (``xla_cpu_prefer_vector_width``),
while gcc's ``-march=native`` uses AVX-512 where the CPU has it. The streamed layout now passes
the runtime's ``stream_options`` (512) on the CPU. This script times, side by side and
interleaved (every contender once per round, medians over rounds), the 10^6-point L1 surface
of the linear model on the lecture's data, float64 and float32:

- ``functional_fit`` with the CPU's defaults (512-bit vectors);
- ``functional_fit`` with ``stream_options=()`` (XLA's 256);
- the C loop of `bench_surface.py` (one thread, ``gcc -O3 -march=native``).

It checks that the two compilations agree bit for bit and that the C loop agrees to rounding.

    .venv/bin/python benchmarks/bench_vector_width.py [--rounds R] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import functional_fit as ff  # noqa: E402
from _report import machine, write_section  # noqa: E402
from bench_surface import c_loop  # noqa: E402
from functional_fit import runtime, surface  # noqa: E402


def contenders(c):
    def ff_with(rt):
        return lambda a, b, x, y: surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a,
                                                       b, runtime=rt)

    out = {"functional_fit (512-bit)": ff_with(runtime.defaults("cpu")),
           "functional_fit (256-bit)": ff_with(runtime.defaults("cpu", stream_options=()))}
    if c is not None:
        out["C loop"] = c
    return out


def measure(dtype, rounds: int, c) -> tuple[dict, bool]:
    x, y = (v.astype(dtype) for v in ff.lecture_data())
    a, b = np.linspace(-1, 1, 1000, dtype=dtype), np.linspace(-0.5, 5, 1000, dtype=dtype)
    ways = contenders(c)
    values = {name: fn(a, b, x, y) for name, fn in ways.items()}  # compiles, and the values
    bitwise = np.array_equal(values["functional_fit (512-bit)"],
                             values["functional_fit (256-bit)"])
    if "C loop" in values:
        ref = values["functional_fit (512-bit)"]
        assert np.max(np.abs(values["C loop"] - ref) / ref) < (1e-12 if dtype == np.float64
                                                              else 1e-4)
    times = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn(a, b, x, y)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, bitwise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    c = c_loop()
    rows = ["| dtype | functional_fit, 512-bit | functional_fit, 256-bit | C loop | "
            "512-bit / C | 256-bit / C | bit for bit |", "|---|---|---|---|---|---|---|"]
    for dtype in (np.float64, np.float32):
        t, bitwise = measure(dtype, args.rounds, c)
        fast, slow = t["functional_fit (512-bit)"], t["functional_fit (256-bit)"]
        cl = t.get("C loop", float("nan"))
        rows.append(f"| {np.dtype(dtype).name} | {fast * 1e3:.2f} ms | {slow * 1e3:.2f} ms | "
                    f"{cl * 1e3:.2f} ms | {fast / cl:.2f}x | {slow / cl:.2f}x | "
                    f"{'yes' if bitwise else 'NO'} |")
    text = ("## The lecture's surface at 512-bit vectors\n\n"
            "`benchmarks/bench_vector_width.py`: the L1 surface of the linear model on the "
            "lecture's data, 1000 x 1000 points, the streamed layout compiled with XLA's "
            "`xla_cpu_prefer_vector_width=512` (the CPU runtime's `stream_options`, now the "
            "default) and without it, against the one-thread C loop of `bench_surface.py`; "
            f"interleaved, medians over {args.rounds} rounds.\n\n" + "\n".join(rows) +
            f"\n\nMachine: {machine()}\n")
    print(text)
    if not args.no_write:
        write_section("vector_width", text)


if __name__ == "__main__":
    main()
