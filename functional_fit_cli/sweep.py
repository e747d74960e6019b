"""``functional-fit sweep``: many fits in one compiled call, over log-spaced learning rates.

Parsing and printing only; the sweep is `functional_fit.sweep.sweep`, the figure
`functional_fit.plot.sweep_result`. Every run starts from zeros, as the lecture's (the sine
model, which does not move from zeros, from amplitude and frequency 1: `Model.start`).

``--json`` prints ``{"runs": [{"lr", "seed", "loss", "diverged"}, ...], "settings": {...}}``.
JSON has no NaN or infinity, so a run whose final loss is not finite has ``"loss": null``
(and ``"diverged": true``); GD runs, which use no batch order, have ``"seed": null``.
"""

from __future__ import annotations

import math
import time

from functional_fit import data as _data, engine, registry, sweep as _sweep
from functional_fit.checks import InputError, choice, positive_int
from functional_fit.precision import require
from functional_fit_cli import resources
from functional_fit_cli.files import together
from functional_fit_cli.options import (LENGTH_OPTIONS, add_data_options, add_dtype_option,
                                        add_model_options, add_optimizer_options, json_text,
                                        load_data_within, output_file, progress, refuse,
                                        resolve_model, resolve_optimizer)

#: Runs per compiled call at least, when a progress bar is shown: a few updates for 256 runs.
#: Short runs go more to a call, up to about a second of work (`engine.chunk_steps`).
CHUNK = 64
#: Bytes a run holds beyond its parameters: its results on the device and as numpy, its row
#: of the table or of the JSON, and the Python objects in between.
RUN_BYTES = 1000


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
    length.add_argument("--steps", type=int, help=f"GD's steps (default {_data.DEFAULT_STEPS})")
    length.add_argument("--epochs", type=int,
                        help=f"SGD's and Adam's epochs (default {_data.DEFAULT_EPOCHS})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"SGD's and Adam's batch ({_data.DEFAULT_BATCH_SIZE})")
    p.add_argument("--seeds", type=int, default=None, metavar="K",
                   help="SGD and Adam: batch orders of seeds 0..K-1, one line each (1)")
    add_data_options(p)
    add_dtype_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", metavar="PNG", type=output_file("--plot", plot=True),
                   help="write final loss vs learning rate to this file (.png, .pdf, .svg, ...)")
    return p


def lr_spec(text: str) -> tuple[float, float, int]:
    """``"START:STOP:COUNT"`` -> (start, stop, count); ``"VALUE"`` -> (value, value, 1).

    Checked (positive, finite, COUNT > 0) without making the rates; InputError names --lr.
    """
    parts = text.split(":")
    if len(parts) == 3 and not parts[2].strip().isdigit():
        raise InputError(f"--lr {text!r}: COUNT, the third field, must be a whole number of "
                         f"rates (START:STOP:COUNT, e.g. 1e-3:1:64), got {parts[2]!r}")
    try:
        if len(parts) == 1:
            spec = float(parts[0]), float(parts[0]), 1
        elif len(parts) == 3:
            spec = float(parts[0]), float(parts[1]), int(parts[2])
        else:
            spec = None
        if spec is not None:
            _sweep.log_lrs(spec[0], spec[1], 1)  # the same checks, one rate made
            return spec[0], spec[1], positive_int("count", spec[2])
    except (ValueError, InputError) as exc:
        raise InputError(f"--lr {text!r}: {exc}") from None
    raise InputError(f"--lr must be START:STOP:COUNT (log-spaced) or one value, got {text!r}")


def parse_lrs(text: str):
    """``"START:STOP:COUNT"`` -> COUNT log-spaced rates; ``"VALUE"`` -> one. InputError names --lr."""
    return _sweep.log_lrs(*lr_spec(text))


def _settings(args) -> dict:
    """The sweep's length keywords from the options (`data.fit_length`, named as typed)."""
    name = choice("--optimizer", args.optimizer, tuple(registry.OPTIMIZERS))
    batching = registry.OPTIMIZERS[name].batching
    length = _data.fit_length(None, batching, steps=args.steps, epochs=args.epochs,
                              batch_size=args.batch_size, defaults=True, names=LENGTH_OPTIONS,
                              what=f"--optimizer {name}")
    if length.full:
        refuse(args, ("--seeds",), "applies to minibatches: give --epochs" if batching == "any"
               else f"does not apply to --optimizer {name}, which uses the whole data every "
               "step (give --steps)")
        return {"steps": length.steps}
    seeds = 1 if args.seeds is None else positive_int("--seeds", args.seeds)
    return {
        "epochs": length.epochs,
        "batch_size": length.batch_size,
        "seeds": range(seeds),  # a list once the memory the run needs is known to be there
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


def _needs(n, n_lrs, n_seeds, n_params, kwargs) -> list:
    """The sweep's memory estimate for n data points (`options.require_memory`)."""
    runs = n_lrs * n_seeds
    per_run = RUN_BYTES + 48 * n_params  # parameters on the device, as numpy, padded copies
    needs = [(per_run * runs, f"the results of {runs} runs",
              "--lr" if n_lrs >= n_seeds else "--seeds")]
    if "epochs" in kwargs:  # one batch order per seed, (epochs, n) int64, and JAX's copy
        needs.append((16 * n_seeds * kwargs["epochs"] * n,
                      f"{n_seeds} batch orders of {kwargs['epochs']} epochs", "--epochs"))
    return needs


def run(args) -> int:
    start = time.perf_counter()
    pol = require(args.dtype)
    n_lrs = lr_spec(args.lr)[2]
    kwargs = _settings(args)
    optimizer = resolve_optimizer(args)
    model_name, model, degree, loss_name, loss = resolve_model(args)
    n_params = model.n_params(degree)
    n_seeds = len(kwargs.get("seeds", [None]))
    x, y, meta = load_data_within(args, lambda n: _needs(n, n_lrs, n_seeds, n_params, kwargs))
    if "seeds" in kwargs:
        kwargs["seeds"] = list(kwargs["seeds"])
    lrs = parse_lrs(args.lr)
    w0 = model.start_vector(n_params, pol.params)  # (p+1,): zeros, as the lecture; sine: 0, 1, 1

    # Runs per call: at least CHUNK (the bar moves), more while a call stays short.
    n, rt = x.shape[0], resources.runtime()
    length = _data.Length(kwargs.get("steps"), kwargs.get("epochs"), kwargs.get("batch_size"))
    per_call = engine.chunk_steps(length.batch_size or n, n_params, runtime=rt)
    chunk = max(CHUNK, per_call // length.total(n))
    with progress(n_lrs * n_seeds, "sweep", "fit") as update:  # updated once per chunk of runs
        result = _sweep.sweep(
            optimizer, w0, x.astype(pol.data), y.astype(pol.data), lrs,
            model=model.fn, loss=loss, chunk_size=chunk, progress=update, runtime=rt, **kwargs,
        )
    result = _sweep.as_numpy(result)
    runs = _runs(result)
    if args.plot:
        from functional_fit import plot

        what = f"{args.optimizer}, {model_name}" + (f" degree {degree}" if model.uses_degree else "")
        fig = plot.sweep_result({args.optimizer: result}, loss_name=loss_name.upper(),
                                title=f"{what}, {loss_name} loss")
        with together() as outputs:  # renamed into place once written
            plot.save(fig, outputs.file(args.plot))
    if args.json:
        settings = {"optimizer": args.optimizer, "model": model_name, "loss": loss_name,
                    "dtype": args.dtype, "data": meta, **kwargs}
        if optimizer.kwargs:
            settings["opt"] = dict(optimizer.kwargs)
        if model.uses_degree:
            settings["degree"] = degree
        print(json_text({"runs": runs, "settings": settings}))
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
