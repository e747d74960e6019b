"""Fitting: one training loop, any model, loss, optax optimizer and parameter pytree.

`train` checks its inputs on concrete values, runs the whole fit on the engine
(`functional_fit.engine`: one compiled `jax.lax.scan`) and checks that it did not diverge; a
second call with inputs of the same shapes and dtypes and the same optimizer does not compile
again. The lecture's three fits, `gradient_descent`, `stochastic_gradient_descent` and
`adam_sgd`, and `run` are the same fit with the registry's recipes (`functional_fit.registry`):
``optax.sgd`` with the step lr / (i + 1), the same with lr / (e + 1) in epoch e, and
``optax.adam(lr)``. Their names and signatures mirror `parity.fit`, the lecture's torch loops.

Batches: ``steps=T`` gives T full-batch steps; ``order`` (epochs, n) with ``batch_size`` B gives
minibatches in that order, the last of each epoch short when B does not divide n, as
``DataLoader(drop_last=False)`` cuts it (`functional_fit.engine`; the length is checked by
`functional_fit.data.fit_length`).

Long fits run as compiled calls of about a second each (`functional_fit.engine.run_chunks`),
so Ctrl-C stops one between calls, a ``progress`` callback hears of each, and ``trace=False``
keeps no path at all; the result is bit-identical to one call's. ``runtime=`` passes the sizes
and the memory limit (`functional_fit.runtime`).

Every fit returns a `FitResult`: the final parameters, the path (a pytree shaped like the
parameters whose leaves have a leading axis of steps + 1: before the first step and after
every step) and the loss of every step's batch, taken before that step's update, as the
lecture's loops compute it.

Models with state and randomness: ``train(..., state=, key=)`` trains ``model(params, state,
x) -> (y_hat, new_state)`` (BatchNorm's running statistics, threaded through the scan, never
differentiated; `FitResult.state` and ``.state_path``) and gives step t the key ``fold_in(key,
t)`` for its dropout (`functional_fit.engine`). A flax NNX, linen or equinox module is taken
as the model directly (`module_model`).

Divergence: `train` and the wrappers raise `DivergenceError` (an `InputError`) when a loss or a
final parameter is non-finite, naming the first step whose loss was (`first_nonfinite`); the
error carries the whole `FitResult` as ``.result``. The engine's `train_scan` does not check: a
sweep over learning rates wants the non-finite runs, not an exception. `parity.fit` raises the
same error at the same step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_fit import checks as _checks, data as _data, losses as _losses, models as _models
from functional_fit import modules as _modules, registry, runtime as _runtime
from functional_fit.checks import DivergenceError, InputError, first_nonfinite  # noqa: F401
from functional_fit.data import Length
# The engine, under the names this module has always given it.
from functional_fit.engine import (CHUNK_WORK, MAX_STEPS, STEP_OVERHEAD, Carry,  # noqa: F401
                                   FitResult, Trace, apply, as_recipe, batches, chunk_steps,
                                   init_carry,
                                   init_jit, recipe_jit, run_chunks, spans, step, steps_jit,
                                   train_jit, train_scan, train_steps)
from functional_fit.precision import check_array_dtype, default_float

# --------------------------------------------------------------------------- checks


def check_params(name: str, params):
    """`params` as a pytree of JAX float arrays, every leaf finite; InputError naming `name`.

    A flat list or tuple of numbers is one vector, as the lecture's ``w0`` is (a list of
    arrays stays a pytree of several leaves).
    """
    if isinstance(params, (list, tuple)) and params and all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in params):
        params = np.asarray(params, dtype=np.result_type(float))  # (p+1,)
    leaves, treedef = jax.tree.flatten(params)
    if not leaves:
        raise InputError(f"{name} holds no arrays")
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        where = name + jax.tree_util.keystr(path)
        if hasattr(leaf, "detach"):  # a torch tensor
            raise InputError(f"{where} is a torch tensor; pass numpy or JAX arrays "
                             "(parity.params.from_module converts a module's parameters)")
        arr = np.asarray(leaf)
        if not (np.issubdtype(arr.dtype, np.floating)):
            raise InputError(f"{where} must hold floating-point numbers, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where} contains a non-finite value")
        check_array_dtype(where, arr)
        out.append(jnp.asarray(leaf))
    return jax.tree.unflatten(treedef, out)


def check_fit_data(x, y):
    """Data for `train`: x (n, ...) (a vector, rows, images (n, C, H, W), sequences), y (n, ...),
    numeric and finite. Returns JAX arrays."""
    x, y = _checks.points(x, y, ndims=None)
    for name, arr in (("x", x), ("y", y)):
        check_array_dtype(name, arr)
    return jnp.asarray(x), jnp.asarray(y)


def check_state(state):
    """A stateful model's state as a pytree of JAX arrays (floats or integers, such as
    BatchNorm's ``num_batches_tracked``), every leaf finite; None stays None."""
    if state is None:
        return None
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        where = "state" + jax.tree_util.keystr(path)
        arr = np.asarray(leaf)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"{where} must hold numbers, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where} contains a non-finite value")
        out.append(jnp.asarray(leaf))
    return jax.tree.unflatten(jax.tree.structure(state), out)


def check_key(key):
    """A PRNG key (``jax.random.key(seed)``, or a legacy ``PRNGKey``), or None; InputError
    naming ``key`` otherwise."""
    if key is None:
        return None
    arr = key if isinstance(key, jax.Array) else np.asarray(key) if isinstance(
        key, (np.ndarray, list, tuple)) else None
    if arr is not None and (jnp.issubdtype(arr.dtype, jax.dtypes.prng_key)
                            or (arr.shape == (2,) and arr.dtype == np.uint32)):
        return jnp.asarray(arr)
    raise InputError(f"key must be a JAX PRNG key (jax.random.key(0)), got "
                     f"{type(key).__name__} of shape {np.shape(key)}")


def check_model(model, loss, params, x, y, batch_size: int | None = None, *, state=None,
                key=None) -> None:
    """Run the model and the loss abstractly; InputError when they fail or the loss is not ().

    Traced at the data's own shapes (`jax.eval_shape`, which computes nothing), so a model is
    judged on the n it is given; once per model, loss and shapes: a check that passed is
    remembered, so a sweep of many small fits does not trace the model again for each. With
    `batch_size` B (minibatches), also at the sizes the batches have: B, and n mod B for an
    epoch's short last batch. A stateful model (`state` given) must return its output and a
    state of the same structure, shapes and dtypes (`functional_fit.engine.apply`).
    """
    n = x.shape[0]
    sizes = [n] if batch_size is None else sorted({n, min(batch_size, n), n % batch_size} - {0})

    def abstract(tree):
        leaves, treedef = jax.tree.flatten(tree)
        return treedef, tuple(jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a))
                              for a in leaves)

    extra = (abstract(state), None if key is None else jax.ShapeDtypeStruct(key.shape,
                                                                              key.dtype))
    for m in sizes:
        spec = (*abstract(params), jax.ShapeDtypeStruct((m,) + x.shape[1:], x.dtype),
                jax.ShapeDtypeStruct((m,) + y.shape[1:], y.dtype),
                None if state is None else extra[0], extra[1])
        try:
            _check_model_once(model, loss, spec)
        except TypeError as exc:  # an unhashable model or loss: check without remembering
            if "unhashable" not in str(exc):
                raise
            _check_model_once.__wrapped__(model, loss, spec)
        except InputError as exc:
            if m == n:
                raise
            raise InputError(f"batch_size {batch_size}: on a batch of {m} of the {n} points, "
                             f"{exc}") from None


@functools.lru_cache(maxsize=256)
def _check_model_once(model, loss, spec) -> None:
    treedef, leaves, xs, ys, state_spec, key = spec
    params = jax.tree.unflatten(treedef, list(leaves))
    state = None if state_spec is None else jax.tree.unflatten(state_spec[0], list(state_spec[1]))

    def forward(p, s, x, y, k):
        y_hat, new = apply(model, p, s, x, k)
        return loss(y_hat, y), new

    try:
        out, new = jax.eval_shape(forward, params, state, xs, ys, key)
    except InputError:
        raise
    except Exception as exc:  # the user's function, on the user's parameters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"params: the model or the loss fails on these parameters and data "
                         f"({type(exc).__name__}: {first}); check the pytree's structure and "
                         "shapes against the model") from None
    if out.shape != ():
        raise InputError(f"loss must return a scalar, got shape {out.shape}")
    if state is not None and jax.tree.structure(new) != jax.tree.structure(state):
        raise InputError("model must return (output, new state) with the state's structure; "
                         f"got {jax.tree.structure(new)} for {jax.tree.structure(state)}")
    if state is not None:
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
            if (a.shape, a.dtype) != (b.shape, b.dtype):
                raise InputError(f"model's new state has a leaf {a.dtype}{list(a.shape)} where "
                                 f"the state has {b.dtype}{list(b.shape)}")


# --------------------------------------------------------------------------- running a checked fit


class _Fit(NamedTuple):
    """A checked fit, ready to run on the engine."""

    where: str  # its name in messages ("train", "gradient_descent")
    recipe: Any  # the optimizer's `functional_fit.engine.Recipe`
    lr: float | None  # the learning rate the recipe takes; None for an optax transformation
    params: Any  # the checked initial parameters
    x: jax.Array  # (n,) or (n, d)
    y: jax.Array  # (n, ...)
    order: jax.Array | None  # (epochs, n) with minibatches
    length: Length
    model: Callable
    loss: Callable
    state: Any = None  # a stateful model's checked initial state, or None
    key: Any = None  # the fit's PRNG key, or None


def _run(fit: _Fit, *, trace: bool, progress, runtime) -> FitResult:
    """Run a checked fit: one compiled call when it is short, calls of about a second when
    long; `DivergenceError` when it ended non-finite."""
    rt = _runtime.resolve(runtime)
    n = fit.x.shape[0]
    total = fit.length.total(n)
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(fit.params))
    chunk = chunk_steps(n if fit.length.full else fit.length.batch_size, n_params, runtime=rt)
    lr = None if fit.lr is None else default_float(fit.lr)
    kw = dict(recipe=fit.recipe, model=fit.model, loss=fit.loss,
              batch_size=fit.length.batch_size, trace=bool(trace), key=fit.key)
    if total <= chunk:
        run = recipe_jit(fit.params, fit.x, fit.y, lr, fit.order, steps=fit.length.steps,
                         state=fit.state, **kw)
        if progress is not None:
            progress(total)
    else:
        run = _chunked(fit, lr, kw, chunk, progress, rt)
    return _finite(fit.where, run, fit.lr, total)


def _path_buffers(fit: _Fit, total: int, rt, tree=None) -> tuple[list, jax.tree_util.PyTreeDef]:
    """Host buffers for a long fit's path (of `tree`, default the parameters), (total + 1,
    *shape) per leaf, the first row filled; refused before allocating when they would not fit
    in memory."""
    leaves, treedef = jax.tree.flatten(fit.params if tree is None else tree)
    row = sum(np.size(a) * np.dtype(a.dtype).itemsize for a in leaves)
    _runtime.require_memory((total + 1) * row + total * 8, runtime=rt,
                            change="steps" if fit.order is None else "order",
                            what=f"the fit's path, {total + 1} x {row} bytes")
    path = [np.empty((total + 1,) + np.shape(a), np.dtype(a.dtype)) for a in leaves]
    for buf, a in zip(path, leaves):
        buf[0] = np.asarray(a)
    return path, treedef


def _chunked(fit: _Fit, lr, kw: dict, chunk: int, progress, rt) -> Trace:
    """`_run`'s long fit: `functional_fit.engine.run_chunks` over calls of `chunk` steps (whole
    epochs with an order), the path and losses filled on the host call by call."""
    n = fit.x.shape[0]
    per_epoch, total, trace = fit.length.per_epoch(n), fit.length.total(n), kw["trace"]
    unit = 1 if fit.length.full else per_epoch  # steps in one step or epoch of `spans`
    path, treedef = _path_buffers(fit, total, rt) if trace else (None, None)
    states, state_def = (_path_buffers(fit, total, rt, fit.state)
                         if trace and fit.state is not None else (None, None))
    losses = None  # (total,) once the first call tells the losses' dtype

    def advance(carry, start, count):
        order = None if fit.order is None else fit.order[start : start + count]
        return steps_jit(carry, fit.x, fit.y, lr, order, per_epoch=per_epoch,
                         steps=count if fit.length.full else None, **kw)

    def on_call(start, count, out):
        nonlocal losses
        first, k = start * unit, count * unit  # the steps this call ran
        if trace:
            rows, values, state_rows = out
            for buf, a in zip(path, jax.tree.leaves(rows)):
                buf[first + 1 : first + 1 + k] = np.asarray(a)
            for buf, a in zip(states or (), jax.tree.leaves(state_rows)):
                buf[first + 1 : first + 1 + k] = np.asarray(a)
            if losses is None:
                losses = np.empty(total, np.asarray(values).dtype)
            losses[first : first + k] = np.asarray(values)
        if progress is not None:
            progress(k)

    start = init_jit(fit.params, lr, recipe=fit.recipe, per_epoch=per_epoch, state=fit.state)
    carry = run_chunks(start, advance, spans(fit.length, per_epoch, chunk), on_call)
    if not trace:
        return Trace(FitResult(carry.params, None, None, carry.state), carry.first_bad)
    return Trace(FitResult(carry.params, jax.tree.unflatten(treedef, path), losses, carry.state,
                           None if states is None else jax.tree.unflatten(state_def, states)),
                 carry.first_bad)


def _finite(where: str, run: Trace, lr, total: int) -> FitResult:
    """The fit's result, or `DivergenceError` at the first step whose loss is non-finite."""
    result = run.result
    params = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(result.params)])
    losses = result.losses
    if losses is None:  # not traced: the carry recorded the first non-finite step
        bad = int(run.first_bad)
        if bad >= 0:
            raise _checks.divergence_error(where, bad, "non-finite", lr, result)
        losses = np.zeros(total)
    _checks.check_finite_fit(where, losses, params, lr, result=result)
    return result


# --------------------------------------------------------------------------- any optimizer


def module_model(model, params, state):
    """(model, params, state) for `train`: a flax NNX, linen or equinox module as the engine's
    model (`functional_fit.modules.as_model`, training mode), with its own parameters and
    state where none are given; any other model as it is.

    NNX: `params` None (the module's own) or a pure dict of its ``nnx.Param`` values; linen:
    `params` its variables (``module.init(key, x)``: params and batch_stats); equinox:
    `params` None or its array leaves, `state` its ``eqx.nn.State`` or None.
    """
    kind = _modules.library(model)
    if kind is None:
        return model, params, state
    if kind == "linen":
        fn, params, state = _modules.as_model(model, params)
    elif kind == "equinox":
        fn, own, state = _modules.as_model(model, state)
        params = own if params is None else params
    else:
        fn, own, own_state = _modules.as_model(model)
        params = own if params is None else params
        state = own_state if state is None else state
    if fn.stateful and state is None:  # dropout without state: the engine's keyed form
        return (lambda p, x, key=None: fn(p, None, x, key)[0]), params, None
    return fn, params, state




def train(params, x, y, *, model, loss, optimizer, steps: int | None = None, order=None,
          batch_size: int | None = None, trace: bool = True, progress=None, runtime=None,
          state=None, key=None) -> FitResult:  # 12 keywords: the fit's settings, each named
    """Fit `params` with any optax optimizer; the whole fit one compiled `lax.scan`.

    A long fit runs as several compiled calls of about a second each, the state carried from
    one to the next (`train_steps`), with the same result: Ctrl-C stops it between calls, and
    `progress` hears of each. Its path and losses are then numpy arrays, filled call by call.

    Args:
      params: any pytree of float arrays: the lecture's (p+1,) vector, a dict of weight
        matrices (`functional_fit.models.mlp`), ... Their dtypes are kept throughout. With a
        flax or equinox module as `model`: None (the module's own), or see `module_model`
        (a linen module's variables).
      x: (n, ...) inputs: (n,), (n, d), images (n, C, H, W), ...; y: (n, ...) targets
        (integer labels for a classifier).
      model: ``model(params, x) -> y_hat``, pure; or a name of `functional_fit.registry`. With
        `state`: ``model(params, state, x) -> (y_hat, new_state)``; with `key`, it is called
        with ``key=`` too (`functional_fit.engine.apply`). Or a flax NNX module, a flax linen
        module or an equinox module, trained in training mode (`module_model`; for linen's
        call keywords, call `functional_fit.modules.as_model` and pass its model).
      loss: ``loss(y_hat, y) -> ()``, pure; or a registry name.
      optimizer: any ``optax.GradientTransformation``, e.g. ``optax.sgd(0.1, momentum=0.9)``.
        One with extra arguments receives each step's batch loss as ``value=``: a chain ending
        in ``lr_scheduler.ReduceLROnPlateau`` steps it on every batch loss, or, wrapped in
        ``lr_scheduler.per_epoch(..., steps_per_epoch=ceil(n / B))``, on each epoch's mean.
      steps: T full-batch steps; or
      order: (epochs, n) batch order (`functional_fit.data.batch_order`) with
      batch_size: B, minibatches in that order, the last of each epoch short when B does not
        divide n.
      trace: keep the path and the step losses (default); False keeps only the final
        parameters, in memory independent of the number of steps.
      progress: optional callable, called with the number of steps done after each call.
      runtime: sizes and the memory limit (`functional_fit.runtime`); None: the platform's.
      state: a stateful model's initial state (BatchNorm's running statistics: any pytree of
        arrays), threaded through the steps and never differentiated; None for a plain model.
      key: a PRNG key (``jax.random.key(0)``) for the model's randomness (dropout): step t
        draws from ``jax.random.fold_in(key, t)`` (`functional_fit.engine.step_key`); None: the
        model is called without one.

    Returns:
      `FitResult(params, path, losses, state, state_path)`: path leaves (steps+1, *shape),
      losses (steps,), both None with ``trace=False``; state the model's final state and
      state_path its path, as the parameters' (None without `state`).

    Raises:
      InputError: a bad argument, named in the message (a pytree the model does not take, an
        optimizer that is not optax, both or neither of steps and order, a path larger than
        the memory available, ...).
      DivergenceError: a loss or a final parameter is non-finite; ``.step`` is the first step
        (from 0) with a non-finite loss, ``.result`` the whole `FitResult`.

    Examples:
      >>> import optax, jax.numpy as jnp, functional_fit as ff
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     res = ff.fit.train({"w": jnp.zeros(3)}, x, y, optimizer=optax.adam(0.1), steps=200,
      ...                        model=lambda p, x: ff.models.polynomial(p["w"], x),
      ...                        loss=ff.losses.mse)
      >>> res.path["w"].shape, res.losses.shape
      ((201, 3), (200,))
    """
    model, params, state = module_model(model, params, state)
    model, loss = registry.resolve(model, loss)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise InputError(f"optimizer must be an optax.GradientTransformation (optax.sgd(0.1), "
                         f"functional_fit.registry.optimizer('adam')(0.1), ...), got "
                         f"{type(optimizer).__name__}")
    x, y = check_fit_data(x, y)
    params = check_params("params", params)
    registry.check_size(model, "params", params)
    state, key = check_state(state), check_key(key)
    steps, order, batch_size = _data.check_length(x.shape[0], steps, order, batch_size)
    check_model(model, loss, params, x, y, batch_size=None if order is None else batch_size,
                state=state, key=key)
    fit = _Fit("train", as_recipe(optimizer), None, params, x, y, _order(order),
               _length(steps, order, batch_size), model, loss, state, key)
    return _run(fit, trace=trace, progress=progress, runtime=runtime)


def _order(order):
    return None if order is None else jnp.asarray(order)


def _length(steps, order, batch_size) -> Length:
    """The `Length` of a checked (steps, order, batch_size)."""
    return Length(steps, None if order is None else order.shape[0], batch_size)


# --------------------------------------------------------------------------- the lecture's fits


def _lecture_fit(where, recipe, w0, x, y, lr, model, loss, *, steps=None, order=None,
                 batch_size=None, trace=True, progress=None,
                 runtime=None) -> FitResult:  # the lecture's fits' arguments, checked once
    """A fit of a (p+1,) vector with a registry recipe (or its name), the learning rate traced."""
    if isinstance(recipe, str):
        recipe = registry.optimizer(recipe)
    model, loss = registry.resolve(model, loss)
    x, y = _checks.data(x, y)
    w0 = _checks.vector("w0", w0)
    registry.check_size(model, "w0", w0)
    for label, arr in (("w0", w0), ("x", x), ("y", y)):
        check_array_dtype(label, arr)
    lr = _checks.positive_float("lr", lr)
    steps, order, batch_size = _data.check_length(x.shape[0], steps, order, batch_size)
    fit = _Fit(where, recipe, lr, jnp.asarray(w0), jnp.asarray(x), jnp.asarray(y), _order(order),
               _length(steps, order, batch_size), model, loss)
    return _run(fit, trace=trace, progress=progress, runtime=runtime)


def gradient_descent(
    w0, x, y, *, model=_models.linear, loss=_losses.l1, lr: float = 1.0,
    steps: int = _data.DEFAULT_STEPS, trace: bool = True, progress=None, runtime=None,
) -> FitResult:  # the lecture's, and the run's
    """Full-batch gradient descent with step lr / (i + 1), the lecture's ``gradient_descent``.

    ``optax.sgd`` with the schedule lr / (i + 1), through `train_scan`.

    Args:
      w0: (p+1,) initial parameters (their dtype sets the parameters' dtype).
      x, y: (n,) data.
      model: ``model(w, x) -> (n,)``; default `functional_fit.models.linear`.
      loss: ``loss(y_hat, y) -> ()``; default `functional_fit.losses.l1`.
      lr: base learning rate, > 0.
      steps: number of steps, > 0.
      trace: keep the path and the losses (default); False keeps only the final parameters.
      progress: optional callable, called with the steps done after each compiled call (a
        long fit runs in calls of about a second; see `train`).
      runtime: sizes and the memory limit (`functional_fit.runtime`); None: the platform's.

    Returns:
      `FitResult` with path (steps+1, p+1) and losses (steps,); None with ``trace=False``.

    Raises:
      InputError: a bad argument, named in the message.
      DivergenceError: a loss or the final parameters are non-finite; ``.step`` is the first
        step (from 0) with a non-finite loss, ``.result`` the whole `FitResult`.

    Examples:
      >>> import functional_fit as ff
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     res = ff.fit.gradient_descent(ff.zeros(2, "lecture"), x, y, lr=6.0, steps=50)
      >>> [round(float(v), 4) for v in res.params]
      [-0.2733, 3.4818]
    """
    return _lecture_fit("gradient_descent", "gd", w0, x, y, lr, model, loss, steps=steps,
                        trace=trace, progress=progress, runtime=runtime)


def stochastic_gradient_descent(
    w0, x, y, order, *, model=_models.linear, loss=_losses.l1, lr: float = 1.0,
    batch_size: int = _data.DEFAULT_BATCH_SIZE, trace: bool = True, progress=None, runtime=None,
) -> FitResult:  # the lecture's, and the run's
    """Minibatch SGD, the lecture's ``stochastic_gradient_descent``: lr / (e + 1) in epoch e.

    Args:
      w0: (p+1,) initial parameters.
      x, y: (n,) data.
      order: (epochs, n) batch order from `functional_fit.data.batch_order`.
      model, loss, lr, trace, progress, runtime: as in `gradient_descent`.
      batch_size: B > 0; the last batch of an epoch is short when B does not divide n.

    Returns:
      `FitResult` with path (steps+1, p+1), steps = epochs * ceil(n / B).

    Raises:
      InputError, DivergenceError: as in `gradient_descent`.
    """
    return _lecture_fit("stochastic_gradient_descent", "sgd", w0, x, y, lr, model, loss,
                        order=order, batch_size=batch_size, trace=trace, progress=progress,
                        runtime=runtime)


def adam_sgd(
    w0, x, y, order, *, model=_models.linear, loss=_losses.l1, lr: float = 0.1,
    batch_size: int = _data.DEFAULT_BATCH_SIZE, trace: bool = True, progress=None, runtime=None,
) -> FitResult:  # the lecture's, and the run's
    """Minibatch Adam through optax, the lecture's ``adam_sgd`` (torch.optim.Adam defaults).

    Arguments and result as in `stochastic_gradient_descent`; the step size is constant.
    """
    return _lecture_fit("adam_sgd", "adam", w0, x, y, lr, model, loss, order=order,
                        batch_size=batch_size, trace=trace, progress=progress, runtime=runtime)


def run(optimizer, w0, x, y, *, model=_models.linear, loss=_losses.l1, lr: float,
        steps: int | None = None, order=None, batch_size: int = _data.DEFAULT_BATCH_SIZE,
        trace: bool = True, progress=None, runtime=None) -> FitResult:  # 10 keywords: as `train`
    """A fit of a registry optimizer on a parameter vector, mirroring `parity.fit.run`.

    `optimizer` is a name of `functional_fit.registry` (``"gd"``, ``"sgd"``, ``"adam"``, the
    lecture's; ``"SGD"``, ``"RMSprop"``, ... torch.optim's, verified) or a
    `registry.optimizer(name, **keywords)`. A full-batch optimizer (``"gd"``) takes `steps`; a
    minibatch one (``"sgd"``, ``"adam"``) the batch `order` (epochs, n) and `batch_size`, the
    other being ignored; torch's names take whichever is given (`steps` first).
    """
    opt = registry.optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    where = {"gd": "gradient_descent", "sgd": "stochastic_gradient_descent", "adam": "adam_sgd"}
    batching = _data.batching_for(opt.batching, steps=steps, epochs=order)
    length = dict(steps=steps) if batching == "full" else dict(order=order, batch_size=batch_size)
    return _lecture_fit(where.get(opt.name, opt.name), opt, w0, x, y, lr, model, loss, **length,
                        trace=trace, progress=progress, runtime=runtime)


def n_steps(n: int, epochs: int, batch_size: int) -> int:
    """Steps of a minibatch fit: epochs * ceil(n / batch_size)."""
    return epochs * math.ceil(n / batch_size)


def full_loss(w, x, y, *, model=_models.linear, loss=_losses.l1):
    """The loss of parameters `w` on the whole data, as a Python float."""
    model, loss = registry.resolve(model, loss)
    return float(_full_loss(jax.tree.map(jnp.asarray, w), jnp.asarray(x), jnp.asarray(y),
                            model=model, loss=loss))


@functools.partial(jax.jit, static_argnames=("model", "loss"))
def _full_loss(w, x, y, *, model, loss):
    return loss(model(w, x), y)


def as_numpy(result: FitResult) -> FitResult:
    """The same result with numpy arrays (for printing, JSON and comparison)."""
    return FitResult(*(jax.tree.map(np.asarray, a) for a in result))


__all__ = ["Carry", "FitResult", "Trace", "adam_sgd", "as_numpy", "batches", "check_fit_data",
           "check_key", "check_model", "check_params", "check_state", "module_model", "chunk_steps", "full_loss", "gradient_descent",
           "init_carry", "n_steps", "recipe_jit", "run", "step", "stochastic_gradient_descent",
           "train", "train_jit", "train_scan", "train_steps"]
