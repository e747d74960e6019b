"""Benchmark: every GPU target in one short run, each figure next to its target.

Run on a machine with one GPU (about 4 minutes including compilation), from the repository's
root, with a Python that has jax (with its CUDA plugin), optax, numpy and torch; the package
need not be installed:

    python3 benchmarks/gpu.py [--budget SECONDS] [--out FILE | --no-write]

It writes the GPU section of BENCHMARKS.md (or FILE) with the device, the versions and:

- **L1 surface, 10^8 points (10^4 x 10^4), float32 and float64**: `functional_fit.surface`
  (kept on the device, a few layouts and block sizes tried; the best is reported), a plain
  ``jit(vmap)`` of the loss at one point, and ``torch.func.vmap`` in chunks that fit the GPU,
  side by side, and whether they agree. Targets (H100): 1.5 ms (float32), 3 ms (float64).
- **Adam sweep**: 16,384 learning rates of the lecture's degree-12 Adam fit (500 epochs of 10
  batches, 5,000 steps each), one vmapped compiled call. Target (H100): 150 ms.
- **One compiled fit**: the lecture's degree-12 Adam fit in JAX against the lecture's torch
  loop (`parity.fit.adam_sgd`, a DataLoader and torch.optim.Adam) on the same GPU.

The script watches the device time it is given (``--budget``, default 210 s): before each
figure it checks what is left, and when a figure would not fit it stops and writes what it
measured, saying what it skipped.

``--smoke`` runs the same code on the CPU with tiny sizes in seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the repo, not installed there

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import functional_fit as ff  # noqa: E402
from _report import machine, write_section  # noqa: E402
from functional_fit import losses, models, surface  # noqa: E402
from functional_fit import sweep as sw  # noqa: E402
from functional_fit_cli.files import write_text  # noqa: E402
from functional_fit.tolerances import rel_err  # noqa: E402

FULL = dict(side=10_000, lrs=16_384, epochs=500, repeats=10,
            net_sides={"small": 1000, "large": 500}, net_blocks=(None, 2**10, 2**12, 2**14))
SMOKE = dict(side=64, lrs=16, epochs=3, repeats=2,
             net_sides={"small": 8, "large": 6}, net_blocks=(None, 16))
#: What each figure is expected to take at most on one GPU, compile included, for the budget.
COST_S = {"surface float32": 40, "surface float64": 40, "sweep": 60, "fit": 40, "networks": 60}
TARGETS_MS = {"surface float32": 1.5, "surface float64": 3.0, "sweep": 150.0}


class Budget:
    """Seconds left of the device time given; `fits(cost)` says whether a figure still fits."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.skipped: list[str] = []

    def fits(self, name: str, cost: float) -> bool:
        if time.monotonic() + cost <= self.end:
            return True
        self.skipped.append(name)
        return False


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` (which blocks until its result is ready), in ms."""
    fn()  # compile and warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _verdict(ms: float, target: float, size: dict) -> str:
    if size is SMOKE:
        return "smoke sizes: not comparable with the target"
    return "met" if ms <= target else "not met"


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - the project installs torch
        return None, None
    return torch, ("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- surfaces


def surface_rows(dtype: str, size: dict, budget: Budget) -> list[str]:
    """The L1 surface of the linear model at side x side points, three ways."""
    x, y = (a.astype(dtype) for a in ff.lecture_data())
    a = np.linspace(-1, 1, size["side"], dtype=dtype)
    b = np.linspace(-0.5, 5, size["side"], dtype=dtype)
    points = a.size * b.size
    rows, results = [], {}

    def ours(layout, block):
        def run():
            return jax.block_until_ready(surface.loss_surface(
                models.linear, losses.l1, x, y, a, b, layout=layout, block=block,
                keep_on_device=True))
        return run

    variants = [("streamed", None), ("streamed", 2**20), ("streamed", 2**24), ("vmap", None)]
    best = None
    for layout, block in variants:
        try:
            ms = median_ms(ours(layout, block), size["repeats"])
        except Exception as exc:  # a layout that does not fit this device: say so, go on
            rows.append(f"| `functional_fit`, {layout}, block {block or 'default'} | failed: "
                        f"{type(exc).__name__} | |")
            continue
        results[(layout, block)] = ms
        rows.append(f"| `functional_fit`, {layout}, block {block or 'default'} | {ms:.3f} ms | "
                    f"{points / ms / 1e6:.3g} G points/s |")
        if best is None or ms < results[best]:
            best = (layout, block)
    z = np.asarray(ours(*best)())  # the one transfer, outside the timing

    xj, yj = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def plain(a, b):  # the textbook form: vmap the loss at one point over the whole grid
        at = lambda w0, w1: jnp.mean(jnp.abs(w0 + w1 * xj - yj))  # noqa: E731
        return jax.vmap(jax.vmap(at, in_axes=(0, None)), in_axes=(None, 0))(a, b)  # (nb, na)

    aj, bj = jnp.asarray(a), jnp.asarray(b)
    ms_plain = median_ms(lambda: jax.block_until_ready(plain(aj, bj)), size["repeats"])
    agree_plain = rel_err(np.asarray(plain(aj, bj)), z)
    rows.append(f"| plain `jit(vmap)` | {ms_plain:.3f} ms | {points / ms_plain / 1e6:.3g} G "
                f"points/s |")

    @jax.jit
    def by_hand(a, b):  # what one call could do: flat point index, the n terms unrolled
        q = jnp.arange(a.shape[0] * b.shape[0], dtype=jnp.int32)
        w0, w1 = a[q % a.shape[0]], b[q // a.shape[0]]
        terms = [jnp.abs(w0 + w1 * xj[k] - yj[k]) for k in range(xj.shape[0])]
        while len(terms) > 1:
            terms = [sum(terms[i : i + 2]) for i in range(0, len(terms), 2)]
        return (terms[0] / xj.shape[0]).reshape(b.shape[0], a.shape[0])

    ms_hand = median_ms(lambda: jax.block_until_ready(by_hand(aj, bj)), size["repeats"])
    agree_hand = rel_err(np.asarray(by_hand(aj, bj)), z)
    rows.append(f"| one hand-written call (the linear model's L1 only; agrees to "
                f"{agree_hand:.1e}) | {ms_hand:.3f} ms | {points / ms_hand / 1e6:.3g} G points/s |")

    torch, device = _torch()
    agree_torch = float("nan")
    if torch is not None:
        from torch.func import vmap

        tdt = getattr(torch, dtype)
        tx, ty = (torch.as_tensor(v, dtype=tdt, device=device) for v in (x, y))
        ta, tb = (torch.as_tensor(v, dtype=tdt, device=device) for v in (a, b))
        chunk = 2**22 if device == "cuda" else 2**14  # rows of b at a time, to fit memory
        rows_per = max(1, chunk // a.size)
        out = torch.empty((b.size, a.size), dtype=tdt, device=device)
        at = lambda w0, w1: torch.mean(torch.abs(w0 + w1 * tx - ty))  # noqa: E731
        grid = vmap(vmap(at, in_dims=(0, None)), in_dims=(None, 0))

        def run_torch():
            with torch.no_grad():
                for j in range(0, b.size, rows_per):
                    out[j : j + rows_per] = grid(ta, tb[j : j + rows_per])
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        ms_torch = median_ms(run_torch, max(2, size["repeats"] // 3))
        agree_torch = rel_err(run_torch().cpu().numpy(), z)
        rows.append(f"| `torch.func.vmap`, chunks of {rows_per} rows ({device}) | "
                    f"{ms_torch:.3f} ms | {points / ms_torch / 1e6:.3g} G points/s |")
    name = f"surface {dtype}"
    target = TARGETS_MS[name]
    head = (f"### L1 surface, {a.size} x {b.size} = {points:.3g} points, {dtype}\n\n"
            f"Best `functional_fit` layout: {best[0]}, block {best[1] or 'default'}, "
            f"{results[best]:.3f} ms against the H100 target of {target} ms "
            f"({_verdict(results[best], target, size)} on this device). "
            f"Results agree: plain `jit(vmap)` {agree_plain:.1e}, `torch.func.vmap` "
            f"{agree_torch:.1e} (relative to the surface's scale).\n\n"
            "| how | median time | throughput |\n|---|---|---|")
    return [head, *rows, ""]


# --------------------------------------------------------------------------- network surfaces


def network_rows(size: dict, budget: Budget) -> list[str]:
    """The MLP surfaces of `bench_mlp_surface` (float32) on this device: functional_fit's
    block sizes (its products as torch's, "highest" precision), the same with TF32 products
    (a program's choice), and torch.func.vmap (`parity.surface.module_surface`) with the
    module on the same device."""
    import parity.surface
    from bench_mlp_surface import NETS, problem

    torch, device = _torch()
    rows = ["### Network surfaces, float32 (`bench_mlp_surface`'s nets, weights and planes)\n",
            "| network | grid | how | median time | per point | agrees with torch |",
            "|---|---|---|---|---|---|"]
    for name, (sizes, n) in NETS.items():
        module, x, y, _, plane = problem(name)
        side = size["net_sides"][name]
        a = np.linspace(-1, 1, side, dtype=np.float32)
        label = f"{'-'.join(map(str, sizes))}, n = {n} | {side} x {side}"
        tm = module.to(device)
        tx, ty = (torch.from_numpy(v).to(device) for v in (x, y))
        block_t = 2**14 if name == "small" else 2**12

        def theirs():
            return parity.surface.module_surface(tm, torch.nn.functional.mse_loss, tx, ty, a, a,
                                                 plane=plane, block=block_t)

        ms_t = median_ms(theirs, max(2, size["repeats"] // 3))
        zt = theirs()

        def ours(block):
            return lambda: jax.block_until_ready(surface.loss_surface(
                models.mlp, losses.mse, x, y, a, a, plane=plane, block=block,
                keep_on_device=True))

        best = None
        for block in size["net_blocks"]:
            ms = median_ms(ours(block), size["repeats"])
            agree = rel_err(np.asarray(ours(block)()), zt)
            rows.append(f"| {label} | `functional_fit`, block {block or 'default'} | "
                        f"{ms:.2f} ms | {1e6 * ms / side**2:.1f} ns | {agree:.1e} |")
            if best is None or ms < best[1]:
                best = (block, ms)
        with jax.default_matmul_precision("tensorfloat32"):
            ms = median_ms(ours(best[0]), size["repeats"])
            agree = rel_err(np.asarray(ours(best[0])()), zt)
        rows.append(f"| {label} | `functional_fit`, block {best[0] or 'default'}, under "
                    f"`jax.default_matmul_precision(\"tensorfloat32\")` | {ms:.2f} ms | "
                    f"{1e6 * ms / side**2:.1f} ns | {agree:.1e} |")
        rows.append(f"| {label} | `torch.func.vmap` ({device}), blocks of {block_t} | "
                    f"{ms_t:.2f} ms | {1e6 * ms_t / side**2:.1f} ns | - |")
    return [*rows, "", "Agreement: relative difference to torch's float32 surface. torch does "
            "not use TF32 for float32 matrix products by default; XLA's default on a GPU may, "
            "so `loss_surface` asks for \"highest\" unless the program chose a precision "
            "(`functional_fit.precision.torch_matmul_precision`).", ""]


# --------------------------------------------------------------------------- the sweep and one fit


def sweep_rows(size: dict, budget: Budget) -> list[str]:
    x, y = ff.lecture_data()
    lrs = sw.log_lrs(1e-4, 1.0, size["lrs"])
    w0 = ff.zeros(13, "float64")

    def run():
        res = sw.sweep("adam", w0, x, y, lrs, model=models.polynomial, loss=losses.l1,
                       epochs=size["epochs"], batch_size=10)
        return jax.block_until_ready(res.loss)

    t = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t
    ms = median_ms(run, max(2, size["repeats"] // 2))
    steps = size["epochs"] * 10
    target = TARGETS_MS["sweep"]
    return [f"### Adam sweep: {size['lrs']} learning rates of the degree-12 fit, {steps} steps "
            "each\n",
            f"One compiled, vmapped call: {ms:.1f} ms (first call with compilation "
            f"{compile_s:.1f} s); the H100 target is {target:.0f} ms "
            f"({_verdict(ms, target, size)} on this device). "
            f"{size['lrs'] * steps / (ms / 1e3):.3g} optimizer steps/s.", ""]


def fit_rows(size: dict, budget: Budget) -> list[str]:
    import parity

    torch, device = _torch()
    x, y = ff.lecture_data()
    order = ff.batch_order(100, size["epochs"], seed=0)
    w0 = ff.zeros(13, "float64")

    def jax_fit():
        return jax.block_until_ready(ff.fit.adam_sgd(w0, x, y, order, model=models.polynomial,
                                                     loss=losses.l1, lr=0.01, batch_size=10))

    ms_jax = median_ms(jax_fit, size["repeats"])
    tx, ty = (torch.as_tensor(v, dtype=torch.float64, device=device) for v in (x, y))

    def torch_fit():
        m = parity.PolynomialModel(p=12, dtype=torch.float64).to(device)
        path = parity.fit.adam_sgd(m, parity.losses.l1, torch.utils.data.TensorDataset(tx, ty),
                                   lr=0.01, nepochs=size["epochs"], batch_size=10, order=order)
        return path

    t = time.perf_counter()
    tpath = torch_fit()
    ms_torch = 1e3 * (time.perf_counter() - t)
    agree = rel_err(np.asarray(jax_fit().path), tpath)
    steps = size["epochs"] * 10
    return [f"### One compiled fit: the lecture's degree-12 Adam fit, {steps} steps, float64\n",
            "| how | time | |\n|---|---|---|",
            f"| JAX, `functional_fit.fit.adam_sgd` (one `lax.scan`) | {ms_jax:.2f} ms | 1 |",
            f"| torch, the lecture's loop on {device} (`parity.fit.adam_sgd`) | {ms_torch:.0f} ms "
            f"| {ms_torch / ms_jax:.0f}x slower |",
            "", f"The two paths agree to {agree:.1e} (relative, every step).", ""]


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device, in seconds")
    ap.add_argument("--budget", type=float, default=210.0,
                    help="seconds of device time to use at most (210)")
    ap.add_argument("--out", help="write the section to this file instead of BENCHMARKS.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--only", help="comma-separated figures to run (default: all): "
                    + ", ".join(COST_S))
    args = ap.parse_args(argv)
    only = set(COST_S) if args.only is None else set(args.only.split(","))
    if only - set(COST_S):
        ap.error(f"--only: unknown figure(s) {', '.join(sorted(only - set(COST_S)))}; "
                 f"choose from {', '.join(COST_S)}")
    size = SMOKE if args.smoke else FULL
    budget = Budget(args.budget)
    start = time.monotonic()
    dev = jax.devices()[0]
    if not args.smoke and dev.platform == "cpu":
        print("gpu.py: no accelerator in jax.devices(); use --smoke on the CPU", file=sys.stderr)
        return 2
    parts = []
    figures = [("surface float32", lambda: surface_rows("float32", size, budget)),
               ("surface float64", lambda: surface_rows("float64", size, budget)),
               ("networks", lambda: network_rows(size, budget)),
               ("sweep", lambda: sweep_rows(size, budget)),
               ("fit", lambda: fit_rows(size, budget))]
    for name, make in figures:
        if name not in only:
            continue
        cost = 0.0 if args.smoke else COST_S[name]
        if not budget.fits(name, cost):
            continue
        print(f"gpu.py: {name} ...", file=sys.stderr, flush=True)
        parts.extend(make())
    what = "smoke run, tiny sizes" if args.smoke else "full sizes"
    header = [f"## GPU targets (`benchmarks/gpu.py`, {what})", "",
              f"{time.strftime('%Y-%m-%d')}. Device: {dev.device_kind} ({dev.platform}). "
              f"Machine: {machine()}. Whole run {time.monotonic() - start:.0f} s.", ""]
    if budget.skipped:
        header += [f"Stopped for the time budget ({args.budget:.0f} s) before: "
                   f"{', '.join(budget.skipped)}.", ""]
    text = "\n".join(header + parts)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")
    elif not args.no_write and not args.smoke:
        write_section("gpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

