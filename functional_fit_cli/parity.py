"""``functional-fit parity``: the parity matrix, JAX against torch, as a table or as JSON."""

from __future__ import annotations

from functional_fit_cli.options import json_text, progress, require_memory

#: The report's default number of cases (`comparison.report.DEFAULT_CASES`); kept here so
#: that building the parser does not import torch.
DEFAULT_CASES = 60
#: Bytes a case holds until the report is printed: its data set's share, its settings, result.
CASE_BYTES = 4096


def add_parser(sub):
    p = sub.add_parser(
        "parity",
        help="run the parity matrix (model x loss x optimizer x dtype) in JAX and torch",
        description="Fit every model x loss x optimizer x dtype in JAX and in torch, on the "
        "lecture's data and on random data drawn from --seed, and compare gradients and whole "
        "trajectories. Exits with status 1 when any case is outside its tolerance.",
    )
    p.add_argument("--cases", type=int, default=DEFAULT_CASES,
                   help=f"number of cases, 36 per data set, the lecture's first "
                   f"(default {DEFAULT_CASES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random data sets (0)")
    p.add_argument("--optimizers", default="lecture", choices=("lecture", "all"),
                   help="lecture: the lecture's gd, sgd and adam (default); all: also every "
                   "torch.optim optimizer, functional_fit.optim against torch.optim itself")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def run(args) -> int:
    from comparison import report as parity_report

    if isinstance(args.cases, int) and args.cases > 0:
        require_memory([(CASE_BYTES * args.cases, f"{args.cases} cases", "--cases")])
    parity_report.check_cases(args.cases, "--cases")
    n = len(parity_report.cases(args.cases, args.seed))  # bad --cases/--seed fail first
    if args.optimizers == "all":
        n += len(parity_report.optimizer_cases(args.seed))
    with progress(n, "parity", "case", delay=0) as update:
        results = parity_report.run(args.cases, args.seed, progress=update,
                                    optimizers=args.optimizers)
    if args.json:
        print(json_text(parity_report.to_json(results)))
    else:
        print(parity_report.table(results))
    return 0 if all(r.ok for r in results) else 1
