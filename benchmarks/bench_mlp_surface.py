"""Benchmark: neural-net loss surfaces, `functional_fit` against the peers people use today.

On the same torch MLP weights, the same data and the same two directions (filter-normalized,
`functional_fit.surface.random_plane`), float32, side by side in one run:

- ``loss-landscapes`` (PyPI), its own ``random_plane``: a Python loop over the grid, one
  forward pass per point (its directions replaced by ours, and its normalization off, so that
  all three compute the same points);
- ``torch.func.vmap``: `parity.surface.module_surface`, ``functional_call`` vmapped over
  blocks of grid points;
- ``functional_fit``: `functional_fit.surface.loss_surface`, the grid's blocks as batched
  matrix products in one compiled call each.

Two networks: 1 -> 32 -> 32 -> 1 tanh on n = 100, and 1 -> 64 -> 64 -> 1 tanh on n = 1,000;
grids of 40 x 40 and 200 x 200 (loss-landscapes and torch.func.vmap are timed on the 40 x 40
grid and extrapolated per point to 200 x 200, where they would take minutes). The numbers are
checked to agree, and functional_fit's peak memory (in a process of its own) is compared with
its output's size.

loss-landscapes walks its grid with in-place steps that start every even column one step in
(its points along the second direction are 1..steps there, 0..steps-1 in odd columns); the
agreement check maps each of its points to ours accordingly.

    pip install loss-landscapes        # not a dependency of the project; the benchmark's peer
    .venv/bin/python benchmarks/bench_mlp_surface.py [--repeats R] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import parity  # noqa: E402
import parity.surface  # noqa: E402
from _report import ROOT, machine, median_time, write_section  # noqa: E402
from functional_fit import losses, models, surface  # noqa: E402
from functional_fit.tolerances import rel_err  # noqa: E402

NETS = {"small": ((1, 32, 32, 1), 100), "large": ((1, 64, 64, 1), 1000)}
TARGETS = {"small": 20.0, "large": 3.0}  # times faster than loss-landscapes, at least
SIDES = (40, 200)
MEMORY_MB = 256


def problem(name: str):
    sizes, n = NETS[name]
    module = parity.models.MLP(sizes, "tanh", seed=0)  # float32, torch's default init
    x = np.linspace(-1, 1, n, dtype=np.float32)[:, None]  # (n, 1)
    y = (np.sin(3 * x) + 0.1 * np.cos(17 * x)).astype(np.float32)  # (n, 1)
    params = parity.params.from_module(module)
    plane = surface.random_plane(params, seed=0)
    return module, x, y, params, plane


def ours(plane, x, y, side, distance=1.0):
    a = np.linspace(-distance, distance, side, dtype=np.float32)
    return surface.loss_surface(models.mlp, losses.mse, x, y, a, a, plane=plane), a


def theirs(module, plane, x, y, steps):
    """loss-landscapes' random_plane with our two directions, and the grid coordinates."""
    import loss_landscapes
    import loss_landscapes.main as main
    from loss_landscapes.metrics import Loss
    from loss_landscapes.model_interface.model_parameters import ModelParameters

    names = [k for k, _ in module.named_parameters()]
    dirs = [ModelParameters([torch.as_tensor(np.asarray(d[k])).clone() for k in names])
            for d in (plane.u, plane.v)]
    start_norm = ModelParameters([p.detach().clone() for p in module.parameters()]).model_norm()
    scale = [(start_norm / 1.0 / steps) / d.model_norm() for d in dirs]
    saved = main.rand_u_like, main.orthogonal_to
    main.rand_u_like, main.orthogonal_to = (lambda _: dirs[0]), (lambda _: dirs[1])
    try:
        metric = Loss(torch.nn.functional.mse_loss, torch.from_numpy(x), torch.from_numpy(y))
        grid = loss_landscapes.random_plane(module, metric, distance=1.0, steps=steps,
                                            normalization=None, deepcopy_model=True)
    finally:
        main.rand_u_like, main.orthogonal_to = saved
    return np.asarray(grid), scale  # (steps, steps): row i along u, column j along v


def agreement(module, plane, x, y, steps=12) -> float:
    """loss-landscapes' points against functional_fit's at the very same parameters."""
    grid, (su, sv) = theirs(module, plane, x, y, steps)
    a = ((np.arange(steps) - steps / 2) * su).astype(np.float32)  # its column-i offsets
    b = ((np.arange(steps + 1) - steps / 2) * sv).astype(np.float32)  # offsets 0..steps
    z = surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane)  # (steps+1, steps)
    mapped = np.array([[z[j + 1 - i % 2, i] for j in range(steps)] for i in range(steps)])
    return rel_err(mapped, grid)


def peak_memory_mb(name: str, side: int) -> tuple[float, float]:
    """(peak RSS growth during the surface, the output's size), both MB, in a fresh process,
    after a first call has compiled it (Linux: the peak is reset through /proc/self/clear_refs)."""
    code = f"""
import sys, json
sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
import numpy as np
from bench_mlp_surface import problem, ours
module, x, y, params, plane = problem({name!r})
ours(plane, x, y, {side})  # compile and warm up: compiling is not the computation
def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key)) / 1024
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the present
before = status("VmRSS")
z, _ = ours(plane, x, y, {side})
print(json.dumps([status("VmHWM") - before, z.nbytes / 2**20]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def median_s(fn, repeats, budget_s=2.0, most=50):
    """Median seconds of `fn` over at least `repeats` calls, and more (up to `most`) where
    they fit in `budget_s`: a call of a few milliseconds is noisy, and is given more repeats,
    whichever tool it is."""
    fn()  # warm up (compile, caches)
    t = time.perf_counter()
    fn()
    once = time.perf_counter() - t
    return median_time(fn, repeats=max(repeats, min(most, int(budget_s / max(once, 1e-6)))),
                       warmup=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows, notes = [], []
    for name in NETS:
        module, x, y, params, plane = problem(name)
        agree = agreement(module, plane, x, y)
        tvm = parity.surface.module_surface(module, torch.nn.functional.mse_loss,
                                            torch.from_numpy(x), torch.from_numpy(y),
                                            *(np.linspace(-1, 1, 12, dtype=np.float32),) * 2,
                                            plane=plane)
        agree_vmap = rel_err(ours(plane, x, y, 12)[0], tvm)
        side = SIDES[0]
        t_ll = median_s(lambda: theirs(module, plane, x, y, side), max(1, args.repeats - 2))
        t_tv = median_s(lambda: parity.surface.module_surface(
            module, torch.nn.functional.mse_loss, torch.from_numpy(x), torch.from_numpy(y),
            *(np.linspace(-1, 1, side, dtype=np.float32),) * 2, plane=plane), args.repeats)
        per_ll, per_tv = t_ll / side**2, t_tv / side**2
        for s in SIDES:
            t_ff = median_s(lambda: ours(plane, x, y, s), args.repeats)
            per_ff = t_ff / s**2
            extrap = "" if s == side else " (per point from 40 x 40)"
            rows.append(f"| {name}: {'-'.join(map(str, NETS[name][0]))}, n = {NETS[name][1]} | "
                        f"{s} x {s} | {per_ll * 1e6:.1f} us{extrap} | {per_tv * 1e6:.2f} us{extrap} "
                        f"| {per_ff * 1e6:.2f} us | {per_ll / per_ff:.1f}x | "
                        f"{per_tv / per_ff:.1f}x |")
            print(rows[-1], flush=True)
        growth, output = peak_memory_mb(name, SIDES[-1])
        notes.append(f"- {name}: loss-landscapes and functional_fit agree to {agree:.1e}, "
                     f"torch.func.vmap to {agree_vmap:.1e} (relative, float32); the 200 x 200 "
                     f"surface's peak memory grew {growth:.0f} MB for a {output:.2f} MB output "
                     f"(bound: output + {MEMORY_MB} MB); target at least {TARGETS[name]:g}x "
                     f"faster than loss-landscapes.")
    text = "\n".join([
        "## Neural-net loss surfaces against loss-landscapes (`benchmarks/bench_mlp_surface.py`)",
        "", f"{time.strftime('%Y-%m-%d')}. Machine: {machine()}. float32, the same weights, data "
        "and directions for all three; time per grid point, medians over repeats.", "",
        "| network | grid | loss-landscapes | torch.func.vmap | functional_fit | vs loss-landscapes "
        "| vs torch.func.vmap |", "|---|---|---|---|---|---|---|", *rows, "", *notes])
    print(text)
    if not args.no_write:
        write_section("mlp_surface", text)


if __name__ == "__main__":
    main()
