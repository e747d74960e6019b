"""torch's parameter groups for the optimizers of `functional_fit.optim`, on `optax.multi_transform`.

    torch:  AdamW([{"params": [p for n, p in net.named_parameters() if n.endswith("bias")],
                    "weight_decay": 0.0},
                   {"params": net.backbone.parameters(), "lr": 1e-4},
                   {"params": rest}], lr=1e-3, weight_decay=0.1)
    JAX:    AdamW(lr=1e-3, weight_decay=0.1,
                  param_groups=[{"params": "*.bias", "weight_decay": 0.0},
                                {"params": "backbone.*", "lr": 1e-4}])

Every optimizer of `functional_fit.optim` takes ``param_groups``, a list of dicts in torch's
form: ``"params"`` selects parameters, every other key is a keyword of the optimizer and
overrides the optimizer's own for the parameters selected. A parameter that no group selects
takes the optimizer's own keywords (torch needs it in a group of its own). Each group is the
optimizer built with its keywords (``factory(**keywords)``), and `optax.multi_transform` sends
every parameter to its group's: there is no second optimizer here.

Names. A parameter's name is its path in the params pytree, written as torch's ``state_dict``
names are: dict keys and list indices joined by dots (``{"backbone": {"w": ...}}`` has
"backbone.w", ``[w, b]`` has "0" and "1"). A params pytree that is one array (the lecture's
flat vector) has one parameter, named "params".

Selectors (the value of ``"params"``):
- a string: a glob over the names (`fnmatch.fnmatchcase`; ``*`` matches dots too, so
  ``"*.bias"`` is every bias at any depth and ``"backbone.*"`` everything under backbone);
- a list or tuple of names, each of which must be a parameter's name;
- a predicate ``(name, leaf) -> bool``. The leaf is a `jax.ShapeDtypeStruct` (its shape,
  ndim, size and dtype), since the labels are computed again at every update, from the
  updates, and possibly under `jax.jit`: ``lambda name, leaf: leaf.ndim < 2`` selects biases
  and norms.

As torch's: a parameter that two groups select is refused, naming it; a group that selects
nothing is allowed (torch allows an empty group). Unlike torch: a key that is not a keyword of
the optimizer is refused (torch keeps it in the group unread, so a misspelt "weight_decy" is
silently no weight decay).

Schedules. torch's schedulers scale every group's own learning rate: a group with lr 0.01
under ``StepLR(opt, 30, 0.5)`` runs at 0.01 * 0.5 ** (k // 30). Here, when the optimizer's
``lr`` is a schedule made by `functional_fit.optim.lr_scheduler` and a group gives a number as
its lr, the group runs the same schedule times lr / base_lr. That is torch's rate for the
schedulers whose rate is proportional to the base rate (`PROPORTIONAL`, and a
`ChainedScheduler` of them); for the others
(`CosineAnnealingLR` has a floor, eta_min; `OneCycleLR` has no base rate; `SequentialLR` and a
schedule of your own cannot be seen into) such a group is refused: give it its own schedule,
``{"params": "backbone.*", "lr": CosineAnnealingLR(1e-4, T_max=100)}``. A group without "lr"
runs the optimizer's schedule, and a group may give any schedule as its lr.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
from collections.abc import Callable

import jax
import optax

from functional_fit.checks import InputError

#: The name of a params pytree that is a single array.
ROOT_NAME = "params"

#: Schedules whose rate is base_lr times a factor that does not depend on base_lr; a group's
#: own lr scales them as torch's scheduler scales each group's initial_lr.
PROPORTIONAL = frozenset({"LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "LinearLR",
                          "ConstantLR", "MultiplicativeLR", "PolynomialLR"})

_REST = -1  # the label of the parameters that no group selects


def names(params):
    """The dotted ``state_dict``-style name of every leaf, as a pytree of str like params.

    Examples:
      >>> names({"hidden": {"weight": 0.0, "bias": 0.0}, "out": [0.0, 0.0]})
      {'hidden': {'bias': 'hidden.bias', 'weight': 'hidden.weight'}, 'out': ['out.0', 'out.1']}
      >>> names(0.0)
      'params'
    """
    def name(path, _):
        return jax.tree_util.keystr(path, simple=True, separator=".") or ROOT_NAME

    return jax.tree_util.tree_map_with_path(name, params)


def _group_keywords(group, i: int, keywords) -> tuple:
    """(selector, {keyword: value}) of ``param_groups[i]``, its keys checked."""
    if not isinstance(group, dict):
        raise InputError(f"param_groups[{i}] must be a dict with a 'params' key, got {group!r}")
    if "params" not in group:
        raise InputError(f"param_groups[{i}] has no 'params' (a glob, a list of names, or a "
                         "predicate (name, leaf) -> bool)")
    selector = group["params"]
    if isinstance(selector, (list, tuple)):
        if not all(isinstance(s, str) for s in selector):
            raise InputError(f"param_groups[{i}]['params'] must be a list of names (str), got "
                             f"{selector!r}")
        selector = tuple(selector)
    elif not isinstance(selector, str) and not callable(selector):
        raise InputError(f"param_groups[{i}]['params'] must be a glob, a list of names or a "
                         f"predicate (name, leaf) -> bool, got {selector!r}")
    unknown = [k for k in group if k != "params" and k not in keywords]
    if unknown:
        raise InputError(f"param_groups[{i}] has no keyword {unknown[0]!r}; the optimizer takes "
                         f"{', '.join(keywords)}")
    return selector, {k: v for k, v in group.items() if k != "params"}


def _proportional(schedule, name: str) -> bool:
    """Whether `schedule` (named `name`) is proportional to its base rate: one of
    `PROPORTIONAL`, or a `ChainedScheduler` of them (a product of proportional rates)."""
    if name == "ChainedScheduler":
        members = getattr(schedule, "members", None)
        return bool(members) and all(getattr(m, "__name__", "") in PROPORTIONAL for m in members)
    return name in PROPORTIONAL


def _group_lr(lr, default_lr, i: int):
    """The optimizer's schedule `default_lr` scaled to a group's own number `lr`, as torch's
    scheduler scales each group's initial_lr; refused where that scaling is not torch's."""
    name = getattr(default_lr, "__name__", "")
    while name.startswith("per_epoch(") and name.endswith(")"):
        name = name[len("per_epoch("):-1]
    base = getattr(default_lr, "base_lr", None)
    if not _proportional(default_lr, name) or not base:
        raise InputError(
            f"param_groups[{i}]['lr']: the optimizer's lr is the schedule {name or default_lr!r}, "
            f"which a group's own lr cannot scale as torch's scheduler does (its rate is not "
            f"proportional to its base rate, or it has none); give the group its own schedule, "
            f"as {{'lr': <schedule made with lr={lr!r}>}}")
    if not isinstance(lr, jax.Array) and lr == base:
        return default_lr
    ratio = lr / base

    def schedule(count):
        return default_lr(count) * ratio

    schedule.__name__ = schedule.__qualname__ = f"{name}*{ratio!r}"
    schedule.base_lr = lr
    return schedule


def _selected(selector, leaf_names: list, leaves: list, i: int) -> list:
    """Whether `selector` (of ``param_groups[i]``) selects each named leaf."""
    if isinstance(selector, str):
        return [fnmatch.fnmatchcase(n, selector) for n in leaf_names]
    if isinstance(selector, tuple):
        missing = [s for s in selector if s not in leaf_names]
        if missing:
            raise InputError(f"param_groups[{i}]['params'] names {missing[0]!r}, which is not a "
                             f"parameter; the parameters are {', '.join(leaf_names)}")
        return [n in selector for n in leaf_names]
    out = []
    for n, leaf in zip(leaf_names, leaves):
        spec = jax.ShapeDtypeStruct(jax.numpy.shape(leaf), jax.numpy.result_type(leaf))
        chosen = selector(n, spec)
        if not isinstance(chosen, (bool, jax.numpy.bool_)):
            raise InputError(f"param_groups[{i}]['params']: the predicate must return a bool, "
                             f"got {chosen!r} for {n!r}")
        out.append(bool(chosen))
    return out


def labels(selectors, params):
    """A pytree like params: the index of the group that selects each leaf, or -1 for none.

    Refuses a name that two leaves have, and a leaf that two selectors select, naming it.
    """
    leaf_names, treedef = jax.tree.flatten(names(params))
    leaves = treedef.flatten_up_to(params)
    seen = set()
    for n in leaf_names:
        if n in seen:
            raise InputError(f"two parameters are named {n!r}; param_groups select by name")
        seen.add(n)
    out = [_REST] * len(leaf_names)
    for i, selector in enumerate(selectors):
        for j, chosen in enumerate(_selected(selector, leaf_names, leaves, i)):
            if chosen and out[j] != _REST:
                raise InputError(f"parameter {leaf_names[j]!r} is in param_groups {out[j]} and "
                                 f"{i}; a parameter may be in one group only (torch refuses it "
                                 "too)")
            if chosen:
                out[j] = i
    return treedef.unflatten(out)


def grouped(factory: Callable, param_groups, keywords: dict) -> optax.GradientTransformation:
    """``factory(**keywords)`` for the parameters of no group, ``factory(**keywords, **group)``
    for each group's: one `optax.multi_transform`, labelled from the params' names.

    Args:
      factory: an optimizer of `functional_fit.optim`.
      param_groups: a list of dicts, each with "params" (a selector) and keywords of `factory`.
      keywords: every keyword of `factory`, with its value (the defaults filled in).

    Returns:
      An `optax.GradientTransformationExtraArgs`.
    """
    if not isinstance(param_groups, (list, tuple)):
        raise InputError(f"param_groups must be a list of dicts, got {param_groups!r}")
    transforms = {_REST: factory(**keywords)}
    selectors = []
    for i, group in enumerate(param_groups):
        selector, own = _group_keywords(group, i, keywords)
        try:
            transforms[i] = factory(**{**keywords, **own})  # the group's values, checked
        except InputError as e:
            raise InputError(f"param_groups[{i}]: {e}") from None
        if "lr" in own and callable(keywords.get("lr")) and not callable(own["lr"]):
            own["lr"] = _group_lr(own["lr"], keywords["lr"], i)
            transforms[i] = factory(**{**keywords, **own})
        selectors.append(selector)
    return optax.multi_transform(transforms, functools.partial(labels, tuple(selectors)))


def with_param_groups(factory: Callable) -> Callable:
    """`factory` taking a keyword-only ``param_groups`` too (None: one group, as before).

    The signature shown stays the factory's own, torch's less ``params``, in whose place
    ``param_groups`` stands.
    """
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def make(*args, param_groups=None, **kwargs):
        if param_groups is None:
            return factory(*args, **kwargs)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{factory.__name__}(): {e}") from None
        bound.apply_defaults()
        return grouped(factory, param_groups, dict(bound.arguments))

    return make


def without_param_groups(factory: Callable) -> Callable:
    """`factory` taking a keyword-only ``param_groups`` only to refuse it, as torch's LBFGS
    refuses groups ("LBFGS doesn't support per-parameter options (parameter groups)"): its
    state is global, over all parameters flattened into one vector. The signature shown stays
    the factory's own."""

    @functools.wraps(factory)
    def make(*args, param_groups=None, **kwargs):
        if param_groups is not None:
            raise InputError(f"param_groups: {factory.__name__} doesn't support per-parameter "
                             "options (parameter groups), as torch's doesn't; leave it None")
        return factory(*args, **kwargs)

    return make


__all__ = ["PROPORTIONAL", "ROOT_NAME", "grouped", "labels", "names", "with_param_groups",
           "without_param_groups"]
