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
# # Exercises: the lecture's steps, written by you, checked against torch
#
# Four pieces of the lecture, each to be written twice: once in torch's style (tensors,
# `backward`, `torch.no_grad`, a `DataLoader`) and once as a JAX pure function (arrays in, arrays
# out, `jax.grad`). After each function, `check` runs it on a few inputs chosen to catch the usual
# mistakes, in float64 and in float32, and compares what it returns with torch itself
# (`torch.autograd`, `torch.optim.SGD`, `torch.optim.Adam`) and with this toolkit
# (`functional_fit`, `optax`). When something is wrong it shows the input, the value torch gives,
# the value yours gives, and a hint.
#
# Replace each `raise NotImplementedError` with your code and run the cell: it checks your
# function with `comparison.exercises.check(exercise, fn, framework=...)`. (The line
# `exercises.pick(answers, ...)` before each check hands on your function as it is; the tests
# set `answers` to check the right answers, and typical wrong ones, instead.)

# %% tags=["parameters"]
answers = "yours"  # "reference": the right answers; "wrong": typical wrong ones (the tests)

# %%
# %matplotlib inline
import jax

jax.config.update("jax_enable_x64", True)  # the checks run float64 as well as float32

import jax.numpy as jnp
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset  # for your minibatch loop

import functional_fit as ff
import parity  # parity.losses.l1, parity.models.linear: the lecture's torch functions
from comparison import exercises
from comparison.exercises import check
from functional_fit import plot
from parity.data import OrderSampler  # a DataLoader's sampler for a given order

results = {}  # (exercise, framework) -> the check's verdict, summed up at the end

# %% [markdown]
# ## 1. The L1 loss's gradient, with torch's value at 0
#
# For the linear model y_hat = w[0] + w[1] x, the L1 loss mean|y_hat − y| has the gradient
# (mean(s), mean(s · x)) with s = sign(y_hat − y). Where a residual is exactly 0, |r| has no
# derivative; torch's `abs` backward takes 0 there. Write `l1_grad(w, x, y) -> g`, with
# w of shape (2,), x and y of shape (n,), g of shape (2,), giving torch's value everywhere.
#
# torch: let autograd do it (`requires_grad`, `backward`) on a copy of `w`, not on the caller's
# tensor. JAX: `jax.grad` works, but look at what it gives for `jnp.abs` at 0 first.


# %%
def l1_grad_torch(w, x, y):
    # your code
    raise NotImplementedError


l1_grad_torch = exercises.pick(answers, "l1_grad", "torch", l1_grad_torch)
results["l1_grad", "torch"] = check("l1_grad", l1_grad_torch, framework="torch")


# %%
def l1_grad_jax(w, x, y):
    # your code
    raise NotImplementedError


l1_grad_jax = exercises.pick(answers, "l1_grad", "jax", l1_grad_jax)
results["l1_grad", "jax"] = check("l1_grad", l1_grad_jax, framework="jax")

# %% [markdown]
# ## 2. One step of gradient descent
#
# The lecture's step i (from 0) is w − lr / (i + 1) · ∇L(w), with L the L1 loss of the linear
# model.
# Write `gd_step(w, x, y, lr, i) -> w_new`.
#
# torch: the update is not part of the graph (`torch.no_grad()`), and what you return should not
# be either. JAX: a pure function; the new `w` is the return value.


# %%
def gd_step_torch(w, x, y, lr, i):
    # your code
    raise NotImplementedError


gd_step_torch = exercises.pick(answers, "gd_step", "torch", gd_step_torch)
results["gd_step", "torch"] = check("gd_step", gd_step_torch, framework="torch")


# %%
def gd_step_jax(w, x, y, lr, i):
    # your code
    raise NotImplementedError


gd_step_jax = exercises.pick(answers, "gd_step", "jax", gd_step_jax)
results["gd_step", "jax"] = check("gd_step", gd_step_jax, framework="jax")

# %% [markdown]
# Your step, taken 50 times with the lecture's lr = 6 from zeros on the lecture's data, beside
# torch's gradient descent (`parity.fit.gradient_descent`). A right step lies on torch's path;
# until your JAX step runs, only torch's is drawn.

# %%
paths = exercises.gd_paths(gd_step_jax, "jax")
x, y = ff.lecture_data()
grid_a, grid_b = np.linspace(-1.0, 1.0, 50), np.linspace(-0.5, 5.0, 50)
l1_grid = np.mean(np.abs(grid_a[None, :, None] + grid_b[:, None, None] * x[None, None, :]
                         - y[None, None, :]), axis=-1)  # (b, a)
labels = {"yours": "your GD path (JAX)", "torch": "torch's GD path"}
plot.contour_paths(l1_grid, grid_a, grid_b, {labels[k]: v for k, v in paths.items()},
                   loss_name="L1", title="Gradient descent on the L1 loss: yours and torch's")

# %% [markdown]
# ## 3. A minibatch loop: one epoch of SGD
#
# One pass over the data in batches of `batch_size`, in the order given by `order` (a
# permutation of range(n), numpy; `ff.batch_order(n, epochs)` makes one row per epoch), one step
# w − lr · ∇L_batch(w) per batch. When batch_size does not divide n the last batch is short,
# and its loss is still the mean over its own points. Write
# `sgd_epoch(w, x, y, order, batch_size, lr) -> w`.
#
# torch: a `DataLoader` over a `TensorDataset`, with `sampler=OrderSampler(order[None])` to take
# the points in this order. JAX: slice the data yourself, `x[order[start:start + batch_size]]`.


# %%
def sgd_epoch_torch(w, x, y, order, batch_size, lr):
    # your code
    raise NotImplementedError


sgd_epoch_torch = exercises.pick(answers, "sgd_epoch", "torch", sgd_epoch_torch)
results["sgd_epoch", "torch"] = check("sgd_epoch", sgd_epoch_torch, framework="torch")


# %%
def sgd_epoch_jax(w, x, y, order, batch_size, lr):
    # your code
    raise NotImplementedError


sgd_epoch_jax = exercises.pick(answers, "sgd_epoch", "jax", sgd_epoch_jax)
results["sgd_epoch", "jax"] = check("sgd_epoch", sgd_epoch_jax, framework="jax")

# %% [markdown]
# ## 4. Adam's update
#
# One step of Adam, as `torch.optim.Adam` and `optax.adam` take it, at step t (1 for the first),
# from the gradient g and the moments m and v of the steps before:
#
# m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,
# m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ),  w ← w − lr · m̂ / (√v̂ + ε).
#
# Write `adam_step(w, g, m, v, t, lr, betas, eps) -> (w, m, v)`, returning the new values and
# leaving the given ones as they are (torch: no in-place `mul_`/`add_` on the inputs).


# %%
def adam_step_torch(w, g, m, v, t, lr, betas, eps):
    # your code
    raise NotImplementedError


adam_step_torch = exercises.pick(answers, "adam_step", "torch", adam_step_torch)
results["adam_step", "torch"] = check("adam_step", adam_step_torch, framework="torch")


# %%
def adam_step_jax(w, g, m, v, t, lr, betas, eps):
    # your code
    raise NotImplementedError


adam_step_jax = exercises.pick(answers, "adam_step", "jax", adam_step_jax)
results["adam_step", "jax"] = check("adam_step", adam_step_jax, framework="jax")

# %% [markdown]
# ## Where you stand

# %%
for (exercise, framework), result in results.items():
    print(f"{exercise:10} {framework:6} {'passed' if result else 'not yet'}")
print(f"{sum(map(bool, results.values()))} of {len(results)} passed")
