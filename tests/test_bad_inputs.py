"""Bad input, one table: each row through the Python API and through the command line.

For every row: the API raises `InputError` (or `PrecisionError`) whose message names the
argument; the CLI exits non-zero with exactly one line on stderr, naming the option, with no
traceback; and no output file (nor a temporary beside it) is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import InputError, fit, losses, models, registry, surface
from parity.comparison import lecture, report as parity_report
from functional_fit.cli import main

X, Y = ff.lecture_data(n=20)
ORDER = ff.batch_order(20, 2, seed=0)


def csv(tmp: Path, name: str, text: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


GOOD = "x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(X.tolist(), Y.tolist()))

# Each row: id -> (files to create {name: text}, api(tmp) call or None, cli argv (with {tmp}),
#                  what the API message must contain, what the CLI line must contain,
#                  output paths under tmp the CLI was asked to write).
ROWS = {
    "csv missing": (
        {}, lambda t: ff.read_csv(t / "nope.csv"),
        ["lecture", "--data", "{tmp}/nope.csv", "--out", "{tmp}/out"], "no such file", "no such file", ["out"]),
    "csv malformed number": (
        {"bad.csv": "x,y\n1,2\n3,abc\n"}, lambda t: ff.read_csv(t / "bad.csv"),
        ["lecture", "--data", "{tmp}/bad.csv", "--out", "{tmp}/out"], "line 3", "line 3", ["out"]),
    "csv lacks y": (
        {"noy.csv": "x,z\n1,2\n"}, lambda t: ff.read_csv(t / "noy.csv"),
        ["lecture", "--data", "{tmp}/noy.csv", "--out", "{tmp}/out"], "lacks column(s) y", "lacks column(s) y", ["out"]),
    "csv empty file": (
        {"empty.csv": ""}, lambda t: ff.read_csv(t / "empty.csv"),
        ["lecture", "--data", "{tmp}/empty.csv", "--out", "{tmp}/out"], "is empty", "is empty", ["out"]),
    "csv header only": (
        {"head.csv": "x,y\n"}, lambda t: ff.read_csv(t / "head.csv"),
        ["lecture", "--data", "{tmp}/head.csv", "--out", "{tmp}/out"], "x is empty", "x is empty", ["out"]),
    "csv binary": (
        {"bin.csv": b"\xff\xfe\x00\x81garbage"}, lambda t: ff.read_csv(t / "bin.csv"),
        ["lecture", "--data", "{tmp}/bin.csv", "--out", "{tmp}/out"], "not a text CSV", "not a text CSV", ["out"]),
    "csv is a directory": (
        {}, lambda t: ff.read_csv(t),
        ["lecture", "--data", "{tmp}", "--out", "{tmp}/out"], "is a directory", "is a directory", ["out"]),
    "csv short row": (
        {"short.csv": "x,y\n1,2\n3\n"}, lambda t: ff.read_csv(t / "short.csv"),
        ["lecture", "--data", "{tmp}/short.csv", "--out", "{tmp}/out"], "line 3", "line 3", ["out"]),
    "csv NaN": (
        {"nan.csv": "x,y\n1,2\nnan,3\n"}, lambda t: ff.read_csv(t / "nan.csv"),
        ["lecture", "--data", "{tmp}/nan.csv", "--out", "{tmp}/out"], "line 3, column 'x': missing value", "line 3, column 'x': missing value", ["out"]),
    "csv inf": (
        {"inf.csv": "x,y\n1,2\n2,inf\n"}, lambda t: ff.read_csv(t / "inf.csv"),
        ["surface", "--data", "{tmp}/inf.csv", "--grid", "4x4", "--out", "{tmp}/s.npz", "--plot", "{tmp}/s.png"],
        "line 3, column 'y': inf is not a finite", "line 3, column 'y': inf is not a finite", ["s.npz", "s.png"]),
    "n zero": (
        {}, lambda t: ff.lecture_data(n=0),
        ["lecture", "--n", "0", "--out", "{tmp}/out"], "n must be a positive integer", "--n must be a positive integer", ["out"]),
    "noise NaN": (
        {}, lambda t: ff.lecture_data(noise=float("nan")),
        ["lecture", "--noise", "nan", "--out", "{tmp}/out"], "noise must be finite", "--noise must be finite", ["out"]),
    "noise inf": (
        {}, lambda t: ff.lecture_data(noise=float("inf")),
        ["sweep", "--noise", "inf", "--plot", "{tmp}/sw.png"], "noise must be finite", "--noise must be finite", ["sw.png"]),
    "seed negative": (
        {}, lambda t: ff.lecture_data(seed=-1),
        ["lecture", "--seed", "-1", "--out", "{tmp}/out"], "seed must be a non-negative integer", "seed", ["out"]),
    "unknown dtype": (
        {}, lambda t: lecture.run(X, Y, dtype="float16"),
        ["lecture", "--dtype", "float16", "--out", "{tmp}/out"], "dtype must be one of", "--dtype", ["out"]),
    "unknown model": (
        {}, lambda t: registry.model("cubic").fn,
        ["surface", "--model", "cubic", "--grid", "4x4", "--out", "{tmp}/s.npz"], "model must be one of", "model", ["s.npz"]),
    "unknown loss": (
        {}, lambda t: registry.loss("huber"),
        ["sweep", "--loss", "huber", "--plot", "{tmp}/sw.png"], "loss must be one of", "--loss", ["sw.png"]),
    "lr zero": (
        {}, lambda t: fit.gradient_descent(np.zeros(2), X, Y, lr=0.0),
        ["surface", "--lr", "0", "--grid", "4x4", "--out", "{tmp}/s.npz"], "lr must be positive", "lr", ["s.npz"]),
    "lr negative": (
        {}, lambda t: fit.adam_sgd(np.zeros(2), X, Y, ORDER, lr=-0.1),
        ["sweep", "--lr", "-1", "--plot", "{tmp}/sw.png"], "lr must be positive", "--lr", ["sw.png"]),
    "steps zero": (
        {}, lambda t: fit.gradient_descent(np.zeros(2), X, Y, steps=0),
        ["surface", "--steps", "0", "--grid", "4x4", "--out", "{tmp}/s.npz"], "steps must be a positive integer", "steps", ["s.npz"]),
    "batch size zero": (
        {}, lambda t: fit.stochastic_gradient_descent(np.zeros(2), X, Y, ORDER, batch_size=0),
        ["sweep", "--optimizer", "sgd", "--epochs", "2", "--batch-size", "0", "--plot", "{tmp}/sw.png"],
        "batch_size must be a positive integer", "batch", ["sw.png"]),
    "cases zero": (
        {}, lambda t: parity_report.run(0),
        ["parity", "--cases", "0"], "cases must be a positive integer", "cases must be a positive integer", []),
    "grid too large": (
        {}, lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, np.zeros(2**16), np.zeros(2**15)),
        ["surface", "--grid", "100000x100000", "--out", "{tmp}/s.npz", "--plot", "{tmp}/s.png"],
        "larger than MAX_POINTS", "--grid 100000x100000 asks for", ["s.npz", "s.png"]),
    "grid empty side": (
        {}, lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, np.array([]), np.zeros(3)),
        ["surface", "--grid", "0x10", "--out", "{tmp}/s.npz"], "a_values is empty", "--grid needs at least one point", ["s.npz"]),
    "grid malformed": (
        {}, None,
        ["surface", "--grid", "ten-by-ten", "--out", "{tmp}/s.npz"], None, "--grid must look like", ["s.npz"]),
    "data and seed together": (
        {"good.csv": GOOD}, None,
        ["lecture", "--data", "{tmp}/good.csv", "--seed", "3", "--out", "{tmp}/out"], None, "--data cannot be combined", ["out"]),
    # API-only shapes: the CLI cannot express them.
    "x and y lengths": ({}, lambda t: fit.gradient_descent(np.zeros(2), X, Y[:-1]), None, "x and y must have the same length", None, []),
    "y_hat (n,1) vs y (n,)": ({}, lambda t: losses.l1(np.zeros((20, 1)), np.zeros(20)), None, "y_hat and y must have the same shape", None, []),
    "w0 wrong parameter count": ({}, lambda t: fit.gradient_descent(np.zeros(3), X, Y), None, "w0 must have shape (2,)", None, []),
    "torch w wrong parameter count": ({}, lambda t: parity.registry.module("poly", 2, w=np.zeros(2)), None, "w must have shape (3,)", None, []),
    "torch data lengths": ({}, lambda t: parity.data.tensors(X, Y[:3]), None, "x and y must have the same length", None, []),
    "2-D x": ({}, lambda t: fit.gradient_descent(np.zeros(2), X.reshape(4, 5), Y.reshape(4, 5)), None, "x must be 1-D", None, []),
    "w0 NaN": ({}, lambda t: fit.gradient_descent(np.array([np.nan, 0.0]), X, Y), None, "w0 contains a non-finite", None, []),
    "order of floats": ({}, lambda t: fit.stochastic_gradient_descent(np.zeros(2), X, Y, ORDER.astype(float)), None, "order must hold integer", None, []),
    "lr a boolean": ({}, lambda t: fit.gradient_descent(np.zeros(2), X, Y, lr=True), None, "lr must be a real number", None, []),
    "parity seed negative": ({}, lambda t: parity_report.cases(5, seed=-1), ["parity", "--seed", "-1"], "seed must be a non-negative integer", "seed must be a non-negative integer", []),
    "order not a permutation": ({}, lambda t: fit.adam_sgd(np.zeros(2), X, Y, np.zeros((2, 20), int)), None, "order", None, []),
    "order wrong shape": ({}, lambda t: fit.stochastic_gradient_descent(np.zeros(2), X, Y, ORDER[:, :10]), None, "order must have shape", None, []),
    "torch y_hat (n,1) vs y (n,)": ({}, lambda t: parity.losses.l1(torch.zeros(20, 1), torch.zeros(20)), None, "y_hat and y must have the same shape", None, []),
    "mse y_hat (n,1) vs y (n,)": ({}, lambda t: losses.mse(np.zeros((20, 1)), np.zeros(20)), None, "y_hat and y must have the same shape", None, []),
    "NaN in x": ({}, lambda t: fit.gradient_descent(np.zeros(2), np.where(np.arange(20) == 3, np.nan, X), Y), None, "x contains a non-finite value (nan) at index 3", None, []),
    "empty data": ({}, lambda t: fit.gradient_descent(np.zeros(2), np.array([]), np.array([])), None, "x is empty", None, []),
    "lr NaN": ({}, lambda t: fit.gradient_descent(np.zeros(2), X, Y, lr=float("nan")), None, "lr must be finite", None, []),
    "steps float": ({}, lambda t: fit.gradient_descent(np.zeros(2), X, Y, steps=2.5), None, "steps must be a positive integer", None, []),
    "epochs zero": ({}, lambda t: ff.batch_order(10, 0), None, "epochs must be a positive integer", None, []),
    "complex x": ({}, lambda t: fit.gradient_descent(np.zeros(2), X.astype(complex), Y), None, "x must hold real numbers", None, []),
    "model as an unknown name": ({}, lambda t: fit.gradient_descent(np.zeros(2), X, Y, model="cubic"), None, "model must be one of", None, []),
    "torch lr negative": ({}, lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, *parity.tensors(X, Y), lr=-1.0), None, "lr must be positive", None, []),
    "torch order for other data": ({}, lambda t: parity.fit.adam_sgd(parity.SimpleLinearModel(), parity.losses.l1, parity.data.dataset(X, Y), nepochs=2, order=ff.batch_order(10, 2)), None, "order must have shape (epochs, 20)", None, []),
    # CLI-only: options that do not apply are refused, never ignored.
    "order seed negative": ({}, None, ["lecture", "--order-seed", "-1", "--out", "{tmp}/out"], None, "--order-seed", ["out"]),
    "degree without poly": ({}, None, ["sweep", "--degree", "12", "--plot", "{tmp}/sw.png"], None, "--degree applies to the poly model only", ["sw.png"]),
    "epochs with gd": ({}, None, ["sweep", "--optimizer", "gd", "--epochs", "3"], None, "--epochs does not apply to --optimizer gd", []),
    "batch size with gd": ({}, None, ["sweep", "--batch-size", "3"], None, "--batch-size does not apply to --optimizer gd", []),
    "steps with adam": ({}, None, ["sweep", "--optimizer", "adam", "--steps", "3"], None, "--steps does not apply to --optimizer adam", []),
    "unknown optimizer": ({}, None, ["sweep", "--optimizer", "lbfgs"], None, "--optimizer must be one of", []),
    "coords with random": ({}, None, ["surface", "--directions", "random", "--coords", "0,1", "--grid", "4x4"], None, "--coords applies to --directions coords", []),
    "direction seed with coords": ({}, None, ["surface", "--direction-seed", "3", "--grid", "4x4"], None, "--direction-seed applies to --directions random", []),
    "surface degree without poly": ({}, None, ["surface", "--degree", "3", "--grid", "4x4", "--out", "{tmp}/s.npz"], None, "--degree applies to the poly model only", ["s.npz"]),
}


def _setup(tmp_path: Path, files: dict) -> None:
    for name, text in files.items():
        csv(tmp_path, name, text)


def _leftovers(tmp_path: Path, files: dict, outputs: list) -> list:
    """Anything under tmp_path that the row did not create itself."""
    allowed = set(files)
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in allowed)


#: Bad inputs that are accepted today, in files that are not ours: strict xfail, so that the fix
#: turns them into failures to remove from this list.
KNOWN_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("row", [
    pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[k])) if k in KNOWN_GAPS else k
    for k, v in ROWS.items() if v[1] is not None
])
def test_api(row, tmp_path):
    files, api, _, api_says, _, _ = ROWS[row]
    _setup(tmp_path, files)
    with pytest.raises((InputError, ff.PrecisionError)) as exc:
        api(tmp_path)
    assert api_says in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("row", [k for k, v in ROWS.items() if v[2] is not None])
def test_cli(row, tmp_path, capsys):
    files, _, argv, _, cli_says, outputs = ROWS[row]
    _setup(tmp_path, files)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert cli_says in lines[0] and "error" in lines[0]
    assert "Traceback" not in err
    assert out == ""
    for name in outputs:
        assert not (tmp_path / name).exists(), name
    assert _leftovers(tmp_path, files, outputs) == []


@pytest.mark.parametrize("row", ["csv malformed number", "grid too large", "lr negative"])
def test_cli_subprocess_one_line_no_traceback(row, tmp_path):
    """The same through the installed entry point, in its own process."""
    files, _, argv, _, cli_says, outputs = ROWS[row]
    _setup(tmp_path, files)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    proc = subprocess.run([sys.executable, "-m", "functional_fit", *argv], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and cli_says in lines[0], proc.stderr
    assert proc.stdout == ""
    assert _leftovers(tmp_path, files, outputs) == []
