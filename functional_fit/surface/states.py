"""Models with state (BatchNorm's running statistics) on a plane: the state held fixed.

A stateful model, ``model(params, state, x) -> (y_hat, new_state)`` (`functional_fit.models.resnet`,
`functional_fit.modules.as_model`, `parity.export.as_model`), is drawn on a surface as a model of
one pytree ``{"params": params, "state": [the state's floating leaves]}``: the plane's
directions are zero on the state, so every grid point sees the same state, and `WithState`
hands the model its two arguments back. The new state is dropped: a surface moves no buffer.

Which statistics BatchNorm uses is the model's mode: in eval mode the running ones held in the
state; in training mode each batch's own, recomputed at every grid point (Li et al. 2018
discuss both).

The state's integer leaves (``num_batches_tracked``) are not moved by any direction, so they
stay out of the flat vector, in the model itself as constants of their own dtype.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit.checks import InputError
from functional_fit.surface.planes import Plane


def _floating(leaf) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


@dataclasses.dataclass(frozen=True)
class WithState:
    """``model(tree["params"], state, x)[0]``: a stateful model as a model of one pytree.

    Hashable by value (its constants are tuples), so a compiled block is reused for every call
    with the same model and state structure.
    """

    model: object
    treedef: object  # the state's structure
    fixed: tuple  # ((leaf index, dtype name, shape, values), ...): the non-floating leaves

    def state(self, floats):
        """The model's state from its floating leaves (a list) and the fixed ones."""
        floats, fixed = iter(floats), {i: (d, s, v) for i, d, s, v in self.fixed}
        leaves = [jnp.asarray(np.array(fixed[i][2], fixed[i][0]).reshape(fixed[i][1]))
                  if i in fixed else next(floats) for i in range(self.treedef.num_leaves)]
        return jax.tree.unflatten(self.treedef, leaves)

    def __call__(self, tree, x):
        out = self.model(tree["params"], self.state(tree["state"]), x)
        if not isinstance(out, tuple) or len(out) != 2:
            raise InputError("model: with state, the model must return (y_hat, new_state), "
                             f"got {type(out).__name__}")
        return out[0]


def with_state(model, plane: Plane, state) -> tuple[WithState, Plane]:
    """(the model of one pytree, the plane extended over the state with zero directions)."""
    leaves, treedef = jax.tree.flatten(state)
    if not leaves:
        raise InputError("state is empty: pass state=None for a model without state")
    fixed = tuple((i, np.asarray(a).dtype.name, np.shape(a), tuple(np.ravel(a).tolist()))
                  for i, a in enumerate(leaves) if not _floating(a))
    floats = [jnp.asarray(a) for a in leaves if _floating(a)]
    zeros = [jnp.zeros_like(a) for a in floats]
    origin, u, v = plane
    tree = Plane({"params": origin, "state": floats}, {"params": u, "state": zeros},
                 {"params": v, "state": zeros})
    return WithState(model, treedef, fixed), tree


__all__ = ["WithState", "with_state"]
