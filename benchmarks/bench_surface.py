"""Benchmark: the L1 loss surface of the linear model on the lecture's data, many ways.

Grids of 50^2, 1000^2 and 10^4^2 points (the lecture's range, w0 in [-1, 1], w1 in
[-0.5, 5]), float64 and float32, side by side in one run:

- ``functional_fit``: `functional_fit.surface.loss_surface` (streamed layout, default devices);
- ``jit(vmap)``: the plain ``jax.jit(jax.vmap(loss_at_one_point))`` over the whole grid;
- ``C loop``: a hand-vectorized C loop (data streamed, grid points in the vector lanes, one
  thread, ``gcc -O3 -march=native``), compiled here and called through ctypes; skipped
  without gcc. It does the model's arithmetic as written, ``|(w0 + w1 x_k) - y_k|``, three
  vector operations and an add per pair, as `functional_fit` does (hoisting ``w1 x_k - y_k``
  out of a row would be a different, cheaper sum);
- ``numpy``: broadcasting, in blocks of 2^14 grid points;
- ``torch broadcast`` and ``torch.func.vmap``: `parity.surface.loss_surface`, in blocks; torch
  runs with one thread (``torch.set_num_threads(1)``), like the others: on a shared 2-core
  machine its two spinning OpenMP threads otherwise make it slower and its times erratic;
- ``lecture loop``: cell 50 as written (one ``F.l1_loss(...).item()`` per point), at 50^2
  only; larger grids are extrapolated (x400, x40000) and marked so.

Implementations that would take minutes at 10^8 points are timed at 10^6 and extrapolated
(x100), marked "~". Repeats are interleaved (every contender once per round), so all see the
same background load; times are medians over rounds. A separate process runs the float64
10^8-point surface alone and reports its peak resident memory against the
800 MB output; another runs `loss_surface` on 2 CPU devices (``--xla_force_host_platform_
device_count=2``) to show the sharded path using both cores. The processes run first, while
this one is still small. Peak memory is the process's high-water mark, ``VmHWM``.

    .venv/bin/python benchmarks/bench_surface.py [--quick] [--no-write]

``--quick`` drops the 10^8 grid from the timing table (memory is still measured) and uses
fewer rounds.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import functional_fit as ff  # noqa: E402
from _report import ROOT, machine, write_section  # noqa: E402
from functional_fit import surface  # noqa: E402
from parity import losses as tl, models as tm, surface as tsurface  # noqa: E402

torch.set_num_threads(1)

SIDES = (50, 1000, 10_000)
A_RANGE, B_RANGE = (-1.0, 1.0), (-0.5, 5.0)  # cell 50
NUMPY_BLOCK = 2**14

C_SOURCE = r"""
#include <math.h>
#include <stddef.h>
#define T 512
#define SURFACE(NAME, REAL, ABS)                                                           \
void NAME(const REAL *a, size_t na, const REAL *b, size_t nb, const REAL *x,              \
          const REAL *y, size_t n, REAL *out) {                                           \
  for (size_t j = 0; j < nb; j++)                                                         \
    for (size_t i0 = 0; i0 < na; i0 += T) {                                               \
      size_t m = na - i0 < T ? na - i0 : T;                                               \
      REAL acc[T] = {0};                                                                  \
      for (size_t k = 0; k < n; k++) {                                                    \
        REAL bx = b[j] * x[k], yk = y[k];                                                 \
        for (size_t i = 0; i < m; i++) acc[i] += ABS((a[i0 + i] + bx) - yk);              \
      }                                                                                   \
      for (size_t i = 0; i < m; i++) out[j * na + i0 + i] = acc[i] / n;                   \
    }                                                                                     \
}
SURFACE(surface_f64, double, fabs)
SURFACE(surface_f32, float, fabsf)
"""


def c_loop():
    """The C loop as ``f(a, b, x, y) -> (nb, na)`` numpy, or None without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    tmp = Path(tempfile.mkdtemp())
    (tmp / "s.c").write_text(C_SOURCE)
    subprocess.run([gcc, "-O3", "-march=native", "-shared", "-fPIC", str(tmp / "s.c"), "-o",
                    str(tmp / "s.so")], check=True)
    lib = ctypes.CDLL(str(tmp / "s.so"))

    def run(a, b, x, y):
        out = np.empty((b.shape[0], a.shape[0]), a.dtype)
        fn = lib.surface_f64 if a.dtype == np.float64 else lib.surface_f32
        ptr = lambda v: v.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        size = ctypes.c_size_t
        fn(ptr(a), size(a.shape[0]), ptr(b), size(b.shape[0]), ptr(x), ptr(y), size(x.shape[0]),
           ptr(out))
        return out

    return run


def numpy_surface(a, b, x, y):
    """numpy broadcasting in blocks: (G, 1) grid points against (n,) data -> (G,)."""
    out = np.empty(b.shape[0] * a.shape[0], a.dtype)
    for start in range(0, out.shape[0], NUMPY_BLOCK):
        q = np.arange(start, min(start + NUMPY_BLOCK, out.shape[0]))  # (G,)
        w0, w1 = a[q % a.shape[0]], b[q // a.shape[0]]  # (G,)
        out[q] = np.abs(w0[:, None] + w1[:, None] * x - y).mean(axis=1)  # (G, n) -> (G,)
    return out.reshape(b.shape[0], a.shape[0])


@jax.jit
def plain_vmap(a, b, x, y):
    """``jit(vmap(loss_at_one_point))`` over the grid: (nb, na)."""
    at = lambda w0, w1: ff.losses.l1(ff.models.linear(jnp.stack([w0, w1]), x), y)  # noqa: E731
    return jax.vmap(jax.vmap(at, in_axes=(0, None)), in_axes=(None, 0))(a, b)


def lecture_loop(a, b, x, y):
    """Cell 50, as written (with the dtype of a and b for the parameters)."""
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    (u, v) = np.meshgrid(a, b)
    ws = np.vstack((u.flatten(), v.flatten())).transpose()
    return np.array([F.l1_loss(ty, tm.SimpleLinearModel(w)(tx)).item() for w in ws]).reshape(u.shape)


def contenders(dtype, c):
    ff_surface = lambda a, b, x, y: surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b)  # noqa: E731
    torch_way = lambda method: (  # noqa: E731
        lambda a, b, x, y: tsurface.loss_surface(tm.linear, tl.l1, x, y, a, b, method=method, dtype=dtype))
    out = {
        "functional_fit": ff_surface,
        "jit(vmap)": lambda a, b, x, y: np.asarray(plain_vmap(a, b, x, y)),
        "C loop": c,
        "numpy": numpy_surface,
        "torch broadcast": torch_way("broadcast"),
        "torch.func.vmap": torch_way("vmap"),
        "lecture loop": lecture_loop,
    }
    return {k: v for k, v in out.items() if v is not None}


# Largest grid side each contender is timed at; beyond it the time is extrapolated.
MEASURED_UP_TO = {"functional_fit": 10_000, "C loop": 10_000, "jit(vmap)": 1000, "numpy": 1000,
                  "torch broadcast": 1000, "torch.func.vmap": 1000, "lecture loop": 50}

MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, time
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import functional_fit as ff
    from functional_fit import surface

    def status_mb(key):  # VmHWM, not ru_maxrss: a child inherits its parent's ru_maxrss
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith(key)) / 1024

    x, y = ff.lecture_data()
    a, b = np.linspace(-1, 1, SIDE), np.linspace(-0.5, 5, SIDE)
    surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a[:50], b[:50])  # start the runtime
    before = status_mb("VmRSS")
    t = time.perf_counter()
    z = surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b)  # compiles, too
    first = time.perf_counter() - t
    peak = status_mb("VmHWM")
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b)
        times.append(time.perf_counter() - t)
    print(json.dumps({"before_mb": before, "peak_mb": peak, "output_mb": z.nbytes / 2**20,
                      "first": first, "median": sorted(times)[len(times) // 2] if times else None,
                      "devices": len(jax.devices())}))
    """
)


def in_subprocess(side: int, devices: int | None = None, repeats: int = 0) -> dict:
    env = dict(os.environ)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.replace("SIDE", str(side)).replace("REPEATS", str(repeats))],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="no 10^8 timings; fewer rounds")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = ap.parse_args()
    started = time.perf_counter()
    load = os.getloadavg()
    memory = in_subprocess(10_000)
    print("memory", memory, flush=True)
    two = in_subprocess(1000, devices=2, repeats=9) if jax.devices()[0].platform == "cpu" else None
    one = in_subprocess(1000, repeats=9)
    print("devices", one, two, flush=True)
    x64, y64 = ff.lecture_data()
    c = c_loop()
    sides = SIDES[:2] if args.quick else SIDES
    rounds = {50: 9, 1000: 7 if args.quick else 15, 10_000: 5}
    results = {}  # (dtype, side, name) -> (seconds, measured?)
    for dtype in ("float64", "float32"):
        x, y = x64.astype(dtype), y64.astype(dtype)
        impls = contenders(dtype, c)
        for side in sides:
            a = np.linspace(*A_RANGE, side, dtype=dtype)
            b = np.linspace(*B_RANGE, side, dtype=dtype)
            timed = {k: f for k, f in impls.items() if side <= MEASURED_UP_TO[k]}
            reference = None
            for name, f in timed.items():  # warm-up (compilation) and a check of every answer
                z = f(a, b, x, y)
                reference = z if reference is None else reference
                rtol = 1e-12 if dtype == "float64" else 1e-5
                if not np.allclose(z, reference, rtol=rtol, atol=0):
                    raise AssertionError(f"{name} disagrees with functional_fit at {side}^2 {dtype}")
            times = {k: [] for k in timed}
            for _ in range(rounds[side]):
                for name, f in timed.items():
                    t = time.perf_counter()
                    f(a, b, x, y)
                    times[name].append(time.perf_counter() - t)
            for name in impls:
                if name in times:
                    results[dtype, side, name] = (statistics.median(times[name]), True)
                else:  # extrapolate from the largest measured side, linear in the points
                    base = max(s for s in sides if s <= MEASURED_UP_TO[name])
                    t, _ = results[dtype, base, name]
                    results[dtype, side, name] = (t * (side / base) ** 2, False)
            print(dtype, side, {k: fmt_time(v[0]) for (d, s, k), v in results.items()
                                if d == dtype and s == side}, flush=True)

    names = list(contenders("float64", c))
    lines = [
        "## Loss surfaces (`benchmarks/bench_surface.py`)",
        "",
        f"Machine: {machine()}. Load average at the start {load[0]:.1f} (a shared machine: "
        "ratios measured side by side are what to read).",
        "",
        "L1 loss surface of the linear model on the lecture's data (n = 100), grid over cell 50's "
        f"range. Wall time, median over interleaved rounds ({', '.join(f'{s}²: {rounds[s]}' for s in sides)}); "
        "in brackets, the time relative to functional_fit in the same run. "
        "\"~\" marks a time extrapolated linearly in the points from the largest grid measured "
        "(the lecture loop from 50², numpy, torch and jit(vmap) from 1000²), not measured.",
        "",
    ]
    for dtype in ("float64", "float32"):
        header = "| " + dtype + " | " + " | ".join(f"{s}² = {s * s:.0e} points" for s in sides) + " |"
        lines += [header, "|---" * (len(sides) + 1) + "|"]
        for name in names:
            cells = []
            for side in sides:
                t, measured = results[dtype, side, name]
                ratio = t / results[dtype, side, "functional_fit"][0]
                cells.append(f"{'' if measured else '~'}{fmt_time(t)} ({ratio:.3g}×)")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    r = {k: results["float64", 1000, k][0] / results["float64", 1000, "functional_fit"][0] for k in names}
    lines += [
        "Targets (float64, 10⁶ points): numpy / functional_fit = "
        f"{r['numpy']:.3g}× (target ≥ 25×); torch.func.vmap / functional_fit = "
        f"{r['torch.func.vmap']:.3g}× (≥ 25×); functional_fit / jit(vmap) = {1 / r['jit(vmap)']:.3g}"
        + (f"; functional_fit / C loop = {1 / r['C loop']:.3g} (target ≤ 1.3)." if "C loop" in r else "."),
        "",
        f"Memory, float64 10⁴ × 10⁴ = 10⁸ points, alone in a fresh process: peak resident "
        f"{memory['peak_mb']:.0f} MB; {memory['before_mb']:.0f} MB before the call (Python, "
        f"JAX, the data), output {memory['output_mb']:.0f} MB, so the call's workspace beyond "
        f"its output is {memory['peak_mb'] - memory['before_mb'] - memory['output_mb']:.0f} MB "
        f"(bound: 256 MB; the call compiles, too, and that counts). The call took "
        f"{fmt_time(memory['first'])}, compilation included.",
        "",
    ]
    if two is not None:
        lines += [
            "Devices: float64 10⁶ points, median of 9 calls after a first, each in a fresh "
            f"process: 1 CPU device {fmt_time(one['median'])}; 2 CPU devices "
            "(`XLA_FLAGS=--xla_force_host_platform_device_count=2`, the blocks sharded with "
            f"`jax.sharding`) {fmt_time(two['median'])}: {one['median'] / two['median']:.2g}× on "
            "this 2-core machine, shared with other work.",
            "",
        ]
    if jax.devices()[0].platform == "cpu":
        lines += [
            "GPU: not measured; no GPU was lent to the run that wrote this section. Re-run this "
            "script on a GPU machine to measure it (the same code; calls of 2^24 points).",
            "",
        ]
    lines.append(f"Whole benchmark: {time.perf_counter() - started:.0f} s.")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("surface", text)


if __name__ == "__main__":
    main()
