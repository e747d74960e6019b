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
# # Porting a network from torch to JAX, and knowing whether the port is right
#
# You have a torch model that trains, and a JAX function you wrote to match it. Do the two
# agree? If not, at which step, and in which parameter, do they part? Is the difference
# rounding, or a bug? `parity.compare` answers all three: it runs the same fit in both
# frameworks from the same start, on the same batches, with the same optimizer, and compares
# every parameter at every step against a tolerance derived from the dtype, the number of
# steps and the sizes of the sums.
#
# This notebook ports a small MLP, checks the port, then plants four classic porting bugs and
# lets `compare` find each one.
#
# Set `FUNCTIONAL_FIT_SMALL=1` for shorter fits (the tests do).

# %%
# %matplotlib inline
import os

import jax

jax.config.update("jax_enable_x64", True)  # the comparison runs in float64, both sides

import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F

import functional_fit as ff
import parity
from functional_fit import losses

SMALL = os.environ.get("FUNCTIONAL_FIT_SMALL") == "1"
STEPS = 30 if SMALL else 200

x, y = ff.lecture_data()
X, Y = x[:, None], y[:, None]  # (100, 1): what nn.Linear takes

# %% [markdown]
# ## The torch model
#
# An `nn.Sequential` of `Linear` layers with `tanh` between them, 1 → 16 → 16 → 1.

# %%
module = torch.nn.Sequential(
    torch.nn.Linear(1, 16), torch.nn.Tanh(),
    torch.nn.Linear(16, 16), torch.nn.Tanh(),
    torch.nn.Linear(16, 1),
)
torch.manual_seed(0)
for layer in module:
    if isinstance(layer, torch.nn.Linear):
        layer.reset_parameters()
{k: tuple(v.shape) for k, v in module.state_dict().items()}

# %% [markdown]
# ## The port
#
# The parameters are the module's `state_dict`, as numpy arrays with torch's names and shapes
# (`parity.params.from_module`); the JAX function takes that dict. `nn.Linear` computes
# `x @ weight.T + bias`.


# %%
def mlp(p, x):
    """The port: x (n, 1) -> (n, 1), p the module's state_dict."""
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])  # (n, 16)
    h = jnp.tanh(h @ p["2.weight"].T + p["2.bias"][None, :])  # (n, 16)
    return h @ p["4.weight"].T + p["4.bias"][None, :]  # (n, 1)


params = parity.params.from_module(module)
good = parity.compare(mlp, module, X, Y, jax_loss=losses.mse, torch_loss=F.mse_loss,
                      optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
print(good.table())
good.assert_ok()  # what a test of the port would say
good.plot(title="A correct port: every parameter stays within rounding")

# %% [markdown]
# The differences are of the order of 1e-16 and stay far below the tolerance: rounding. The
# tolerance's line says where it comes from.
#
# ## Four bugs
#
# Each is a mistake people make when porting, and each runs without an error.
#
# **1. A weight used as stored.** torch keeps `weight` as (out, in) and multiplies by its
# transpose. The middle layer is square, so forgetting the `.T` still runs.


# %%
def mlp_untransposed(p, x):
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])
    h = jnp.tanh(h @ p["2.weight"] + p["2.bias"][None, :])  # the bug: no .T
    return h @ p["4.weight"].T + p["4.bias"][None, :]


c1 = parity.compare(mlp_untransposed, module, X, Y, jax_loss=losses.mse, torch_loss=F.mse_loss,
                    optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
print(c1.first_divergence, "| first in the", c1.culprit)
assert c1.culprit == "model" and c1.first_divergence.step == 1

# %% [markdown]
# **2. A silent broadcast.** The targets are (n,), the network's output (n, 1); `y_hat - y` is
# then (n, n), and its mean is the mean of n² residuals. torch's own `F.mse_loss` broadcasts
# too (with a warning); the torch side here squeezes, as the working torch code did.

# %%
with jax.numpy_rank_promotion("allow"):
    c2 = parity.compare(mlp, module, X, y, jax_loss=lambda y_hat, y: jnp.mean((y_hat - y) ** 2),
                        torch_loss=lambda y_hat, y: F.mse_loss(y_hat[:, 0], y),
                        optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
print(c2.first_divergence, "| first in the", c2.culprit)
assert c2.culprit == "loss" and c2.first_divergence.step == 1

# %% [markdown]
# **3. RMSprop's eps.** `optax.rmsprop` adds eps inside the square root by default, torch
# outside. (`functional_fit.optim.RMSprop` is torch's; `compare`'s named optimizers use it.)

# %%
c3 = parity.compare(mlp, module, X, Y, jax_loss=losses.mse, torch_loss=F.mse_loss,
                    optimizer=(optax.rmsprop(1e-3, decay=0.99, eps=1e-8),
                               lambda ps: torch.optim.RMSprop(ps, lr=1e-3)),
                    steps=STEPS)
print(c3.first_divergence, "| first in the", c3.culprit)
assert c3.culprit == "optimizer" and c3.first_divergence.step == 1

# %% [markdown]
# **4. Weight decay in the loss.** torch's `AdamW` decays the weights after Adam's step;
# adding wd/2·‖w‖² to the loss instead puts wd·w into the gradient, before Adam's moments.
# That is `optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))`.

# %%
c4 = parity.compare(mlp, module, X, Y, jax_loss=losses.mse, torch_loss=F.mse_loss,
                    optimizer=(optax.chain(optax.add_decayed_weights(0.01), optax.adam(0.01)),
                               lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.01)),
                    steps=STEPS)
print(c4.table())
assert c4.culprit == "optimizer" and c4.first_divergence.step == 1
c4.plot(title="L2 in the loss against AdamW: they part at the first step")

# %% [markdown]
# The culprit says which part of the port to read first: the **model** (the outputs differ at
# the start), the **loss** (the outputs agree, the losses do not), the **gradient** (the losses
# agree, their derivatives do not), or the **optimizer** (everything agrees at the start, and
# the paths still part). The first divergence says at which step, in which parameter and
# element, and by how much beyond rounding.
#
# ## The same check inside a test
#
# ```python
# def test_my_port():
#     parity.compare(my_jax_model, MyTorchModule(), x, y, jax_loss=..., torch_loss=...,
#                    optimizer=("AdamW", {"lr": 1e-3}), epochs=2, batch_size=32).assert_ok()
# ```
#
# `assert_ok` raises an `AssertionError` that names the first divergence.

# %%
fixed = parity.compare(mlp, module, X, Y, jax_loss=losses.mse, torch_loss=F.mse_loss,
                       optimizer=("AdamW", {"lr": 0.01, "weight_decay": 0.01}), epochs=2,
                       batch_size=32)
fixed.assert_ok()
print("the port with functional_fit.optim.AdamW agrees:", fixed.ok)
