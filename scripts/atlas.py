"""The atlas: each torch.optim setting, its name-for-name optax port, and functional_fit.optim.

For every row (one torch optimizer setting) it trains the issue's problem with torch.optim
itself, with the optax call a port would write name for name, and with functional_fit.optim,
and writes the relative difference of the final parameters, max |a - b| / max |b| (as the
issue measured it), into the table of ``README.md`` between ``<!-- atlas:start -->`` and
``<!-- atlas:end -->``.

The problem: a 1 -> 16 -> 1 tanh network on the lecture's data, MSE, full batch, float64,
1,000 steps (`functional_fit.tolerances.OPTIM_STEPS`), from a start drawn with numpy
(`comparison.problems`). The schedulers' table (between ``<!-- schedule-atlas:start -->`` and its end marker): each
torch scheduler on an optimizer of lr 0.1, stepped 300 times, against its
`functional_fit.optim.lr_scheduler` call and the optax schedule of the same name, both read at
the int32 counts optax passes; max |a - b| / max |b| over the rates.

Learning rates are the issue's, except where its rate makes this run
reach a chaotic stretch within 1,000 steps (the paths of any two correct implementations then
part, by 1e-6 to 1e-2): RMSprop 5e-4 (the issue's 1e-3 parts at step 944), Adagrad 0.01 (0.1:
step 123), NAdam 2e-3 (1e-2: step 478), Adadelta 0.1 (1.0: step 266), Rprop and Adafactor
1e-3 (their default 1e-2 parts within 1,000 steps: 2e-2 and 1.5e-6 apart at the end), and
LBFGS 3 steps of at most 5 iterations (5 steps of its default 20 part by 7e-5). Muon takes the
2-D weights, AdamW the biases, on both sides, as torch's Muon docstring advises; SparseAdam
gets torch its gradients as sparse rows, as an ``nn.Embedding(sparse=True)`` would.

    python scripts/atlas.py                  # measure, rewrite both tables in README.md
    python scripts/atlas.py --check          # exit 1 if the committed table is not current
    python scripts/atlas.py --figure a.png   # also draw plot.atlas (naive vs verified)

Numbers are printed to two significant digits. ``--check`` (and tests/test_atlas.py) compares
a difference above 1e-9 to two digits, and one at or below 1e-9 (rounding, whose last digits
may change from machine to machine) by that alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import functional_fit.optim as fo  # noqa: E402
from functional_fit.tolerances import OPTIM_STEPS, TRAJECTORY_FLOAT64, rel_err  # noqa: E402

from comparison.problems import jax_train, make, torch_train  # noqa: E402

ATLAS_MD = ROOT / "README.md"
START, END = "<!-- atlas:start -->", "<!-- atlas:end -->"
HIDDEN = 16
#: A difference at or below this is rounding: reported, but compared only against it.
AGREE = TRAJECTORY_FLOAT64


class Row(NamedTuple):
    """One torch setting: optimizer name and keywords, the naive port, the optax one-liner."""

    name: str
    kwargs: dict
    naive: str | None  # the optax call a port writes name for name; None where optax has none
    one_liner: str | None  # an optax expression equal to torch's, where optax alone does it
    clip: float | None = None  # clip_grad_norm_(max_norm) before each step
    rest: dict | None = None  # AdamW's keywords for the parameters that are not 2-D (Muon)
    steps: int | None = None  # steps of this row, when not the atlas's


def _sgd(**kw):
    return dict(lr=0.01, **kw)


ROWS = [
    Row("SGD", _sgd(), "optax.sgd(0.01)", "optax.sgd(0.01)"),
    Row("SGD", _sgd(momentum=0.9), "optax.sgd(0.01, momentum=0.9)",
        "optax.sgd(0.01, momentum=0.9)"),
    Row("SGD", _sgd(momentum=0.9, nesterov=True), "optax.sgd(0.01, momentum=0.9, nesterov=True)",
        "optax.sgd(0.01, momentum=0.9, nesterov=True)"),
    Row("SGD", _sgd(momentum=0.9, weight_decay=0.001),
        "optax.chain(optax.add_decayed_weights(0.001), optax.sgd(0.01, momentum=0.9))",
        "optax.chain(optax.add_decayed_weights(0.001), optax.sgd(0.01, momentum=0.9))"),
    Row("SGD", _sgd(momentum=0.9, dampening=0.5), "optax.sgd(0.01, momentum=0.9)", None),
    Row("Adam", dict(lr=0.01), "optax.adam(0.01)", "optax.adam(0.01)"),
    Row("Adam", dict(lr=0.01, weight_decay=0.01), "optax.adamw(0.01, weight_decay=0.01)",
        "optax.chain(optax.add_decayed_weights(0.01), optax.adam(0.01))"),
    Row("Adam", dict(lr=0.01, amsgrad=True), "optax.amsgrad(0.01)", None),
    Row("AdamW", dict(lr=0.01), "optax.adamw(0.01)", "optax.adamw(0.01, weight_decay=0.01)"),
    Row("RMSprop", dict(lr=0.0005), "optax.rmsprop(0.0005)",
        "optax.rmsprop(0.0005, decay=0.99, eps=1e-08, eps_in_sqrt=False)"),
    Row("Adagrad", dict(lr=0.01), "optax.adagrad(0.01)", None),
    Row("Adamax", dict(lr=0.002), "optax.adamax(0.002)", "optax.adamax(0.002)"),
    Row("NAdam", dict(lr=0.002), "optax.nadam(0.002)", None),
    Row("NAdam", dict(lr=0.002, weight_decay=0.01, decoupled_weight_decay=True),
        "optax.nadamw(0.002, weight_decay=0.01)", None),
    Row("RAdam", dict(lr=0.01), "optax.radam(0.01)", None),
    Row("Adadelta", dict(lr=0.1), "optax.adadelta(0.1)", "optax.adadelta(0.1)"),
    Row("Rprop", dict(lr=0.001), "optax.rprop(0.001)", None),
    Row("ASGD", dict(lr=0.01), None, None),
    Row("Adafactor", dict(lr=0.001), "optax.adafactor(0.001)", None),
    Row("Muon", dict(lr=0.02), "optax.contrib.muon(0.02)", None, rest=dict(lr=0.001)),
    Row("SparseAdam", dict(lr=0.01), None, None),
    Row("LBFGS", dict(lr=1, max_iter=5), "optax.lbfgs()", None, steps=3),
    Row("LBFGS", dict(lr=1, max_iter=5, line_search_fn="strong_wolfe"), "optax.lbfgs()", None,
        steps=3),
    Row("SGD", _sgd(momentum=0.9), "optax.chain(optax.clip_by_global_norm(1.0), "
        "optax.sgd(0.01, momentum=0.9))", None, clip=1.0),
]


def call(row: Row) -> str:
    """The keywords as Python: ``SGD(lr=0.01, momentum=0.9)``."""
    return f"{row.name}({', '.join(f'{k}={v!r}' for k, v in row.kwargs.items())})"


def torch_setting(row: Row) -> str:
    clip = f"clip_grad_norm_(max_norm={row.clip}), then " if row.clip else ""
    steps = f", {row.steps} steps" if row.steps else ""
    if row.rest is not None:
        return f"{call(row)} on the weights, {call(Row('AdamW', row.rest, None, None))} on the rest"
    return clip + call(row) + steps


def ours(row: Row) -> str:
    if row.rest is not None:
        return (f"optax.partition({{'muon': {call(row)}, "
                f"'adamw': {call(Row('AdamW', row.rest, None, None))}}}, by_ndim)")
    return f"optax.chain(clip_grad_norm({row.clip}), {call(row)})" if row.clip else call(row)


class _SparseRows(torch.optim.SparseAdam):
    """torch's SparseAdam given each gradient as sparse rows (those with a nonzero entry), as
    an ``nn.Embedding(sparse=True)`` gives it; it refuses a dense gradient."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = p.grad.to_sparse(sparse_dim=1)
        return super().step(closure)


class _MuonAndAdamW(torch.optim.Optimizer):
    """torch's Muon on the 2-D parameters and AdamW on the rest, as Muon's docstring advises:
    one optimizer object over the module's parameters, for `torch_train`."""

    def __init__(self, params, muon: dict, adamw: dict):
        params = list(params)
        super().__init__(params, {})
        self.muon = torch.optim.Muon([p for p in params if p.ndim == 2], **muon)
        self.adamw = torch.optim.AdamW([p for p in params if p.ndim != 2], **adamw)

    def step(self, closure=None):
        self.muon.step()
        self.adamw.step()


def _by_ndim(params):
    return jax.tree.map(lambda p: "muon" if p.ndim == 2 else "adamw", params)


def optimizers(row: Row, module) -> tuple:
    """(torch optimizer over `module`, functional_fit.optim's transformation) of `row`."""
    if row.rest is not None:
        ours_tx = optax.partition({"muon": fo.OPTIMIZERS[row.name](**row.kwargs),
                                   "adamw": fo.AdamW(**row.rest)}, _by_ndim)
        return _MuonAndAdamW(module.parameters(), row.kwargs, row.rest), ours_tx
    cls = _SparseRows if row.name == "SparseAdam" else getattr(torch.optim, row.name)
    ours_tx = fo.OPTIMIZERS[row.name](**row.kwargs)
    if row.clip:
        ours_tx = optax.chain(fo.clip_grad_norm(row.clip), ours_tx)
    return cls(module.parameters(), **row.kwargs), ours_tx


class Result(NamedTuple):
    """One measured row: the table's cells, and the numbers behind them."""

    torch: str
    ours: str
    one_liner: str  # "" where optax alone does not do it
    naive: float | None  # relative difference of the naive port's final parameters
    verified: float  # relative difference of functional_fit.optim's
    one_liner_diff: float | None  # of the one-liner (not in the table; must agree)


def measure(row: Row, steps: int = OPTIM_STEPS) -> Result:
    """Train the problem with torch, the naive port, functional_fit.optim and the one-liner."""
    clip = (row.clip, 2.0) if row.clip else None
    steps = row.steps or steps

    def final_jax(tx):
        pb = make("mlp", hidden=HIDDEN)
        path = jax_train(pb.params, pb.x, pb.y, model=pb.model, loss=pb.loss, optimizer=tx,
                         steps=steps)
        return np.concatenate([path[k][-1].ravel() for k in sorted(path)])

    pb = make("mlp", hidden=HIDDEN)
    opt, ours_tx = optimizers(row, pb.module)
    tpath = torch_train(pb.module, pb.loss_fn, *map(torch.from_numpy, (pb.x, pb.y)),
                        optimizer=opt, clip=clip, steps=steps)
    theirs = np.concatenate([tpath[k][-1].ravel() for k in sorted(tpath)])
    naive = (None if row.naive is None else  # the table's text, run
             rel_err(final_jax(eval(row.naive, {"optax": optax})), theirs))
    verified = rel_err(final_jax(ours_tx), theirs)
    if row.one_liner is None:
        one = None
    elif row.one_liner == row.naive:
        one = naive
    else:
        one = rel_err(final_jax(eval(row.one_liner, {"optax": optax})), theirs)
    return Result(torch_setting(row), ours(row), row.one_liner or "", naive, verified, one)


def measure_all(rows=ROWS, steps: int = OPTIM_STEPS) -> list[Result]:
    return [measure(row, steps) for row in rows]


# --------------------------------------------------------------------------- the table


def fmt(value: float) -> str:
    """Two significant digits; 0 as 0."""
    return "0" if value == 0 else f"{value:.1e}"


HEADER = ("| torch setting | `functional_fit.optim` call "
          "| optax one-liner (where optax alone does it) "
          "| rel. diff., name-for-name optax | rel. diff., `functional_fit.optim` |\n"
          "|---|---|---|---|---|\n")


def table(results: list[Result]) -> str:
    lines = [HEADER]
    for r in results:
        one = f"`{r.one_liner}`" if r.one_liner else "—"
        naive = "—" if r.naive is None else fmt(r.naive)
        lines.append(f"| `{r.torch}` | `{r.ours}` | {one} | {naive} | "
                     f"{fmt(r.verified)} |\n")
    return "".join(lines)


def parse(text: str, start: str = START, end: str = END) -> list[tuple[str, ...]]:
    """The rows of the table between the markers of `text`, as tuples of cell strings."""
    body = text[text.index(start) + len(start):text.index(end)]
    rows = [line for line in body.strip().splitlines() if line.startswith("| `")]
    return [tuple(cell.strip() for cell in line.strip("|\n").split(" | ")) for line in rows]


def _same_number(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if x <= AGREE and y <= AGREE:
        return True
    return a == b


def differences(committed: list[tuple[str, ...]], fresh: list[tuple[str, ...]]) -> list[str]:
    """What makes the committed table stale: [] when it is current."""
    if len(committed) != len(fresh):
        return [f"{len(committed)} rows committed, {len(fresh)} measured"]
    out = []
    for c, f in zip(committed, fresh):
        if c[:3] != f[:3]:
            out.append(f"row {f[0]}: committed {c[:3]}")
        elif not all(a == b if "—" in (a, b) else _same_number(a, b)
                     for a, b in zip(c[3:], f[3:])):
            out.append(f"row {f[0]}: committed {c[3:]}, measured {f[3:]}")
    return out


def _between(text: str, start: str, end: str, body: str) -> str:
    return text[: text.index(start) + len(start)] + "\n" + body + text[text.index(end):]


def write(results: list[Result], schedules: list[ScheduleResult],
          path: Path = ATLAS_MD) -> None:
    new = _between(path.read_text(), START, END, table(results))
    new = _between(new, SCHEDULE_START, SCHEDULE_END, schedule_table(schedules))
    from functional_fit_cli.files import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(new)


# --------------------------------------------------------------------------- the schedulers

SCHEDULE_START, SCHEDULE_END = "<!-- schedule-atlas:start -->", "<!-- schedule-atlas:end -->"
#: Each schedule is read at counts 0 .. SCHEDULE_STEPS - 1 (a scheduler with a length of its
#: own, OneCycleLR, at counts up to it), as optax passes them: int32.
SCHEDULE_STEPS = 300


class ScheduleRow(NamedTuple):
    """One torch scheduler: its call on an optimizer ``opt`` of lr `lr`, ours, optax's."""

    torch: str  # evaluated with torch.optim.lr_scheduler's names and ``opt``
    ours: str  # evaluated with functional_fit.optim.lr_scheduler's names
    naive: str | None  # the optax schedule a port writes name for name; None where optax has none
    lr: float = 0.1
    steps: int = SCHEDULE_STEPS
    metrics: tuple | None = None  # ReduceLROnPlateau's: the metric of each step


_SGDR = ("optax.sgdr_schedule([dict(init_value=0.1, peak_value=0.1, warmup_steps=0, "
         "decay_steps=d, end_value=0.0) for d in (10, 20, 40, 80, 160)])")

#: A loss that falls, then stays flat from step 50: ReduceLROnPlateau reduces 11 steps later,
#: and again every 11 steps, until torch's eps (1e-8) stops it.
PLATEAU_METRICS = tuple(max(1.0 / (k + 1), 0.02) for k in range(SCHEDULE_STEPS))

SCHEDULE_ROWS = [
    ScheduleRow("LambdaLR(opt, lambda i: 1 / (i + 1))", "LambdaLR(0.1, lambda i: 1 / (i + 1))",
                "lambda count: 0.1 * (1 / (count + 1))"),
    ScheduleRow("MultiplicativeLR(opt, lambda i: 0.98)", "MultiplicativeLR(0.1, lambda i: 0.98)",
                "optax.exponential_decay(0.1, 1, 0.98)"),
    ScheduleRow("StepLR(opt, step_size=30, gamma=0.5)", "StepLR(0.1, step_size=30, gamma=0.5)",
                "optax.exponential_decay(0.1, 30, 0.5, staircase=True)"),
    ScheduleRow("MultiStepLR(opt, milestones=[30, 80], gamma=0.1)",
                "MultiStepLR(0.1, milestones=[30, 80], gamma=0.1)",
                "optax.piecewise_constant_schedule(0.1, {30: 0.1, 80: 0.1})"),
    ScheduleRow("ConstantLR(opt, factor=0.5, total_iters=5)",
                "ConstantLR(0.1, factor=0.5, total_iters=5)",
                "optax.piecewise_constant_schedule(0.05, {5: 2.0})"),
    ScheduleRow("LinearLR(opt, start_factor=0.1, total_iters=10)",
                "LinearLR(0.1, start_factor=0.1, total_iters=10)",
                "optax.linear_schedule(0.01, 0.1, 10)"),
    ScheduleRow("ExponentialLR(opt, gamma=0.98)", "ExponentialLR(0.1, gamma=0.98)",
                "optax.exponential_decay(0.1, 1, 0.98)"),
    ScheduleRow("SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=10), "
                "CosineAnnealingLR(opt, T_max=90)], milestones=[10])",
                "SequentialLR(0.1, [LinearLR(0.1, 0.1, total_iters=10), "
                "CosineAnnealingLR(0.1, T_max=90)], milestones=[10])",
                "optax.join_schedules([optax.linear_schedule(0.01, 0.1, 10), "
                "optax.cosine_decay_schedule(0.1, 90)], [10])"),
    ScheduleRow("PolynomialLR(opt, total_iters=150, power=2.0)",
                "PolynomialLR(0.1, total_iters=150, power=2.0)",
                "optax.polynomial_schedule(0.1, 0.0, 2.0, 150)"),
    ScheduleRow("CosineAnnealingLR(opt, T_max=100)", "CosineAnnealingLR(0.1, T_max=100)",
                "optax.cosine_decay_schedule(0.1, 100)"),
    ScheduleRow("ChainedScheduler([ConstantLR(opt, factor=0.5, total_iters=20), "
                "ExponentialLR(opt, gamma=0.98)])",
                "ChainedScheduler(0.1, [ConstantLR(0.1, factor=0.5, total_iters=20), "
                "ExponentialLR(0.1, gamma=0.98)])", None),
    ScheduleRow("CyclicLR(opt, base_lr=0.001, max_lr=0.1, step_size_up=20)",
                "CyclicLR(0.001, 0.1, step_size_up=20)", None),
    ScheduleRow("CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=2)",
                "CosineAnnealingWarmRestarts(0.1, T_0=10, T_mult=2)", _SGDR),
    ScheduleRow("OneCycleLR(opt, max_lr=0.1, total_steps=100)",
                "OneCycleLR(0.1, total_steps=100)",
                "optax.cosine_onecycle_schedule(100, 0.1)", steps=100),
    ScheduleRow("ReduceLROnPlateau(opt, patience=10)", "ReduceLROnPlateau(0.1, patience=10)",
                "optax.contrib.reduce_on_plateau(patience=10)", metrics=PLATEAU_METRICS),
]


class ScheduleResult(NamedTuple):
    torch: str
    ours: str
    naive: str  # "" where optax has none
    naive_diff: float | None
    verified: float


def torch_rates(row: ScheduleRow) -> np.ndarray:
    """(steps,) torch's ``param_groups[0]["lr"]`` after k = 0 .. steps-1 scheduler steps."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=row.lr, momentum=0.9)  # CyclicLR cycles a momentum
    names = dict(vars(torch.optim.lr_scheduler), opt=opt)
    sched = eval(row.torch, names)
    rates = []
    for k in range(row.steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if row.metrics is None:
            sched.step()
        else:
            sched.step(row.metrics[k])
    return np.array(rates)


def rates(schedule, steps: int) -> np.ndarray:
    """(steps,) a schedule at the counts optax passes it, int32 0 .. steps-1, under the
    standard promotion an optax update runs under (`functional_fit.engine.step`)."""
    with jax.numpy_dtype_promotion("standard"):
        out = jax.vmap(schedule)(jnp.arange(steps, dtype=jnp.int32))
    return np.asarray(out, dtype=np.float64)


def metric_rates(transformation, row: ScheduleRow) -> np.ndarray:
    """(steps,) the rate each step of a metric-driven transformation applies: its update of
    the step lr * 1, given metric k as ``value=``, as `functional_fit.fit.train` gives it."""
    def one(state, metric):
        updates, state = transformation.update(jnp.full((1,), row.lr), state, value=metric)
        return state, updates[0]

    with jax.numpy_dtype_promotion("standard"):
        _, out = jax.lax.scan(one, transformation.init(jnp.zeros(1)), jnp.asarray(row.metrics))
    return np.asarray(out, dtype=np.float64)


def measure_schedule(row: ScheduleRow) -> ScheduleResult:
    theirs = torch_rates(row)
    read = rates if row.metrics is None else metric_rates
    steps = row.steps if row.metrics is None else row
    ours = read(eval(row.ours, dict(vars(fo.lr_scheduler))), steps)
    naive = (None if row.naive is None else
             rel_err(read(eval(row.naive, {"optax": optax}), steps), theirs))
    return ScheduleResult(row.torch, row.ours, row.naive or "", naive, rel_err(ours, theirs))


SCHEDULE_HEADER = ("| torch scheduler | `functional_fit.optim.lr_scheduler` call "
                   "| name-for-name optax schedule | rel. diff., optax "
                   "| rel. diff., `functional_fit.optim` |\n|---|---|---|---|---|\n")


def schedule_table(results: list[ScheduleResult]) -> str:
    lines = [SCHEDULE_HEADER]
    for r in results:
        naive = f"`{r.naive}`" if r.naive else "—"
        diff = "—" if r.naive_diff is None else fmt(r.naive_diff)
        lines.append(f"| `{r.torch}` | `{r.ours}` | {naive} | {diff} | {fmt(r.verified)} |\n")
    return "".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if README.md's table is not what this machine measures")
    parser.add_argument("--figure", metavar="PNG", help="also write plot.atlas to PNG")
    args = parser.parse_args(argv)
    results = measure_all()
    schedules = [measure_schedule(row) for row in SCHEDULE_ROWS]
    bad = [r.torch for r in results if r.verified > AGREE
           or (r.one_liner_diff is not None and r.one_liner_diff > AGREE)]
    bad += [r.torch for r in schedules if r.verified > AGREE]
    if bad:
        print(f"functional_fit.optim or a one-liner differs from torch by more than {AGREE:g}: "
              f"{', '.join(bad)}", file=sys.stderr)
        return 1
    if args.figure:
        from functional_fit import plot

        plot.save(plot.atlas([(r.torch, r.naive, r.verified) for r in results]), args.figure)
    if args.check:
        text = ATLAS_MD.read_text()
        stale = differences(parse(text), parse(START + table(results) + END))
        stale += differences(
            parse(text, SCHEDULE_START, SCHEDULE_END),
            parse(SCHEDULE_START + schedule_table(schedules) + SCHEDULE_END,
                  SCHEDULE_START, SCHEDULE_END))
        for line in stale:
            print(line, file=sys.stderr)
        return 1 if stale else 0
    write(results, schedules)
    print(table(results) + "\n" + schedule_table(schedules), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
