"""Layer by layer: each layer's output, and the loss's gradient with respect to it, JAX's
against torch's.

`record` runs one forward and one backward on each side, with the parameters of one step:

- torch: a forward hook on every named submodule of the module keeps its output (the first
  item of a tuple), in forward order; the gradient of the loss with respect to each of these
  outputs comes from ``torch.autograd.grad``, so that no parameter's ``.grad`` changes;
- JAX: the model's taps (`functional_fit.taps.tap`; a flax or equinox port and a
  `parity.export.to_jax` twin tap their submodules under torch's names themselves), run
  eagerly, and the gradient of the loss with respect to each tapped value
  (`functional_fit.taps.gradients`).

A tap is matched with the torch submodule of its name (a module called twice: in call
order); the torch submodules no tap names are left out. Layouts: a flax convolution gives
(N, H, W, C) where torch gives (N, C, H, W), and (N, L, C) where torch gives (N, C, L); when
the two shapes differ and JAX's transposed by (0, 3, 1, 2), or (0, 2, 1), has torch's, the
transposed output (and gradient) is compared. Outputs of the same shape are compared as they
are, so an NHWC output whose H, W and C are all equal is compared untransposed.

A wrong forward parts at its layer and at every layer after it (`Layer.parts`); a wrong
backward (a ``jax.custom_vjp`` with a wrong rule, a ``jax.lax.stop_gradient`` in the wrong
place) leaves every output alike and parts in the gradients (`Layer.gradient_parts`) from the
layer whose output feeds the wrong rule, towards the input.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np
import torch

from functional_fit import taps
from functional_fit.tolerances import accumulated, rel_err, step_roundings

#: flax's layouts -> torch's, by the number of axes: (N, H, W, C) -> (N, C, H, W) and
#: (N, L, C) -> (N, C, L).
LAYOUTS = {4: (0, 3, 1, 2), 3: (0, 2, 1)}


class Layer(NamedTuple):
    """One layer's output, and the loss's gradient with respect to it, JAX's against torch's."""

    name: str  # the torch submodule's name, which the JAX model's `tap` gave too
    difference: float  # relative difference of the two outputs (inf: shapes differ)
    tolerance: float  # the rounding its depth allows (`tolerance`'s model, max(step, 1) steps)
    #: relative difference of d loss / d output on both sides (inf: shapes differ, or a
    #: gradient on one side only; nan: not measured)
    gradient: float = math.nan
    gradient_tolerance: float = math.nan  # the rounding the forward and backward allow
    step: int = 0  # 0 (the start) or the first divergent step, each side at its own parameters

    @property
    def parts(self) -> bool:
        """The two outputs differ beyond the tolerance."""
        return not self.difference <= self.tolerance

    @property
    def gradient_parts(self) -> bool:
        """The loss's gradients with respect to the output differ beyond their tolerance
        (False when not measured)."""
        return not math.isnan(self.gradient) and not self.gradient <= self.gradient_tolerance


def _aligned(a: np.ndarray, shape: tuple):
    """`a` in torch's layout `shape`: as it is, or transposed by `LAYOUTS`; None if neither."""
    if a.shape == tuple(shape):
        return a
    perm = LAYOUTS.get(a.ndim)
    if perm is not None and tuple(a.shape[p] for p in perm) == tuple(shape):
        return np.transpose(a, perm)
    return None


def _difference(a, b) -> float:
    """rel_err of JAX's `a` against torch's `b` in torch's layout; inf where the shapes do
    not match (NaNs count as inf); nan where either is None (not measured)."""
    if a is None or b is None:
        return math.nan
    a = _aligned(np.asarray(a), np.shape(b))
    if a is None:
        return math.inf
    d = rel_err(a, b)
    return math.inf if math.isnan(d) else d


def torch_layers(probe, tx, ty=None, torch_loss=None) -> list:
    """(name, output, d loss / d output or None: not measured) of each named submodule's
    call, in forward order, numpy (`_torch_gradients`). Parameters' ``.grad`` are left as
    they were."""
    outs = []

    def record(name):
        def hook(sub, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor):
                outs.append((name, out, out.detach().numpy().copy()))  # before any in-place op
        return hook

    handles = [sub.register_forward_hook(record(n)) for n, sub in probe.named_modules() if n]
    try:
        with torch.enable_grad():
            y_hat = probe(tx)
            grads = _torch_gradients(y_hat, ty, torch_loss, [out for _, out, _ in outs])
    finally:
        for h in handles:
            h.remove()
    return [(name, value, grad) for (name, _, value), grad in zip(outs, grads)]


def _torch_gradients(y_hat, ty, torch_loss, outs: list) -> list:
    """d torch_loss(y_hat, ty) / d each of `outs` (numpy; zeros where the loss does not
    depend on it; None where it is not measured: without a loss, or an output that does not
    require a gradient, such as an identity's output that is the input)."""
    grads = [None] * len(outs)
    if torch_loss is None:
        return grads
    loss = torch_loss(y_hat, ty)
    wanted = [i for i, out in enumerate(outs) if out.requires_grad]
    if not wanted or not loss.requires_grad:
        return grads
    found = torch.autograd.grad(loss, [outs[i] for i in wanted], allow_unused=True)
    for i, g in zip(wanted, found):
        grads[i] = (torch.zeros_like(outs[i]) if g is None else g).detach().numpy().copy()
    return grads


def jax_layers(jax_forward, jax_loss, y) -> list:
    """(name, tapped value, d loss / d value or None: an integer value) of each tap of
    ``jax_forward()`` (`functional_fit.taps.compiled_gradients`: the live ones, in one
    compiled program), in call order, numpy."""
    with taps.recording() as found:  # traced, not run: does the model tap at all?
        jax.eval_shape(jax_forward)
    if not found:  # spare the tracing and compiling
        return []
    tapped, grads = taps.compiled_gradients(lambda: jax_loss(jax_forward(), y))
    return [(name, np.asarray(value), None if g is None else np.asarray(g))
            for (name, value), g in zip(tapped, grads)]


def record(jax_forward, jax_loss, y, probe, tx, ty, torch_loss, pol, batch: int, widest: int,
           *, safety: float, step: int = 0) -> tuple:  # 12: a step's two sides, its sizes
    """Each matched layer's output and output gradient, JAX's against torch's.

    Args:
      jax_forward: ``jax_forward() -> y_hat``, the JAX model on the step's parameters and
        batch (its taps name the layers); run eagerly here, twice (the values, then the
        gradients), so it must tap alike on both calls (the same dropout masks).
      jax_loss: ``jax_loss(y_hat, y) -> ()``; y: the targets, a JAX array.
      probe: the torch module, loaded with the step's parameters (its dropout layers
        replaying the step's masks); run once, forward and backward.
      tx, ty: the batch's inputs and targets as tensors; torch_loss: ``torch_loss(out, ty)``.
      pol: the `functional_fit.precision` policy: its parameters' dtype gives u.
      batch, widest: the tolerance model's sizes (`step_roundings`): the batch's points and
        the widest matrix product's sum.
      safety: `accumulated`'s margin (compare's `SAFETY`).
      step: the step recorded (0: the start); the tolerances allow ``max(step, 1)`` steps'
        roundings, as the parameters there may differ by that many.

    Returns:
      `Layer`s in torch's forward order, for the torch submodules a tap names; () when the
      model taps nothing. Layer k (from 1) of L may part by one step of k layers' roundings
      in its output, of L layers' (the forward to the loss and back) in its gradient.
    """
    tapped = jax_layers(jax_forward, jax_loss, y)
    if not tapped:
        return ()
    pending = {}
    for name, value, grad in tapped:  # a module called twice is tapped twice: matched in order
        pending.setdefault(name, []).append((value, grad))
    matched = []
    for name, value, grad in torch_layers(probe, tx, ty, torch_loss):
        if pending.get(name):
            matched.append((name, *pending[name].pop(0), value, grad))

    def tol(depth):
        per_step = step_roundings(batch, layers=depth, widest=widest)
        return accumulated(pol.params, max(step, 1), per_step, safety=safety)

    return tuple(Layer(name, _difference(j, t), tol(k), _difference(jg, tg), tol(len(matched)),
                       step) for k, (name, j, jg, t, tg) in enumerate(matched, start=1))


__all__ = ["LAYOUTS", "Layer", "jax_layers", "record", "torch_layers"]
