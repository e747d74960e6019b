"""Bad input, one table: each row through the Python API and through the command line.

For every row: the API raises `InputError` (or `PrecisionError`) whose message names the
argument; the CLI exits non-zero with exactly one line on stderr, naming the option, with no
traceback; and no output file (nor a temporary beside it) is left behind.

Rows with a seventh entry run the CLI in a subprocess, as a user would: with an environment,
a closed or full stdout, an exit status other than 2, and a time limit far below what the
refused computation would take (so that it was refused before it started).

After the table: fault injection (a full disk, a read-only folder, Ctrl-C at several moments
of ``lecture --out``), memory refused before it is allocated, and streams (``| head -1``, an
ASCII-only stdout, strict JSON).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import InputError, fit, losses, models, registry, surface, sweep
from parity.comparison import lecture, report as parity_report
from functional_fit.cli import main

X, Y = ff.lecture_data(n=20)
ORDER = ff.batch_order(20, 2, seed=0)


def csv(tmp: Path, name: str, text: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


GOOD = "x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(X.tolist(), Y.tolist()))
TINY = "x,y\n" + "".join(f"{(i + 1) * 1e-300!r},{float(i)!r}\n" for i in range(10))
#: Settings whose computation takes minutes: a refusal far below that computed nothing.
LONG = ["--steps", "100000000"]
#: A subprocess row refused before any work ends within this (start-up is a few seconds).
QUICK = 60

def _with_limit(limit: str, call):
    """`call()` with `functional_fit.resources.LIMIT_ENV` set to `limit`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNCTIONAL_FIT_MEMORY_LIMIT", limit)
        return call()


# Each row: id -> (files to create {name: text}, api(tmp) call or None, cli argv (with {tmp}),
#                  what the API message must contain, what the CLI line must contain,
#                  output paths under tmp the CLI was asked to write[,
#                  in a subprocess: {status, env, stdout "closed"/"full", within seconds}]).
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
    "opt unknown keyword": ({}, lambda t: ff.registry.optimizer("RMSprop", alpah=0.9), ["sweep", "--optimizer", "RMSprop", "--opt", "alpah=0.9"], "RMSprop has no keyword 'alpah'", "--opt: RMSprop has no keyword 'alpah'", []),
    "opt bad value": ({}, lambda t: ff.registry.optimizer("SGD", nesterov=True), ["sweep", "--optimizer", "SGD", "--opt", "nesterov=True"], "nesterov=True needs momentum > 0", "nesterov=True needs momentum > 0", []),
    "opt for a lecture optimizer": ({}, lambda t: ff.registry.optimizer("adam", b1=0.5), ["sweep", "--optimizer", "adam", "--opt", "b1=0.5"], "takes no keywords", "--opt: optimizer 'adam' takes no keywords", []),
    "opt malformed": ({}, None, ["sweep", "--optimizer", "SGD", "--opt", "momentum"], None, "--opt must look like KEY=VALUE", []),
    "opt not a literal": ({}, None, ["sweep", "--optimizer", "SGD", "--opt", "momentum=fast"], None, "is not a number", []),
    "seeds with a full-batch torch optimizer": ({}, None, ["sweep", "--optimizer", "Adam", "--seeds", "2"], None, "--seeds applies to minibatches", []),
    "coords with random": ({}, None, ["surface", "--directions", "random", "--coords", "0,1", "--grid", "4x4"], None, "--coords applies to --directions coords", []),
    "direction seed with coords": ({}, None, ["surface", "--direction-seed", "3", "--grid", "4x4"], None, "--direction-seed applies to --directions random", []),
    "surface degree without poly": ({}, None, ["surface", "--degree", "3", "--grid", "4x4", "--out", "{tmp}/s.npz"], None, "--degree applies to the poly model only", ["s.npz"]),
    # Issue 14. Output paths: checked by the parser, before the (long) computation.
    "out names an existing file": (
        {"f.txt": "mine"}, None, ["lecture", "--out", "{tmp}/f.txt"], None,
        "argument --out: '{tmp}/f.txt' exists and is not a folder", [], dict(within=QUICK)),
    "out folder holds the user's files": (
        {"mine/notes.txt": "keep"}, None, ["lecture", "--out", "{tmp}/mine"], None,
        "holds 'notes.txt', which a run of this command does not write", [], dict(within=QUICK)),
    "out is the working folder": ({}, None, ["lecture", "--out", "."], None, "argument --out: '.'", [], dict(within=QUICK)),
    "surface out names a folder": (
        {"d/keep.txt": ""}, None, ["surface", "--grid", "3x3", *LONG, "--out", "{tmp}/d"], None,
        "argument --out: '{tmp}/d' is a folder", [], dict(within=QUICK)),
    "out in a missing folder": (
        {}, None, ["surface", "--grid", "3x3", *LONG, "--out", "{tmp}/no/s.npz"], None,
        "argument --out: '{tmp}/no/s.npz': folder '{tmp}/no' does not exist", [], dict(within=QUICK)),
    "plot format matplotlib cannot write": (
        {}, None, ["surface", "--grid", "3x3", *LONG, "--plot", "{tmp}/x.txt"], None,
        "argument --plot: '{tmp}/x.txt': matplotlib cannot write format 'txt'", ["x.txt"], dict(within=QUICK)),
    "plot without a suffix": (
        {}, None, ["sweep", "--lr", "1e-3:1:4", *LONG, "--plot", "{tmp}/figure"], None,
        "argument --plot: '{tmp}/figure': matplotlib cannot write a name without a suffix", ["figure"], dict(within=QUICK)),
    "plot names a folder": (
        {"d/keep.txt": ""}, None, ["sweep", "--lr", "1e-3:1:4", *LONG, "--plot", "{tmp}/d"], None,
        "argument --plot: '{tmp}/d' is a folder", [], dict(within=QUICK)),
    "plot names a device": (
        {}, None, ["surface", "--grid", "3x3", "--plot", "/dev/null"], None,
        "argument --plot: '/dev/null' exists and is not a regular file", [], dict(within=QUICK)),
    "out empty path": ({}, None, ["surface", "--grid", "3x3", "--out", ""], None, "argument --out: an empty path", [], dict(within=QUICK)),
    # No silently wrong result.
    "noise overflows when squared": (
        {}, lambda t: lecture.run(*ff.lecture_data(noise=1e300), steps=("ols",)),
        ["lecture", "--noise", "1e300", "--out", "{tmp}/out"], "y values reach", "--noise 1e+300: the data's y values reach",
        ["out"], dict(within=QUICK)),
    "noise overflows a float": (
        {}, lambda t: ff.lecture_data(noise=1e308),
        ["lecture", "--noise", "1e308", "--json"], "noise=1e+308 overflows", "--noise=1e+308 overflows", [], dict(within=QUICK)),
    "surface out of integers": (
        {}, lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, np.zeros(3), np.zeros(2), out=np.zeros((2, 3), int)),
        None, "out must be a writable floating-point array", None, []),
    "torch negative nsteps": ({}, lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, *parity.tensors(X, Y), nsteps=-1), None, "nsteps must be a positive integer", None, []),
    "torch order for half the data": ({}, lambda t: parity.fit.adam_sgd(parity.SimpleLinearModel(), parity.losses.l1, parity.data.dataset(*ff.lecture_data()), nepochs=2, order=ff.batch_order(50, 2)), None, "order must have shape (epochs, 100)", None, []),
    "torch NaN in x": ({}, lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, torch.from_numpy(np.where(np.arange(20) == 3, np.nan, X)), torch.from_numpy(Y)), None, "x contains a non-finite value (nan) at index 3", None, []),
    "torch NaN in a dataset's x": ({}, lambda t: parity.fit.stochastic_gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, torch.utils.data.TensorDataset(torch.from_numpy(np.where(np.arange(20) == 3, np.nan, X)), torch.from_numpy(Y)), nepochs=2), None, "x contains a non-finite value (nan) at index 3", None, []),
    "torch minibatch without order": ({}, lambda t: parity.fit.run("adam", parity.SimpleLinearModel(), parity.losses.l1, *parity.tensors(X, Y), lr=0.1), None, "order: optimizer 'adam' takes minibatches", None, []),
    "torch numpy data": ({}, lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, X, Y), None, "x must be a torch tensor", None, []),
    # Every message names what the user typed.
    "range wider than a float": (
        {}, None, ["surface", "--range=-1e308:1e308,0:1", "--grid", "3x3", "--out", "{tmp}/s.npz"], None,
        "--range '-1e308:1e308,0:1': a side's width overflows", ["s.npz"], dict(within=QUICK)),
    "x spread too small": (
        {"tiny.csv": TINY}, lambda t: ff.ols.ols(*ff.read_csv(t / "tiny.csv")),
        ["lecture", "--data", "{tmp}/tiny.csv", "--out", "{tmp}/out"], "spread of its values (9e-300) is too small to fit",
        "spread of its values (9e-300) is too small to fit", ["out"], dict(within=QUICK)),
    "torch x spread too small": ({"tiny.csv": TINY}, lambda t: parity.ols.ols(*parity.tensors(*ff.read_csv(t / "tiny.csv"))), None, "is too small to fit", None, []),
    "least squares spread too small": ({"tiny.csv": TINY}, lambda t: ff.ols.least_squares(*ff.read_csv(t / "tiny.csv"), degree=2), None, "is too small to fit", None, []),
    "x too large to square": ({}, lambda t: ff.ols.ols(X * 1e200, Y), None, "x: its values (up to 1.5e+200) are too large", None, []),
    "complex x in a sweep": ({}, lambda t: sweep.sweep("gd", np.zeros(2), X.astype(complex), Y, [0.1], steps=2), None, "x must hold real numbers", None, []),
    "complex x in a surface": ({}, lambda t: surface.loss_surface("linear", "l1", X.astype(complex), Y, [0.0], [0.0]), None, "x must hold real numbers", None, []),
    "unknown model name in a surface": ({}, lambda t: surface.loss_surface("cubic", "l1", X, Y, [0.0], [0.0]), None, "model must be one of", None, []),
    "unknown model name in a sweep": ({}, lambda t: sweep.sweep("gd", np.zeros(2), X, Y, [0.1], steps=2, model="cubic"), None, "model must be one of", None, []),
    "model neither name nor function": ({}, lambda t: surface.mse_surface_exact(3, X, Y, [0.0], [0.0]), None, "model must be a function or a registry name", None, []),
    "no devices for a surface": ({}, lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, [0.0], [0.0], devices=[]), None, "devices must name at least one device", None, []),
    "no devices for a sweep": ({}, lambda t: sweep.sweep("gd", np.zeros(2), X, Y, [0.1], steps=2, devices=[]), None, "devices must name at least one device", None, []),
    "a device by name": ({}, lambda t: sweep.sweep("gd", np.zeros(2), X, Y, [0.1], steps=2, devices=["cpu"]), None, "devices[0] must be a JAX device", None, []),
    "steps beyond int32": ({}, lambda t: fit.gradient_descent(np.zeros(2), X, Y, steps=2**31), ["surface", "--grid", "3x3", "--steps", str(2**31)], "steps must be below 2**31", "--steps must be below 2**31", []),
    # Resource limits: refused before any allocation, naming the option to change.
    "surface path beyond memory": (
        {}, None, ["surface", "--grid", "3x3", "--steps", "1000000000", "--plot", "{tmp}/s.png"], None,
        "--steps: this run needs about 44.7 GiB", ["s.png"], dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "4G"})),
    "sweep data beyond memory": (
        {}, None, ["sweep", "--n", "10000000000"], None, "--n: this run needs about 596.0 GiB", [],
        dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "4G"})),
    "sweep runs beyond memory": (
        {}, None, ["sweep", "--lr", "1e-3:1:10000000000", "--json"], None, "--lr: this run needs about", [],
        dict(within=QUICK)),
    "lecture data beyond memory": (
        {}, None, ["lecture", "--n", "10000000", "--out", "{tmp}/out"], None, "--n: this run needs about", ["out"],
        dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "4G"})),
    "parity cases beyond memory": (
        {}, None, ["parity", "--cases", "1000000000"], None, "--cases: this run needs about", [], dict(within=QUICK)),
    "fit path beyond a limit": (
        {}, lambda t: _with_limit("1M", lambda: fit.gradient_descent(np.zeros(2), X, Y, steps=10**6)),
        None, "steps: this run needs about 22.9 MiB", None, []),
    # The environment.
    "JAX_ENABLE_X64 not a truth value": (
        {}, None, ["sweep", "--lr", "1e-3:1:4"], None, "environment variable JAX_ENABLE_X64='maybe'", [],
        dict(within=QUICK, env={"JAX_ENABLE_X64": "maybe"})),
    "JAX_PLATFORMS unknown": (
        {}, None, ["sweep", "--lr", "1e-3:1:4"], None, "environment variable JAX_PLATFORMS='bogus'", [],
        dict(within=QUICK, env={"JAX_PLATFORMS": "bogus"})),
    "memory limit not a size": (
        {}, None, ["sweep", "--lr", "1e-3:1:4"], None, "FUNCTIONAL_FIT_MEMORY_LIMIT='plenty' must be a number of bytes", [],
        dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "plenty"})),
    # Streams: a closed or full stdout is an I/O error: exit status 1.
    "stdout closed": ({}, None, ["sweep", "--lr", "1e-3:1:4", *LONG], None, "standard output is closed", [],
                      dict(within=QUICK, stdout="closed", status=1)),
    "stdout full": ({}, None, ["sweep", "--lr", "1e-3:1:4", "--steps", "3"], None,
                    "cannot write standard output: No space left on device", [], dict(stdout="full", status=1)),
}


def _setup(tmp_path: Path, files: dict) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        csv(tmp_path, name, text)


def _leftovers(tmp_path: Path, files: dict, outputs: list) -> list:
    """Anything under tmp_path that the row did not create itself."""
    made = {tmp_path / name for name in files} | {(tmp_path / n).parent for n in files}
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p not in made)


def _row(row):
    files, api, argv, api_says, cli_says, outputs, *how = ROWS[row]
    return files, api, argv, api_says, cli_says, outputs, (how[0] if how else None)


#: Bad inputs that are accepted today, in files that are not ours: strict xfail, so that the fix
#: turns them into failures to remove from this list.
KNOWN_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("row", [
    pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[k])) if k in KNOWN_GAPS else k
    for k, v in ROWS.items() if v[1] is not None
])
def test_api(row, tmp_path):
    files, api, _, api_says, _, _, _ = _row(row)
    _setup(tmp_path, files)
    with pytest.raises((InputError, ff.PrecisionError)) as exc:
        api(tmp_path)
    assert api_says in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("row", [k for k, v in ROWS.items() if v[2] is not None and len(v) == 6])
def test_cli(row, tmp_path, capsys):
    files, _, argv, _, cli_says, outputs, _ = _row(row)
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


def _cli(argv, *, env=None, stdout=None, timeout=300, prefix=None, **kwargs):
    """Run ``python -m functional_fit ARGV`` as a user would; stdout "closed" or "full".

    `prefix`, when given, is the whole command instead (a wrapper around the command)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "FUNCTIONAL_FIT_"))},
           **(env or {})}
    cmd = prefix or [sys.executable, "-m", "functional_fit", *argv]
    out = subprocess.PIPE
    if stdout == "closed":  # as the shell's `>&-` (a shell, not preexec_fn: JAX has threads)
        cmd, out = ["sh", "-c", 'exec "$0" "$@" >&-', *cmd], None
    elif stdout == "full":
        out = open("/dev/full", "w")
    try:
        return subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True,
                              timeout=timeout, env=env, **kwargs)
    finally:
        if stdout == "full":
            out.close()


@pytest.mark.parametrize("row", [k for k, v in ROWS.items() if v[2] is not None and len(v) == 7]
                         + ["csv malformed number", "grid too large", "lr negative"])
def test_cli_subprocess(row, tmp_path):
    """Through the entry point, in its own process: status, one line, no traceback, no file,
    and (``within``) far sooner than the refused computation would have taken."""
    files, _, argv, _, cli_says, outputs, how = _row(row)
    how = how or {}
    _setup(tmp_path, files)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    start = time.perf_counter()
    proc = _cli(argv, env=how.get("env"), stdout=how.get("stdout"), cwd=tmp_path)
    took = time.perf_counter() - start
    assert proc.returncode == how.get("status", 2), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert cli_says.replace("{tmp}", str(tmp_path)) in lines[0] and "error" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not proc.stdout
    for name in outputs:
        assert not (tmp_path / name).exists(), name
    assert _leftovers(tmp_path, files, outputs) == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    if "within" in how:
        assert took < how["within"], f"{took:.1f} s: the refusal came after work was done"


# --------------------------------------------------------------------------- fault injection


def _refusing(monkeypatch, tmp_path, code: int, *, writes=True):
    """Make every file write under tmp_path fail with `code`: ENOSPC at the first write (a full
    disk), or EROFS at creation (``writes=False``: a read-only file system, which root's
    permission bits cannot give)."""
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    under = str(tmp_path)

    def fail(path):
        raise OSError(code, os.strerror(code), str(path))

    class Full:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            fail(self._fh.name)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def open_(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and str(file).startswith(under) and \
                any(m in mode for m in "wax"):
            return Full(fh)
        return fh

    def os_open(path, flags, *args, **kwargs):
        if str(path).startswith(under) and flags & os.O_CREAT:
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(under):
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    if writes:
        monkeypatch.setattr(builtins, "open", open_)
    else:
        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("argv, target", [
    (["surface", "--grid", "4x4", "--steps", "5", "--out", "{tmp}/s.npz"], "s.npz"),
    (["sweep", "--lr", "1e-3:1:4", "--steps", "3", "--plot", "{tmp}/sw.png"], "sw.png"),
    (["lecture", "--n", "20", "--out", "{tmp}/set"], "set"),
])
def test_io_error_is_one_line_exit_1_and_nothing_half_written(argv, target, code, tmp_path,
                                                              monkeypatch, capsys):
    old = tmp_path / "set"
    if target == "set":  # a complete set from an earlier run: it must survive as it was
        old.mkdir()
        (old / "results.json").write_text('{"old": true}')
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    _refusing(monkeypatch, tmp_path, code, writes=code == errno.ENOSPC)
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"cannot write '{tmp_path / target}" in lines[0] and os.strerror(code) in lines[0]
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == (["set"] if target == "set" else [])


def test_read_only_folder_is_refused_by_the_parser(tmp_path, monkeypatch, capsys):
    """A folder the user cannot write (root's permission bits do not stop root: os.access is
    what the parser asks, so it is what is faked) is refused before any work: exit status 2."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(tmp_path)
                        else real(p, mode, **kw))
    with pytest.raises(SystemExit) as exc:
        main(["surface", "--grid", "3x3", *LONG, "--out", f"{tmp_path}/s.npz"])
    assert exc.value.code == 2
    assert f"folder '{tmp_path}' is not writable" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _lecture_set(folder: Path) -> tuple:
    """(n of results.json, sorted file names) of a lecture output folder."""
    n = json.loads((folder / "results.json").read_text())["data"]["n"]
    return n, sorted(p.name for p in folder.iterdir())


def test_ctrl_c_during_lecture_out_leaves_the_old_set_or_the_new(tmp_path):
    """SIGINT at several moments of ``lecture --out``: exit 130 (or 0 when it came after the
    work), one line, and the folder holds the complete set of the earlier run (n=30), byte for
    byte, or the complete new one (n=20)."""
    out = tmp_path / "set"
    start = time.perf_counter()
    first = _cli(["lecture", "--n", "30", "--out", str(out), "--json"])
    whole = time.perf_counter() - start
    assert first.returncode == 0, first.stderr
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    n_old, names = _lecture_set(out)
    assert n_old == 30 and len(names) >= 13 and all(os.stat(out / f).st_mode & 0o044 for f in names)
    outcomes = []
    for fraction in (0.02, 0.5, 0.85, 0.95):  # while importing, computing, writing, exiting
        proc = subprocess.Popen([sys.executable, "-m", "functional_fit", "lecture", "--n", "20",
                                 "--out", str(out), "--json"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                env={k: v for k, v in os.environ.items() if not k.startswith("JAX_")})
        time.sleep(fraction * whole)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        n, got = _lecture_set(out)
        if n == 30:
            assert {p.name: p.read_bytes() for p in out.iterdir()} == old
        else:
            assert n == 20 and got == names
        assert proc.returncode in (0, 130), err  # 0: the signal came after the work was done
        if proc.returncode == 130:
            assert err.strip().splitlines() in (["functional-fit lecture: interrupted"],
                                                ["functional-fit: interrupted"]), err
        outcomes.append((proc.returncode, n))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temporary left
    assert any(rc == 130 for rc, _ in outcomes), outcomes
    assert any(n == 30 for _, n in outcomes), outcomes  # interrupted before the swap: the old set


def test_ctrl_c_stops_a_long_fit_within_a_second_and_writes_nothing(tmp_path):
    """A fit of 10^8 steps runs in compiled chunks of about a second: SIGINT ends it soon."""
    proc = subprocess.Popen([sys.executable, "-m", "functional_fit", "surface", "--grid", "3x3",
                             *LONG, "--out", f"{tmp_path}/s.npz", "--plot", f"{tmp_path}/s.png"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    assert proc.poll() is None, "the fit ended before it was interrupted"
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    latency = time.perf_counter() - sent
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "functional-fit surface: interrupted"
    assert list(tmp_path.iterdir()) == []
    assert latency < 10, latency  # about a second; generous for a shared machine


# --------------------------------------------------------------------------- memory


def test_a_run_beyond_the_memory_limit_is_refused_before_it_allocates(tmp_path):
    """``sweep --n 10**8`` would make 1.6 GB of data; with a 100 MB limit it is refused, and the
    process never grows beyond its start-up size."""
    # Through a small wrapper process whose only child is the command, so that the peak is the
    # command's own, not that of another child of this test process (a notebook's kernel, say).
    wrapper = ("import resource, subprocess, sys; "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(p.stderr); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); "
               "sys.exit(p.returncode)")
    proc = _cli([], env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "100M"}, prefix=[
        sys.executable, "-c", wrapper, sys.executable, "-m", "functional_fit", "sweep", "--n",
        str(10**8)])
    assert proc.returncode == 2
    assert "--n: this run needs about 6.0 GiB of memory" in proc.stderr
    assert "more than the 100.0 MiB available (FUNCTIONAL_FIT_MEMORY_LIMIT); lower --n" in proc.stderr
    peak = int(proc.stdout.strip())  # bytes, the command's own peak
    assert peak < 1.2e9, peak


# --------------------------------------------------------------------------- streams


def test_a_reader_that_stops_early_gets_quiet():
    """``functional-fit sweep ... | head -1`` ends as ``seq 100000 | head -1`` does: quietly."""
    with subprocess.Popen([sys.executable, "-m", "functional_fit", "sweep", "--lr",
                           "1e-3:1:100000", "--steps", "2"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    assert first.split() == [b"lr", b"seed", b"final", b"loss", b"diverged"]
    assert err == ""
    assert proc.returncode == 128 + signal.SIGPIPE


def test_an_ascii_stdout_still_gets_the_table(monkeypatch):
    """``PYTHONIOENCODING=ascii`` (or a C locale without UTF-8): "Δ" and "…" get stand-ins."""
    proc = _cli(["lecture", "--help"], env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and "max |d|" in proc.stdout, proc.stderr
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    assert main(["lecture", "--n", "20"]) == 0
    sys.stdout.flush()
    table = raw.getvalue().decode("ascii")
    assert "max |d|" in table and "adam_abs_poly12" in table and ", ..., " in table


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_every_json_output_is_strict(capsys):
    """JSON has no NaN or inf: a non-finite number is written as null, everywhere."""
    assert main(["sweep", "--loss", "mse", "--lr", "1:1e6:4", "--steps", "200", "--json"]) == 0
    runs = _strict(capsys.readouterr().out)["runs"]
    assert any(r["loss"] is None and r["diverged"] for r in runs)
    assert main(["parity", "--cases", "2", "--json"]) == 0
    _strict(capsys.readouterr().out)
    from functional_fit.cli._common import json_text

    assert _strict(json_text({"a": [float("nan"), float("inf"), 1.5]})) == {"a": [None, None, 1.5]}


def test_python_lists_are_vectors():
    """A list of numbers is one parameter vector wherever a vector is taken (documented)."""
    x, y = ff.lecture_data(n=20)
    want = fit.gradient_descent(np.zeros(3), x, y, model="poly", lr=0.5, steps=20).params
    got = fit.train([0.0, 0.0, 0.0], x, y, model="poly", loss="l1", steps=20,
                    optimizer=registry.optimizer("gd")(0.5))
    np.testing.assert_array_equal(np.asarray(got.params), np.asarray(want))
    assert got.path.shape == (21, 3)
    assert float(losses.l1([1.0, 2.0], [1.0, 3.0])) == 0.5
    np.testing.assert_array_equal(np.asarray(models.polynomial([1.0, 2.0], [3.0])), [7.0])
