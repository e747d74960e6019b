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
# # Porting a network from torch to JAX: from the first red report to the fix
#
# You have a torch model that trains, and a JAX function you wrote to match it. Do the two
# agree? If not, at which step, in which parameter and in which layer do they part? Is the
# difference rounding, a bug, or one of the conventions in which the two frameworks differ?
# `parity.compare` answers all of these: it runs the same fit in both frameworks from the same
# start, on the same batches, with the same optimizer, and compares every parameter at every
# step against a tolerance derived from the dtype, the number of steps and the sizes of the
# sums. When the two part, it tries the known framework differences one by one, re-running the
# short prefix with each switched, and names those that make the two agree.
#
# This notebook ports a small MLP, checks the port, plants four classic porting bugs and reads
# what `compare` says of each; then it follows one of them from the first red report to the
# fix, and ends with the rest of a torch training step (a scheduler, gradient clipping).
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
from functional_fit.taps import tap
from parity.testing import assert_same_training, report

SMALL = os.environ.get("FUNCTIONAL_FIT_SMALL") == "1"
STEPS = 30 if SMALL else 200

x, y = ff.lecture_data()
X, Y = x[:, None], y[:, None]  # (100, 1): what nn.Linear takes

# %% [markdown]
# ## The torch model
#
# An `nn.Sequential` of `Linear` layers with `tanh` between them, 1 → 16 → 16 → 1. Its
# submodules are named `"0"` to `"4"`.

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
#
# Each layer's output goes through `tap(name, value)`, named as the torch submodule it ports.
# A tap returns its value and does nothing else, under `jit` too; inside `compare`, which runs
# the first forward eagerly, it records the value, and `compare` sets it beside the output of
# torch's submodule of the same name (recorded with a forward hook). That is how a comparison
# can say which layer parts first.


# %%
def mlp(p, x):
    """The port: x (n, 1) -> (n, 1), p the module's state_dict."""
    h = tap("0", x @ p["0.weight"].T + p["0.bias"][None, :])  # (n, 16)
    h = tap("1", jnp.tanh(h))
    h = tap("2", h @ p["2.weight"].T + p["2.bias"][None, :])  # (n, 16)
    h = tap("3", jnp.tanh(h))
    return tap("4", h @ p["4.weight"].T + p["4.bias"][None, :])  # (n, 1)


LOSSES = dict(jax_loss=losses.mse, torch_loss=F.mse_loss)
good = parity.compare(mlp, module, X, Y, **LOSSES, optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
print(good.table())
good.assert_ok()  # what a test of the port would say
assert good.first_layer is None and good.findings == ()
assert [layer.name for layer in good.layers] == ["0", "1", "2", "3", "4"]
good.plot(title="A correct port: every parameter stays within rounding")

# %% [markdown]
# The differences are of the order of 1e-16 and stay far below the tolerance: rounding. The
# tolerance's line says where it comes from; the `layer` lines are the five taps at the start,
# each against torch's submodule. A correct pair has no finding.
#
# ## Four bugs
#
# Each is a mistake people make when porting, and each runs without an error. For each,
# `compare` gives the culprit (which part of the port to read first), the first divergence
# (step, parameter, element), the first layer whose output parts, and its findings.


# %%
def verdict(c):
    """One line per question: culprit and first divergence, first layer, findings."""
    if c.ok:
        print("agree: rounding only")
    else:
        print(f"first in the {c.culprit}: {c.first_divergence}")
    print(f"first layer: {c.first_layer}")
    for f in c.findings:
        print(f"finding {f.id}: {f.before:.2e} before the switch, {f.after:.2e} after")
    if not c.findings:
        print("no finding")


# %% [markdown]
# **1. A weight used as stored.** torch keeps `weight` as (out, in) and multiplies by its
# transpose. The middle layer is square, so forgetting the `.T` still runs.


# %%
def mlp_untransposed(p, x):
    h = tap("0", x @ p["0.weight"].T + p["0.bias"][None, :])
    h = tap("1", jnp.tanh(h))
    h = tap("2", h @ p["2.weight"] + p["2.bias"][None, :])  # the bug: no .T
    h = tap("3", jnp.tanh(h))
    return tap("4", h @ p["4.weight"].T + p["4.bias"][None, :])


c1 = parity.compare(mlp_untransposed, module, X, Y, **LOSSES,
                    optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
verdict(c1)
assert c1.culprit == "model" and c1.first_divergence.step == 1 and c1.first_layer == "2"
assert [f.id for f in c1.findings] == ["kernel_layout"]

# %% [markdown]
# **2. A silent broadcast.** The targets are (n,), the network's output (n, 1); `y_hat - y` is
# then (n, n), and its mean is the mean of n² residuals. torch's own `F.mse_loss` broadcasts
# too (with a warning); the torch side here squeezes, as the working torch code did.

# %%
with jax.numpy_rank_promotion("allow"):
    c2 = parity.compare(mlp, module, X, y, jax_loss=lambda y_hat, y: jnp.mean((y_hat - y) ** 2),
                        torch_loss=lambda y_hat, y: F.mse_loss(y_hat[:, 0], y),
                        optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
verdict(c2)
assert c2.culprit == "loss" and c2.first_divergence.step == 1
assert c2.first_layer is None and c2.findings == ()

# %% [markdown]
# No finding, and that is the answer: a broadcast is not one of the known framework
# differences (the JAX loss is not torch's times a count, as a sum against a mean would be),
# and `compare` never guesses. A finding is kept only when re-running with that one convention
# switched makes the two agree; nothing here does. What it does say is enough to find the
# bug: every layer agrees, the losses do not, so the loss is the place to read. Strict rank
# promotion (`jax_numpy_rank_promotion="raise"`, this project's test setting) turns the
# broadcast into an error at once, which `compare` names:

# %%
with jax.numpy_rank_promotion("raise"):
    try:
        parity.compare(mlp, module, X, y, jax_loss=lambda y_hat, y: jnp.mean((y_hat - y) ** 2),
                       torch_loss=lambda y_hat, y: F.mse_loss(y_hat[:, 0], y), steps=STEPS)
        raise RuntimeError("the broadcast should have been refused")
    except ff.InputError as exc:
        print(exc)
        assert str(exc).startswith("jax_loss fails on the model's output and y")

# %% [markdown]
# **3. RMSprop's eps.** `optax.rmsprop` adds eps inside the square root by default, torch
# outside. (`functional_fit.optim.RMSprop` is torch's; `compare`'s named optimizers use it.)

# %%
c3 = parity.compare(mlp, module, X, Y, **LOSSES,
                    optimizer=(optax.rmsprop(1e-3, decay=0.99, eps=1e-8),
                               lambda ps: torch.optim.RMSprop(ps, lr=1e-3)),
                    steps=STEPS)
verdict(c3)
# every layer agrees at the start; at step 1 each side's own weights give the first layer
assert c3.culprit == "optimizer" and c3.first_divergence.step == 1 and c3.first_layer == "0"
assert not any(layer.parts for layer in c3.layers if layer.step == 0)
assert [f.id for f in c3.findings] == ["rmsprop_eps"]

# %% [markdown]
# **4. Weight decay in the loss.** torch's `AdamW` decays the weights after Adam's step;
# adding wd/2·‖w‖² to the loss instead puts wd·w into the gradient, before Adam's moments.
# That is `optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))`.

# %%
c4 = parity.compare(mlp, module, X, Y, **LOSSES,
                    optimizer=(optax.chain(optax.add_decayed_weights(0.01), optax.adam(0.01)),
                               lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.01)),
                    steps=STEPS)
verdict(c4)
assert c4.culprit == "optimizer" and c4.first_divergence.step == 1
assert [f.id for f in c4.findings] == ["coupled_weight_decay"]
c4.plot(title="L2 in the loss against AdamW: they part at the first step")

# %% [markdown]
# The culprit says which part of the port to read first: the **model** (the outputs differ at
# the start), the **loss** (the outputs agree, the losses do not), the **gradient** (the losses
# agree, their derivatives do not), or the **optimizer** (everything agrees at the start, and
# the paths still part). The first layer narrows a model culprit down to one layer; for an
# optimizer, whose layers all agree at the start, it is read again at the first divergent step,
# each side at its own weights there (here the first layer, `0`: every weight moved apart). A
# finding names the convention, when it is a known one.
#
# ## From the first red report to the fix
#
# Take bug 1 again, as a project's test meets it. `parity.testing.assert_same_training` takes
# `compare`'s arguments and raises an `AssertionError` whose message is the report:

# %%
try:
    assert_same_training(mlp_untransposed, module, X, Y, **LOSSES,
                         optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
    raise RuntimeError("the untransposed port should have failed")
except AssertionError as exc:
    red = str(exc)
print(red)
assert red == report(c1)  # the same report as the comparison above
assert c1.first_divergence.step == 1 and not c1.first_divergence.parameter.startswith("2.")

# %% [markdown]
# Read it from the top.
#
# - **The verdict.** First in the *model*: the two outputs differ at the start, before any
#   step, by far more than the tolerance. The loss, the gradients and the optimizer are not the
#   place to look.
# - **The first divergence** names step 1 and the parameter whose path parts most at the first
#   update, relative to its own path's scale: `4.weight` on the small settings, `0.weight` on
#   the full ones. Not `2.weight`: every layer's gradient passes through the wrong output, so
#   every parameter parts at once, and the one named is not where the bug is. For a model
#   culprit, read the first layer.
# - **The first layer** is `2`: in the `layer` lines, the outputs of `0` and `1` agree to
#   1e-16, and `2` parts, by more than 1 (`3` and `4` follow from it). The bug is in the port of
#   submodule `"2"`, the square `Linear`.
# - **The finding** names the convention: `kernel_layout`, "2.weight given to the JAX model
#   transposed agrees". `compare` re-ran the start with that one weight transposed, and the
#   outputs' difference went from the value before the switch (the `forward` line) to rounding
#   after it:

# %%
finding = c1.findings[0]
print(finding)
assert finding.id == "kernel_layout" and "2.weight given to the JAX model transposed" in str(
    finding)
assert finding.before == c1.forward_diff
assert finding.after <= c1.tolerance.value < finding.before

# %% [markdown]
# The explanation says what to change: torch's `Linear` computes `x @ W.T` with `W` (out, in).
# The fix is the `.T` in layer 2:


# %%
def mlp_fixed(p, x):
    h = tap("0", x @ p["0.weight"].T + p["0.bias"][None, :])
    h = tap("1", jnp.tanh(h))
    h = tap("2", h @ p["2.weight"].T + p["2.bias"][None, :])  # the fix: W.T, as torch
    h = tap("3", jnp.tanh(h))
    return tap("4", h @ p["4.weight"].T + p["4.bias"][None, :])


green = assert_same_training(mlp_fixed, module, X, Y, **LOSSES,
                             optimizer=("Adam", {"lr": 0.01}), steps=STEPS)
print(green.table())
assert green.ok and green.first_layer is None and green.findings == ()

# %% [markdown]
# Green: every parameter within rounding at every step, every layer within its own tolerance,
# no finding. In a project's tests the same call is the whole test, and
# `pytest --parity-report DIR` keeps each failing comparison's report and plot in DIR.
#
# ## The whole torch step: a scheduler and gradient clipping
#
# torch code rarely calls only `optimizer.step()`. `compare` takes the rest of the step as
# torch code has it: `scheduler=` (a function of the torch optimizer, stepped after every
# step) and `max_norm=` / `norm_type=` (`clip_grad_norm_` between `backward` and `step`). A
# named optimizer gets its JAX twin with the same schedule and torch's clipping:

# %%
def step_lr(opt):
    """torch's scheduler of the optimizer: the rate halved every 10 steps."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)


whole = parity.compare(mlp, module, X, Y, **LOSSES,
                       optimizer=("SGD", {"lr": 0.1, "momentum": 0.9}), scheduler=step_lr,
                       max_norm=0.1, steps=STEPS)
verdict(whole)
assert whole.ok and whole.findings == ()

# %% [markdown]
# A pair `(optax transformation, torch factory)` is compared as given: it clips (or not) as its
# author wrote it. `optax.clip_by_global_norm` is the usual port of `clip_grad_norm_`, and it
# is not quite torch's: torch scales by max_norm / (norm + 1e-6), optax by max_norm / norm.

# %%
clipped = parity.compare(mlp, module, X, Y, **LOSSES,
                         optimizer=(optax.chain(optax.clip_by_global_norm(0.1), optax.sgd(0.1)),
                                    lambda ps: torch.optim.SGD(ps, lr=0.1)),
                         max_norm=0.1, steps=STEPS)
verdict(clipped)
print(clipped.findings[0].explanation)
assert clipped.culprit == "optimizer" and clipped.first_divergence.step == 1
assert [f.id for f in clipped.findings] == ["clip_eps"]

# %% [markdown]
# A difference of a few 1e-7, invisible on a loss curve, is still far beyond float64's
# rounding. The finding names it, and its explanation the fix:
# `functional_fit.optim.clip_grad_norm` is torch's clipping as an optax transformation.

# %%
fixed = parity.compare(mlp, module, X, Y, **LOSSES,
                       optimizer=(optax.chain(ff.optim.clip_grad_norm(0.1), optax.sgd(0.1)),
                                  lambda ps: torch.optim.SGD(ps, lr=0.1)),
                       max_norm=0.1, steps=STEPS)
assert fixed.ok and fixed.findings == ()
print("with functional_fit.optim.clip_grad_norm the pair agrees:", fixed.ok)
