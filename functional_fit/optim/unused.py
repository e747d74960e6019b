"""Unused parameters, as torch.optim treats them: `skip_unused`.

torch skips a parameter whose ``.grad`` is None on a step (a head used on every third batch,
a frozen branch, one half of a GAN): its value, its momentum, its moments and its own step
count ``state["step"]`` stay as they were. JAX has no None gradient: the same parameter gets
a gradient of zeros, and an optax optimizer updates it anyway. Momentum keeps moving it, weight
decay shrinks it, its moments decay and the shared step count advances, so that its next
real step gets another bias correction. Over 200 float64 steps of a network whose head is used
on every third step, the paths part from torch's by 1.6e-2 (RMSprop) to 1.6e-1 (SGD with
momentum) relative; with `skip_unused`, by at most 2.3e-15 (tests/test_optim_unused.py):

    torch:  loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)   # head.grad None
    JAX:    tx = skip_unused(functional_fit.optim.Adam(lr=1e-3))
            updates, state = tx.update(grads, state, params)             # head's grads 0

`skip_unused(tx)` runs `tx` on every parameter alone, with a state of its own, and counts a
parameter whose gradient is exactly zero everywhere as unused on that step: its update is
zero and its state is left as it was.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from functional_fit.checks import InputError
from functional_fit.optim.lbfgs import LBFGSState

#: State types of optax's schedules. Their count is the number of optimizer steps, which torch's
#: scheduler counts for every parameter alike, used or not.
_SCHEDULE_STATES = (optax.ScaleByScheduleState, optax.InjectHyperparamsState,
                    optax.InjectStatefulHyperparamsState)


class SkipUnusedState(NamedTuple):
    """State of `skip_unused`."""

    per_param: Any  # shaped like the params: at each parameter, the inner state of it alone


def _alone(leaves: list, treedef, i: int):
    """The tree of `leaves` with leaf i kept and every other one masked (`optax.MaskedNode`)."""
    return treedef.unflatten([x if j == i else optax.MaskedNode() for j, x in enumerate(leaves)])


def _advance(used, new, old):
    """The state after one step of a parameter: `new` where it was used, else `old`, except
    the schedules' counts and values, which advance on every step (torch's ``sched.step()``).

    Args:
      used: a boolean scalar.
      new, old: the inner state of one parameter after and before the step (the same tree).
    """

    def pick(n, o):
        if isinstance(n, optax.ScaleByScheduleState):
            return n
        if isinstance(n, _SCHEDULE_STATES):  # inject_hyperparams: its inner state is the param's
            return n._replace(inner_state=_advance(used, n.inner_state, o.inner_state))
        return jnp.where(used, n, o)

    return jax.tree.map(pick, new, old, is_leaf=lambda x: isinstance(x, _SCHEDULE_STATES))


def skip_unused(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """`tx`, with a parameter whose gradient is exactly zero skipped, as torch skips None.

    On each step, a parameter (a leaf of the params pytree) whose gradient is zero in every
    element counts as a parameter whose ``.grad`` is None in torch: its update is zero (no
    momentum, no weight decay) and its state in `tx` is left as it was, its step count
    included, so that Adam's bias correction at its next step uses the number of steps it
    took part in, as torch's per-parameter ``state["step"]`` does. For that, `tx` runs on
    each parameter alone (the others masked out, as `optax.masked` masks them), with a state
    of its own: the state is `tx`'s state for each parameter, shaped like the params.

    Schedules count optimizer steps, as torch's scheduler does: the count of a schedule given
    as ``lr`` (`optax.ScaleByScheduleState`) and the count and values of
    `optax.inject_hyperparams` (a `~functional_fit.optim.lr_scheduler.OneCycleLR` that cycles
    momentum) advance on every step, used or not.

    Where this differs from torch:

    - A parameter that is used but whose gradient happens to be exactly zero everywhere on a
      step (a ReLU unit dead on the whole batch, a loss term that is flat there) is skipped
      too, where torch, holding a zero tensor in ``.grad``, steps it: its momentum and weight
      decay move it and its step count advances. A zero gradient carries no sign of which it
      was; the two are told apart only by torch's None.
    - A schedule's count (``lr`` made by `lr_scheduler`, a cycled momentum) advances on every
      step, used or not, as torch's scheduler steps every group; each optimizer's own counts
      (Adam's bias correction, Adagrad's ``lr_decay``) advance on the parameter's used steps
      only, as torch's per-parameter ``state["step"]`` does.

    `tx` must treat each parameter on its own, as every optimizer of `functional_fit.optim`
    and `optax.multi_transform` (param groups) do. A transformation that looks across
    parameters belongs outside: ``optax.chain(clip_grad_norm(1.0), skip_unused(Adam()))``,
    which is torch's order (``clip_grad_norm_`` ignores None gradients, as it here adds zeros).
    `tx` is traced once per parameter array, so compiling takes longer with many arrays (not
    with larger ones: Adam's update on 150 arrays compiles in 2.2 s instead of 0.6 s on a CPU);
    the state has the size of `tx`'s, plus its scalars once per array.

    Args:
      tx: an optax transformation, e.g. ``functional_fit.optim.Adam(lr=1e-3)``.

    Returns:
      An `optax.GradientTransformationExtraArgs`; its update passes extra arguments (such as
      ``value=``) on to `tx`, and its state is a `SkipUnusedState`.

    Raises:
      InputError: `tx` is not a transformation (an optimizer's factory not yet called, say);
        at init, `tx` holds an LBFGS (`functional_fit.optim.LBFGS`), which looks across
        parameters and treats a None gradient as zeros, as torch's LBFGS does.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from functional_fit.optim import Adam
      >>> tx = skip_unused(Adam(lr=0.1))
      >>> params = {"body": jnp.zeros(2), "head": jnp.zeros(1)}
      >>> state = tx.init(params)
      >>> grads = {"body": jnp.array([1.0, -2.0]), "head": jnp.zeros(1)}  # head unused
      >>> for _ in range(3):
      ...     updates, state = tx.update(grads, state, params)
      >>> count = lambda s: int(optax.tree_utils.tree_get(s, "count"))  # Adam's own step count
      >>> updates["head"].tolist(), count(state.per_param["head"])
      ([0.0], 0)
      >>> grads["head"] = jnp.array([0.5])  # its first step: bias-corrected, -lr * sign(g)
      >>> updates, state = tx.update(grads, state, params)
      >>> [round(u, 6) for u in updates["head"].tolist()], count(state.per_param["head"])
      ([-0.1], 1)
    """
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        what = getattr(tx, "__name__", type(tx).__name__)
        raise InputError(f"tx must be an optax GradientTransformation (with init and update), "
                         f"got {what}; an optimizer is called first: skip_unused(Adam(lr=1e-3))")
    inner = optax.with_extra_args_support(tx)

    def init_fn(params):
        whole = jax.tree.leaves(inner.init(params), is_leaf=lambda s: isinstance(s, LBFGSState))
        if any(isinstance(s, LBFGSState) for s in whole):
            raise InputError("tx: LBFGS looks across all parameters (one flat vector) and reads "
                             "a None gradient as zeros, as torch's does; use it without "
                             "skip_unused")
        leaves, treedef = jax.tree.flatten(params)
        return SkipUnusedState(treedef.unflatten(
            [inner.init(_alone(leaves, treedef, i)) for i in range(len(leaves))]))

    def update_fn(updates, state, params=None, **extra_args):
        grads, treedef = jax.tree.flatten(updates)
        states = treedef.flatten_up_to(state.per_param)
        values = None if params is None else treedef.flatten_up_to(params)
        out, new_states = [], []
        for i, (g, old) in enumerate(zip(grads, states)):
            u, new = inner.update(_alone(grads, treedef, i), old,
                                  None if values is None else _alone(values, treedef, i),
                                  **extra_args)
            (u,) = jax.tree.leaves(u)
            used = jnp.any(g != 0)
            out.append(jnp.where(used, u, jnp.zeros_like(u)))
            new_states.append(_advance(used, new, old))
        return treedef.unflatten(out), SkipUnusedState(treedef.unflatten(new_states))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


__all__ = ["SkipUnusedState", "skip_unused"]
