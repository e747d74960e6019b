# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Loss surfaces: big grids, directions for many parameters, paths, and what they cost
#
# The lecture draws a loss surface by calling the loss once per parameter pair in a Python
# loop over a 50 × 50 grid (cells 12, 15 and 50). `functional_fit.surface.loss_surface`
# computes the same numbers as one compiled JAX call that streams over the data points and
# vectorizes across grid points, in bounded memory. This notebook
#
# 1. checks it against the lecture's loop and draws a big surface;
# 2. draws surfaces of the degree-12 model, which has 13 parameters, on three kinds of plane:
#    two coordinates, two random directions, and the top two PCA directions of its Adam path;
# 3. draws optimizer paths, JAX's and torch's, on the surfaces;
# 4. times the lecture's loop, numpy broadcasting, torch broadcasting, `torch.func.vmap` and
#    `functional_fit` side by side.
#
# Set `FUNCTIONAL_FIT_SMALL=1` for small grids and short fits (the tests do).

# %%
# %matplotlib inline
import os
import time

import jax

jax.config.update("jax_enable_x64", True)  # float64 surfaces: this notebook is an application

import numpy as np
import torch
from IPython.display import display

import functional_fit as ff
import parity
import parity.surface
from functional_fit import plot
from functional_fit.surface import coords_plane, loss_surface, mse_surface_exact, pca_plane, random_plane
from functional_fit.tolerances import rel_err
from comparison.figures import pca_paths

SMALL = os.environ.get("FUNCTIONAL_FIT_SMALL") == "1"
#: Points per side of the big surface, and the sides timed in the comparison.
BIG = 100 if SMALL else 1000
SIDES = [20, 50] if SMALL else [50, 100, 200, 500, 1000]
#: The slow implementations stop at this many points per side (the torch loop at half).
LOOP_MAX, TORCH_VMAP_MAX = (50, 50) if SMALL else (200, 500)
#: Epochs of the degree-12 Adam fit (the lecture's 500).
POLY12_EPOCHS = 20 if SMALL else 500

x, y = ff.lecture_data()  # (100,), (100,) float64
tx, ty = torch.from_numpy(x), torch.from_numpy(y)
linear, poly, l1 = ff.models.linear, ff.models.polynomial, ff.losses.l1

# %% [markdown]
# ## The lecture's grid, the lecture's loop
#
# Row j, column i of a surface is the loss at (a_values[i], b_values[j]): the layout of the
# lecture's `np.meshgrid(w0values, w1values)`.

# %%
w0values = np.linspace(-1.0, 1.0, 50)
w1values = np.linspace(-0.5, 5.0, 50)

start = time.perf_counter()
u, v = np.meshgrid(w0values, w1values)
ws = np.vstack((u.flatten(), v.flatten())).transpose()
loop_values = np.array([np.abs(y - (w[0] + w[1] * x)).mean() for w in ws]).reshape(u.shape)
print(f"the lecture's loop: {time.perf_counter() - start:.3f} s")

surface = loss_surface(linear, l1, x, y, w0values, w1values)  # (50, 50)
print("max relative difference:", rel_err(surface, loop_values))
assert rel_err(surface, loop_values) < 1e-13

# %% [markdown]
# ## A big surface
#
# A wider range at a finer grid. Only the output array grows with the grid: the data is
# streamed through the computation in chunks. (The 3-D panel draws every few rows and
# columns; the contour uses them all.)

# %%
a_big = np.linspace(-3.0, 3.0, BIG)
b_big = np.linspace(-2.0, 8.0, BIG)
loss_surface(linear, l1, x, y, a_big[:50], b_big[:50])  # compile outside the timing
start = time.perf_counter()
big = loss_surface(linear, l1, x, y, a_big, b_big)  # (BIG, BIG)
print(f"{big.size:,} points in {time.perf_counter() - start:.3f} s")
j, i = np.unravel_index(np.argmin(big), big.shape)
plot.surface(big, a_big, b_big, loss_name="L1",
             points={"minimum on the grid": (a_big[i], b_big[j], big[j, i])},
             title=f"L1 loss of the linear model, {BIG} × {BIG} grid")

# %% [markdown]
# For the MSE and a model linear in its parameters, the surface is a quadratic in (a, b)
# whose six coefficients come from one pass over the data: `mse_surface_exact` costs the
# same whatever n is. It agrees with the brute-force surface.

# %%
mse_big = loss_surface(linear, ff.losses.mse, x, y, a_big, b_big)
mse_exact = mse_surface_exact(linear, x, y, a_big, b_big)
print("exact against brute force, max relative difference:", rel_err(mse_exact, mse_big))
assert rel_err(mse_exact, mse_big) < 1e-12

# %% [markdown]
# ## Thirteen parameters: which plane?
#
# The degree-12 model has 13 parameters; a surface shows the loss on a plane through
# parameter space. Fit it first, in both frameworks, from the same batch order.

# %%
order = ff.batch_order(len(x), epochs=POLY12_EPOCHS, seed=0)
fit12 = ff.fit.adam_sgd(ff.zeros(13, "float64"), x, y, order, model=poly, loss=l1, lr=0.01,
                        batch_size=10)
torch_model = parity.PolynomialModel(p=12, dtype=torch.float64)
torch_path = parity.fit.adam_sgd(torch_model, parity.losses.l1,
                                 torch.utils.data.TensorDataset(tx, ty), lr=0.01,
                                 nepochs=POLY12_EPOCHS, batch_size=10, order=order)
w12 = np.asarray(fit12.params)  # (13,)
print("JAX against torch over the whole path:", rel_err(np.asarray(fit12.path), torch_path))
assert rel_err(np.asarray(fit12.path), torch_path) < ff.tolerances.TRAJECTORY_FLOAT64

# %% [markdown]
# Three planes through the fitted parameters:
#
# - **coordinates**: vary w[0] (constant term) and w[1] (linear term), hold the other 11;
# - **random**: two Gaussian directions, each entry scaled to the size of its parameter
#   (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets");
# - **PCA**: the top two principal directions of the Adam path; the path projects onto it.
#
# These grids are small, so the surfaces use `layout="vmap"`: for a model this size the
# streamed layout's longer compilation only pays off on big grids.

# %%
grid = np.linspace(-1.0, 1.0, 60)
planes = {
    "coordinates w[0], w[1]": coords_plane(w12, (0, 1)),
    "two random directions": random_plane(w12, seed=0),
}
for name, plane in planes.items():
    a_values = grid + (w12[0] if name.startswith("coord") else 0.0)
    b_values = grid + (w12[1] if name.startswith("coord") else 0.0)
    values = loss_surface(poly, l1, x, y, a_values, b_values, plane=plane, layout="vmap")
    centre = (w12[0], w12[1]) if name.startswith("coord") else (0.0, 0.0)
    display(plot.contour_paths(  # two figures from one cell
        values, a_values, b_values, {}, points={"fitted parameters": centre},
        axis_labels=("a", "b"), title=f"Degree-12 model, L1 loss: {name}"))

# %%
explained = np.asarray(pca_plane(fit12.path).explained)  # (2,)
print(f"the plane holds {explained.sum():.1%} of the path's squared spread")
pca_paths(poly, l1, x, y, fit12.path, other=torch_path, grid=len(grid),
               title="The degree-12 Adam path on its PCA plane")

# %% [markdown]
# ## A path on a fine surface
#
# The lecture's gradient descent on the linear model (cell 49) on a fine grid of its L1
# loss, with JAX's path and torch's drawn on top of each other.

# %%
gd = ff.fit.gradient_descent(ff.zeros(2, "float64"), x, y, lr=6.0, steps=50)
torch_lin = parity.SimpleLinearModel(dtype=torch.float64)
gd_torch = parity.fit.gradient_descent(torch_lin, parity.losses.l1, tx, ty, lr=6.0, nsteps=50)
a_fine = np.linspace(-1.0, 1.0, BIG // 2)
b_fine = np.linspace(-0.5, 5.0, BIG // 2)
plot.contour_paths(loss_surface(linear, l1, x, y, a_fine, b_fine), a_fine, b_fine,
                   {"GD path, JAX": np.asarray(gd.path), "GD path, torch": gd_torch},
                   points={"end": np.asarray(gd.params)}, levels=40,
                   title=f"Gradient descent on a {BIG // 2} × {BIG // 2} L1 surface")

# %% [markdown]
# ## What it costs
#
# The L1 surface of the linear model on the lecture's data, timed side by side in this run
# (best of three; the loops once). Every way computes the same numbers.
#
# - the lecture's loops: one numpy call per grid point (cell 15), or one torch model call and
#   `.item()` per grid point (cell 50, `parity.surface.loss_surface_loop`);
# - numpy broadcasting: the (rows, A, n) array of residuals, a block of rows at a time;
# - torch broadcasting and `torch.func.vmap`, in blocks (`parity.surface.loss_surface`);
# - `functional_fit.surface.loss_surface`: compiled, streamed over the data.
#
# `benchmarks/` measures the same at up to 10⁸ points and records it in `BENCHMARKS.md`.

# %%
def lecture_loop(a, b):  # cell 15
    u, v = np.meshgrid(a, b)
    ws = np.vstack((u.flatten(), v.flatten())).transpose()
    return np.array([np.abs(y - (w[0] + w[1] * x)).mean() for w in ws]).reshape(u.shape)


def numpy_broadcast(a, b, rows=64):
    out = np.empty((len(b), len(a)))
    for r in range(0, len(b), rows):  # a block of rows keeps the temporary array small
        pred = a[None, :, None] + b[r:r + rows, None, None] * x  # (rows, A, n)
        out[r:r + rows] = np.abs(pred - y).mean(axis=-1)  # (rows, A)
    return out


WAYS = {  # name -> (function of (a_values, b_values), largest side it is timed at)
    "lecture's loop (numpy)": (lecture_loop, LOOP_MAX),
    "lecture's loop (torch)": (
        lambda a, b: parity.surface.loss_surface_loop(parity.models.linear, parity.losses.l1,
                                                      x, y, a, b), LOOP_MAX // 2),
    "numpy broadcasting": (numpy_broadcast, max(SIDES)),
    "torch broadcasting": (
        lambda a, b: parity.surface.loss_surface(parity.models.linear, parity.losses.l1, x, y,
                                                 a, b, method="broadcast"), max(SIDES)),
    "torch.func.vmap": (
        lambda a, b: parity.surface.loss_surface(parity.models.linear, parity.losses.l1, x, y,
                                                 a, b, method="vmap"), TORCH_VMAP_MAX),
    "functional_fit": (lambda a, b: loss_surface(linear, l1, x, y, a, b), max(SIDES)),
}


def best_time(fn, a, b, repeats):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(a, b)
        best = min(best, time.perf_counter() - start)
    return best


times = {name: np.full(len(SIDES), np.nan) for name in WAYS}
for k, side in enumerate(SIDES):
    a, b = np.linspace(-1.0, 1.0, side), np.linspace(-0.5, 5.0, side)
    reference = loss_surface(linear, l1, x, y, a, b)  # also compiles for this grid
    for name, (fn, max_side) in WAYS.items():
        if side <= max_side:
            assert rel_err(fn(a, b), reference) < 1e-12, name
            times[name][k] = best_time(fn, a, b, 1 if "loop" in name else 3)

for name, t in times.items():
    print(f"{name:24s}", "  ".join(f"{s}²: {v * 1e3:9.2f} ms" for s, v in zip(SIDES, t)
                                   if np.isfinite(v)))
plot.benchmark(np.square(SIDES), times, title="L1 surface of the linear model: time against grid size")

# %% [markdown]
# Each way against `functional_fit`, at the largest grid it was timed on:

# %%
for name, t in times.items():
    k = np.flatnonzero(np.isfinite(t))[-1]
    print(f"{name:24s} at {SIDES[k]:4d}²: {t[k] / times['functional_fit'][k]:8.1f}x the time")

# %% [markdown]
# ## A real network: a small ResNet on images
#
# The same functions take a network's parameter pytree, a model with state (BatchNorm's
# running statistics) and data read in batches (`functional_fit.streams.Stream`: arrays,
# memmaps, a torch `DataLoader`). Here `functional_fit.models.resnet` (the twin of
# `parity.models.ResNet`) is trained on synthetic 3 × 8 × 8 images of three classes, and its
# landscape drawn in eval mode (BatchNorm on its running statistics, held fixed):
#
# 1. the surface on Li et al.'s filter-normalized random plane, each data batch read once;
# 2. the loss along the segment between two checkpoints (Goodfellow et al. 2015), and beyond,
#    with its barrier;
# 3. the top eigenvalues of the Hessian, by Lanczos on Hessian-vector products, never forming
#    the Hessian;
# 4. the surface along the top two eigenvectors.

# %%
import matplotlib.pyplot as plt
import optax

from functional_fit import surface
from functional_fit.streams import Stream

module = parity.models.ResNet(3, 4, 3, dropout=0.0, dtype=torch.float64, seed=0)
names = {k for k, _ in module.named_parameters()}
sd = parity.params.from_module(module)
params0 = {k: v for k, v in sd.items() if k in names}
state0 = {k: v for k, v in sd.items() if k not in names}

rng = np.random.default_rng(0)
N_IMAGES = 96 if SMALL else 2000
labels = rng.integers(0, 3, N_IMAGES)
images = rng.normal(size=(N_IMAGES, 3, 8, 8)) * 0.5
images[np.arange(N_IMAGES), labels] += 1.0  # class k: channel k brighter
data = Stream(images, labels, batch_size=32 if SMALL else 250)


def train_mode(p, s, x):
    return ff.models.resnet(p, s, x, dropout=0.0)


def eval_mode(p, s, x):
    return ff.models.resnet(p, s, x, dropout=0.0, training=False)


ce = ff.losses.cross_entropy
order = ff.data.batch_order(N_IMAGES, 4 if SMALL else 10, seed=0)
fitted = ff.fit.train(params0, images, labels, model=train_mode, loss=ce,
                      optimizer=optax.adam(0.01), order=order, batch_size=32, state=state0)
mid = order.shape[0] * -(-N_IMAGES // 32) // 4  # a checkpoint a quarter of the way
checkpoint_a = jax.tree.map(lambda p: p[mid], fitted.path)
checkpoint_b, state_b = fitted.params, fitted.state
print(f"loss in eval mode: start {float(ce(eval_mode(params0, state_b, images)[0], labels)):.3f}, "
      f"end {float(ce(eval_mode(checkpoint_b, state_b, images)[0], labels)):.3f}")

# %%
plane = surface.random_plane(checkpoint_b, seed=0)  # Li et al.: per filter, biases and BN at 0
side = 11 if SMALL else 31
a_net = b_net = np.linspace(-1, 1, side)
z_net = surface.loss_surface(eval_mode, ce, data, None, a_net, b_net, plane=plane, state=state_b)
plot.surface(z_net, a_net, b_net, loss_name="cross-entropy",
             axis_labels=("random direction 1", "random direction 2"),
             title="The ResNet's loss on a filter-normalized random plane")

# %%
alphas = np.linspace(-0.5, 1.5, 21 if SMALL else 81)
segment = surface.interpolate(eval_mode, ce, data, None, checkpoint_a, checkpoint_b, alphas,
                              state=state_b)
print(f"barrier between the two checkpoints: {segment.barrier:.4f}")
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(segment.alphas, segment.losses, label="loss")
ax.plot([0, 1], [segment.ends[0][1], segment.ends[1][1]], "o--", label="the end points' line")
ax.set(xlabel="alpha (0: a quarter of the way, 1: the end)", ylabel="cross-entropy",
       title="Between two checkpoints, and beyond")
ax.legend()
display(fig)
plt.close(fig)

