"""Flax NNX, flax linen and equinox modules as pure model functions of the training engine.

``as_model(module, variables) -> (model, params, state)`` turns a module of any of the three
libraries into the engine's conventions, so that `functional_fit.fit.train`, `parity.compare`
and the surfaces take it as "the JAX model":

- ``model(params, x) -> y`` when the module has no state and draws no randomness;
- ``model(params, state, x, key=None) -> (y, new_state)`` otherwise (``state`` may be None: a
  module that only draws dropout masks). ``key`` is the forward's PRNG key; a fit gives step
  t the key ``jax.random.fold_in(key, t)``.

The model is pure: it works under `jax.jit`, `jax.grad` (with respect to ``params``) and inside
`jax.lax.scan`, and never changes the module it was made from.

What ``params`` and ``state`` are, per library:

======== ============================================ ===========================================
library  params (trained)                             state (carried, not trained), or None
======== ============================================ ===========================================
NNX      the ``nnx.Param`` variables as a plain        every other variable (``BatchStat``, ...)
         nested dict (`flax.nnx.to_pure_dict`)         as a plain nested dict
linen    ``variables["params"]``                       the other collections (``batch_stats``)
equinox  ``eqx.filter(module, eqx.is_inexact_array)``  the ``eqx.nn.State`` given as `variables`
======== ============================================ ===========================================

NNX's parameters are a plain dict rather than an ``nnx.State`` so that optax, `jax.tree` and
the engine's checks see arrays only; ``nnx.replace_by_pure_dict(nnx.state(module, nnx.Param),
params)`` and ``nnx.update(module, ...)`` put them back into a module.

Randomness. The engine's convention is that the i-th dropout of a forward (forward order, from
0) keeps an element where ``jax.random.bernoulli(jax.random.fold_in(key, i), 1 - p, x.shape)``
is true, so the torch side can be given the same masks. ``model.dropout_convention`` says how
far a module follows it:

- ``"batch"`` (NNX): exactly the convention; called with ``key=None`` it drops nothing, as
  the engine's convention has it. The model gives every ``nnx.Dropout`` one shared
  ``RngStream`` with key `key` and count 0, so its i-th draw is ``fold_in(key, i)``: the
  stream's own rule. Randomness drawn any other way (a module's own ``Rngs`` used in its
  ``__call__``) is fed the module's stored keys on every call, unchanged.
- ``"per_example"`` (equinox): the model maps the module over the batch (below), and example n
  receives the key ``fold_in(key, n)``; a module that draws its i-th dropout from
  ``fold_in(key, i)`` then keeps row n where
  ``bernoulli(fold_in(fold_in(key, n), i), 1 - p, x.shape[1:])``. Equinox modules split their
  keys themselves, so this holds only for modules written that way.
- None (linen): flax derives each layer's dropout key from the key and the layer's path in the
  module, so the masks follow no order a torch module could replay; a comparison must not
  share masks with torch.

`dropout_mask(key, i, p, shape, convention)` draws the i-th mask of a forward under either
convention, for the torch side.

Modes. `training` sets the module's mode: NNX ``module.train()`` / ``module.eval()`` (BatchNorm
normalizes with the batch's statistics and updates its running ones; Dropout drops), equinox
``eqx.nn.inference_mode(module, not training)``. A linen module takes its mode as a keyword of
its call, which the caller names: ``train_kwarg="train"`` passes ``train=training``; anything
else (``deterministic=not training``) goes in `call_kwargs`, which every library's call gets.

Calling conventions:

- NNX: ``module(x, **call_kwargs) -> y``, x a batch.
- linen: ``module.apply(variables, x, **call_kwargs) -> y``, x a batch; the non-params
  collections are mutable and returned as the new state. In training mode a linen model always
  takes the stateful form, since whether it draws dropout is only known when it runs.
- equinox: the module maps ONE example, as equinox's layers do: ``module(x) -> y``,
  ``module(x, *, key) -> y`` when it draws randomness, ``module(x, state, *, key) -> (y,
  state)`` with state (``key`` only in training mode with an ``eqx.nn.Dropout`` of p > 0). The
  model maps it over the batch with ``jax.vmap(..., axis_name="batch")``, the axis name that
  ``eqx.nn.BatchNorm(..., axis_name="batch")`` needs.

flax and equinox are optional: they are imported when a module of theirs arrives.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from functional_fit import taps
from functional_fit.checks import InputError

#: The libraries, by the top of their classes' module names: (kind, package to pip install).
LIBRARIES = {"flax.nnx": ("nnx", "flax"), "flax.linen": ("linen", "flax"),
             "equinox": ("equinox", "equinox")}


def as_model(module, variables=None, *, training: bool = True, train_kwarg: str | None = None,
             call_kwargs: Mapping | None = None):
    """A flax NNX, flax linen or equinox module as ``(model, params, state)``.

    Args:
      module: an ``nnx.Module``, a ``flax.linen.Module`` or an ``equinox.Module``.
      variables: linen: the module's variables (``{"params": ..., "batch_stats": ...}``, from
        ``module.init``); equinox: its ``eqx.nn.State`` (from ``eqx.nn.make_with_state``) or
        None; NNX: None (the module holds its variables).
      training: training mode (BatchNorm on the batch's statistics, updating the running
        ones; Dropout active) or eval mode.
      train_kwarg: the name of the call's keyword that takes `training` (linen's usual
        ``"train"``); None passes none.
      call_kwargs: further keywords for every call of the module.

    Returns:
      (model, params, state): ``model(params, x) -> y`` or ``model(params, state, x,
      key=None) -> (y, new_state)`` (see the module's docstring); the model's attributes
      ``stateful`` (which of the two), ``dropout_convention`` (``"batch"``,
      ``"per_example"`` or None) and ``library`` (``"nnx"``, ``"linen"``, ``"equinox"``)
      describe it.

    Raises:
      InputError: `module` is none of the three, linen without `variables`, `variables`
        without ``"params"``, or variables given where the library takes none.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model, params, state = as_model(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> model(params, jnp.ones((5, 3), jnp.float32)).shape, sorted(params), state
      ((5, 2), ['bias', 'kernel'], None)
    """
    kind = _kind(module)
    kwargs = dict(call_kwargs or {})
    if train_kwarg is not None:
        kwargs[train_kwarg] = bool(training)
    build = {"nnx": _nnx, "linen": _linen, "equinox": _equinox}[kind]
    forward, params, state, random, convention = build(module, variables, bool(training),
                                                       kwargs)
    if state is None and not random:
        def model(params, x):
            """``(params, x (N, ...)) -> y (N, ...)``: the module's forward pass."""
            return forward(params, None, x, None)[0]
    else:
        def model(params, state, x, key=None):
            """``(params, state, x (N, ...), key) -> (y (N, ...), new_state)``."""
            return forward(params, state, x, key)
    model.stateful = not (state is None and not random)
    model.dropout_convention = convention
    model.library = kind
    return model, params, state


def dropout_mask(key, i: int, p: float, shape: tuple, convention: str = "batch"):
    """The keep-mask that a forward's i-th dropout (from 0) draws under `convention`, so that
    the torch side can be handed the same mask.

    Args:
      key: the forward's PRNG key.
      i: which dropout of the forward, in forward order.
      p: its drop probability.
      shape: (N, ...) the shape of its input, the batch first.
      convention: ``model.dropout_convention``: ``"batch"`` (one draw for the whole batch) or
        ``"per_example"`` (row n drawn from ``fold_in(key, n)``).

    Returns:
      (N, ...) bool: True where the element is kept (and scaled by ``1 / (1 - p)``).

    Examples:
      >>> import jax
      >>> dropout_mask(jax.random.key(0), 1, 0.5, (4, 3)).shape
      (4, 3)
    """
    def draw(k, shape):
        return jax.random.bernoulli(jax.random.fold_in(k, i), 1 - p, shape)

    if convention == "batch":
        return draw(key, tuple(shape))
    if convention == "per_example":
        n = jnp.arange(shape[0], dtype=jnp.uint32)  # (N,)
        return jax.vmap(lambda n: draw(jax.random.fold_in(key, n), tuple(shape[1:])))(n)
    raise InputError(f"convention must be 'batch' or 'per_example', got {convention!r} (a linen "
                     "module's masks follow neither)")


def library(obj) -> str | None:
    """``"nnx"``, ``"linen"`` or ``"equinox"`` when `obj` is an object of that library (from
    the module names of its classes: nothing is imported), else None."""
    for cls in type(obj).__mro__:
        for prefix, (kind, _) in LIBRARIES.items():
            if cls.__module__ == prefix or cls.__module__.startswith(prefix + "."):
                return kind
    return None


def _kind(module) -> str:
    """"nnx", "linen" or "equinox", from the module names of `module`'s classes."""
    kind = library(module)
    if kind is None:
        _not_a_module(module)
    return kind


def _not_a_module(module):
    raise InputError(f"module must be a flax NNX module, a flax linen module or an equinox "
                     f"module, got {type(module).__name__}")


def _import(name: str, package: str):
    """Module `name`, or one ImportError line saying to ``pip install`` `package`."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"{name} is needed for this module: pip install {package}") from None


def _need_key(key, library: str):
    if key is None:
        raise InputError(f"key: the {library} module draws dropout in training mode; pass a "
                         "PRNG key")


# --------------------------------------------------------------------------- flax NNX


def _nnx(module, variables, training, kwargs):
    """(forward, params, state, random, "batch") for an NNX module."""
    nnx = _import("flax.nnx", "flax")
    if not isinstance(module, nnx.Module):  # an Rngs, a Variable, ...
        _not_a_module(module)
    if variables is not None:
        raise InputError("variables: an NNX module holds its own variables; pass None")
    module = nnx.clone(module)
    module.train() if training else module.eval()
    graphdef, *parts = nnx.split(module, nnx.Param, nnx.RngState, ...)
    params, streams, rest = (nnx.to_pure_dict(part) for part in parts)  # streams: fed as is
    random = bool(_dropouts(nnx, module))

    def forward(params, state, x, key):
        m = nnx.merge(graphdef, params, streams, {} if state is None else state)
        if random:  # without a key nothing is dropped, the engine's convention
            stream = None if key is None else nnx.RngStream(key, tag="dropout")
            for layer in _dropouts(nnx, m):  # draw i of the stream is fold_in(key, i)
                if stream is None:
                    layer.deterministic = True
                else:
                    layer.rngs = stream
        y = m(x, **kwargs)
        if state is None:
            return y, None
        return y, nnx.to_pure_dict(nnx.split(m, nnx.Param, nnx.RngState, ...)[3])

    return forward, params, rest or None, random, "batch"


def _dropouts(nnx, module) -> list:
    """The ``nnx.Dropout`` layers of `module` that drop something in its present mode."""
    return [m for _, m in nnx.iter_modules(module)
            if isinstance(m, nnx.Dropout) and m.rate > 0 and not m.deterministic]


# --------------------------------------------------------------------------- flax linen


def _linen(module, variables, training, kwargs):
    """(forward, params, state, random, None) for a linen module and its variables."""
    if not isinstance(module, _import("flax.linen", "flax").Module):
        _not_a_module(module)
    if variables is None:
        raise InputError("variables: a linen module needs its variables (module.init(key, x))")
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise InputError("variables must be a linen variables dict holding 'params', got "
                         f"{type(variables).__name__}"
                         + (f" with {sorted(variables)}" if isinstance(variables, Mapping)
                            else ""))
    state = {k: v for k, v in variables.items() if k != "params"} or None
    errors = _import("flax.errors", "flax")

    def forward(params, state, x, key):
        rngs = {} if key is None else {"dropout": key}
        try:
            if state is None:
                return module.apply({"params": params}, x, rngs=rngs, **kwargs), None
            y, new = module.apply({"params": params, **state}, x, rngs=rngs,
                                  mutable=list(state), **kwargs)
        except errors.InvalidRngError:
            _need_key(key, "linen")
            raise
        return y, {k: new[k] for k in state}

    return forward, variables["params"], state, training, None


# --------------------------------------------------------------------------- equinox


def _equinox(module, variables, training, kwargs):
    """(forward, params, state, random, "per_example") for an equinox module (one example)."""
    eqx = _import("equinox", "equinox")
    if not isinstance(module, eqx.Module):
        _not_a_module(module)
    if variables is not None and not isinstance(variables, eqx.nn.State):
        raise InputError(f"variables: an equinox module's variables are its eqx.nn.State or "
                         f"None, got {type(variables).__name__}")
    module = eqx.nn.inference_mode(module, not training)
    params, static = eqx.partition(module, eqx.is_inexact_array)
    is_dropout = lambda n: isinstance(n, eqx.nn.Dropout)  # noqa: E731
    random = any(is_dropout(n) and not n.inference and n.p > 0
                 for n in jax.tree.leaves(module, is_leaf=is_dropout))

    def one(m, x, state, key):  # one example: x (...) -> y (...)
        extra = dict(kwargs, key=key) if random else kwargs
        if state is None:
            return m(x, **extra), None
        return m(x, state, **extra)

    def forward(params, state, x, key):
        m = eqx.combine(params, static)
        keys = None
        if random:
            _need_key(key, "equinox")
            n = jnp.arange(x.shape[0], dtype=jnp.uint32)  # (N,)
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(n)  # (N, *key)
        batched = taps.vmap(lambda x, s, k: one(m, x, s, k), axis_name="batch",  # taps too
                            in_axes=(0, None, None if keys is None else 0), out_axes=(0, None))
        return batched(x, state, keys)  # (y (N, ...), new state)

    return forward, params, variables, random, "per_example"


__all__ = ["LIBRARIES", "as_model", "dropout_mask", "library"]
