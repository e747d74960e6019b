"""A module's parameters as the plain arrays `functional_fit` takes, and back, bit for bit.

`from_module` reads a module's ``state_dict`` into a dict of numpy arrays with torch's names,
shapes and dtypes: the parameter pytree that `functional_fit.models.mlp`,
`functional_fit.models.logistic` and `functional_fit.fit.train` take. `load` writes such a dict
back. Both copy exactly, and both refuse a name or a shape that does not match, naming it.

`to_nnx`, `to_linen`, `to_equinox` and their inverses `from_nnx`, `from_linen`, `from_equinox`
(from `parity.flax_params`, re-exported here) do the same between a torch ``state_dict`` and
flax or equinox layers, in their layouts.

Examples:
  >>> import torch, parity
  >>> m = parity.models.MLP((1, 4, 1), seed=0)
  >>> p = parity.params.from_module(m)
  >>> sorted(p), p["0.weight"].shape, p["0.weight"].dtype
  (['0.bias', '0.weight', '2.bias', '2.weight'], (4, 1), dtype('float32'))
  >>> parity.params.load(m, p) is m
  True
"""

from __future__ import annotations

import numpy as np
import torch

from functional_fit.checks import InputError
from parity.flax_params import (from_equinox, from_linen, from_nnx, linen_order, nnx_order,
                                to_equinox, to_linen, to_nnx)


def from_module(module: torch.nn.Module) -> dict:
    """``state_dict`` names -> numpy copies of the values, torch's shapes and dtypes."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def check(module: torch.nn.Module, params: dict) -> None:
    """InputError unless `params` has exactly the module's names, each with its shape."""
    state = module.state_dict()
    if not isinstance(params, dict):
        raise InputError(f"params must be a dict of state_dict names -> arrays, got "
                         f"{type(params).__name__}")
    missing = [k for k in state if k not in params]
    extra = [k for k in params if k not in state]
    if missing or extra:
        what = "; ".join(s for s in (
            f"missing {', '.join(map(repr, missing))}" if missing else "",
            f"not in the module {', '.join(map(repr, extra))}" if extra else "") if s)
        raise InputError(f"params do not match the module's state_dict: {what} (the module "
                         f"has {', '.join(map(repr, state))})")
    for k, v in state.items():
        shape = tuple(np.shape(params[k]))
        if shape != tuple(v.shape):
            raise InputError(f"params[{k!r}] has shape {shape}, the module's is {tuple(v.shape)}")


def load(module: torch.nn.Module, params: dict) -> torch.nn.Module:
    """Write `params` into the module's parameters and buffers, exactly; returns the module.

    Values are converted to each parameter's own dtype (a float64 array into a float32 module
    rounds, as ``copy_`` does); `from_module` of a module gives back what `load` wrote.
    """
    check(module, params)
    state = module.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            v.copy_(torch.as_tensor(np.asarray(params[k])))
    return module


__all__ = ["check", "from_equinox", "from_linen", "from_module", "from_nnx", "linen_order",
           "load", "nnx_order", "to_equinox", "to_linen", "to_nnx"]
