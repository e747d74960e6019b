"""torch.optim.LBFGS as an optax transformation: one ``update`` is one ``opt.step(closure)``.

torch's L-BFGS evaluates the loss many times in one step: up to ``max_iter`` iterations, each
a quasi-Newton direction from the last ``history_size`` steps and gradient changes, a fixed
step or a strong-Wolfe line search, and its own stopping tests. Here the closure is optax's
``value_fn`` (the loss as a function of the params, as `optax.lbfgs` takes it): ``update``
re-evaluates ``jax.value_and_grad(value_fn)`` wherever torch calls the closure, and the whole
step is one `jax.lax.while_loop`, traceable under `jax.jit`.

As torch does, the parameters are one flat vector (`jax.flatten_util.ravel_pytree`, leaves
in the pytree's order, as ``model.parameters()`` in their order) and the state is global.
`scale_by_torch_lbfgs` returns the parameters' change over the step, new_params - params.

The line search is torch's `_strong_wolfe` and `_cubic_interpolate` (ported by torch from
minFunc's lswolfe.lua and polyinterp.lua) line for line, Python's ``min``/``max`` included
(`pymin`, `pymax`: they keep the first argument on a tie or a NaN, where `jnp.minimum`
propagates the NaN). As in torch it uses c1 = 1e-4, c2 = 0.9 and a bracket tolerance of 1e-9
whatever ``tolerance_change`` is (torch's LBFGS does not pass its own), and at most
``max_eval`` minus the evaluations already made in the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from functional_fit.checks import InputError

#: torch's `_strong_wolfe` defaults, which its LBFGS.step does not override.
C1, C2, BRACKET_TOLERANCE = 1e-4, 0.9, 1e-9

#: torch adds a pair (y, s) to the history only when y.s exceeds this.
CURVATURE_MIN = 1e-10


class LBFGSState(NamedTuple):
    """State of `scale_by_torch_lbfgs`: torch's ``opt.state[first_param]``, key for key.

    n is the number of parameters (all leaves flattened), H the ``history_size``. torch keeps
    the history as lists of at most H vectors, oldest first, and drops the oldest when full;
    here they are (H, n) arrays whose first ``num_old`` rows are torch's lists, in torch's
    order (``old_dirs[:num_old] == torch.stack(state["old_dirs"])``), the rest unused.
    torch's ``al`` is scratch space of the two-loop recursion and is not kept. Before the
    first iteration torch has no d, t, ... keys; here they are zeros and n_iter is 0.
    """

    d: jax.Array  # shape=(n,), the last search direction
    t: jax.Array  # shape=(), the last step length along d
    old_dirs: jax.Array  # shape=(H, n), gradient changes y, rows [0, num_old) used
    old_stps: jax.Array  # shape=(H, n), steps s = d * t, rows [0, num_old) used
    ro: jax.Array  # shape=(H,), 1 / (y . s) of each pair, entries [0, num_old) used
    num_old: jax.Array  # shape=() int32, len(torch's old_dirs): pairs held, at most H
    H_diag: jax.Array  # shape=(), the initial inverse Hessian's scale, y.s / y.y
    prev_flat_grad: jax.Array  # shape=(n,), the gradient at the last iteration's start
    prev_loss: jax.Array  # shape=(), the loss there
    n_iter: jax.Array  # shape=() int32, iterations over all steps so far
    func_evals: jax.Array  # shape=() int32, loss evaluations over all steps so far
    count: jax.Array  # shape=() int32, updates (torch steps) so far: a schedule's lr reads it


class _Point(NamedTuple):
    """A point on the search line: step t, loss f, flat gradient g, slope gtd = g . d."""

    t: jax.Array  # shape=() (or (2,) for a bracket)
    f: jax.Array  # shape=() (or (2,))
    g: jax.Array  # shape=(n,) (or (2, n))
    gtd: jax.Array  # shape=() (or (2,))


def pymax(a, b):
    """Python's ``max(a, b)``: b only where b > a, so a on a tie or a NaN."""
    return jnp.where(b > a, b, a)


def pymin(a, b):
    """Python's ``min(a, b)``: b only where b < a, so a on a tie or a NaN."""
    return jnp.where(b < a, b, a)


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's `_cubic_interpolate`: the minimiser of the cubic through two points with
    their values and slopes, clamped to `bounds` (default: between x1 and x2); the middle of
    the bounds where the cubic has no minimum. All arguments and the result are () arrays."""
    if bounds is None:
        first = x1 <= x2
        lo, hi = jnp.where(first, x1, x2), jnp.where(first, x2, x1)
    else:
        lo, hi = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    real = d2_square >= 0
    d2 = jnp.sqrt(jnp.where(real, d2_square, 0))
    min_pos = jnp.where(x1 <= x2,
                        x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)),
                        x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)))
    return jnp.where(real, pymin(pymax(min_pos, lo), hi), (lo + hi) / 2.0)


def _bracket(obj, t, f, g, gtd, max_ls):
    """torch's first phase: step out until an interval holds a strong-Wolfe point.

    Returns (bracket, done, ls_iter): bracket a _Point of (2,) entries (a point found
    outright is both entries, as torch's one-entry list reads), done whether it satisfies the
    strong Wolfe conditions.
    """
    f_new, g_new, gtd_new = obj(t)
    start = (_Point(jnp.zeros_like(t), f, g, gtd), _Point(t, f_new, g_new, gtd_new),
             jnp.int32(0), jnp.int32(0))  # prev, new, ls_iter, status (0 going, 1 bracket, 2 done)

    def going(c):
        return (c[3] == 0) & (c[2] < max_ls)

    def body(c):
        prev, new, ls_iter, _ = c
        too_high = (new.f > f + C1 * new.t * gtd) | ((ls_iter > 1) & (new.f >= prev.f))
        status = jnp.where(too_high, 1, jnp.where(jnp.abs(new.gtd) <= -C2 * gtd, 2,
                                                jnp.where(new.gtd >= 0, 1, 0))).astype(jnp.int32)

        def step():
            bounds = (new.t + 0.01 * (new.t - prev.t), new.t * 10)
            t_next = cubic_interpolate(prev.t, prev.f, prev.gtd, new.t, new.f, new.gtd, bounds)
            return new, _Point(t_next, *obj(t_next)), ls_iter + 1

        prev, new, ls_iter = lax.cond(status == 0, step, lambda: (prev, new, ls_iter))
        return prev, new, ls_iter, status

    prev, new, ls_iter, status = lax.while_loop(going, body, start)
    # status 0: max_ls evaluations without a bracket; torch takes [0, t] then
    first = jax.tree.map(lambda a, b, c: jnp.where(status == 1, a, jnp.where(status == 2, b, c)),
                         prev, new, _Point(jnp.zeros_like(t), f, g, gtd))
    bracket = jax.tree.map(lambda a, b: jnp.stack([a, b]), first, new)
    return bracket, status == 2, ls_iter


def _zoom_step(obj, f, gtd, c):
    """One iteration of torch's zoom phase on the carry (bracket, low, insuf, done, ls_iter)."""
    b, low, insuf, done, ls_iter = c
    high = 1 - low
    t = cubic_interpolate(b.t[0], b.f[0], b.gtd[0], b.t[1], b.f[1], b.gtd[1])
    b_max, b_min = pymax(b.t[0], b.t[1]), pymin(b.t[0], b.t[1])
    eps = 0.1 * (b_max - b_min)
    near = pymin(b_max - t, t - b_min) < eps  # close to an end: insufficient progress
    at_end = insuf | (t >= b_max) | (t <= b_min)
    moved = jnp.where(jnp.abs(t - b_max) < jnp.abs(t - b_min), b_max - eps, b_min + eps)
    t = jnp.where(near & at_end, moved, t)
    insuf = near & ~at_end
    new = _Point(t, *obj(t))

    def put(bracket, i, point):
        return jax.tree.map(lambda a, v: a.at[i].set(v), bracket, point)

    worse = (new.f > f + C1 * t * gtd) | (new.f >= b.f[low])
    wolfe = jnp.abs(new.gtd) <= -C2 * gtd
    # new high: the new point; else (unless Wolfe) the old low if the slope says so, and the
    # new point becomes the low
    swap = ~wolfe & (new.gtd * (b.t[high] - b.t[low]) >= 0)
    b_low = jax.tree.map(lambda a: a[low], b)
    kept = put(jax.lax.cond(swap, lambda: put(b, high, b_low), lambda: b), low, new)
    raised = put(b, high, new)
    b = jax.tree.map(lambda a, k: jnp.where(worse, a, k), raised, kept)
    low = jnp.where(worse, jnp.where(b.f[0] <= b.f[1], 0, 1).astype(jnp.int32), low)
    return b, low, insuf, done | (~worse & wolfe), ls_iter + 1


def strong_wolfe(obj: Callable, t, d, f, g, gtd, max_ls):
    """torch's `_strong_wolfe` (c1 = 1e-4, c2 = 0.9, tolerance_change = 1e-9) along d.

    Args:
      obj: ``obj(t) -> (loss, flat gradient, gradient . d)`` at x + t * d.
      t: () the first step tried; d: (n,) the direction; f: () the loss and g: (n,) the
        gradient at x; gtd: () g . d, negative; max_ls: () int, the evaluations allowed.

    Returns:
      (f_new, g_new, t, ls_func_evals): the loss (), gradient (n,) and step () chosen, and the
      () int32 number of evaluations made.
    """
    d_norm = jnp.max(jnp.abs(d))
    bracket, done, ls_iter = _bracket(obj, t, f, g, gtd, max_ls)
    low = jnp.where(bracket.f[0] <= bracket.f[1], 0, 1).astype(jnp.int32)

    def going(c):
        b, _, _, done, ls_iter = c
        wide = jnp.abs(b.t[1] - b.t[0]) * d_norm >= BRACKET_TOLERANCE
        return ~done & (ls_iter < max_ls) & wide

    b, low, _, _, ls_zoom = lax.while_loop(
        going, lambda c: _zoom_step(obj, f, gtd, c),
        (bracket, low, jnp.bool_(False), done, ls_iter))
    return b.f[low], b.g[low], b.t[low], 1 + ls_zoom


# --------------------------------------------------------------------------- the direction


def _remember(s: LBFGSState, y, step, ys) -> LBFGSState:
    """Append (y, s, 1 / ys) to the history, dropping the oldest pair when it is full."""
    size = s.ro.shape[0]
    full = s.num_old == size
    at = jnp.minimum(s.num_old, size - 1)

    def push(rows, row):
        return jnp.where(full, jnp.roll(rows, -1, axis=0), rows).at[at].set(row)

    return s._replace(old_dirs=push(s.old_dirs, y), old_stps=push(s.old_stps, step),
                      ro=push(s.ro, 1.0 / ys), num_old=jnp.minimum(s.num_old + 1, size),
                      H_diag=ys / y.dot(y))


def _two_loop(s: LBFGSState, g):
    """-H g by torch's two-loop recursion over the first num_old pairs of the history."""
    def back(k, c):
        q, al = c
        i = s.num_old - 1 - k
        a = s.old_stps[i].dot(q) * s.ro[i]
        return q + (-a) * s.old_dirs[i], al.at[i].set(a)

    q, al = lax.fori_loop(0, s.num_old, back, (-g, jnp.zeros_like(s.ro)))

    def forward(i, r):
        be_i = s.old_dirs[i].dot(r) * s.ro[i]
        return r + (al[i] - be_i) * s.old_stps[i]

    return lax.fori_loop(0, s.num_old, forward, q * s.H_diag)


def _direction(s: LBFGSState, g):
    """(d, state): -g at the first iteration ever (the history emptied, H_diag 1), else the
    history updated with this iteration's pair, then the two-loop direction."""
    def first():
        return -g, s._replace(num_old=jnp.zeros_like(s.num_old), H_diag=jnp.ones_like(s.H_diag))

    def later():
        y, step = g - s.prev_flat_grad, s.d * s.t
        ys = y.dot(step)
        s2 = lax.cond(ys > CURVATURE_MIN, lambda: _remember(s, y, step, ys), lambda: s)
        return _two_loop(s2, g), s2

    return lax.cond(s.n_iter == 1, first, later)


# --------------------------------------------------------------------------- the step


class _Loop(NamedTuple):
    """The carry of one step's iterations."""

    x: jax.Array  # shape=(n,), the flat params
    loss: jax.Array  # shape=(), the loss at x (stale after a last fixed step, as torch's)
    g: jax.Array  # shape=(n,), its gradient
    opt_cond: jax.Array  # shape=() bool, max |g| <= tolerance_grad
    n: jax.Array  # shape=() int32, iterations in this step
    evals: jax.Array  # shape=() int32, evaluations in this step (torch's current_evals)
    done: jax.Array  # shape=() bool
    state: LBFGSState


def _move(c: _Loop, s: LBFGSState, d, t, gtd, evaluate, options):
    """The iteration's step along d from c.x: a fixed step t (then the loss and gradient
    there, unless it is the step's last iteration) or torch's strong-Wolfe search.
    Returns (x, loss, g, opt_cond, t, evaluations made)."""
    lr, max_iter, max_eval, tolerance_grad, tolerance_change, search = options
    if search:
        def obj(t_try):
            loss, grad = evaluate(c.x + t_try * d)
            return loss, grad, grad.dot(d)

        loss, g, t, k = strong_wolfe(obj, t, d, c.loss, c.g, gtd, max_eval - c.evals)
        return c.x + t * d, loss, g, jnp.max(jnp.abs(g)) <= tolerance_grad, t, k
    x = c.x + t * d

    def again():
        loss, g = evaluate(x)
        return loss, g, jnp.max(jnp.abs(g)) <= tolerance_grad, jnp.int32(1)

    loss, g, opt_cond, k = lax.cond(c.n != max_iter, again,
                                    lambda: (c.loss, c.g, c.opt_cond, jnp.int32(0)))
    return x, loss, g, opt_cond, t, k


def _iteration(c: _Loop, evaluate, options) -> _Loop:
    """One iteration of torch's ``while n_iter < max_iter`` loop, its stopping tests included."""
    lr, max_iter, max_eval, tolerance_grad, tolerance_change, _ = options
    c = c._replace(n=c.n + 1)
    s = c.state._replace(n_iter=c.state.n_iter + 1)
    d, s = _direction(s, c.g)
    first = pymin(jnp.ones_like(c.loss), 1.0 / jnp.sum(jnp.abs(c.g))) * lr
    t = jnp.where(s.n_iter == 1, first, lr).astype(c.x.dtype)
    s = s._replace(d=d, t=t, prev_flat_grad=c.g, prev_loss=c.loss)
    gtd = c.g.dot(d)
    flat = gtd > -tolerance_change  # no descent left along d: stop before moving
    x, loss, g, opt_cond, t, k = lax.cond(
        flat, lambda: (c.x, c.loss, c.g, c.opt_cond, t, jnp.int32(0)),
        lambda: _move(c, s, d, t, gtd, evaluate, options))
    s = s._replace(t=t, func_evals=s.func_evals + k)
    evals = c.evals + k
    done = (flat | (c.n == max_iter) | (evals >= max_eval) | opt_cond
            | (jnp.max(jnp.abs(d * t)) <= tolerance_change)
            | (jnp.abs(loss - s.prev_loss) < tolerance_change))
    return _Loop(x, loss, g, opt_cond, c.n, evals, done, s)


def scale_by_torch_lbfgs(lr, max_iter: int, max_eval: int, tolerance_grad: float,  # torch's 7
                         tolerance_change: float, history_size: int,
                         line_search_fn: str | None) -> optax.GradientTransformationExtraArgs:
    """torch.optim.LBFGS's ``step(closure)`` as one ``update``; its keywords, checked by
    `functional_fit.optim.LBFGS`.

    Args:
      lr: the step length (a float, a () array, or a schedule ``count -> lr`` read once per
        update, as torch's scheduler sets the group's lr between steps).
      max_iter, max_eval: the iterations and loss evaluations allowed per update (ints >= 1).
      tolerance_grad, tolerance_change: torch's stopping tolerances.
      history_size: H >= 1, the (y, s) pairs kept.
      line_search_fn: None (fixed steps of lr) or "strong_wolfe".

    Returns:
      An `optax.GradientTransformationExtraArgs`. ``update(grads, state, params, value=,
      value_fn=)``: grads the gradient at params and value the loss there (torch's first
      closure call), value_fn ``params -> loss`` for the evaluations that follow. The
      updates are the params' change over the step.
    """
    search = line_search_fn == "strong_wolfe"

    def init(params):
        x, _ = ravel_pytree(params)
        n, zero = x.shape[0], jnp.zeros((), x.dtype)
        return LBFGSState(d=jnp.zeros(n, x.dtype), t=zero,
                          old_dirs=jnp.zeros((history_size, n), x.dtype),
                          old_stps=jnp.zeros((history_size, n), x.dtype),
                          ro=jnp.zeros(history_size, x.dtype), num_old=jnp.int32(0),
                          H_diag=jnp.ones((), x.dtype), prev_flat_grad=jnp.zeros(n, x.dtype),
                          prev_loss=zero, n_iter=jnp.int32(0), func_evals=jnp.int32(0),
                          count=jnp.int32(0))

    def update(updates, state, params=None, *, value=None, value_fn=None, **extra_args):
        del extra_args  # grad= is the updates here, as in optax.lbfgs
        if params is None or value is None or value_fn is None:
            raise InputError("LBFGS needs params, value= and value_fn= in update (the loss "
                             "and params -> loss, for its closure; as optax.lbfgs); "
                             "functional_fit.fit.train passes them")
        x, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(updates)

        def evaluate(x_try):  # torch's closure: the loss and the flat gradient at x_try
            loss, grad = jax.value_and_grad(lambda v: value_fn(unravel(v)))(x_try)
            return jnp.asarray(loss, x.dtype), ravel_pytree(grad)[0].astype(x.dtype)

        step_lr = jnp.asarray(lr(state.count) if callable(lr) else lr, x.dtype)
        options = (step_lr, max_iter, max_eval, tolerance_grad, tolerance_change, search)
        opt_cond = jnp.max(jnp.abs(g)) <= tolerance_grad
        start = _Loop(x, jnp.asarray(value, x.dtype), g.astype(x.dtype), opt_cond,
                      jnp.int32(0), jnp.int32(1), opt_cond,
                      state._replace(func_evals=state.func_evals + 1))
        end = lax.while_loop(lambda c: ~c.done, lambda c: _iteration(c, evaluate, options),
                             start)
        new = unravel(end.x)
        return (jax.tree.map(lambda a, b: a - b, new, params),
                end.state._replace(count=optax.safe_increment(state.count)))

    return optax.GradientTransformationExtraArgs(init, update)


__all__ = ["BRACKET_TOLERANCE", "C1", "C2", "CURVATURE_MIN", "LBFGSState", "cubic_interpolate",
           "pymax", "pymin", "scale_by_torch_lbfgs", "strong_wolfe"]
