"""Benchmark: loss landscapes of a real network, a small ResNet on CIFAR-sized images.

The same weights, data and two directions (filter-normalized, `functional_fit.surface.
random_plane`), float32, eval mode (BatchNorm's running statistics held), side by side in one
run; a grid point is one forward pass over all 10^4 images of 3 x 32 x 32 (random labels):

- ``loss-landscapes`` (PyPI): its ``random_plane`` with our directions (as in
  `bench_mlp_surface.py`), and a metric that reads the data in batches under ``no_grad``;
- ``torch.func.vmap``: `parity.surface.module_surface` over the whole grid, batch by batch,
  the batches' losses weighted by their sizes;
- a plain torch loop: per grid point, the parameters written into the module, then its
  forward over the batches under ``no_grad``;
- ``functional_fit``: `functional_fit.surface.loss_surface` of the module's JAX twin
  (`parity.export.to_jax`, `as_model`), the data a `functional_fit.streams.Stream`;
- one ``jax.jit`` call per grid point and batch (a Python loop): the same XLA forward pass as
  functional_fit's, outside any loop or vmap, to show where functional_fit's time goes.

The grid is small (2 x 2 by default) and the times are per grid point. Each row's values are
checked against another's point by point (loss-landscapes' points, which it places itself,
against the torch loop at those points). A second table times one convolution of the network
in torch (oneDNN) and in XLA, alone and inside a one-trip ``jax.lax.map``. The Hessian's top
eigenvalue of the same network is `bench_hessian.py`'s.

    .venv/bin/python benchmarks/bench_landscape.py [--repeats R] [--no-write] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import parity  # noqa: E402
import parity.export  # noqa: E402
import parity.surface  # noqa: E402
from _report import machine, median_time, write_section  # noqa: E402
from functional_fit import surface  # noqa: E402
from functional_fit.streams import Stream  # noqa: E402
from functional_fit.tolerances import rel_err  # noqa: E402

FULL = dict(n=10_000, batch=1000, side=2, ff_n=2000)
QUICK = dict(n=400, batch=100, side=2, ff_n=200)


def cross_entropy(logits, labels):
    """The mean cross-entropy of (n, k) logits and (n,) integer labels, as torch's."""
    logp = jax.nn.log_softmax(logits, axis=1)  # (n, k)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def problem(n: int, batch: int):
    """(module in eval mode, x (n, 3, 32, 32) float32, y (n,) int64, the JAX twin's model and
    parameters, the plane of the module's state_dict, the twin's plane)."""
    module = parity.models.ResNet(3, 16, 10, dropout=0.0, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, n)
    with torch.no_grad():  # running statistics that are not BatchNorm's initial (0, 1)
        module.train()(torch.from_numpy(x[: min(n, 500)]) * 1.5 + 0.2)
    module.eval()
    fn, params = parity.export.to_jax(module, torch.from_numpy(x[:8]))
    model, trainable, _ = parity.export.as_model(fn, params)  # buffers held: eval mode
    plane = surface.random_plane(parity.params.from_module(module), seed=0)
    twin_plane = surface.Plane(*({k: np.asarray(d[k]) for k in trainable} for d in plane))
    return module, x, y, model, trainable, plane, twin_plane


def batches(x, y, batch):
    """[(x_batch, y_batch) torch tensors] of `batch` points."""
    return [(torch.from_numpy(x[i:i + batch]), torch.from_numpy(y[i:i + batch]))
            for i in range(0, x.shape[0], batch)]


def torch_loop(module, plane, data, a, b) -> np.ndarray:
    """(nb, na): per grid point, the parameters set in a copy of the module, then its
    forward over the batches (no_grad), the batch means weighted by size."""
    import copy

    net = copy.deepcopy(module).eval()
    params = dict(net.named_parameters())
    o, u, v = ({k: np.asarray(d[k]) for k in params} for d in plane)
    n = sum(xb.shape[0] for xb, _ in data)
    out = np.empty((len(b), len(a)))
    with torch.no_grad():
        for j, bj in enumerate(b):
            for i, ai in enumerate(a):
                for k, p in params.items():
                    p.copy_(torch.from_numpy(o[k] + np.float32(ai) * u[k]
                                             + np.float32(bj) * v[k]))
                out[j, i] = sum(F.cross_entropy(net(xb), yb).item() * xb.shape[0]
                                for xb, yb in data) / n
    return out


def vmap_surface(module, plane, data, a, b) -> np.ndarray:
    """`parity.surface.module_surface` batch by batch, weighted by the batches' sizes."""
    n = sum(xb.shape[0] for xb, _ in data)
    return sum(parity.surface.module_surface(module, F.cross_entropy, xb, yb, a, b,
                                             plane=plane) * xb.shape[0]
               for xb, yb in data) / n


def ll_metric(data):
    """A loss-landscapes `Metric`: the mean cross-entropy over the batches, under no_grad."""
    from loss_landscapes.metrics import Metric

    n = sum(xb.shape[0] for xb, _ in data)

    class BatchedLoss(Metric):
        def __call__(self, model_wrapper):
            with torch.no_grad():
                return sum(F.cross_entropy(model_wrapper.forward(xb), yb).item() * xb.shape[0]
                           for xb, yb in data) / n

    return BatchedLoss()


def ll_points(steps, scale):
    """(a, b, cols) of loss-landscapes' grid: its column i and row j sit at a[i], b[cols[i, j]]
    (it starts every even column one step in: see `bench_mlp_surface.py`)."""
    su, sv = scale
    a = (np.arange(steps) - steps / 2) * float(su)
    b = (np.arange(steps + 1) - steps / 2) * float(sv)
    cols = np.array([[j + 1 - i % 2 for j in range(steps)] for i in range(steps)])
    return a, b, cols


#: The grid's points in one block, vmapped in one call: a convolution over a batch of kernels
#: (grouped), as `loss_surface` computes an MLP's points.
ONE_BLOCK = dict(block=4)


def ours(model, plane, x, y, batch, a, b, **settings) -> np.ndarray:
    """functional_fit's surface of the twin over a Stream of the data."""
    stream = Stream(x, y.astype(np.int32), batch_size=batch)
    return surface.loss_surface(model, cross_entropy, stream, None, a, b, plane=plane,
                                **settings)


def per_point_jit(model, plane, x, y, batch, a, b) -> np.ndarray:
    """One compiled forward per grid point and batch, in a Python loop."""
    at = _jitted_loss(model)
    n = x.shape[0]
    out = np.empty((len(b), len(a)))
    for j, bj in enumerate(b):
        for i, ai in enumerate(a):
            w = jax.tree.map(lambda o, u, v: o + np.float32(ai) * u + np.float32(bj) * v,
                             *plane)
            out[j, i] = sum(float(at(w, x[s:s + batch], y[s:s + batch].astype(np.int32)))
                            * x[s:s + batch].shape[0] for s in range(0, n, batch)) / n
    return out


_JITTED = {}


def _jitted_loss(model):
    if model not in _JITTED:
        _JITTED[model] = jax.jit(lambda w, xb, yb: cross_entropy(model(w, xb), yb))
    return _JITTED[model]


def conv_rows(batch: int, repeats: int) -> list[str]:
    """Table rows: one convolution of the network, torch (oneDNN) against XLA, float32, ms."""
    rows = []
    for (c_in, c_out, hw) in ((16, 16, 32), (32, 32, 16)):
        rng = np.random.default_rng(1)
        a = rng.standard_normal((batch, c_in, hw, hw), dtype=np.float32)
        w = rng.standard_normal((c_out, c_in, 3, 3), dtype=np.float32)
        ta, tw = torch.from_numpy(a), torch.from_numpy(w)

        def conv(a, w):
            return jax.lax.conv_general_dilated(a, w, (1, 1), ((1, 1), (1, 1)),
                                                dimension_numbers=("NCHW", "OIHW", "NCHW"))

        plain = jax.jit(conv)
        looped = jax.jit(lambda a, w: jax.lax.map(lambda w1: conv(a, w1), w[None])[0])
        vmapped = jax.jit(jax.vmap(conv, in_axes=(None, 0)))
        ja, jw = jnp.asarray(a), jnp.asarray(w)
        jw2 = jnp.stack([jw, jw * 0.5])
        with torch.no_grad():
            t_torch = median_time(lambda: F.conv2d(ta, tw, padding=1), repeats)
        t_xla = median_time(lambda: plain(ja, jw).block_until_ready(), repeats)
        t_loop = median_time(lambda: looped(ja, jw).block_until_ready(), repeats)
        t_vmap = median_time(lambda: vmapped(ja, jw2).block_until_ready(), repeats) / 2
        rows.append(f"| ({batch}, {c_in}, {hw}, {hw}) x ({c_out}, {c_in}, 3, 3) | "
                    f"{t_torch * 1e3:.0f} ms | {t_xla * 1e3:.0f} ms | {t_loop * 1e3:.0f} ms | "
                    f"{t_vmap * 1e3:.0f} ms |")
        print(rows[-1], flush=True)
    return rows


def surface_rows(cfg, repeats):
    """(table rows, per-point times) of the surface timings, each method's values checked
    against the plain torch loop's."""
    module, x, y, model, trainable, plane, twin = problem(cfg["n"], cfg["batch"])
    data = batches(x, y, cfg["batch"])
    side, batch, n, sub = cfg["side"], cfg["batch"], cfg["n"], cfg["ff_n"]
    grid = np.linspace(-0.5, 0.5, side, dtype=np.float32)
    points = side * side
    ours(model, twin, x[:batch], y[:batch], batch, grid, grid)  # compiled on one batch's shape
    ours(model, twin, x[:batch], y[:batch], batch, grid, grid, **ONE_BLOCK)
    per_point_jit(model, twin, x[:batch], y[:batch], batch, grid, grid)
    timed = {
        "ff": (lambda: ours(model, twin, x, y, batch, grid, grid), repeats),
        "torch loop": (lambda: torch_loop(module, plane, data, grid, grid), repeats),
        "vmap": (lambda: vmap_surface(module, plane, data, grid, grid), repeats),
        "jit": (lambda: per_point_jit(model, twin, x, y, batch, grid, grid), repeats),
        "ll": (lambda: theirs_ll(module, plane, data, side), repeats),
        "ffb": (lambda: ours(model, twin, x[:sub], y[:sub], batch, grid, grid, **ONE_BLOCK), 1),
    }
    t, values = {}, {}
    for name, (fn, reps) in timed.items():
        out = []
        t[name] = median_time(lambda: out.append(fn()), reps, warmup=0) / points
        values[name] = out[-1]
        print(name, f"{t[name]:.2f} s per point", flush=True)
    t["ffb"] *= n / sub  # timed on the first `sub` images: its time is linear in the batches
    z_loop = values["torch loop"]
    z_ll, scale = values["ll"]
    a, b, cols = ll_points(side, scale)
    z_at = torch_loop(module, plane, data, a, b)  # (side + 1, side)
    mapped = np.array([[z_at[cols[i, j], i] for j in range(side)] for i in range(side)])
    z_sub = torch_loop(module, plane, data[: sub // batch], grid, grid)
    agree = dict(ll=rel_err(z_ll, mapped), vmap=rel_err(values["vmap"], z_loop),
                 jit=rel_err(values["jit"], z_loop), ffb=rel_err(values["ffb"], z_sub),
                 ff=rel_err(values["ff"], z_loop))
    rows = [f"| {LABELS[k]} | {t[k]:.2f} s | {t[k] / t['ff']:.2f}x | "
            f"{'-' if k == 'torch loop' else f'{agree[k]:.1e}'} |"
            for k in ("ff", "ffb", "ll", "vmap", "torch loop", "jit")]
    return rows, t


LABELS = {
    "ff": "functional_fit `loss_surface`, its defaults (a Stream of batches; a convolutional "
          "network takes one grid point per compiled call)",
    "ffb": "functional_fit, the 4 points vmapped in one block and one call (`block=4`: a "
           "grouped convolution; timed on the first {sub} images, scaled)",
    "ll": "`loss-landscapes` `random_plane` (batched metric, no_grad)",
    "vmap": "torch.func.vmap (`parity.surface.module_surface`, batch by batch)",
    "torch loop": "plain torch loop (no_grad), the reference",
    "jit": "one `jax.jit` call per grid point and batch (the twin's forward)",
}


def theirs_ll(module, plane, data, steps):
    """loss-landscapes' ``random_plane`` with our two directions (its draws replaced, its
    normalization off, as in `bench_mlp_surface.theirs`), over the batches:
    ((steps, steps) values, its two step sizes)."""
    import loss_landscapes
    import loss_landscapes.main as main
    from loss_landscapes.model_interface.model_parameters import ModelParameters

    names = [k for k, _ in module.named_parameters()]
    dirs = [ModelParameters([torch.as_tensor(np.array(d[k])) for k in names])
            for d in (plane.u, plane.v)]
    start_norm = ModelParameters([p.detach().clone() for p in module.parameters()]).model_norm()
    scale = [(start_norm / steps) / d.model_norm() for d in dirs]
    saved = main.rand_u_like, main.orthogonal_to
    main.rand_u_like, main.orthogonal_to = (lambda _: dirs[0]), (lambda _: dirs[1])
    try:
        grid = loss_landscapes.random_plane(module, ll_metric(data), distance=1.0, steps=steps,
                                            normalization=None, deepcopy_model=True)
    finally:
        main.rand_u_like, main.orthogonal_to = saved
    return np.asarray(grid), scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true", help="a smoke run on a few hundred images")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    rows, t = surface_rows(cfg, args.repeats)
    convs = conv_rows(cfg["batch"], max(3, args.repeats))
    load_after = os.getloadavg()[0]
    text = report(cfg, rows, t, convs, (load_before, load_after))
    print(text)
    if not args.no_write and not args.quick:
        write_section("landscape", text)


def report(cfg, rows, t, convs, loads) -> str:
    """The section's markdown."""
    n, side, batch = cfg["n"], cfg["side"], cfg["batch"]
    def verdict(key, how):
        met = t[key] < t["ll"] and t[key] < t["vmap"]
        return (f"{how}: {'met' if met else 'not met'}, at {t[key] / t['ll']:.2f}x "
                f"loss-landscapes' time per point and {t[key] / t['vmap']:.2f}x "
                "torch.func.vmap's")

    verdict = ("The goal, faster than both loss-landscapes and torch.func.vmap on the CPU: "
               + verdict("ff", "with the default settings") + ".")
    hess_text = ["", "The Hessian's top eigenvalue of the same network, against PyHessian: "
                 "`benchmarks/bench_hessian.py`, the next section."]
    return "\n".join([
        "## Loss landscapes of real networks (`benchmarks/bench_landscape.py`)", "",
        f"{time.strftime('%Y-%m-%d')}. Machine: {machine()}. Load average {loads[0]:.1f} at the "
        f"start and {loads[1]:.1f} at the end (this benchmark keeps both cores busy, about 2 "
        "of it; more means other jobs shared the machine: the ratios, measured side by side, "
        "are what to read).", "",
        f"`parity.models.ResNet(3, width 16, 10 classes, dropout 0)` in eval mode, float32; "
        f"{n} random images of 3 x 32 x 32 with random labels, read in batches of {batch}; "
        f"a {side} x {side} grid on Li et al.'s filter-normalized plane (the same directions "
        "for every method). Time per grid point (one forward pass over all the images), "
        "medians over repeats; \"x\" is the time over functional_fit's; agreement is the "
        "largest relative difference, point by point, from the plain torch loop's values at "
        "the same points (for functional_fit, over the same first images; for loss-landscapes, "
        "at the points it places itself).", "",
        "| method | per grid point | vs functional_fit | agreement |", "|---|---|---|---|",
        *(r.format(sub=cfg["ff_n"]) for r in rows), "", verdict, "",
        "Where the time goes: one convolution of the network, float32, median of repeats "
        "(XLA in the layout functional_fit's twin uses, NCHW x OIHW):", "",
        "| convolution | torch (oneDNN) | XLA, alone | XLA, in a one-trip `lax.map` | "
        "XLA, vmapped over 2 kernels (per kernel) |", "|---|---|---|---|---|", *convs, "",
        NARRATIVE.format(jit=t["jit"], ff=t["ff"], loop=t["torch loop"], ffb=t["ffb"]),
        *hess_text])


NARRATIVE = (
    "XLA's convolution alone is close to torch's (between about equal and 2x slower on these "
    "shapes), and the whole forward pass compiled once per grid point, its BatchNorm and ReLU "
    "fused, is faster than torch's ({jit:.2f} s a point against the torch loop's {loop:.2f} s). "
    "What costs a convolutional network its speed, measured while writing this benchmark on "
    "500 images and 4 points: blocks of grid points in `jax.lax.map` (a while loop), since "
    "XLA's CPU convolutions are several times slower inside a loop's body (the table), and the "
    "runtime's CPU `dot_options` (YNNPACK dot fusion, chosen for MLPs' batched matrix "
    "products), about 2.5x slower again; together about 13x (31.8 s a point). So "
    "`loss_surface` now computes a loss with a convolution one grid point per compiled call "
    "and device, with no dot options, and calls a device's only block directly, outside any "
    "loop (`surface.layouts.one_point_per_call`): {ff:.2f} s a point; the 4 points vmapped in "
    "one call, a grouped convolution, take {ffb:.2f} s. The rest of the gap to the bare "
    "compiled forward is the "
    "surface's per-call work (one call per batch and point). Torch's convolutions do not make "
    "up for XLA's fused forward, so the speed is in the driver's choices for a convolutional "
    "network, not in a torch-backed evaluator.")


if __name__ == "__main__":
    main()
