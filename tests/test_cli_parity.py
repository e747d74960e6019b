"""``functional-fit parity``: the parity matrix as a table or JSON, deterministic, failing loudly."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import parity
from functional_fit import InputError, data, fit, losses, models
from comparison import report as parity_report
from functional_fit_cli import main
from functional_fit.tolerances import TRAJECTORY_FLOAT32, TRAJECTORY_FLOAT64, rel_err

KEYS = ["name", "dtype", "max_grad_diff", "max_traj_diff", "tol", "ok"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "functional_fit", "parity", *args],
                          capture_output=True, text=True, timeout=600)


def test_default_matrix_has_at_least_50_cases_over_every_axis():
    todo = parity_report.cases()
    assert len(todo) >= 50
    assert len({c.name + c.dtype for c, _ in todo}) == len(todo)  # no duplicates
    lecture = [c for c, ds in todo if ds.name == "lecture"]
    assert {c.model for c in lecture} == {"linear", "poly"}
    assert {c.loss for c in lecture} == {"l1", "mse"}
    assert {c.optimizer for c in lecture} == {"gd", "sgd", "adam"}
    assert {c.dtype for c in lecture} == {"float64", "float32"}
    assert any(ds.name.startswith("random") for _, ds in todo)
    # A random data set whose batch size does not divide n: the ragged last batch is covered.
    ds = next(ds for _, ds in todo if ds.name.startswith("random"))
    assert ds.x.shape[0] % ds.batch_size != 0


def test_json_is_exact_schema_and_byte_identical_across_runs():
    first, second = cli("--cases", "4", "--seed", "3", "--json"), cli("--cases", "4", "--seed", "3", "--json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # byte for byte
    doc = json.loads(first.stdout)
    assert list(doc) == ["cases"] and len(doc["cases"]) == 4
    for case in doc["cases"]:
        assert list(case) == KEYS
        assert case["dtype"] in ("float64", "float32")
        assert case["tol"] == (TRAJECTORY_FLOAT64 if case["dtype"] == "float64" else TRAJECTORY_FLOAT32)
        assert case["ok"] is True
        assert 0 <= case["max_grad_diff"] <= case["tol"] and 0 <= case["max_traj_diff"] <= case["tol"]
    names = [c.name for c, _ in parity_report.cases(40, seed=3)]
    assert names[:4] == [c["name"] for c in doc["cases"]]
    assert names[36].startswith("random1/")  # the lecture's 36, then random data


def test_report_numbers_match_an_independent_run(lecture_xy):
    """The report's trajectory difference for one case, recomputed from the two libraries."""
    (case, ds), = [cd for cd in parity_report.cases(36) if cd[0].name == "lecture/poly2/mse/sgd"
                   and cd[0].dtype == "float64"]
    got = parity_report.run_case(case, ds)
    x, y = lecture_xy
    lr = 0.5 / sum(1.5 ** (2 * k) for k in range(3))  # the domain's rule, max|x| = 1.5
    order = data.batch_order(100, parity_report.EPOCHS, ds.order_seed)
    res = fit.stochastic_gradient_descent(np.zeros(3), x, y, order, model=models.polynomial,
                                          loss=losses.mse, lr=lr, batch_size=11)
    path = parity.fit.stochastic_gradient_descent(
        parity.PolynomialModel(p=2, dtype=torch.float64), parity.losses.mse,
        parity.data.dataset(x, y), lr=lr, nepochs=parity_report.EPOCHS, batch_size=11, order=order)
    assert got.max_traj_diff == rel_err(np.asarray(res.path), path)
    assert got.ok and got.tol == TRAJECTORY_FLOAT64


def test_table_and_nonzero_exit_when_a_case_fails(monkeypatch, capsys):
    real = parity_report.run_case

    def broken(case, ds):
        r = real(case, ds)
        return r._replace(max_traj_diff=1.0, ok=False) if case.optimizer == "adam" else r

    def broken_with_cache(case, ds, grad_cache=None):
        return broken(case, ds)

    monkeypatch.setattr(parity_report, "run_case", broken_with_cache)
    assert main(["parity", "--cases", "6"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["case", "dtype", "max", "grad", "diff", "max", "traj", "diff", "tol"]
    rows = [line.split() for line in out[2:8]]
    assert [r[0] for r in rows] == ["lecture/linear/l1/gd"] * 2 + ["lecture/linear/l1/sgd"] * 2 + ["lecture/linear/l1/adam"] * 2
    assert [r[-1] for r in rows] == ["pass"] * 4 + ["FAIL"] * 2
    assert "4 of 6 cases within tolerance; 2 FAILED" in out[-1]


def test_all_pass_exits_zero(capsys):
    assert main(["parity", "--cases", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["dtype"] for c in doc["cases"]] == ["float64", "float32"]


@pytest.mark.parametrize("args,named", [
    (["--cases", "0"], "cases must be a positive integer"),
    (["--cases", "-3"], "cases must be a positive integer"),
    (["--seed", "-1"], "seed must be a non-negative integer"),
    (["--cases", "many"], "--cases"),
])
def test_bad_arguments_one_line(args, named):
    proc = cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_optimizer_matrix_every_torch_optimizer_both_dtypes_byte_stable():
    """``--optimizers all``: functional_fit.optim against torch.optim itself, every setting."""
    proc = cli("--cases", "1", "--optimizers", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    rows = doc["cases"][1:]
    assert len(rows) == len(parity_report.optimizer_cases())
    names = {r["name"].split("/")[3].split("(")[0] for r in rows}
    assert names == {"SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam",
                     "Adadelta", "Rprop", "ASGD", "Adafactor"}
    assert {r["dtype"] for r in rows} == {"float64", "float32"}
    assert all(r["ok"] and r["max_grad_diff"] is None for r in rows)
    # Deterministic: rows run again in this process give the same bytes.
    todo = parity_report.optimizer_cases()
    for k in (0, 17, len(todo) - 1):
        again = parity_report.run_optimizer_case(*todo[k]).to_json()
        assert json.dumps(again) == json.dumps(rows[k])


def test_optimizer_matrix_fails_a_naive_port(monkeypatch):
    """The matrix can fail: optax's own rmsprop (eps inside the square root) in place of ours."""
    import optax

    from functional_fit import optim, registry

    naive = lambda lr, steps_per_epoch=1, **kw: optax.rmsprop(lr)  # noqa: E731
    monkeypatch.setitem(registry.OPTIMIZERS, "RMSprop",
                        registry.Optimizer("RMSprop", "any", naive))
    ds = next(parity_report.datasets())
    bad = parity_report.run_optimizer_case("RMSprop", {}, "full", "float64", ds)
    assert not bad.ok and bad.max_traj_diff > 1e3 * bad.tol
    assert optim.OPTIMIZERS["RMSprop"] is optim.RMSprop  # ours untouched


def _memory_maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/maps")
def test_a_long_run_holds_one_data_sets_programs_at_most(monkeypatch):
    """Each data set compiles programs for its own n; the kernel allows a process 65,530 memory
    maps, and each case's programs hold about 80. Over twelve data sets (one case each) the
    count must not grow with the run's length, as it did until the process aborted."""
    monkeypatch.setattr(parity_report, "matrix",  # one case per data set: a long run, quickly
                        lambda name: [parity_report.Case(name, "poly", 2, "mse", "sgd", "float64")])
    counts = []
    parity_report.run(12, progress=lambda name: counts.append(_memory_maps()))
    assert len(counts) == 12
    assert counts[-1] - counts[1] < 100, counts  # kept: about 75 more per data set


def test_cases_beyond_the_bound_are_refused_before_any_case_runs():
    with pytest.raises(InputError, match=f"cases must be at most {parity_report.MAX_CASES}"):
        parity_report.run(parity_report.MAX_CASES + 1)
    assert len(parity_report.cases(parity_report.MAX_CASES)) == parity_report.MAX_CASES
