"""Benchmark: the runtime's defaults (`functional_fit.runtime.defaults`), each against its
neighbours, side by side on this machine.

- ``chunk_work``: a long fit runs as compiled calls of ``chunk_work`` units; the wall time of
  one such call, for the lecture's GD (full batch), its degree-12 Adam (batches of 10) and 256
  of those Adam runs vmapped (a sweep's chunk): about a second or less, so Ctrl-C is seen soon.
- ``chunk_points``: the L1 surface of the linear model, 10^6 points, float64, in calls of
  2^18, 2^20 (the CPU's default) and 2^22 points.
- ``vmap_items``: a network's surface (1 -> 32 -> 32 -> 1 tanh, n = 100, 200 x 200 points,
  float32) with vmapped blocks of 2^19, 2^21 (the CPU's default) and 2^23 numbers.
- ``dot_options``: the same network surface compiled with the CPU's dot options (XLA's YNNPACK
  dots, 512-bit vectors) and without them.

    .venv/bin/python benchmarks/bench_runtime.py [--repeats R] [--no-write]
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
from _report import machine, median_time, write_section  # noqa: E402
from functional_fit import engine, fit, losses, models, runtime, surface  # noqa: E402
from functional_fit import sweep as sw  # noqa: E402


def _one_call_seconds(run, steps_per_call: int, repeats: int) -> float:
    """Median wall time of a fit of exactly one compiled call of `steps_per_call` steps."""
    run(steps_per_call)  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(steps_per_call)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def chunk_work_rows(repeats: int) -> list[str]:
    """One compiled call of the CPU's default size, for three kinds of fit."""
    cpu = runtime.defaults("cpu")
    x, y = ff.lecture_data()
    rows = []
    gd_steps = engine.chunk_steps(100, 2, runtime=cpu)
    t = _one_call_seconds(lambda k: jax.block_until_ready(fit.gradient_descent(
        np.zeros(2), x, y, lr=0.5, steps=k, trace=False)), gd_steps, repeats)
    rows.append(f"| GD, linear, n = 100 (full batch) | {gd_steps} steps | {t:.3f} s |")
    per_epoch = 10
    epochs = max(1, engine.chunk_steps(10, 13, runtime=cpu) // per_epoch)
    t = _one_call_seconds(lambda e: jax.block_until_ready(fit.adam_sgd(
        np.zeros(13), x, y, ff.batch_order(100, e, seed=0), model=models.polynomial, lr=0.01,
        trace=False)), epochs, repeats)
    rows.append(f"| Adam, degree 12, batches of 10 | {epochs * per_epoch} steps | {t:.3f} s |")
    lrs = sw.log_lrs(1e-4, 1.0, 256)
    epochs = max(1, engine.chunk_steps(10, 13, runs=256, runtime=cpu) // per_epoch)
    t = _one_call_seconds(lambda e: jax.block_until_ready(sw.sweep(
        "adam", np.zeros(13), x, y, lrs, model=models.polynomial, epochs=e).loss), epochs,
        repeats)
    rows.append(f"| Adam, degree 12, 256 runs vmapped | {epochs * per_epoch} steps | {t:.3f} s |")
    return rows


def _net():
    """A 1 -> 32 -> 32 -> 1 tanh network's parameters, its random plane and data (float32)."""
    rng = np.random.default_rng(0)
    sizes, params = (1, 32, 32, 1), {}
    for k, (i, o) in enumerate(zip(sizes, sizes[1:])):
        params[f"{2 * k}.weight"] = (rng.uniform(-1, 1, (o, i)) / np.sqrt(i)).astype(np.float32)
        params[f"{2 * k}.bias"] = (rng.uniform(-1, 1, o) / np.sqrt(i)).astype(np.float32)
    x, y = ff.lecture_data()
    return surface.random_plane(params, seed=0), x[:, None].astype(np.float32), \
        y[:, None].astype(np.float32)


def surface_rows(repeats: int) -> tuple[list[str], list[str], list[str]]:
    """(chunk_points rows, vmap_items rows, dot_options rows): times side by side."""
    cpu = runtime.defaults("cpu")
    x, y = ff.lecture_data()
    a, b = np.linspace(-1, 1, 1000), np.linspace(-0.5, 5, 1000)
    chunks = []
    for points in (2**18, cpu.chunk_points, 2**22):
        rt = runtime.defaults("cpu", chunk_points=points)
        t = median_time(lambda: surface.loss_surface(models.linear, losses.l1, x, y, a, b,
                                                     runtime=rt), repeats)
        mark = " (default)" if points == cpu.chunk_points else ""
        chunks.append(f"| 2^{points.bit_length() - 1}{mark} | {t * 1e3:.1f} ms |")
    plane, xn, yn = _net()
    g = np.linspace(-1, 1, 200, dtype=np.float32)

    def net(rt):
        return lambda: surface.loss_surface(models.mlp, losses.mse, xn, yn, g, g, plane=plane,
                                            runtime=rt)

    blocks = []
    for items in (2**19, cpu.vmap_items, 2**23):
        t = median_time(net(runtime.defaults("cpu", vmap_items=items)), repeats)
        mark = " (default)" if items == cpu.vmap_items else ""
        blocks.append(f"| 2^{items.bit_length() - 1}{mark} | {t * 1e3:.1f} ms "
                      f"| {t / 200**2 * 1e6:.2f} us |")
    with_options = median_time(net(cpu), repeats)
    without = median_time(net(runtime.defaults("cpu", dot_options=())), repeats)
    dots = [f"| with `dot_options` (default) | {with_options * 1e3:.1f} ms |",
            f"| XLA's default compilation | {without * 1e3:.1f} ms |",
            f"| ratio | {without / with_options:.2f}x |"]
    return chunks, blocks, dots


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = ap.parse_args()
    fits = chunk_work_rows(args.repeats)
    chunks, blocks, dots = surface_rows(args.repeats)
    nl = "\n"
    text = f"""## The runtime's defaults (`benchmarks/bench_runtime.py`)

Machine: {machine()}. Medians of {args.repeats} calls after one that compiles; every row of a
table measured in the same run. The sizes are `functional_fit.runtime.defaults("cpu")`'s; each
function takes ``runtime=`` to change them.

`chunk_work`: one compiled call of a long fit (its steps as `engine.chunk_steps` sizes it), so
that Ctrl-C and a progress bar are seen about once a second at most.

| fit | steps in one call | one call |
|---|---|---|
{nl.join(fits)}

`chunk_points`: the L1 surface of the linear model, 10^6 points, float64.

| points per call | surface |
|---|---|
{nl.join(chunks)}

`vmap_items`: a 1 -> 32 -> 32 -> 1 tanh network's surface, n = 100, 200 x 200 points,
float32, in vmapped blocks of at most this many numbers of its largest intermediate.

| block workspace | surface | per point |
|---|---|---|
{nl.join(blocks)}

`dot_options`: the same surface, compiled with the CPU's dot options (XLA's YNNPACK dot fusion,
512-bit vectors) and without.

| compilation | surface |
|---|---|
{nl.join(dots)}
"""
    print(text)
    if not args.no_write:
        write_section("runtime", text)


if __name__ == "__main__":
    main()
