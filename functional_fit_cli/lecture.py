"""``functional-fit lecture``: every step of the lecture in JAX and in torch, side by side."""

from __future__ import annotations

import time
from pathlib import Path

from functional_fit.checks import DivergenceError, InputError, nonnegative_int
from functional_fit_cli.files import together, write_text
from functional_fit_cli.options import (add_data_options, add_dtype_option, json_text,
                                        load_data_within, output_dir, output_file, progress)
from functional_fit.precision import policy

#: Bytes the lecture holds per data point at its peak: the degree-12 Adam fit's 500 epochs
#: (its batch order, 8 kB a point; torch's per-step snapshots, 20 kB; both frameworks' paths,
#: 5 kB) and the other fits' paths.
BYTES_PER_POINT = 34_000


def add_parser(sub):
    p = sub.add_parser(
        "lecture",
        help="run the whole lecture in JAX and torch and compare",
        description="Run every step of the gradient-descent lecture in JAX (functional_fit) and "
        "in torch (parity) and print a side-by-side table: step, JAX result, torch result, "
        "max |Δ|, and the lecture's printed value on the lecture's own data.",
    )
    add_data_options(p)
    add_dtype_option(p)
    p.add_argument("--order-seed", type=int, default=0,
                   help="seed of the batch order SGD and Adam share in both frameworks (0)")
    p.add_argument("--out", metavar="DIR", type=output_dir("--out", names=written_names),
                   help="write results.json, every lecture figure as PNG, the handout page "
                   "index.html and manifest.json (what was written) into DIR (all or nothing: "
                   "a folder from an earlier run is replaced as a whole; a folder holding "
                   "anything else is refused unless --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out DIR as a whole even when it holds files this command "
                   "did not write (they are deleted)")
    p.add_argument("--html", metavar="FILE", type=output_file("--html"),
                   help="write only the handout page: one self-contained HTML file, the code "
                   "of both frameworks side by side, results and figures")
    p.add_argument("--no-explorer", action="store_true",
                   help="leave the optimizer explorer (six optimizers' precomputed paths in "
                   "JAX and torch, about 1.4 MB) out of the handout page")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def written_names() -> list[str]:
    """The names ``lecture --out DIR`` writes into DIR (its manifest aside)."""
    from comparison import figures as lecture_figures  # matplotlib: only for an existing DIR

    return ["results.json", "index.html", *(f"{name}.png" for name in lecture_figures.ORDER)]


def _num(v) -> str:
    return f"{v:.10g}"


def _vec(v) -> str:
    if len(v) <= 3:
        return "[" + ", ".join(f"{a:.8g}" for a in v) + "]"
    return f"[{v[0]:.6g}, {v[1]:.6g}, …, {v[-1]:.6g}] ({len(v)})"


def _cell(side: dict | None, key: str) -> str:
    if side is None or key not in side:
        return ""
    v = side[key]
    return _vec(v) if isinstance(v, list) else _num(v)


def table(result) -> str:
    """The side-by-side table of a `comparison.lecture.LectureResult`, as text."""
    rows = [("step", "", "JAX", "torch", "max |Δ|", "lecture printed")]
    for name, s in result.steps.items():
        keys = [k for k in ("value", "grad", "params", "loss") if k in s["jax"]]
        printed = s["lecture"]
        for i, key in enumerate(keys):
            note = _cell(printed, key)
            if note and not printed.get("reproducible", True):
                note += " *"
            rows.append((
                name if i == 0 else "",
                key,
                _cell(s["jax"], key),
                _cell(s["torch"], key),
                f"{s['max_abs_diff']:.2e}" if i == 0 else "",
                note,
            ))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _describe(meta: dict, dtype: str) -> str:
    if meta["source"] == "csv":
        dropped = f", {meta['dropped']} row(s) dropped" if meta.get("dropped") else ""
        src = f"{meta['path']} (n={meta['n']}{dropped})"
    else:
        src = f"{'the lecture' if meta['lecture'] else 'synthetic'} data (n={meta['n']}, seed={meta['seed']}, noise={meta['noise']})"
    pol = policy(dtype)
    return f"{src}; dtype {dtype} ({pol.params} parameters, {pol.data} data)"


def _diverged(exc, args, meta: dict, x, y) -> InputError:
    """A lecture fit's divergence, with advice the lecture's user can follow: its learning
    rates are the lecture's own (no ``--lr``), so rescale the data, or try rates with
    ``sweep`` or ``surface``."""
    import numpy as np

    if exc.what is None:
        return exc
    data = f"--data {args.data}" if args.data else "--data CSV"
    scale = max(float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    option = f"--data {args.data}" if args.data else f"--noise {meta['noise']}"
    return InputError(
        f"{option}: {exc.where}: the fit diverged: {exc.what}; the lecture's learning rates are "
        f"its own and too large for data of this scale (|x|, |y| up to {scale:.3g}): rescale x "
        f"and y (divide them by a power of ten), or choose a learning rate with "
        f"`functional-fit sweep {data} --lr START:STOP:COUNT` or `surface {data} --lr LR`")


def _compute(args, x, y, meta):
    """(the `comparison.lecture.LectureResult`, its figures as PNG bytes or None).

    An InputError about the data names the option that made it (``--n 1``, ``--data FILE``);
    a fit that diverged gets advice the lecture's user can follow (`_diverged`).
    """
    from comparison import lecture

    run_kwargs = dict(dtype=args.dtype, order_seed=args.order_seed, data_meta=meta)
    option = f"--data {args.data}" if args.data else f"--n {meta['n']}"
    # With more than two cores, JAX (and half the figures) run in a second process meanwhile
    # torch's loops run here (comparison.background.worthwhile).
    try:
        if args.out or args.html:
            from comparison import figures as lecture_figures  # matplotlib now

            with progress(len(lecture.STEPS) + 3, "lecture", "step", delay=0) as update:
                return lecture_figures.run_with_figures(x, y, progress=update, **run_kwargs)
        with progress(len(lecture.STEPS) + 1, "lecture", "step", delay=0) as update:
            return lecture.run(x, y, progress=update, **run_kwargs), None
    except DivergenceError as exc:
        raise _diverged(exc, args, meta, x, y) from None
    except InputError as exc:
        raise InputError(f"{option}: {exc}") from None


def explorer_data(args, x, y) -> dict:
    """The optimizer explorer's page data (`comparison.explorer.data`), kept in the command
    line's cache (`cache.kept`): it depends only on the data, the batch order's seed, the
    sources and the libraries' versions, and a second run with the same reads it back."""
    import numpy as np

    from comparison import explorer
    from functional_fit_cli import cache

    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    key = x64.tobytes() + b"|" + y64.tobytes() + f"|{args.order_seed}".encode()
    return cache.kept("explorer", key, lambda: explorer.data(x64, y64, order_seed=args.order_seed),
                      getattr(args, "cache_folder", None))


def _page_parts(args, x, y) -> dict:
    """What the handout page shows beyond the run: the export, the turning surfaces and (unless
    ``--no-explorer``, or more data than `comparison.explorer.MAX_POINTS`, which says so on
    stderr) the optimizer explorer; made once for both pages."""
    import sys

    from comparison import explorer, handout

    with_explorer = not args.no_explorer and len(x) <= explorer.MAX_POINTS
    if not args.no_explorer and not with_explorer:
        print(f"functional-fit lecture: note: the page leaves the optimizer explorer out: "
              f"{len(x)} data points, more than {explorer.MAX_POINTS} (--no-explorer says so "
              "quietly)", file=sys.stderr)
    return {"export": handout.exported(), "surfaces": handout.turning_surfaces(x, y),
            "explorer": explorer_data(args, x, y) if with_explorer else None}


def _write(args, doc: dict, result, pngs, x, y) -> list:
    """Write ``--out DIR`` and ``--html FILE`` together (`files.together`): both, or neither.

    Returns the figures' paths in DIR (empty without ``--out``).
    """
    if not (args.out or args.html):
        return []
    from comparison import figures as lecture_figures, handout

    figures = []
    parts = _page_parts(args, x, y)
    with together() as outputs:  # each to its temporary; renamed into place when all are written
        if args.out:
            out = outputs.folder(args.out)
            write_text(Path(out) / "results.json", json_text(doc, indent=2) + "\n")
            figures = lecture_figures.write_pngs(pngs, out)
            handout.write(Path(out) / "index.html", result, pngs, **parts)
        if args.html:
            handout.write(outputs.file(args.html), result, pngs, **parts)
    return figures


def run(args) -> int:
    from comparison import lecture

    start = time.perf_counter()
    pol = policy(args.dtype)  # an unknown --dtype fails before any work
    nonnegative_int("--order-seed", args.order_seed)
    x, y, meta = load_data_within(
        args, lambda n: [(BYTES_PER_POINT * n, f"the fits' paths and batch orders for {n} "
                          "points", "--data" if args.data else "--n")])
    try:
        lecture.check_scale(x, y, pol.data)  # the lecture squares the data (its MSE fit)
    except InputError as exc:
        option = f"--data {args.data}" if args.data else f"--noise {meta['noise']}"
        raise InputError(f"{option}: {exc}") from None

    result, pngs = _compute(args, x, y, meta)
    doc = result.to_json()
    figures = _write(args, doc, result, pngs, x, y)
    if args.json:
        print(json_text(doc))
        return 0
    print(f"functional-fit lecture: {_describe(meta, args.dtype)}")
    print()
    print(table(result))
    if meta.get("lecture"):
        print()
        print("* the lecture shuffled with an unseeded DataLoader: its SGD and Adam numbers came "
              "from another batch order, so they are shown, not compared.")
    print()
    wrote = []
    if args.out:
        wrote.append(f"results.json, {len(figures)} figures (PNG) and index.html to {args.out}")
    if args.html:
        wrote.append(f"the handout page to {args.html}")
    wrote = "; wrote " + " and ".join(wrote) if wrote else ""
    print(f"done in {time.perf_counter() - start:.1f} s{wrote}")
    return 0
