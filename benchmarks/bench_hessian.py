"""Benchmark: the top Hessian eigenvalue of a small ResNet, `functional_fit.hessian` against
PyHessian, on the same weights and images.

The network, data and mode are `bench_landscape.py`'s: `parity.models.ResNet(3, 16, 10)` in
eval mode, float32, random CIFAR-sized images with random labels, read in batches of 100 (a
torch DataLoader's list for PyHessian, a `functional_fit.streams.Stream` of the module's JAX
twin for functional_fit). For each data size, side by side in one run:

- PyHessian's ``eigenvalues(top_n=1)``: power iteration, stopped when two estimates differ by
  less than 1e-3, relative; its Hessian-vector products counted;
- ``functional_fit.hessian.eigenvalues(k=1)`` with its defaults: Lanczos, stopped when the top
  Ritz pair's residual is below 100 float32 epsilons; its product compiled once per model
  before the rows (that time is its own row);
- Lanczos given PyHessian's number of products (``iterations=``);
- the products Lanczos needs to come as close to the converged value as PyHessian's answer
  is, read from the first row's Ritz values after each product, and their time at its
  measured cost per product.

"converged" is the default Lanczos' value; each row's difference is relative to it.

    .venv/bin/python benchmarks/bench_hessian.py [--no-write] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _report import machine, write_section  # noqa: E402
from bench_landscape import batches, cross_entropy, problem  # noqa: E402
from functional_fit import hessian  # noqa: E402
from functional_fit.streams import Stream  # noqa: E402

SIZES = (100, 1000)
QUICK_SIZES = (20,)
BATCH = 100


def pyhessian_top(module, data):
    """(top eigenvalue, products, seconds) of PyHessian's power iteration over `data`."""
    from pyhessian import hessian as PyHessian

    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
    t = time.perf_counter()
    h = PyHessian(module, torch.nn.CrossEntropyLoss(), dataloader=data, cuda=False)
    product, count = h.dataloader_hv_product, [0]

    def counted(v):
        count[0] += 1
        return product(v)

    h.dataloader_hv_product = counted
    top = h.eigenvalues(top_n=1)[0][0]
    module.eval()  # PyHessian puts the module in eval mode too; kept so for the rest
    return float(top), count[0], time.perf_counter() - t


def ritz_tops(model, stream, params, products: int) -> np.ndarray:
    """(products,) the top Ritz value after each product of Lanczos from `eigenvalues`'
    default start (seed 0), the same recurrence `eigenvalues` runs."""
    op = hessian.operator(model, cross_entropy, stream, None, params)
    start = np.random.default_rng(0).standard_normal(op.size)
    alpha, beta, _, _ = hessian.lanczos(op.matvec, start, products)
    return np.array([np.linalg.eigvalsh(np.diag(alpha[:m]) + np.diag(beta[:m - 1], 1)
                                        + np.diag(beta[:m - 1], -1))[-1]
                     for m in range(1, len(alpha) + 1)])


def where_rows(module, model, params, x, y) -> tuple[list[str], dict]:
    """(table rows, {what: JAX's time over torch's}): one batch's forward, gradient and
    Hessian-vector product in each framework, medians of 5 after a first call (compiled, for
    JAX)."""
    import jax
    import jax.numpy as jnp
    import torch.nn.functional as F
    from jax.flatten_util import ravel_pytree

    from _report import median_time

    w, unravel = ravel_pytree(params)
    xb, yb = jnp.asarray(x[:BATCH]), jnp.asarray(y[:BATCH].astype(np.int32))
    v = jnp.asarray(np.random.default_rng(0).standard_normal(w.size), w.dtype)

    def f(w):
        return cross_entropy(model(unravel(w), xb), yb)

    ours = {"forward": (jax.jit(f), (w,)), "gradient": (jax.jit(jax.grad(f)), (w,)),
            "Hessian-vector product": (jax.jit(lambda w, v: jax.jvp(jax.grad(f), (w,),
                                                                    (v,))[1]), (w, v))}
    ps, X, Y = list(module.parameters()), torch.from_numpy(x[:BATCH]), torch.from_numpy(y[:BATCH])
    vs = [torch.randn_like(p) for p in ps]

    def t_forward():
        with torch.no_grad():
            return module(X)

    def t_hvp():
        g = torch.autograd.grad(F.cross_entropy(module(X), Y), ps, create_graph=True)
        return torch.autograd.grad(g, ps, grad_outputs=vs)

    theirs = {"forward": t_forward, "gradient": lambda: torch.autograd.grad(
        F.cross_entropy(module(X), Y), ps), "Hessian-vector product": t_hvp}
    rows, ratio = [], {}
    for name, (fn, args) in ours.items():
        t_jax = median_time(lambda: jax.block_until_ready(fn(*args)), 5)
        t_torch = median_time(theirs[name], 5)
        rows.append(f"| {name} | {t_torch * 1e3:.0f} ms | {t_jax * 1e3:.0f} ms | "
                    f"{t_jax / t_torch:.2f}x |")
        ratio[name] = t_jax / t_torch
        print(rows[-1], flush=True)
    return rows, ratio


def rows_for(n, module, model, params, x, y) -> tuple[list[str], dict]:
    """Table rows for the first `n` images, and the figures the text names."""
    xs, ys = x[:n], y[:n]
    data = batches(xs, ys, min(BATCH, n))
    stream = Stream(xs, ys.astype(np.int32), batch_size=min(BATCH, n))
    theirs, their_products, t_theirs = pyhessian_top(module, data)

    t = time.perf_counter()
    ours = hessian.eigenvalues(model, cross_entropy, stream, None, params, k=1)
    t_ours = time.perf_counter() - t
    ref = float(ours.values[0])
    per_product = t_ours / ours.iterations

    t = time.perf_counter()
    same = hessian.eigenvalues(model, cross_entropy, stream, None, params, k=1,
                               iterations=their_products)
    t_same = time.perf_counter() - t

    tops = ritz_tops(model, stream, params, ours.iterations)
    their_err = abs(theirs - ref) / abs(ref)
    enough = next((m + 1 for m, v in enumerate(tops) if abs(v - ref) / abs(ref) <= their_err),
                  len(tops))

    def row(what, products, seconds, value):
        return (f"| {n} | {what} | {products} | {seconds:.2f} s | "
                f"{seconds / products * 1e3:.0f} ms | {value:.6g} | "
                f"{abs(value - ref) / abs(ref):.1e} |")

    rows = [row("PyHessian `eigenvalues(top_n=1)` (power iteration, tol 1e-3)", their_products,
                t_theirs, theirs),
            row("functional_fit `eigenvalues(k=1)`, defaults (Lanczos to its tolerance)",
                ours.iterations, t_ours, ref),
            row(f"functional_fit, `iterations={their_products}` (PyHessian's products)",
                their_products, t_same, float(same.values[0])),
            row("functional_fit, the products Lanczos needs to be as close as PyHessian "
                "(from the first row's Ritz values; time at its cost per product)",
                enough, enough * per_product, float(tops[enough - 1]))]
    for r in rows:
        print(r, flush=True)
    figures = dict(n=n, theirs=t_theirs / their_products, ours=per_product,
                   total_theirs=t_theirs, total_enough=enough * per_product, enough=enough,
                   their_products=their_products, below=theirs < ref,
                   closer=abs(float(same.values[0]) - ref) < abs(theirs - ref))
    return rows, figures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true", help="a smoke run on 20 images")
    args = ap.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    module, x, y, model, params, _, _ = problem(max(sizes), BATCH)

    stream = Stream(x[:BATCH], y[:BATCH].astype(np.int32), batch_size=BATCH)
    op = hessian.operator(model, cross_entropy, stream, None, params)
    v = np.random.default_rng(1).standard_normal(op.size)
    t = time.perf_counter()
    op.matvec(v)  # compiles the product, which every later operator on the model finds
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    op.matvec(v)
    compile_s = t_first - (time.perf_counter() - t)

    rows, figures = [], []
    for n in sizes:
        r, f = rows_for(n, module, model, params, x, y)
        rows += r
        figures.append(f)
    where = where_rows(module, model, params, x, y)
    text = report(rows, figures, compile_s, where, (load_before, os.getloadavg()[0]))
    print(text)
    if not args.no_write and not args.quick:
        write_section("hessian", text)


def report(rows, figures, compile_s, where, loads) -> str:
    """The section's markdown."""
    per = "; ".join(f"{f['theirs'] * 1e3:.0f} ms against {f['ours'] * 1e3:.0f} ms "
                    f"({f['theirs'] / f['ours']:.2f}x) on {f['n']} images" for f in figures)
    whole = "; ".join(f"{f['total_enough']:.2f} s against PyHessian's {f['total_theirs']:.2f} s "
                      f"on {f['n']} images" for f in figures)
    return "\n".join([
        "## The top Hessian eigenvalue against PyHessian (`benchmarks/bench_hessian.py`)", "",
        f"{time.strftime('%Y-%m-%d')}. Machine: {machine()}. Load average {loads[0]:.1f} at the "
        f"start and {loads[1]:.1f} at the end.", "",
        "`bench_landscape.py`'s ResNet (width 16, 10 classes) in eval mode, float32, random "
        f"images of 3 x 32 x 32 read in batches of {BATCH}; one run each. functional_fit's "
        f"product was compiled before the rows, once for the model: {compile_s:.1f} s, which "
        "every later call in the process (eigenvalues, trace, density, hessian_plane) finds "
        "again. The difference is relative to the converged value (the defaults' row).", "",
        "| images | method | Hessian-vector products | time | per product | top eigenvalue | "
        "difference from converged |", "|---|---|---|---|---|---|---|", *rows, "",
        f"Per Hessian-vector product, PyHessian's double backward against functional_fit's "
        f"compiled forward-over-reverse product: {per}. PyHessian's answer lies "
        f"{below(figures)} the converged value; with as many products as PyHessian made, "
        f"Lanczos' estimate is {closer(figures)}. To be as close as PyHessian's answer "
        f"Lanczos takes {whole} (compiling aside). functional_fit's defaults go on to a "
        "residual of 100 float32 epsilons, about five digits of the eigenvalue.", "",
        f"Where the time per product goes: one batch of {BATCH} images, medians of 5 (torch with "
        "autograd, JAX compiled):", "",
        "| one batch | torch | JAX (XLA, CPU) | JAX / torch |", "|---|---|---|---|", *where[0],
        "", blame(where[1])])


def blame(ratio: dict) -> str:
    """What the one-batch table says of a JAX product's cost against torch's."""
    f, g, h = (ratio[k] for k in ("forward", "gradient", "Hessian-vector product"))
    text = (f"JAX's forward takes {f:.2f}x torch's time, its gradient {g:.2f}x and its "
            f"product {h:.2f}x. ")
    if g > 1.5 * f:
        return text + ("The gradient is where JAX falls behind: XLA's CPU backward convolutions "
                       "(the input and kernel gradients), which the product runs too.")
    return text + "The gradient costs no more, relative to torch, than the forward."


def below(figures) -> str:
    """Where PyHessian's answers lie: "below", "above", or each size's."""
    sides = {"below" if f["below"] else "above" for f in figures}
    if len(sides) == 1:
        return sides.pop()
    return ", ".join(f"{'below' if f['below'] else 'above'} (on {f['n']} images)"
                     for f in figures)


def closer(figures) -> str:
    """Whether Lanczos with PyHessian's products came closer to the converged value."""
    return "; ".join(f"{'closer' if f['closer'] else 'no closer'} on {f['n']} images "
                     f"({f['their_products']} products; Lanczos needs {f['enough']} to be as "
                     "close)" for f in figures)

if __name__ == "__main__":
    main()
