"""``functional-fit compare``: your torch module against your JAX port, from files, for CI.

Parsing and printing only; the comparison is `comparison.compare.compare` (``parity.compare``).

- ``--torch FILE.py:NAME``: NAME is a function (or class) of no arguments returning the
  ``nn.Module``, or the module itself.
- ``--jax FILE.py:NAME``: NAME is the JAX model as `parity.compare` takes it: a function
  ``model(params, x)`` (``model(params, state, x)`` for a module with buffers), a flax NNX or
  equinox module, or a linen (module, variables) pair. The two may be in one file; it is
  imported once, with its own folder on ``sys.path`` while it is imported.
- ``--data FILE``: an ``.npz`` holding arrays ``x`` and ``y`` (named by ``--x``/``--y``), used
  as stored; any other file is a CSV with a header row (`functional_fit.tables.read_table`),
  its two columns as x of shape (n, 1) and y of shape (n, 1), or (n,) integer labels for
  ``--loss cross_entropy``.
- ``--loss``: a name of `functional_fit.registry.LOSSES` (JAX) and `parity.registry.LOSSES`
  (torch), both the mean over the batch, as torch.nn.functional's defaults.
- ``--optimizer NAME`` (a torch.optim name) with ``--opt KEY=VALUE`` keywords, ``lr``
  among them; ``--steps`` full-batch steps or ``--epochs`` with ``--batch-size``.
- The rest of torch's training step, as `parity.compare` takes it: ``--scheduler NAME`` (a
  ``torch.optim.lr_scheduler`` class) with ``--sched KEY=VALUE`` keywords, stepped after every
  optimizer step; ``--max-norm X`` and ``--norm-type P`` (``clip_grad_norm_`` between
  ``backward`` and ``step``); ``--matmul-precision`` (both sides' float32 matrix products).

``--plot FILE`` writes `Comparison.plot` (each parameter's difference per step against the
tolerance), whatever the verdict, so that a failing CI run keeps it.

Exit status: 0 when the two agree within the tolerance, 1 when they part (the table, or the
JSON, names the step, the parameter and the part of the port to blame), 2 for bad input (one
line naming the option), so that it can gate CI.
"""

from __future__ import annotations

import numpy as np

from functional_fit import checks as _checks, data as _data, optim, registry
from functional_fit.checks import InputError, choice, first_line
from functional_fit_cli.files import together
from functional_fit_cli.options import (LENGTH_OPTIONS, built_module, json_text, load_name,
                                        output_file, parse_opts)

#: The losses whose targets are integer class labels (n,), not values shaped as the output.
LABEL_LOSSES = ("cross_entropy",)
#: The options every run needs (checked by `run`, so that the parser alone takes any subset).
REQUIRED = {"--torch": "FILE.py:NAME", "--jax": "FILE.py:NAME", "--data": "FILE"}
#: The default optimizer, as `parity.compare`'s.
OPTIMIZER = "SGD"
#: torch.optim.lr_scheduler's schedulers that take a function or other schedulers (LambdaLR's
#: lr_lambda, SequentialLR's schedulers), which a command line cannot spell: Python only.
NOT_FROM_THE_COMMAND_LINE = ("LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler")
#: The schedulers ``--scheduler`` names: those with a JAX twin, and keywords a literal can give.
SCHEDULERS = tuple(k for k in (*optim.lr_scheduler.SCHEDULERS, "ReduceLROnPlateau")
                   if k not in NOT_FROM_THE_COMMAND_LINE)
#: ``--matmul-precision``'s choices, `parity.compare`'s ``matmul_precision``.
MATMUL_PRECISIONS = ("highest", "high", "medium")


def add_parser(sub):
    p = sub.add_parser(
        "compare",
        help="compare your torch module and your JAX port step by step (exit 1 if they part)",
        description="Fit a torch module and its JAX port from the same start, on the same "
        "batches, with the same optimizer, and print where they part (parity.compare). Exits "
        "0 when they agree within the tolerance, 1 when they part, 2 for bad input.",
    )
    p.add_argument("--torch", metavar="FILE.py:NAME",
                   help="a function (or class) of no arguments returning the nn.Module, or "
                   "the module itself")
    p.add_argument("--jax", metavar="FILE.py:NAME",
                   help="the JAX model: model(params, x) over the module's state_dict names, "
                   "or a flax NNX or equinox module, or a linen (module, variables) pair")
    p.add_argument("--data", metavar="FILE",
                   help="an .npz holding arrays x and y, or a CSV with a header row (x and y "
                   "as (n, 1); y as (n,) integer labels for --loss cross_entropy)")
    p.add_argument("--x", default="x", metavar="NAME", help="the x column or array (x)")
    p.add_argument("--y", default="y", metavar="NAME", help="the y column or array (y)")
    p.add_argument("--loss", default="mse",
                   help=f"{', '.join(registry.LOSSES)}, the mean over the batch (default mse)")
    p.add_argument("--optimizer", default=OPTIMIZER,
                   help=f"a torch.optim name, used on both sides (default {OPTIMIZER})")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword of the optimizer, e.g. --opt lr=0.01 --opt "
                   "betas=(0.9,0.99); repeatable, a Python literal each")
    p.add_argument("--scheduler", metavar="NAME",
                   help=f"a torch.optim.lr_scheduler scheduler, stepped after every optimizer "
                   f"step as torch code steps it, its JAX twin on the JAX side: "
                   f"{', '.join(SCHEDULERS)}")
    p.add_argument("--sched", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword of the scheduler, e.g. --sched step_size=10 --sched "
                   "gamma=0.5 (--sched \"mode='max'\" for a string); repeatable, a Python "
                   "literal each")
    p.add_argument("--max-norm", type=float, metavar="X",
                   help="clip the gradients' total norm to X between backward and step "
                   "(torch's clip_grad_norm_; its twin on the JAX side)")
    p.add_argument("--norm-type", type=float, metavar="P",
                   help="the p of --max-norm's p-norm, or inf (default 2)")
    p.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS,
                   help="both sides' float32 matrix products: full float32 (highest), TF32 "
                   "(high) or bfloat16 (medium); default: JAX's as torch's, torch's as they are")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int,
                        help=f"full-batch steps (default {_data.DEFAULT_STEPS})")
    length.add_argument("--epochs", type=int, help="passes over the data in minibatches")
    p.add_argument("--batch-size", type=int, default=None, help="the minibatch size, with --epochs")
    p.add_argument("--order-seed", type=int, default=0, help="seed of the batch order (0)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="the parameters and data on both sides (default float64)")
    p.add_argument("--dropout", default="shared", choices=("shared", "off"),
                   help="active nn.Dropout layers: the same masks on both sides, or switched "
                   "off on both (default shared)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", metavar="PNG", type=output_file("--plot", plot=True),
                   help="write each parameter's difference per step, against the tolerance, to "
                   "this file (.png, .pdf, .svg, ...), whatever the verdict")
    return p


def run(args) -> int:
    from comparison.compare import compare
    from parity import registry as torch_registry

    for option, metavar in REQUIRED.items():
        if getattr(args, option.lstrip("-")) is None:
            raise InputError(f"{option} {metavar} is required")
    loss = choice("--loss", args.loss, tuple(registry.LOSSES))
    optimizer = resolve_optimizer(args.optimizer, args.opt)
    step = training_step(args, optimizer)
    x, y = load_data(args.data, args.x, args.y, labels=loss in LABEL_LOSSES)
    _data.fit_length(x.shape[0], steps=args.steps, epochs=args.epochs,
                     batch_size=args.batch_size, names=LENGTH_OPTIONS,
                     defaults=args.steps is None and args.epochs is None)  # as compare's
    _checks.nonnegative_int("--order-seed", args.order_seed)
    files = {}  # one import per file: --torch and --jax may name the same one
    module = torch_module(args.torch, files)
    jax_model = load_name("--jax", args.jax, files)
    if not callable(jax_model) and not isinstance(jax_model, tuple):
        raise InputError(f"--jax {args.jax} is of type {type(jax_model).__name__}, not a JAX model "
                         "(a function, or a flax or equinox module)")
    c = compare(jax_model, module, x, y, jax_loss=registry.LOSSES[loss],
                torch_loss=torch_registry.LOSSES[loss], optimizer=optimizer, steps=args.steps,
                epochs=args.epochs, batch_size=args.batch_size, order_seed=args.order_seed,
                dtype=args.dtype, dropout=args.dropout, **step)
    if args.plot:
        from functional_fit import plot

        with together() as outputs:  # renamed into place once written
            plot.save(c.plot(), outputs.file(args.plot))
    from comparison.testing import report

    print(json_text(c.to_json()) if args.json else c.table() if c.ok else report(c))
    return 0 if c.ok else 1


def resolve_optimizer(name: str, items) -> tuple[str, dict]:
    """(torch.optim name, keywords) from ``--optimizer`` and ``--opt``, checked as torch checks
    them; InputError naming the option."""
    name = choice("--optimizer", name, tuple(optim.OPTIMIZERS))
    kwargs = parse_opts(items)
    rest = {k: v for k, v in kwargs.items() if k != "lr"}
    try:
        registry.check_keywords(name, rest)
        optim.OPTIMIZERS[name](**kwargs)  # lr's value too
    except InputError as exc:
        raise InputError(f"--opt: {exc}") from None
    return name, kwargs


def resolve_scheduler(name: str, items, optimizer: tuple) -> dict:
    """The keywords of ``--scheduler NAME`` from ``--sched``, checked as torch checks them and
    as the JAX twin takes them (on a throwaway ``nn.Linear(1, 1)`` with `optimizer`, the
    (name, keywords) of `resolve_optimizer`); InputError naming the option."""
    import inspect

    import torch

    from parity import optim as toptim

    name = choice("--scheduler", name, SCHEDULERS)
    kwargs = parse_opts(items, "--sched")
    cls = getattr(torch.optim.lr_scheduler, name)
    known = [k for k in inspect.signature(cls).parameters if k != "optimizer"]
    for key in kwargs:
        if key not in known:
            raise InputError(f"--sched: {name} has no keyword {key!r}; it takes {', '.join(known)}")
    needed = [k for k in known if k not in kwargs
              and inspect.signature(cls).parameters[k].default is inspect.Parameter.empty]
    if needed:
        raise InputError(f"--sched: {name} needs {', '.join(needed)} (--sched {needed[0]}=...)")
    module = torch.nn.Linear(1, 1)
    opt_name, opt_kwargs = optimizer
    torch_opt = getattr(torch.optim, opt_name)(module.parameters(), **opt_kwargs)
    try:
        toptim.transformation(torch_opt, module, cls(torch_opt, **kwargs))
    except InputError as exc:  # the twin's checks
        raise InputError(f"--sched: {name}: {exc}") from None
    except Exception as exc:  # torch's own (a ValueError, a TypeError)
        raise InputError(f"--sched: {name}: {first_line(exc)}") from None
    return kwargs


def training_step(args, optimizer: tuple) -> dict:
    """`parity.compare`'s keywords for the rest of torch's step: ``scheduler`` (a function of
    the torch optimizer), ``max_norm``, ``norm_type``, ``matmul_precision``; InputError naming
    the option."""
    import torch

    if args.scheduler is None and args.sched:
        raise InputError("--sched needs --scheduler NAME")
    if args.max_norm is None and args.norm_type is not None:
        raise InputError("--norm-type needs --max-norm X")
    step = {"matmul_precision": args.matmul_precision}
    if args.scheduler is not None:
        name, kwargs = args.scheduler, resolve_scheduler(args.scheduler, args.sched, optimizer)
        step["scheduler"] = lambda opt: getattr(torch.optim.lr_scheduler, name)(opt, **kwargs)
    if args.max_norm is not None:
        step["max_norm"] = _checks.positive_float("--max-norm", args.max_norm)
        norm = 2.0 if args.norm_type is None else args.norm_type
        if not norm > 0:  # NaN too
            raise InputError(f"--norm-type must be positive (p of the p-norm) or inf, got {norm}")
        step["norm_type"] = norm
    return step


# --------------------------------------------------------------------------- the two models


def torch_module(spec: str, files: dict):
    """The ``nn.Module`` of ``--torch``: NAME called with no arguments, or NAME itself when it
    is a module; InputError naming ``--torch``."""
    return built_module("--torch", spec, load_name("--torch", spec, files))


# --------------------------------------------------------------------------- the data


def _npz(path: str, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """Arrays `x` and `y` of an ``.npz`` file, as stored; InputError naming ``--data``."""
    try:
        with np.load(path, allow_pickle=False) as held:
            missing = [k for k in (x, y) if k not in held.files]
            if missing:
                raise InputError(f"--data {path}: holds no array {missing[0]!r} (it holds "
                                 f"{', '.join(held.files) or 'none'}; --x and --y name them)")
            return held[x], held[y]
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"--data {path}: no such file") from None
    except Exception as exc:
        raise InputError(f"--data {path}: not an .npz file numpy can read "
                         f"({first_line(exc)})") from None


def _csv(path: str, x: str, y: str, labels: bool) -> tuple[np.ndarray, np.ndarray]:
    """Columns `x` and `y` of a CSV file: x (n, 1); y (n, 1), or (n,) integer labels."""
    table = _data.read_table(path, x, y)
    if not labels:
        return table.x[:, None], table.y[:, None]  # (n, 1), as nn.Linear takes and gives
    if not np.all(table.y == np.round(table.y)):
        raise InputError(f"--data {path}: column {y!r} must hold whole-number class labels "
                         "for --loss cross_entropy")
    return table.x[:, None], table.y.astype(np.int64)  # (n, 1), (n,)


def load_data(path: str, x: str, y: str, *, labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from ``--data``: an ``.npz`` as stored, or a CSV (`_csv`); checked as
    `parity.compare` checks them, with InputError naming ``--data``."""
    if path.lower().endswith(".npz"):
        xs, ys = _npz(path, x, y)
    else:
        xs, ys = _csv(path, x, y, labels)
    try:
        return _checks.points(xs, ys, ndims=None, names=(f"--x {x}", f"--y {y}"))
    except InputError as exc:
        raise InputError(f"--data {path}: {exc}") from None
