"""Benchmark: what `parity.compare` costs beyond the torch loop it checks (issue 22's target).

The small ResNet of "Real models" (`parity.models.ResNet(3, 4, 5)`: BatchNorm, a strided basic
block, Dropout 0.2; its JAX twin `functional_fit.models.resnet`), float64, 640 random 3 x 8 x 8
images of 5 classes, Adam at lr 0.01, 10 epochs of batches of 32: 200 steps. Side by side,
interleaved round by round:

- the torch loop alone: `parity.fit.train` (a DataLoader in the same batch order,
  ``torch.optim.Adam``, torch's own dropout);
- `parity.compare` of the twin against the module, on the same data and steps: both fits
  (torch's replaying JAX's dropout masks), the diagnostics at the start, the layer recording,
  and whatever else compare does (the findings' confirmation runs, once it has them);
- `parity.compare` of a planted bug: BatchNorm's momentum 0.01 on the JAX side (flax's default
  read as torch's), which parts in the running statistics at step 1.

Overhead = (compare - torch loop) / torch loop, from the medians over fresh processes, the
torch loop timed in the same process. JAX's compilation in four states (`STATES`): **cold**,
the first compare in a fresh process, compiling everything; **persistent cache**, the first
compare in a fresh process whose JAX compilation cache (the command line's, on by default)
holds the programs: ``functional-fit compare`` from its second run on; **in process**, a
second compare in the same process, without the persistent cache and with it (a test session).
Then where a compare's time goes (cProfile: each function that compare calls, and JAX's
tracing, lowering and compiling), and JAX's fit alone.

    .venv/bin/python benchmarks/bench_compare.py [--repeats R] [--processes K] [--threads T]
                                                 [--baseline REV] [--no-write]
"""

from __future__ import annotations

import argparse
import cProfile
import copy
import datetime
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import functional_fit as ff  # noqa: E402
import parity  # noqa: E402
from _report import machine, write_section  # noqa: E402
from functional_fit import losses, models, optim  # noqa: E402

#: The fit: images, their size, classes, epochs, batch size (N / B * EPOCHS = 200 steps).
N, SIZE, CLASSES, EPOCHS, BATCH, LR = 640, 8, 5, 10, 32, 0.01
#: The issue's target: compare's cost beyond the torch loop, over the torch loop's own time.
TARGET = 0.5


def problem():
    """(x (N, 3, 8, 8), y (N,) labels, the torch ResNet, its batch order (EPOCHS, N))."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 3, SIZE, SIZE))
    y = rng.integers(0, CLASSES, size=N)
    module = parity.models.ResNet(3, 4, CLASSES, dropout=0.2, dtype=torch.float64, seed=0)
    return x, y, module, ff.batch_order(N, EPOCHS, seed=0)


def twin(params, state, x, key=None):
    """The JAX twin: (N, 3, H, W) -> ((N, 5) logits, new running statistics)."""
    return models.resnet(params, state, x, key=key, dropout=0.2)


def planted(params, state, x, key=None):
    """The twin with BatchNorm's momentum 0.01 (torch's is 0.1): a wrong running update."""
    return models.resnet(params, state, x, key=key, dropout=0.2, momentum=0.01)


def contenders(x, y, module, order) -> dict:
    """name -> a function of no arguments running it once."""
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def torch_loop():
        m = copy.deepcopy(module)
        parity.fit.train(m, F.cross_entropy, tx, ty, optimizer=torch.optim.Adam(
            m.parameters(), lr=LR), order=order, batch_size=BATCH)

    def compare(jax_model):
        c = parity.compare(jax_model, module, x, y, jax_loss=losses.cross_entropy,
                           torch_loss=F.cross_entropy, optimizer=("Adam", {"lr": LR}),
                           epochs=EPOCHS, batch_size=BATCH)
        assert c.steps == N // BATCH * EPOCHS and c.ok is (jax_model is twin), c.table()

    return {"torch loop": torch_loop, "compare": lambda: compare(twin),
            "compare, planted bug": lambda: compare(planted)}


def jax_fits(x, y, module, order) -> dict:
    """JAX's fit alone, as compare runs it (`functional_fit.fit.train`, the same key for the
    masks): with a new optimizer each call, as compare makes one (traced and lowered again),
    and with one optimizer (its compiled program reused: the run alone)."""
    p0 = {k: v.detach().numpy() for k, v in module.named_parameters()}
    s0 = {k: v.numpy() for k, v in module.named_buffers()}
    key, same = jax.random.key(0), optim.Adam(lr=LR)

    def fit(opt):
        ff.fit.train(p0, x, y, model=twin, loss=losses.cross_entropy, optimizer=opt, state=s0,
                     key=key, order=order, batch_size=BATCH)

    return {"JAX's fit, a new optimizer": lambda: fit(optim.Adam(lr=LR)),
            "JAX's fit, compiled program reused": lambda: fit(same)}


def timed(fn) -> float:
    """Wall time of one call of `fn`, in seconds."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rounds(runs: dict, repeats: int) -> dict:
    """name -> wall times of `repeats` interleaved rounds (every contender once a round)."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    return times


# --------------------------------------------------------------------------- the profile

#: JAX's phases, by the function of jax._src that does each (cumulative time).
JAX_PHASES = {"tracing": "_trace_for_jit", "lowering": "lower_sharding_computation",
              "compiling, or reading the persistent cache": "compile_or_get_cached",
              "of which compiling": "backend_compile_and_load"}


def profile(fn) -> dict:
    """One call of `fn` under cProfile: {"total", "parts": [(callee of compare, seconds)],
    "jax": {phase: seconds}}."""
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.runcall(fn)
    total = time.perf_counter() - t
    stats = pstats.Stats(prof)
    stats.calc_callees()
    top = next(f for f in stats.stats if f[2] == "compare" and f[0].endswith(
        os.path.join("comparison", "compare.py")))
    parts = sorted(((f"{Path(f[0]).parent.name}/{Path(f[0]).name}:{f[2]}", v[3])
                    for f, v in stats.all_callees[top].items()), key=lambda p: -p[1])
    phases = {}
    for phase, name in JAX_PHASES.items():
        phases[phase] = sum(v[3] for f, v in stats.stats.items()
                            if f[2] == name and "jax" in f[0])
    return {"total": total, "parts": [p for p in parts if p[1] >= 0.01], "jax": phases}


# --------------------------------------------------------------------------- fresh processes

#: The compilation states of a compare, by its place in a fresh process and JAX's persistent
#: cache: (first or second compare in the process, cache on).
STATES = {"cold: the first compare in a fresh process": ("first", False),
          "persistent cache: the first compare in a fresh process, the cache warm":
              ("first", True),
          "in process: a second compare, no persistent cache": ("second", False),
          "in process: a second compare, the persistent cache on": ("second", True)}
KINDS = ("compare", "compare, planted bug")


def child(kind: str, cache: str | None, threads: int, profiled: bool) -> dict:
    """In a fresh process: the torch loop (after one to warm torch up), the first compare of
    `kind`, a second one, the torch loop again; with JAX's persistent cache at `cache`.
    `profiled`: both compares under cProfile, and no times."""
    torch.set_num_threads(threads)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    runs = contenders(*problem())
    runs["torch loop"]()
    if profiled:
        return {"first": profile(runs[kind]), "second": profile(runs[kind])}
    before = timed(runs["torch loop"])
    first, second = timed(runs[kind]), timed(runs[kind])
    return {"torch loop": statistics.median([before, timed(runs["torch loop"])]),
            "first": first, "second": second}


def fresh(tree: Path, kind: str, cache: str | None, threads: int,
          profiled: bool = False) -> dict:
    """`child` in a fresh Python process, importing the project from `tree`."""
    cmd = [sys.executable, __file__, "--child", kind, "--threads", str(threads)]
    cmd += (["--cache", cache] if cache else []) + (["--profiled"] if profiled else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(trees: dict, processes: int, threads: int) -> tuple[dict, dict]:
    """({(tree, kind, cache on): [child results]}, {cache on: profiled child of the first
    tree}): the children interleaved, so that every tree and state sees the same background
    load; each tree's cache filled first."""
    samples = {(tree, kind, cached): [] for tree in trees for kind in KINDS
               for cached in (False, True)}
    with tempfile.TemporaryDirectory() as folder:
        caches = {tree: str(Path(folder) / f"cache{i}") for i, tree in enumerate(trees)}
        for tree, path in trees.items():
            for kind in KINDS:
                fresh(path, kind, caches[tree], threads)  # fills the cache
        for _ in range(processes):
            for tree, kind, cached in samples:
                samples[tree, kind, cached].append(fresh(
                    trees[tree], kind, caches[tree] if cached else None, threads))
        first = next(iter(trees))
        profiles = {cached: fresh(trees[first], "compare", caches[first] if cached else None,
                                  threads, True) for cached in (False, True)}
    return samples, profiles


# --------------------------------------------------------------------------- the report


def table_rows(samples: dict, trees: dict) -> list[str]:
    """One row a state, kind and tree: medians over the processes, every run in brackets."""
    rows = []
    for label, (which, cached) in STATES.items():
        for kind in KINDS:
            for tree in trees:
                runs = samples[tree, kind, cached]
                c = statistics.median(r[which] for r in runs)
                t = statistics.median(r["torch loop"] for r in runs)
                every = ", ".join(f"{r[which]:.2f}" for r in runs)
                rows.append(f"| {label} | {kind} | {tree} | {c:.2f} s ({every}) | {t:.2f} s | "
                            f"**{(c - t) / t:.2f}** |")
    return rows


def profile_text(label: str, prof: dict) -> list[str]:
    parts = ", ".join(f"`{name}` {s:.2f} s" for name, s in prof["parts"])
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in prof["jax"].items())
    return [f"- **{label}** ({prof['total']:.2f} s under cProfile): {parts}.",
            f"  JAX, over the whole call: {phases}."]


def report(samples, profiles, trees, fits, threads, load,
           seconds) -> str:  # 7: the measurements and their circumstances
    lines = [
        "## `parity.compare`'s overhead on the small ResNet (`benchmarks/bench_compare.py`)", "",
        f"{datetime.date.today()}. Machine: {machine()}. torch threads: {threads}. Load "
        f"average at the start {load}: a shared machine, so the ratios measured side by side "
        "are what to read.", "",
        f"`parity.models.ResNet(3, 4, {CLASSES}, dropout=0.2)` and its twin "
        f"`functional_fit.models.resnet`, float64, {N} random 3 x {SIZE} x {SIZE} images, Adam "
        f"lr {LR}, {EPOCHS} epochs of batches of {BATCH}: {N // BATCH * EPOCHS} steps. Torch "
        "loop: `parity.fit.train` alone (DataLoader, `torch.optim.Adam`, torch's own dropout), "
        "in the same process. compare: `parity.compare` of the twin on the same data and "
        "steps; planted bug: the twin with BatchNorm's momentum 0.01. Overhead = (compare - "
        "torch loop) / torch loop, medians over fresh processes; every run in brackets.", "",
        "| JAX's compilation | what | tree | compare | torch loop | overhead |",
        "|---|---|---|---|---|---|", *table_rows(samples, trees), "",
        f"Target: overhead at most {TARGET} of the torch loop. JAX's fit alone "
        f"(`functional_fit.fit.train` as compare calls it, in one process, no persistent "
        "cache, medians): " + "; ".join(f"{k} {statistics.median(v):.2f} s"
                                         for k, v in fits.items()) + ".", "",
        f"Where a compare's time goes ({next(iter(trees))}; cProfile: the functions "
        "`compare` calls, cumulative; then JAX's phases over the whole call):", "",
        *profile_text("cold", profiles[False]["first"]),
        *profile_text("persistent cache", profiles[True]["first"]),
        *profile_text("in process, no persistent cache", profiles[False]["second"]),
        *profile_text("in process, the persistent cache on", profiles[True]["second"]), "",
        f"Whole benchmark: {seconds:.0f} s.",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds of JAX's fit alone (5)")
    ap.add_argument("--processes", type=int, default=3,
                    help="fresh processes per kind and cache state (3)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch's threads (1: on a 2-core machine shared with other work, "
                    "OpenMP's hand-offs cost more than this network's work)")
    ap.add_argument("--baseline", metavar="REV",
                    help="also measure the tree of this commit, side by side (git archive)")
    ap.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--profiled", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.cache, args.threads, args.profiled)))
        return
    start, load = time.perf_counter(), f"{os.getloadavg()[0]:.1f}"
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as old:
        trees = {"this tree": root}
        if args.baseline:
            archive = subprocess.run(["git", "-C", str(root), "archive", args.baseline],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            trees[f"`{args.baseline}`"] = Path(old)
        samples, profiles = measure(trees, args.processes, args.threads)
    fits = jax_fits(*problem())
    for fn in fits.values():
        fn()  # compiles
    text = report(samples, profiles, trees, rounds(fits, args.repeats), args.threads, load,
                  time.perf_counter() - start)
    print(text)
    if not args.no_write:
        write_section("compare", text)


if __name__ == "__main__":
    main()
