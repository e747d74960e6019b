"""A flax or equinox port of a torch module as a model function over torch's ``state_dict`` names.

`functional_fit.modules.as_model` turns a flax NNX, flax linen or equinox module into a pure
model function over the library's own parameter tree. A comparison with torch wants the same
model over torch's names: parameters and buffers keyed as the torch module's ``state_dict``
keys them, so that one start feeds both sides and the two paths are compared name by name.
`as_model(jax_module, like)` is that function: at every call it fills the module with the
torch-named arrays (`parity.params.to_nnx`, `to_linen`, `to_equinox`: array rearrangements,
traceable), runs it as `functional_fit.modules.as_model` runs it, and hands its new state
(BatchNorm's running statistics) back under torch's names (`from_nnx`, ...). ``parity.compare``
uses it when its ``jax_model`` is such a module.

``num_batches_tracked``, which flax and equinox do not keep, stays what it was: a comparison
does not compare an integer buffer its JAX side does not update.
"""

from __future__ import annotations

import jax

from functional_fit import modules as _modules
from functional_fit.checks import InputError
from parity import flax_params as _fp


def kind(jax_model) -> str | None:
    """``"nnx"``, ``"equinox"`` (a module, or a (module, ``eqx.nn.State``) pair), ``"linen"``
    (a (module, variables) pair, with or without a dict of `functional_fit.modules.as_model`
    keywords) or None (a plain function)."""
    if isinstance(jax_model, tuple) and jax_model and 2 <= len(jax_model) <= 3:
        return _modules.library(jax_model[0])
    return _modules.library(jax_model)


def _nnx(module, like):
    """(model over torch names, convention) of an NNX module."""
    from flax import nnx  # there: the module given is one of its

    order = _fp.nnx_order(module)

    def forward(params, state, x, key):
        filled = _fp.to_nnx({**params, **state}, module, order, like=like)
        fn, p, s = _modules.as_model(filled, training=True)
        if not fn.stateful:
            return fn(p, x), state
        y, new = fn(p, s, x, key)
        if new is not None and state:
            rest = nnx.split(filled, nnx.Param, nnx.RngState, ...)[3]
            nnx.replace_by_pure_dict(rest, new)
            nnx.update(filled, rest)
        return y, _fp.from_nnx(filled, like, order)

    return forward, "batch"


def _linen(pair, like):
    """(model over torch names, convention) of a (linen module, variables[, keywords])."""
    module, variables, *kwargs = pair
    options = dict(kwargs[0]) if kwargs else {}

    def forward(params, state, x, key):
        filled = _fp.to_linen({**params, **state}, variables, like=like)  # init's order
        fn, p, s = _modules.as_model(module, filled, training=True, **options)
        if not fn.stateful:
            return fn(p, x), state
        y, new = fn(p, s, x, key)
        return y, _fp.from_linen({**filled, **(new or {})}, like)

    return forward, None


def _equinox(model, like):
    """(model over torch names, convention) of an equinox module, or (module, state)."""
    module, eqx_state = model if isinstance(model, tuple) else (model, None)

    def forward(params, state, x, key):
        filled = _fp.to_equinox({**params, **state}, module, eqx_state, like=like)
        m, s = filled if eqx_state is not None else (filled, None)
        fn, p, s = _modules.as_model(m, s, training=True)
        if not fn.stateful:
            return fn(p, x), state
        y, new = fn(p, s, x, key)
        return y, _fp.from_equinox(m, like, new)

    return forward, "per_example"


def as_model(jax_model, like, buffers=()):
    """A flax or equinox port as ``model(params, state, x, key=None) -> (y, new_state)`` over
    torch's names (``model(params, x, key=None) -> y`` when the torch module has no buffers).

    Args:
      jax_model: an NNX module; an equinox module or (module, ``eqx.nn.State``); a linen
        (module, variables) pair, or (module, variables, keywords of
        `functional_fit.modules.as_model`, e.g. ``{"train_kwarg": "train"}``). Run in
        training mode.
      like: the torch module (or its ``state_dict``): the names, their order and shapes.
      buffers: the names of the torch module's buffers: the model's state.

    Returns:
      The model; its ``dropout_convention`` is ``"batch"`` (NNX), ``"per_example"``
      (equinox) or None (linen: its masks follow no order torch could replay).
    """
    build = {"nnx": _nnx, "linen": _linen, "equinox": _equinox}.get(kind(jax_model))
    if build is None:
        raise InputError(f"jax_model must be a function, a flax NNX or equinox module, or a "
                         f"(linen module, variables) pair, got {type(jax_model).__name__}")
    forward, convention = build(jax_model, like)
    names = tuple(buffers)

    def cast(new, state):  # the new state in the dtypes of the state given
        return {k: jax.numpy.asarray(new[k]).astype(state[k].dtype) for k in names}

    if names:
        def model(params, state, x, key=None):
            y, new = forward(params, state, x, key)
            return y, cast(new, state)
    else:
        def model(params, x, key=None):
            return forward(params, {}, x, key)[0]
    model.dropout_convention = convention
    return model


def own_start(jax_model, like) -> dict | None:
    """A flax or equinox port's own arrays (its initializers' values) in torch's names and
    layouts (`parity.flax_params.from_nnx` and friends), or None for a plain function.

    Args:
      jax_model: as `as_model` takes it.
      like: the torch module (or its ``state_dict``): the names, their order and shapes.
    """
    which = kind(jax_model)
    if which == "nnx":
        return _fp.from_nnx(jax_model, like)
    if which == "linen":
        return _fp.from_linen(jax_model[1], like)
    if which == "equinox":
        module, state = jax_model if isinstance(jax_model, tuple) else (jax_model, None)
        return _fp.from_equinox(module, like, state)
    return None


__all__ = ["as_model", "kind", "own_start"]
