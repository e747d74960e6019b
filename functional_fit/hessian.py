"""The Hessian of a network's loss, never formed: top eigenvalues, trace and spectral density.

Every function here sees the Hessian only through Hessian-vector products, ``H v`` as the
forward-mode derivative of the gradient (``jax.jvp`` of ``jax.grad``): one pass over the data
costs about two gradients, and memory stays that of a gradient. The data may be arrays or a
`functional_fit.streams.Stream` (passed as x, with y None): the loss is the mean over every
point, so each product is the sum of the batches' products weighted by their sizes, each batch
read once per product; a distributed stream's sums are added across processes.

- `eigenvalues`: the top k eigenvalues and eigenvectors, by Lanczos with full
  reorthogonalization (Golub and Van Loan 10.1), run until the top k Ritz pairs' residuals are
  below a tolerance;
- `trace`: Hutchinson's estimator with Rademacher vectors, with its standard error;
- `density`: the spectral density by stochastic Lanczos quadrature (Ubaru, Chen and Saad 2017),
  as PyHessian computes it (Yao et al. 2020): nodes and weights of each run, and their
  Gaussian-smoothed density on a grid.

Each takes ``layers=True`` (every parameter leaf) or a list of names, each a leaf's
(``"conv.weight"``) or a group's (``"conv"``: the leaves under that key), and then works on
each one's block of the Hessian (the other parameters held fixed), returning a dict by name.
A model with state (``model(params, state, x) -> (y_hat, new_state)``, BatchNorm) takes
``state=``, held fixed.

The products are computed in the parameters' dtype; Lanczos' recurrences, the batches' sums and
the Ritz values are float64 numpy (vectors of the parameters' size, as a gradient).

Random vectors come from numpy's ``default_rng(seed)``, so a seed gives the same numbers on any
machine: Lanczos starts from ``rng.standard_normal(p)``; Hutchinson's vectors are
``rng.choice([-1.0, 1.0], size=(samples, p))``; run r of `density` starts from the Rademacher
vector ``default_rng((seed, r)).choice([-1.0, 1.0], size=p)``, as PyHessian's runs do (p the
parameters, or the block's, in ``jax.flatten_util.ravel_pytree`` order).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError
from functional_fit.streams import Stream, process_sum, stream_of


class Eigen(NamedTuple):
    """What `eigenvalues` returns."""

    values: np.ndarray  # (k,) the largest eigenvalues, largest first
    vectors: list  # k pytrees shaped like params, each of unit norm
    residuals: np.ndarray  # (k,) ||H v - lambda v|| of each pair (Lanczos' estimate)
    iterations: int  # Hessian-vector products made


class Trace(NamedTuple):
    """What `trace` returns."""

    estimate: float  # the mean of v^T H v over the samples
    stderr: float  # the samples' standard deviation / sqrt(samples) (inf for one sample)
    samples: np.ndarray  # (samples,) each v^T H v


class Density(NamedTuple):
    """What `density` returns."""

    nodes: np.ndarray  # (runs, m) the Ritz values of each run
    weights: np.ndarray  # (runs, m) their weights (squared first components), each run's sum 1
    grid: np.ndarray  # (points,) where the density is drawn
    density: np.ndarray  # (points,) the smoothed density, integrating to 1 over the grid


# --------------------------------------------------------------------------- products


class _Operator(NamedTuple):
    """``matvec(v (p,)) -> H v (p,)`` over the whole data, on one block of the parameters."""

    matvec: object
    size: int
    dtype: object
    unravel: object  # a block's vector (p,) -> the parameters' pytree (zeros elsewhere)


def _batches(x, y):
    stream = stream_of(x, y)
    if stream is not None:
        return stream
    if y is None:
        raise InputError("y is missing: pass targets y with array x, or a Stream as x with y "
                         "None")
    x, y = _checks.points(x, y, ndims=None)
    return Stream(x, y)


def _check_functions(model, loss) -> None:
    for name, fn in (("model", model), ("loss", loss)):
        if not callable(fn):
            raise InputError(f"{name} must be a function, got {type(fn).__name__}")


def _batch_hvp(w, v, state, xb, yb, *, model, loss, unravel, lo,
               hi):  # 10 arguments: the traced inputs, then the static ones jit keys on
    """H v of one batch's mean loss: w (p,) the flat parameters, v (hi - lo,) a vector on
    their block [lo, hi); returns (hi - lo,)."""

    def f(w):
        p = unravel(w)
        if state is None:
            return loss(model(p, xb), yb)
        out = model(p, state, xb)
        if not isinstance(out, tuple) or len(out) != 2:
            raise InputError("model: with state, the model must return (y_hat, new_state)")
        return loss(out[0], yb)

    full = jnp.zeros_like(w).at[lo:hi].set(v)
    return jax.jvp(jax.grad(f), (w,), (full,))[1][lo:hi]


#: `_batch_hvp` compiled once per model, loss, parameter layout, block and batch shape: the
#: operators of `eigenvalues`, `trace`, `density` and `surface.hessian_plane` on the same model
#: and loss share it within a process.
_batch_hvp_jit = jax.jit(_batch_hvp, static_argnames=("model", "loss", "unravel", "lo", "hi"))


def _product(model, loss, unravel, lo, hi):
    """``hvp(w, v, state, xb, yb)``: `_batch_hvp` compiled, shared where `model` and `loss`
    are hashable (functions are), else compiled for this operator alone (an equinox module
    holding arrays)."""
    statics = dict(model=model, loss=loss, unravel=unravel, lo=lo, hi=hi)
    try:
        hash(tuple(statics.values()))
    except TypeError:
        return jax.jit(functools.partial(_batch_hvp, **statics))
    return functools.partial(_batch_hvp_jit, **statics)


def operator(model, loss, x, y, params, *, state=None, leaf: str | None = None) -> _Operator:
    """The Hessian of the loss over the data as a product ``matvec(v) -> H v``, on the flat
    parameters (`jax.flatten_util.ravel_pytree` order), or on the block of one `leaf` (a
    leaf's or a group's name, as `eigenvalues`' `layers` takes them).

    The product is compiled once per batch shape, and found again by the next operator on the
    same model, loss and parameter layout (functions, not modules holding arrays); floating
    batches are cast to the parameters' dtype, and the batches' products summed in float64,
    each weighted by its size.
    """
    from jax.flatten_util import ravel_pytree

    _check_functions(model, loss)
    _check_params(params)
    w0, unravel = ravel_pytree(params)
    lo, hi = _block(params, leaf)
    data = _batches(x, y)

    hvp = _product(model, loss, unravel, lo, hi)

    def cast(arr):
        return jnp.asarray(arr, w0.dtype if np.issubdtype(arr.dtype, np.floating) else None)

    def matvec(v):
        v = jnp.asarray(v, w0.dtype)
        total, count = np.zeros(hi - lo, np.float64), 0
        for xb, yb in data.batches():
            total += np.asarray(hvp(w0, v, state, cast(xb), cast(yb)), np.float64) * len(xb)
            count += len(xb)
        if data.distributed:
            summed = process_sum(np.concatenate([total, [float(count)]]))
            total, count = summed[:-1], summed[-1]
        return total / count

    def block_unravel(v):
        return unravel(jnp.zeros_like(w0).at[lo:hi].set(jnp.asarray(v, w0.dtype)))

    return _Operator(matvec, hi - lo, w0.dtype, block_unravel)


def _check_params(params) -> None:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise InputError("params has no array: pass the model's parameter pytree")
    for name, leaf in zip(leaf_names(params), leaves):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise InputError(f"params: leaf {name!r} is not floating-point "
                             f"({jnp.result_type(leaf)}); the Hessian is of floating parameters")


def leaf_names(params) -> list[str]:
    """Each leaf's name: its dict keys joined by '.' (``"conv1.weight"``), or its index."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                     for k in path) or "params" for path, _ in flat]


def _block(params, leaf) -> tuple[int, int]:
    """The slice of the flat parameters that `leaf` holds (all of them for None): a leaf's
    name, or a group's (a key above leaves, ``"conv"`` for ``"conv.weight"`` and
    ``"conv.bias"``, whose leaves are adjacent in `ravel_pytree`'s order)."""
    sizes = [int(np.size(a)) for a in jax.tree.leaves(params)]
    if leaf is None:
        return 0, sum(sizes)
    names = leaf_names(params)
    held = [i for i, n in enumerate(names) if n == leaf or n.startswith(leaf + ".")]
    if not held:
        raise InputError(f"layers: no parameter or group named {leaf!r}; the names are "
                         f"{', '.join(names)}")
    if held != list(range(held[0], held[-1] + 1)):
        raise InputError(f"layers: the leaves of {leaf!r} are not adjacent in the parameters' "
                         f"order; name its leaves one by one")
    return sum(sizes[: held[0]]), sum(sizes[: held[-1] + 1])


def _layer_names(params, layers) -> list[str] | None:
    """None (the whole Hessian), or the leaves asked for by `layers` (True: every leaf)."""
    if layers is False or layers is None:
        return None
    if layers is True:
        return leaf_names(params)
    if (isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers
            or not all(isinstance(n, str) for n in layers)):
        raise InputError(f"layers must be True, False or a non-empty list of leaf or group "
                         f"names, got {layers!r}")
    return list(layers)


# --------------------------------------------------------------------------- Lanczos


def lanczos(matvec, start, iterations: int, *, k: int | None = None, tol: float = 0.0,
            rng: np.random.Generator | None = None):
    """Lanczos with full reorthogonalization from `start` (p,).

    Args:
      matvec: ``matvec(v (p,)) -> H v (p,)``, H symmetric.
      start: (p,) nonzero start vector.
      iterations: products at most (at most p); the basis, (iterations, p) float64, is
        allocated once.
      k, tol: stop early once the largest k Ritz values' residuals are below
        ``tol * max(1, |theta|)`` (checked every few products, and when the space closes).
      rng: when the Krylov space closes (an invariant subspace found: H's rank, a repeated
        eigenvalue), go on from a ``rng.standard_normal(p)`` vector orthogonal to the basis,
        with a zero off-diagonal in T; None: stop there.

    Returns:
      (alpha (m,), beta (m-1,), basis (m, p), rest): T = tridiag(beta, alpha, beta) =
      Q^T H Q with the orthonormal rows of `basis` as Q^T, and `rest` the norm of the part of
      H q_m outside the basis (0 when the Krylov space closed): the Ritz pair (theta_i, Q^T
      s_i) has residual ||H x - theta x|| = rest * |s_i[-1]|.
    """
    q = np.asarray(start, np.float64)
    basis = np.empty((iterations, q.size))  # (iterations, p): the only copy of the basis
    basis[0] = q / np.linalg.norm(q)
    alpha, beta, b = [], [], 0.0
    for j in range(iterations):
        w = np.asarray(matvec(basis[j]), np.float64)
        alpha.append(float(basis[j] @ w))
        Q = basis[: j + 1]  # (j+1, p), a view
        for _ in range(2):  # twice is enough (Giraud et al. 2005)
            w = w - Q.T @ (Q @ w)
        b = float(np.linalg.norm(w))
        scale = max(float(np.max(np.abs(alpha))), max(beta, default=0.0))  # about ||T||
        closed = b <= 1e-12 * scale
        if closed:
            b, w = 0.0, None if rng is None or j + 1 == iterations else _fresh(rng, Q)
        done = j + 1 == iterations or (closed and w is None)
        if (not done and k is not None and tol > 0 and (j + 1) >= k
                and (closed or (j + 1) % 4 == 0)):
            theta, s = _ritz(alpha, beta)
            res = b * np.abs(s[-1, -k:])
            done = bool(np.all(res <= tol * np.maximum(1.0, np.abs(theta[-k:]))))
        if done:
            break
        beta.append(b)
        basis[j + 1] = w if closed else w / b
    return np.array(alpha), np.array(beta), basis[: len(alpha)], b


def _fresh(rng: np.random.Generator, Q: np.ndarray) -> np.ndarray | None:
    """A unit vector orthogonal to the rows of `Q` (m, p), or None when they span R^p."""
    w = rng.standard_normal(Q.shape[1])
    for _ in range(2):
        w = w - Q.T @ (Q @ w)
    norm = float(np.linalg.norm(w))
    return w / norm if norm > 1e-8 * np.sqrt(Q.shape[1]) else None


def _ritz(alpha, beta):
    """Eigenvalues (ascending) and eigenvectors of the tridiagonal T."""
    m = len(alpha)
    t = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    return np.linalg.eigh(t)


def eigenvalues(model, loss, x, y, params, k: int = 1, *, state=None, layers=False,
                iterations: int | None = None, tol: float | None = None,
                seed: int = 0):  # 11 arguments: the data, the model and Lanczos' settings
    """The top `k` eigenvalues of the loss's Hessian and their eigenvectors, by Lanczos.

    "Top" is the largest algebraic values: PyHessian's power iteration finds the largest in
    magnitude, the same at a network near a minimum, whose largest eigenvalues are positive and
    dominate; at a saddle, the most negative ones are those of the negated loss. One start
    vector sees one copy of a repeated eigenvalue: an eigenvalue of multiplicity two appears
    once among the top k (generic networks' nonzero eigenvalues are distinct).

    Args:
      model: ``model(params, x) -> y_hat``; with `state`, ``model(params, state, x) ->
        (y_hat, new_state)``.
      loss: ``loss(y_hat, y) -> ()``, a mean over the points.
      x, y: (n, ...) arrays; or a `Stream` as x, with y None.
      params: the parameter pytree where the Hessian is taken.
      k: how many, at most the number of parameters.
      state: the model's state, held fixed (BatchNorm's running statistics).
      layers: True (every leaf), or a list of names of leaves (``"conv.weight"``) or groups
        (``"conv"``): each one's block of the Hessian; a dict by name is returned.
      iterations: Hessian-vector products at most, at least k (default min(p, max(4k + 40,
        60))). When the Krylov space closes (a Hessian of low rank), Lanczos goes on from a
        fresh random vector orthogonal to it, so the top k are found whatever the rank.
      tol: the Ritz residuals' tolerance, relative to max(1, |eigenvalue|); default
        max(1e-10, 100 * eps) of the parameters' dtype (1e-10 in float64, 1.2e-5 in float32).
      seed: the start vector's seed (numpy ``default_rng(seed).standard_normal(p)``).

    Returns:
      `Eigen(values (k,), vectors [k pytrees], residuals (k,), iterations)`, or a dict of them
      by leaf name with `layers`.
    """
    k = _checks.positive_int("k", k)
    seed = _checks.nonnegative_int("seed", seed)
    if iterations is not None and _checks.positive_int("iterations", iterations) < k:
        raise InputError(f"iterations must be at least k ({k}), got {iterations}")
    if tol is not None:
        tol = _checks.positive_float("tol", tol)
    ops = _operators(model, loss, x, y, params, state, layers)
    for name, op in ops.items():
        if k > op.size:
            what = "parameters" if name is None else f"parameters in {name!r}"
            raise InputError(f"k must be at most the number of {what} ({op.size}), got {k}")
    out = {name: _eigen(op, k, iterations, tol, seed) for name, op in ops.items()}
    return out[None] if None in out else out


def _operators(model, loss, x, y, params, state, layers) -> dict:
    """{None: the whole Hessian's operator}, or {name: its block's} for each of `layers`."""
    names = _layer_names(params, layers)
    if names is None:
        return {None: operator(model, loss, x, y, params, state=state)}
    return {n: operator(model, loss, x, y, params, state=state, leaf=n) for n in names}


def _eigen(op: _Operator, k, iterations, tol, seed) -> Eigen:
    """`eigenvalues` of one operator."""
    if tol is None:
        tol = max(1e-10, 100 * float(jnp.finfo(op.dtype).eps))
    if iterations is None:
        iterations = max(4 * k + 40, 60)
    iterations = min(iterations, op.size)
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(op.size)
    alpha, beta, basis, last = lanczos(op.matvec, start, iterations, k=k, tol=tol, rng=rng)
    theta, s = _ritz(alpha, beta)
    m = len(alpha)
    top = np.arange(m - 1, m - 1 - min(k, m), -1)  # largest first
    vectors = [s[:, i] @ basis for i in top]  # (p,) each, unit norm
    residuals = np.array([abs(last * s[-1, i]) for i in top])
    values = theta[top]
    return Eigen(values, [op.unravel(v) for v in vectors], residuals, m)


def trace(model, loss, x, y, params, samples: int = 100, seed: int = 0, *, state=None,
          layers=False):  # 9 arguments: the data, the model and the estimator's settings
    """Hutchinson's estimate of the Hessian's trace, E[v^T H v] over Rademacher vectors v.

    Args:
      model, loss, x, y, params, state, layers: as `eigenvalues`.
      samples: how many vectors (each one pass over the data).
      seed: numpy ``default_rng(seed).choice([-1.0, 1.0], size=(samples, p))``.

    Returns:
      `Trace(estimate, stderr, samples (samples,))`, or a dict of them by leaf name.
    """
    samples = _checks.positive_int("samples", samples)
    seed = _checks.nonnegative_int("seed", seed)
    ops = _operators(model, loss, x, y, params, state, layers)
    out = {}
    for name, op in ops.items():
        vs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(samples, op.size))
        each = np.array([v @ op.matvec(v) for v in vs])
        err = float(np.std(each, ddof=1) / np.sqrt(samples)) if samples > 1 else np.inf
        out[name] = Trace(float(np.mean(each)), err, each)
    return out[None] if None in out else out


def density(model, loss, x, y, params, *, iterations: int = 100, runs: int = 1,
            seed: int = 0, grid=None, sigma: float | None = None, state=None,
            layers=False):  # 12 arguments: the data, the model and SLQ's settings
    """The Hessian's spectral density by stochastic Lanczos quadrature, as PyHessian does.

    Each run starts Lanczos from a Rademacher vector v (``default_rng((seed, r))``); the Ritz
    values theta_i of its `iterations` steps are the nodes, and the squared first components
    of T's eigenvectors the weights, so that sum_i w_i f(theta_i) approximates
    v^T f(H) v / v^T v (exactly for polynomials of degree below 2m). The density on `grid` is
    the runs' mean of sum_i w_i N(t; theta_i, sigma^2), normalized to integrate to 1.

    Args:
      model, loss, x, y, params, state, layers: as `eigenvalues`.
      iterations: Lanczos steps per run (at most p).
      runs: how many start vectors.
      seed: the runs' seed.
      grid: (points,) increasing, where to draw the density; default PyHessian's
        (``density_plot.density_generate``): 10000 points from the runs' mean smallest node
        - 0.01 to their mean largest + 0.01.
      sigma: the Gaussian's standard deviation; default PyHessian's, sqrt(1e-5 * max(1,
        grid's span)) (its ``sigma_squared=1e-5`` scaled by the span).

    Returns:
      `Density(nodes (runs, m), weights (runs, m), grid (points,), density (points,))`, or a
      dict of them by leaf name.
    """
    iterations = _checks.positive_int("iterations", iterations)
    runs = _checks.positive_int("runs", runs)
    seed = _checks.nonnegative_int("seed", seed)
    if sigma is not None:
        sigma = _checks.positive_float("sigma", sigma)
    if grid is not None:
        grid = _checks.vector("grid", grid, np.float64)
        if len(grid) < 2 or np.any(np.diff(grid) <= 0):
            raise InputError(f"grid must be increasing, of 2 points or more, got {len(grid)} "
                             f"points")
    ops = _operators(model, loss, x, y, params, state, layers)
    out = {name: _density(op, iterations, runs, seed, grid, sigma) for name, op in ops.items()}
    return out[None] if None in out else out


def _density(op: _Operator, iterations, runs, seed, grid, sigma) -> Density:
    nodes, weights = [], []
    m = min(iterations, op.size)
    for r in range(runs):
        start = np.random.default_rng((seed, r)).choice([-1.0, 1.0], size=op.size)
        alpha, beta, _, _ = lanczos(op.matvec, start, m)
        theta, s = _ritz(alpha, beta)
        pad = m - len(theta)  # a closed Krylov space: fewer nodes; padded with zero weights
        nodes.append(np.concatenate([theta, np.full(pad, theta[-1])]))
        weights.append(np.concatenate([s[0] ** 2, np.zeros(pad)]))
    nodes, weights = np.array(nodes), np.array(weights)  # (runs, m)
    lo, hi = np.mean(nodes.min(axis=1)) - 0.01, np.mean(nodes.max(axis=1)) + 0.01
    sigma = np.sqrt(1e-5 * max(1.0, hi - lo)) if sigma is None else sigma
    grid = np.linspace(lo, hi, 10000) if grid is None else grid
    z = (grid[None, None, :] - nodes[:, :, None]) / sigma  # (runs, m, points)
    dens = np.sum(weights[:, :, None] * np.exp(-0.5 * z**2), axis=(0, 1))
    dens = dens / (runs * sigma * np.sqrt(2 * np.pi))
    area = np.trapezoid(dens, grid)
    return Density(nodes, weights, grid, dens / area if area > 0 else dens)


__all__ = ["Density", "Eigen", "Trace", "density", "eigenvalues", "lanczos", "leaf_names",
           "operator", "trace"]
