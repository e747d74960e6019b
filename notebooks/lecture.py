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
# # The gradient-descent lecture, twice: torch and JAX side by side
#
# The lecture fits a line, then a quadratic, then a degree-12 polynomial to a small synthetic
# data set, with the L1 loss, by gradient descent, SGD and Adam — in PyTorch. Here every step
# is told again twice:
#
# - **torch** (`parity`): the lecture's own style. A model is an object (`nn.Module`) that
#   holds its parameters; `loss.backward()` fills `p.grad`; the update changes `p` in place
#   under `torch.no_grad()`; a Python loop walks the steps and a `DataLoader` the batches.
# - **JAX** (`functional_fit`): pure functions, parameters first. A model is
#   `model(w, x)`; `jax.grad` returns the gradient as a value; a step is
#   `step(w, ...) -> w`; `jax.lax.scan` runs all the steps as one compiled call (`jax.jit`);
#   `jax.vmap` runs many of them at once.
#
# Each torch cell is followed by its JAX twin, and each pair ends by checking that the two
# agree. Set `FUNCTIONAL_FIT_SMALL=1` to run the long fits for fewer epochs (the tests do).

# %%
# %matplotlib inline
import os
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # the lecture's data is float64: this notebook is an application

import jax.numpy as jnp
import numpy as np
import optax
import torch

import functional_fit as ff
import parity
from functional_fit import plot
from comparison.figures import COLORS, pca_paths
from functional_fit.tolerances import GRAD_FLOAT64, LECTURE_PRINTED, TRAJECTORY_FLOAT64, rel_err

SMALL = os.environ.get("FUNCTIONAL_FIT_SMALL") == "1"
#: Epochs of the two Adam fits (the lecture's 100 and 500; fewer on small settings).
ADAM_EPOCHS = 10 if SMALL else 100
POLY12_EPOCHS = 20 if SMALL else 500
#: JAX against torch in lecture precision (float32 parameters): a few float32 roundings, which
#: the steps that follow carry along (measured: at most 2e-6 over the lecture's fits).
LECTURE_PARITY = 1e-5

# %% [markdown]
# ## The data (cell 3)
#
# The lecture's recipe: 100 sorted points in [-1, 1), y = 1 + 3x − 4x² plus noise, and one
# outlier at (−1.5, 10). Both frameworks read the same numpy arrays.

# %%
x, y = ff.lecture_data()  # (100,), (100,) float64
tx, ty = torch.from_numpy(x), torch.from_numpy(y)  # torch's view of the same memory
plot.data(x, y, title="The lecture's data (cell 4)")

# %% [markdown]
# ## The analytic MSE fit (cells 6–8)
#
# The least-squares line from standard units and the correlation, in torch and in JAX.

# %%
w_mse_torch = parity.ols.ols(tx, ty)
w_mse_torch

# %%
w_mse = np.asarray(ff.ols.ols(x, y))
print("w_mse =", w_mse, " rel. difference to torch:", rel_err(w_mse, w_mse_torch.numpy()))
assert rel_err(w_mse, [-0.26649881, 2.64187294]) < LECTURE_PRINTED  # cell 7
assert rel_err(w_mse, w_mse_torch.numpy()) < GRAD_FLOAT64

# %%
mse_line = ff.models.curve(ff.models.linear, w_mse, x)
plot.fits(x, y, {"analytic MSE": mse_line}, title="Analytic MSE fit (cell 8)", colors=COLORS)

# %%
y_hat = np.asarray(ff.models.linear(jnp.asarray(w_mse), x))
plot.residuals(x, y, y_hat, curves={"analytic MSE": mse_line},
               title="Residuals of the analytic MSE fit (cell 10)", colors=COLORS)

# %% [markdown]
# ## Loss surfaces (cells 11–16)
#
# The lecture evaluates the loss once per parameter pair in a Python loop. The JAX way maps
# the loss over the grid with `vmap` and compiles it once. (The surfaces notebook goes much
# further.) Note the axes: the first parameter is the intercept, the second the slope, and the
# L1 surface is labelled as an L1 loss — the lecture's 3-D panels got both wrong.

# %%
w0values = np.linspace(w_mse[0] - 1, w_mse[0] + 1, 50)
w1values = np.linspace(w_mse[1] - 1, w_mse[1] + 1, 50)


def abs_loss(yhat, y):  # cell 14
    return np.abs(yhat - y).mean()


start = time.perf_counter()
u, v = np.meshgrid(w0values, w1values)
ws = np.vstack((u.flatten(), v.flatten())).transpose()
abs_loss_values = np.array([abs_loss(y, w[0] + w[1] * x) for w in ws]).reshape(u.shape)
loop_s = time.perf_counter() - start


@jax.jit
def l1_surface(a_values, b_values):
    def at(a, b):
        return ff.losses.l1(ff.models.linear(jnp.stack([a, b]), x), y)  # ()

    return jax.vmap(jax.vmap(at, in_axes=(0, None)), in_axes=(None, 0))(a_values, b_values)  # (B, A)


l1_surface(w0values, w1values).block_until_ready()  # compile once
start = time.perf_counter()
l1_values = np.asarray(l1_surface(w0values, w1values))
vmap_s = time.perf_counter() - start
print(f"lecture's loop {loop_s * 1e3:.1f} ms, jit(vmap) {vmap_s * 1e3:.2f} ms, "
      f"max |Δ| = {np.max(np.abs(l1_values - abs_loss_values)):.1e}")
assert np.allclose(l1_values, abs_loss_values, rtol=1e-13)

# %%
mse_values = np.array([np.mean((y - (w[0] + w[1] * x)) ** 2) for w in ws]).reshape(u.shape)
mse_at = float(np.mean((y - ff.models.linear(jnp.asarray(w_mse), x)) ** 2))
plot.surface(mse_values, w0values, w1values, loss_name="MSE",
             points={"analytic MSE fit": (*w_mse, mse_at)},
             title="MSE loss of the linear model (cell 13)")

# %%
plot.surface(l1_values, w0values, w1values, loss_name="L1",
             points={"analytic MSE fit": (*w_mse, abs_loss(y_hat, y))},
             title="L1 loss of the linear model (cell 16)")

# %% [markdown]
# ## Automatic differentiation (cells 19–29)
#
# z(θ) = (1 − log(1 + e^θ))² at θ = 1. torch records a graph as it computes and walks it
# backwards from `z.backward()`, leaving the result in `theta.grad`; JAX transforms the
# function: `jax.grad(z)` is another function.

# %%
theta = torch.tensor([1.0], requires_grad=True, dtype=torch.float64)
z = (1 - torch.log(1 + torch.exp(theta))) ** 2
z.backward()
print("torch:", theta.grad.item(), " graph:", " <- ".join(parity.autodiff.graph(1.0)))

# %%
dz = jax.grad(lambda t: (1 - jnp.log(1 + jnp.exp(t))) ** 2)
print("JAX:  ", float(dz(1.0)), " hand formula (cell 28):", ff.autodiff.z_derivative(1.0))
print(ff.autodiff.graph(1.0))  # what JAX differentiates: the jaxpr of the gradient
assert abs(float(dz(1.0)) - theta.grad.item()) < 1e-15
assert abs(float(dz(1.0)) - 0.4580252880326174) < 1e-15  # cell 27

# %% [markdown]
# ## The L1 loss and its gradient at zero (cells 39–43)
#
# torch: the model object holds zeros; `backward` fills `lin_model.w.grad` (and must be
# zeroed before the next one). JAX: `value_and_grad` of a function of `w`.

# %%
lin_model = parity.SimpleLinearModel()  # float32 zeros, as the lecture's torch.zeros(2, 1)
loss = parity.losses.l1(lin_model(tx), ty)
loss.backward()
print(loss.item(), lin_model.w.grad.flatten())
lin_model.zero_grad()

# %%
value, grad = jax.value_and_grad(lambda w: ff.losses.l1(ff.models.linear(w, x), y))(
    jnp.zeros(2, jnp.float32))
print(float(value), grad)
assert abs(float(value) - loss.item()) < 1e-12
assert rel_err(np.asarray(grad), [-0.1400, -0.4201]) < 1e-3  # printed to 4 decimals

# %% [markdown]
# ## Gradient descent (cells 48–50)
#
# The same algorithm in the two styles: step size lr / (i + 1), L1 loss, 50 steps of lr 6.
# First written out, in float64 so the two agree to rounding; then the packaged versions, in
# the lecture's precision (float32 parameters), which give back the lecture's printed numbers.

# %%
model = parity.SimpleLinearModel(dtype=torch.float64)
values = [model.numpy_parameters()]
for i in range(50):
    loss = parity.losses.l1(model(tx), ty)
    loss.backward()  # fills p.grad
    with torch.no_grad():  # the update itself is not differentiated
        for p in model.parameters():
            p -= 6 / (i + 1) * p.grad  # in place
        model.zero_grad()  # or the next backward adds to this gradient
    values.append(model.numpy_parameters())
torch_path = np.array(values)  # (51, 2)


# %%
def l1_of(w):
    return ff.losses.l1(ff.models.linear(w, x), y)


@jax.jit
def gd(w0):
    def step(w, i):  # pure: the new w is returned, nothing is changed in place
        w = w - 6 / (i + 1) * jax.grad(l1_of)(w)
        return w, w

    _, ws = jax.lax.scan(step, w0, jnp.arange(50.0))  # the loop, compiled
    return jnp.concatenate([w0[None], ws])  # (51, 2)


jax_path = np.asarray(gd(jnp.zeros(2)))
print("torch:", torch_path[-1], " JAX:", jax_path[-1], " rel. difference over the path:",
      rel_err(jax_path, torch_path))
assert rel_err(jax_path, torch_path) < TRAJECTORY_FLOAT64

# %%
lin_model = parity.SimpleLinearModel()
gd_abs_torch = parity.fit.gradient_descent(lin_model, parity.losses.l1, tx, ty, nsteps=50, lr=6)
print("torch: Loss =", parity.losses.l1(lin_model(tx), ty).item(), lin_model.numpy_parameters())

# %%
gd_abs = ff.fit.gradient_descent(ff.zeros(2, "lecture"), x, y, lr=6.0, steps=50)
w_abs = np.asarray(gd_abs.params)
print("JAX:   Loss =", ff.fit.full_loss(w_abs, x, y), w_abs)
assert rel_err(w_abs, [-0.27327734, 3.4817758]) < LECTURE_PRINTED  # cell 49
assert rel_err(np.asarray(gd_abs.path), gd_abs_torch) < LECTURE_PARITY

# %%
grid_a, grid_b = np.linspace(-1.0, 1.0, 50), np.linspace(-0.5, 5.0, 50)
plot.contour_paths(
    np.asarray(l1_surface(grid_a, grid_b)), grid_a, grid_b,
    {"GD path, JAX": np.asarray(gd_abs.path), "GD path, torch": gd_abs_torch},
    points={"MSE": w_mse, "Abs (GD)": w_abs}, loss_name="L1",
    title="Gradient descent on the L1 loss (cell 50)")

# %%
gd_abs_line = ff.models.curve(ff.models.linear, w_abs, x)
plot.residuals(x, y, np.asarray(ff.models.linear(jnp.asarray(w_abs), x)),
               curves={"analytic MSE": mse_line, "GD abs": gd_abs_line},
               title="Residuals of the GD abs fit (cell 51)", colors=COLORS)

# %% [markdown]
# ## A quadratic model (cells 52–55)
#
# torch: `PolynomialModel(p=2)`, an `nn.Module` with a (3, 1) parameter. JAX: the same
# function `ff.models.polynomial(w, x)` for every degree; the degree is the length of `w`.

# %%
quad_model = parity.PolynomialModel(p=2)
gd_quad_torch = parity.fit.gradient_descent(quad_model, parity.losses.l1, tx, ty, nsteps=500,
                                            lr=10)
print("torch: Loss =", parity.losses.l1(quad_model(tx), ty).item(), quad_model.numpy_parameters())

# %%
gd_quad = ff.fit.gradient_descent(ff.zeros(3, "lecture"), x, y, model=ff.models.polynomial,
                                  lr=10.0, steps=500)
w_quad = np.asarray(gd_quad.params)
print("JAX:   Loss =", ff.fit.full_loss(w_quad, x, y, model=ff.models.polynomial), w_quad)
assert rel_err(w_quad, [1.039725, 3.1892092, -3.9294097]) < LECTURE_PRINTED  # cell 54
assert rel_err(np.asarray(gd_quad.path), gd_quad_torch) < LECTURE_PARITY

# %%
gd_quad_line = ff.models.curve(ff.models.polynomial, w_quad, x)
plot.residuals(x, y, np.asarray(ff.models.polynomial(jnp.asarray(w_quad), x)),
               curves={"analytic MSE": mse_line, "GD abs": gd_abs_line,
                       "GD quad abs": gd_quad_line},
               title="Residuals of the quadratic GD abs fit (cell 55)", colors=COLORS)

# %% [markdown]
# ## Stochastic gradient descent (cells 56–61)
#
# The lecture shuffles with `DataLoader(shuffle=True)`; its order cannot be reproduced in
# JAX. Both sides here consume one batch order made once from a seed: torch through a
# `Sampler` given to the `DataLoader`, JAX by slicing the data inside its `scan`.

# %%
order = ff.batch_order(len(x), epochs=20, seed=0)  # (20, 100): one permutation per epoch
dataset = torch.utils.data.TensorDataset(tx, ty)
quad_model_sgd = parity.PolynomialModel(p=2)
sgd_torch = parity.fit.stochastic_gradient_descent(
    quad_model_sgd, parity.losses.l1, dataset, lr=1.0, nepochs=20, batch_size=10, order=order)
print("torch:", quad_model_sgd.numpy_parameters(), sgd_torch.shape)

# %%
sgd = ff.fit.stochastic_gradient_descent(ff.zeros(3, "lecture"), x, y, order,
                                         model=ff.models.polynomial, lr=1.0, batch_size=10)
print("JAX:  ", np.asarray(sgd.params), sgd.path.shape)
assert rel_err(np.asarray(sgd.path), sgd_torch) < LECTURE_PARITY

# %%
plot.path_3d(sgd.path, other=sgd_torch, labels=("SGD path, JAX", "SGD path, torch"),
             title="SGD path of the quadratic model, colored by step (cell 61)")

# %% [markdown]
# ## Adam (cells 62–64)
#
# torch: `torch.optim.Adam(model.parameters())`, an object that keeps its moments and
# updates the parameters in place on `opt.step()`. JAX: `optax.adam(lr)`, a pair of pure
# functions `init` and `update`; the moments are a value carried through the `scan`.

# %%
order = ff.batch_order(len(x), epochs=ADAM_EPOCHS, seed=0)
quad_model_adam = parity.PolynomialModel(p=2)
adam_torch = parity.fit.adam_sgd(quad_model_adam, parity.losses.l1, dataset, lr=0.1,
                                 nepochs=ADAM_EPOCHS, batch_size=10, order=order)
print("torch:", quad_model_adam.numpy_parameters())

# %%
adam = ff.fit.adam_sgd(ff.zeros(3, "lecture"), x, y, order, model=ff.models.polynomial, lr=0.1,
                       batch_size=10)
print("JAX:  ", np.asarray(adam.params))
assert rel_err(np.asarray(adam.path), adam_torch) < LECTURE_PARITY

# %% [markdown]
# ## A degree-12 polynomial (cells 65–66)

# %%
order12 = ff.batch_order(len(x), epochs=POLY12_EPOCHS, seed=0)
start = time.perf_counter()
poly_model = parity.PolynomialModel(p=12)
poly_torch = parity.fit.adam_sgd(poly_model, parity.losses.l1, dataset, lr=0.01,
                                 nepochs=POLY12_EPOCHS, batch_size=10, order=order12)
torch_s = time.perf_counter() - start
print(f"torch: Loss = {parity.losses.l1(poly_model(tx), ty).item():.10f} in {torch_s:.2f} s")

# %%
w12 = ff.zeros(13, "lecture")
fit12 = ff.fit.adam_sgd(w12, x, y, order12, model=ff.models.polynomial, lr=0.01, batch_size=10)
fit12.params.block_until_ready()  # the first call compiles
start = time.perf_counter()
fit12 = ff.fit.adam_sgd(w12, x, y, order12, model=ff.models.polynomial, lr=0.01, batch_size=10)
fit12.params.block_until_ready()
jax_s = time.perf_counter() - start
loss12 = ff.fit.full_loss(fit12.params, x, y, model=ff.models.polynomial)
print(f"JAX:   Loss = {loss12:.10f} in {jax_s * 1e3:.1f} ms (compiled), "
      f"{torch_s / jax_s:.0f}x the torch loop's speed")
assert rel_err(np.asarray(fit12.path), poly_torch) < LECTURE_PARITY

# %%
curves = {"analytic MSE": mse_line, "GD abs": gd_abs_line, "GD quad abs": gd_quad_line,
          "SGD quad abs": ff.models.curve(ff.models.polynomial, sgd.params, x),
          "Adam quad abs": ff.models.curve(ff.models.polynomial, adam.params, x),
          "Adam degree-12 abs": ff.models.curve(ff.models.polynomial, fit12.params, x)}
plot.fits(x, y, curves, title="Every fit; the degree-12 model on a dense grid (cell 66)",
          colors=COLORS)

# %% [markdown]
# Thirteen parameters do not fit on a contour. The plane of the path's top two principal
# directions does: it holds most of where Adam went.

# %%
# `pca_paths` takes the plane from JAX's path (`surface.pca_plane`: origin at the end,
# u and v of shape (13,)) and projects torch's path onto the same plane.
pca_paths(ff.models.polynomial, ff.losses.l1, x, y, fit12.path, other=poly_torch,
               title="The degree-12 Adam path on its PCA plane")

# %% [markdown]
# ## `vmap`: many fits at once
#
# torch runs one fit per loop. JAX's fits are pure functions of their inputs, so `vmap` runs
# a whole learning-rate sweep of the lecture's gradient descent as one compiled call. The
# lecture's gradient descent is `optax.sgd` with the step lr / (i + 1), and
# `ff.fit.train_scan` runs any optax optimizer as one `lax.scan`.
# (`functional_fit.sweep` packages this for every optimizer, start and batch order;
# `functional-fit sweep` runs it from the command line.)

# %%
lrs = np.geomspace(0.1, 30, 16)


def final_l1(lr):
    gd = optax.sgd(lambda i: lr / (i + 1))  # the lecture's decaying step
    run = ff.fit.train_scan(jnp.zeros(2), x, y, gd, model=ff.models.linear, loss=ff.losses.l1,
                            steps=50)
    return l1_of(run.result.params)


sweep_jax = np.asarray(jax.jit(jax.vmap(final_l1))(lrs))  # 16 fits, one call

sweep_torch = []
for lr in lrs:  # the torch way: one fit after another
    m = parity.SimpleLinearModel(dtype=torch.float64)
    parity.fit.gradient_descent(m, parity.losses.l1, tx, ty, lr=float(lr), nsteps=50)
    sweep_torch.append(parity.losses.l1(m(tx), ty).item())
assert rel_err(sweep_jax, np.array(sweep_torch)) < TRAJECTORY_FLOAT64
plot.sweep(lrs, {"JAX (vmap)": sweep_jax, "torch (loop)": sweep_torch},
           title="Final L1 loss after 50 GD steps, against the learning rate")

# %% [markdown]
# ## All together: every fit, JAX against torch
#
# For every fit above, the largest parameter difference between the two frameworks at each
# step. Both start from the same zeros and see the same batches; in float32 parameters they
# differ by a rounding now and then, which the following steps carry along without growing.
# (`comparison.lecture.run` runs all of this with the lecture's settings;
# `functional-fit lecture` prints it as a table and `--out DIR` writes these figures.)

# %%
paths = {
    "gd_abs_linear": {"jax": gd_abs.path, "torch": gd_abs_torch},
    "gd_abs_quad": {"jax": gd_quad.path, "torch": gd_quad_torch},
    "sgd_abs_quad": {"jax": sgd.path, "torch": sgd_torch},
    "adam_abs_quad": {"jax": adam.path, "torch": adam_torch},
    "adam_abs_poly12": {"jax": fit12.path, "torch": poly_torch},
}
for name, pair in paths.items():
    print(f"{name:16s} {pair['torch'].shape[0] - 1:5d} steps, "
          f"max |JAX - torch| = {np.max(np.abs(np.asarray(pair['jax']) - pair['torch'])):.2e}")
plot.path_difference(paths, eps=float(np.finfo(np.float32).eps),
                     title="JAX against torch at every step (float32 parameters)")

# %% [markdown]
# ## Translating optimizers
#
# A port that translates `torch.optim.RMSprop` into `optax.rmsprop` name for name gets another
# optimizer: optax puts eps inside the square root and decays with 0.9, torch adds eps outside
# and decays with 0.99. `functional_fit.optim` has torch's optimizers under their own names,
# keywords and defaults, each checked against torch step for step. Here is the quadratic model
# on the lecture's data, 200 full-batch steps of RMSprop in three ways.

# %%
import functional_fit.optim as fo  # noqa: E402

w0q = np.zeros(3)
quad = lambda w, x: ff.models.polynomial(w, x)  # noqa: E731
ported = ff.fit.train(w0q, x, y, model=quad, loss=ff.losses.mse, optimizer=optax.rmsprop(1e-2),
                      steps=200)
verified = ff.fit.train(w0q, x, y, model=quad, loss=ff.losses.mse,
                        optimizer=fo.RMSprop(lr=1e-2), steps=200)
module = parity.PolynomialModel(w0q)  # float64, as w0q
torch_rms = parity.fit.train(module, parity.losses.mse, tx, ty,
                             optimizer=torch.optim.RMSprop(module.parameters(), lr=1e-2),
                             steps=200).path["w"][:, :, 0]  # (201, 3)
print(f"optax.rmsprop, name for name:  {rel_err(ported.path, torch_rms):.1e} from torch")
print(f"functional_fit.optim.RMSprop:  {rel_err(verified.path, torch_rms):.1e} from torch")
assert rel_err(verified.path, torch_rms) < TRAJECTORY_FLOAT64 < rel_err(ported.path, torch_rms)

# %% [markdown]
# The atlas in the README measures every torch setting this way on a small network, 1,000
# steps (`scripts/atlas.py`); its table, drawn:

# %%
readme = (Path(ff.__file__).resolve().parents[1] / "README.md").read_text()  # from any folder
table = readme.split("<!-- atlas:start -->")[1].split("<!-- atlas:end -->")[0]
rows = [(cells[0].strip(" `"), None if "—" in cells[3] else float(cells[3]), float(cells[4]))
        for cells in (line.strip("|").split("|") for line in table.strip().splitlines()[2:])]
plot.atlas(rows)

# %% [markdown]
# The schedulers, the same way: each torch scheduler's rates against `lr_scheduler`'s and the
# optax schedule of the same name, read at the int32 counts optax passes (no red bar: optax
# has no such schedule).

# %%
table = readme.split("<!-- schedule-atlas:start -->")[1].split("<!-- schedule-atlas:end -->")[0]
rows = [(cells[0].strip(" `").split("(")[0], None if "—" in cells[3] else float(cells[3]),
         float(cells[4]))
        for cells in (line.strip("|").split("|") for line in table.strip().splitlines()[2:])]
plot.atlas(rows, title="torch.optim.lr_scheduler in optax: naive vs verified",
           xlabel="relative difference from torch's rates, 300 steps")
