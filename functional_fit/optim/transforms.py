"""The pieces of torch.optim that optax does not have, each a short `optax.GradientTransformation`.

`functional_fit.optim` builds every torch optimizer from optax's own transformations where they
compute what torch computes, and from these where they do not. Each one here says, in its
docstring, which optax function comes closest and where it parts from torch. They work on any
pytree of float32 or float64 arrays; their state is in the parameters' dtype (as torch's is),
except NAdam's running product and ASGD's eta and mu, which torch keeps in float32 scalars (see
`scale_by_torch_nadam`, `scale_by_torch_asgd`); and Muon's Newton-Schulz iteration, which torch
computes in bfloat16 whatever the parameters' dtype (`scale_by_torch_muon`).

Like optax's ``scale_by_*`` functions they do not apply the learning rate: chain
``optax.scale_by_learning_rate(lr)`` after them. Rprop's, ASGD's and Adafactor's are the
exceptions: their learning rate sets a step size that is not a factor of the update, so they
take it (a float, or a schedule ``count -> lr`` for ASGD and Adafactor) and return the
parameters' change.

Every hyperparameter is a Python float. `functional_fit.optim` wraps a transformation in
`optax.inject_hyperparams` when `~functional_fit.optim.lr_scheduler.OneCycleLR` cycles its
momentum (or beta1), as torch's scheduler rewrites ``param_groups[0]["momentum"]`` every step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from functional_fit.checks import InputError
from functional_fit.optim import groups

#: torch keeps NAdam's ``mu_product`` in a scalar tensor of ``torch.get_default_dtype()``'s
#: kind: float32 unless the default was set to float64. Rounding it to float32 changes the
#: coefficients of NAdam's first steps by up to ~1e-7 relative, so the JAX side rounds it the
#: same way: with a float64 product, tests/test_optim.py's NAdam paths part from torch's by
#: 7e-11 instead of 3e-15.
NADAM_MU_PRODUCT_DTYPE = jnp.float32


def _count_plus_one(count):
    return optax.safe_increment(count)


# --------------------------------------------------------------------------- SGD momentum


class TorchMomentumState(NamedTuple):
    """State of `scale_by_torch_momentum`."""

    count: jax.Array  # shape=() int32, updates so far
    trace: optax.Updates  # the momentum buffer, shaped like the params


def scale_by_torch_momentum(
    momentum: float, dampening: float = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """torch.optim.SGD's momentum buffer, dampening included.

    b_1 = g_1;  b_t = momentum * b_{t-1} + (1 - dampening) * g_t;  the update is b_t, or
    g_t + momentum * b_t with `nesterov`.

    `optax.trace` computes b_t = g_t + momentum * b_{t-1} from b_0 = 0: the same when dampening
    is 0 (and `functional_fit.optim.SGD` then uses it), but it has no dampening, and torch does
    not dampen the first step (its buffer starts as a copy of g_1).

    Args:
      momentum: the momentum factor.
      dampening: the dampening of the gradient added to the buffer from the second step on.
      nesterov: return g_t + momentum * b_t instead of b_t.

    Returns:
      An `optax.GradientTransformation`; updates and state shaped like the params.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_torch_momentum(0.5, dampening=0.5)
      >>> g = jnp.array([1.0])
      >>> u1, state = tx.update(g, tx.init(g))
      >>> u2, state = tx.update(g, state)
      >>> float(u1[0]), float(u2[0])  # 1, then 0.5 * 1 + 0.5 * 1
      (1.0, 1.0)
    """

    def init_fn(params):
        return TorchMomentumState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        trace = jax.tree.map(
            lambda g, b: jnp.where(first, g, momentum * b + (1 - dampening) * g),
            updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, b: g + momentum * b, updates, trace)
        else:
            updates = trace
        return updates, TorchMomentumState(_count_plus_one(state.count), trace)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- Adagrad


class TorchAdagradState(NamedTuple):
    """State of `scale_by_torch_adagrad`; torch's ``state["sum"]`` and ``state["step"]``."""

    sum_of_squares: optax.Updates  # shaped like the params
    step: jax.Array  # shape=() int32, the updates made (torch's step, per parameter)


def scale_by_torch_adagrad(
    initial_accumulator_value: float = 0.0, eps: float = 1e-10, lr_decay: float = 0.0
) -> optax.GradientTransformation:
    """torch.optim.Adagrad's scaling: g / (sqrt(s) + eps), s the running sum of g**2.

    `optax.scale_by_rss` computes g / sqrt(s + eps): eps inside the square root, and its
    defaults (``initial_accumulator_value=0.1, eps=1e-7``) are not torch's (0 and 1e-10).
    That is the 0.76 relative difference of ``optax.adagrad`` after 300 steps on the atlas'
    problem. torch's decay of the learning rate, ``lr / (1 + (t - 1) * lr_decay)``, counts
    the parameter's own steps t (under `functional_fit.optim.skip_unused`, its used steps,
    as torch's per-parameter ``state["step"]``): with lr_decay > 0 the scaled gradient is
    divided by 1 + (t - 1) lr_decay here, and the learning rate applied after; torch divides
    lr first (the two round differently, by an ulp of the step).

    Args:
      initial_accumulator_value: the starting value of s.
      eps: added to sqrt(s).
      lr_decay: >= 0.

    Returns:
      An `optax.GradientTransformation`.
    """

    def init_fn(params):
        return TorchAdagradState(optax.tree.full_like(params, initial_accumulator_value),
                                 jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        step = optax.safe_increment(state.step)
        s = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, s)
        if lr_decay != 0:
            updates = jax.tree.map(lambda u: u / (1 + (step - 1).astype(u.dtype) * lr_decay),
                                   updates)
        return updates, TorchAdagradState(s, step)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- Adam, amsgrad


def scale_by_torch_amsgrad(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch.optim.Adam's ``amsgrad=True``: the maximum of the *uncorrected* second moments.

    torch keeps v_max = max(v_max, v_t) and divides by sqrt(v_max) / sqrt(1 - b2^t) + eps,
    correcting the maximum with the current step's factor. `optax.scale_by_amsgrad` corrects
    each v_t with its own step's factor first and keeps max_s v_s / (1 - b2^s); the two
    maxima differ while the correction still changes (the first few hundred steps for
    b2 = 0.999). Its state is `optax.ScaleByAmsgradState`, with v_max uncorrected.

    Args:
      b1, b2: the decay rates of the first and second moments.
      eps: added to the corrected square root.

    Returns:
      An `optax.GradientTransformation`.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAmsgradState(jnp.zeros([], jnp.int32), zeros, zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        t = _count_plus_one(state.count)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        bc1, bc2 = 1 - b1**t, 1 - b2**t  # () float, as torch's Python floats
        updates = jax.tree.map(
            lambda m, v: (m / bc1.astype(m.dtype))
            / (jnp.sqrt(v) / jnp.sqrt(bc2).astype(v.dtype) + eps),
            mu, nu_max)
        return updates, optax.ScaleByAmsgradState(t, mu, nu, nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- NAdam


class TorchNAdamState(NamedTuple):
    """State of `scale_by_torch_nadam`."""

    count: jax.Array  # shape=() int32, updates so far
    mu_product: jax.Array  # shape=() float32, prod_{s<=t} mu_s (see NADAM_MU_PRODUCT_DTYPE)
    mu: optax.Updates  # first moment, shaped like the params
    nu: optax.Updates  # second moment, shaped like the params


def scale_by_torch_nadam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, momentum_decay: float = 4e-3
) -> optax.GradientTransformation:
    """torch.optim.NAdam's scaling, with its momentum-decay schedule (Dozat 2016).

    With mu_t = b1 (1 - 0.5 * 0.96^(t * momentum_decay)) and P_t = mu_1 ... mu_t:

        update = [(1 - mu_t) / (1 - P_t) * g_t + mu_{t+1} / (1 - P_t mu_{t+1}) * m_t]
                 / (sqrt(v_t / (1 - b2^t)) + eps)

    `optax.nadam` (``scale_by_adam(nesterov=True)``) uses a constant mu_t = b1 and Adam's
    bias correction 1 - b1^t in place of the product P_t; the two differ by 0.97 relative
    after 300 steps on the atlas' problem.

    P_t is kept in float32 (`NADAM_MU_PRODUCT_DTYPE`), as torch keeps its ``mu_product``
    unless ``torch.set_default_dtype(torch.float64)`` was called.

    Args:
      b1, b2: the decay rates of the first and second moments.
      eps: added to the corrected square root.
      momentum_decay: the psi of mu_t.

    Returns:
      An `optax.GradientTransformation`.
    """

    def mu_at(t):
        return b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))  # () float

    def init_fn(params):
        return TorchNAdamState(
            jnp.zeros([], jnp.int32), jnp.ones([], NADAM_MU_PRODUCT_DTYPE),
            optax.tree.zeros_like(params), optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        t = _count_plus_one(state.count)
        mu_t, mu_next = mu_at(t), mu_at(t + 1)
        product = state.mu_product * jnp.asarray(mu_t, NADAM_MU_PRODUCT_DTYPE)  # torch: *= mu
        p = product.astype(jnp.result_type(float))  # torch reads it back as a Python float
        c_grad = (1.0 - mu_t) / (1.0 - p)
        c_mom = mu_next / (1.0 - p * mu_next)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        bc2 = 1 - b2**t

        def scale(g, m, v):
            denom = jnp.sqrt(v / bc2.astype(v.dtype)) + eps
            return c_grad.astype(g.dtype) * (g / denom) + c_mom.astype(m.dtype) * (m / denom)

        updates = jax.tree.map(scale, updates, mu, nu)
        return updates, TorchNAdamState(t, product, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- RAdam


def scale_by_torch_radam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch.optim.RAdam's scaling (Liu et al. 2019): rectified Adam, eps where torch puts it.

    With rho_inf = 2 / (1 - b2) - 1 and rho_t = rho_inf - 2 t b2^t / (1 - b2^t):

        update = m_hat * r_t * sqrt(1 - b2^t) / (sqrt(v_t) + eps)   if rho_t > 5
        update = m_hat                                                otherwise

    `optax.scale_by_radam` divides by sqrt(v_t / (1 - b2^t)) + eps: its eps is not scaled by
    sqrt(1 - b2^t) as torch's is, and it switches at rho_t >= 5, not > 5. The first makes
    ``optax.radam`` differ from torch by 3.7e-7 relative after 300 steps on the atlas'
    problem. Its state is `optax.ScaleByAdamState`.

    Args:
      b1, b2: the decay rates of the first and second moments.
      eps: added to sqrt(v_t), before the correction.

    Returns:
      An `optax.GradientTransformation`.
    """
    rho_inf = 2 / (1 - b2) - 1

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        t = _count_plus_one(state.count)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        bc1, bc2 = 1 - b1**t, 1 - b2**t  # () float
        rho_t = rho_inf - 2 * t * b2**t / bc2
        rect = jnp.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho_t))  # nan where rho_t <= 4: unused

        def scale(m, v):
            m_hat = m / bc1.astype(m.dtype)
            adaptive = jnp.sqrt(bc2).astype(v.dtype) / (jnp.sqrt(v) + eps)
            return jnp.where(rho_t > 5.0, m_hat * adaptive * rect.astype(m.dtype), m_hat)

        return jax.tree.map(scale, mu, nu), optax.ScaleByAdamState(t, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- Rprop


def _torch_sign(x):
    """torch.sign on the CPU: 1, -1, or 0 for zeros and NaN (``jnp.sign`` of NaN is NaN)."""
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


class TorchRpropState(NamedTuple):
    """State of `scale_by_torch_rprop`: torch's ``state["step"]``, ``["prev"]``, ``["step_size"]``."""

    count: jax.Array  # shape=() int32, updates so far (torch keeps it; the update never reads it)
    prev: optax.Updates  # the last gradient, 0 where its sign flipped; shaped like the params
    step_size: optax.Updates  # each element's step size; shaped like the params


def scale_by_torch_rprop(
    learning_rate, eta_minus: float = 0.5, eta_plus: float = 1.2,
    min_step_size: float = 1e-6, max_step_size: float = 50.0,
) -> optax.GradientTransformation:
    """torch.optim.Rprop's update, the learning rate included: ``-sign(g) * step_size``.

    Per element, with s = sign(g * prev) and step_size starting at the learning rate:

        step_size <- clip(step_size * (eta_plus if s > 0, eta_minus if s < 0, 1 if s == 0),
                          min_step_size, max_step_size)
        g <- 0 where s < 0;  update = -sign(g) * step_size;  prev <- g

    `optax.scale_by_rprop` (chained with ``optax.scale(-1)`` in ``optax.rprop``) parts from
    torch in three ways: where s == 0 (the first step, and the step after a sign change) it
    keeps the step size unclipped, where torch clips it (so a learning rate outside the
    bounds, or lr=0 with min_step_size > 0, moves differently); it keeps
    ``step_size * sign(g)`` as ``prev`` where torch keeps g itself (g * prev underflows to 0,
    and so s == 0, for different gradients); and its ``jnp.sign`` of a NaN is NaN, where
    torch's is 0: torch leaves an element with a NaN gradient where it is, its step size
    unchanged, and optax makes it NaN. Here s, prev and sign are torch's.

    Given the same gradients, the path is torch's to the last bit in float32 and float64. It
    takes signs, so where the two frameworks compute a gradient element that is at its
    rounding level (float32 near an optimum), the paths part by that element's step size.

    Args:
      learning_rate: the first step size of every element (a float, or a () array). torch
        reads its group's lr only when it creates the state, at the first step.
      eta_minus, eta_plus: the factors of a step size after a sign change and after none.
      min_step_size, max_step_size: the bounds of every step size.

    Returns:
      An `optax.GradientTransformation` whose updates are the parameters' changes; updates
      and state shaped like the params, in their dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_torch_rprop(0.1)
      >>> g = jnp.array([1.0, -2.0])
      >>> u1, state = tx.update(g, tx.init(g))
      >>> u2, state = tx.update(g, state)  # the same signs: each step size grows by 1.2
      >>> [round(float(u), 6) for u in u1], [round(float(u), 6) for u in u2]
      ([-0.1, 0.1], [-0.12, 0.12])
    """

    def init_fn(params):
        return TorchRpropState(
            jnp.zeros([], jnp.int32), optax.tree.zeros_like(params),
            jax.tree.map(lambda p: jnp.full_like(p, learning_rate), params))

    def factor(g, prev):  # eta_plus, eta_minus or 1 where sign(g * prev) is 1, -1 or 0
        s = g * prev
        return jnp.where(s > 0, eta_plus, jnp.where(s < 0, eta_minus, 1.0)).astype(g.dtype)

    def update_fn(updates, state, params=None):
        del params
        f = jax.tree.map(factor, updates, state.prev)
        step_size = jax.tree.map(lambda s, f: jnp.clip(s * f, min_step_size, max_step_size),
                                 state.step_size, f)
        prev = jax.tree.map(lambda g, f: jnp.where(f == eta_minus, jnp.zeros_like(g), g),
                            updates, f)
        updates = jax.tree.map(lambda g, s: -_torch_sign(g) * s, prev, step_size)
        return updates, TorchRpropState(_count_plus_one(state.count), prev, step_size)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- ASGD

#: torch keeps ASGD's ``eta`` (the step size) and ``mu`` (the averaging weight) in scalar
#: tensors of ``torch.get_default_dtype()``'s kind, as it keeps NAdam's ``mu_product``: float32
#: unless the default was set to float64, so even the first step's lr is rounded to float32
#: (0.01 -> 0.009999999776...). The JAX side rounds them the same way.
ASGD_SCALAR_DTYPE = jnp.float32


class TorchASGDState(NamedTuple):
    """State of `scale_by_torch_asgd`: torch's ``state["step"]``, ``["eta"]``, ``["mu"]``,
    ``["ax"]``."""

    count: jax.Array  # shape=() int32, updates so far
    eta: jax.Array  # shape=() ASGD_SCALAR_DTYPE, the step size of the next update
    mu: jax.Array  # shape=() ASGD_SCALAR_DTYPE, the averaging weight of the next update
    ax: optax.Updates  # the averaged parameters, shaped like the params


def scale_by_torch_asgd(
    learning_rate, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6
) -> optax.GradientTransformation:
    """torch.optim.ASGD (averaged SGD, Polyak and Juditsky 1992), the learning rate included.

    At update t (from 1), with eta_1 = lr_1 and mu_1 = 1:

        p <- p * (1 - lambd * eta_t) - eta_t * g
        ax <- p if mu_t == 1 else ax + mu_t * (p - ax)
        eta_{t+1} = lr_t / (1 + lambd * lr_t * t) ** alpha;   mu_{t+1} = 1 / max(1, t - t0)

    where lr_t is the learning rate at update t (a schedule's value then). The parameters
    follow the decayed SGD path; ``ax``, their running average from update t0 on, is what the
    method returns as its estimate (`functional_fit.optim.asgd_average` reads it). eta and mu
    are rounded to `ASGD_SCALAR_DTYPE`, as torch stores them. optax has no ASGD.

    Args:
      learning_rate: a float, a () array or a schedule ``count -> lr``.
      lambd: the decay of the step size and of the parameters.
      alpha: the power of the step size's decay.
      t0: the update after which averaging starts.

    Returns:
      An `optax.GradientTransformation` whose updates are the parameters' changes (it needs
      ``params``); updates and ``ax`` shaped like the params, in their dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = scale_by_torch_asgd(0.5, lambd=0.0, t0=0)
      >>> p = jnp.array([1.0])
      >>> u, state = tx.update(jnp.array([2.0]), tx.init(p), p)
      >>> float(u[0]), float(state.ax[0])  # p <- 1 - 0.5 * 2 = 0, and ax <- p
      (-1.0, 0.0)
    """

    def lr_at(count):
        return learning_rate(count) if callable(learning_rate) else learning_rate

    def init_fn(params):
        return TorchASGDState(
            jnp.zeros([], jnp.int32), jnp.asarray(lr_at(0), ASGD_SCALAR_DTYPE),
            jnp.ones([], ASGD_SCALAR_DTYPE), optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(optax.NO_PARAMS_MSG)
        eta = state.eta.astype(jnp.result_type(float))  # torch reads it back as a Python float
        keep = 1 - lambd * eta  # () float

        def new(g, p):
            return p * keep.astype(p.dtype) - eta.astype(p.dtype) * g

        moved = jax.tree.map(new, updates, params)
        mu = state.mu.astype(jnp.result_type(float))
        ax = jax.tree.map(lambda a, p: jnp.where(mu == 1, p, a + (p - a) * mu.astype(p.dtype)),
                          state.ax, moved)
        t = _count_plus_one(state.count)
        lr = jnp.asarray(lr_at(state.count), jnp.result_type(float))
        tf = t.astype(jnp.result_type(float))
        next_eta = lr / (1 + lambd * lr * tf) ** alpha
        next_mu = 1 / jnp.maximum(1.0, tf - t0)
        updates = jax.tree.map(lambda m, p: m - p, moved, params)
        return updates, TorchASGDState(t, next_eta.astype(ASGD_SCALAR_DTYPE),
                                       next_mu.astype(ASGD_SCALAR_DTYPE), ax)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- Adafactor


class TorchAdafactorState(NamedTuple):
    """State of `scale_by_torch_adafactor`: torch's ``state["step"]``, ``["row_var"]``,
    ``["col_var"]`` and ``["variance"]``. A leaf of 2 or more dimensions, shape (..., R, C),
    has a row factor (..., R, 1) and a column factor (..., 1, C) and an empty (0,) variance;
    any other leaf has a variance shaped like it and empty (0,) factors."""

    count: jax.Array  # shape=() int32, updates so far
    row_var: optax.Updates  # (..., R, 1) per factored leaf, else (0,)
    col_var: optax.Updates  # (..., 1, C) per factored leaf, else (0,)
    variance: optax.Updates  # shaped like the leaf where not factored, else (0,)


def _torch_lerp(start, end, weight):
    """torch.lerp's formula: start + w (end - start) for w < 0.5, else end - (end - start)(1 - w)."""
    return jnp.where(weight < 0.5, start + weight * (end - start),
                     end - (end - start) * (1 - weight))


def _rms(x, dtype):
    """||x||_2 / sqrt(x.size) of one leaf: the norm in x's dtype, the division in `dtype`, as
    torch's ``x.norm(2).item() / x.numel() ** 0.5``; a () array."""
    return jnp.sqrt(jnp.sum(x * x)).astype(dtype) / math.sqrt(x.size)


def scale_by_torch_adafactor(
    learning_rate, beta2_decay: float = -0.8, eps1: float | None = None, eps2: float = 1e-3,
    d: float = 1.0, weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """torch.optim.Adafactor (Shazeer and Stern 2018, as torch writes it), lr included.

    For each leaf p (a tensor of torch), at update t (from 1), with lr_t the learning rate:

        rho = min(lr_t, 1 / sqrt(t));   a = max(eps2, rms(p)) * rho        (p before decay)
        v <- lerp(v, g**2, t**beta2_decay)  (or its row and column factors for >= 2-D leaves:
             the means of g**2 over the last and the second-last axis, and
             v = row @ col / max(eps1, mean(row)))
        u = g / sqrt(max(v, eps1**2));   p <- p (1 - lr_t wd) - a / max(1, rms(u) / d) * u

    `optax.adafactor` has the same decay, clipping (at 1, torch's d) and scaling by the
    parameters' RMS (at least 1e-3, torch's eps2), but: it factors only leaves whose two
    largest axes are both >= 128, where torch factors every leaf of 2 or more dimensions over
    its last two axes; it adds its eps (1e-30) to g**2 where torch clamps the estimate at
    eps1**2 and its row mean at eps1; its step is lr times the RMS where torch's is
    min(lr, 1 / sqrt(t)) times it (the same until t > 1 / lr**2); and its
    ``weight_decay_rate`` subtracts wd * p, not lr * wd * p. On a leaf neither factors, with
    no weight decay and t <= 1 / lr**2, the two agree but for the eps.

    Args:
      learning_rate: a float, a () array or a schedule ``count -> lr``.
      beta2_decay: <= 0; the second moment's weight at update t is t**beta2_decay.
      eps1: the floor of the estimate (squared) and of its row mean; None: the leaf dtype's
        machine epsilon, as torch.
      eps2: the floor of the parameters' RMS in the step size.
      d: >= 1, the clipping threshold of the update's RMS.
      weight_decay: decoupled: the params are multiplied by 1 - lr_t * weight_decay.

    Returns:
      An `optax.GradientTransformation` whose updates are the parameters' changes (it needs
      ``params``); updates and state in the params' dtype.
    """

    def lr_at(count):
        return learning_rate(count) if callable(learning_rate) else learning_rate

    def init_fn(params):
        if any(jnp.iscomplexobj(p) for p in jax.tree.leaves(params)):
            raise InputError("params: Adafactor does not support complex parameters (torch "
                             "refuses them too, at its first step)")

        def row(p):
            return (jnp.zeros(p.shape[:-1] + (1,), p.dtype) if p.ndim > 1
                    else jnp.zeros((0,), p.dtype))

        def col(p):
            return (jnp.zeros(p.shape[:-2] + (1, p.shape[-1]), p.dtype) if p.ndim > 1
                    else jnp.zeros((0,), p.dtype))

        def var(p):
            return jnp.zeros((0,), p.dtype) if p.ndim > 1 else jnp.zeros_like(p)

        return TorchAdafactorState(jnp.zeros([], jnp.int32), jax.tree.map(row, params),
                                   jax.tree.map(col, params), jax.tree.map(var, params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(optax.NO_PARAMS_MSG)
        t = _count_plus_one(state.count)
        tf = t.astype(jnp.result_type(float))
        lr = jnp.asarray(lr_at(state.count), jnp.result_type(float))
        w = tf**beta2_decay  # () float, torch's one_minus_beta2_t
        rho = jnp.minimum(lr, 1 / tf**0.5)

        def leaf(g, p, row_var, col_var, variance):
            floor = float(jnp.finfo(p.dtype).eps) if eps1 is None else eps1
            alpha = jnp.maximum(eps2, _rms(p, rho.dtype)) * rho  # () float
            if p.ndim > 1:
                row_mean = jnp.sqrt(jnp.sum(g * g, axis=-1, keepdims=True)) ** 2 / g.shape[-1]
                col_mean = jnp.sqrt(jnp.sum(g * g, axis=-2, keepdims=True)) ** 2 / g.shape[-2]
                row_var = _torch_lerp(row_var, row_mean, w.astype(g.dtype))  # (..., R, 1)
                col_var = _torch_lerp(col_var, col_mean, w.astype(g.dtype))  # (..., 1, C)
                estimate = (row_var @ col_var) / jnp.maximum(
                    jnp.mean(row_var, axis=-2, keepdims=True), floor)  # (..., R, C)
            else:
                variance = _torch_lerp(variance, g * g, w.astype(g.dtype))
                estimate = variance
            u = jax.lax.rsqrt(jnp.maximum(estimate, floor * floor)) * g
            denom = jnp.maximum(1.0, _rms(u, rho.dtype) / d)
            decayed = p * (1 - lr * weight_decay).astype(p.dtype) if weight_decay else p
            moved = decayed + (-alpha / denom).astype(p.dtype) * u
            return moved - p, row_var, col_var, variance

        treedef = jax.tree.structure(params)
        out = [leaf(*args) for args in zip(*(treedef.flatten_up_to(tree) for tree in (
            updates, params, state.row_var, state.col_var, state.variance)))]
        deltas, rows, cols, variances = (treedef.unflatten([o[i] for o in out])
                                         for i in range(4))
        return deltas, TorchAdafactorState(t, rows, cols, variances)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- Muon


class TorchMuonState(NamedTuple):
    """State of `scale_by_torch_muon`: torch's ``state["momentum_buffer"]`` (Muon keeps no
    step count)."""

    momentum_buffer: optax.Updates  # shaped like the params, every leaf (R, C)


def _two_d(tree, what: str) -> None:
    """Refuse a leaf of `tree` that is not a matrix, naming it as `groups.names` does."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.ndim(leaf) != 2:
            name = jax.tree_util.keystr(path, simple=True, separator=".") or groups.ROOT_NAME
            raise InputError(
                f"{what}: Muon takes 2-D parameters only (torch's refuses others too); "
                f"{name} has shape {tuple(jnp.shape(leaf))}: give it another optimizer "
                "(optax.partition, see functional_fit.optim.Muon)")


def _newton_schulz(g, coefficients, steps: int, eps: float, dtype):
    """torch's ``_zeropower_via_newtonschulz`` of one (R, C) matrix, rounded as torch rounds.

    torch casts the matrix to bfloat16 and stores every intermediate in bfloat16; each of its
    CPU kernels computes in float32 and rounds its result once. So here every step computes in
    float32 (the norm and the products accumulate in the widest float at hand, float64 in
    64-bit mode) and rounds to `dtype` where torch stores a tensor. With `dtype` float64
    nothing is rounded, which is torch's iteration without its bfloat16 cast.

    Returns:
      The (R, C) orthogonalized matrix in `dtype`.
    """
    a, b, c = coefficients
    dtype = jnp.dtype(dtype)
    math_dtype = max(dtype, jnp.dtype(jnp.float32), key=lambda d: d.itemsize)  # torch's opmath
    wide = max(math_dtype, jnp.dtype(jnp.result_type(float)), key=lambda d: d.itemsize)
    as_dtype = lambda v: v.astype(math_dtype).astype(dtype)  # noqa: E731 (one rounding)
    dot = lambda u, v: jnp.matmul(u.astype(wide), v.astype(wide),  # noqa: E731
                                  precision=jax.lax.Precision.HIGHEST)
    x = g.astype(math_dtype).astype(dtype)  # torch's grad.bfloat16() goes through float32
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = x.T  # (min, max)
    norm = as_dtype(jnp.sqrt(jnp.sum(jnp.square(x.astype(wide)))))
    norm = as_dtype(jnp.maximum(norm.astype(math_dtype), eps))
    x = as_dtype(x.astype(math_dtype) / norm.astype(math_dtype))
    for _ in range(steps):
        gram = as_dtype(dot(x, x.T))  # (min, min)
        gram = as_dtype(c * dot(gram, gram) + b * gram.astype(wide))  # torch.addmm(beta=b, alpha=c)
        x = as_dtype(dot(gram, x) + a * x.astype(wide))  # torch.addmm(beta=a)
    return x.T if tall else x


def scale_by_torch_muon(
    momentum: float = 0.95, nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
    eps: float = 1e-7, ns_steps: int = 5, ns_dtype=jnp.bfloat16,
) -> optax.GradientTransformation:
    """torch.optim.Muon's direction: momentum, then torch's Newton-Schulz orthogonalization.

    b_t = lerp(b_{t-1}, g_t, 1 - momentum) (an average: torch's ``buf.lerp_(grad, 1 - mu)``,
    not the b = mu b + g of its docstring), u_t = lerp(g_t, b_t, momentum) with `nesterov`,
    else b_t; the update is NS(u_t): u_t / max(||u_t||_F, eps), then `ns_steps` quintic
    steps X <- a X + (b A + c A^2) X with A = X X^T, on the transpose of a tall matrix.

    torch computes NS in bfloat16 (8 significant bits) whatever the parameters' dtype, and so
    does this by default (`ns_dtype`); see `_newton_schulz` for where it rounds. torch's
    CPU matrix products accumulate in float32 in their own order, and now and then one of
    their sums rounds to the neighbouring bfloat16 (2^-8 relative) where this one does not
    (measured on random matrices: none of 1,280 elements differ at 8 x 8, about 1 in 100 at
    20 x 32, 1 in 10 at 64 x 48); ``ns_dtype=jnp.float64`` is torch's iteration in float64,
    for a test of everything else to rounding.

    ``optax.contrib.muon``'s orthogonalization differs: its default coefficients are the
    same, but it divides by ||u||_F + eps (eps 1e-8) instead of max(||u||_F, eps), computes in
    the parameters' dtype, and scales by sqrt(max(1, R / C)) inside the direction.

    Args:
      momentum: the momentum factor (torch's default 0.95).
      nesterov: orthogonalize lerp(g, b, momentum) instead of b.
      ns_coefficients: (a, b, c) of the quintic.
      eps: the floor of the Frobenius norm.
      ns_steps: the number of Newton-Schulz steps.
      ns_dtype: the dtype NS stores its matrices in (torch's: bfloat16).

    Returns:
      An `optax.GradientTransformation` whose updates are NS(u_t) in the parameters' dtype;
      it refuses a leaf that is not 2-D, naming it.
    """

    def init_fn(params):
        _two_d(params, "params")
        return TorchMuonState(optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        _two_d(updates, "updates")
        buf = jax.tree.map(lambda b, g: _torch_lerp(b, g, 1 - momentum),
                           state.momentum_buffer, updates)
        if nesterov:
            direction = jax.tree.map(lambda g, b: _torch_lerp(g, b, momentum), updates, buf)
        else:
            direction = buf
        updates = jax.tree.map(
            lambda u: _newton_schulz(u, ns_coefficients, ns_steps, eps, ns_dtype).astype(u.dtype),
            direction)
        return updates, TorchMuonState(buf)

    return optax.GradientTransformation(init_fn, update_fn)


def muon_lr_ratio(shape: tuple[int, int], adjust_lr_fn: str | None) -> float:
    """torch's ``_adjust_lr``: Muon's learning rate for an (R, C) matrix is lr times this.

    None or "original" (Keller Jordan's): sqrt(max(1, R / C)); "match_rms_adamw" (Moonshot's):
    0.2 sqrt(max(R, C)).
    """
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


def scale_by_torch_muon_lr(adjust_lr_fn: str | None = None) -> optax.GradientTransformation:
    """Scale each (R, C) leaf by `muon_lr_ratio` of its shape (stateless).

    torch multiplies the orthogonalized update by lr * ratio, and the weight decay by lr
    alone, so this comes before ``optax.add_decayed_weights``.

    Args:
      adjust_lr_fn: None, "original" or "match_rms_adamw".

    Returns:
      A stateless `optax.GradientTransformation`.
    """

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: u * muon_lr_ratio(u.shape, adjust_lr_fn), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


# --------------------------------------------------------------------------- SparseAdam


class TorchSparseAdamState(NamedTuple):
    """State of `scale_by_torch_sparse_adam`: torch's ``state["step"]``, ``["exp_avg"]`` and
    ``["exp_avg_sq"]``. torch counts steps per parameter; one count serves every leaf here,
    which is torch's when every parameter gets a gradient each step (see `skip_unused` for
    one that does not)."""

    step: jax.Array  # shape=() int32, steps so far, rows present or not
    exp_avg: optax.Updates  # shaped like the params
    exp_avg_sq: optax.Updates  # shaped like the params


def present_rows(g):
    """The rows of gradient leaf `g` that count as looked up: those with a nonzero element.

    Rows are the first axis (an embedding's (num_embeddings, embedding_dim) weight has one
    per token); a 1-D leaf's rows are its elements, a () leaf is one row.

    Returns:
      A boolean array broadcastable against `g`: (R, 1, ..., 1), or () for a () leaf.
    """
    if g.ndim == 0:
        return g != 0
    return jnp.any(g != 0, axis=tuple(range(1, g.ndim)), keepdims=True)


def scale_by_torch_sparse_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch.optim.SparseAdam's scaling, on the rows that `present_rows` finds.

    On a present row, as torch does on the rows of its sparse gradient:
    m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2), and the update is
    sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), with t the step count, which every
    step advances (torch's advances for every parameter with a gradient, looked-up rows or
    not). Every other row keeps m and v and gets a zero update. Unlike `optax.scale_by_adam`,
    then, an absent row's moments do not decay and it does not move by its momentum.

    Args:
      b1, b2: the decay rates of the first and second moments.
      eps: added to sqrt(v).

    Returns:
      An `optax.GradientTransformation`; updates and state shaped like the params.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return TorchSparseAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def leaf(g, m, v, t):
        rows = present_rows(g)
        m_delta = (g - m) * (1 - b1)
        v_delta = (g * g - v) * (1 - b2)
        t = t.astype(jnp.result_type(float))  # torch's Python floats: float64 in 64-bit mode
        scale = (jnp.sqrt(1 - b2**t) / (1 - b1**t)).astype(g.dtype)
        step = scale * ((m_delta + m) / (jnp.sqrt(v_delta + v) + eps))
        return (jnp.where(rows, step, 0), jnp.where(rows, m + m_delta, m),
                jnp.where(rows, v + v_delta, v))

    def update_fn(updates, state, params=None):
        del params
        t = _count_plus_one(state.step)
        out = jax.tree.map(lambda g, m, v: leaf(g, m, v, t), updates, state.exp_avg,
                           state.exp_avg_sq)
        treedef = jax.tree.structure(updates)
        steps, m, v = (treedef.unflatten([o[i] for o in treedef.flatten_up_to(out)])
                       for i in range(3))
        return steps, TorchSparseAdamState(t, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- clipping


def _vector_norm(x, norm_type: float):
    """torch.linalg.vector_norm(x, norm_type) of an array of any shape, as a () array."""
    x = jnp.abs(jnp.ravel(x))
    if norm_type == math.inf:
        return jnp.max(x)
    if norm_type == 2.0:
        return jnp.sqrt(jnp.sum(x * x))
    if norm_type == 1.0:
        return jnp.sum(x)
    return jnp.sum(x**norm_type) ** (1.0 / norm_type)


def clip_by_torch_grad_norm(max_norm: float,
                            norm_type: float = 2.0) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_``; see `functional_fit.optim.clip_grad_norm`.

    Args:
      max_norm: >= 0.
      norm_type: p > 0, or inf.

    Returns:
      A stateless `optax.GradientTransformation`.
    """

    def update_fn(updates, state, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        norms = jnp.stack([_vector_norm(g, norm_type) for g in leaves])  # (leaves,)
        total = _vector_norm(norms, norm_type)  # () as torch: the norm of the leaves' norms
        coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)
