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
# # A torch CNN in flax and in JAX, two ways, checked against torch
#
# You have a convolutional network in torch, with BatchNorm and Dropout, and want it in JAX.
# There are two roads:
#
# 1. **By hand, to flax NNX.** Write the same network with flax's layers, then copy torch's
#    weights into it with `parity.params.to_nnx`, which knows the layout rules (OIHW against
#    HWIO kernels, `(out, in)` against `(in, out)`, BatchNorm's buffers against flax's batch
#    statistics). What it cannot copy are the hyperparameters: those are yours to get right.
# 2. **Automatically.** `parity.export.to_jax` captures the module with `torch.export` and runs
#    its ATen graph in JAX: a pure function of the `state_dict`, nothing to write by hand.
#
# This notebook takes one small ResNet down both roads, trains all three (torch, the flax port,
# the export) from the same start with the same batches and the same dropout masks, and asks
# `parity.compare` whether they agree: where they do, where flax and torch really differ
# (BatchNorm's running variance), and how a classic porting bug (flax's default BatchNorm
# momentum) is caught. It ends with the lecture's linear model beside the jaxpr of its export.
#
# Set `FUNCTIONAL_FIT_SMALL=1` for a smaller data set and shorter fits (the tests do).

# %%
# %matplotlib inline
import collections
import inspect
import itertools
import os

import jax

jax.config.update("jax_enable_x64", True)  # the comparison runs in float64, both sides

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import torch
import torch.nn.functional as F
from flax import nnx

import functional_fit as ff
import parity
import parity.export
from functional_fit import losses

torch.set_num_threads(1)  # a tiny network: OpenMP's hand-offs cost more than its work
SMALL = os.environ.get("FUNCTIONAL_FIT_SMALL") == "1"
N = 64 if SMALL else 512  # images
EPOCHS, BATCH = (3, 16) if SMALL else (10, 32)
LR = 0.01

# %% [markdown]
# ## 1. The torch model and the data
#
# `parity.models.ResNet(3, 4, 5)`: a 3x3 convolution, BatchNorm and ReLU; a basic block at 4
# channels and a strided one at 8 (its skip connection a 1x1 convolution and BatchNorm);
# adaptive average pooling, Dropout and a linear head to 5 classes. In float64, so that any
# difference beyond rounding is a difference of the computations.
#
# The data: N random 3 x 8 x 8 images (NCHW, torch's layout) and random labels.

# %%
C, SIZE, CLASSES = 3, 8, 5
rng = np.random.default_rng(0)
x = rng.normal(size=(N, C, SIZE, SIZE))  # (N, C, H, W) float64
y = rng.integers(0, CLASSES, size=N)  # (N,) labels
module = parity.models.ResNet(C, 4, CLASSES, dropout=0.2, dtype=torch.float64, seed=0)
print(module)
{k: tuple(v.shape) for k, v in module.state_dict().items()}

# %% [markdown]
# ## 2. Route 1: by hand, to flax NNX
#
# The port has the same layers in the same order as torch's `state_dict`, since `to_nnx` matches
# layers in order and by kind. Three things differ from torch and are written out here:
#
# - **Layout.** flax's convolutions take NHWC images; the port transposes torch's NCHW batch
#   once, on the way in. (The kernels' layouts are `to_nnx`'s job.)
# - **BatchNorm's momentum** is one minus torch's: torch's `momentum=0.1` (the new running
#   value is 0.9 old + 0.1 batch) is flax's `momentum=0.9`. flax's default, 0.99, is a
#   different network in training mode.
# - **`epsilon=1e-5`**, torch's; flax's default is also 1e-5, but say it.
#
# The mode (BatchNorm on batch or running statistics, Dropout on or off) is the module's:
# `port.train()` and `port.eval()`, as in torch.

# %%
F64 = {"param_dtype": jnp.float64, "dtype": jnp.float64}


class Block(nnx.Module):
    """torch's BasicBlock: (N, H, W, cin) -> (N, H/stride, W/stride, cout)."""

    def __init__(self, cin, cout, stride, momentum, rngs):
        conv = dict(use_bias=False, rngs=rngs, **F64)
        bn = dict(momentum=momentum, epsilon=1e-5, rngs=rngs, **F64)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, padding=1, **conv)
        self.bn1 = nnx.BatchNorm(cout, **bn)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=1, **conv)
        self.bn2 = nnx.BatchNorm(cout, **bn)
        self.shortcut = nnx.List([
            nnx.Conv(cin, cout, (1, 1), strides=stride, padding="VALID", **conv),
            nnx.BatchNorm(cout, **bn)] if stride != 1 or cin != cout else [])

    def __call__(self, x):
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        for layer in self.shortcut:  # the 1x1 conv and its BatchNorm, or nothing
            x = layer(x)
        return nnx.relu(out + x)


class ResNet(nnx.Module):
    """torch's parity.models.ResNet in flax NNX: (N, C, H, W) images -> (N, classes) logits."""

    def __init__(self, cin, width, classes, dropout=0.2, momentum=0.9, seed=0):
        rngs = nnx.Rngs(seed)
        self.conv1 = nnx.Conv(cin, width, (3, 3), padding=1, use_bias=False, rngs=rngs, **F64)
        self.bn1 = nnx.BatchNorm(width, momentum=momentum, epsilon=1e-5, rngs=rngs, **F64)
        self.layer1 = Block(width, width, 1, momentum, rngs)
        self.layer2 = Block(width, 2 * width, 2, momentum, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc = nnx.Linear(2 * width, classes, rngs=rngs, **F64)

    def __call__(self, x):
        x = jnp.transpose(x, (0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)
        out = nnx.relu(self.bn1(self.conv1(x)))  # (N, H, W, width)
        out = self.layer2(self.layer1(out))  # (N, H/2, W/2, 2 width)
        return self.fc(self.dropout(jnp.mean(out, axis=(1, 2))))  # (N, classes)


state_dict = parity.params.from_module(module)  # numpy arrays by state_dict name
port = parity.params.to_nnx(state_dict, ResNet(C, 4, CLASSES))  # a filled copy
ORDER = parity.params.nnx_order(port)  # its layers in definition order, for from_nnx below
ORDER

# %% [markdown]
# In eval mode (running statistics, no dropout) the two are the same function:

# %%
module.eval()
port.eval()
torch_out = module(torch.from_numpy(x)).detach().numpy()  # (N, CLASSES)
flax_out = np.asarray(port(jnp.asarray(x)))
print("eval forward, max |flax - torch|:", np.max(np.abs(flax_out - torch_out)))
assert np.allclose(flax_out, torch_out, rtol=0, atol=1e-12)
module.train()
port.train()

# %% [markdown]
# In training mode BatchNorm normalizes with the batch's own statistics, the same on both
# sides, and updates its running ones. The running mean follows. The running variance does
# not, quite: torch updates it with the *unbiased* batch variance (divided by n - 1, n values
# per channel), flax with the *biased* one (divided by n). After one step they differ by
# 0.1 · var / (n - 1) per channel: small, and exactly predicted.

# %%
probe_torch = parity.models.ResNet(C, 4, CLASSES, dropout=0.2, dtype=torch.float64)
probe_torch.load_state_dict(module.state_dict())
probe_flax = nnx.clone(port)  # a copy: port keeps its initial statistics
with torch.no_grad():
    probe_torch(torch.from_numpy(x))
    h = probe_torch.conv1(torch.from_numpy(x))  # (N, 4, H, W): what bn1 normalizes
probe_flax(jnp.asarray(x))
after_torch = parity.params.from_module(probe_torch)
after_flax = parity.params.from_nnx(probe_flax, module, ORDER)
n = h.numel() // h.shape[1]  # values per channel
predicted = 0.1 * h.var(dim=(0, 2, 3), unbiased=False).numpy() / (n - 1)  # (4,)
mean_gap = np.max(np.abs(after_torch["bn1.running_mean"] - after_flax["bn1.running_mean"]))
var_gap = after_torch["bn1.running_var"] - after_flax["bn1.running_var"]  # (4,)
print(f"bn1.running_mean, max |torch - flax|: {mean_gap:.1e}")
print("bn1.running_var,  torch - flax:      ", var_gap)
print("predicted 0.1 var / (n - 1):         ", predicted)
assert mean_gap < 1e-14 and np.allclose(var_gap, predicted, rtol=1e-9, atol=0)

# %% [markdown]
# ## 3. Route 2: automatically, with `torch.export`
#
# `to_jax(module, example)` exports the module in its present mode (training here, so the
# function also returns BatchNorm's new buffers, and draws dropout from a key) and checks the
# function against torch on the example, forward and gradient, before handing it over.
# `as_model` puts it in the training engine's form: `model(params, state, x, key=None) ->
# (logits, new_state)`, `params` the trainable parameters and `state` the buffers, both keyed
# by torch's `state_dict` names.

# %%
fn, arrays = parity.export.to_jax(module, torch.from_numpy(x[:8]))  # arrays: the state_dict
twin, params, state = parity.export.as_model(fn, arrays)
print("ATen operations:", ", ".join(fn.ops))
print("parameters:", len(params), " buffers:", len(state), " dropouts:", fn.dropouts)

# %% [markdown]
# What JAX sees: the jaxpr of one training-mode forward, counted by primitive (the whole is a
# couple of hundred lines), and its convolutions.

# %%
jaxpr = jax.make_jaxpr(lambda p, s, x: twin(p, s, x, key=jax.random.key(0)))(
    params, state, x[:8])
print(len(jaxpr.eqns), "equations:", dict(collections.Counter(
    e.primitive.name for e in jaxpr.eqns).most_common(8)))
print("\n".join(line for line in str(jaxpr).splitlines() if "conv_general_dilated" in line))

# %% [markdown]
# ## 4. Train all three
#
# The same Adam, the same minibatches (`batch_order`), and the same dropout masks: the JAX fits
# draw step t's masks from `fold_in(key, t)`, and `parity.fit.train(..., key=key)` replays them
# in torch's `nn.Dropout` layers. `fit.train` takes the NNX module as it is (training mode;
# its parameters are the `nnx.Param`s, its state the batch statistics), and the export's
# model with its `params` and `state`.

# %%
order = ff.data.batch_order(N, EPOCHS, 0)  # (EPOCHS, N): each epoch's permutation
key = jax.random.key(0)
fit_args = dict(loss=losses.cross_entropy, optimizer=optax.adam(LR), order=order,
                batch_size=BATCH, key=key)
fit_flax = ff.fit.train(None, x, y, model=port, **fit_args)
fit_export = ff.fit.train(params, x, y, model=twin, state=state, **fit_args)

trained = parity.models.ResNet(C, 4, CLASSES, dropout=0.2, dtype=torch.float64)
trained.load_state_dict(module.state_dict())  # the same start, a copy to train
fit_torch = parity.fit.train(trained, F.cross_entropy, torch.from_numpy(x), torch.from_numpy(y),
                             optimizer=torch.optim.Adam(trained.parameters(), lr=LR),
                             order=order, batch_size=BATCH, key=key)

# %%
fig, (ax, gap) = plt.subplots(1, 2, figsize=(11, 3.8))
steps = np.arange(1, len(fit_torch.losses) + 1)
ax.plot(steps, fit_torch.losses, "k-", lw=3, alpha=0.3, label="torch")
ax.plot(steps, fit_flax.losses, "C0--", label="flax NNX port (to_nnx)")
ax.plot(steps, fit_export.losses, "C1:", lw=2, label="export (to_jax)")
ax.set(xlabel="step", ylabel="batch loss (cross-entropy)", title="Three fits, one curve")
ax.legend()
FLOOR = 1e-17  # where the log scale shows an exact agreement
for fit, style, name in ((fit_flax, "C0o", "flax port"), (fit_export, "C1s", "export")):
    gap.semilogy(steps, np.maximum(np.abs(fit.losses - fit_torch.losses), FLOOR), style,
                 ms=4, label=name)
gap.axhline(np.finfo(np.float64).eps, color="gray", ls="--", lw=1, label="float64 eps")
gap.set(xlabel="step", ylabel="|loss - torch's loss|  (floor: equal)", ylim=(5e-18, 1e-12),
        title="Apart by rounding")
gap.legend()
plt.show()

# %% [markdown]
# The losses agree to rounding, and so do the trained weights. The NNX port's final variables
# go back to torch's names and layouts with `from_nnx`. Its running variances are the one thing
# that is not rounding: the biased estimate of section 2, step after step.

# %%
graphdef, _, streams, _ = nnx.split(port, nnx.Param, nnx.RngState, ...)
final_flax = parity.params.from_nnx(
    nnx.merge(graphdef, fit_flax.params, streams, fit_flax.state), module, ORDER)
final_export = {**fit_export.params, **fit_export.state}


def worst(names, a, b):
    """The largest relative difference over `names`: max |a - b| / max |b|."""
    return max(float(np.max(np.abs(np.asarray(a[k]) - b[k])) / np.max(np.abs(b[k])))
               for k in names)


weights = list(params)
variances = [k for k in state if k.endswith("running_var")]
means = [k for k in state if k.endswith("running_mean")]
for name, final in (("flax port", final_flax), ("export", final_export)):
    print(f"{name:9}  weights {worst(weights, final, fit_torch.params):.1e}   running means "
          f"{worst(means, final, fit_torch.params):.1e}   running variances "
          f"{worst(variances, final, fit_torch.params):.1e}")
assert worst(weights + means, final_flax, fit_torch.params) < 1e-12
assert worst(weights + means + variances, final_export, fit_torch.params) < 1e-12
assert worst(variances, final_flax, fit_torch.params) > 1e-6  # the biased estimate

# %% [markdown]
# ## 5. Compare with torch, step by step
#
# `parity.compare` runs the fit on both sides itself and compares every parameter *and
# buffer* at every step, against a tolerance derived from the dtype, the steps and the sizes
# of the sums. It wants the JAX model as `model(params, state, x, key=None)` keyed by
# `state_dict` names: exactly what `as_model` gave.

# %%
c = parity.compare(twin, module, x, y, jax_loss=losses.cross_entropy,
                   torch_loss=F.cross_entropy, optimizer=("Adam", {"lr": LR}), epochs=EPOCHS,
                   batch_size=BATCH)
print(c.table())
assert c.ok and c.dropout == "shared"

# %% [markdown]
# `compare` takes the NNX port itself as well. At every step it fills the module from torch's
# names (`to_nnx`) and reads its new batch statistics back under them (`from_nnx`), so the two
# sides are compared name by name, buffers included, with the same dropout masks.
#
# Every parameter agrees to rounding, all along. The running variances part at the first step,
# and `compare` says where: at the BatchNorm layers, culprit `"state"`. That is section 2's
# biased estimate, a real difference between the libraries rather than a bug of the port; a
# port that must reproduce torch's running variance has to rescale flax's update itself.

# %%
c_port = parity.compare(port, module, x, y, jax_loss=losses.cross_entropy,
                        torch_loss=F.cross_entropy, optimizer=("Adam", {"lr": LR}),
                        epochs=EPOCHS, batch_size=BATCH)
print(c_port.table())
tol = c_port.tolerance.value
assert all(c_port.path_diff[k].max() <= tol for k in weights + means)
assert c_port.culprit == "state" and c_port.first_divergence.step == 1
assert c_port.first_divergence.parameter.endswith("running_var")

# %% [markdown]
# A classic porting bug: BatchNorm written with flax's default `momentum=0.99` (torch's 0.01),
# where torch's default 0.1 is flax's 0.9. Training-mode BatchNorm normalizes with the batch's
# own statistics, so the loss and the weights do not notice; the running statistics do, and
# eval mode would give other outputs. `compare` catches it at the first step, at a BatchNorm's
# buffer, the running means now parting too.

# %%
slow = parity.params.to_nnx(state_dict, ResNet(C, 4, CLASSES, momentum=0.99))
c_slow = parity.compare(slow, module, x, y, jax_loss=losses.cross_entropy,
                        torch_loss=F.cross_entropy, optimizer=("Adam", {"lr": LR}),
                        epochs=1, batch_size=BATCH)
print(c_slow.first_divergence, "| first in the", c_slow.culprit)
print("running means apart by:", f"{max(c_slow.path_diff[k].max() for k in means):.2f}")
assert c_slow.culprit == "state" and c_slow.first_divergence.step == 1
assert c_slow.first_divergence.parameter.rsplit(".", 1)[1] in ("running_mean", "running_var")
assert all(c_slow.path_diff[k].max() > 1e-3 for k in means)

# %% [markdown]
# ## 6. The lecture's model and its export, side by side
#
# The lecture's `SimpleLinearModel` on the left; on the right, the jaxpr of the function
# `to_jax` makes of it: torch's `w[0] + w[1] * x` as JAX's primitives (`select` becomes a
# `slice` and a `squeeze`, broadcasting is explicit).

# %%
lecture = parity.models.SimpleLinearModel(dtype=torch.float64)
xs = torch.linspace(-1, 1, 5, dtype=torch.float64)
lecture_fn, lecture_params = parity.export.to_jax(lecture, xs)
left = inspect.getsource(parity.models.linear) + "\n" + inspect.getsource(
    parity.models.SimpleLinearModel.forward)
right = str(jax.make_jaxpr(lecture_fn)(lecture_params, xs.numpy()))
width = max(map(len, left.splitlines()))
for a, b in itertools.zip_longest(left.splitlines(), right.splitlines(), fillvalue=""):
    print(f"{a:<{width}} | {b}")
