"""A torch ``state_dict`` into flax (NNX or linen) or equinox layers, and back, bit for bit.

`to_nnx(state_dict, module)`, `to_linen(state_dict, variables)` and
`to_equinox(state_dict, module)` fill a copy of a flax NNX module, a linen variables tree
(``params`` and ``batch_stats``) or an equinox module with a torch ``state_dict``;
`from_nnx(module, like)`, `from_linen(variables, like)` and `from_equinox(module, like)` give a
dict keyed by torch's ``state_dict`` names back, `like` (a torch ``state_dict`` or module)
supplying the names, their order and shapes. All six are pure array rearrangements
(transposes, reshapes, splits), so they work on traced arrays inside ``jax.jit`` and
``jax.grad``. Each array takes the dtype of the slot it fills (the flax or equinox array's in
``to_*``, `like`'s in ``from_*``), or keeps its own where that is wider: nothing is rounded, so
round trips are exact, dtypes included where both sides have the same. (flax keeps BatchNorm's
statistics in float32 whatever its ``param_dtype``; a float64 ``state_dict`` fills them in
float64.)

Layers are matched in order and by kind. Torch's layers are its ``state_dict``'s keys grouped
by module prefix, in ``state_dict`` order, a group's kind read from its keys and shapes
(``nn.MultiheadAttention``'s ``out_proj`` belongs to its attention). The flax and equinox layers
are read in definition order: an NNX module's attributes in the order they were assigned
(``vars``), an equinox module's fields in order, lists in order, a linen tree's dicts in
their order. The first pair that does not match (another kind, another shape, a bias on one
side only) is refused by an InputError naming both layers and both shapes.

Orders that JAX loses: a dict through ``jax.jit`` or ``jax.tree`` comes back sorted by name,
and so do the attributes of an NNX module rebuilt by ``nnx.merge``. Pass ``like=`` (the torch
module) to ``to_*`` for a ``state_dict`` that went through ``jax.jit``; pass ``order=`` from
`nnx_order(module)` (taken from the module as built) or `linen_order(module, *inputs)` for a
rebuilt NNX module or a linen tree that went through a transform. `to_nnx`'s copy keeps its
module's order.

The layout rules (torch -> flax; equinox keeps torch's layouts except where noted):

- ``Linear.weight`` (out, in) -> ``Linear``/``Dense`` ``kernel`` (in, out); bias as it is.
- ``Conv{1,2}d.weight`` (O, I, *k) -> ``Conv`` ``kernel`` (*k, I, O), OIHW against HWIO;
  equinox's conv bias is (O, 1, ..., 1).
- ``LayerNorm``/``GroupNorm`` ``weight``, ``bias`` -> ``scale``, ``bias``.
- ``BatchNorm`` ``weight``, ``bias`` -> ``scale``, ``bias``; ``running_mean``, ``running_var``
  -> ``batch_stats`` ``mean``, ``var`` (NNX: the ``BatchStat`` variables; equinox: the layer's
  entry in an ``eqx.nn.State``, mode ``"ema"``). ``num_batches_tracked`` has no flax or
  equinox counterpart: ``from_*`` gives `like`'s value back.
- ``Embedding.weight`` (num, dim) -> ``Embed`` ``embedding`` (num, dim).
- ``MultiheadAttention``'s packed ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E,) ->
  ``query``, ``key``, ``value`` kernels (E, heads, head_dim) and biases (heads, head_dim);
  ``out_proj.weight`` (E, E) -> ``out`` kernel (heads, head_dim, E). Equinox: ``query_proj``,
  ``key_proj``, ``value_proj``, ``output_proj``, torch's layouts.

Hyperparameters are not converted: the converters copy arrays only, so a port must set its
own. BatchNorm's momentum is one minus torch's: torch's 0.1 is flax's (and equinox's) 0.9,
where flax's default is 0.99; flax and equinox update the running variance with the biased
batch variance, torch with the unbiased one (n / (n - 1) times it, n values per channel).

flax and equinox are optional: each function imports its library when called.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch

from functional_fit.checks import InputError


# --- the torch side ----------------------------------------------------------------------

class TorchLayer(NamedTuple):
    name: str  # the module prefix, "" for a bare layer
    kind: str | None  # None: not a kind the converters know
    arrays: dict  # leaf key ("weight", "out_proj.bias", ...) -> array


def _numpy(value):
    """A torch tensor as a numpy array; numpy and JAX arrays (traced ones too) as they are."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _torch_kind(arrays: dict) -> str | None:
    keys = set(arrays)
    if "in_proj_weight" in keys:
        return "MultiheadAttention"
    if "q_proj_weight" in keys:
        return "MultiheadAttention (separate q, k, v)"
    if "running_mean" in keys:
        return "BatchNorm"
    if "weight" not in keys or not keys <= {"weight", "bias"}:
        return None
    ndim = len(np.shape(arrays["weight"]))
    if ndim >= 3:
        return "Conv"
    if ndim == 2:
        return "Linear" if "bias" in keys else "Linear or Embedding"
    return "LayerNorm or GroupNorm" if ndim == 1 else None


def torch_layers(state_dict) -> list[TorchLayer]:
    """A torch ``state_dict`` (or module) as its layers, in ``state_dict`` order."""
    if isinstance(state_dict, torch.nn.Module):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise InputError(f"state_dict must be a torch state_dict or nn.Module, got "
                         f"{type(state_dict).__name__}")
    groups: dict = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = _numpy(value)
    for prefix in list(groups):  # nn.MultiheadAttention's out_proj joins its attention
        parent, _, last = prefix.rpartition(".")
        if last == "out_proj" and parent in groups and _torch_kind(groups[parent]) and \
                _torch_kind(groups[parent]).startswith("MultiheadAttention"):
            groups[parent].update({f"out_proj.{k}": v for k, v in groups.pop(prefix).items()})
    return [TorchLayer(p, _torch_kind(a), a) for p, a in groups.items()]


def _key(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


# --- the layout rules --------------------------------------------------------------------

class Rule(NamedTuple):
    """Torch keys <-> native keys: ``to_native(torch arrays, native shapes)`` and
    ``to_torch(native arrays)``, each a tuple of arrays."""
    torch: tuple
    native: tuple
    to_native: object
    to_torch: object


def _same(arrays, shapes=None):
    return tuple(arrays)


def _transposed(arrays, shapes=None):
    return (arrays[0].T,)  # (out, in) <-> (in, out)


def _to_hwio(arrays, shapes):
    w = arrays[0]  # (O, I, *k)
    return (jnp.transpose(w, (*range(2, w.ndim), 1, 0)),)  # (*k, I, O)


def _to_oihw(arrays):
    k = arrays[0]  # (*k, I, O)
    return (jnp.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2))),)  # (O, I, *k)


def _reshaped(arrays, shapes):
    return tuple(jnp.reshape(a, s) for a, s in zip(arrays, shapes))


def _flat(arrays):
    return tuple(jnp.reshape(a, (-1,)) for a in arrays)  # (O, 1, ..., 1) -> (O,)


def _split3(arrays, shapes):
    return tuple(jnp.split(arrays[0], 3))  # (3E, ...) -> 3 x (E, ...)


def _join3(arrays):
    return (jnp.concatenate(arrays),)  # 3 x (E, ...) -> (3E, ...)


def _to_heads(arrays, shapes):
    """(E, E_in) weights -> (E_in, heads, head_dim) kernels, or (E,) biases -> (heads, head_dim)."""
    return tuple(jnp.reshape(a.T, s) for a, s in zip(arrays, shapes))


def _from_heads(arrays):
    """(E_in, heads, head_dim) kernels -> (E, E_in), or (heads, head_dim) biases -> (E,)."""
    return tuple(jnp.reshape(a, (a.shape[0], -1)).T if a.ndim == 3 else jnp.reshape(a, (-1,))
                 for a in arrays)


def _split_heads(arrays, shapes):
    return _to_heads(_split3(arrays, shapes), shapes)  # (3E, E_in) -> 3 x (E_in, heads, hd)


def _join_heads(arrays):
    return _join3(_from_heads(arrays))  # 3 x (E_in, heads, hd) -> (3E, E_in)


def _to_out(arrays, shapes):
    return (jnp.reshape(arrays[0].T, shapes[0]),)  # (E_out, E) -> (heads, head_dim, E_out)


def _from_out(arrays):
    k = arrays[0]  # (heads, head_dim, E_out)
    return (jnp.reshape(k, (-1, k.shape[-1])).T,)  # (E_out, E)


def _rule(torch_key, native_key, to_native=_same, to_torch=_same):
    pack = lambda k: k if isinstance(k, tuple) else (k,)  # noqa: E731
    return Rule(pack(torch_key), pack(native_key), to_native, to_torch)


_QKV = ("query", "key", "value")
_SEPARATE = tuple(_rule(f"{t}_proj_weight", f"{n}.kernel", _to_heads, _from_heads)
                  for t, n in zip("qkv", _QKV))
_EQX_QKV = ("query_proj", "key_proj", "value_proj")

#: kind -> the rules of flax's layers (NNX and linen name their arrays alike).
FLAX_RULES = {
    "linear": (_rule("weight", "kernel", _transposed, _transposed), _rule("bias", "bias")),
    "conv": (_rule("weight", "kernel", _to_hwio, _to_oihw), _rule("bias", "bias")),
    "norm": (_rule("weight", "scale"), _rule("bias", "bias")),
    "batchnorm": (_rule("weight", "scale"), _rule("bias", "bias"),
                  _rule("running_mean", "mean"), _rule("running_var", "var")),
    "embedding": (_rule("weight", "embedding"),),
    "attention": (
        _rule("in_proj_weight", tuple(f"{n}.kernel" for n in _QKV), _split_heads, _join_heads),
        _rule("in_proj_bias", tuple(f"{n}.bias" for n in _QKV), _split_heads, _join_heads),
        _rule("out_proj.weight", "out.kernel", _to_out, _from_out),
        _rule("out_proj.bias", "out.bias")),
}
FLAX_RULES["attention (separate q, k, v)"] = _SEPARATE + FLAX_RULES["attention"][1:]

#: kind -> the rules of equinox's layers (torch's layouts, its own names).
EQUINOX_RULES = {
    "linear": (_rule("weight", "weight"), _rule("bias", "bias")),
    "conv": (_rule("weight", "weight"), _rule("bias", "bias", _reshaped, _flat)),
    "norm": (_rule("weight", "weight"), _rule("bias", "bias")),
    "batchnorm": (_rule("weight", "weight"), _rule("bias", "bias"),
                  _rule("running_mean", "running_mean"), _rule("running_var", "running_var")),
    "embedding": (_rule("weight", "weight"),),
    "attention": (
        _rule("in_proj_weight", tuple(f"{n}.weight" for n in _EQX_QKV), _split3, _join3),
        _rule("in_proj_bias", tuple(f"{n}.bias" for n in _EQX_QKV), _split3, _join3),
        _rule("out_proj.weight", "output_proj.weight"),
        _rule("out_proj.bias", "output_proj.bias")),
}
EQUINOX_RULES["attention (separate q, k, v)"] = tuple(
    _rule(f"{t}_proj_weight", f"{n}.weight") for t, n in zip("qkv", _EQX_QKV)) + \
    EQUINOX_RULES["attention"][1:]

#: torch's kind -> the native kinds it may match.
ACCEPTS = {"Linear": ("linear",), "Linear or Embedding": ("linear", "embedding"),
           "Conv": ("conv",), "LayerNorm or GroupNorm": ("norm",), "BatchNorm": ("batchnorm",),
           "MultiheadAttention": ("attention",),
           "MultiheadAttention (separate q, k, v)": ("attention",)}


# --- matching ----------------------------------------------------------------------------

class NativeLayer(NamedTuple):
    path: str  # where the layer sits in the flax or equinox model, "a.b.0"
    type: str  # its class, or the kind read from a linen tree
    kind: str | None  # "linear", "conv", ... ; None: not a kind the converters know
    arrays: dict  # native key ("kernel", "query.bias", ...) -> array; absent ones left out
    handle: object  # what the framework needs to write it back


def _shapes(arrays: dict) -> str:
    return ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in arrays.items()) or "no arrays"


def _refuse(t: TorchLayer | None, n: NativeLayer | None, library: str, why: str):
    torch_part = (f"torch layer {t.name!r} ({t.kind or 'unknown kind'}: {_shapes(t.arrays)})"
                  if t else "no torch layer")
    native_part = (f"{library} layer {n.path!r} ({n.type}: {_shapes(n.arrays)})"
                   if n else f"no {library} layer")
    raise InputError(f"{torch_part} does not match {native_part}: {why} (layers are matched "
                     f"in order and by kind)")


def _rules_of(t: TorchLayer, n: NativeLayer, rules: dict, library: str) -> tuple:
    """The pair's rules, once its kinds and shapes are checked: InputError otherwise."""
    if t.kind is None or n.kind is None:
        _refuse(t, n, library, "not a kind of layer the converters know")
    if n.kind not in ACCEPTS[t.kind]:
        _refuse(t, n, library, "the kinds differ")
    chosen = rules[t.kind if t.kind.startswith("MultiheadAttention (") else n.kind]
    used = {"num_batches_tracked"}
    for rule in chosen:
        has_torch = [k in t.arrays for k in rule.torch]
        has_native = [k in n.arrays for k in rule.native]
        used.update(rule.torch)
        if not any(has_torch + has_native):
            continue
        if not all(has_torch + has_native):
            _refuse(t, n, library, f"{'/'.join(rule.torch)} is on one side only")
        native = tuple(jax.ShapeDtypeStruct(np.shape(n.arrays[k]), n.arrays[k].dtype)
                       for k in rule.native)
        try:
            expected = [s.shape for s in jax.eval_shape(rule.to_torch, native)]
        except (TypeError, ValueError):
            expected = None
        if expected != [tuple(np.shape(t.arrays[k])) for k in rule.torch]:
            _refuse(t, n, library, f"the shapes of {'/'.join(rule.torch)} differ")
    extra = [k for k in t.arrays if k not in used]
    if extra:
        _refuse(t, n, library, f"{', '.join(extra)} has no {library} counterpart")
    return chosen


def _matched(torch_side: list, native_side: list, rules: dict, library: str) -> list:
    """[(torch layer, native layer, their rules)] in order; InputError at the first pair that
    does not match, or at the first layer left without a partner."""
    torch_side = [t for t in torch_side if t.arrays]
    native_side = [n for n in native_side if n.arrays]
    out = []
    for i in range(max(len(torch_side), len(native_side))):
        t = torch_side[i] if i < len(torch_side) else None
        n = native_side[i] if i < len(native_side) else None
        if t is None or n is None:
            _refuse(t, n, library, "the models have different numbers of layers")
        out.append((t, n, _rules_of(t, n, rules, library)))
    return out


def _widened(array, dtype):
    """`array` in `dtype`, or in its own dtype where that is the wider: never rounded."""
    return array.astype(np.promote_types(array.dtype, dtype))  # numpy's: no JAX promotion mode


def _in_order(state_dict, like):
    """`state_dict` with `like`'s names in `like`'s order (a dict through ``jax.jit`` comes
    back sorted by name); as it is when `like` is None."""
    if like is None:
        return state_dict
    if isinstance(state_dict, torch.nn.Module):
        state_dict = state_dict.state_dict()
    names = list(like.state_dict() if isinstance(like, torch.nn.Module) else like)
    missing = [k for k in names if k not in state_dict]
    extra = [k for k in state_dict if k not in names]
    if missing or extra:
        raise InputError(f"state_dict's names are not like's: missing {missing}, not in like "
                         f"{extra}")
    return {k: state_dict[k] for k in names}


def _to_native(state_dict, like, native_side: list, rules: dict, library: str) -> list:
    """[(native layer, {native key: array in the native dtype})] for each layer pair."""
    out = []
    layers = torch_layers(_in_order(state_dict, like))
    for t, n, chosen in _matched(layers, native_side, rules, library):
        values = {}
        for rule in chosen:
            if rule.torch[0] not in t.arrays:
                continue
            shapes = tuple(np.shape(n.arrays[k]) for k in rule.native)
            arrays = rule.to_native(tuple(jnp.asarray(t.arrays[k]) for k in rule.torch), shapes)
            values.update({k: _widened(a, n.arrays[k].dtype)
                           for k, a in zip(rule.native, arrays)})
        out.append((n, values))
    return out


def _to_torch(native_side: list, like, rules: dict, library: str) -> dict:
    """The native layers' arrays as a dict keyed by `like`'s names, in `like`'s order."""
    layers = torch_layers(like)
    values = {}
    for t, n, chosen in _matched(layers, native_side, rules, library):
        for rule in chosen:
            if rule.torch[0] not in t.arrays:
                continue
            arrays = rule.to_torch(tuple(n.arrays[k] for k in rule.native))
            values.update({_key(t.name, k): _widened(a, t.arrays[k].dtype)
                           for k, a in zip(rule.torch, arrays)})
    flat = {_key(t.name, k): v for t in layers for k, v in t.arrays.items()}
    # num_batches_tracked (and nothing else: every other key has a counterpart) from `like`
    return {k: values[k] if k in values else np.array(v) for k, v in flat.items()}


def _library(module: str, package: str, caller: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"parity.params.{caller} needs {package}, which is not installed: "
                          f"pip install {package}") from None


# --- flax NNX ----------------------------------------------------------------------------

def _nnx_kinds(nnx) -> tuple:
    return ((nnx.MultiHeadAttention, "attention"), (nnx.Linear, "linear"),
            (nnx.Conv, "conv"), (nnx.BatchNorm, "batchnorm"), (nnx.Embed, "embedding"),
            (nnx.LayerNorm, "norm"), (nnx.GroupNorm, "norm"), (nnx.RMSNorm, "norm"))


def _item(obj, path: tuple):
    """The object at `path` (attribute names, list indices, dict keys) inside `obj`."""
    for part in path:
        obj = obj[part] if isinstance(part, int) or isinstance(obj, Mapping) else \
            getattr(obj, part)
    return obj


def _attr(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _nnx_children(node):
    """(name, value) of an NNX module's attributes in assignment order, or a container's items."""
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, (list, tuple)):
        return list(enumerate(node))
    return [(int(k) if k.isdigit() else k, v) for k, v in vars(node).items()
            if not k.startswith("_")]  # an nnx.List's items are attributes "0", "1", ...


def _nnx_walk(nnx, node, path: tuple, out: list) -> list:
    kind = next((k for cls, k in _nnx_kinds(nnx) if isinstance(node, cls)), None)
    if kind is not None:
        names = {"attention": [f"{n}.{a}" for n in (*_QKV, "out") for a in ("kernel", "bias")],
                 "batchnorm": ["scale", "bias", "mean", "var"]}.get(
                     kind, ["kernel", "embedding", "scale", "bias"])
        variables = {k: _attr(node, k) for k in names if _has(node, k)}
        arrays = {k: v.get_value() for k, v in variables.items()
                  if isinstance(v, nnx.Variable) and v.get_value() is not None}
        out.append(NativeLayer(".".join(map(str, path)), type(node).__name__, kind, arrays,
                               path))
        return out
    if isinstance(node, nnx.Variable) and isinstance(node, (nnx.Param, nnx.BatchStat)):
        out.append(NativeLayer(".".join(map(str, path)), type(node).__name__, None,
                               {"value": node.get_value()}, None))
        return out
    if isinstance(node, (nnx.Module, nnx.List, list, tuple, Mapping)) and \
            not isinstance(node, nnx.Rngs):
        for name, child in _nnx_children(node):
            _nnx_walk(nnx, child, (*path, name), out)
    return out


def _has(obj, dotted: str) -> bool:
    try:
        return _attr(obj, dotted) is not None
    except AttributeError:
        return False


def nnx_order(module) -> list:
    """The paths of an NNX module's layers in definition order (the order `to_nnx` matches).

    Read from the attributes' assignment order, which ``nnx.split``/``nnx.merge`` (and the
    transforms built on them) do not keep: they sort attributes by name. Take the order from
    the module as built, and pass it to `to_nnx` and `from_nnx` for one rebuilt since.
    """
    nnx = _library("flax.nnx", "flax", "nnx_order")
    return [layer.path for layer in _nnx_walk(nnx, module, (), []) if layer.arrays]


def _ordered(layers: list, order, library: str) -> list:
    """`layers` in `order` (paths), InputError for a path that is not one of them."""
    if order is None:
        return layers
    by_path = {layer.path: layer for layer in layers}
    missing = [p for p in order if p not in by_path]
    if missing:
        raise InputError(f"order names {missing[0]!r}, which is not a {library} layer of the "
                         f"model (its layers: {', '.join(map(repr, by_path))})")
    return [by_path[p] for p in order]


def _same_order(nnx, copy, original) -> None:
    """Put each module's attributes in `copy` back in `original`'s order (merge sorts them)."""
    if isinstance(original, (list, tuple)):
        for c, o in zip(copy, original):
            _same_order(nnx, c, o)
        return
    if not (isinstance(original, nnx.Pytree) and isinstance(copy, nnx.Pytree)):
        return
    mine, theirs = vars(copy), vars(original)
    items = [(k, mine[k]) for k in theirs if k in mine] + \
        [(k, v) for k, v in mine.items() if k not in theirs]
    mine.clear()
    mine.update(items)
    for k, v in theirs.items():
        if not k.startswith("_") and k in mine:
            _same_order(nnx, mine[k], v)


def to_nnx(state_dict, module, order=None, *, like=None):
    """A copy of the flax NNX `module` holding `state_dict`'s values; `module` is unchanged.

    Args:
      state_dict: torch's ``state_dict`` (or the module), tensors or numpy or JAX arrays.
      module: an ``nnx.Module`` whose layers match torch's in order and kind.
      order: the layers' paths in definition order, from `nnx_order`; by default read from
        `module` (right for a module as built; see `nnx_order`).
      like: a torch ``state_dict`` or module whose order `state_dict` is read in: needed
        for one that went through ``jax.jit`` or ``jax.tree`` (which sort dicts by name).

    Returns:
      The filled copy, its attributes in `module`'s order.
    """
    nnx = _library("flax.nnx", "flax", "to_nnx")
    layers = _ordered(_nnx_walk(nnx, module, (), []), order, "flax")
    new = {(*layer.handle, *k.split(".")): v
           for layer, values in _to_native(state_dict, like, layers, FLAX_RULES, "flax")
           for k, v in values.items()}
    graphdef, state = nnx.split(module)  # the module's own variables: replaced, not mutated
    flat = [(path, var.replace(value=new.get(path, var.get_value())))
            for path, var in nnx.to_flat_state(state)]
    copy = nnx.merge(graphdef, nnx.from_flat_state(flat))
    _same_order(nnx, copy, module)
    return copy


def from_nnx(module, like, order=None) -> dict:
    """The NNX `module`'s arrays in torch's layouts, keyed by `like`'s ``state_dict`` names.

    Args:
      module: an ``nnx.Module``.
      like: a torch ``state_dict`` or module: the names, their order, shapes and dtypes;
        its ``num_batches_tracked`` values are given back as they are.
      order: the layers' paths in definition order, as for `to_nnx`.
    """
    nnx = _library("flax.nnx", "flax", "from_nnx")
    layers = _ordered(_nnx_walk(nnx, module, (), []), order, "flax")
    return _to_torch(layers, like, FLAX_RULES, "flax")


# --- flax linen --------------------------------------------------------------------------

_LINEN_KINDS = {"MultiHeadDotProductAttention": "attention", "MultiHeadAttention": "attention",
                "SelfAttention": "attention", "Dense": "linear", "Conv": "conv",
                "BatchNorm": "batchnorm", "Embed": "embedding", "LayerNorm": "norm",
                "GroupNorm": "norm", "RMSNorm": "norm"}


def linen_order(module, *args, **kwargs) -> list:
    """The paths of a linen module's layers in the order its ``init`` calls them.

    ``init`` returns the variables in call order, but a tree that went through ``jax.jit``
    or ``jax.tree`` (an optimizer step) has its dicts sorted by name; pass this to `to_linen` and
    `from_linen` as `order` so that layers are matched in the order they are used.
    ``module.init(jax.random.key(0), *args, **kwargs)`` runs abstractly (``jax.eval_shape``).
    """
    linen = _library("flax.linen", "flax", "linen_order")
    calls = []

    def record(next_fun, call_args, call_kwargs, context):
        path = tuple(context.module.path)
        if context.method_name == "__call__" and path not in calls and \
                type(context.module).__name__ in _LINEN_KINDS:
            calls.append(path)
        return next_fun(*call_args, **call_kwargs)

    with linen.intercept_methods(record):
        jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    return [".".join(p) for p in calls]


def _linen_kind(node: Mapping, stats) -> tuple:
    """(type, kind) of a linen layer's params dict, read from its keys."""
    if all(isinstance(node.get(n), Mapping) for n in (*_QKV, "out")):
        return "MultiHeadDotProductAttention", "attention"
    if "kernel" in node:
        return ("Dense", "linear") if np.ndim(node["kernel"]) == 2 else ("Conv", "conv")
    if "embedding" in node:
        return "Embed", "embedding"
    if isinstance(stats, Mapping) and "mean" in stats:
        return "BatchNorm", "batchnorm"
    if set(node) <= {"scale", "bias"}:
        return "LayerNorm", "norm"
    return None


def _get(tree, path):
    for part in path:
        tree = tree.get(part) if isinstance(tree, Mapping) else None
    return tree


def _linen_layer(variables, path: tuple) -> NativeLayer:
    node, stats = _get(variables["params"], path), _get(variables.get("batch_stats", {}), path)
    found = _linen_kind(node, stats) if isinstance(node, Mapping) else None
    type_, kind = found or ("unknown", None)
    arrays = {k: _get(node, k.split(".")) for k in (
        [f"{n}.{a}" for n in (*_QKV, "out") for a in ("kernel", "bias")] if kind == "attention"
        else ["kernel", "embedding", "scale", "bias"])}
    if kind == "batchnorm":
        arrays.update(mean=stats["mean"], var=stats["var"])
    arrays = {k: v for k, v in arrays.items() if v is not None}
    if found is None and isinstance(node, Mapping):
        arrays = {k: v for k, v in node.items() if not isinstance(v, Mapping)}
    return NativeLayer(".".join(path), type_, kind, arrays, path)


def _linen_paths(params: Mapping, path: tuple = ()) -> list:
    """The layers' paths in the tree's own order: a dict that holds arrays is a layer."""
    if _linen_kind(params, None) or any(not isinstance(v, Mapping) for v in params.values()):
        return [path]
    return [p for k, v in params.items() for p in _linen_paths(v, (*path, k))]


def _linen_layers(variables, order) -> list:
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise InputError("variables must be a linen variables dict with 'params' (and "
                         f"'batch_stats'), got {type(variables).__name__}")
    paths = _linen_paths(variables["params"]) if order is None else \
        [tuple(p.split(".")) if p else () for p in order]
    return [_linen_layer(variables, p) for p in paths]


def linen_tree_order(variables) -> list:
    """The paths of a linen variables tree's layers in the tree's own order: the order
    `to_linen` and `from_linen` match them in without ``order``."""
    return [layer.path for layer in _linen_layers(variables, None) if layer.arrays]


def _thawed(tree):
    return {k: _thawed(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def to_linen(state_dict, variables, order=None, *, like=None):
    """linen `variables` (``params``, ``batch_stats``) holding `state_dict`'s values.

    Args:
      state_dict: torch's ``state_dict`` (or the module), tensors or numpy or JAX arrays.
      variables: the linen module's variables, as its ``init`` returns them.
      order: the layers' paths in definition order, from `linen_order`; by default the
        tree's own order (right for ``init``'s tree; see `linen_order`).
      like: a torch ``state_dict`` or module whose order `state_dict` is read in: needed
        for one that went through ``jax.jit`` or ``jax.tree`` (which sort dicts by name).

    Returns:
      A new variables tree (a dict, or a FrozenDict when given one); `variables` is unchanged.
    """
    flax_core = _library("flax.core", "flax", "to_linen")
    out = _thawed(variables)
    for layer, values in _to_native(state_dict, like, _linen_layers(variables, order), FLAX_RULES,
                                    "flax"):
        for k, v in values.items():
            collection = "batch_stats" if layer.kind == "batchnorm" and k in ("mean", "var") \
                else "params"
            *parents, leaf = (*layer.handle, *k.split("."))
            _get(out[collection], parents)[leaf] = v
    return flax_core.freeze(out) if isinstance(variables, flax_core.FrozenDict) else out


def from_linen(variables, like, order=None) -> dict:
    """linen `variables`' arrays in torch's layouts, keyed by `like`'s ``state_dict`` names.

    Args:
      variables: the linen module's variables (``params``, ``batch_stats``).
      like: a torch ``state_dict`` or module: the names, their order, shapes and dtypes;
        its ``num_batches_tracked`` values are given back as they are.
      order: the layers' paths in definition order, as for `to_linen`.
    """
    _library("flax.linen", "flax", "from_linen")
    return _to_torch(_linen_layers(variables, order), like, FLAX_RULES, "flax")


# --- equinox -----------------------------------------------------------------------------

def _eqx_kinds(eqx) -> tuple:
    nn = eqx.nn
    return ((nn.MultiheadAttention, "attention"), (nn.Linear, "linear"), (nn.Conv, "conv"),
            (nn.BatchNorm, "batchnorm"), (nn.Embedding, "embedding"), (nn.LayerNorm, "norm"),
            (nn.GroupNorm, "norm"), (nn.RMSNorm, "norm"))


def _eqx_children(eqx, node):
    if isinstance(node, eqx.Module):
        return [(f.name, getattr(node, f.name)) for f in dataclasses.fields(node)]
    if isinstance(node, Mapping):
        return list(node.items())
    return list(enumerate(node)) if isinstance(node, (list, tuple)) else []


def _eqx_walk(eqx, node, state, path: tuple, out: list) -> list:
    kind = next((k for cls, k in _eqx_kinds(eqx) if isinstance(node, cls)), None)
    name = ".".join(map(str, path))
    if kind == "batchnorm" and node.mode != "ema":
        raise InputError(f"equinox layer {name!r}: BatchNorm(mode={node.mode!r}) keeps "
                         "debiased running statistics that torch has no counterpart for; "
                         "use mode='ema'")
    if kind is not None:
        names = [f"{n}.{a}" for n in (*_EQX_QKV, "output_proj") for a in ("weight", "bias")] \
            if kind == "attention" else ["weight", "bias"]
        arrays = {k: _attr(node, k) for k in names if _has(node, k)}
        if kind == "batchnorm":
            if state is None:
                raise InputError(f"equinox layer {name!r} is a BatchNorm: pass state= (from "
                                 "eqx.nn.make_with_state) for its running statistics")
            arrays["running_mean"], arrays["running_var"] = state.get(node.ema_state_index)
        out.append(NativeLayer(name, type(node).__name__, kind, arrays, path))
    elif eqx.is_inexact_array(node):
        out.append(NativeLayer(name, "array", None, {"value": node}, path))
    elif not isinstance(node, eqx.nn.StateIndex):
        for child_name, child in _eqx_children(eqx, node):
            _eqx_walk(eqx, child, state, (*path, child_name), out)
    return out


def equinox_order(module, state=None) -> list:
    """The paths of an equinox module's layers in the order `to_equinox` matches them: its
    fields in order, lists in order. `state`: its ``eqx.nn.State``, needed with a BatchNorm."""
    eqx = _library("equinox", "equinox", "equinox_order")
    return [layer.path for layer in _eqx_walk(eqx, module, state, (), []) if layer.arrays]


def to_equinox(state_dict, module, state=None, *, like=None):
    """A copy of the equinox `module` holding `state_dict`'s values.

    Args:
      state_dict: torch's ``state_dict`` (or the module), tensors or numpy or JAX arrays.
      module: an ``eqx.Module`` whose layers match torch's in order and kind.
      state: the ``eqx.nn.State`` holding its BatchNorms' running statistics (mode "ema"),
        needed when it has any. Its "first time" flags are left as they are: a BatchNorm
        whose flag is set replaces its running statistics by the batch's on its first
        training call.
      like: a torch ``state_dict`` or module whose order `state_dict` is read in: needed
        for one that went through ``jax.jit`` or ``jax.tree`` (which sort dicts by name).

    Returns:
      The filled module, or (module, state) when `state` is given.
    """
    eqx = _library("equinox", "equinox", "to_equinox")
    where, values, stats = [], [], {}
    for layer, new in _to_native(state_dict, like, _eqx_walk(eqx, module, state, (), []),
                                 EQUINOX_RULES, "equinox"):
        for k, v in new.items():
            if k in ("running_mean", "running_var"):
                stats.setdefault(layer.handle, {})[k] = v
            else:
                where.append((*layer.handle, *k.split(".")))
                values.append(v)
    if where:
        module = eqx.tree_at(lambda m: [_item(m, p) for p in where], module, values)
    if stats:  # a copy: State.set retires the state it is called on, the caller's
        state = jax.tree_util.tree_unflatten(*reversed(jax.tree_util.tree_flatten(state)))
    for path, s in stats.items():
        state = state.set(_item(module, path).ema_state_index, (s["running_mean"],
                                                                s["running_var"]))
    return module if state is None else (module, state)


def from_equinox(module, like, state=None) -> dict:
    """The equinox `module`'s arrays in torch's layouts, keyed by `like`'s ``state_dict`` names.

    Args:
      module: an ``eqx.Module``.
      like: a torch ``state_dict`` or module: the names, their order, shapes and dtypes;
        its ``num_batches_tracked`` values are given back as they are.
      state: the ``eqx.nn.State`` of its BatchNorms (mode "ema"), needed when it has any.
    """
    eqx = _library("equinox", "equinox", "from_equinox")
    return _to_torch(_eqx_walk(eqx, module, state, (), []), like, EQUINOX_RULES, "equinox")


__all__ = ["equinox_order", "from_equinox", "from_linen", "from_nnx", "linen_order",
           "linen_tree_order", "nnx_order", "to_equinox", "to_linen", "to_nnx", "torch_layers"]
