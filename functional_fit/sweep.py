"""Sweeps: many fits in one compiled call, `jax.vmap` over a whole fit.

The lecture tunes one learning rate at a time by hand. Here a fit (`functional_fit.fit.train_scan`
with an optax optimizer built from the run's learning rate: a registry name such as ``"adam"``,
or any ``lr -> optax.GradientTransformation``) is vmapped over a grid of runs:

- learning rates ``lrs`` (L,),
- starts ``w0s`` (I of them; each any pytree, the lecture's (p+1,) vector or a dict of weights),
- batch-order seeds ``seeds`` (S,) (minibatch fits; `functional_fit.data.batch_order`).

The grid has R = S * I * L runs. Results are flat, seed-major, then start, then learning rate
(the learning rate varies fastest), so ``result.loss.reshape(S, I, L)`` is the grid.

How it is batched, and why it is fast:

- The outer `jax.vmap` runs over the S batch orders, the inner one over the I * L pairs
  (w0, lr). Inside the inner vmap the batch order is not batched, so the gather ``x[i]`` of
  each step's batch is done once per order and shared by all I * L runs, not once per run.
- The model's reverse-mode derivative is taken as one Jacobian product (`jacobian_vjp`):
  ``g = J^T ct`` with J = d model / d w, shape (B, p+1). For a model linear in its parameters
  (``linear`` and ``poly``) J does not depend on w, so it is computed once per step and shared
  by all runs, and XLA turns the product into one matrix multiply over the runs. Autodiff's own
  transpose of ``w[i] * x**i`` is p+1 slices, and XLA's CPU fusion recomputes the whole forward
  pass inside each of them (BENCHMARKS.md, sweep: the two side by side).
  For a model that is not linear in w, J would be computed per run (p+1 forward passes a
  step), so ``model_grad="auto"`` keeps autodiff's own derivative for every model the
  registry does not mark linear in its parameters. The product sums the same terms in the
  same order as the single fit, so the results agree to rounding (tests/test_sweep.py).
- Paths (R, steps+1, ...) are returned only with ``return_paths=True``; otherwise a run keeps
  no per-step array at all: whether its loss became non-finite, and at which step
  (``diverged_at``), is carried through the scan, so memory per run does not grow with the
  number of steps.
- With several devices (``jax.devices()``), the pairs are split across them with
  `jax.sharding`: a 1-D `Mesh` named ``"runs"`` and a `NamedSharding` of the pair axis. The
  pairs are padded to a multiple of the device count (with copies of the last pair) and the
  padding is trimmed from the results. The order, x and y are replicated.

Each member of a sweep is the single fit of `functional_fit.fit` with the same settings: the
same engine (`functional_fit.engine`: its scan, vmapped; its chunk driver for long runs). The
tests check every member against `fit.gradient_descent`, `fit.stochastic_gradient_descent`,
`fit.adam_sgd` and `fit.train`, float64, to 1e-12 relative.

Unlike those checked fits, a sweep does not raise on divergence: a diverged run is a data
point (the learning rate where GD blows up). It is flagged in ``diverged`` and its loss and
parameters may be nan or inf.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from functional_fit import checks as _checks, data as _data, engine, fit as _fit
from functional_fit import losses as _losses, models as _models, registry, runtime as _runtime
from functional_fit.checks import InputError
from functional_fit.engine import LrRecipe  # noqa: F401  (a user's lr -> optimizer, as a recipe)
from functional_fit.precision import default_float

#: How a sweep differentiates the model: `jacobian_vjp` (fast for a model linear in its
#: parameters), JAX's autodiff as is, or "auto": the first for the registry's models that are
#: linear in their parameters, the second for every other model.
MODEL_GRADS = ("auto", "jacobian", "autodiff")

#: Seed recorded for GD runs, which use no batch order.
NO_SEED = -1


class SweepResult(NamedTuple):
    """What a sweep returns: one row per run, R = S * I * L runs, learning rate fastest.

    ``params``, ``loss``, ``diverged`` and ``paths`` are JAX arrays; the run coordinates
    ``lr``, ``seed`` and ``init`` are numpy arrays.
    """

    lr: np.ndarray  # shape=(R,) the run's learning rate
    seed: np.ndarray  # shape=(R,) int, the seed of the run's batch order; NO_SEED (-1) for GD
    init: np.ndarray  # shape=(R,) int, the start (row of w0s) the run began from
    params: jax.Array  # pytree of the starts' structure, leaves (R, *shape): final parameters
    loss: jax.Array  # shape=(R,) the loss on the whole data at the final parameters
    diverged: jax.Array  # shape=(R,) bool: a step loss, a final parameter or `loss` not finite
    paths: jax.Array | None  # leaves (R, steps+1, *shape) with return_paths=True, else None
    diverged_at: jax.Array | None = None  # shape=(R,) int: first step with a non-finite loss, or -1


# --------------------------------------------------------------------------- traceable core


@functools.cache
def jacobian_vjp(model: Callable) -> Callable:
    """`model` with the same values, differentiated in reverse mode through its Jacobian.

    The wrapper's VJP is ``g[k] = sum_b ct[b] * J[b, k]`` with ``J = jax.jacfwd(model)(w, x)``,
    shape (B, p+1). For a model linear in w, J depends on x only, so under `jax.vmap` over w
    it is computed once and shared, and the sum becomes one (runs, B) x (B, p+1) product.
    Written as a sum over the last axis of ``ct * J.T``, the order in which autodiff's own
    transpose sums the same products; do not rewrite it as ``ct @ J``, which XLA sums in
    another order: the sweep's runs would drift from the single fits over a long fit.

    Cached, so the same model gives the same wrapper and a sweep compiles once.

    Args:
      model: ``model(w, x) -> y_hat``; w (p+1,) or any pytree, x (B,), y_hat (B,).

    Returns:
      ``model(w, x)`` with a custom VJP; x gets a zero cotangent (data is not differentiated).
    """

    @jax.custom_vjp
    def wrapped(w, x):
        return model(w, x)

    def fwd(w, x):
        return model(w, x), (w, x)

    def bwd(res, ct):
        w, x = res
        jac = jax.jacfwd(model)(w, x)  # like w, each leaf (B, *out, *shape)

        def leaf_grad(j, leaf):
            if ct.ndim == 1:  # (B,): the order autodiff's transpose sums in, see above
                jt = jnp.moveaxis(j, 0, -1)  # (*shape, B)
                return jnp.sum(ct.reshape((1,) * (jt.ndim - 1) + ct.shape) * jt, axis=-1)
            return jnp.tensordot(ct, j, axes=ct.ndim)  # (*shape,)

        g = jax.tree.map(lambda j, leaf: leaf_grad(j, leaf).astype(leaf.dtype), jac, w)
        return g, jnp.zeros_like(x)

    wrapped.defvjp(fwd, bwd)
    return wrapped


def _one_fit(w0, lr, order, x, y, *, recipe, model, loss, steps, batch_size,
             return_paths):  # static settings, as jit keywords
    """One run: the engine's scan, reduced to (params, final loss, diverged, first bad step,
    path)."""
    run = engine.recipe_scan(w0, x, y, lr, order, recipe=recipe, model=model, loss=loss,
                             steps=steps, batch_size=batch_size, trace=return_paths)
    return (*_summary(run.result.params, run.first_bad, x, y, model=model, loss=loss),
            run.result.path if return_paths else None)


def _summary(params, first_bad, x, y, *, model, loss):
    """(params, final loss (), diverged (), first bad step ()) of one finished run."""
    final = loss(model(params, x), y)  # () on the whole data
    finite = (first_bad < 0) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(params)]))
    diverged = ~(finite & jnp.isfinite(final))
    return params, final, diverged, first_bad


def sweep_scan(
    recipe,
    w0s,
    x,
    y,
    lrs,
    orders=None,
    *,
    model,
    loss,
    steps: int | None = None,
    batch_size: int | None = None,
    return_paths: bool = False,
):  # static settings, as jit keywords
    """The sweep as a pure, traceable function: every pair (w0s[j], lrs[j]) with every order.

    No input checks (see `sweep`); jit it with optimizer, model, loss, steps, batch_size and
    return_paths static, as `sweep_jit` does.

    Args:
      recipe: ``recipe(lr, steps_per_epoch) -> optax.GradientTransformation``, e.g. an entry of
        `functional_fit.registry.OPTIMIZERS` (static: frozen and hashable).
      w0s: the initial parameters of each pair, leaves (P, *shape).
      x, y: (n,) data.
      lrs: (P,) the learning rate of each pair (JAX's default float).
      orders: (S, E, n) int batch orders, one per seed (SGD, Adam); None for GD (S = 1).
      model, loss: functions, as in `functional_fit.fit`.
      steps: GD's number of steps.
      batch_size: B of SGD and Adam.
      return_paths: also return every run's path.

    Returns:
      (params (S, P, *shape), loss (S, P), diverged (S, P) bool, first bad step (S, P) int,
      paths (S, P, steps+1, *shape) or None).
    """
    one = functools.partial(
        _one_fit, x=x, y=y, recipe=recipe, model=model, loss=loss,
        steps=steps, batch_size=batch_size, return_paths=return_paths,
    )
    # Inner: the pairs share one order, so each step's batch x[i], y[i] is gathered once.
    pairs = jax.vmap(one, in_axes=(0, 0, None))  # (P, ...) for one order
    if orders is None:
        out = pairs(w0s, lrs, None)
        return jax.tree.map(lambda a: a[None], out)  # (1, P, ...)
    return jax.vmap(pairs, in_axes=(None, None, 0))(w0s, lrs, orders)  # (S, P, ...)


sweep_jit = jax.jit(
    sweep_scan,
    static_argnames=("recipe", "model", "loss", "steps", "batch_size", "return_paths"),
)


# A sweep whose runs are long runs in calls of about a second each: the engine's chunk driver
# (`functional_fit.engine.run_chunks`) over the vmapped runs, every run's `engine.Carry` going
# from one call to the next, so Ctrl-C is seen between calls. The same steps: each run equals
# the single fit bit for bit (tested), and the one-call sweep to rounding (XLA fuses that bigger
# program differently).


def _sweep_init(recipe, w0s, lrs, n_orders: int, *, per_epoch: int):
    """Every run's `engine.Carry` before its first step, leaves (S, P, ...)."""
    init = jax.vmap(functools.partial(engine.recipe_init, recipe=recipe, per_epoch=per_epoch))
    carry = init(w0s, lrs)  # (P, ...)
    return jax.tree.map(lambda a: jnp.broadcast_to(a[None], (n_orders,) + a.shape), carry)


def _sweep_steps(recipe, carry, x, y, lrs, orders=None, *, per_epoch: int, model, loss,
                 steps=None, batch_size=None):  # static settings, as jit keywords
    """Every run's carry after `steps` more steps, or the epochs of `orders` (S, E', n)."""
    def one(c, lr, order):
        return engine.recipe_steps(c, x, y, lr, order, recipe=recipe, per_epoch=per_epoch,
                                   model=model, loss=loss, steps=steps, batch_size=batch_size,
                                   trace=False)[0]

    pairs = jax.vmap(one, in_axes=(0, 0, None))  # the pairs share one order
    if orders is None:
        return jax.vmap(lambda c: pairs(c, lrs, None))(carry)  # (1, P, ...)
    return jax.vmap(pairs, in_axes=(0, None, 0))(carry, lrs, orders)  # (S, P, ...)


def _sweep_end(carry, x, y, *, model, loss):
    """(params, loss, diverged, first bad step, None) of every run, leaves (S, P, ...)."""
    end = functools.partial(_summary, x=x, y=y, model=model, loss=loss)
    return (*jax.vmap(jax.vmap(end))(carry.params, carry.first_bad), None)


_sweep_init_jit = jax.jit(_sweep_init, static_argnames=("recipe", "n_orders", "per_epoch"))
_sweep_steps_jit = jax.jit(
    _sweep_steps, static_argnames=("recipe", "per_epoch", "model", "loss", "steps", "batch_size"))
_sweep_end_jit = jax.jit(_sweep_end, static_argnames=("model", "loss"))


def _in_steps(plan, w0c, lrc, orders, per_call: int):
    """One chunk of runs (leaves (chunk, ...)) as `sweep_scan` returns it, in calls of
    `per_call` steps each."""
    x, y, length = plan.x, plan.y, plan.length
    n_orders = 1 if orders is None else orders.shape[0]
    per_epoch = length.per_epoch(x.shape[0])
    kw = dict(per_epoch=per_epoch, model=plan.model, loss=plan.loss,
              batch_size=length.batch_size)

    def advance(carry, start, count):
        part = None if orders is None else orders[:, start : start + count]  # (S, E', n)
        steps = count if length.full else None
        return _sweep_steps_jit(plan.recipe, carry, x, y, lrc, part, steps=steps, **kw), None

    carry = _sweep_init_jit(plan.recipe, w0c, lrc, n_orders, per_epoch=per_epoch)
    carry = engine.run_chunks(carry, advance, engine.spans(length, per_epoch, per_call))
    return _sweep_end_jit(carry, x, y, model=plan.model, loss=plan.loss)


@functools.partial(jax.jit, donate_argnums=0)
def _place(buffer, part, start):
    """`part` (S, chunk, ...) written into `buffer` (S, total, ...) at pair `start`, in place."""
    return jax.lax.dynamic_update_slice_in_dim(buffer, part, start, axis=1)


def _buffer(part, n_chunks: int):
    """A zero buffer for `n_chunks` chunks shaped like `part` (S, chunk, ...), sharded like it."""
    shape = (part.shape[0], part.shape[1] * n_chunks) + part.shape[2:]
    return jax.jit(lambda: jnp.zeros(shape, part.dtype), out_shardings=part.sharding)()


# --------------------------------------------------------------------------- checks


def check_lrs(lrs) -> np.ndarray:
    """The learning rates as a (L,) float64 vector, all positive."""
    lrs = _checks.vector("lrs", np.atleast_1d(np.asarray(lrs, dtype=np.float64)))
    if np.any(lrs <= 0):
        bad = int(np.flatnonzero(lrs <= 0)[0])
        raise InputError(f"lrs must all be positive, got {lrs[bad]} at index {bad}")
    return lrs


def _check_w0s(w0s, model):
    """The starts as one pytree with a leading axis I, checked; and I.

    One start is an array (p+1,) or any pytree; several are an (I, p+1) array or a list of
    pytrees of one structure.
    """
    if hasattr(w0s, "detach"):  # a torch tensor
        w0s = w0s.detach().cpu().numpy()
    if isinstance(w0s, (list, tuple)) and w0s and not np.isscalar(w0s[0]):
        starts = list(w0s)  # several starts, each a pytree
    elif isinstance(w0s, (list, tuple)) or hasattr(w0s, "shape"):
        arr = np.asarray(w0s)
        if arr.ndim not in (1, 2) or arr.size == 0:
            raise InputError(f"w0s must have shape (p+1,) or (I, p+1), got {arr.shape}")
        starts = list(arr) if arr.ndim == 2 else [arr]
    else:
        starts = [w0s]
    checked = []
    for i, start in enumerate(starts):
        name = "w0s" if len(starts) == 1 else f"w0s[{i}]"
        start = _fit.check_params(name, start)
        if checked and jax.tree.structure(start) != jax.tree.structure(checked[0]):
            raise InputError(f"{name}: every start must have the structure of the first")
        checked.append(start)
    registry.check_size(model, "w0s", checked[0])
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *checked), len(checked)


def _check_optimizer(optimizer, steps, epochs):
    """(recipe, batching) of a registry name, a registry optimizer or a function
    ``lr -> GradientTransformation``."""
    if isinstance(optimizer, (str, registry.Optimizer)):
        opt = registry.optimizer(optimizer) if isinstance(optimizer, str) else optimizer
        return opt, _data.batching_for(opt.batching, steps=steps, epochs=epochs)
    if isinstance(optimizer, optax.GradientTransformation) or not callable(optimizer):
        raise InputError("optimizer must be a registry name ('gd', 'sgd', 'adam', ...) or a "
                         "function lr -> optax.GradientTransformation, e.g. "
                         "lambda lr: optax.sgd(lr, momentum=0.9)")
    try:
        jax.eval_shape(lambda lr: optimizer(lr).init(jnp.zeros(1)), 1.0)
    except Exception as exc:
        raise InputError(f"optimizer: calling it with a learning rate failed ({type(exc).__name__}: "
                         f"{exc}); it must be a function lr -> optax.GradientTransformation") from None
    return engine.as_recipe(optimizer), _data.batching_for("any", steps=steps, epochs=epochs)


def check_seeds(batching, seeds) -> np.ndarray | None:
    """(S,) int seeds of the batch orders, or None for a full-batch fit."""
    if batching == "full":
        if seeds is not None:
            raise InputError("seeds: a full-batch fit uses the whole data every step, no batch "
                             "order; pass seeds=None")
        return None
    seeds = [0] if seeds is None else list(np.atleast_1d(np.asarray(seeds)))
    if not seeds:
        raise InputError("seeds must hold at least one seed")
    return np.array([_checks.nonnegative_int("seeds", s) for s in seeds], dtype=np.int64)


def _mesh(devices):
    """A 1-D mesh named "runs" over `devices` (all of JAX's by default), or None for one."""
    devices = _checks.devices("devices", devices)
    if len(devices) == 1:
        return None
    return jax.sharding.Mesh(np.array(devices), ("runs",))


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """`a` padded along axis 0 to `size` rows with copies of its last row (valid settings)."""
    pad = size - a.shape[0]
    return a if pad == 0 else np.concatenate([a, np.repeat(a[-1:], pad, axis=0)])


def _model_grad(model_grad, model):
    """The model as the sweep differentiates it (see `MODEL_GRADS`)."""
    if model_grad == "auto":
        name = registry.name_of(model, registry.MODELS)
        linear = name is not None and registry.MODELS[name].linear_in_params
        model_grad = "jacobian" if linear else "autodiff"
    return jacobian_vjp(model) if model_grad == "jacobian" else model


class _Plan(NamedTuple):
    """A checked sweep, ready to run: the runs and how they are cut into compiled calls."""

    recipe: Any  # `engine.Recipe` of the optimizer
    model: Callable  # as differentiated (`_model_grad`)
    loss: Callable
    x: jax.Array
    y: jax.Array
    w0s: Any  # the starts, leaves (I, *shape)
    lrs: np.ndarray  # (L,)
    seeds: np.ndarray | None  # (S,), None for full batch
    length: _data.Length
    mesh: Any  # a 1-D mesh "runs", or None for one device
    chunk: int  # (w0, lr) pairs per compiled call, a multiple of the device count


def _checked(optimizer, w0s, x, y, lrs, *, model, loss, steps, epochs, batch_size, seeds,
             chunk_size, devices, model_grad) -> _Plan:  # sweep's own arguments, checked in turn
    """Every argument of `sweep` checked, in the order a user reads them."""
    _checks.choice("model_grad", model_grad, MODEL_GRADS)
    model, loss = registry.resolve(model, loss)
    recipe, batching = _check_optimizer(optimizer, steps, epochs)
    x, y = _fit.check_fit_data(x, y)
    w0s, n_init = _check_w0s(w0s, model)
    lrs = check_lrs(lrs)
    length = _data.fit_length(x.shape[0], batching, steps=steps, epochs=epochs,
                              batch_size=batch_size if batching == "minibatch" else None,
                              defaults=True)
    _fit.check_model(model, loss, jax.tree.map(lambda a: a[0], w0s), x, y,
                     batch_size=None if length.full else length.batch_size)
    seeds = check_seeds(batching, seeds)
    mesh = _mesh(devices)
    n_dev = 1 if mesh is None else mesh.size
    n_pairs = n_init * lrs.shape[0]
    chunk = n_pairs if chunk_size is None else min(_checks.positive_int("chunk_size", chunk_size),
                                                   n_pairs)
    chunk = math.ceil(chunk / n_dev) * n_dev  # every device gets the same share
    return _Plan(recipe, _model_grad(model_grad, model), loss, x, y, w0s, lrs, seeds, length,
                 mesh, chunk)


def _pairs(plan: _Plan):
    """The (w0, lr) pairs, start-major, learning rate fastest, padded to whole chunks:
    (leaves (P', *shape), (P',)), P' a multiple of the chunk."""
    n_lr, n_init = plan.lrs.shape[0], jax.tree.leaves(plan.w0s)[0].shape[0]
    padded = math.ceil(n_init * n_lr / plan.chunk) * plan.chunk
    pair_w0 = jax.tree.map(lambda a: _pad(np.repeat(a, n_lr, axis=0), padded), plan.w0s)
    return pair_w0, _pad(np.tile(plan.lrs, n_init), padded)


def _run(plan: _Plan, *, return_paths, progress, runtime):
    """Every chunk of pairs, one compiled call each (or calls of about a second, for long runs
    without paths): the results as (S, P', ...) buffers, in place on the devices."""
    n = plan.x.shape[0]
    pair_w0, pair_lr = _pairs(plan)
    n_pairs = jax.tree.leaves(plan.w0s)[0].shape[0] * plan.lrs.shape[0]
    n_chunks = pair_lr.shape[0] // plan.chunk
    orders = None if plan.seeds is None else jnp.asarray(np.stack(
        [_data.batch_order(n, plan.length.epochs, int(s)) for s in plan.seeds]))
    n_seeds = 1 if plan.seeds is None else plan.seeds.shape[0]
    n_params = sum(int(np.prod(np.shape(a)[1:])) for a in jax.tree.leaves(plan.w0s))
    per_call = engine.chunk_steps(n if plan.length.full else plan.length.batch_size, n_params,
                                  runs=n_seeds * plan.chunk, runtime=runtime)
    in_steps = not return_paths and plan.length.total(n) > per_call
    shard = None if plan.mesh is None else jax.sharding.NamedSharding(
        plan.mesh, jax.sharding.PartitionSpec("runs"))
    kw = dict(recipe=plan.recipe, model=plan.model, loss=plan.loss)
    buffers = None
    for c in range(n_chunks):
        part = slice(c * plan.chunk, (c + 1) * plan.chunk)
        w0c = jax.tree.map(lambda a: jnp.asarray(a[part]), pair_w0)  # leaves (chunk, *shape)
        lrc = default_float(pair_lr[part])  # (chunk,), as `functional_fit.fit` passes lr
        if shard is not None:
            w0c, lrc = jax.device_put(w0c, shard), jax.device_put(lrc, shard)
        if in_steps:
            out = _in_steps(plan, w0c, lrc, orders, per_call)
        else:
            out = sweep_jit(w0s=w0c, x=plan.x, y=plan.y, lrs=lrc, orders=orders,
                            return_paths=return_paths, steps=plan.length.steps,
                            batch_size=plan.length.batch_size, **kw)
        out = jax.block_until_ready(out)
        buffers = out if n_chunks == 1 else _gathered(buffers, out, c * plan.chunk, n_chunks)
        if progress is not None:
            progress(n_seeds * min(plan.chunk, n_pairs - c * plan.chunk))
    return buffers


def _gathered(buffers, out, start: int, n_chunks: int):
    """`out` (S, chunk, ...) written into the results' buffers at pair `start`, in place: R runs
    cost O(R) to gather whatever the number of chunks."""
    if buffers is None:
        buffers = jax.tree.map(lambda a: _buffer(a, n_chunks), out)
    return jax.tree.map(lambda b, a: _place(b, a, start), buffers, out)


def sweep(
    optimizer,
    w0s,
    x,
    y,
    lrs,
    *,
    model: Callable = _models.linear,
    loss: Callable = _losses.l1,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = _data.DEFAULT_BATCH_SIZE,
    seeds: Sequence[int] | None = None,
    return_paths: bool = False,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    devices=None,
    model_grad: str = "auto",
    runtime=None,
) -> SweepResult:  # 17 arguments: the public settings of a sweep, each checked by `_checked`
    """Fit every combination of learning rate, start and batch order, vmapped and compiled.

    Args:
      optimizer: a name of `functional_fit.registry` (``"gd"``, ``"sgd"``, ``"adam"``: the
        lecture's fits, `fit.gradient_descent`, `fit.stochastic_gradient_descent`,
        `fit.adam_sgd`), or any function ``lr -> optax.GradientTransformation`` (e.g.
        ``lambda lr: optax.sgd(lr, momentum=0.9)``), full-batch with `steps`, minibatch with
        `epochs`.
      w0s: one start, an array (p+1,) or any pytree; or several, an (I, p+1) array or a list
        of pytrees; their dtypes are the parameters' dtypes.
      x: (n,) or (n, d) inputs; y: (n, ...) targets.
      lrs: (L,) learning rates, > 0 (a scalar is one).
      model, loss: as in `functional_fit.fit.train` (any pure functions).
      steps: a full-batch fit's number of steps (default 100, `data.DEFAULT_STEPS`).
      epochs: a minibatch fit's passes over the data (default 100, `data.DEFAULT_EPOCHS`).
      batch_size: B of a minibatch fit (default 10); a full-batch fit ignores it.
      seeds: (S,) seeds of the batch orders, ``batch_order(n, epochs, seed)`` (default [0]).
        Must be None for a full-batch fit.
      return_paths: also return the paths, leaves (R, steps+1, *shape); memory grows with
        R * steps. Without it a run keeps no per-step array: its divergence (and first
        non-finite step, ``diverged_at``) is recorded inside the scan.
      chunk_size: run at most this many (w0, lr) pairs per compiled call (rounded up to a
        multiple of the device count), all chunks of one shape so it compiles once; None runs
        all pairs in one call. For progress reports; one call is fastest. Whatever the chunk,
        runs too long for one call of about a second (`fit.chunk_steps`) go in several
        calls of their steps (without ``return_paths``), so Ctrl-C is never held off long.
      progress: called with the number of runs finished after each chunk (a progress bar).
      devices: the devices to split the runs across (default all of `jax.devices()`).
      model_grad: ``"jacobian"`` differentiates the model through `jacobian_vjp` (the same
        values, faster for models linear in their parameters); ``"autodiff"`` vmaps the
        single fit's own graph unchanged; ``"auto"`` (default) takes the first for the
        registry's models linear in their parameters and the second otherwise.
      runtime: sizes of the compiled calls (`functional_fit.runtime`); None: the platform's.

    Returns:
      `SweepResult` of R = S * I * L runs, seed-major, then start, then learning rate.

    Raises:
      InputError: a bad argument, named in the message.
      PrecisionError: float64 inputs while JAX's 64-bit mode is off.

    Examples:
      >>> import numpy as np, functional_fit as ff
      >>> from functional_fit.sweep import sweep
      >>> with ff.float64():
      ...     x, y = ff.lecture_data()
      ...     res = sweep("gd", ff.zeros(2, "float64"), x, y, [0.3, 1.0, 1e6],
      ...                 loss=ff.losses.mse, steps=50)
      >>> np.round(np.asarray(res.loss), 4).tolist(), np.asarray(res.diverged).tolist()
      ([4.2388, 3.919, inf], [False, False, True])
    """
    plan = _checked(optimizer, w0s, x, y, lrs, model=model, loss=loss, steps=steps,
                    epochs=epochs, batch_size=batch_size, seeds=seeds, chunk_size=chunk_size,
                    devices=devices, model_grad=model_grad)
    buffers = _run(plan, return_paths=return_paths, progress=progress,
                   runtime=_runtime.resolve(runtime))
    n_init, n_lr = jax.tree.leaves(plan.w0s)[0].shape[0], plan.lrs.shape[0]
    n_seeds, n_pairs = (1 if plan.seeds is None else plan.seeds.shape[0]), n_init * n_lr

    def gather(a):  # trimmed of the padding, flattened to (R, ...)
        a = a[:, :n_pairs]  # (S, P, ...)
        return a.reshape((n_seeds * n_pairs,) + a.shape[2:])

    params, final, diverged, first_bad, paths = (
        None if part is None else jax.tree.map(gather, part) for part in buffers)
    return SweepResult(
        lr=np.tile(plan.lrs, n_seeds * n_init),
        seed=np.repeat(np.full(1, NO_SEED) if plan.seeds is None else plan.seeds, n_pairs),
        init=np.tile(np.repeat(np.arange(n_init), n_lr), n_seeds),
        params=params, loss=final, diverged=diverged, paths=paths, diverged_at=first_bad)


def log_lrs(start: float, stop: float, count: int) -> np.ndarray:
    """`count` learning rates log-spaced from `start` to `stop` inclusive, shape (count,).

    Examples:
      >>> log_lrs(0.01, 1.0, 3).tolist()
      [0.01, 0.1, 1.0]
    """
    start = _checks.positive_float("start", start)
    stop = _checks.positive_float("stop", stop)
    count = _checks.positive_int("count", count)
    return np.logspace(math.log10(start), math.log10(stop), count)


def as_numpy(result: SweepResult) -> SweepResult:
    """The same result with numpy arrays (for printing, JSON and comparison)."""
    return SweepResult(*(None if a is None else jax.tree.map(np.asarray, a) for a in result))


def best(result: SweepResult) -> int | None:
    """Index of the run with the lowest final loss among those that did not diverge, or None."""
    loss = np.asarray(result.loss, dtype=np.float64)
    ok = ~np.asarray(result.diverged)
    if not ok.any():
        return None
    return int(np.flatnonzero(ok)[np.argmin(loss[ok])])
