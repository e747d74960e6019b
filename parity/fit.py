"""Training the torch way: one ``zero_grad / backward / step`` loop for every fit.

`train` is the loop a torch user writes: a ``DataLoader`` (fed the shared batch order through
`parity.data.OrderSampler`, or the whole data each step), then ``optimizer.zero_grad()``,
``loss.backward()``, ``optimizer.step()`` and, when given, ``scheduler.step()``. It records
every parameter of the module's ``state_dict`` after every step, as numpy.

The lecture's fits (cells 48, 59 and 63), `gradient_descent`, `stochastic_gradient_descent` and
`adam_sgd`, keep their names and signatures and are thin wrappers of `train`: the first two
with the lecture's hand-written update as an optimizer (`parity.optim.LectureSGD`), the third
with ``torch.optim.Adam``. They return the lecture's ``numpy_parameters()`` path, an array of
shape (steps+1, p+1). Without ``order`` they shuffle with ``DataLoader(shuffle=True)`` exactly
as the lecture does.

Divergence: the loop stops at the first step whose loss is non-finite and raises
`functional_fit.checks.DivergenceError` naming that step (from 0), as `functional_fit.fit` does
for the same fit; ``.result`` is what was computed so far (a `TrainResult` from `train`, the
(step+1, p+1) path from the lecture's fits). Non-finite parameters after the last step raise it
too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from functional_fit import checks as _checks, data as _data
from functional_fit.checks import DivergenceError, InputError, divergence_error, first_line
from parity import dropout as _dropout, registry
from parity.data import OrderSampler
from parity.optim import LectureSGD


class TrainResult(NamedTuple):
    """What `train` returns; names are the module's ``state_dict`` keys."""

    params: dict  # name -> array of the parameter's shape, after the last step
    path: dict  # name -> (steps+1, *shape): before the first and after every step
    losses: np.ndarray  # shape=(steps,) each step's batch loss, before its update


def _snapshot(module) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _loader(dataset, batch_size, order):
    if order is None:  # the lecture's own shuffle
        return DataLoader(dataset, batch_size=batch_size, shuffle=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=OrderSampler(order))


def _result(snaps, losses) -> TrainResult:
    path = {k: np.stack([s[k] for s in snaps]) for k in snaps[0]}
    return TrainResult(snaps[-1], path, np.asarray(losses, dtype=np.float64))


def check_optimizer(module, optimizer) -> None:
    """InputError naming ``optimizer`` unless it is a ``torch.optim.Optimizer`` that holds
    only the module's parameters and at least one of its trainable ones.

    torch lets an optimizer hold a subset of a module's parameters (the others stay where they
    are), and parameters with ``requires_grad=False`` (it skips them); what is certainly wrong
    is an optimizer that holds another module's tensors, which a fit would never move, or none
    of the trainable ones, with which nothing would move at all.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError(f"optimizer must be a torch.optim.Optimizer over module.parameters(), "
                         f"got {type(optimizer).__name__}")
    own = {id(p): name for name, p in module.named_parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    foreign = [p for p in held if id(p) not in own]
    if foreign:
        raise InputError(f"optimizer holds {len(foreign)} of {len(held)} tensors that are not "
                         f"the module's parameters (shape {tuple(foreign[0].shape)} first): "
                         "build it on module.parameters() of the module being fitted")
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    if not trainable:
        raise InputError("module has no trainable parameter (none has requires_grad=True): "
                         "nothing to fit")
    if not any(own[id(p)] in trainable for p in held):
        raise InputError(f"optimizer holds none of the module's trainable parameters "
                         f"({', '.join(trainable)}): build it on module.parameters()")


def _first_loss(module, loss_fn, xb, yb):
    """The first step's loss, ``loss_fn(module(xb), yb)``, before any step is taken; one
    InputError naming what fails on the first batch (the dtype that differs from the
    module's parameters', when one does) or a loss that is not a scalar."""
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    try:
        y_hat = module(xb)
    except Exception as exc:
        differs = (f"x has dtype {xb.dtype}, the module's parameters "
                   f"{', '.join(map(str, sorted(dtypes, key=str)))}; "
                   if xb.is_floating_point() and dtypes and xb.dtype not in dtypes else "")
        raise InputError(f"{differs}module fails on x of shape {tuple(xb.shape)} and dtype "
                         f"{xb.dtype} ({first_line(exc)})") from None
    try:
        loss = loss_fn(y_hat, yb)
    except Exception as exc:
        differs = (f"y has dtype {yb.dtype}, the module's output {y_hat.dtype}; "
                   if yb.is_floating_point() and yb.dtype != y_hat.dtype else "")
        raise InputError(f"{differs}loss_fn fails on the module's output {tuple(y_hat.shape)} "
                         f"and y {tuple(yb.shape)} ({first_line(exc)})") from None
    if not isinstance(loss, torch.Tensor) or loss.shape != ():
        what = (f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor)
                else type(loss).__name__)
        raise InputError(f"loss_fn must return a scalar tensor, got {what} (a torch loss with "
                         "reduction='none'? use 'mean' or 'sum')")
    return loss


def _closure(module, loss_fn, xb, yb, optimizer, clip):
    """LBFGS's closure on one batch: the loss again, its gradients (clipped as the step's)."""

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(module(xb), yb)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), *clip)
        return loss

    return closure


def train_steps(module, loss_fn, batches, optimizer, *, scheduler=None, clip=None,
                where: str = "parity.fit.train", lr=None,
                masks=None) -> TrainResult:  # a torch step's parts, named
    """The loop every torch user writes, over `batches`: ``zero_grad``, the loss,
    ``backward``, [``clip_grad_norm_``], ``step``, [``scheduler.step``]. The twin of
    `functional_fit.engine.train_steps`. ``LBFGS`` steps with a closure on the batch (it
    evaluates the loss and gradient again, as often as its line search needs);
    ``ReduceLROnPlateau`` steps on the batch's loss, ``scheduler.step(loss)``.

    Args:
      module: an ``nn.Module``; loss_fn: ``loss_fn(y_hat, y) -> ()``.
      batches: (x batch, y batch) tensor pairs, one per step.
      optimizer: a ``torch.optim.Optimizer`` over ``module.parameters()``.
      scheduler: stepped after every optimizer step, when given (on the step's loss when it
        is a ``ReduceLROnPlateau``).
      clip: (max_norm, norm_type) of ``torch.nn.utils.clip_grad_norm_``, when given.
      where, lr: the fit's name and learning rate, for a `DivergenceError`'s message.
      masks: the `parity.dropout.Masks` of a `parity.dropout.shared` block around the loop:
        its ``.step`` is set before each step, so that step t replays JAX's masks of step t.

    Returns:
      `TrainResult` of every ``state_dict`` entry's path (parameters and buffers: BatchNorm's
      running statistics), (steps+1, *shape), and the losses.

    Raises:
      InputError: before any step: an optimizer that is not over the module's parameters
        (`check_optimizer`); a first batch the module or the loss fails on, or a loss that
        is not a scalar (`_first_loss`).
      DivergenceError: at the first step whose loss is non-finite, or when a final parameter is.
    """
    check_optimizer(module, optimizer)
    snaps, losses = [_snapshot(module)], []
    for xb, yb in batches:
        if masks is not None:
            masks.step = len(losses)
        optimizer.zero_grad()
        loss = loss_fn(module(xb), yb) if losses else _first_loss(module, loss_fn, xb, yb)
        if not torch.isfinite(loss):
            raise divergence_error(where, len(losses), loss.item(), lr, _result(snaps, losses))
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), *clip)
        if isinstance(optimizer, torch.optim.LBFGS):  # it evaluates the loss again, as it needs
            optimizer.step(_closure(module, loss_fn, xb, yb, optimizer, clip))
        else:
            optimizer.step()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss.item())  # the step's batch loss, as fit.train passes value=
        elif scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
        snaps.append(_snapshot(module))
    result = _result(snaps, losses)
    if not all(np.all(np.isfinite(v)) for v in result.params.values()):
        raise divergence_error(where, len(losses), None, lr, result)
    return result


def _batches(x, y, steps, order, batch_size):
    """The batches of a fit: `steps` times the whole data, or the DataLoader's minibatches."""
    if steps is not None:
        return ((x, y) for _ in range(steps))
    loader = _loader(TensorDataset(x, y), batch_size, order)
    return (batch for _ in range(len(order)) for batch in loader)


def _check_data(x, y):
    """x and y: torch tensors, finite, of the same number of points (the shared checks)."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch tensor, got {type(t).__name__} "
                             "(parity.data.tensors converts numpy data)")
    _checks.points(x, y, ndims=None)
    return x, y


def _check_dataset(dataset):
    """A ``TensorDataset(x, y)``'s tensors checked as `_check_data` checks them."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) == 2:
        _check_data(*tensors)
    return dataset


def train(module, loss_fn, x, y, *, optimizer, scheduler=None, steps: int | None = None,
          order=None, batch_size: int | None = None, max_norm: float | None = None,
          norm_type: float = 2.0, key=None,
          dropout_convention: str = "batch") -> TrainResult:  # a torch script's settings
    """Fit `module` with a torch optimizer: the loop every torch user writes.

    Args:
      module: an ``nn.Module``.
      loss_fn: ``loss_fn(y_hat, y) -> ()`` tensor.
      x: (n,) or (n, d) tensor of inputs; y: (n, ...) tensor of targets.
      optimizer: a ``torch.optim.Optimizer`` over ``module.parameters()``.
      scheduler: optional ``torch.optim.lr_scheduler`` scheduler, stepped after every
        optimizer step.
      steps: T full-batch steps; or
      order: (epochs, n) batch order (`functional_fit.data.batch_order`), handed to a
        ``DataLoader`` through `parity.data.OrderSampler`, with
      batch_size: B; the last batch of an epoch is short when B does not divide n.
      max_norm, norm_type: when `max_norm` is given, ``torch.nn.utils.clip_grad_norm_`` of
        the gradients between ``backward`` and ``step`` (`functional_fit.optim.clip_grad_norm`
        is its twin).
      key: a JAX PRNG key: the module's ``nn.Dropout`` layers draw the masks that
        `functional_fit.fit.train` with the same key draws (`parity.dropout.shared`); None:
        torch's own.
      dropout_convention: ``"batch"`` (a JAX model of the toolkit's convention, a flax NNX
        module) or ``"per_example"`` (an equinox module mapped over the batch).

    Returns:
      `TrainResult(params, path, losses)` of numpy arrays keyed by ``state_dict`` names; path
      (steps+1, *shape), losses (steps,).

    Raises:
      InputError: a bad argument, named in the message.
      DivergenceError: a loss or a final parameter became non-finite.
    """
    check_optimizer(module, optimizer)
    x, y = _check_data(x, y)
    steps, order, batch_size = _data.check_length(x.shape[0], steps, order, batch_size)
    clip = None
    if max_norm is not None:
        clip = (_checks.positive_float("max_norm", max_norm), float(norm_type))
    batches = _batches(x, y, steps, order, batch_size)
    if key is None:
        return train_steps(module, loss_fn, batches, optimizer, scheduler=scheduler, clip=clip)
    with _dropout.shared(module, key, dropout_convention) as masks:
        return train_steps(module, loss_fn, batches, optimizer, scheduler=scheduler, clip=clip,
                           masks=masks)


# --------------------------------------------------------------------------- the lecture's fits


def _lecture_path(result: TrainResult) -> np.ndarray:
    """The lecture's ``numpy_parameters()`` path: every parameter flattened, (steps+1, p+1)."""
    return np.concatenate([v.reshape(v.shape[0], -1) for v in result.path.values()], axis=1)


def _lecture(where, model, loss_fn, batches, optimizer, lr):
    try:
        return _lecture_path(train_steps(model, loss_fn, batches, optimizer,
                                         where=f"parity.fit.{where}", lr=lr))
    except DivergenceError as exc:
        exc.result = _lecture_path(exc.result)
        raise


def _minibatch(dataset, nepochs, batch_size, order):
    """(the batches of every epoch, steps per epoch) of a minibatch fit over `dataset`: the
    lecture's ``DataLoader(shuffle=True)``, or the given `order` (nepochs, n)."""
    n = len(_check_dataset(dataset))
    length = _data.fit_length(n, "minibatch", epochs=nepochs, batch_size=batch_size,
                              names={"epochs": "nepochs"})
    if order is not None:
        order = _data.check_order(np.asarray(order), n)
        if order.shape[0] != length.epochs:
            raise InputError(f"order has {order.shape[0]} epochs but nepochs is {length.epochs}")
    loader = _loader(dataset, length.batch_size, order)
    return (batch for _ in range(length.epochs) for batch in loader), length.per_epoch(n)


def _full(x, y, nsteps, name="nsteps"):
    """The batches of `nsteps` full-batch steps on checked tensors x, y."""
    length = _data.fit_length(x.shape[0], "full", steps=nsteps, names={"steps": name})
    return ((x, y) for _ in range(length.steps))


def gradient_descent(model, loss_fn, x, y, lr=1.0, nsteps=_data.DEFAULT_STEPS):
    """Full-batch gradient descent with step lr / (i + 1) (cell 48).

    Returns:
      (nsteps+1, p+1) array of the parameters before the first and after every step.
    """
    lr = _checks.positive_float("lr", lr)
    x, y = _check_data(x, y)
    batches = _full(x, y, nsteps)
    opt = LectureSGD(model.parameters(), lr=lr)
    return _lecture("gradient_descent", model, loss_fn, batches, opt, lr)


def stochastic_gradient_descent(model, loss_fn, dataset, lr=1.0, nepochs=_data.DEFAULT_EPOCHS,
                                batch_size=_data.DEFAULT_BATCH_SIZE, order=None):
    """Minibatch SGD with step lr / (e + 1) in epoch e (cell 59).

    Args:
      order: optional (nepochs, n) batch order; shuffled by the DataLoader when None.

    Returns:
      (steps+1, p+1) array, steps = nepochs * ceil(n / batch_size).
    """
    lr = _checks.positive_float("lr", lr)
    batches, per_epoch = _minibatch(dataset, nepochs, batch_size, order)
    opt = LectureSGD(model.parameters(), lr=lr, steps_per_epoch=per_epoch)
    return _lecture("stochastic_gradient_descent", model, loss_fn, batches, opt, lr)


def adam_sgd(model, loss_fn, dataset, lr=0.1, nepochs=_data.DEFAULT_EPOCHS,
             batch_size=_data.DEFAULT_BATCH_SIZE, order=None):
    """Minibatch Adam through ``torch.optim.Adam`` (cell 63).

    Returns:
      (steps+1, p+1) array, steps = nepochs * ceil(n / batch_size).
    """
    lr = _checks.positive_float("lr", lr)
    batches, _ = _minibatch(dataset, nepochs, batch_size, order)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return _lecture("adam_sgd", model, loss_fn, batches, opt, lr)


def run(optimizer, model, loss_fn, x, y, *, lr, steps=None, order=None,
        batch_size=_data.DEFAULT_BATCH_SIZE):  # fit.run's, mirrored
    """A fit of a registry optimizer, mirroring `functional_fit.fit.run`.

    `optimizer` is a name of `parity.registry` or a `parity.registry.optimizer(name,
    **keywords)`. A full-batch optimizer (``"gd"``) runs `steps` steps on tensors x, y (n,); a
    minibatch one (``"sgd"``, ``"adam"``) runs over the batch `order` (epochs, n) on
    ``TensorDataset(x, y)``; torch's names take whichever is given (`steps` first). Returns
    the (steps+1, p+1) path.
    """
    entry = registry.optimizer(optimizer) if isinstance(optimizer, str) else optimizer
    where = {"gd": "gradient_descent", "sgd": "stochastic_gradient_descent", "adam": "adam_sgd"}
    lr = _checks.positive_float("lr", lr)
    x, y = _check_data(x, y)
    if steps is None and order is None and entry.batching != "full":
        raise InputError(f"order: optimizer {entry.name!r} takes minibatches in a batch order "
                         "(functional_fit.data.batch_order(n, epochs, seed)), or steps; got "
                         "neither")
    if _data.batching_for(entry.batching, steps=steps, epochs=order) == "full":
        batches, per_epoch = _full(x, y, steps, "steps"), 1
    else:
        batches, per_epoch = _minibatch(TensorDataset(x, y), len(order), batch_size, order)
    opt = entry(model.parameters(), lr, per_epoch)
    return _lecture(where.get(entry.name, entry.name), model, loss_fn, batches, opt, lr)


__all__ = ["TrainResult", "adam_sgd", "check_optimizer", "gradient_descent", "run",
           "stochastic_gradient_descent", "train", "train_steps"]
