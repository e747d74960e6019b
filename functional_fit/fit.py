"""Fitting: one training loop, any model, loss, optax optimizer and parameter pytree.

`train` is the whole fit as one compiled `jax.lax.scan`; a second call with inputs of the same
shapes and dtypes and the same optimizer does not compile again. Three layers, from the inside
out:

- `step`: one update, ``step(params, opt_state, x, y) -> (params, opt_state, loss)``.
- `train_scan`: a whole fit as one `lax.scan` over steps. Pure and traceable, no input checks;
  `jax.vmap` it over learning rates, starting points or batch orders (`functional_fit.sweep`).
- `train`: checks its inputs on concrete values, then calls the jit-compiled scan and checks
  that the fit did not diverge.

The lecture's three fits, `gradient_descent`, `stochastic_gradient_descent` and `adam_sgd`, are
thin wrappers of the same scan with the registry's optax recipes (`functional_fit.registry`):
``optax.sgd`` with the step lr / (i + 1), the same with lr / (e + 1) in epoch e, and
``optax.adam(lr)``. The names and signatures mirror `parity.fit`, the lecture's torch loops.

Batches. ``steps=T`` gives T full-batch steps. ``order`` (epochs, n) with ``batch_size`` B gives
minibatches: epoch e is cut into ceil(n / B) consecutive batches of ``order[e]``, the last one
short when B does not divide n, exactly as ``DataLoader(drop_last=False)`` cuts it. The short
batch is its own step in the compiled program (a scan over the epoch's full batches, then one
step on the rest), so any loss sees exactly its real points: no padding, no mask.

Long fits. A compiled call cannot be interrupted, so `train` and the lecture's fits run a fit
longer than about a second of work as several calls of `train_steps`, each carrying the
`Carry` (parameters, optimizer state, step count, first bad step) to the next: Ctrl-C stops it
between calls, a ``progress`` callback hears of each, and ``trace=False`` keeps no path at all.
The steps are the same, so the result is bit-identical to one call's.

Every fit returns a `FitResult`: the final parameters, the path (a pytree shaped like the
parameters whose leaves have a leading axis of steps + 1: before the first step and after
every step) and the loss of every step's batch, taken before that step's update, as the
lecture's loops compute it.

Divergence: `train` and the wrappers raise `DivergenceError` (an `InputError`) when a loss or a
final parameter is non-finite, naming the first step whose loss was (`first_nonfinite`); the
error carries the whole `FitResult` as ``.result``. `train_scan` does not check: a sweep over
learning rates wants the non-finite runs, not an exception. `parity.fit` raises the same error
at the same step.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_fit import checks as _checks, data as _data, losses as _losses, models as _models
from functional_fit import registry
from functional_fit.checks import DivergenceError, InputError, first_nonfinite  # noqa: F401
from functional_fit.precision import check_array_dtype


class FitResult(NamedTuple):
    """What a fit returns."""

    params: Any  # pytree, the parameters after the last step; (p+1,) for the lecture's models
    path: Any  # the same pytree, each leaf (steps+1, *shape): before the first and after every step
    losses: jax.Array  # shape=(steps,) each step's batch loss, before its update


# --------------------------------------------------------------------------- one step


def step(params, opt_state, x, y, *, model, loss, optimizer):
    """One optimizer step on one batch.

    Args:
      params: pytree of parameters.
      opt_state: the optimizer's state for `params`.
      x: (B,) or (B, d) inputs of the batch; y: (B, ...) its targets.
      model: ``model(params, x) -> y_hat``; loss: ``loss(y_hat, y) -> ()``.
      optimizer: an ``optax.GradientTransformation``.

    Returns:
      (params, opt_state, loss): the updated parameters and state, and the () loss before the
      update.
    """
    value, g = jax.value_and_grad(lambda p: loss(model(p, x), y))(params)
    updates, opt_state = optimizer.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


# --------------------------------------------------------------------------- batches


def batches(order, batch_size: int):
    """Cut a batch order into batches as ``DataLoader(drop_last=False)`` cuts it.

    Args:
      order: (E, n) int, one permutation of range(n) per epoch. May be traced (vmap over it).
      batch_size: B, a Python int.

    Returns:
      full: (E, n // B, B) the indices of each epoch's full batches.
      rest: (E, n % B) the indices of each epoch's short last batch, or None when B divides n.
    """
    n_epochs, n = order.shape
    n_full, r = divmod(n, batch_size)
    full = order[:, : n_full * batch_size].reshape(n_epochs, n_full, batch_size)  # (E, nf, B)
    return full, (order[:, n_full * batch_size :] if r else None)  # (E, r)


def _stack(first, rest):
    """Prepend one pytree to a pytree of stacked leaves: (k, ...) -> (k+1, ...)."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


class Trace(NamedTuple):
    """What `train_scan` returns: a `FitResult` and a first-divergence marker."""

    result: FitResult  # path and losses are None when not traced
    first_bad: jax.Array  # shape=() int32, the first step with a non-finite loss, or -1


class Carry(NamedTuple):
    """What a fit carries from step to step, and from one compiled chunk of steps to the next."""

    params: Any  # pytree, the parameters after the steps done so far
    opt_state: Any  # the optimizer's state (its step count drives the lecture's schedules)
    count: jax.Array  # shape=() int32, the steps done so far
    first_bad: jax.Array  # shape=() int32, the first step with a non-finite loss, or -1


# --------------------------------------------------------------------------- the whole fit


def init_carry(params, optimizer) -> Carry:
    """The `Carry` before the first step: `params`, ``optimizer.init(params)``, no steps done."""
    return Carry(params, optimizer.init(params), jnp.int32(0), jnp.int32(-1))


def train_steps(carry: Carry, x, y, optimizer, *, model, loss, steps: int | None = None,
                order=None, batch_size: int | None = None, trace: bool = True):
    """Continue a fit from `carry`: `steps` full-batch steps, or the epochs of `order`.

    Pure, traceable, no input checks. `train_scan` is one call of it from `init_carry`; a long
    fit is several calls, each carrying the state on (`train` and the lecture's fits run
    chunks of about a second, so Ctrl-C and a progress bar are seen between them). Steps are
    numbered on from ``carry.count``, so the first non-finite step is the same either way.

    Args:
      carry: the `Carry` to continue from.
      x, y, optimizer, model, loss, batch_size, trace: as in `train_scan`.
      steps: full-batch steps (static), or None with `order`.
      order: (E, n) int batch order of the epochs to run now (may be traced).

    Returns:
      (carry, out): the `Carry` after these steps, and ``(path, losses)`` when traced (path
      leaves (T, *shape) after each of the T steps, losses (T,)) or None.
    """
    one = functools.partial(step, model=model, loss=loss, optimizer=optimizer)

    def update(c, xb, yb):  # one step on one batch
        p, s, value = one(c.params, c.opt_state, xb, yb)
        if trace:  # the losses are kept: the count and the first bad step come from them after
            return Carry(p, s, c.count, c.first_bad), (p, value)
        bad = jnp.where((c.first_bad < 0) & ~jnp.isfinite(value), c.count, c.first_bad)
        return Carry(p, s, c.count + 1, bad), None

    start = carry
    if order is None:
        carry, out = jax.lax.scan(lambda c, _: update(c, x, y), carry, None, length=steps)
    else:
        full, rest = batches(order, batch_size)

        def batch(c, i):  # i (B,) or (r,) indices into the data
            return update(c, x[i], y[i])

        if rest is None:  # every batch full: one flat scan over all of them
            carry, out = jax.lax.scan(batch, carry, full.reshape(-1, batch_size))
        else:

            def epoch(c, idx):  # each epoch: a scan over its full batches, then its short one
                f, r = idx
                c, outs = jax.lax.scan(batch, c, f)  # (nf, ...)
                c, last = batch(c, r)
                if trace:
                    outs = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), outs, last)
                return c, outs

            carry, out = jax.lax.scan(epoch, carry, (full, rest))  # (E, nf + 1, ...)
            if trace:
                out = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)
    if trace:  # no per-step bookkeeping in the loop (it cost 15% of the lecture's Adam fit)
        values = out[1]  # (T,)
        finite = jnp.isfinite(values)
        first = jnp.where(jnp.all(finite), -1, start.count + jnp.argmin(finite))
        bad = jnp.where(start.first_bad >= 0, start.first_bad, first).astype(jnp.int32)
        carry = carry._replace(count=start.count + values.shape[0], first_bad=bad)
    return carry, out


def train_scan(params, x, y, optimizer, *, model, loss, steps: int | None = None, order=None,
               batch_size: int | None = None, trace: bool = True) -> Trace:
    """A whole fit as one `lax.scan`: pure, traceable, no input checks.

    Args:
      params: pytree of initial parameters; their dtypes are the parameters' dtypes throughout.
      x: (n,) or (n, d) inputs; y: (n, ...) targets.
      optimizer: an ``optax.GradientTransformation`` (its hyperparameters may be traced).
      model, loss: functions (static under jit).
      steps: full-batch steps (static), or None with `order`.
      order: (E, n) int batch order (may be traced), with `batch_size` (static).
      trace: keep the path and the step losses; False keeps only the final parameters and the
        first step whose loss was non-finite (memory independent of the number of steps).

    Returns:
      `Trace(FitResult(params, path or None, losses or None), first_bad)`.
    """
    carry, out = train_steps(init_carry(params, optimizer), x, y, optimizer, model=model,
                             loss=loss, steps=steps, order=order, batch_size=batch_size,
                             trace=trace)
    if not trace:
        return Trace(FitResult(carry.params, None, None), carry.first_bad)
    path, values = out
    return Trace(FitResult(carry.params, _stack(params, path), values), carry.first_bad)


_STATIC = ("model", "loss", "steps", "batch_size", "trace")
train_jit = jax.jit(train_scan, static_argnames=("optimizer", *_STATIC))
_init_jit = jax.jit(init_carry, static_argnames=("optimizer",))
_steps_jit = jax.jit(train_steps, static_argnames=("optimizer", *_STATIC))


def _recipe_scan(params, x, y, lr, order=None, *, recipe, model, loss, steps=None,
                 batch_size=None, trace=True) -> Trace:
    """`train_scan` with ``recipe(lr, steps_per_epoch)``: the learning rate traced."""
    per_epoch = 1 if order is None else _data.n_batches(order.shape[1], batch_size)
    return train_scan(params, x, y, recipe(lr, per_epoch), model=model, loss=loss, steps=steps,
                      order=order, batch_size=batch_size, trace=trace)


def _recipe_init(params, lr, *, recipe, per_epoch: int) -> Carry:
    """`init_carry` of ``recipe(lr, per_epoch)``."""
    return init_carry(params, recipe(lr, per_epoch))


def _recipe_steps(carry, x, y, lr, order=None, *, recipe, per_epoch: int, model, loss,
                  steps=None, batch_size=None, trace=True):
    """`train_steps` of ``recipe(lr, per_epoch)``: the learning rate traced."""
    return train_steps(carry, x, y, recipe(lr, per_epoch), model=model, loss=loss, steps=steps,
                       order=order, batch_size=batch_size, trace=trace)


recipe_jit = jax.jit(_recipe_scan, static_argnames=("recipe", *_STATIC))
_recipe_init_jit = jax.jit(_recipe_init, static_argnames=("recipe", "per_epoch"))
_recipe_steps_jit = jax.jit(_recipe_steps, static_argnames=("recipe", "per_epoch", *_STATIC))


#: Steps a fit may take: its step count is an int32.
MAX_STEPS = 2**31

# --------------------------------------------------------------------------- chunks of steps
# A compiled call cannot be interrupted: Python sees Ctrl-C only when it returns. A long fit
# therefore runs as several calls of `train_steps` of about a second each, carrying the state
# from one to the next: Ctrl-C stops it within about a second, a progress bar moves between
# the calls, and a path that was not asked for (trace=False) is never held. Every call but the
# last has the same length, so a long fit compiles twice at most; the steps are the same steps,
# so the result is bit-identical to one call's.

#: Work per compiled call, in units of one parameter on one batch point for one step (plus
#: `STEP_OVERHEAD` per step): about a second on one CPU core at most (measured on a 2-core EPYC:
#: the linear model's GD on 100 points, 1 us a step, 0.4 s a call; Adam on the degree-12
#: model's batches of 10, 3 us a step, 1.2 s; 256 such runs vmapped, 0.23 us a run and step,
#: one call of 0.23 s for all 5,000 steps). A GPU step costs a few kernel launches whatever its
#: size.
CHUNK_WORK = {"cpu": 2**28, "gpu": 2**23}
#: The cost of one step beyond its arithmetic (the loop, the optimizer's update), in those units.
STEP_OVERHEAD = 512


def chunk_steps(batch_points: int, n_params: int, runs: int = 1, platform: str | None = None) -> int:
    """Steps per compiled call for about a second of work at most: `CHUNK_WORK` / (a step's cost).

    Args:
      batch_points: points in a step's batch (n for a full-batch fit, B for minibatches).
      n_params: parameters of one run.
      runs: runs advanced together (a sweep's vmapped chunk); they share the step overhead.
      platform: ``"cpu"`` or ``"gpu"``; default JAX's default backend.
    """
    platform = platform or jax.default_backend()
    work = CHUNK_WORK.get(platform, CHUNK_WORK["gpu"])
    # vmapped runs share a step's overhead (measured: 256 degree-12 Adam runs take 0.23 us a
    # run and step, where one run alone takes 3 us a step)
    per_step = STEP_OVERHEAD + max(1, runs) * max(1, batch_points) * max(1, n_params)
    return max(1, work // per_step)


def _spans(steps, epochs, per_epoch: int, chunk: int):
    """(start, length) of each call: steps, or whole epochs when the fit has a batch order."""
    if epochs is None:
        return [(i, min(chunk, steps - i)) for i in range(0, steps, chunk)]
    per_call = max(1, chunk // per_epoch)
    return [(e, min(per_call, epochs - e)) for e in range(0, epochs, per_call)]


def _run_chunks(init, advance, params, *, steps, order, per_epoch, chunk, trace,
                progress, what) -> Trace:
    """A fit as calls of `advance` of `chunk` steps (whole epochs with `order`), state carried.

    Args:
      init: ``init() -> Carry``; advance: ``advance(carry, steps=, order=) -> (carry, out)``.
      params: the initial parameters (the path's first row).
      steps / order: as in `train_steps`, for the whole fit; per_epoch: steps of one epoch.
      chunk: steps per call; trace: keep the path and the losses (on the host, filled call
        by call); progress: called with the steps done after each call; what: the argument
        that sets the length, for a memory refusal.
    """
    from functional_fit import resources

    epochs = None if order is None else order.shape[0]
    total = steps if order is None else epochs * per_epoch
    leaves, treedef = jax.tree.flatten(params)
    path = losses = None
    if trace:  # refuse before allocating: the path is (total + 1) rows of the parameters
        row = sum(np.size(a) * np.dtype(a.dtype).itemsize for a in leaves)
        resources.require((total + 1) * row + total * 8, change=what,
                          what=f"the fit's path, {total + 1} x {row} bytes")
        path = [np.empty((total + 1,) + np.shape(a), np.dtype(a.dtype)) for a in leaves]
        for buf, a in zip(path, leaves):
            buf[0] = np.asarray(a)
    carry, done = init(), 0
    for start, length in _spans(steps, epochs, per_epoch, chunk):
        if order is None:
            carry, out = advance(carry, steps=length, order=None)
        else:
            carry, out = advance(carry, steps=None, order=order[start : start + length])
        carry = jax.block_until_ready(carry)  # one call at a time: Ctrl-C is seen between them
        k = length if order is None else length * per_epoch
        if trace:
            rows, values = out
            for buf, a in zip(path, jax.tree.leaves(rows)):
                buf[done + 1 : done + 1 + k] = np.asarray(a)
            if losses is None:
                losses = np.empty(total, np.asarray(values).dtype)
            losses[done : done + k] = np.asarray(values)
        done += k
        if progress is not None:
            progress(k)
    if trace:
        path = jax.tree.unflatten(treedef, path)
    return Trace(FitResult(carry.params, path, losses), carry.first_bad)


# --------------------------------------------------------------------------- checked entry points


def _resolve(model, loss):
    """Model and loss functions; a name is looked up in `functional_fit.registry`."""
    return registry.resolve(model, loss)


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
    """Data for `train`: x (n,) or (n, d), y (n, ...), numeric and finite. Returns JAX arrays."""
    x = _checks.array("x", x, ndims=(1, 2))
    y = _checks.array("y", y, ndims=(1, 2))
    if x.shape[0] != y.shape[0]:
        raise InputError(f"x and y must have the same number of points, got x of shape "
                         f"{x.shape} and y of shape {y.shape}")
    for name, arr in (("x", x), ("y", y)):
        check_array_dtype(name, arr)
    return jnp.asarray(x), jnp.asarray(y)


def _check_length(n, steps, order, batch_size):
    """(steps, order, batch_size) checked: exactly one of `steps` and `order`."""
    steps, order, batch_size = _data.check_length(n, steps, order, batch_size)
    if order is None and steps >= MAX_STEPS:
        raise InputError(f"steps must be below 2**31 (the step count is int32), got {steps}")
    if order is not None and order.shape[0] * _data.n_batches(n, batch_size) >= MAX_STEPS:
        raise InputError(f"order: {order.shape[0]} epochs of {_data.n_batches(n, batch_size)} "
                         "batches is 2**31 steps or more (the step count is int32)")
    return steps, (None if order is None else jnp.asarray(order)), batch_size


def check_model(model, loss, params, x, y) -> None:
    """Run the model and the loss abstractly; InputError when they fail or the loss is not ().

    Traced once per model, loss and shapes (a check that passed is remembered: tracing the
    degree-12 polynomial took 5 ms, a tenth of a small sweep).
    """
    leaves, treedef = jax.tree.flatten(params)
    spec = (treedef, tuple(jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves),
            jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype),
            jax.ShapeDtypeStruct((1,) + y.shape[1:], y.dtype))
    try:
        _check_model_once(model, loss, spec)
    except TypeError as exc:  # an unhashable model or loss: check without remembering
        if "unhashable" not in str(exc):
            raise
        _check_model_once.__wrapped__(model, loss, spec)


@functools.lru_cache(maxsize=256)
def _check_model_once(model, loss, spec) -> None:
    treedef, leaves, xs, ys = spec
    params = jax.tree.unflatten(treedef, list(leaves))
    try:
        out = jax.eval_shape(lambda p, x, y: loss(model(p, x), y), params, xs, ys)
    except InputError:
        raise
    except Exception as exc:  # the user's function, on the user's parameters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"params: the model or the loss fails on these parameters and data "
                         f"({type(exc).__name__}: {first}); check the pytree's structure and "
                         "shapes against the model") from None
    if out.shape != ():
        raise InputError(f"loss must return a scalar, got shape {out.shape}")


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


def _total(steps, order, batch_size) -> int:
    """The number of steps of a checked fit."""
    return steps if order is None else order.shape[0] * _data.n_batches(order.shape[1], batch_size)


def _fit(params, x, *, steps, order, batch_size, trace, progress, what, single, init, advance):
    """Run a checked fit: one compiled call when it is short, chunks of about a second when long.

    Args:
      params: the checked initial parameters; x: the checked inputs.
      steps, order, batch_size: the checked length (`_check_length`).
      trace: keep the path and losses; progress: called with the steps done after each call.
      what: the argument that sets the length, named when the path would not fit in memory.
      single: ``single() -> Trace``, the whole fit in one call.
      init, advance: as in `_run_chunks`.
    """
    n = x.shape[0]
    per_epoch = 1 if order is None else _data.n_batches(n, batch_size)
    total = steps if order is None else order.shape[0] * per_epoch
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(params))
    chunk = chunk_steps(n if order is None else batch_size, n_params)
    if total <= chunk:
        run = single()
        if progress is not None:
            progress(total)
        return run
    return _run_chunks(init, advance, params, steps=steps, order=order, per_epoch=per_epoch,
                       chunk=chunk, trace=trace, progress=progress, what=what)


def train(params, x, y, *, model, loss, optimizer, steps: int | None = None, order=None,
          batch_size: int | None = None, trace: bool = True, progress=None) -> FitResult:
    """Fit `params` with any optax optimizer; the whole fit one compiled `lax.scan`.

    A long fit runs as several compiled calls of about a second each, the state carried from
    one to the next (`train_steps`), with the same result: Ctrl-C stops it between calls, and
    `progress` hears of each. Its path and losses are then numpy arrays, filled call by call.

    Args:
      params: any pytree of float arrays: the lecture's (p+1,) vector, a dict of weight
        matrices (`functional_fit.models.mlp`), ... Their dtypes are kept throughout.
      x: (n,) or (n, d) inputs; y: (n,) or (n, k) targets (integer labels for a classifier).
      model: ``model(params, x) -> y_hat``, pure; or a name of `functional_fit.registry`.
      loss: ``loss(y_hat, y) -> ()``, pure; or a registry name.
      optimizer: any ``optax.GradientTransformation``, e.g. ``optax.sgd(0.1, momentum=0.9)``.
      steps: T full-batch steps; or
      order: (epochs, n) batch order (`functional_fit.data.batch_order`) with
      batch_size: B, minibatches in that order, the last of each epoch short when B does not
        divide n.
      trace: keep the path and the step losses (default); False keeps only the final
        parameters, in memory independent of the number of steps.
      progress: optional callable, called with the number of steps done after each call.

    Returns:
      `FitResult(params, path, losses)`: path leaves (steps+1, *shape), losses (steps,); both
      None with ``trace=False``.

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
    model, loss = _resolve(model, loss)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise InputError(f"optimizer must be an optax.GradientTransformation (optax.sgd(0.1), "
                         f"functional_fit.registry.optimizer('adam')(0.1), ...), got "
                         f"{type(optimizer).__name__}")
    x, y = check_fit_data(x, y)
    params = check_params("params", params)
    steps, order, batch_size = _check_length(x.shape[0], steps, order, batch_size)
    check_model(model, loss, params, x, y)
    trace = bool(trace)
    kw = dict(model=model, loss=loss, batch_size=batch_size, trace=trace)
    run = _fit(
        params, x, steps=steps, order=order, batch_size=batch_size, trace=trace,
        progress=progress, what="steps" if order is None else "order",
        single=lambda: train_jit(params, x, y, optimizer, steps=steps, order=order, **kw),
        init=lambda: _init_jit(params, optimizer),
        advance=lambda c, steps, order: _steps_jit(c, x, y, optimizer, steps=steps, order=order,
                                                   **kw),
    )
    return _finite("train", run, None, _total(steps, order, batch_size))


# --------------------------------------------------------------------------- the lecture's fits


def _lecture_fit(where, recipe, w0, x, y, lr, model, loss, *, steps=None, order=None,
                 batch_size=None, trace=True, progress=None) -> FitResult:
    """A fit of a (p+1,) vector with a registry recipe (or its name), the learning rate traced."""
    if isinstance(recipe, str):
        recipe = registry.optimizer(recipe)
    model, loss = _resolve(model, loss)
    x, y = _checks.data(x, y)
    w0 = _checks.vector("w0", w0)
    size = {_models.linear: 2}.get(model)
    if size is not None and w0.shape != (size,):
        raise InputError(f"w0 must have shape ({size},) for the linear model, got {w0.shape}")
    for label, arr in (("w0", w0), ("x", x), ("y", y)):
        check_array_dtype(label, arr)
    lr = _checks.positive_float("lr", lr)
    steps, order, batch_size = _check_length(x.shape[0], steps, order, batch_size)
    w0, x, y, lr_ = jnp.asarray(w0), jnp.asarray(x), jnp.asarray(y), _float(lr)
    per_epoch = 1 if order is None else _data.n_batches(x.shape[0], batch_size)
    trace = bool(trace)
    kw = dict(recipe=recipe, model=model, loss=loss, batch_size=batch_size, trace=trace)
    run = _fit(
        w0, x, steps=steps, order=order, batch_size=batch_size, trace=trace, progress=progress,
        what="steps" if order is None else "order",
        single=lambda: recipe_jit(w0, x, y, lr_, order, steps=steps, **kw),
        init=lambda: _recipe_init_jit(w0, lr_, recipe=recipe, per_epoch=per_epoch),
        advance=lambda c, steps, order: _recipe_steps_jit(c, x, y, lr_, order, steps=steps,
                                                          per_epoch=per_epoch, **kw),
    )
    return _finite(where, run, lr, _total(steps, order, batch_size))


def _float(value):
    """A scalar in JAX's default float (float64 in 64-bit mode), as torch keeps Python floats."""
    return jnp.asarray(value, dtype=jnp.result_type(float))


def gradient_descent(
    w0, x, y, *, model=_models.linear, loss=_losses.l1, lr: float = 1.0, steps: int = 100,
    trace: bool = True, progress=None,
) -> FitResult:
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
                        trace=trace, progress=progress)


def stochastic_gradient_descent(
    w0, x, y, order, *, model=_models.linear, loss=_losses.l1, lr: float = 1.0, batch_size: int = 10,
    trace: bool = True, progress=None,
) -> FitResult:
    """Minibatch SGD, the lecture's ``stochastic_gradient_descent``: lr / (e + 1) in epoch e.

    Args:
      w0: (p+1,) initial parameters.
      x, y: (n,) data.
      order: (epochs, n) batch order from `functional_fit.data.batch_order`.
      model, loss, lr, trace, progress: as in `gradient_descent`.
      batch_size: B > 0; the last batch of an epoch is short when B does not divide n.

    Returns:
      `FitResult` with path (steps+1, p+1), steps = epochs * ceil(n / B).

    Raises:
      InputError, DivergenceError: as in `gradient_descent`.
    """
    return _lecture_fit("stochastic_gradient_descent", "sgd", w0, x, y, lr, model, loss,
                        order=order, batch_size=batch_size, trace=trace, progress=progress)


def adam_sgd(
    w0, x, y, order, *, model=_models.linear, loss=_losses.l1, lr: float = 0.1, batch_size: int = 10,
    trace: bool = True, progress=None,
) -> FitResult:
    """Minibatch Adam through optax, the lecture's ``adam_sgd`` (torch.optim.Adam defaults).

    Arguments and result as in `stochastic_gradient_descent`; the step size is constant.
    """
    return _lecture_fit("adam_sgd", "adam", w0, x, y, lr, model, loss, order=order,
                        batch_size=batch_size, trace=trace, progress=progress)


def run(optimizer, w0, x, y, *, model=_models.linear, loss=_losses.l1, lr: float,
        steps: int | None = None, order=None, batch_size: int = 10, trace: bool = True,
        progress=None) -> FitResult:
    """A fit of a registry optimizer on a parameter vector, mirroring `parity.fit.run`.

    `optimizer` is a name of `functional_fit.registry` (``"gd"``, ``"sgd"``, ``"adam"``, the
    lecture's; ``"SGD"``, ``"RMSprop"``, ... torch.optim's, verified) or a
    `registry.optimizer(name, **keywords)`. A full-batch optimizer (``"gd"``) takes `steps`; a
    minibatch one (``"sgd"``, ``"adam"``) the batch `order` (epochs, n) and `batch_size`, the
    other being ignored; torch's names take whichever is given (`steps` first).
    """
    opt = registry.optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    where = {"gd": "gradient_descent", "sgd": "stochastic_gradient_descent", "adam": "adam_sgd"}
    full = opt.batching == "full" or (opt.batching == "any" and steps is not None)
    length = dict(steps=steps) if full else dict(order=order, batch_size=batch_size)
    return _lecture_fit(where.get(opt.name, opt.name), opt, w0, x, y, lr, model, loss, **length,
                        trace=trace, progress=progress)


def n_steps(n: int, epochs: int, batch_size: int) -> int:
    """Steps of a minibatch fit: epochs * ceil(n / batch_size)."""
    return epochs * math.ceil(n / batch_size)


def full_loss(w, x, y, *, model=_models.linear, loss=_losses.l1):
    """The loss of parameters `w` on the whole data, as a Python float."""
    model, loss = _resolve(model, loss)
    return float(loss(model(jax.tree.map(jnp.asarray, w), jnp.asarray(x)), jnp.asarray(y)))


def as_numpy(result: FitResult) -> FitResult:
    """The same result with numpy arrays (for printing, JSON and comparison)."""
    return FitResult(*(jax.tree.map(np.asarray, a) for a in result))


__all__ = ["Carry", "FitResult", "Trace", "adam_sgd", "as_numpy", "batches", "check_params",
           "chunk_steps", "full_loss", "gradient_descent", "init_carry", "n_steps", "recipe_jit",
           "run", "step", "stochastic_gradient_descent", "train", "train_jit", "train_scan",
           "train_steps"]
