"""``functional-fit compare``: a torch module and its JAX port from files, the verdict as the exit
status (0 agree, 1 part, 2 bad input), the table or JSON the library's own."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import losses, models
from functional_fit_cli import main

#: The torch side: an MLP whose middle weight (4, 4) is square, so a port that forgets to
#: transpose it still runs.
TORCH = """
import parity

def make():
    return parity.models.MLP((1, 4, 4, 1), "tanh", seed=0)

def not_a_module():
    return 3

NUMBER = 7
"""
#: The right port: the project's own twin.
GOOD = """
from functional_fit.models import mlp as model
"""
#: A port that uses the square middle weight as stored, (out, in), instead of transposed.
BAD = """
import jax.numpy as jnp

def model(params, x):
    h = jnp.tanh(x @ params["0.weight"].T + params["0.bias"][None, :])  # (n, 4)
    h = jnp.tanh(h @ params["2.weight"] + params["2.bias"][None, :])  # the bug: not .T
    return h @ params["4.weight"].T + params["4.bias"][None, :]   # (n, 1)
"""
N = 30


@pytest.fixture()
def files(tmp_path):
    """Model files and data files in tmp_path: name -> path as a string."""
    for name, text in (("torch_model.py", TORCH), ("good.py", GOOD), ("bad.py", BAD),
                       ("broken.py", "import no_such_module_anywhere\n")):
        (tmp_path / name).write_text(text)
    x, y = ff.lecture_data(n=N)
    np.savez(tmp_path / "data.npz", x=x[:, None], y=y[:, None])
    np.savez(tmp_path / "only_x.npz", x=x[:, None])
    (tmp_path / "not.npz").write_text("x,y\n1,2\n")
    rows = "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(x, y))  # repr: exact
    (tmp_path / "data.csv").write_text("t,d\n" + rows)
    return {p.name: str(p) for p in tmp_path.iterdir()}


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``functional-fit compare ARGV``, in this process."""
    try:
        status = main(["compare", *argv])
    except SystemExit as exc:  # argparse's own usage errors (a choice, a number)
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def pair(files, jax="good.py"):
    return ["--torch", f"{files['torch_model.py']}:make", "--jax", f"{files[jax]}:model"]


def reference(jax_model, **kwargs):
    """`parity.compare` called from Python on the same pair and data (SGD, lr 0.05, 20 steps
    unless told)."""
    x, y = ff.lecture_data(n=N)
    module = parity.models.MLP((1, 4, 4, 1), "tanh", seed=0)
    args = {"optimizer": ("SGD", {"lr": 0.05}), "steps": 20, **kwargs}
    return parity.compare(jax_model, module, x[:, None], y[:, None], jax_loss=losses.mse,
                          torch_loss=parity.losses.mse, **args)


def test_a_right_port_agrees_exit_0_and_prints_the_librarys_table(files, capsys):
    status, out, err = run(capsys, *pair(files), "--data", files["data.npz"], "--opt", "lr=0.05",
                           "--steps", "20")
    assert status == 0, err
    expected = reference(models.mlp)
    assert expected.ok
    assert out.strip() == expected.table()
    assert out.strip().splitlines()[-1] == "agree: rounding only"


def test_a_transposed_weight_exits_1_naming_the_first_divergence(files, capsys):
    status, out, err = run(capsys, *pair(files, "bad.py"), "--data", files["data.npz"],
                           "--opt", "lr=0.05", "--steps", "20")
    assert status == 1, err
    bad = reference(lambda p, x: models.mlp({**p, "2.weight": p["2.weight"].T}, x))
    assert not bad.ok and bad.culprit == "model" and bad.first_divergence is not None
    assert f"first divergence: {bad.first_divergence}" in out
    assert out.strip().splitlines()[-1] == "DIFFER beyond rounding; first in the model"
    assert out.strip() == parity.testing.report(bad)  # the verdict, findings, then the table
    assert bad.table() in out and "kernel_layout" in out


def test_json_is_one_object_and_agrees_with_the_table(files, capsys):
    for jax, status_expected in (("good.py", 0), ("bad.py", 1)):
        argv = [*pair(files, jax), "--data", files["data.npz"], "--opt", "lr=0.05", "--steps", "20"]
        status, table, _ = run(capsys, *argv)
        json_status, out, err = run(capsys, *argv, "--json")
        assert status == json_status == status_expected, err
        doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
        assert doc["ok"] is (status == 0)
        assert doc["culprit"] == ("none" if doc["ok"] else "model")
        assert set(doc["parameters"]) == {"0.weight", "0.bias", "2.weight", "2.bias",
                                          "4.weight", "4.bias"}
        tol = doc["tolerance"]
        assert f"tolerance {tol['value']:.1e}: {tol['derivation']}" in table
        for name, p in doc["parameters"].items():
            row = next(line.split() for line in table.splitlines() if line.startswith(name + " "))
            assert row[1:4] == [f"{p['grad_diff']:.2e}", f"{p['max_path_diff']:.2e}",
                                str(p["worst_step"])]
            assert p["kind"] == "trained"
        first = doc["first_divergence"]
        if doc["ok"]:
            assert first is None and "first divergence" not in table
        else:
            assert f"first divergence: step {first['step']}, {first['parameter']}" in table
            assert first["difference"] > first["tolerance"] == doc["tolerance"]["value"]


def test_csv_columns_minibatches_and_optimizer_keywords(files, capsys):
    """A CSV's two columns as (n, 1), Adam with a tuple keyword, 2 epochs of batches of 8, in
    float32: the same table as the library's on the same arrays."""
    status, out, err = run(capsys, *pair(files), "--data", files["data.csv"], "--x", "t",
                           "--y", "d", "--optimizer", "Adam", "--opt", "lr=0.01",
                           "--opt", "betas=(0.8,0.99)", "--epochs", "2", "--batch-size", "8",
                           "--dtype", "float32")
    assert status == 0, err
    expected = reference(models.mlp, optimizer=("Adam", {"lr": 0.01, "betas": (0.8, 0.99)}),
                         steps=None, epochs=2, batch_size=8, dtype="float32")
    assert out.strip() == expected.table()
    assert expected.steps == 2 * 4  # ceil(30 / 8) batches an epoch


def test_csv_class_labels_for_cross_entropy(tmp_path, capsys):
    """With --loss cross_entropy a CSV's y column is (n,) integer labels: a 3-class logistic
    regression agrees with its twin; a label that is not a whole number is refused."""
    (tmp_path / "torch_logistic.py").write_text(
        "import parity\nmake = lambda: parity.models.Logistic(1, 3, seed=0)\n")
    (tmp_path / "jax_logistic.py").write_text("from functional_fit.models import logistic\n")
    x = np.linspace(-1.0, 1.0, 12)
    labels = np.array([0, 1, 2] * 4)
    (tmp_path / "classes.csv").write_text(
        "x,label\n" + "".join(f"{a!r},{k}\n" for a, k in zip(x.tolist(), labels)))
    argv = ["--torch", f"{tmp_path / 'torch_logistic.py'}:make", "--jax",
            f"{tmp_path / 'jax_logistic.py'}:logistic", "--data", str(tmp_path / "classes.csv"),
            "--y", "label", "--loss", "cross_entropy", "--opt", "lr=0.5", "--steps", "10"]
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    expected = parity.compare(models.logistic, parity.models.Logistic(1, 3, seed=0), x[:, None],
                              labels, jax_loss=losses.cross_entropy,
                              torch_loss=parity.losses.cross_entropy,
                              optimizer=("SGD", {"lr": 0.5}), steps=10)
    assert out.strip() == expected.table()
    (tmp_path / "classes.csv").write_text("x,label\n0.0,0\n1.0,0.5\n")
    status, out, err = run(capsys, *argv)
    assert status == 2 and "column 'label' must hold whole-number class labels" in err


def test_plot_is_written_whatever_the_verdict_and_never_over_the_data(files, tmp_path, capsys):
    png = tmp_path / "apart.png"
    status, _, err = run(capsys, *pair(files, "bad.py"), "--data", files["data.npz"],
                         "--steps", "3", "--plot", str(png))
    assert status == 1, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = tmp_path / "table.svg"  # a CSV under a name --plot takes: refused all the same
    table.write_text(Path(files["data.csv"]).read_text())
    status, _, err = run(capsys, *pair(files), "--data", str(table), "--x", "t", "--y", "d",
                         "--plot", str(table))
    assert status == 2 and "would overwrite the input --data" in err


def test_torch_and_jax_names_may_share_one_file(files, tmp_path, capsys):
    both = tmp_path / "both.py"
    both.write_text(TORCH + GOOD)
    status, _, err = run(capsys, "--torch", f"{both}:make", "--jax", f"{both}:model",
                         "--data", files["data.npz"], "--opt", "lr=0.05", "--steps", "5")
    assert status == 0, err


def _torch_loop(steps, *, scheduler=None, max_norm=None, norm_type=2.0):
    """(steps+1, ...) path of the MLP's middle weight under torch's own loop: full-batch SGD
    at lr 0.05, ``clip_grad_norm_`` between backward and step, the scheduler stepped after."""
    x, y = (torch.from_numpy(a[:, None]) for a in ff.lecture_data(n=N))
    module = parity.models.MLP((1, 4, 4, 1), "tanh", seed=0).double()
    opt = torch.optim.SGD(module.parameters(), lr=0.05)
    sched = None if scheduler is None else scheduler(opt)
    path = [module[2].weight.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(module(x), y).backward()
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm, norm_type)
        opt.step()
        if sched is not None:
            sched.step()
        path.append(module[2].weight.detach().clone())
    return torch.stack(path).numpy()


def test_a_scheduler_by_name_is_torchs_and_the_port_follows_it(files, capsys):
    """``--scheduler StepLR --sched step_size=2 --sched gamma=0.5``: the port agrees (exit 0),
    the table is the library's with that scheduler, whose torch path is torch's own loop with
    StepLR, and not the path without it."""
    status, out, err = run(capsys, *pair(files), "--data", files["data.npz"], "--opt", "lr=0.05",
                           "--steps", "6", "--scheduler", "StepLR", "--sched", "step_size=2",
                           "--sched", "gamma=0.5")
    assert status == 0, err
    step_lr = lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)  # noqa: E731
    expected = reference(models.mlp, steps=6, scheduler=step_lr)
    assert out.strip() == expected.table()
    np.testing.assert_allclose(expected.torch_path["2.weight"], _torch_loop(6, scheduler=step_lr),
                               rtol=1e-13, atol=1e-15)
    assert not np.allclose(expected.torch_path["2.weight"], _torch_loop(6), rtol=1e-6)


@pytest.mark.parametrize("norm_type", [None, "1", "inf"])
def test_max_norm_clips_as_torchs_clip_grad_norm(files, capsys, norm_type):
    """``--max-norm 0.05`` (clipping at every step: the gradients' norm is larger), in the
    2-norm, the 1-norm and the max: the port agrees, the table is the library's, whose torch
    path is torch's loop with ``clip_grad_norm_``."""
    extra = [] if norm_type is None else ["--norm-type", norm_type]
    status, out, err = run(capsys, *pair(files), "--data", files["data.npz"], "--opt", "lr=0.05",
                           "--steps", "5", "--max-norm", "0.05", *extra)
    assert status == 0, err
    p = 2.0 if norm_type is None else float(norm_type)
    expected = reference(models.mlp, steps=5, max_norm=0.05, norm_type=p)
    assert out.strip() == expected.table()
    np.testing.assert_allclose(expected.torch_path["2.weight"],
                               _torch_loop(5, max_norm=0.05, norm_type=p), rtol=1e-13, atol=1e-15)
    assert not np.allclose(expected.torch_path["2.weight"], _torch_loop(5), rtol=1e-6)


def test_matmul_precision_is_set_on_both_sides_and_said(files, capsys):
    status, out, err = run(capsys, *pair(files), "--data", files["data.npz"], "--opt", "lr=0.05",
                           "--steps", "3", "--matmul-precision", "high")
    assert status == 0, err
    assert "float32 matrix products: JAX high, torch high" in out
    assert out.strip() == reference(models.mlp, steps=3, matmul_precision="high").table()
    assert torch.get_float32_matmul_precision() == "highest"  # put back after the run


BAD_INPUTS = {
    # name: (argv builder over files, text the one line must hold)
    "no --torch": (lambda f: ["--jax", f"{f['good.py']}:model", "--data", f["data.npz"]],
                   "--torch FILE.py:NAME is required"),
    "missing file": (lambda f: ["--torch", "nowhere/torch_model.py:make", "--jax",
                                f"{f['good.py']}:model", "--data", f["data.npz"]],
                     "'nowhere/torch_model.py' does not exist"),
    "no name": (lambda f: ["--torch", f["torch_model.py"], "--jax", f"{f['good.py']}:model",
                           "--data", f["data.npz"]], "--torch must look like FILE.py:NAME"),
    "missing name": (lambda f: ["--torch", f"{f['torch_model.py']}:maker", "--jax",
                                f"{f['good.py']}:model", "--data", f["data.npz"]],
                     "defines no 'maker' (it defines NUMBER, make, not_a_module, parity)"),
    "import fails": (lambda f: ["--torch", f"{f['torch_model.py']}:make", "--jax",
                                f"{f['broken.py']}:model", "--data", f["data.npz"]],
                     "failed (ModuleNotFoundError: No module named 'no_such_module_anywhere')"),
    "factory not a module": (lambda f: ["--torch", f"{f['torch_model.py']}:not_a_module",
                                        "--jax", f"{f['good.py']}:model", "--data",
                                        f["data.npz"]],
                             "returned an object of type int, not an nn.Module"),
    "not callable": (lambda f: ["--torch", f"{f['torch_model.py']}:NUMBER", "--jax",
                                f"{f['good.py']}:model", "--data", f["data.npz"]],
                     "is of type int, not a function returning an nn.Module"),
    "jax not a model": (lambda f: ["--torch", f"{f['torch_model.py']}:make", "--jax",
                                   f"{f['torch_model.py']}:NUMBER", "--data", f["data.npz"]],
                        "is of type int, not a JAX model"),
    "jax model fails on the data": (lambda f: ["--torch", f"{f['torch_model.py']}:make",
                                               "--jax", f"{f['torch_model.py']}:not_a_module",
                                               "--data", f["data.npz"]],
                                    "jax_model fails on the parameters"),
    "npz without y": (lambda f: [*pair(f), "--data", f["only_x.npz"]],
                      "holds no array 'y' (it holds x; --x and --y name them)"),
    "not an npz": (lambda f: [*pair(f), "--data", f["not.npz"]],
                   "not an .npz file numpy can read"),
    "missing data": (lambda f: [*pair(f), "--data", "nowhere.npz"], "no such file"),
    "csv without the column": (lambda f: [*pair(f), "--data", f["data.csv"]],
                               "lacks column(s) x, y (header is t, d)"),
    "unknown optimizer": (lambda f: [*pair(f), "--data", f["data.npz"], "--optimizer", "Adamm"],
                          "--optimizer must be one of"),
    "--opt without =": (lambda f: [*pair(f), "--data", f["data.npz"], "--opt", "momentum"],
                        "--opt must look like KEY=VALUE"),
    "--opt not a literal": (lambda f: [*pair(f), "--data", f["data.npz"], "--opt", "lr=fast"],
                            "--opt lr=fast: 'fast' is not a number"),
    "--opt unknown keyword": (lambda f: [*pair(f), "--data", f["data.npz"], "--opt", "beta=1"],
                              "--opt: SGD has no keyword 'beta'"),
    "--opt bad value": (lambda f: [*pair(f), "--data", f["data.npz"], "--opt", "lr=-1.0"],
                        "--opt: lr must be non-negative"),
    "--epochs without --batch-size": (lambda f: [*pair(f), "--data", f["data.npz"],
                                                 "--epochs", "2"], "--batch-size"),
    "unknown loss": (lambda f: [*pair(f), "--data", f["data.npz"], "--loss", "huber"],
                     "--loss must be one of"),
    "unknown scheduler": (lambda f: [*pair(f), "--data", f["data.npz"], "--scheduler", "Step"],
                          "--scheduler must be one of StepLR, MultiStepLR"),
    "a scheduler that takes a function": (lambda f: [*pair(f), "--data", f["data.npz"],
                                                     "--scheduler", "LambdaLR"],
                                          "--scheduler must be one of"),
    "--sched unknown keyword": (lambda f: [*pair(f), "--data", f["data.npz"], "--scheduler",
                                           "StepLR", "--sched", "step=2"],
                                "--sched: StepLR has no keyword 'step'; it takes step_size"),
    "--sched keyword missing": (lambda f: [*pair(f), "--data", f["data.npz"], "--scheduler",
                                           "StepLR"], "--sched: StepLR needs step_size"),
    "--sched bad value": (lambda f: [*pair(f), "--data", f["data.npz"], "--scheduler",
                                     "StepLR", "--sched", "step_size=0"],
                          "--sched: StepLR: step_size must be a positive integer"),
    "--sched torch refuses": (lambda f: [*pair(f), "--data", f["data.npz"], "--scheduler",
                                         "OneCycleLR", "--sched", "max_lr=0.1"],
                              "--sched: OneCycleLR: ValueError: You must define either"),
    "--sched not a literal": (lambda f: [*pair(f), "--data", f["data.npz"], "--scheduler",
                                         "ReduceLROnPlateau", "--sched", "mode=max"],
                              "--sched mode=max: 'max' is not a number"),
    "--sched without --scheduler": (lambda f: [*pair(f), "--data", f["data.npz"], "--sched",
                                               "step_size=2"], "--sched needs --scheduler"),
    "--max-norm negative": (lambda f: [*pair(f), "--data", f["data.npz"], "--max-norm", "-1"],
                            "--max-norm must be positive"),
    "--max-norm not a number": (lambda f: [*pair(f), "--data", f["data.npz"], "--max-norm",
                                           "big"], "argument --max-norm: invalid float value"),
    "--norm-type without --max-norm": (lambda f: [*pair(f), "--data", f["data.npz"],
                                                  "--norm-type", "1"],
                                       "--norm-type needs --max-norm"),
    "--norm-type zero": (lambda f: [*pair(f), "--data", f["data.npz"], "--max-norm", "1",
                                    "--norm-type", "0"], "--norm-type must be positive"),
    "--matmul-precision unknown": (lambda f: [*pair(f), "--data", f["data.npz"],
                                              "--matmul-precision", "low"],
                                   "argument --matmul-precision: invalid choice: 'low'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(files, capsys, case):
    argv, says = BAD_INPUTS[case]
    status, out, err = run(capsys, *argv(files))
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("functional-fit compare: error: "), err
    assert says in lines[0], lines[0]
    assert out == "" and "Traceback" not in err


def test_the_console_script_gates_ci_by_its_exit_status(files):
    """In a process of its own, as CI runs it: 1 for the transposed weight, the culprit on
    stdout, no error on stderr."""
    proc = subprocess.run([sys.executable, "-m", "functional_fit", "compare",
                           *pair(files, "bad.py"), "--data", files["data.npz"], "--opt",
                           "lr=0.05", "--steps", "5"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "DIFFER beyond rounding; first in the model"
    assert "first divergence: step 1, " in proc.stdout
    assert "error" not in proc.stderr and "Traceback" not in proc.stderr
