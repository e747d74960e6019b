"""Benchmark: the lecture's degree-12 Adam fit, compiled JAX vs the lecture's torch loop.

Side by side in one run: `functional_fit.fit.adam_sgd` (one compiled `lax.scan`, 5,000 steps)
against `parity.fit.adam_sgd` (the lecture's Python loop over a DataLoader with
torch.optim.Adam), same data, same batch order, float64; then the wall time of the whole
``functional-fit lecture`` command (start-up, compilation and both frameworks included).

    .venv/bin/python benchmarks/bench_lecture.py [--repeats R] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import torch  # noqa: E402

import functional_fit as ff  # noqa: E402
import parity  # noqa: E402
from _report import machine, median_time, write_section  # noqa: E402
from functional_fit import fit, losses, models  # noqa: E402
from functional_fit.tolerances import rel_err  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = ap.parse_args()

    x, y = ff.lecture_data()
    order = ff.batch_order(100, 500, seed=0)
    w0 = ff.zeros(13, "float64")

    def jax_fit():
        res = fit.adam_sgd(w0, x, y, order, model=models.polynomial, loss=losses.l1, lr=0.01, batch_size=10)
        return jax.block_until_ready(res)

    def torch_fit():
        m = parity.PolynomialModel(p=12, dtype=torch.float64)
        return parity.fit.adam_sgd(m, parity.losses.l1, parity.data.dataset(x, y), lr=0.01,
                                   nepochs=500, batch_size=10, order=order)

    t0 = time.perf_counter()
    first = jax_fit()
    compile_s = time.perf_counter() - t0
    torch_path = torch_fit()
    agree = rel_err(first.path, torch_path)  # every step, against the path's scale
    worst_step = max(rel_err(a, b) for a, b in zip(first.path[1:], torch_path[1:]))
    # Interleave the two so that both see the same background load.
    jax_times, torch_times = [], []
    for _ in range(args.repeats):
        jax_times.append(median_time(jax_fit, repeats=5, warmup=0))
        t = time.perf_counter()
        torch_fit()
        torch_times.append(time.perf_counter() - t)
    tj, tt = statistics.median(jax_times), statistics.median(torch_times)

    cli = Path(sys.executable).with_name("functional-fit")
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([str(cli), "lecture", "--json"], check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
    wall = statistics.median(walls)

    text = f"""## The lecture: degree-12 Adam fit and the whole `functional-fit lecture`

`benchmarks/bench_lecture.py`, {time.strftime('%Y-%m-%d')}. Machine: {machine()}.

`adam_abs_poly12`: degree-12 polynomial, L1 loss, Adam lr 0.01, 500 epochs of batch 10 on the
lecture's 100 points (5,000 steps), float64, the same batch order in both frameworks
(the two paths agree to {agree:.1e} relative to the path's scale; the worst single step against
its own scale, {worst_step:.1e}, is the first, where Adam divides a gradient that is zero up to
rounding by its epsilon: see `tests/test_trajectories.py::test_adam_first_step_on_a_balanced_batch`).
Medians of {args.repeats} interleaved rounds.

| what | time | ratio |
|---|---|---|
| JAX, compiled fit (`functional_fit.fit.adam_sgd`, one `lax.scan`) | {tj * 1e3:.1f} ms | 1 |
| torch, the lecture's loop (`parity.fit.adam_sgd`: DataLoader + `torch.optim.Adam`) | {tt:.2f} s | {tt / tj:.0f}x slower |
| JAX, first call (trace + compile + run) | {compile_s:.2f} s | |

Target: the compiled JAX fit at least 200x faster than the torch loop: **{tt / tj:.0f}x**
({'met' if tt / tj >= 200 else 'NOT met'}).

Whole `functional-fit lecture --json` (process start, imports, compilation, every step in both
frameworks), median of 3 runs: **{wall:.1f} s** wall (target at most 20 s:
{'met' if wall <= 20 else 'NOT met'}).
"""
    print(text)
    if not args.no_write:
        write_section("lecture", text)


if __name__ == "__main__":
    main()
