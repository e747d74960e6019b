"""Benchmark: two versions of the code side by side, on the timings the other benchmarks take.

A refactor must not make anything slower. This checks out a git revision (the base, by default
``HEAD~1``) into a temporary worktree and times the same workloads in it and in the working
tree, alternating base and new in separate processes so that both see the same background
load. Each workload uses only API that both versions have:

- ``lecture_fit``: the lecture's degree-12 Adam fit, `functional_fit.fit.adam_sgd`, 5,000 steps;
- ``sweep``: 256 learning rates of that fit, `functional_fit.sweep.sweep("adam", ...)`;
- ``surface``: an L1 surface of the linear model, 10^6 points, float64;
- ``net_surface``: the MSE surface of a 1 -> 32 -> 32 -> 1 tanh network on the lecture's data,
  on a random plane (`surface.random_plane`), 200 x 200 points, float32;
- ``lecture_cli``: the whole ``functional-fit lecture --json`` (start-up and compiles included).

    .venv/bin/python benchmarks/bench_versions.py [--base REV] [--rounds R] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import ROOT, machine, write_section  # noqa: E402

#: Each workload: a child-process script printing one JSON number, the median seconds.
CHILD = r"""
import json, statistics, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import functional_fit as ff
from functional_fit import fit, losses, models

what, repeats = sys.argv[1], int(sys.argv[2])
x, y = ff.lecture_data()

def median(fn):
    fn()  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return statistics.median(times)

if what == "lecture_fit":
    order = ff.batch_order(100, 500, seed=0)
    w0 = ff.zeros(13, "float64")
    f = lambda: jax.block_until_ready(fit.adam_sgd(w0, x, y, order, model=models.polynomial,
                                                   loss=losses.l1, lr=0.01, batch_size=10))
elif what == "sweep":
    from functional_fit import sweep as sw
    lrs = sw.log_lrs(1e-4, 1.0, 256)
    f = lambda: jax.block_until_ready(sw.sweep("adam", ff.zeros(13, "float64"), x, y, lrs,
                                               model=models.polynomial, loss=losses.l1,
                                               epochs=500, batch_size=10).loss)
elif what == "surface":
    from functional_fit import surface
    a, b = np.linspace(-1, 1, 1000), np.linspace(-0.5, 5, 1000)
    f = lambda: surface.loss_surface(models.linear, losses.l1, x, y, a, b)
elif what == "net_surface":
    from functional_fit import surface
    rng = np.random.default_rng(0)
    sizes = (1, 32, 32, 1)
    params = {}
    for k, (i, o) in enumerate(zip(sizes, sizes[1:])):
        params[f"{2 * k}.weight"] = (rng.uniform(-1, 1, (o, i)) / np.sqrt(i)).astype(np.float32)
        params[f"{2 * k}.bias"] = (rng.uniform(-1, 1, o) / np.sqrt(i)).astype(np.float32)
    plane = surface.random_plane(params, seed=0)
    xn, yn = x[:, None].astype(np.float32), y[:, None].astype(np.float32)
    a = b = np.linspace(-1, 1, 200, dtype=np.float32)
    f = lambda: surface.loss_surface(models.mlp, losses.mse, xn, yn, a, b, plane=plane)
print(json.dumps(median(f)))
"""

WORKLOADS = ("lecture_fit", "sweep", "surface", "net_surface", "lecture_cli")
LABELS = {
    "lecture_fit": "the lecture's degree-12 Adam fit (`fit.adam_sgd`, 5,000 steps)",
    "sweep": "Adam sweep, 256 learning rates x 5,000 steps",
    "surface": "L1 surface, 10^6 points, float64",
    "net_surface": "network surface, 1-32-32-1 tanh, 200 x 200 points, float32",
    "lecture_cli": "`functional-fit lecture --json`, whole command",
}


def _time(tree: Path, what: str, repeats: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if what == "lecture_cli":
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "functional_fit", "lecture", "--json"], cwd=tree,
                       env=env, check=True, capture_output=True)
        return time.perf_counter() - t
    out = subprocess.run([sys.executable, "-c", CHILD, what, str(repeats)], cwd=tree, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD~1", help="the git revision to compare against")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per workload")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per round")
    ap.add_argument("--only", nargs="*", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = ap.parse_args()

    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    new_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), base_rev],
                       cwd=ROOT, check=True)
        try:
            rows = []
            for what in args.only:
                old, new = [], []
                for _ in range(args.rounds):  # alternate: both see the same background load
                    old.append(_time(base, what, args.repeats))
                    new.append(_time(ROOT, what, args.repeats))
                o, n = statistics.median(old), statistics.median(new)
                rows.append((what, o, n))
                print(f"{what:12s} base {o:8.4f} s  new {n:8.4f} s  new/base {n / o:.2f}",
                      flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           check=False)
    table = "\n".join(f"| {LABELS[w]} | {o:.4g} s | {n:.4g} s | {n / o:.2f} |" for w, o, n in rows)
    text = f"""## Before and after a change: `{base_rev}` against `{new_rev}`

`benchmarks/bench_versions.py --base {args.base}`, {time.strftime('%Y-%m-%d')}. Machine: {machine()}.
Each workload alternates base and new, {args.rounds} rounds, each a separate process timing
the median of {args.repeats} calls after one warm-up call (the CLI: one whole command). The
ratio is the median of the new times over the median of the base times.

| workload | base | new | new / base |
|---|---|---|---|
{table}
"""
    print(text)
    if not args.no_write:
        write_section("versions", text)


if __name__ == "__main__":
    main()
