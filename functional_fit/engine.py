"""The one training engine: a step, a scan of steps, and a driver of compiled chunks of steps.

Every fit of the toolkit runs here: `functional_fit.fit.train`, the lecture's fits and `run`
(`functional_fit.fit`), and every run of a sweep (`functional_fit.sweep`, vmapped). From the
inside out:

- `step`: one update, ``step(params, opt_state, x, y) -> (params, opt_state, loss)``;
  `state_step` the same for a model with state (BatchNorm's running statistics) or randomness
  (dropout): ``-> (params, opt_state, state, loss)``.
- `train_steps`: continue a fit from a `Carry` (parameters, optimizer state, step count, first
  non-finite step) by some full-batch steps, or the epochs of a batch order, as one
  `lax.scan`; `train_scan` is one call of it from `init_carry`. Pure and traceable, no input
  checks: `jax.vmap` it over learning rates, starting points or batch orders.
- `Recipe`: what makes the optimizer, ``recipe(lr, steps_per_epoch) -> GradientTransformation``.
  A plain optax transformation is a recipe too (`as_recipe`: it ignores both), so the compiled
  programs (`recipe_jit`, `init_jit`, `steps_jit`) take a recipe and a learning rate, traced,
  whatever the caller gave.
- `run_chunks`: a long fit as several compiled calls of about a second each (`chunk_steps`,
  `spans`), the `Carry` handed from one to the next. A compiled call cannot be interrupted:
  between calls Ctrl-C is seen and a progress bar moves. The steps are the same steps, so the
  result is bit-identical to one call's; every call but the last has the same length, so a
  long fit compiles twice at most.

Batches. ``steps=T`` gives T full-batch steps. ``order`` (epochs, n) with ``batch_size`` B gives
minibatches: epoch e is cut into ceil(n / B) consecutive batches of ``order[e]``, the last one
short when B does not divide n, exactly as ``DataLoader(drop_last=False)`` cuts it. The short
batch is its own step in the compiled program (a scan over the epoch's full batches, then one
step on the rest), so any loss sees exactly its real points.

State and randomness. A model is ``model(params, x) -> y_hat``; one with state is
``model(params, state, x) -> (y_hat, new_state)`` (`apply`), the state (any pytree, e.g. a
dict of BatchNorm's buffers) carried from step to step in `Carry.state` and not
differentiated. A fit given a ``key`` calls the model with ``key=`` as well: step t (counted
from the fit's first step, across compiled chunks) gets `step_key` ``jax.random.fold_in(key,
t)``, so a fit resumed from its `Carry` draws what one long fit draws. Within a forward, the
i-th dropout draws from ``fold_in(step_key, i)`` (`functional_fit.nn.dropout_keep`), as a
flax NNX ``Rngs`` stream numbers its draws, and as `parity.dropout` replays the masks in torch.
A model called with ``key=None`` draws nothing: dropout is off.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from functional_fit import data as _data, runtime as _runtime
from functional_fit.data import MAX_STEPS  # noqa: F401  (a fit's limit, with the engine)


class FitResult(NamedTuple):
    """What a fit returns."""

    params: Any  # pytree, the parameters after the last step; (p+1,) for the lecture's models
    path: Any  # the same pytree, each leaf (steps+1, *shape): before the first and after every step
    losses: jax.Array  # shape=(steps,) each step's batch loss, before its update
    state: Any = None  # pytree, a stateful model's state after the last step, else None
    state_path: Any = None  # the same pytree, each leaf (steps+1, *shape), when traced


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
    state: Any = None  # pytree, a stateful model's state (BatchNorm's buffers), or None


# --------------------------------------------------------------------------- one step


def apply(model, params, state, x, key=None):
    """The model's output and new state, whatever its kind.

    Args:
      model: ``model(params, x) -> y_hat`` when `state` is None, else ``model(params, state, x)
        -> (y_hat, new_state)``; called with ``key=key`` as well when `key` is not None.
      params, state: its parameters and state (None: a model without state).
      x: (B, ...) inputs.
      key: a PRNG key for the model's randomness, or None.

    Returns:
      (y_hat, new_state): new_state None for a model without state.
    """
    extra = {} if key is None else {"key": key}
    if state is None:
        return model(params, x, **extra), None
    return model(params, state, x, **extra)


def step_key(key, count):
    """Step `count`'s key of a fit drawing from `key`: ``jax.random.fold_in(key, count)``."""
    return jax.random.fold_in(key, count)


def _update(optimizer, g, opt_state, params, value, value_fn):
    """(params, opt_state) after the optimizer's update for the gradient `g` at `params`."""
    # optax's own arithmetic relies on JAX's standard promotion (Adam's bias correction raises
    # a Python float to the int32 count): its update runs under it whatever the program chose
    with jax.numpy_dtype_promotion("standard"):
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
            # optax's convention (optax.lbfgs, reduce_on_plateau): the batch loss, its gradient
            # and the loss as a function, for a line search or a metric-driven schedule
            updates, opt_state = optimizer.update(g, opt_state, params, value=value, grad=g,
                                                  value_fn=value_fn)
        else:
            updates, opt_state = optimizer.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state


def state_step(params, opt_state, state, x, y, key, *, model, loss,
               optimizer):  # step's, with the model's state and this step's key
    """One optimizer step of a model with state or randomness (`apply`).

    The gradient is the parameters' only; the state comes out of the forward that computed
    the loss, as torch's BatchNorm updates its buffers in the forward of ``loss.backward()``.
    A line search (``value_fn``) evaluates at the step's state and key.

    Args:
      params, opt_state: as in `step`; state: the model's state, or None.
      x, y: the batch, as in `step`.
      key: this step's key (`step_key`), or None.
      model, loss, optimizer: as in `step`; `model` as `apply` calls it.

    Returns:
      (params, opt_state, state, loss): the updated parameters, optimizer state and model
      state, and the () loss before the update.
    """
    def forward(p):
        y_hat, new = apply(model, p, state, x, key)
        return loss(y_hat, y), new

    (value, new), g = jax.value_and_grad(forward, has_aux=True)(params)
    params, opt_state = _update(optimizer, g, opt_state, params, value,
                                lambda p: forward(p)[0])
    return params, opt_state, new, value


def step(params, opt_state, x, y, *, model, loss, optimizer):
    """One optimizer step on one batch.

    Args:
      params: pytree of parameters.
      opt_state: the optimizer's state for `params`.
      x: (B,) or (B, d) inputs of the batch; y: (B, ...) its targets.
      model: ``model(params, x) -> y_hat``; loss: ``loss(y_hat, y) -> ()``.
      optimizer: an ``optax.GradientTransformation``. One with extra arguments (every
        ``optax.chain``, ``optax.lbfgs``) also receives ``value=`` (the batch loss),
        ``grad=`` and ``value_fn=`` (``params -> loss`` on this batch), optax's convention.

    Returns:
      (params, opt_state, loss): the updated parameters and state, and the () loss before the
      update.
    """
    params, opt_state, _, value = state_step(params, opt_state, None, x, y, None, model=model,
                                             loss=loss, optimizer=optimizer)
    return params, opt_state, value


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


# --------------------------------------------------------------------------- a scan of steps


def init_carry(params, optimizer, state=None) -> Carry:
    """The `Carry` before the first step: `params`, ``optimizer.init(params)``, no steps done,
    the model's `state` (None for a model without state)."""
    return Carry(params, optimizer.init(params), jnp.int32(0), jnp.int32(-1), state)


def _scan_batches(update, carry, x, y, order, batch_size, trace):
    """`update` over the epochs of `order`: a flat scan when every batch is full, else per epoch
    a scan over its full batches and one step on its short last one. -> (carry, out)."""
    full, rest = batches(order, batch_size)

    def batch(c, i):  # i (B,) or (r,) indices into the data
        return update(c, x[i], y[i])

    if rest is None:  # every batch full: one flat scan over all of them
        return jax.lax.scan(batch, carry, full.reshape(-1, batch_size))

    def epoch(c, idx):
        f, r = idx
        c, outs = jax.lax.scan(batch, c, f)  # (nf, ...)
        c, last = batch(c, r)
        if trace:
            outs = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), outs, last)
        return c, outs

    carry, out = jax.lax.scan(epoch, carry, (full, rest))  # (E, nf + 1, ...)
    if trace:
        out = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)
    return carry, out


def train_steps(carry: Carry, x, y, optimizer, *, model, loss, steps: int | None = None,
                order=None, batch_size: int | None = None, trace: bool = True,
                key=None):  # static settings, as jit keywords
    """Continue a fit from `carry`: `steps` full-batch steps, or the epochs of `order`.

    Pure, traceable, no input checks. `train_scan` is one call of it from `init_carry`; a long
    fit is several calls, each carrying the state on (`run_chunks`). Steps are numbered on
    from ``carry.count``, so the first non-finite step is the same either way.

    Args:
      carry: the `Carry` to continue from.
      x, y, optimizer, model, loss, batch_size, trace: as in `train_scan`.
      steps: full-batch steps (static), or None with `order`.
      order: (E, n) int batch order of the epochs to run now (may be traced).
      key: a PRNG key (may be traced): step t calls the model with ``key=step_key(key, t)``.

    Returns:
      (carry, out): the `Carry` after these steps, and ``(path, losses, states)`` when traced
      (path leaves (T, *shape) after each of the T steps, losses (T,), states the model's
      state after each step, leaves (T, *shape), or None) or None.
    """
    one = functools.partial(state_step, model=model, loss=loss, optimizer=optimizer)

    def update(c, xb, yb):  # one step on one batch; the count numbers the steps' keys
        k = None if key is None else step_key(key, c.count)
        p, s, ms, value = one(c.params, c.opt_state, c.state, xb, yb, k)
        if trace:  # the losses are kept: the first bad step comes from them after
            return Carry(p, s, c.count + 1, c.first_bad, ms), (p, value, ms)
        bad = jnp.where((c.first_bad < 0) & ~jnp.isfinite(value), c.count, c.first_bad)
        return Carry(p, s, c.count + 1, bad, ms), None

    start = carry
    if order is None:
        carry, out = jax.lax.scan(lambda c, _: update(c, x, y), carry, None, length=steps)
    else:
        carry, out = _scan_batches(update, carry, x, y, order, batch_size, trace)
    if trace:  # the step count and the first bad step from the kept losses, after the loop
        values = out[1]  # (T,)
        finite = jnp.isfinite(values)
        first = jnp.where(jnp.all(finite), -1, start.count + jnp.argmin(finite).astype(jnp.int32))
        bad = jnp.where(start.first_bad >= 0, start.first_bad, first).astype(jnp.int32)
        carry = carry._replace(count=start.count + values.shape[0], first_bad=bad)
    return carry, out


def train_scan(params, x, y, optimizer, *, model, loss, steps: int | None = None, order=None,
               batch_size: int | None = None, trace: bool = True, state=None,
               key=None) -> Trace:  # static settings, as jit keywords
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
      state: a stateful model's initial state (`apply`), or None.
      key: a PRNG key for the model's randomness (`step_key`), or None.

    Returns:
      `Trace(FitResult(params, path or None, losses or None, state, state_path or None),
      first_bad)`.
    """
    carry, out = train_steps(init_carry(params, optimizer, state), x, y, optimizer, model=model,
                             loss=loss, steps=steps, order=order, batch_size=batch_size,
                             trace=trace, key=key)
    if not trace:
        return Trace(FitResult(carry.params, None, None, carry.state), carry.first_bad)
    path, values, states = out

    def whole(start, rows):  # (T+1, ...): the start, then after every step
        return jax.tree.map(lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b]), start, rows)

    states = None if state is None else whole(state, states)
    return Trace(FitResult(carry.params, whole(params, path), values, carry.state, states),
                 carry.first_bad)


# --------------------------------------------------------------------------- recipes


class Recipe:
    """What makes a fit's optimizer: ``recipe(lr, steps_per_epoch) -> GradientTransformation``.

    The learning rate may be traced (a sweep vmaps over it); the steps per epoch are static
    (the lecture's SGD steps its schedule once per epoch). A recipe is hashable, so that a
    program compiled for it is reused: `functional_fit.registry.Optimizer` is one, and
    `as_recipe` makes one of an optax transformation or of a function of the learning rate.
    """

    def __call__(self, lr, steps_per_epoch: int = 1) -> optax.GradientTransformation:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Fixed(Recipe):
    """An optax transformation as a recipe: the same transformation whatever the lr."""

    transformation: optax.GradientTransformation

    def __call__(self, lr=None, steps_per_epoch: int = 1):
        del lr, steps_per_epoch
        return self.transformation


@dataclasses.dataclass(frozen=True)
class LrRecipe(Recipe):
    """A function ``lr -> optax.GradientTransformation`` as a recipe (a sweep's own optimizer)."""

    make: Callable

    def __call__(self, lr, steps_per_epoch: int = 1):
        del steps_per_epoch
        return self.make(lr)


def as_recipe(optimizer) -> Recipe:
    """`optimizer` as a recipe: an optax transformation (`Fixed`), a recipe as it is (the
    registry's `Optimizer`), or any other callable as a function of the learning rate
    (`LrRecipe`)."""
    if isinstance(optimizer, optax.GradientTransformation):
        return Fixed(optimizer)
    if isinstance(optimizer, Recipe):
        return optimizer
    return LrRecipe(optimizer)


def recipe_scan(params, x, y, lr, order=None, *, recipe, model, loss, steps=None,
                batch_size=None, trace=True, state=None,
                key=None) -> Trace:  # static settings, as jit keywords
    """`train_scan` with the optimizer ``recipe(lr, steps_per_epoch)``: lr may be traced."""
    per_epoch = 1 if order is None else _data.n_batches(order.shape[1], batch_size)
    return train_scan(params, x, y, recipe(lr, per_epoch), model=model, loss=loss, steps=steps,
                      order=order, batch_size=batch_size, trace=trace, state=state, key=key)


def recipe_init(params, lr, *, recipe, per_epoch: int, state=None) -> Carry:
    """`init_carry` with the optimizer ``recipe(lr, per_epoch)``."""
    return init_carry(params, recipe(lr, per_epoch), state)


def recipe_steps(carry, x, y, lr, order=None, *, recipe, per_epoch: int, model, loss,
                 steps=None, batch_size=None, trace=True,
                 key=None):  # static settings, as jit keywords
    """`train_steps` with the optimizer ``recipe(lr, per_epoch)``: lr may be traced."""
    return train_steps(carry, x, y, recipe(lr, per_epoch), model=model, loss=loss, steps=steps,
                       order=order, batch_size=batch_size, trace=trace, key=key)


_STATIC = ("recipe", "model", "loss", "steps", "batch_size", "trace")
#: The compiled programs of a fit, one of each per recipe, model, loss and shapes.
recipe_jit = jax.jit(recipe_scan, static_argnames=_STATIC)
init_jit = jax.jit(recipe_init, static_argnames=("recipe", "per_epoch"))
steps_jit = jax.jit(recipe_steps, static_argnames=("per_epoch", *_STATIC))


def train_jit(params, x, y, optimizer, *, model, loss, steps=None, order=None, batch_size=None,
              trace=True, state=None, key=None) -> Trace:  # train_scan's
    """`train_scan` compiled: `recipe_jit` with the optax transformation as a `Fixed` recipe."""
    return recipe_jit(params, x, y, None, order, recipe=Fixed(optimizer), model=model,
                      loss=loss, steps=steps, batch_size=batch_size, trace=trace, state=state,
                      key=key)


# --------------------------------------------------------------------------- chunks of steps

# The runtime's defaults under the names this module's callers gave them; read here, not used:
# pass ``runtime=functional_fit.runtime.defaults(..., chunk_work=...)`` to change them.
CHUNK_WORK = {p: _runtime.defaults(p).chunk_work for p in ("cpu", "gpu")}
STEP_OVERHEAD = _runtime.defaults("cpu").step_overhead


def chunk_steps(batch_points: int, n_params: int, runs: int = 1,
                runtime: _runtime.Runtime | None = None) -> int:
    """Steps per compiled call for about a second of work at most: the runtime's
    ``chunk_work`` over a step's cost.

    Args:
      batch_points: points in a step's batch (n for a full-batch fit, B for minibatches).
      n_params: parameters of one run.
      runs: runs advanced together (a sweep's vmapped chunk); they share the step overhead.
      runtime: sizes of the platform (`functional_fit.runtime`); None: JAX's default backend.
    """
    rt = _runtime.resolve(runtime)
    per_step = rt.step_overhead + max(1, runs) * max(1, batch_points) * max(1, n_params)
    return max(1, rt.chunk_work // per_step)


def spans(length: _data.Length, per_epoch: int, chunk: int) -> list[tuple[int, int]]:
    """(start, count) of each compiled call of about `chunk` steps: steps of a full-batch fit,
    whole epochs of a minibatch one (at least one epoch a call)."""
    if length.full:
        return [(i, min(chunk, length.steps - i)) for i in range(0, length.steps, chunk)]
    per_call = max(1, chunk // per_epoch)
    return [(e, min(per_call, length.epochs - e)) for e in range(0, length.epochs, per_call)]


def run_chunks(carry: Carry, advance: Callable, calls, on_call: Callable | None = None) -> Carry:
    """Advance `carry` by one compiled call per (start, count) of `calls` (`spans`).

    Each call is waited for before the next starts, so that Python sees a Ctrl-C between them.

    Args:
      carry: the state before the first call (any pytree: a sweep's is vmapped).
      advance: ``advance(carry, start, count) -> (carry, out)``, one compiled call.
      calls: (start, count) pairs.
      on_call: ``on_call(start, count, out)`` after each call (the path's rows, a progress bar).

    Returns:
      The state after the last call.
    """
    for start, count in calls:
        carry, out = advance(carry, start, count)
        carry = jax.block_until_ready(carry)
        if on_call is not None:
            on_call(start, count, out)
    return carry


__all__ = ["Carry", "FitResult", "Fixed", "LrRecipe", "MAX_STEPS", "Recipe", "Trace", "apply",
           "as_recipe", "batches", "chunk_steps", "init_carry", "init_jit", "recipe_init",
           "recipe_jit", "recipe_scan", "recipe_steps", "run_chunks", "spans", "state_step",
           "step", "step_key", "steps_jit", "train_jit", "train_scan", "train_steps"]
