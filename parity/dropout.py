"""Dropout masks shared with JAX: torch's ``nn.Dropout`` modules replay the masks a JAX fit draws.

torch draws a dropout mask from its global generator, JAX from a key it is given, so two
training runs of the same model draw different masks and cannot be compared step by step.
`shared` makes torch draw JAX's: forward hooks on the module's ``nn.Dropout`` submodules
replace each one's output with ``input * (keep / (1 - p))``, the keep-mask being the one a JAX
model following the toolkit's convention draws at the same place
(`functional_fit.nn.dropout_keep`): in step t of a fit with key k, the i-th dropout of the
forward (in call order) keeps ``bernoulli(fold_in(fold_in(k, t), i), 1 - p, shape)``
(`functional_fit.engine.step_key`). A flax NNX model draws exactly these through its ``Rngs``.

With ``key=None`` the hooks switch dropout off instead: every ``nn.Dropout`` passes its input
through, as a JAX model called without a key does. Modules in eval mode, and ``p=0``, are left
alone. Other random modules (``Dropout2d``, ``AlphaDropout``, ...) are refused, and
``F.dropout`` called inside a ``forward`` cannot be hooked: `parity.compare` notices the
randomness that is left and says so.

    >>> import jax, torch, parity
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).double()
    >>> x = torch.ones(2, 4, dtype=torch.float64)
    >>> with parity.dropout.shared(m, jax.random.key(0)) as masks:
    ...     masks.step = 3                              # the masks of step 3
    ...     a, b = m(x), m(x)
    >>> torch.equal(a, b)
    True
"""

from __future__ import annotations

import contextlib
import functools

import jax
import numpy as np
import torch
from torch import nn

from functional_fit.checks import InputError
from functional_fit.engine import step_key
from functional_fit.modules import dropout_mask
from functional_fit.nn import dropout_keep

#: Random modules whose masks are not the elementwise ones of ``nn.Dropout``: refused.
UNSUPPORTED = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
               nn.FeatureAlphaDropout)


class Masks:
    """The state of `shared`'s hooks: the key, the step whose masks are drawn, and how many
    dropouts the current forward has drawn."""

    def __init__(self, key, convention: str = "batch"):
        self.key = key  # a JAX PRNG key, or None: dropout off
        self.convention = convention  # "batch" or "per_example" (functional_fit.modules)
        self.step = 0  # set by the training loop before each step
        self.index = 0  # the next dropout's number in the current forward

    def keep(self, p: float, shape) -> np.ndarray:
        """The next dropout's (shape) keep-mask, as JAX draws it (`dropout_keep`)."""
        mask = _keep(self.key, self.step, self.index, p=float(p), shape=tuple(shape),
                     convention=self.convention)
        self.index += 1
        return np.array(mask)


@functools.partial(jax.jit, static_argnames=("p", "shape", "convention"))
def _keep(key, step, index, *, p: float, shape, convention: str):
    """(shape) keep-mask of dropout `index` in step `step`: compiled once per p and shape."""
    k = step_key(key, step)
    if convention == "per_example":  # example n's mask from fold_in(fold_in(k, n), index)
        return dropout_mask(k, index, p, shape, convention)
    return dropout_keep(jax.random.fold_in(k, index), p, shape)


def dropouts(module: nn.Module) -> list[str]:
    """The names of `module`'s active ``nn.Dropout`` submodules (training mode, ``p > 0``);
    InputError for an active random module that `shared` cannot replay."""
    for name, sub in module.named_modules():
        if isinstance(sub, UNSUPPORTED) and sub.training and sub.p > 0:
            raise InputError(f"torch_module has {name!r} ({type(sub).__name__}), whose masks "
                             "cannot be shared with JAX; only nn.Dropout's can")
    return [name for name, sub in module.named_modules()
            if isinstance(sub, nn.Dropout) and sub.training and sub.p > 0]


def _replay(masks: Masks):
    def hook(sub, inputs, output):
        if not sub.training or sub.p == 0:
            return None
        x = inputs[0]
        if masks.key is None:  # dropout off
            return x
        keep = torch.from_numpy(masks.keep(sub.p, x.shape)).to(x.dtype)
        return x * (keep / (1 - sub.p))

    return hook


@contextlib.contextmanager
def shared(module: nn.Module, key, convention: str = "batch"):
    """Within the block, `module`'s active ``nn.Dropout`` layers (`dropouts`) draw JAX's masks
    (off when `key` is None); yields the `Masks`, whose ``.step`` the training loop sets
    before each step. `convention` ``"per_example"`` draws row n of each mask from
    ``fold_in(step_key, n)`` as an equinox module mapped over the batch does
    (`functional_fit.modules.dropout_mask`)."""
    masks = Masks(key, convention)
    handles = [module.register_forward_pre_hook(lambda *_: setattr(masks, "index", 0))]
    for name in dropouts(module):
        handles.append(module.get_submodule(name).register_forward_hook(_replay(masks)))
    try:
        yield masks
    finally:
        for h in handles:
            h.remove()


__all__ = ["Masks", "UNSUPPORTED", "dropouts", "shared"]
