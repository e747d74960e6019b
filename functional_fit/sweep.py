"""Sweeps: many fits in one compiled call, `jax.vmap` over a whole fit.

The lecture tunes one learning rate at a time by hand. Here a fit of `functional_fit.fit`
(``gd_scan``, ``sgd_scan``, ``adam_scan``) is vmapped over a grid of runs:

- learning rates ``lrs`` (L,),
- initial parameters ``w0s`` (I, p+1),
- batch-order seeds ``seeds`` (S,) (SGD and Adam; `functional_fit.data.batch_order`).

The grid has R = S * I * L runs. Results are flat, seed-major, then start, then learning rate
(the learning rate varies fastest), so ``result.loss.reshape(S, I, L)`` is the grid.

How it is batched, and why it is fast:

- The outer `jax.vmap` runs over the S batch orders, the inner one over the I * L pairs
  (w0, lr). Inside the inner vmap the batch order is not batched, so the gather ``x[i]`` of
  each step's batch is done once per order and shared by all I * L runs, not once per run.
- The model's reverse-mode derivative is taken as one Jacobian product (`jacobian_vjp`):
  ``g = J^T ct`` with J = d model / d w, shape (B, p+1). For a model linear in its parameters
  (both of the toolkit's) J does not depend on w, so it is computed once per step and shared by
  all runs, and XLA turns the product into one matrix multiply over the runs. Autodiff's own
  transpose of ``w[i] * x**i`` is p+1 slices, and XLA's CPU fusion recomputes the whole forward
  pass inside each of them: 3-4x slower for the degree-12 model (`benchmarks/bench_sweep.py`).
  For a model that is not linear in w, J is computed per run (p+1 forward passes a step). The product sums the
  same terms in the same order as the single fit, so the results agree to rounding (measured:
  bit-identical in the lecture's mode, 9e-15 relative in float64 after the 5,000 Adam steps
  of the degree-12 fit). ``model_grad="autodiff"`` keeps autodiff's own derivative.
- Paths (R, steps+1, p+1) are returned only with ``return_paths=True``; otherwise the step
  losses are reduced to one divergence flag per run inside the compiled call and the paths
  are never materialized.
- With several devices (``jax.devices()``), the pairs are split across them with
  `jax.sharding`: a 1-D `Mesh` named ``"runs"`` and a `NamedSharding` of the pair axis. The
  pairs are padded to a multiple of the device count (with copies of the last pair) and the
  padding is trimmed from the results. The order, x and y are replicated.

Each member of a sweep is the single fit of `functional_fit.fit` with the same settings (the
same scan, vmapped): the tests check every member against `fit.gradient_descent`,
`fit.stochastic_gradient_descent` and `fit.adam_sgd`, float64, to 1e-12 relative.

Unlike those checked fits, a sweep does not raise on divergence: a diverged run is a data
point (the learning rate where GD blows up). It is flagged in ``diverged`` and its loss and
parameters may be nan or inf.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import _checks, data as _data, fit as _fit, losses as _losses, models as _models
from functional_fit._checks import InputError
from functional_fit.precision import check_array_dtype

OPTIMIZERS = ("gd", "sgd", "adam")
#: How a sweep differentiates the model: `jacobian_vjp` (fast), or JAX's autodiff as is.
MODEL_GRADS = ("jacobian", "autodiff")

#: Seed recorded for GD runs, which use no batch order.
NO_SEED = -1


class SweepResult(NamedTuple):
    """What a sweep returns: one row per run, R = S * I * L runs, learning rate fastest.

    ``params``, ``loss``, ``diverged`` and ``paths`` are JAX arrays; the run coordinates
    ``lr``, ``seed`` and ``init`` are numpy arrays.
    """

    lr: np.ndarray  # shape=(R,) the run's learning rate
    seed: np.ndarray  # shape=(R,) int, the seed of the run's batch order; NO_SEED (-1) for GD
    init: np.ndarray  # shape=(R,) int, the row of w0s the run started from
    params: jax.Array  # shape=(R, p+1) the parameters after the last step
    loss: jax.Array  # shape=(R,) the loss on the whole data at the final parameters
    diverged: jax.Array  # shape=(R,) bool: a step loss, a final parameter or `loss` not finite
    paths: jax.Array | None  # shape=(R, steps+1, p+1) with return_paths=True, else None


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
      model: ``model(w, x) -> y_hat``, w (p+1,), x (B,), y_hat (B,).

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
        jac = jax.jacfwd(model)(w, x)  # (B, p+1)
        g = jnp.sum(ct[None, :] * jac.T, axis=1)  # (p+1, B) summed over B -> (p+1,)
        return g.astype(w.dtype), jnp.zeros_like(x)

    wrapped.defvjp(fwd, bwd)
    return wrapped


def _one_fit(w0, lr, order, x, y, *, optimizer, model, loss, length, batch_size, return_paths):
    """One run: the fit's scan, reduced to (params, final loss, diverged, path or None)."""
    if optimizer == "gd":
        res = _fit.gd_scan(w0, x, y, lr, model=model, loss=loss, steps=length)
    elif optimizer == "sgd":
        res = _fit.sgd_scan(w0, x, y, order, lr, model=model, loss=loss, batch_size=batch_size)
    else:
        res = _fit.adam_scan(w0, x, y, order, lr, model=model, loss=loss, batch_size=batch_size)
    final = loss(model(res.params, x), y)  # () on the whole data
    finite = jnp.all(jnp.isfinite(res.losses)) & jnp.all(jnp.isfinite(res.params))
    diverged = ~(finite & jnp.isfinite(final))
    return res.params, final, diverged, (res.path if return_paths else None)


def sweep_scan(
    optimizer: str,
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
      optimizer: ``"gd"``, ``"sgd"`` or ``"adam"``.
      w0s: (P, p+1) the initial parameters of each pair.
      x, y: (n,) data.
      lrs: (P,) the learning rate of each pair (JAX's default float).
      orders: (S, E, n) int batch orders, one per seed (SGD, Adam); None for GD (S = 1).
      model, loss: functions, as in `functional_fit.fit`.
      steps: GD's number of steps.
      batch_size: B of SGD and Adam.
      return_paths: also return every run's path.

    Returns:
      (params (S, P, p+1), loss (S, P), diverged (S, P) bool, paths (S, P, steps+1, p+1) or None).
    """
    one = functools.partial(
        _one_fit, x=x, y=y, optimizer=optimizer, model=model, loss=loss,
        length=steps, batch_size=batch_size, return_paths=return_paths,
    )
    # Inner: the pairs share one order, so each step's batch x[i], y[i] is gathered once.
    pairs = jax.vmap(one, in_axes=(0, 0, None))  # (P, ...) for one order
    if orders is None:
        out = pairs(w0s, lrs, None)
        return jax.tree.map(lambda a: a[None], out)  # (1, P, ...)
    return jax.vmap(pairs, in_axes=(None, None, 0))(w0s, lrs, orders)  # (S, P, ...)


sweep_jit = jax.jit(
    sweep_scan,
    static_argnames=("optimizer", "model", "loss", "steps", "batch_size", "return_paths"),
)


# --------------------------------------------------------------------------- checked entry point


def _check_lrs(lrs) -> np.ndarray:
    lrs = _checks.vector("lrs", np.atleast_1d(np.asarray(lrs, dtype=np.float64)))
    if np.any(lrs <= 0):
        bad = int(np.flatnonzero(lrs <= 0)[0])
        raise InputError(f"lrs must all be positive, got {lrs[bad]} at index {bad}")
    return lrs


def _check_w0s(w0s, x, y, model) -> np.ndarray:
    """w0s as a numpy array (I, p+1); a single (p+1,) vector gives I = 1."""
    if hasattr(w0s, "detach"):  # a torch tensor
        w0s = w0s.detach().cpu().numpy()
    arr = np.asarray(w0s)
    if arr.ndim == 1:
        arr = arr[None]  # (1, p+1)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(f"w0s must have shape (p+1,) or (I, p+1), got {np.shape(w0s)}")
    for i, row in enumerate(arr):  # the single fit's checks, row by row (I is small)
        try:
            _fit.check_inputs(row, x, y, model, 1.0)
        except InputError as exc:
            raise InputError(f"w0s[{i}]: {exc}") from None
    check_array_dtype("w0s", arr)
    return arr


def _check_seeds(optimizer, seeds) -> np.ndarray | None:
    if optimizer == "gd":
        if seeds is not None:
            raise InputError("seeds: gradient descent uses the whole data every step, no batch "
                             "order; pass seeds=None")
        return None
    seeds = [0] if seeds is None else list(np.atleast_1d(np.asarray(seeds)))
    if not seeds:
        raise InputError("seeds must hold at least one seed")
    return np.array([_checks.nonnegative_int("seeds", s) for s in seeds], dtype=np.int64)


def _check_length(optimizer, steps, epochs, batch_size):
    """(steps or epochs, batch_size) for `optimizer`; InputError naming the misplaced one."""
    if optimizer == "gd":
        if epochs is not None:
            raise InputError("epochs: gradient descent counts steps; pass steps, not epochs")
        return _checks.positive_int("steps", 100 if steps is None else steps), None
    if steps is not None:
        raise InputError(f"steps: {optimizer} counts epochs (passes over the data); pass "
                         "epochs, not steps")
    epochs = _checks.positive_int("epochs", 100 if epochs is None else epochs)
    return epochs, _checks.positive_int("batch_size", batch_size)


def _mesh(devices):
    """A 1-D mesh named "runs" over `devices` (all of JAX's by default), or None for one."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise InputError("devices must name at least one device")
    if len(devices) == 1:
        return None
    return jax.sharding.Mesh(np.array(devices), ("runs",))


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """`a` padded along axis 0 to `size` rows with copies of its last row (valid settings)."""
    pad = size - a.shape[0]
    return a if pad == 0 else np.concatenate([a, np.repeat(a[-1:], pad, axis=0)])


def sweep(
    optimizer: str,
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
    model_grad: str = "jacobian",
) -> SweepResult:
    """Fit every combination of learning rate, start and batch order, vmapped and compiled.

    Args:
      optimizer: ``"gd"`` (`fit.gradient_descent`), ``"sgd"`` (`fit.stochastic_gradient_descent`)
        or ``"adam"`` (`fit.adam_sgd`); the step sizes are theirs.
      w0s: (p+1,) one start, or (I, p+1) several; their dtype is the parameters' dtype.
      x, y: (n,) data.
      lrs: (L,) learning rates, > 0 (a scalar is one).
      model, loss: as in `functional_fit.fit` (any model and loss of the toolkit).
      steps: GD's number of steps (default 100). Not for SGD and Adam.
      epochs: SGD's and Adam's passes over the data (default 100). Not for GD.
      batch_size: B of SGD and Adam (default 10); ignored by GD.
      seeds: (S,) seeds of the batch orders, ``batch_order(n, epochs, seed)`` (default [0]).
        Must be None for GD.
      return_paths: also return the paths, (R, steps+1, p+1); memory grows with R * steps.
      chunk_size: run at most this many (w0, lr) pairs per compiled call (rounded up to a
        multiple of the device count), all chunks of one shape so it compiles once; None runs
        all pairs in one call. For progress reports; one call is fastest.
      progress: called with the number of runs finished after each chunk (a progress bar).
      devices: the devices to split the runs across (default all of `jax.devices()`).
      model_grad: ``"jacobian"`` differentiates the model through `jacobian_vjp` (the same
        values, 3-4x faster on the CPU for the degree-12 model); ``"autodiff"`` vmaps the
        single fit's own graph unchanged.

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
    _checks.choice("optimizer", optimizer, OPTIMIZERS)
    _checks.choice("model_grad", model_grad, MODEL_GRADS)
    x, y = _checks.data(x, y)
    for name, arr in (("x", x), ("y", y)):
        check_array_dtype(name, arr)
    w0s = _check_w0s(w0s, x, y, model)
    lrs = _check_lrs(lrs)
    length, batch_size = _check_length(optimizer, steps, epochs, batch_size)
    seeds = _check_seeds(optimizer, seeds)
    mesh = _mesh(devices)
    n_dev = 1 if mesh is None else mesh.size

    # The pairs (w0, lr): start-major, learning rate fastest.
    n_init, n_lr = w0s.shape[0], lrs.shape[0]
    pair_w0 = np.repeat(w0s, n_lr, axis=0)  # (P, p+1), P = I * L
    pair_lr = np.tile(lrs, n_init)  # (P,)
    n_pairs = n_init * n_lr
    chunk = n_pairs if chunk_size is None else min(_checks.positive_int("chunk_size", chunk_size), n_pairs)
    chunk = math.ceil(chunk / n_dev) * n_dev  # every device gets the same share
    n_chunks = math.ceil(n_pairs / chunk)
    pair_w0 = _pad(pair_w0, n_chunks * chunk)
    pair_lr = _pad(pair_lr, n_chunks * chunk)

    xj, yj = jnp.asarray(x), jnp.asarray(y)
    orders = None
    if seeds is not None:
        n = x.shape[0]
        orders = jnp.asarray(np.stack([_data.batch_order(n, length, int(s)) for s in seeds]))
    lr_dtype = jnp.result_type(float)  # as fit._float: torch keeps Python floats in double
    shard = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    kwargs = dict(
        optimizer=optimizer, loss=loss, return_paths=return_paths,
        model=jacobian_vjp(model) if model_grad == "jacobian" else model,
        steps=length if optimizer == "gd" else None,
        batch_size=None if optimizer == "gd" else batch_size,
    )
    n_seeds = 1 if seeds is None else seeds.shape[0]
    outs = []
    for c in range(n_chunks):
        part = slice(c * chunk, (c + 1) * chunk)
        w0c = jnp.asarray(pair_w0[part])  # (chunk, p+1)
        lrc = jnp.asarray(pair_lr[part], dtype=lr_dtype)  # (chunk,)
        if shard is not None:
            w0c, lrc = jax.device_put(w0c, shard), jax.device_put(lrc, shard)
        out = sweep_jit(w0s=w0c, x=xj, y=yj, lrs=lrc, orders=orders, **kwargs)
        outs.append(jax.block_until_ready(out))
        if progress is not None:
            progress(n_seeds * min(chunk, n_pairs - c * chunk))

    def gather(i):  # concatenate the chunks along the pair axis, trim, flatten to (R, ...)
        parts = [o[i] for o in outs]
        a = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
        a = a[:, :n_pairs]  # (S, P, ...)
        return a.reshape((n_seeds * n_pairs,) + a.shape[2:])

    return SweepResult(
        lr=np.tile(lrs, n_seeds * n_init),
        seed=np.repeat(np.full(1, NO_SEED) if seeds is None else seeds, n_pairs),
        init=np.tile(np.repeat(np.arange(n_init), n_lr), n_seeds),
        params=gather(0),
        loss=gather(1),
        diverged=gather(2),
        paths=gather(3) if return_paths else None,
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
    return SweepResult(*(None if a is None else np.asarray(a) for a in result))


def best(result: SweepResult) -> int | None:
    """Index of the run with the lowest final loss among those that did not diverge, or None."""
    loss = np.asarray(result.loss, dtype=np.float64)
    ok = ~np.asarray(result.diverged)
    if not ok.any():
        return None
    return int(np.flatnonzero(ok)[np.argmin(loss[ok])])
