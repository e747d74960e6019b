"""Models: pure functions of one parameter vector and one batch of inputs.

``model(w, x) -> y_hat`` with w of shape (p+1,) and x of shape (n,); the result has shape (n,).
Each works under `jax.grad`, `jax.jit` and `jax.vmap` (vmap over w for many parameter vectors).
The torch twins, written as ``nn.Module`` the way the lecture writes them, are in
`parity.models`.

Models are named in `functional_fit.registry` (``"linear"``, ``"poly"``, ``"sine"``).

Dtypes follow JAX's standard promotion, which here matches torch's: float32 parameters meeting
float64 data give float64 predictions (the lecture's mix), cast explicitly
(`functional_fit.precision.promoted_dtype`) so that JAX's strict promotion mode accepts it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks, nn as _nn
from functional_fit.taps import tap
from functional_fit.precision import promoted_dtype


def _arrays(w, x):
    """(w, x, dtype of the predictions): a list of numbers is a vector; float32 parameters
    meet float64 data in float64, as in torch. Each parameter is cast where it meets the data,
    as JAX's standard promotion casts it, so that strict promotion mode sees a choice."""
    w, x = jnp.asarray(w), jnp.asarray(x)
    dt = promoted_dtype(w, x)
    return w, x.astype(dt), dt


def linear(w, x):
    """The lecture's linear model, w[0] + w[1] * x (cell 5).

    Args:
      w: (2,) intercept and slope.
      x: (n,) inputs.

    Returns:
      (n,) predictions.

    Examples:
      >>> import jax.numpy as jnp
      >>> linear(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0])).tolist()
      [1.0, 3.0]
    """
    w, x, dt = _arrays(w, x)
    return w[0].astype(dt) + w[1].astype(dt) * x  # () + () * (n,) -> (n,)


def polynomial(w, x):
    """The lecture's polynomial model, sum_i w[i] * x**i (cell 52), of degree p = len(w) - 1.

    Summed like the lecture's ``torch.sum(torch.stack([w[i] * x ** i ...]), dim=0)``: every
    term first, then one sum over the terms, so the rounding follows torch's.

    Args:
      w: (p+1,) coefficients, constant term first.
      x: (n,) inputs.

    Returns:
      (n,) predictions.

    Examples:
      >>> import jax.numpy as jnp
      >>> polynomial(jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0])).tolist()
      [17.0]
    """
    w, x, dt = _arrays(w, x)
    terms = jnp.stack([w[i].astype(dt) * x**i for i in range(w.shape[0])])  # (p+1, n)
    return jnp.sum(terms, axis=0)  # (n,)


def sine(w, x):
    """A sine wave, w[0] + w[1] * sin(w[2] * x): a model that is not linear in its parameters.

    The README's worked example of adding a model: this function, `parity.models.SineModel`,
    and one line in each registry (`functional_fit.registry`, `parity.registry`).

    Args:
      w: (3,) offset, amplitude and frequency.
      x: (n,) inputs.

    Returns:
      (n,) predictions.

    Examples:
      >>> import jax.numpy as jnp
      >>> sine(jnp.array([1.0, 2.0, 0.0]), jnp.array([0.5])).tolist()
      [1.0]
    """
    w, x, dt = _arrays(w, x)
    w0, w1, w2 = (w[i].astype(dt) for i in range(3))
    return w0 + w1 * jnp.sin(w2 * x)  # () + () * (n,) -> (n,)


#: The MLP's activations, as torch computes them (GELU in its exact, erf form).
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
}


def mlp(params, x, activation: str = "tanh"):
    """A multilayer perceptron laid out as the ``state_dict`` of its torch twin.

    `parity.models.MLP(sizes, activation)` is an ``nn.Sequential`` of ``Linear`` layers with
    an activation between them, so its parameters are named ``"0.weight"`` (out, in),
    ``"0.bias"`` (out,), ``"2.weight"``, ``"2.bias"``, ...: layer k is ``"{2k}.*"``. The same
    dict drives this function, so `parity.params.from_module` hands torch's weights over as
    they are.

    Args:
      params: dict of ``"{2k}.weight"`` (out_k, in_k) and ``"{2k}.bias"`` (out_k,) arrays.
      x: (n, in_0) inputs; (n,) is taken as (n, 1).
      activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"gelu"`` (exact, as torch's).

    Returns:
      (n, out) outputs of the last layer (no activation after it), as torch's.

    Examples:
      >>> import jax.numpy as jnp
      >>> p = {"0.weight": jnp.ones((2, 1)), "0.bias": jnp.zeros(2),
      ...      "2.weight": jnp.ones((1, 2)), "2.bias": jnp.zeros(1)}
      >>> mlp(p, jnp.array([0.0, 1.0]), "relu").tolist()
      [[0.0], [2.0]]
    """
    act = ACTIVATIONS[activation]
    h = x[:, None] if x.ndim == 1 else x  # (n, in)
    n_layers = sum(1 for k in params if k.endswith(".weight"))
    for k in range(n_layers):
        h = h @ params[f"{2 * k}.weight"].T + params[f"{2 * k}.bias"][None, :]  # (n, out_k)
        if k < n_layers - 1:
            h = act(h)
    return h  # (n, out)


def logistic(params, x):
    """Logistic regression's logits, ``x @ weight.T + bias``: the twin of an ``nn.Linear(d, k)``.

    Train it with `functional_fit.losses.bce_with_logits` (k = 1) or
    `functional_fit.losses.cross_entropy` (k classes).

    Args:
      params: dict ``"weight"`` (k, d) and ``"bias"`` (k,), an ``nn.Linear``'s ``state_dict``.
      x: (n, d) inputs; (n,) is taken as (n, 1).

    Returns:
      (n, k) logits; (n,) when k = 1.

    Examples:
      >>> import jax.numpy as jnp
      >>> logistic({"weight": jnp.array([[2.0]]), "bias": jnp.array([-1.0])},
      ...          jnp.array([0.0, 1.0])).tolist()
      [-1.0, 1.0]
    """
    h = x[:, None] if x.ndim == 1 else x  # (n, d)
    z = h @ params["weight"].T + params["bias"][None, :]  # (n, k)
    return z[:, 0] if z.shape[1] == 1 else z


def _batch_norm(params, state, new, name, h, training, momentum):
    """``name``'s BatchNorm on h (N, C, H, W), its new buffers written into `new`; its
    output tapped under `name`."""
    out, mean, var = _nn.batch_norm(h, state[f"{name}.running_mean"],
                                    state[f"{name}.running_var"], params[f"{name}.weight"],
                                    params[f"{name}.bias"], training=training, momentum=momentum)
    new[f"{name}.running_mean"], new[f"{name}.running_var"] = mean, var
    if training:
        count = f"{name}.num_batches_tracked"
        new[count] = state[count] + jnp.ones((), state[count].dtype)
    return tap(name, out)


def _basic_block(params, state, new, name, h, training, momentum):
    """`parity.models.BasicBlock` ``name`` on h (N, C, H, W) -> (N, C', H', W'), each
    submodule's output tapped under torch's name."""
    stride = params[f"{name}.conv1.weight"].shape[0] // h.shape[1]  # 2 where the width doubles
    out = tap(f"{name}.conv1", _nn.conv2d(h, params[f"{name}.conv1.weight"], stride=stride,
                                          padding=1))
    out = _nn.relu(_batch_norm(params, state, new, f"{name}.bn1", out, training, momentum))
    out = tap(f"{name}.conv2", _nn.conv2d(out, params[f"{name}.conv2.weight"], padding=1))
    out = _batch_norm(params, state, new, f"{name}.bn2", out, training, momentum)
    if f"{name}.shortcut.0.weight" in params:
        h = tap(f"{name}.shortcut.0", _nn.conv2d(h, params[f"{name}.shortcut.0.weight"],
                                                 stride=stride))
        h = _batch_norm(params, state, new, f"{name}.shortcut.1", h, training, momentum)
    return tap(name, _nn.relu(out + tap(f"{name}.shortcut", h)))


def resnet(params, state, x, *, key=None, training: bool = True, dropout: float = 0.1,
           momentum: float = 0.1):
    """The small ResNet of `parity.models.ResNet`, on its ``state_dict`` names.

    A model with state and randomness, as `functional_fit.fit.train` takes one: BatchNorm's
    running statistics are `state`, and the new ones are returned. Each submodule's output is
    tapped under torch's name (`functional_fit.taps`), for `parity.compare`'s layers. In
    training mode BatchNorm normalizes with the batch's statistics and Dropout draws its mask from `key` (the
    forward's first dropout: ``jax.random.fold_in(key, 0)``, as flax NNX's ``Rngs`` numbers
    its draws); in eval mode it uses the running statistics and drops nothing.

    Args:
      params: dict of the module's parameters (``"conv1.weight"`` (w, C, 3, 3), ...,
        ``"fc.weight"`` (k, 2w), ``"fc.bias"`` (k,)).
      state: dict of its buffers (``"bn1.running_mean"`` (w,), ``"bn1.running_var"``,
        ``"bn1.num_batches_tracked"`` (), ...).
      x: (N, C, H, W) images.
      key: a PRNG key for Dropout in training mode (None: dropout must be 0).
      training: training or eval mode, as ``module.train()`` / ``module.eval()``.
      dropout: Dropout's probability; momentum: BatchNorm's (torch's convention).

    Returns:
      (logits (N, k), new state).
    """
    new = dict(state)
    out = tap("conv1", _nn.conv2d(x, params["conv1.weight"], padding=1))  # (N, w, H, W)
    out = _nn.relu(_batch_norm(params, state, new, "bn1", out, training, momentum))
    for name in ("layer1", "layer2"):
        out = _basic_block(params, state, new, name, out, training, momentum)
    out = tap("pool", _nn.adaptive_avg_pool2d(out, 1)).reshape(out.shape[0], -1)  # (N, 2w)
    if training and dropout > 0:
        if key is None:
            raise _checks.InputError("resnet: key is needed for dropout in training mode")
        out = _nn.dropout(out, dropout, key=jax.random.fold_in(key, 0))
    out = tap("dropout", out)
    return tap("fc", _nn.linear(out, params["fc.weight"], params["fc.bias"])), new


def curve(model, w, x, *, points: int = 1000):
    """A fit evaluated on a dense grid over the range of x, for `functional_fit.plot.fits`
    (cell 66).

    Args:
      model: ``model(w, x)``, e.g. `functional_fit.models.polynomial`.
      w: (p+1,) parameters.
      x: (n,) data, whose range the grid spans.
      points: size m of the grid.

    Returns:
      (cx, cy), each (m,) float numpy arrays.
    """
    x = np.asarray(x)
    cx = np.linspace(x.min(), x.max(), points)  # (m,)
    w = jnp.asarray(np.asarray(w))
    return cx, np.asarray(model(w, jnp.asarray(cx.astype(x.dtype))))  # (m,)
