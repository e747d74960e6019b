"""Any torch module as a JAX function: ``torch.export``'s graph, run operation by operation in JAX.

`to_jax` captures a module with ``torch.export.export`` and lowers it to the core ATen IR
(``run_decompositions()``: functional, so BatchNorm's running statistics in training mode are
outputs, ``graph_signature.buffers_to_mutate``, not in-place updates; and a small, stable set
of operations, attention's dropout among them as a ``native_dropout`` of its own). Each node's
operation is looked up in `parity.ops.OPS`; one that is missing is refused at conversion,
naming the operation and the module it came from.

The result is a pure ``fn(params, *inputs, key=None)`` over the module's ``state_dict``:
``jax.jit``, ``jax.grad`` and ``jax.vmap`` take it. It is specialized to the example inputs'
shapes, as the exported graph is, except their first axis where the module leaves it free
(`export`); ``vmap`` adds axes in front. In training mode a module
whose buffers change returns ``(output, new_buffers)``; its dropouts draw their masks from
`key` with the project's convention: the i-th dropout of the graph (forward order, from 0,
counting those with 0 < p < 1) keeps ``jax.random.bernoulli(jax.random.fold_in(key, i),
1 - p, shape)``, as a flax NNX ``Rngs(key)`` stream would. ``masks=`` gives the masks
instead: how `check_against_torch` replays torch's own draws.

Inside a `functional_fit.taps.recording` (``parity.compare`` records each layer's output), the
function taps each torch submodule's output under the submodule's name (`module_outputs`), so
that a twin is compared layer by layer with its module without a tap written.

`as_model` puts the function in the engine's form: ``model(params, x)``, or
``model(params, state, x, key=None) -> (y, new_state)`` for a module with state or dropout.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as torch_pytree

from functional_fit import taps as _taps, tolerances as _tol
from functional_fit.checks import InputError
from parity import ops as _ops

#: Forward outputs and new buffers: every operation agrees with torch's to a few roundings up
#: to the order of its sums, the bound of `functional_fit.tolerances.grad_tol` (1e-12 in
#: float64, 1e-5 in float32).
FORWARD = {"float64": _tol.GRAD_FLOAT64, "float32": _tol.GRAD_FLOAT32}
#: Gradients: the backward pass adds every operation's transpose and BatchNorm's and
#: LayerNorm's division by the batch's deviation, which amplifies roundings by the inverse
#: of the standard deviation; the issue's bound, 100 times the forward's.
GRADIENT = {"float64": 100 * _tol.GRAD_FLOAT64, "float32": 100 * _tol.GRAD_FLOAT32}


class _Step(NamedTuple):
    name: str  # the node's name, where its value is kept
    target: object  # the ATen operation
    args: tuple  # arguments, a `_Ref` where a node's value goes
    kwargs: dict
    where: str  # "aten.x.y (from module 'path' (Type))", for errors
    dropout: int | None  # the dropout's number (its key's fold_in), None for other nodes
    dtype: object  # the dtype torch's result has (a JAX dtype), None where not one tensor
    taps: tuple = ()  # the modules whose output it is, innermost first (`module_outputs`)


class _Ref(NamedTuple):
    name: str


class _Plan(NamedTuple):
    inputs: list  # one (placeholder name, kind, state_dict name or constant) per placeholder
    steps: list  # `_Step`s in graph order
    outputs: list  # (kind, name or None, `_Ref` or constant) per graph output
    out_spec: object  # torch's pytree spec of the user outputs


# --------------------------------------------------------------------------- conversion


def _where(node) -> str:
    """The operation and the module it came from, innermost: for error messages."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return f"{node.target} (from the top-level module)"
    path, kind = list(stack.values())[-1]
    kind = getattr(kind, "__name__", str(kind)).rsplit(".", 1)[-1]
    return f"{node.target} (from module {path or '(top level)'!r} ({kind}))"


def _convert_value(a):
    """A node argument as the registry takes it: a `_Ref` for a node, a JAX dtype for a torch one."""
    if isinstance(a, torch.fx.Node):
        return _Ref(a.name)
    if isinstance(a, torch.dtype):
        return _ops.DTYPES[a]
    if isinstance(a, list | tuple):
        return type(a)(_convert_value(b) for b in a)
    if isinstance(a, torch.device | torch.layout | torch.memory_format):
        return None
    return a


def _is_dropout(node) -> bool:
    """A native_dropout that draws: training, 0 < p < 1."""
    if node.target is not torch.ops.aten.native_dropout.default:
        return False
    p, train = node.args[1], node.args[2] if len(node.args) > 2 else True
    return bool(train) and 0 < p < 1


def _scopes(node) -> list:
    """The paths of the modules `node` runs in, outermost first, the top level ("") left out."""
    return [path for path, _ in (node.meta.get("nn_module_stack") or {}).values() if path]


def module_outputs(ep) -> dict:
    """node name -> the paths of the torch submodules whose output the node is, innermost
    first: for each submodule, the last node in its scope whose value is used outside it, by
    a node outside the scope or as a user output. (A training-mode BatchNorm's new running
    statistics leave its scope only as buffer mutations: its output is the normalized
    tensor.)"""
    end = list(ep.graph.nodes)[-1]
    user = {node for spec, node in zip(ep.graph_signature.output_specs, end.args[0])
            if spec.kind == OutputKind.USER_OUTPUT and isinstance(node, torch.fx.Node)}
    last = {}
    for node in ep.graph.nodes:
        if node.op != "call_function" or not isinstance(node.meta.get("val"), torch.Tensor):
            continue
        for path in _scopes(node):
            if any(node in user if u is end else path not in _scopes(u) for u in node.users):
                last[path] = node.name
    out = {}
    for path, name in sorted(last.items(), key=lambda item: -item[0].count(".")):
        out.setdefault(name, []).append(path)
    return {name: tuple(paths) for name, paths in out.items()}


def _steps(graph, taps: dict | None = None) -> list:
    """The graph's operations as `_Step`s, each with the modules whose output it is
    (`taps`: node name -> paths); InputError naming the first unsupported one."""
    steps, dropouts, taps = [], 0, taps or {}
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        if node.target not in _ops.OPS:
            raise InputError(f"to_jax: {_where(node)} is not supported (no JAX function for it "
                             f"in parity.ops.OPS)")
        number = None
        if _is_dropout(node):
            number, dropouts = dropouts, dropouts + 1
        val = node.meta.get("val")
        dtype = _ops.DTYPES.get(val.dtype) if isinstance(val, torch.Tensor) else None
        steps.append(_Step(node.name, node.target, _convert_value(tuple(node.args)),
                           {k: _convert_value(v) for k, v in node.kwargs.items()},
                           _where(node), number, dtype, taps.get(node.name, ())))
    return steps


def _inputs(ep, module) -> list:
    """(placeholder, kind, state_dict name or constant array) per graph input, in order."""
    state = module.state_dict()
    named = dict(module.named_buffers())
    out = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER) and spec.target in state:
            out.append((spec.arg.name, spec.kind, spec.target))
        elif spec.kind == InputKind.BUFFER:  # a non-persistent buffer: not in the state_dict
            out.append((spec.arg.name, "constant", _numpy(named[spec.target])))
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            out.append((spec.arg.name, "constant", _numpy(ep.constants[spec.target])))
        elif spec.kind == InputKind.USER_INPUT:
            out.append((spec.arg.name, spec.kind, None))
        else:
            raise InputError(f"to_jax: graph input {spec.arg.name} of kind {spec.kind.name} "
                             f"is not supported")
    return out


def _outputs(ep) -> list:
    """(kind, buffer name or None, `_Ref` or constant) per graph output."""
    nodes = list(ep.graph.nodes)[-1].args[0]
    out = []
    for spec, node in zip(ep.graph_signature.output_specs, nodes):
        if spec.kind not in (OutputKind.USER_OUTPUT, OutputKind.BUFFER_MUTATION):
            raise InputError(f"to_jax: the module's forward mutates {spec.target!r} "
                             f"({spec.kind.name}); only buffers may be mutated")
        out.append((spec.kind, spec.target, _convert_value(node)))
    return out


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


# --------------------------------------------------------------------------- running the plan


def _resolve(a, env):
    if isinstance(a, _Ref):
        return env[a.name]
    if isinstance(a, list | tuple):
        return type(a)(_resolve(b, env) for b in a)
    return a


def _keep(step, x, key, masks):
    """The keep-mask of dropout number `step.dropout`: from `masks`, else drawn from `key`
    (``bernoulli(fold_in(key, i), 1 - p)``); without either None: dropout off."""
    if masks is not None:
        return jnp.asarray(masks[step.dropout])
    if key is None:  # the engine's convention: a forward without a key draws nothing
        return None
    p = step.args[1]
    return jax.random.bernoulli(jax.random.fold_in(key, step.dropout), 1 - p, x.shape)


def _run(plan: _Plan, env: dict, key, masks) -> dict:
    """Every step on `env` (placeholder name -> array), in order; `env` filled in place."""
    for step in plan.steps:
        args = _resolve(step.args, env)
        kwargs = {k: _resolve(v, env) for k, v in step.kwargs.items()}
        if step.target is torch.ops.aten.native_dropout.default:
            kwargs["keep"] = None if step.dropout is None else _keep(step, args[0], key, masks)
        try:
            value = _ops.OPS[step.target](*args, **kwargs)
        except _ops.Unsupported as e:
            raise InputError(f"to_jax: {step.where} is not supported with these arguments: "
                             f"{e}") from None
        dtype = None if step.dtype is None else jax.dtypes.canonicalize_dtype(step.dtype)
        if dtype is not None and value.dtype != dtype:
            value = value.astype(dtype)  # torch's promotion, where JAX's differs
        for path in step.taps:  # a submodule's output: recorded when compare asks
            value = _taps.tap(path, value)
        env[step.name] = value
    return env


def _environment(plan: _Plan, params, inputs) -> dict:
    """Placeholder name -> array, from `params` (state_dict names) and the flat `inputs`."""
    env, user = {}, iter(inputs)
    for name, kind, source in plan.inputs:
        if kind == InputKind.USER_INPUT:
            x = next(user)
            env[name] = None if x is None else jnp.asarray(x)
        elif kind == "constant":
            env[name] = jnp.asarray(source)
        else:
            if source not in params:
                raise InputError(f"params: missing {source!r} (the module's state_dict names)")
            env[name] = jnp.asarray(params[source])
    return env


def _function(plan: _Plan, n_inputs: int):
    """The pure function of the plan; see `to_jax`."""

    def fn(params, *inputs, key=None, masks=None):
        flat = torch_pytree.tree_leaves(inputs)  # None is a leaf, as in torch.export's spec
        if len(flat) != n_inputs:
            raise InputError(f"inputs: expected {n_inputs} arrays, as the example inputs, got "
                             f"{len(flat)}")
        dropouts = sum(step.dropout is not None for step in plan.steps)
        if masks is not None and len(masks) != dropouts:
            raise InputError(f"masks: expected {dropouts} keep-masks, one per dropout of the "
                             f"graph, got {len(masks)}")
        env = _run(plan, _environment(plan, params, flat), key, masks)
        user = [_resolve(ref, env) for kind, _, ref in plan.outputs
                if kind == OutputKind.USER_OUTPUT]
        output = torch_pytree.tree_unflatten(user, plan.out_spec)
        new = {name: _resolve(ref, env) for kind, name, ref in plan.outputs
               if kind == OutputKind.BUFFER_MUTATION}
        return (output, new) if new else output

    return fn


# --------------------------------------------------------------------------- the public API


def _check_arguments(module, example_inputs) -> None:
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not example_inputs:
        raise InputError("example_inputs: give at least one example input, "
                         "to_jax(module, x, ...)")
    for i, x in enumerate(example_inputs):
        if x is not None and not isinstance(x, torch.Tensor):
            raise InputError(f"example_inputs[{i}] must be a torch.Tensor (or None), got "
                             f"{type(x).__name__}")
    tensors = [*module.state_dict().values(), *(x for x in example_inputs if x is not None)]
    if any(t.dtype == torch.float64 for t in tensors) and not jax.config.jax_enable_x64:
        raise InputError("module: float64 tensors need JAX's 64-bit mode "
                         "(with functional_fit.float64(): ...)")


def export(module, *example_inputs):
    """``torch.export.export`` of `module` on the inputs, lowered to the core ATen IR.

    The first axis of every input is exported as ``Dim.AUTO``: dynamic (the batch) where the
    module allows it, static where it does not, so the function takes batches of other sizes
    (a fit's short last batch, the whole data set) unless the module fixes the size.
    """
    dims = tuple(None if x is None or x.ndim == 0 else {0: torch.export.Dim.AUTO}
                 for x in example_inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own, about its pytree API
        ep = torch.export.export(module, tuple(example_inputs), dynamic_shapes=dims)
        return ep.run_decompositions()


def to_jax(module, *example_inputs, check: bool = True):
    """`module` as a pure JAX function of its ``state_dict`` and inputs, checked against torch.

    Args:
      module: any ``torch.nn.Module`` that ``torch.export`` captures, in the mode (train or
        eval) to convert.
      example_inputs: tensors (or None) as the module's forward takes them positionally; the
        function is specialized to their dtypes and shapes, the first axis excepted where the
        module allows it (`export`).
      check: compare the function with torch on the example inputs (`check_against_torch`), forward and
        gradient w.r.t. the floating parameters; a mismatch raises, naming the worst output
        or parameter.

    Returns:
      ``(fn, params)``: ``fn(params, *inputs, key=None, masks=None)`` returns the module's
      output (the same structure as torch's), or ``(output, new_buffers)`` when the forward
      updates buffers (training mode with BatchNorm: a dict by state_dict name,
      ``num_batches_tracked`` included). `params` is the ``state_dict`` as numpy copies.
      `fn` has the attributes ``parameter_names``, ``buffer_names``, ``mutated_buffers``,
      ``dropouts`` (how many draw), ``training``, ``ops`` (the ATen operations it runs) and
      ``exported`` (the ``torch.export.ExportedProgram``).

    Raises:
      InputError: a bad argument; an operation the registry lacks, named with its module path
        (``"aten.linalg_svd.default (from module 'head' (Decompose))"``); a mismatch with torch.

    Examples:
      >>> import jax, torch
      >>> fn, params = to_jax(torch.nn.Linear(3, 2), torch.ones(4, 3))
      >>> fn(params, torch.ones(4, 3).numpy()).shape
      (4, 2)
    """
    _check_arguments(module, example_inputs)
    ep = export(module, *example_inputs)
    plan = _Plan(_inputs(ep, module), _steps(ep.graph, module_outputs(ep)), _outputs(ep),
                 ep.call_spec.out_spec)
    n_inputs = sum(kind == InputKind.USER_INPUT for _, kind, _ in plan.inputs)
    fn = _function(plan, n_inputs)
    fn.parameter_names = [name for name, _ in module.named_parameters()]
    fn.buffer_names = [n for n in module.state_dict() if n not in set(fn.parameter_names)]
    fn.mutated_buffers = [name for kind, name, _ in plan.outputs
                          if kind == OutputKind.BUFFER_MUTATION]
    fn.dropouts = sum(step.dropout is not None for step in plan.steps)
    fn.training = module.training
    fn.ops = sorted({str(step.target) for step in plan.steps})
    fn.exported = ep
    params = {name: _numpy(t) for name, t in module.state_dict().items()}
    if check:
        check_against_torch(fn, params, *example_inputs)
    return fn, params


# --------------------------------------------------------------------------- torch's side


class TorchRun(NamedTuple):
    """The exported graph run by torch: what `check_against_torch` compares with."""
    output: list  # the user outputs, flat, numpy
    new_buffers: dict  # state_dict name -> numpy, the buffers the forward updates
    masks: list  # the keep-masks of the drawing dropouts, in graph order, numpy booleans
    grads: dict  # parameter name -> numpy: the gradient of sum(cotangent * output)


class _Recorder(torch.fx.Interpreter):
    """Runs a graph in torch, keeping the masks its drawing dropouts draw."""

    def __init__(self, gm):
        super().__init__(gm)
        self.masks = []

    def run_node(self, n):
        result = super().run_node(n)
        if n.op == "call_function" and _is_dropout(n):
            self.masks.append(result[1].detach().numpy().copy())
        return result


def cotangents(output):
    """Fixed pseudo-random weights, one array per float output (None for others)."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(y.shape).astype(y.dtype)
            if np.issubdtype(y.dtype, np.floating) else None for y in output]


def run_torch(fn, params, *inputs) -> TorchRun:
    """`fn`'s exported graph run by torch on `params` and `inputs`: output, new buffers,
    dropout masks (torch's own draws) and the gradient of ``sum(cotangents(output) * output)``
    w.r.t. the parameters."""
    ep = fn.exported
    leaves = [None if x is None else torch.as_tensor(np.asarray(x))
              for x in torch_pytree.tree_leaves(inputs)]
    tensors, grads_of = {}, []
    for name in fn.parameter_names:
        tensors[name] = torch.tensor(np.asarray(params[name]), requires_grad=True)
        if tensors[name].is_floating_point():
            grads_of.append(name)
    for name in fn.buffer_names:
        tensors[name] = torch.tensor(np.asarray(params[name]))
    args, user = [], iter(leaves)
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(next(user))
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            args.append(ep.constants[spec.target])
        else:
            args.append(tensors[spec.target] if spec.target in tensors
                        else ep.constants[spec.target])  # a non-persistent buffer
    recorder = _Recorder(ep.graph_module)
    flat = recorder.run(*args)
    kinds = [spec.kind for spec in ep.graph_signature.output_specs]
    output = [y for k, y in zip(kinds, flat) if k == OutputKind.USER_OUTPUT]
    new = {spec.target: _numpy(y) for spec, y in zip(ep.graph_signature.output_specs, flat)
           if spec.kind == OutputKind.BUFFER_MUTATION}
    pairs = [(y, torch.as_tensor(c)) for y, c in zip(output, cotangents([_numpy(y) for y in output]))
             if c is not None and y.requires_grad]
    grads = torch.autograd.grad([y for y, _ in pairs], [tensors[n] for n in grads_of],
                                [c for _, c in pairs], allow_unused=True) if pairs else []
    grads = {n: np.zeros_like(np.asarray(params[n])) if g is None else _numpy(g)
             for n, g in zip(grads_of, grads)}
    return TorchRun([_numpy(y) for y in output], new, recorder.masks, grads)


# --------------------------------------------------------------------------- the check


def _dtype_name(params, inputs) -> str:
    """"float32" when any floating array is float32 (or narrower), else "float64"."""
    arrays = [*map(np.asarray, params.values()), *map(np.asarray, jax.tree_util.tree_leaves(inputs))]
    floats = [a.dtype for a in arrays if np.issubdtype(a.dtype, np.floating)]
    return "float64" if floats and all(d == np.float64 for d in floats) else "float32"


def _jax_run(fn, params, inputs, masks, names):
    """JAX's output (flat), new buffers and gradient, as `run_torch` computes torch's."""

    def forward(p):
        result = fn({**params, **p}, *inputs, masks=masks)
        output, new = result if fn.mutated_buffers else (result, {})
        output = torch_pytree.tree_leaves(output)
        return [y for y in output if jnp.issubdtype(y.dtype, jnp.floating)], (output, new)

    @jax.jit
    def run(p, cots):
        floats, vjp, (output, new) = jax.vjp(forward, p, has_aux=True)
        return output, new, vjp(cots)[0]

    p = {n: jnp.asarray(params[n]) for n in names}
    output, _ = jax.eval_shape(forward, p)[1]
    cots = [jnp.asarray(c) for c in cotangents(output) if c is not None]
    return run(p, cots)


def gradient_errors(grads: dict, reference: dict) -> dict:
    """max |a - b| per parameter over the largest |b| of the whole gradient: the gradient is
    one vector, so a parameter whose gradient is zero up to rounding (a bias before a
    BatchNorm in training mode) is measured against the gradient's scale, not its own."""
    scale = max((float(np.max(np.abs(g))) for g in reference.values() if np.size(g)), default=0.0)
    errors = {}
    for name, b in reference.items():
        diff = float(np.max(np.abs(np.asarray(grads[name], np.float64) - b))) if np.size(b) else 0.0
        errors[name] = 0.0 if diff == 0 else diff / scale if scale > 0 else float("inf")
    return errors


def check_against_torch(fn, params, *inputs) -> dict:
    """Compare `fn` with torch's run of its graph (`run_torch`) on `params` and `inputs`.

    Dropout replays torch's masks. Compared: every output and new buffer (relative error,
    `FORWARD` of the dtype) and the gradient w.r.t. every floating parameter (`GRADIENT`,
    relative to the whole gradient's scale: `gradient_errors`).

    Returns:
      ``{"output[i]" | buffer name | "grad " + parameter name: relative error}``.

    Raises:
      InputError: naming the worst output, buffer or parameter beyond its tolerance.
    """
    reference = run_torch(fn, params, *inputs)
    ours, new, grads = _jax_run(fn, params, inputs, reference.masks or None, list(reference.grads))
    dtype = _dtype_name(params, inputs)
    errors = {f"output[{i}]": _tol.rel_err(a, b) for i, (a, b) in
              enumerate(zip(ours, reference.output))}
    errors.update({n: _tol.rel_err(new[n], b) for n, b in reference.new_buffers.items()})
    bound = {k: FORWARD[dtype] for k in errors}
    for name, error in gradient_errors(grads, reference.grads).items():
        errors[f"grad {name}"], bound[f"grad {name}"] = error, GRADIENT[dtype]
    worst = max(errors, key=lambda k: errors[k] / bound[k], default=None)
    if worst is not None and not errors[worst] <= bound[worst]:
        raise InputError(f"to_jax: {worst} differs from torch's by {errors[worst]:.3g} relative "
                         f"(tolerance {bound[worst]:.0e}, {dtype})")
    return errors


# --------------------------------------------------------------------------- the engine's form


def as_model(fn, params):
    """`fn` in the engine's conventions: ``(model, params, state)``.

    Nothing updated and nothing drawn (eval mode, or a module without BatchNorm or dropout):
    ``model(params, x)``, with `params` the floating parameters, buffers held fixed, and
    state None. Otherwise ``model(params, state, x, key=None) -> (y, new_state)`` with `state`
    the buffers, as `functional_fit.fit.train` takes a model with state. `x` is the one input,
    or a tuple of the inputs.
    """
    trainable = {n: jnp.asarray(params[n]) for n in fn.parameter_names}
    buffers = {n: jnp.asarray(params[n]) for n in fn.buffer_names}

    def unpack(x):
        return x if isinstance(x, tuple) else (x,)

    if not fn.mutated_buffers and not fn.dropouts:
        def model(p, x):
            return fn({**buffers, **p}, *unpack(x))
        return model, trainable, None

    def stateful(p, state, x, key=None):
        out = fn({**p, **state}, *unpack(x), key=key)
        if fn.mutated_buffers:
            y, new = out
            return y, {**state, **new}
        return out, state

    return stateful, trainable, buffers
