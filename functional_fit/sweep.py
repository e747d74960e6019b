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
  pass inside each of them: 3-4x slower for the degree-12 model (`benchmarks/bench_sweep.py`).
  For a model that is not linear in w, J would be computed per run (p+1 forward passes a
  step), so ``model_grad="auto"`` keeps autodiff's own derivative for every model the
  registry does not mark linear in its parameters. The product sums the same terms in the
  same order as the single fit, so the results agree to rounding (measured: bit-identical in
  the lecture's mode, 9e-15 relative in float64 after the 5,000 Adam steps of the degree-12
  fit).
- Paths (R, steps+1, ...) are returned only with ``return_paths=True``; otherwise a run keeps
  no per-step array at all: whether its loss became non-finite, and at which step
  (``diverged_at``), is carried through the scan, so memory per run does not grow with the
  number of steps.
- With several devices (``jax.devices()``), the pairs are split across them with
  `jax.sharding`: a 1-D `Mesh` named ``"runs"`` and a `NamedSharding` of the pair axis. The
  pairs are padded to a multiple of the device count (with copies of the last pair) and the
  padding is trimmed from the results. The order, x and y are replicated.

Each member of a sweep is the single fit of `functional_fit.fit` with the same settings (the
same scan, vmapped): the tests check every member against `fit.gradient_descent`,
`fit.stochastic_gradient_descent`, `fit.adam_sgd` and `fit.train`, float64, to 1e-12 relative.

Unlike those checked fits, a sweep does not raise on divergence: a diverged run is a data
point (the learning rate where GD blows up). It is flagged in ``diverged`` and its loss and
parameters may be nan or inf.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import optax

from functional_fit import checks as _checks, data as _data, fit as _fit, losses as _losses
from functional_fit import models as _models, registry
from functional_fit.checks import InputError

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
    another order (measured: 2e-9 relative drift after 5,000 Adam steps, float64).

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


def _one_fit(w0, lr, order, x, y, *, recipe, model, loss, steps, batch_size, return_paths):
    """One run: the fit's scan, reduced to (params, final loss, diverged, first bad step, path)."""
    per_epoch = 1 if order is None else _data.n_batches(order.shape[1], batch_size)
    run = _fit.train_scan(w0, x, y, recipe(lr, per_epoch), model=model, loss=loss, steps=steps,
                          order=order, batch_size=batch_size, trace=return_paths)
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
):
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


# A sweep whose runs are long runs in calls of about a second each (`functional_fit.fit`'s
# chunks of steps, vmapped): every run's `fit.Carry` goes from one call to the next, so Ctrl-C
# is seen between calls. The same steps: each run equals the single fit bit for bit (tested),
# and the one-call sweep to rounding (XLA fuses that bigger program differently).


def _sweep_init(recipe, w0s, lrs, n_orders: int, *, per_epoch: int):
    """Every run's `fit.Carry` before its first step, leaves (S, P, ...)."""
    init = jax.vmap(functools.partial(_fit._recipe_init, recipe=recipe, per_epoch=per_epoch))
    carry = init(w0s, lrs)  # (P, ...)
    return jax.tree.map(lambda a: jnp.broadcast_to(a[None], (n_orders,) + a.shape), carry)


def _sweep_steps(recipe, carry, x, y, lrs, orders=None, *, per_epoch: int, model, loss,
                 steps=None, batch_size=None):
    """Every run's carry after `steps` more steps, or the epochs of `orders` (S, E', n)."""
    def one(c, lr, order):
        return _fit._recipe_steps(c, x, y, lr, order, recipe=recipe, per_epoch=per_epoch,
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


def _in_steps(w0c, lrc, x, y, orders, *, recipe, model, loss, steps, batch_size, per_call):
    """One chunk of runs as `sweep_scan` returns it, in calls of `per_call` steps each."""
    n_orders = 1 if orders is None else orders.shape[0]
    per_epoch = 1 if orders is None else _data.n_batches(orders.shape[2], batch_size)
    carry = _sweep_init_jit(recipe, w0c, lrc, n_orders, per_epoch=per_epoch)
    epochs = None if orders is None else orders.shape[1]
    for start, length in _fit._spans(steps, epochs, per_epoch, per_call):
        part = None if orders is None else orders[:, start : start + length]  # (S, E', n)
        carry = _sweep_steps_jit(recipe, carry, x, y, lrc, part, per_epoch=per_epoch,
                                 model=model, loss=loss,
                                 steps=length if orders is None else None, batch_size=batch_size)
        carry = jax.block_until_ready(carry)  # one call at a time: Ctrl-C is seen between them
    return _sweep_end_jit(carry, x, y, model=model, loss=loss)


@functools.partial(jax.jit, donate_argnums=0)
def _place(buffer, part, start):
    """`part` (S, chunk, ...) written into `buffer` (S, total, ...) at pair `start`, in place."""
    return jax.lax.dynamic_update_slice_in_dim(buffer, part, start, axis=1)


def _buffer(part, n_chunks: int):
    """A zero buffer for `n_chunks` chunks shaped like `part` (S, chunk, ...), sharded like it."""
    shape = (part.shape[0], part.shape[1] * n_chunks) + part.shape[2:]
    return jax.jit(lambda: jnp.zeros(shape, part.dtype), out_shardings=part.sharding)()


# --------------------------------------------------------------------------- checked entry point


def _check_lrs(lrs) -> np.ndarray:
    lrs = _checks.vector("lrs", np.atleast_1d(np.asarray(lrs, dtype=np.float64)))
    if np.any(lrs <= 0):
        bad = int(np.flatnonzero(lrs <= 0)[0])
        raise InputError(f"lrs must all be positive, got {lrs[bad]} at index {bad}")
    return lrs


def _check_w0s(w0s, x, y, model, loss):
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
        if jax.tree.structure(start) != jax.tree.structure(_fit.check_params(name, starts[0])):
            raise InputError(f"{name}: every start must have the structure of the first")
        checked.append(start)
    w = checked[0]
    size = {_models.linear: 2}.get(model)
    if size is not None and np.shape(w) != (size,):
        raise InputError(f"w0s: the linear model takes 2 parameters, got shape {np.shape(w)}")
    _fit.check_model(model, loss, w, x, y)
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *checked), len(checked)


@dataclasses.dataclass(frozen=True)
class LrRecipe:
    """A user's ``lr -> optax.GradientTransformation`` as a sweep recipe (hashable, static)."""

    make: Callable

    def __call__(self, lr, steps_per_epoch: int = 1):
        del steps_per_epoch
        return self.make(lr)


def _check_optimizer(optimizer, steps, epochs):
    """(recipe, batching) of a registry name or of a function ``lr -> GradientTransformation``."""
    if isinstance(optimizer, (str, registry.Optimizer)):
        opt = registry.optimizer(optimizer) if isinstance(optimizer, str) else optimizer
        if opt.batching == "any":  # torch's names: as the caller counts, steps or epochs
            return opt, ("minibatch" if epochs is not None else "full")
        return opt, opt.batching
    if isinstance(optimizer, optax.GradientTransformation) or not callable(optimizer):
        raise InputError("optimizer must be a registry name ('gd', 'sgd', 'adam', ...) or a "
                         "function lr -> optax.GradientTransformation, e.g. "
                         "lambda lr: optax.sgd(lr, momentum=0.9)")
    try:
        made = jax.eval_shape(lambda lr: optimizer(lr).init(jnp.zeros(1)), 1.0)
    except Exception as exc:
        raise InputError(f"optimizer: calling it with a learning rate failed ({type(exc).__name__}: "
                         f"{exc}); it must be a function lr -> optax.GradientTransformation") from None
    del made
    return LrRecipe(optimizer), ("minibatch" if epochs is not None else "full")


def _check_seeds(batching, seeds) -> np.ndarray | None:
    if batching == "full":
        if seeds is not None:
            raise InputError("seeds: a full-batch fit uses the whole data every step, no batch "
                             "order; pass seeds=None")
        return None
    seeds = [0] if seeds is None else list(np.atleast_1d(np.asarray(seeds)))
    if not seeds:
        raise InputError("seeds must hold at least one seed")
    return np.array([_checks.nonnegative_int("seeds", s) for s in seeds], dtype=np.int64)


def _check_length(batching, steps, epochs, batch_size):
    """(steps or epochs, batch_size) for the batching; InputError naming the misplaced one."""
    if batching == "full":
        if epochs is not None:
            raise InputError("epochs: a full-batch fit counts steps; pass steps, not epochs")
        return _checks.positive_int("steps", 100 if steps is None else steps), None
    if steps is not None:
        raise InputError("steps: a minibatch fit counts epochs (passes over the data); pass "
                         "epochs, not steps")
    epochs = _checks.positive_int("epochs", 100 if epochs is None else epochs)
    return epochs, _checks.positive_int("batch_size", batch_size)


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
    batch_size: int = 10,
    seeds: Sequence[int] | None = None,
    return_paths: bool = False,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    devices=None,
    model_grad: str = "auto",
) -> SweepResult:
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
      steps: a full-batch fit's number of steps (default 100).
      epochs: a minibatch fit's passes over the data (default 100).
      batch_size: B of a minibatch fit (default 10).
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
        values, 3-4x faster on the CPU for the degree-12 model); ``"autodiff"`` vmaps the
        single fit's own graph unchanged; ``"auto"`` (default) takes the first for the
        registry's models linear in their parameters and the second otherwise.

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
    _checks.choice("model_grad", model_grad, MODEL_GRADS)
    model, loss = _fit._resolve(model, loss)
    recipe, batching = _check_optimizer(optimizer, steps, epochs)
    x, y = _fit.check_fit_data(x, y)
    w0s, n_init = _check_w0s(w0s, x, y, model, loss)
    lrs = _check_lrs(lrs)
    length, batch_size = _check_length(batching, steps, epochs, batch_size)
    seeds = _check_seeds(batching, seeds)
    mesh = _mesh(devices)
    n_dev = 1 if mesh is None else mesh.size

    # The pairs (w0, lr): start-major, learning rate fastest.
    n_lr = lrs.shape[0]
    pair_w0 = jax.tree.map(lambda a: np.repeat(a, n_lr, axis=0), w0s)  # leaves (P, *shape)
    pair_lr = np.tile(lrs, n_init)  # (P,)
    n_pairs = n_init * n_lr
    chunk = n_pairs if chunk_size is None else min(_checks.positive_int("chunk_size", chunk_size), n_pairs)
    chunk = math.ceil(chunk / n_dev) * n_dev  # every device gets the same share
    n_chunks = math.ceil(n_pairs / chunk)
    pair_w0 = jax.tree.map(lambda a: _pad(a, n_chunks * chunk), pair_w0)
    pair_lr = _pad(pair_lr, n_chunks * chunk)

    orders = None
    if seeds is not None:
        n = x.shape[0]
        orders = jnp.asarray(np.stack([_data.batch_order(n, length, int(s)) for s in seeds]))
    lr_dtype = jnp.result_type(float)  # as fit._float: torch keeps Python floats in double
    shard = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    kwargs = dict(
        recipe=recipe, loss=loss, return_paths=return_paths, model=_model_grad(model_grad, model),
        steps=length if batching == "full" else None,
        batch_size=None if batching == "full" else batch_size,
    )
    n_seeds = 1 if seeds is None else seeds.shape[0]
    # Long runs go in calls of about a second (`_in_steps`); paths, when asked for, in one.
    per_epoch = 1 if seeds is None else _data.n_batches(x.shape[0], batch_size)
    total_steps = length * per_epoch
    n_params = sum(int(np.prod(np.shape(a)[1:])) for a in jax.tree.leaves(w0s))
    per_call = _fit.chunk_steps(x.shape[0] if seeds is None else batch_size, n_params,
                                runs=n_seeds * chunk)
    in_steps = not return_paths and total_steps > per_call
    # Each chunk's results go into one buffer per result (in place, on the device), so that
    # gathering R runs costs O(R) whatever the number of chunks.
    buffers = None
    for c in range(n_chunks):
        part = slice(c * chunk, (c + 1) * chunk)
        w0c = jax.tree.map(lambda a: jnp.asarray(a[part]), pair_w0)  # leaves (chunk, *shape)
        lrc = jnp.asarray(pair_lr[part], dtype=lr_dtype)  # (chunk,)
        if shard is not None:
            w0c, lrc = jax.device_put(w0c, shard), jax.device_put(lrc, shard)
        if in_steps:
            out = _in_steps(w0c, lrc, x, y, orders, recipe=recipe, model=kwargs["model"],
                            loss=loss, steps=kwargs["steps"], batch_size=kwargs["batch_size"],
                            per_call=per_call)
        else:
            out = sweep_jit(w0s=w0c, x=x, y=y, lrs=lrc, orders=orders, **kwargs)
        out = jax.block_until_ready(out)
        if n_chunks == 1:
            buffers = out
        else:
            if buffers is None:
                buffers = jax.tree.map(lambda a: _buffer(a, n_chunks), out)
            buffers = jax.tree.map(lambda b, a: _place(b, a, c * chunk), buffers, out)
        if progress is not None:
            progress(n_seeds * min(chunk, n_pairs - c * chunk))

    def gather(a):  # trimmed of the padding, flattened to (R, ...)
        a = a[:, :n_pairs]  # (S, P, ...)
        return a.reshape((n_seeds * n_pairs,) + a.shape[2:])

    params, final, diverged, first_bad, paths = (
        None if part is None else jax.tree.map(gather, part) for part in buffers
    )
    return SweepResult(
        lr=np.tile(lrs, n_seeds * n_init),
        seed=np.repeat(np.full(1, NO_SEED) if seeds is None else seeds, n_pairs),
        init=np.tile(np.repeat(np.arange(n_init), n_lr), n_seeds),
        params=params,
        loss=final,
        diverged=diverged,
        paths=paths,
        diverged_at=first_bad,
    )


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
