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

Layer names. Inside a `functional_fit.taps.recording` (``parity.compare`` records each
layer's output), the model taps the output of every submodule it calls under the torch name
of its layer (`names`): a layer with arrays is named as `parity.flax_params` matches it (in
order: ``layers.0`` of an ``nnx.Sequential`` or ``eqx.nn.MLP`` is torch's ``0``), a module
without arrays by its attribute path, joined with dots, below the longest prefix whose torch
name its layers agree on (``layer1`` holding ``layer1.conv1``); an output that is a tuple has
its first item tapped (equinox's BatchNorm gives (output, state)). For the recording's
length, the classes of an NNX or equinox module's submodules have their ``__call__`` wrapped
(at the type: flax and equinox rebuild their instances when filled), and a linen module's
calls are intercepted (``flax.linen.intercept_methods``); outside a recording nothing is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import jax

from functional_fit import modules as _modules, taps
from functional_fit.checks import InputError
from parity import flax_params as _fp


def kind(jax_model) -> str | None:
    """``"nnx"``, ``"equinox"`` (a module, or a (module, ``eqx.nn.State``) pair), ``"linen"``
    (a (module, variables) pair, with or without a dict of `functional_fit.modules.as_model`
    keywords) or None (a plain function)."""
    if isinstance(jax_model, tuple) and jax_model and 2 <= len(jax_model) <= 3:
        return _modules.library(jax_model[0])
    return _modules.library(jax_model)


# --------------------------------------------------------------------------- layer names


def _submodules(node, is_module, path=(), seen=None):
    """(path, module) of `node` and every module inside it (attributes, lists, tuples, dicts;
    private attributes left out), depth first, each once."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    if is_module(node):
        seen.add(id(node))
        yield path, node
        children = [(k, v) for k, v in vars(node).items() if not k.startswith("_")]
    elif isinstance(node, (list, tuple)):
        children = list(enumerate(node))
    elif isinstance(node, Mapping):
        children = list(node.items())
    else:
        return
    for key, child in children:
        yield from _submodules(child, is_module, (*path, str(key)), seen)


def names(order: list, like) -> Callable[[str], str]:
    """``name(path) -> torch name`` for a flax or equinox module's dotted paths.

    Args:
      order: the paths of its layers with arrays, in the order `parity.flax_params` matches
        them with torch's (`parity.flax_params.nnx_order`, `equinox_order`).
      like: the torch module (or its ``state_dict``).

    A layer of `order` gets the name of its torch layer; another path the torch name of its
    longest prefix that every layer below it agrees on (``layers`` -> ``""`` when
    ``layers.0`` is ``0``), followed by the rest of the path; else the path as it is.
    """
    leaves = dict(zip(order, (t.name for t in _fp.torch_layers(like))))
    prefixes, conflicts = {}, set()
    for native, name in leaves.items():
        n, t = native.split("."), name.split(".") if name else []
        for i in range(len(n) + 1):
            rest = n[i:]
            if len(rest) <= len(t) and t[len(t) - len(rest):] == rest:
                prefix, torch_prefix = ".".join(n[:i]), ".".join(t[:len(t) - len(rest)])
                if prefixes.setdefault(prefix, torch_prefix) != torch_prefix:
                    conflicts.add(prefix)
    for prefix in conflicts:
        del prefixes[prefix]

    def name(path: str) -> str:
        if path in leaves:
            return leaves[path]
        parts = path.split(".")
        for i in range(len(parts), -1, -1):
            head = ".".join(parts[:i])
            if head in prefixes:
                return ".".join([*([prefixes[head]] if prefixes[head] else []), *parts[i:]])
        return path

    return name


def _tap_output(name: str, out):
    """`out` tapped under `name`: an array, or a tuple's first item (equinox's BatchNorm
    gives (output, state))."""
    if isinstance(out, tuple) and out:
        return (taps.tap(name, out[0]), *out[1:])
    return taps.tap(name, out)


@contextlib.contextmanager
def _linen_tapped(name):
    """Within the block, inside a recording, every call of a linen submodule (not the root)
    taps its output under ``name(dotted path)``: flax's ``intercept_methods``."""
    if not taps.active():
        yield
        return
    import flax.linen as linen

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        path = tuple(context.module.path)
        if context.method_name != "__call__" or not path:
            return out
        return _tap_output(name(".".join(map(str, path))), out)

    with linen.intercept_methods(interceptor):
        yield


@contextlib.contextmanager
def _tapped(module, is_module, name):
    """Within the block, inside a recording, every call of a submodule of the module called
    first (the root, rebuilt or not) taps its output under ``name(dotted path)``."""
    if not taps.active():
        yield
        return
    owners = {next(c for c in type(m).__mro__ if "__call__" in vars(c))
              for _, m in _submodules(module, is_module) if callable(m)}
    saved = {c: vars(c)["__call__"] for c in owners}
    calls = {"paths": None, "busy": set()}

    def wrap(raw):
        def __call__(self, *args, **kwargs):
            call = raw.__get__(self, type(self))
            if calls["paths"] is None:  # the root: map the instances it holds now
                calls["paths"] = {id(m): ".".join(p) for p, m in _submodules(self, is_module)}
                try:
                    return call(*args, **kwargs)
                finally:
                    calls["paths"] = None
            path = calls["paths"].get(id(self))
            if not path or id(self) in calls["busy"]:  # a subclass's call of its parent's
                return call(*args, **kwargs)
            calls["busy"].add(id(self))
            try:
                out = call(*args, **kwargs)
            finally:
                calls["busy"].discard(id(self))
            return _tap_output(name(path), out)
        return __call__

    try:
        for c, raw in saved.items():
            setattr(c, "__call__", wrap(raw))
        yield
    finally:
        for c, raw in saved.items():
            setattr(c, "__call__", raw)


# --------------------------------------------------------------------------- the ports


def _nnx(module, like):
    """(model over torch names, convention) of an NNX module."""
    from flax import nnx  # there: the module given is one of its

    order = _fp.nnx_order(module)
    name = names(order, like)
    is_module = lambda m: isinstance(m, nnx.Module)  # noqa: E731

    def forward(params, state, x, key):
        filled = _fp.to_nnx({**params, **state}, module, order, like=like)
        fn, p, s = _modules.as_model(filled, training=True)
        with _tapped(filled, is_module, name):
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
    name = names(_fp.linen_tree_order(variables), like)

    def forward(params, state, x, key):
        filled = _fp.to_linen({**params, **state}, variables, like=like)  # init's order
        fn, p, s = _modules.as_model(module, filled, training=True, **options)
        with _linen_tapped(name):
            if not fn.stateful:
                return fn(p, x), state
            y, new = fn(p, s, x, key)
        return y, _fp.from_linen({**filled, **(new or {})}, like)

    return forward, None


def _equinox(model, like):
    """(model over torch names, convention) of an equinox module, or (module, state)."""
    import equinox as eqx  # there: the module given is one of its

    module, eqx_state = model if isinstance(model, tuple) else (model, None)
    name = names(_fp.equinox_order(module, eqx_state), like)
    is_module = lambda m: isinstance(m, eqx.Module)  # noqa: E731

    def forward(params, state, x, key):
        filled = _fp.to_equinox({**params, **state}, module, eqx_state, like=like)
        m, s = filled if eqx_state is not None else (filled, None)
        fn, p, s = _modules.as_model(m, s, training=True)
        with _tapped(m, is_module, name):
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


__all__ = ["as_model", "kind", "names", "own_start"]
