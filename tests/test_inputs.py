"""Bad input: a clear error naming the argument, never a framework traceback or a broadcast."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import InputError, fit, losses, models
from functional_fit.cli import main

X, Y = ff.lecture_data(n=20)
ORDER = ff.batch_order(20, 2, seed=0)
NAN_X = np.where(np.arange(20) == 3, np.nan, X)
INF_Y = np.where(np.arange(20) == 5, np.inf, Y)


def gd(**kw):
    args = {"w0": ff.zeros(2), "x": X, "y": Y, "lr": 1.0, "steps": 3} | kw
    return fit.gradient_descent(args.pop("w0"), args.pop("x"), args.pop("y"), **args)


def sgd(**kw):
    args = {"w0": ff.zeros(2), "x": X, "y": Y, "order": ORDER, "lr": 1.0, "batch_size": 5} | kw
    return fit.stochastic_gradient_descent(args.pop("w0"), args.pop("x"), args.pop("y"), args.pop("order"), **args)


API_CASES = {
    "y_hat (n,1) vs y (n,) mse": (lambda: losses.mse(jnp.zeros((20, 1)), jnp.zeros(20)), "y_hat"),
    "y_hat (n,1) vs y (n,) l1": (lambda: losses.l1(jnp.zeros((20, 1)), jnp.zeros(20)), "y_hat"),
    "torch y_hat (n,1) vs y (n,)": (lambda: parity.losses.l1(torch.zeros(20, 1), torch.zeros(20)), "y_hat"),
    "x and y lengths": (lambda: gd(y=Y[:-1]), "x and y"),
    "NaN in x": (lambda: gd(x=NAN_X), "x contains"),
    "inf in y": (lambda: gd(y=INF_Y), "y contains"),
    "empty data": (lambda: gd(x=np.array([]), y=np.array([])), "x is empty"),
    "2-D x": (lambda: gd(x=X.reshape(4, 5), y=Y.reshape(4, 5)), "x must be 1-D"),
    "w0 wrong length": (lambda: gd(w0=ff.zeros(3)), "w0"),
    "torch w wrong length": (lambda: parity.SimpleLinearModel(np.zeros(3)), "w must have shape (2,)"),
    "lr zero": (lambda: gd(lr=0.0), "lr"),
    "lr negative": (lambda: gd(lr=-1.0), "lr"),
    "lr NaN": (lambda: gd(lr=float("nan")), "lr"),
    "steps zero": (lambda: gd(steps=0), "steps"),
    "steps float": (lambda: gd(steps=2.5), "steps"),
    "batch size zero": (lambda: sgd(batch_size=0), "batch_size"),
    "order wrong shape": (lambda: sgd(order=ORDER[:, :10]), "order"),
    "order not a permutation": (lambda: sgd(order=np.zeros((2, 20), dtype=int)), "order"),
    "n zero": (lambda: ff.lecture_data(n=0), "n must be"),
    "noise NaN": (lambda: ff.lecture_data(noise=float("nan")), "noise"),
    "noise inf": (lambda: ff.lecture_data(noise=float("inf")), "noise"),
    "epochs zero": (lambda: ff.batch_order(10, 0), "epochs"),
    "unknown dtype": (lambda: ff.precision.policy("float16"), "dtype"),
    "unknown model": (lambda: models.get("cubic"), "model"),
    "unknown loss": (lambda: losses.get("huber"), "loss"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_api_errors_name_the_argument(name):
    call, fragment = API_CASES[name]
    with pytest.raises(InputError) as info:
        call()
    assert fragment in str(info.value)


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("csv")
    files = {
        "no_y": "x,z\n1,2\n2,3\n",
        "not_number": "x,y\n1,2\n2,abc\n",
        "header_only": "x,y\n",
        "nan": "x,y\n1,2\n2,nan\n",
        "empty": "",
        "binary": None,
    }
    for name, text in files.items():
        if text is None:
            (d / f"{name}.csv").write_bytes(b"\xff\xfe\x00\x81x,y")
        else:
            (d / f"{name}.csv").write_text(text)
    return d


def run_cli(argv) -> int:
    """The CLI's exit status, whether it returned it or argparse raised SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


CLI_CASES = [
    (["--n", "0"], "--n"),
    (["--n", "-5"], "--n"),
    (["--noise", "nan"], "--noise"),
    (["--noise", "inf"], "--noise"),
    (["--dtype", "float16"], "--dtype"),
    (["--order-seed", "-1"], "--order-seed"),
    (["--data", "{d}/missing.csv"], "no such file"),
    (["--data", "{d}/no_y.csv"], "lacks column(s) y"),
    (["--data", "{d}/not_number.csv"], "line 3"),
    (["--data", "{d}/header_only.csv"], "empty"),
    (["--data", "{d}/nan.csv"], "non-finite"),
    (["--data", "{d}/empty.csv"], "empty"),
    (["--data", "{d}/binary.csv"], "not a text CSV"),
    (["--data", "{d}/nan.csv", "--n", "5"], "--data cannot be combined"),
]


@pytest.mark.parametrize("argv,fragment", CLI_CASES)
def test_cli_errors_are_one_line(argv, fragment, csv_files, capsys, tmp_path):
    out = tmp_path / "out"
    argv = [a.format(d=csv_files) for a in argv]
    assert run_cli(["lecture", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_cli_error_in_a_fresh_process_has_no_traceback(csv_files):
    proc = subprocess.run(
        [sys.executable, "-m", "functional_fit", "lecture", "--data", f"{csv_files}/no_y.csv"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "lacks column(s) y" in proc.stderr and proc.stdout == ""
