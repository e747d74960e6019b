"""Sweeps: every member is the single fit, a sample is the torch fit, and the CLI around them.

References are independent of the sweep: `functional_fit.fit`'s checked single fits (one
compiled scan per run, no vmap) and `parity.fit`'s torch loops on the same batch order.
"""

import json
from typing import NamedTuple

import numpy as np
import pytest

import functional_fit as ff
import parity.sweep
from functional_fit import fit, losses, registry
from functional_fit import sweep as sw
from functional_fit_cli import main
from functional_fit.tolerances import TRAJECTORY_FLOAT64, rel_err

#: A sweep member against the single fit, float64. Both run the same scan, and the sweep's
#: Jacobian product sums the same terms in the same order, so only the last bit can move
#: (measured: 0 to 9e-15 on the lecture's 5,000-step degree-12 Adam fit).
MEMBER_FLOAT64 = 1e-12
#: A sweep member against torch, float64: the parity suite's trajectory tolerance.
TORCH_FLOAT64 = TRAJECTORY_FLOAT64


class Case(NamedTuple):
    optimizer: str
    model: str
    degree: int
    loss: str
    lrs: tuple
    length: int  # steps (gd) or epochs (sgd, adam)
    n: int = 40
    batch_size: int = 10
    seeds: tuple | None = (0, 7)


CASES = {
    "gd_abs_linear": Case("gd", "linear", 1, "l1", (0.5, 6.0, 20.0), 40, seeds=None),
    "gd_mse_quad": Case("gd", "poly", 2, "mse", (0.05, 0.3, 1.0), 30, seeds=None),
    "sgd_abs_quad_ragged": Case("sgd", "poly", 2, "l1", (0.1, 1.0), 4, n=37),
    "sgd_mse_linear": Case("sgd", "linear", 1, "mse", (0.01, 0.1), 4),
    "adam_abs_cubic_ragged": Case("adam", "poly", 3, "l1", (0.01, 0.1, 0.5), 4, n=37, batch_size=8),
    "adam_mse_poly12": Case("adam", "poly", 12, "mse", (1e-3, 1e-2), 3),
}


def starts(case):
    """Two starts, (2, p+1): zeros as in the lecture, and a fixed non-zero vector."""
    p1 = registry.model(case.model).n_params(case.degree)
    return np.stack([np.zeros(p1), np.linspace(0.5, -0.5, p1)])


def run_sweep(case, **kw):
    x, y = ff.lecture_data(n=case.n)
    length = {"steps": case.length} if case.optimizer == "gd" else {
        "epochs": case.length, "batch_size": case.batch_size, "seeds": case.seeds}
    res = sw.sweep(case.optimizer, starts(case), x, y, case.lrs, model=registry.model(case.model).fn,
                   loss=registry.loss(case.loss), **length, **kw)
    return sw.as_numpy(res), x, y


def single_fit(case, x, y, w0, lr, seed):
    order = None if case.optimizer == "gd" else ff.batch_order(case.n, case.length, seed)
    return fit.run(case.optimizer, w0, x, y, model=registry.model(case.model).fn, loss=registry.loss(case.loss),
                   lr=lr, steps=case.length, order=order, batch_size=case.batch_size)


MEMBER_CASES = [(name, "jacobian") for name in CASES] + [
    ("gd_mse_quad", "autodiff"), ("adam_abs_cubic_ragged", "autodiff")]


@pytest.mark.parametrize("name, model_grad", MEMBER_CASES)
def test_every_member_is_the_single_fit(name, model_grad):
    case = CASES[name]
    res, x, y = run_sweep(case, return_paths=True, model_grad=model_grad)
    n_seeds = 1 if case.seeds is None else len(case.seeds)
    n_runs = n_seeds * 2 * len(case.lrs)
    p1 = registry.model(case.model).n_params(case.degree)
    assert res.params.shape == (n_runs, p1) and res.loss.shape == res.diverged.shape == (n_runs,)
    assert res.paths.shape[0] == n_runs and res.paths.shape[2] == p1
    # The grid: seed-major, then start, then learning rate fastest.
    np.testing.assert_array_equal(res.lr.reshape(n_seeds, 2, -1)[0, 0], case.lrs)
    np.testing.assert_array_equal(res.init.reshape(n_seeds, 2, -1)[:, :, 0], [[0, 1]] * n_seeds)
    assert not res.diverged.any()
    w0s = starts(case)
    for r in range(n_runs):
        seed = None if res.seed[r] == sw.NO_SEED else int(res.seed[r])
        ref = fit.as_numpy(single_fit(case, x, y, w0s[res.init[r]], float(res.lr[r]), seed))
        assert rel_err(res.params[r], ref.params) < MEMBER_FLOAT64, r
        assert rel_err(res.paths[r], ref.path) < MEMBER_FLOAT64, r
        assert rel_err(res.loss[r], fit.full_loss(ref.params, x, y, model=registry.model(case.model).fn,
                                                  loss=registry.loss(case.loss))) < MEMBER_FLOAT64


@pytest.mark.parametrize("name", ["gd_mse_quad", "sgd_abs_quad_ragged", "adam_abs_cubic_ragged"])
def test_sampled_members_equal_the_torch_loop(name):
    """Three members of each sweep against `parity.fit`'s torch loops on the same batch order."""
    case = CASES[name]
    res, x, y = run_sweep(case)
    w0s = starts(case)
    theirs = parity.sweep.sweep(case.optimizer, w0s, x, y, case.lrs, model=case.model,
                                loss=case.loss, **_torch_length(case))
    for r in np.random.default_rng(0).choice(res.lr.shape[0], size=3, replace=False):
        assert rel_err(res.params[r], theirs.params[r]) < TORCH_FLOAT64
        assert rel_err(res.loss[r], theirs.loss[r]) < TORCH_FLOAT64
    for key in ("lr", "seed", "init", "diverged"):
        np.testing.assert_array_equal(getattr(res, key), getattr(theirs, key))


def _torch_length(case):
    if case.optimizer == "gd":
        return {"steps": case.length}
    return {"epochs": case.length, "batch_size": case.batch_size, "seeds": case.seeds}


@pytest.mark.parametrize("name", ["gd_abs_linear", "sgd_mse_linear"])
def test_torch_func_vmap_sweep_equals_the_torch_loop(name):
    case = CASES[name]
    x, y = ff.lecture_data(n=case.n)
    kw = dict(model=case.model, loss=case.loss, **_torch_length(case))
    loop = parity.sweep.sweep(case.optimizer, starts(case), x, y, case.lrs, **kw)
    vmapped = parity.sweep.sweep(case.optimizer, starts(case), x, y, case.lrs, vmap=True, **kw)
    assert rel_err(vmapped.params, loop.params) < TORCH_FLOAT64
    np.testing.assert_array_equal(vmapped.diverged, loop.diverged)


def test_torch_vmap_refuses_adam():
    x, y = ff.lecture_data(n=20)
    with pytest.raises(ff.InputError, match="Adam"):
        parity.sweep.sweep("adam", np.zeros(2), x, y, [0.1], epochs=1, vmap=True)


def test_divergence_is_flagged_not_raised():
    """MSE GD blows up for a large lr: flagged, loss inf; the torch loop flags the same runs."""
    x, y = ff.lecture_data(n=40)
    lrs = [0.3, 1.0, 1e6]
    res = sw.as_numpy(sw.sweep("gd", np.zeros(2), x, y, lrs, loss=losses.mse, steps=50))
    np.testing.assert_array_equal(res.diverged, [False, False, True])
    assert not np.isfinite(res.loss[2]) and np.isfinite(res.loss[:2]).all()
    theirs = parity.sweep.sweep("gd", np.zeros(2), x, y, lrs, loss="mse", steps=50)
    np.testing.assert_array_equal(theirs.diverged, res.diverged)
    with pytest.raises(ff.fit.DivergenceError):  # the single checked fit raises instead
        fit.gradient_descent(np.zeros(2), x, y, loss=losses.mse, lr=1e6, steps=50)


def test_chunks_and_progress_give_the_same_result():
    case = CASES["adam_abs_cubic_ragged"]
    whole, _, _ = run_sweep(case)
    seen = []
    chunked, _, _ = run_sweep(case, chunk_size=4, progress=seen.append)
    assert sum(seen) == whole.lr.shape[0] and len(seen) == 2  # 6 pairs in chunks of 4, 2 seeds
    for a, b in zip(whole, chunked):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_lecture_dtype_keeps_float32_params():
    x, y = ff.lecture_data()
    res = sw.sweep("gd", ff.zeros(2, "lecture"), x, y, [6.0], steps=50)
    assert res.params.dtype == np.float32
    ref = fit.gradient_descent(ff.zeros(2, "lecture"), x, y, lr=6.0, steps=50)
    np.testing.assert_array_equal(np.asarray(res.params[0]), np.asarray(ref.params))


def test_log_lrs_and_best():
    np.testing.assert_allclose(sw.log_lrs(1e-3, 1.0, 4), [1e-3, 1e-2, 1e-1, 1.0])
    res = sw.SweepResult(np.array([1.0, 2.0, 3.0]), np.zeros(3, int), np.zeros(3, int), None,
                         np.array([2.0, np.inf, 1.0]), np.array([False, True, False]), None)
    assert sw.best(res) == 2


BAD = [
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(lrs=[0.1, -1.0]), "lrs"),
    (dict(lrs=[0.1, float("nan")]), "lrs"),
    (dict(lrs=[]), "lrs"),
    (dict(w0s=np.zeros(3)), r"w0s must have shape \(2,\) for the linear model"),
    (dict(w0s=np.zeros((2, 2, 2))), "w0s"),
    (dict(w0s=[[0.0, float("inf")]]), "w0s"),
    (dict(seeds=[0]), "seeds"),
    (dict(epochs=3), "epochs"),
    (dict(steps=0), "steps"),
    (dict(optimizer="adam", steps=3), "steps"),
    (dict(optimizer="adam", epochs=1, seeds=[-1]), "seeds"),
    (dict(optimizer="sgd", epochs=1, batch_size=0), "batch_size"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(model_grad="numeric"), "model_grad"),
    (dict(x=[1.0, 2.0], y=[1.0]), "x and y"),
]


@pytest.mark.parametrize("bad, name", BAD)
def test_bad_input_names_the_argument(bad, name):
    args = dict(optimizer="gd", w0s=np.zeros(2), x=np.linspace(-1, 1, 10), y=np.ones(10), lrs=[0.1])
    args.update(bad)
    kw = {k: v for k, v in args.items() if k not in ("optimizer", "w0s", "x", "y", "lrs")}
    with pytest.raises(ff.InputError, match=name):
        sw.sweep(args["optimizer"], args["w0s"], args["x"], args["y"], args["lrs"], **kw)


# --------------------------------------------------------------------------- CLI


def cli(capsys, *argv):
    code = main(["sweep", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_runs(capsys):
    code, out, _ = cli(capsys, "--optimizer", "gd", "--loss", "mse", "--lr", "0.3:1e6:3",
                       "--steps", "50", "--n", "40", "--dtype", "float64", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [set(r) for r in doc["runs"]] == [{"lr", "seed", "loss", "diverged"}] * 3
    assert [r["diverged"] for r in doc["runs"]] == [False, False, True]
    assert doc["runs"][2]["loss"] is None and doc["runs"][0]["seed"] is None
    np.testing.assert_allclose([r["lr"] for r in doc["runs"]], [0.3, np.sqrt(0.3e6), 1e6])
    x, y = ff.lecture_data(n=40)
    ref = fit.gradient_descent(np.zeros(2), x, y, loss=losses.mse, lr=0.3, steps=50)
    assert rel_err(doc["runs"][0]["loss"], fit.full_loss(ref.params, x, y, loss=losses.mse)) < 1e-14


def test_cli_seeds_table_and_plot(capsys, tmp_path):
    png = tmp_path / "sweep.png"
    code, out, _ = cli(capsys, "--optimizer", "sgd", "--model", "poly", "--degree", "2",
                       "--lr", "0.01:1:3", "--epochs", "2", "--seeds", "2", "--n", "30",
                       "--plot", str(png))
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best: lr=" in out and "6 fits, 0 diverged" in out
    code, out, _ = cli(capsys, "--optimizer", "adam", "--lr", "0.1", "--epochs", "1", "--n", "20",
                       "--seeds", "2", "--json")
    assert [r["seed"] for r in json.loads(out)["runs"]] == [0, 1]


def test_cli_sine_starts_where_it_can_move(capsys):
    """From zeros the sine model's amplitude and frequency have zero gradient, so a fit can do
    no better than a constant: mean((y - mean(y))^2). From the model's own start it does."""
    code, out, _ = cli(capsys, "--model", "sine", "--loss", "mse", "--optimizer", "gd",
                       "--lr", "0.01:1:8", "--steps", "100", "--n", "60", "--dtype", "float64",
                       "--json")
    assert code == 0
    x, y = ff.lecture_data(n=60)
    best = min(r["loss"] for r in json.loads(out)["runs"] if not r["diverged"])
    constant = float(np.mean((y - y.mean()) ** 2))
    assert best < 0.9 * constant
    start = registry.model("sine").start_vector(3)
    ref = fit.gradient_descent(start, x, y, model="sine", loss=losses.mse, lr=0.01, steps=100)
    assert rel_err(json.loads(out)["runs"][0]["loss"],
                   fit.full_loss(ref.params, x, y, model="sine", loss=losses.mse)) < 1e-14


@pytest.mark.parametrize("argv, needle", [
    (["--lr", "1:2"], "--lr"),
    (["--lr", "0:1:3"], "--lr"),
    (["--lr", "a:1:3"], "--lr"),
    (["--optimizer", "gd", "--epochs", "3"], "--steps"),
    (["--optimizer", "gd", "--seeds", "2"], "--seeds"),
    (["--optimizer", "adam", "--steps", "3"], "--epochs"),
    (["--optimizer", "adam", "--seeds", "0"], "--seeds"),
    (["--model", "poly", "--degree", "-1"], "--degree"),
])
def test_cli_errors_are_one_line(capsys, argv, needle):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_plot_marks_diverged_runs(tmp_path):
    from functional_fit import plot

    x, y = ff.lecture_data(n=40)
    res = sw.sweep("gd", np.zeros(2), x, y, [0.3, 1.0, 1e6], loss=losses.mse, steps=50)
    assert np.asarray(res.diverged).tolist() == [False, False, True]
    fig = plot.sweep_result({"gd": res})
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["gd", "diverged"] and ax.get_xscale() == "log"
    line, marks = ax.get_lines()
    assert np.isnan(line.get_ydata()[-1]) and marks.get_xdata().tolist() == [1e6]
    plot.save(plot.sweep_result(res), tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0
