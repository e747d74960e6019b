"""``functional-fit sweep``: many fits in one compiled call, over log-spaced learning rates.

Parsing and printing only; the sweep is `functional_fit.sweep.sweep`, the figure
`functional_fit.plot.sweep_result`. Every run starts from zeros, as the lecture's.

``--json`` prints ``{"runs": [{"lr", "seed", "loss", "diverged"}, ...], "settings": {...}}``.
JSON has no NaN or infinity, so a run whose final loss is not finite has ``"loss": null``
(and ``"diverged": true``); GD runs, which use no batch order, have ``"seed": null``.
"""

from __future__ import annotations

import json
import math
import time

from functional_fit import registry, sweep as _sweep
from functional_fit.checks import InputError, choice, positive_int
from functional_fit.cli._common import (add_data_options, add_dtype_option, add_model_options,
                                        add_optimizer_options, load_data, progress, refuse,
                                        resolve_model, resolve_optimizer)
from functional_fit.precision import require, zeros

#: Runs per compiled call when a progress bar is shown: a few updates for 256 runs.
CHUNK = 64


def add_parser(sub):
    p = sub.add_parser(
        "sweep",
        help="fit many learning rates (and seeds) in one compiled, vmapped call",
        description="Fit the same model with many learning rates at once (jax.vmap of a whole "
        "compiled fit) and print each run's final loss on the whole data, or JSON. Learning "
        "rates are log-spaced: --lr 1e-4:1:256. SGD and Adam can also sweep batch-order seeds.",
    )
    add_optimizer_options(p)
    add_model_options(p)
    p.add_argument("--lr", default="1e-3:10:64", metavar="START:STOP:COUNT",
                   help="COUNT learning rates log-spaced from START to STOP, or one value "
                   "(default 1e-3:10:64)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="GD's steps (default 100)")
    length.add_argument("--epochs", type=int, help="SGD's and Adam's epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=None, help="SGD's and Adam's batch (10)")
    p.add_argument("--seeds", type=int, default=None, metavar="K",
                   help="SGD and Adam: batch orders of seeds 0..K-1, one line each (1)")
    add_data_options(p)
    add_dtype_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", metavar="PNG", help="write final loss vs learning rate to this file")
    return p


def parse_lrs(text: str):
    """``"START:STOP:COUNT"`` -> COUNT log-spaced rates; ``"VALUE"`` -> one. InputError names --lr."""
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return _sweep.log_lrs(float(parts[0]), float(parts[0]), 1)
        if len(parts) == 3:
            return _sweep.log_lrs(float(parts[0]), float(parts[1]), int(parts[2]))
    except (ValueError, InputError) as exc:
        raise InputError(f"--lr {text!r}: {exc}") from None
    raise InputError(f"--lr must be START:STOP:COUNT (log-spaced) or one value, got {text!r}")


def _settings(args) -> dict:
    """The sweep's keyword arguments from the options; InputError naming a misplaced option."""
    name = choice("--optimizer", args.optimizer, tuple(registry.OPTIMIZERS))
    batching = registry.OPTIMIZERS[name].batching
    if batching == "any":  # torch's names: full batch unless epochs are given
        batching = "minibatch" if args.epochs is not None else "full"
        if batching == "full":
            refuse(args, ("--seeds", "--batch-size"), "applies to minibatches: give --epochs")
    if batching == "full":
        refuse(args, ("--epochs", "--seeds", "--batch-size"),
               f"does not apply to --optimizer {name}, which uses the whole data every step "
               "(give --steps)")
        return {"steps": positive_int("--steps", 100 if args.steps is None else args.steps)}
    refuse(args, ("--steps",), f"does not apply to --optimizer {name}, which counts passes "
           "over the data (give --epochs)")
    seeds = 1 if args.seeds is None else positive_int("--seeds", args.seeds)
    return {
        "epochs": positive_int("--epochs", 100 if args.epochs is None else args.epochs),
        "batch_size": positive_int("--batch-size", 10 if args.batch_size is None else args.batch_size),
        "seeds": list(range(seeds)),
    }


def _runs(result) -> list[dict]:
    rows = []
    for lr, seed, loss, bad in zip(result.lr, result.seed, result.loss, result.diverged):
        loss = float(loss)
        rows.append({
            "lr": float(lr),
            "seed": None if seed == _sweep.NO_SEED else int(seed),
            "loss": loss if math.isfinite(loss) else None,  # JSON has no NaN or inf
            "diverged": bool(bad),
        })
    return rows


def _table(runs: list[dict]) -> str:
    lines = [f"{'lr':>12}  {'seed':>4}  {'final loss':>14}  diverged"]
    for r in runs:
        loss = "-" if r["loss"] is None else f"{r['loss']:.8g}"
        seed = "-" if r["seed"] is None else str(r["seed"])
        lines.append(f"{r['lr']:>12.6g}  {seed:>4}  {loss:>14}  {'yes' if r['diverged'] else ''}")
    return "\n".join(lines)


def run(args) -> int:
    start = time.perf_counter()
    x, y, meta = load_data(args)
    pol = require(args.dtype)
    lrs = parse_lrs(args.lr)
    kwargs = _settings(args)
    optimizer = resolve_optimizer(args)
    model_name, model, degree, loss_name, loss = resolve_model(args)
    w0 = zeros(model.n_params(degree), args.dtype)  # (p+1,), as the lecture starts

    n_runs = lrs.shape[0] * len(kwargs.get("seeds", [None]))
    with progress(n_runs, "sweep", "fit") as update:  # updated once per chunk of runs
        result = _sweep.sweep(
            optimizer, w0, x.astype(pol.data), y.astype(pol.data), lrs,
            model=model.fn, loss=loss, chunk_size=CHUNK, progress=update, **kwargs,
        )
    result = _sweep.as_numpy(result)
    runs = _runs(result)
    if args.plot:
        from functional_fit import plot

        what = f"{args.optimizer}, {model_name}" + (f" degree {degree}" if model.uses_degree else "")
        fig = plot.sweep_result({args.optimizer: result}, loss_name=loss_name.upper(),
                                title=f"{what}, {loss_name} loss")
        plot.save(fig, args.plot)
    if args.json:
        settings = {"optimizer": args.optimizer, "model": model_name, "loss": loss_name,
                    "dtype": args.dtype, "data": meta, **kwargs}
        if optimizer.kwargs:
            settings["opt"] = dict(optimizer.kwargs)
        if model.uses_degree:
            settings["degree"] = degree
        print(json.dumps({"runs": runs, "settings": settings}))
        return 0
    print(_table(runs))
    i = _sweep.best(result)
    n_bad = int(result.diverged.sum())
    print()
    if i is not None:
        print(f"best: lr={result.lr[i]:.6g} final loss={float(result.loss[i]):.8g}")
    print(f"{len(runs)} fits, {n_bad} diverged, in {time.perf_counter() - start:.1f} s"
          + (f"; wrote {args.plot}" if args.plot else ""))
    return 0
