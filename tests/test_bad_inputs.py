"""Bad input, one table: each row through the Python API and through the command line.

For every row: the API raises `InputError` (or `PrecisionError`) whose message names the
argument; the CLI exits non-zero with exactly one line on stderr, naming the option, with no
traceback; and no output file (nor a temporary beside it) is left behind.

Rows with ``subprocess`` settings run the CLI in a subprocess, as a user would: with an
environment, a closed or full stdout, an exit status other than 2, and a time limit far below
what the refused computation would take (so that it was refused before it started).

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
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import InputError, fit, losses, models, registry, runtime, surface, sweep
from comparison import lecture, report as parity_report
from functional_fit_cli import main

X, Y = ff.lecture_data(n=20)
ORDER = ff.batch_order(20, 2, seed=0)


def _squeezed(p, x):
    """A valid model for n > 1 that returns a scalar on one point: (n,) -> (n,), (1,) -> ()."""
    return (x[:, None] @ p["w"]).squeeze()


def csv(tmp: Path, name: str, text: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


GOOD = "x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(X.tolist(), Y.tolist()))
#: Engel's food expenditure against income, in its own units: the lecture's rates diverge.
ENGEL = "x,y\n" + "".join(f"{400 + 230 * i},{0.6 * (400 + 230 * i) + (-1) ** i * 40}\n"
                          for i in range(20))
TINY = "x,y\n" + "".join(f"{(i + 1) * 1e-300!r},{float(i)!r}\n" for i in range(10))
#: A page to print (``handout --print``).
PAGE = "<!doctype html><title>t</title><p>a page</p>"
#: Settings whose computation takes minutes: a refusal far below that computed nothing.
LONG = ["--steps", "100000000"]
#: A subprocess row refused before any work ends within this (start-up is a few seconds).
QUICK = 60


class Row(NamedTuple):
    """One bad input, through the Python API and through the command line."""

    files: dict  # files to create under the test's folder: {name: text or bytes}
    api: Callable | None  # api(tmp) must raise InputError (or PrecisionError); None: CLI only
    argv: list | None  # the command's arguments, "{tmp}" the test's folder; None: API only
    api_says: str | None  # what the API's message must contain
    cli_says: str | None  # what the command's one line on stderr must contain
    outputs: list  # paths under the folder the command was asked to write: none may be left
    #: run the command in its own process, as a user would: {"status": exit status (2),
    #: "env": environment, "stdout": "closed" or "full", "within": seconds}
    subprocess: dict | None = None


# issue 19, group C: the torch side's helpers (the rows are at the end of the table)
XY64 = (torch.from_numpy(X[:, None]), torch.from_numpy(Y[:, None]))  # (20, 1) float64 each


def LIN64():
    """A float64 ``nn.Linear(1, 1)``: (n, 1) -> (n, 1)."""
    return torch.nn.Linear(1, 1).double()


def _train(module, loss_fn=parity.losses.mse, optimizer=None, **length):
    """`parity.fit.train` of `module` on XY64, with SGD over its parameters unless given."""
    optimizer = torch.optim.SGD(module.parameters(), 0.1) if optimizer is None else optimizer
    return parity.fit.train(module, loss_fn, *XY64, optimizer=optimizer, **length)


def _weight_only(module):
    """`_train` of `module` (its weight frozen) with an optimizer over its weight alone."""
    module.weight.requires_grad_(False)
    return _train(module, optimizer=torch.optim.SGD([module.weight], 0.1), steps=3)


def _jax_batchnorm(p, x):
    """JAX's twin of Linear(1, 1) then BatchNorm1d(1) in training mode: (n, 1) -> (n, 1)."""
    h = x @ p["0.weight"].T + p["0.bias"][None, :]  # (n, 1)
    h = (h - h.mean(axis=0, keepdims=True)) / (h.var(axis=0, keepdims=True) + 1e-5) ** 0.5
    return h * p["1.weight"][None, :] + p["1.bias"][None, :]  # (n, 1)


# issue 22: functional-fit compare's options, each beside parity.compare's argument
#: compare's model files: torch's MLP and its JAX twin (CSV data: GOOD's x and y as (n, 1)).
COMPARE_FILES = {"torch_model.py": "import parity\nmake = lambda: parity.models.MLP((1, 4, 1), "
                 "seed=0)\n", "jax_model.py": "from functional_fit.models import mlp as model\n",
                 "good.csv": GOOD}
COMPARE = ["compare", "--torch", "{tmp}/torch_model.py:make", "--jax", "{tmp}/jax_model.py:model",
           "--data", "{tmp}/good.csv", "--steps", "3"]


def _compare(**kwargs):
    """`parity.compare` of a float64 MLP (1, 4, 1) and its twin on (20, 1) data, 3 steps
    unless told, with `kwargs`."""
    module = parity.models.MLP((1, 4, 1), dtype=torch.float64, seed=0)
    length = {} if "epochs" in kwargs else {"steps": 3}
    return parity.compare(models.mlp, module, X[:, None], Y[:, None], jax_loss=losses.mse,
                          torch_loss=parity.losses.mse, **length, **kwargs)


def _with_buffer():
    """A float64 Linear(1, 1) without bias that keeps an integer counter as a buffer."""
    module = torch.nn.Linear(1, 1, bias=False).double()
    module.register_buffer("count", torch.tensor(0))
    return module


ROWS = {
    "csv missing": Row(files={}, api=lambda t: ff.read_csv(t / "nope.csv"),
        argv=["lecture", "--data", "{tmp}/nope.csv", "--out", "{tmp}/out"],
        api_says="no such file", cli_says="no such file", outputs=["out"]),
    "csv malformed number": Row(files={"bad.csv": "x,y\n1,2\n3,abc\n"}, api=lambda t: ff.read_csv(t / "bad.csv"),
        argv=["lecture", "--data", "{tmp}/bad.csv", "--out", "{tmp}/out"], api_says="line 3",
        cli_says="line 3", outputs=["out"]),
    "csv lacks y": Row(files={"noy.csv": "x,z\n1,2\n"}, api=lambda t: ff.read_csv(t / "noy.csv"),
        argv=["lecture", "--data", "{tmp}/noy.csv", "--out", "{tmp}/out"],
        api_says="lacks column(s) y", cli_says="lacks column(s) y", outputs=["out"]),
    "csv empty file": Row(files={"empty.csv": ""}, api=lambda t: ff.read_csv(t / "empty.csv"),
        argv=["lecture", "--data", "{tmp}/empty.csv", "--out", "{tmp}/out"], api_says="is empty",
        cli_says="is empty", outputs=["out"]),
    "csv header only": Row(files={"head.csv": "x,y\n"}, api=lambda t: ff.read_csv(t / "head.csv"),
        argv=["lecture", "--data", "{tmp}/head.csv", "--out", "{tmp}/out"], api_says="x is empty",
        cli_says="x is empty", outputs=["out"]),
    "csv binary": Row(files={"bin.csv": b"\xff\xfe\x00\x81garbage"}, api=lambda t: ff.read_csv(t / "bin.csv"),
        argv=["lecture", "--data", "{tmp}/bin.csv", "--out", "{tmp}/out"],
        api_says="not a text CSV", cli_says="not a text CSV", outputs=["out"]),
    "csv is a directory": Row(files={}, api=lambda t: ff.read_csv(t),
        argv=["lecture", "--data", "{tmp}", "--out", "{tmp}/out"], api_says="is a directory",
        cli_says="is a directory", outputs=["out"]),
    "csv short row": Row(files={"short.csv": "x,y\n1,2\n3\n"}, api=lambda t: ff.read_csv(t / "short.csv"),
        argv=["lecture", "--data", "{tmp}/short.csv", "--out", "{tmp}/out"], api_says="line 3",
        cli_says="line 3", outputs=["out"]),
    "csv NaN": Row(files={"nan.csv": "x,y\n1,2\nnan,3\n"}, api=lambda t: ff.read_csv(t / "nan.csv"),
        argv=["lecture", "--data", "{tmp}/nan.csv", "--out", "{tmp}/out"],
        api_says="line 3, column 'x': missing value", cli_says="line 3, column 'x': missing value",
        outputs=["out"]),
    "csv inf": Row(files={"inf.csv": "x,y\n1,2\n2,inf\n"}, api=lambda t: ff.read_csv(t / "inf.csv"),
        argv=["surface", "--data", "{tmp}/inf.csv", "--grid", "4x4", "--out", "{tmp}/s.npz", "--plot", "{tmp}/s.png"],
        api_says="line 3, column 'y': inf is not a finite",
        cli_says="line 3, column 'y': inf is not a finite", outputs=["s.npz", "s.png"]),
    "n zero": Row(files={}, api=lambda t: ff.lecture_data(n=0),
        argv=["lecture", "--n", "0", "--out", "{tmp}/out"],
        api_says="n must be a positive integer", cli_says="--n must be a positive integer",
        outputs=["out"]),
    "noise NaN": Row(files={}, api=lambda t: ff.lecture_data(noise=float("nan")),
        argv=["lecture", "--noise", "nan", "--out", "{tmp}/out"], api_says="noise must be finite",
        cli_says="--noise must be finite", outputs=["out"]),
    "noise inf": Row(files={}, api=lambda t: ff.lecture_data(noise=float("inf")),
        argv=["sweep", "--noise", "inf", "--plot", "{tmp}/sw.png"],
        api_says="noise must be finite", cli_says="--noise must be finite", outputs=["sw.png"]),
    "seed negative": Row(files={}, api=lambda t: ff.lecture_data(seed=-1),
        argv=["lecture", "--seed", "-1", "--out", "{tmp}/out"],
        api_says="seed must be a non-negative integer", cli_says="seed", outputs=["out"]),
    "unknown dtype": Row(files={}, api=lambda t: lecture.run(X, Y, dtype="float16"),
        argv=["lecture", "--dtype", "float16", "--out", "{tmp}/out"],
        api_says="dtype must be one of", cli_says="--dtype", outputs=["out"]),
    "unknown model": Row(files={}, api=lambda t: registry.model("cubic").fn,
        argv=["surface", "--model", "cubic", "--grid", "4x4", "--out", "{tmp}/s.npz"],
        api_says="model must be one of", cli_says="model", outputs=["s.npz"]),
    "unknown loss": Row(files={}, api=lambda t: registry.loss("huber"),
        argv=["sweep", "--loss", "huber", "--plot", "{tmp}/sw.png"],
        api_says="loss must be one of", cli_says="--loss", outputs=["sw.png"]),
    "lr zero": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y, lr=0.0),
        argv=["surface", "--lr", "0", "--grid", "4x4", "--out", "{tmp}/s.npz"],
        api_says="lr must be positive", cli_says="lr", outputs=["s.npz"]),
    "lr negative": Row(files={}, api=lambda t: fit.adam_sgd(np.zeros(2), X, Y, ORDER, lr=-0.1),
        argv=["sweep", "--lr", "-1", "--plot", "{tmp}/sw.png"], api_says="lr must be positive",
        cli_says="--lr", outputs=["sw.png"]),
    "steps zero": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y, steps=0),
        argv=["surface", "--steps", "0", "--grid", "4x4", "--out", "{tmp}/s.npz"],
        api_says="steps must be a positive integer", cli_says="steps", outputs=["s.npz"]),
    "batch size zero": Row(files={},
        api=lambda t: fit.stochastic_gradient_descent(np.zeros(2), X, Y, ORDER, batch_size=0),
        argv=["sweep", "--optimizer", "sgd", "--epochs", "2", "--batch-size", "0", "--plot", "{tmp}/sw.png"],
        api_says="batch_size must be a positive integer", cli_says="batch", outputs=["sw.png"]),
    "cases zero": Row(files={}, api=lambda t: parity_report.run(0), argv=["parity", "--cases", "0"],
        api_says="cases must be a positive integer", cli_says="cases must be a positive integer",
        outputs=[]),
    "grid too large": Row(files={},
        api=lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, np.zeros(2**16), np.zeros(2**15)),
        argv=["surface", "--grid", "100000x100000", "--out", "{tmp}/s.npz", "--plot", "{tmp}/s.png"],
        api_says="larger than MAX_POINTS", cli_says="--grid 100000x100000 asks for",
        outputs=["s.npz", "s.png"]),
    "grid empty side": Row(files={},
        api=lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, np.array([]), np.zeros(3)),
        argv=["surface", "--grid", "0x10", "--out", "{tmp}/s.npz"], api_says="a_values is empty",
        cli_says="--grid needs at least one point", outputs=["s.npz"]),
    "grid malformed": Row(files={}, api=None, argv=["surface", "--grid", "ten-by-ten", "--out", "{tmp}/s.npz"],
        api_says=None, cli_says="--grid must look like", outputs=["s.npz"]),
    "data and seed together": Row(files={"good.csv": GOOD}, api=None,
        argv=["lecture", "--data", "{tmp}/good.csv", "--seed", "3", "--out", "{tmp}/out"],
        api_says=None, cli_says="--data cannot be combined", outputs=["out"]),
    # API-only shapes: the CLI cannot express them.
    "x and y lengths": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y[:-1]), argv=None,
        api_says="x and y must have the same number of points", cli_says=None, outputs=[]),
    "y_hat (n,1) vs y (n,)": Row(files={}, api=lambda t: losses.l1(np.zeros((20, 1)), np.zeros(20)), argv=None,
        api_says="y_hat and y must have the same shape", cli_says=None, outputs=[]),
    "w0 wrong parameter count": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(3), X, Y), argv=None,
        api_says="w0 must have shape (2,)", cli_says=None, outputs=[]),
    "torch w wrong parameter count": Row(files={}, api=lambda t: parity.registry.module("poly", 2, w=np.zeros(2)), argv=None,
        api_says="w must have shape (3,)", cli_says=None, outputs=[]),
    "torch data lengths": Row(files={}, api=lambda t: parity.data.tensors(X, Y[:3]), argv=None,
        api_says="x and y must have the same number of points", cli_says=None, outputs=[]),
    "2-D x": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X.reshape(4, 5), Y.reshape(4, 5)),
        argv=None, api_says="x must be 1-D", cli_says=None, outputs=[]),
    "w0 NaN": Row(files={}, api=lambda t: fit.gradient_descent(np.array([np.nan, 0.0]), X, Y), argv=None,
        api_says="w0 contains a non-finite", cli_says=None, outputs=[]),
    "order of floats": Row(files={},
        api=lambda t: fit.stochastic_gradient_descent(np.zeros(2), X, Y, ORDER.astype(float)),
        argv=None, api_says="order must hold integer", cli_says=None, outputs=[]),
    "lr a boolean": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y, lr=True), argv=None,
        api_says="lr must be a real number", cli_says=None, outputs=[]),
    "parity seed negative": Row(files={}, api=lambda t: parity_report.cases(5, seed=-1), argv=["parity", "--seed", "-1"],
        api_says="seed must be a non-negative integer",
        cli_says="seed must be a non-negative integer", outputs=[]),
    "order not a permutation": Row(files={}, api=lambda t: fit.adam_sgd(np.zeros(2), X, Y, np.zeros((2, 20), int)), argv=None,
        api_says="order", cli_says=None, outputs=[]),
    "order wrong shape": Row(files={}, api=lambda t: fit.stochastic_gradient_descent(np.zeros(2), X, Y, ORDER[:, :10]),
        argv=None, api_says="order must have shape", cli_says=None, outputs=[]),
    "torch y_hat (n,1) vs y (n,)": Row(files={}, api=lambda t: parity.losses.l1(torch.zeros(20, 1), torch.zeros(20)), argv=None,
        api_says="y_hat and y must have the same shape", cli_says=None, outputs=[]),
    "mse y_hat (n,1) vs y (n,)": Row(files={}, api=lambda t: losses.mse(np.zeros((20, 1)), np.zeros(20)), argv=None,
        api_says="y_hat and y must have the same shape", cli_says=None, outputs=[]),
    "NaN in x": Row(files={},
        api=lambda t: fit.gradient_descent(np.zeros(2), np.where(np.arange(20) == 3, np.nan, X), Y),
        argv=None, api_says="x contains a non-finite value (nan) at index 3", cli_says=None,
        outputs=[]),
    "empty data": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), np.array([]), np.array([])),
        argv=None, api_says="x is empty", cli_says=None, outputs=[]),
    "lr NaN": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y, lr=float("nan")), argv=None,
        api_says="lr must be finite", cli_says=None, outputs=[]),
    "steps float": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y, steps=2.5), argv=None,
        api_says="steps must be a positive integer", cli_says=None, outputs=[]),
    "epochs zero": Row(files={}, api=lambda t: ff.batch_order(10, 0), argv=None,
        api_says="epochs must be a positive integer", cli_says=None, outputs=[]),
    "complex x": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X.astype(complex), Y), argv=None,
        api_says="x must hold real numbers", cli_says=None, outputs=[]),
    "model as an unknown name": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y, model="cubic"), argv=None,
        api_says="model must be one of", cli_says=None, outputs=[]),
    "torch lr negative": Row(files={},
        api=lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, *parity.tensors(X, Y), lr=-1.0),
        argv=None, api_says="lr must be positive", cli_says=None, outputs=[]),
    "torch order for other data": Row(files={},
        api=lambda t: parity.fit.adam_sgd(parity.SimpleLinearModel(), parity.losses.l1, parity.data.dataset(X, Y), nepochs=2, order=ff.batch_order(10, 2)),
        argv=None, api_says="order must have shape (epochs, 20)", cli_says=None, outputs=[]),
    # CLI-only: options that do not apply are refused, never ignored.
    "order seed negative": Row(files={}, api=None, argv=["lecture", "--order-seed", "-1", "--out", "{tmp}/out"],
        api_says=None, cli_says="--order-seed", outputs=["out"]),
    "degree without poly": Row(files={}, api=None, argv=["sweep", "--degree", "12", "--plot", "{tmp}/sw.png"], api_says=None,
        cli_says="--degree applies to the poly model only", outputs=["sw.png"]),
    "epochs with gd": Row(files={}, api=None, argv=["sweep", "--optimizer", "gd", "--epochs", "3"], api_says=None,
        cli_says="--epochs does not apply to --optimizer gd", outputs=[]),
    "batch size with gd": Row(files={}, api=None, argv=["sweep", "--batch-size", "3"], api_says=None,
        cli_says="--batch-size does not apply to --optimizer gd", outputs=[]),
    "steps with adam": Row(files={}, api=None, argv=["sweep", "--optimizer", "adam", "--steps", "3"], api_says=None,
        cli_says="--steps does not apply to --optimizer adam", outputs=[]),
    "unknown optimizer": Row(files={}, api=None, argv=["sweep", "--optimizer", "lbfgs"], api_says=None,
        cli_says="--optimizer must be one of", outputs=[]),
    "opt unknown keyword": Row(files={}, api=lambda t: ff.registry.optimizer("RMSprop", alpah=0.9),
        argv=["sweep", "--optimizer", "RMSprop", "--opt", "alpah=0.9"],
        api_says="RMSprop has no keyword 'alpah'",
        cli_says="--opt: RMSprop has no keyword 'alpah'", outputs=[]),
    "opt bad value": Row(files={}, api=lambda t: ff.registry.optimizer("SGD", nesterov=True),
        argv=["sweep", "--optimizer", "SGD", "--opt", "nesterov=True"],
        api_says="nesterov=True needs momentum > 0", cli_says="nesterov=True needs momentum > 0",
        outputs=[]),
    "opt for a lecture optimizer": Row(files={}, api=lambda t: ff.registry.optimizer("adam", b1=0.5),
        argv=["sweep", "--optimizer", "adam", "--opt", "b1=0.5"], api_says="takes no keywords",
        cli_says="--opt: optimizer 'adam' takes no keywords", outputs=[]),
    "opt malformed": Row(files={}, api=None, argv=["sweep", "--optimizer", "SGD", "--opt", "momentum"], api_says=None,
        cli_says="--opt must look like KEY=VALUE", outputs=[]),
    "opt not a literal": Row(files={}, api=None, argv=["sweep", "--optimizer", "SGD", "--opt", "momentum=fast"],
        api_says=None, cli_says="is not a number", outputs=[]),
    "seeds with a full-batch torch optimizer": Row(files={}, api=None, argv=["sweep", "--optimizer", "Adam", "--seeds", "2"], api_says=None,
        cli_says="--seeds applies to minibatches", outputs=[]),
    "coords with random": Row(files={}, api=None,
        argv=["surface", "--directions", "random", "--coords", "0,1", "--grid", "4x4"],
        api_says=None, cli_says="--coords applies to --directions coords", outputs=[]),
    "direction seed with coords": Row(files={}, api=None, argv=["surface", "--direction-seed", "3", "--grid", "4x4"], api_says=None,
        cli_says="--direction-seed applies to --directions random", outputs=[]),
    "surface degree without poly": Row(files={}, api=None, argv=["surface", "--degree", "3", "--grid", "4x4", "--out", "{tmp}/s.npz"],
        api_says=None, cli_says="--degree applies to the poly model only", outputs=["s.npz"]),
    # Issue 14. Output paths: checked by the parser, before the (long) computation.
    "out names an existing file": Row(files={"f.txt": "mine"}, api=None, argv=["lecture", "--out", "{tmp}/f.txt"], api_says=None,
        cli_says="argument --out: '{tmp}/f.txt' exists and is not a folder", outputs=[],
        subprocess=dict(within=QUICK)),
    "out folder holds the user's files": Row(files={"mine/notes.txt": "keep"}, api=None, argv=["lecture", "--out", "{tmp}/mine"],
        api_says=None, cli_says="holds 'notes.txt', which a run of this command does not write",
        outputs=[], subprocess=dict(within=QUICK)),
    "out is the working folder": Row(files={}, api=None, argv=["lecture", "--out", "."], api_says=None,
        cli_says="argument --out: '.'", outputs=[], subprocess=dict(within=QUICK)),
    "surface out names a folder": Row(files={"d/keep.txt": ""}, api=None,
        argv=["surface", "--grid", "3x3", *LONG, "--out", "{tmp}/d"], api_says=None,
        cli_says="argument --out: '{tmp}/d' is a folder", outputs=[],
        subprocess=dict(within=QUICK)),
    "out in a missing folder": Row(files={}, api=None, argv=["surface", "--grid", "3x3", *LONG, "--out", "{tmp}/no/s.npz"],
        api_says=None,
        cli_says="argument --out: '{tmp}/no/s.npz': folder '{tmp}/no' does not exist", outputs=[],
        subprocess=dict(within=QUICK)),
    "plot format matplotlib cannot write": Row(files={}, api=None, argv=["surface", "--grid", "3x3", *LONG, "--plot", "{tmp}/x.txt"],
        api_says=None,
        cli_says="argument --plot: '{tmp}/x.txt': matplotlib cannot write format 'txt'",
        outputs=["x.txt"], subprocess=dict(within=QUICK)),
    "plot without a suffix": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4", *LONG, "--plot", "{tmp}/figure"],
        api_says=None,
        cli_says="argument --plot: '{tmp}/figure': matplotlib cannot write a name without a suffix",
        outputs=["figure"], subprocess=dict(within=QUICK)),
    "plot names a folder": Row(files={"d/keep.txt": ""}, api=None,
        argv=["sweep", "--lr", "1e-3:1:4", *LONG, "--plot", "{tmp}/d"], api_says=None,
        cli_says="argument --plot: '{tmp}/d' is a folder", outputs=[],
        subprocess=dict(within=QUICK)),
    "plot names a device": Row(files={}, api=None, argv=["surface", "--grid", "3x3", "--plot", "/dev/null"], api_says=None,
        cli_says="argument --plot: '/dev/null' exists and is not a regular file", outputs=[],
        subprocess=dict(within=QUICK)),
    "out empty path": Row(files={}, api=None, argv=["surface", "--grid", "3x3", "--out", ""], api_says=None,
        cli_says="argument --out: an empty path", outputs=[], subprocess=dict(within=QUICK)),
    # No silently wrong result.
    "noise overflows when squared": Row(files={}, api=lambda t: lecture.run(*ff.lecture_data(noise=1e300), steps=("ols",)),
        argv=["lecture", "--noise", "1e300", "--out", "{tmp}/out"], api_says="y values reach",
        cli_says="--noise 1e+300: the data's y values reach", outputs=["out"],
        subprocess=dict(within=QUICK)),
    "noise overflows a float": Row(files={}, api=lambda t: ff.lecture_data(noise=1e308),
        argv=["lecture", "--noise", "1e308", "--json"], api_says="noise=1e+308 overflows",
        cli_says="--noise=1e+308 overflows", outputs=[], subprocess=dict(within=QUICK)),
    "surface out of integers": Row(files={},
        api=lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, np.zeros(3), np.zeros(2), out=np.zeros((2, 3), int)),
        argv=None, api_says="out must be a writable floating-point array", cli_says=None,
        outputs=[]),
    "torch negative nsteps": Row(files={},
        api=lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, *parity.tensors(X, Y), nsteps=-1),
        argv=None, api_says="nsteps must be a positive integer", cli_says=None, outputs=[]),
    "torch order for half the data": Row(files={},
        api=lambda t: parity.fit.adam_sgd(parity.SimpleLinearModel(), parity.losses.l1, parity.data.dataset(*ff.lecture_data()), nepochs=2, order=ff.batch_order(50, 2)),
        argv=None, api_says="order must have shape (epochs, 100)", cli_says=None, outputs=[]),
    "torch NaN in x": Row(files={},
        api=lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, torch.from_numpy(np.where(np.arange(20) == 3, np.nan, X)), torch.from_numpy(Y)),
        argv=None, api_says="x contains a non-finite value (nan) at index 3", cli_says=None,
        outputs=[]),
    "torch NaN in a dataset's x": Row(files={},
        api=lambda t: parity.fit.stochastic_gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, torch.utils.data.TensorDataset(torch.from_numpy(np.where(np.arange(20) == 3, np.nan, X)), torch.from_numpy(Y)), nepochs=2),
        argv=None, api_says="x contains a non-finite value (nan) at index 3", cli_says=None,
        outputs=[]),
    "torch minibatch without order": Row(files={},
        api=lambda t: parity.fit.run("adam", parity.SimpleLinearModel(), parity.losses.l1, *parity.tensors(X, Y), lr=0.1),
        argv=None, api_says="order: optimizer 'adam' takes minibatches", cli_says=None, outputs=[]),
    "torch numpy data": Row(files={},
        api=lambda t: parity.fit.gradient_descent(parity.SimpleLinearModel(), parity.losses.l1, X, Y),
        argv=None, api_says="x must be a torch tensor", cli_says=None, outputs=[]),
    # Every message names what the user typed.
    "range wider than a float": Row(files={}, api=None,
        argv=["surface", "--range=-1e308:1e308,0:1", "--grid", "3x3", "--out", "{tmp}/s.npz"],
        api_says=None, cli_says="--range '-1e308:1e308,0:1': a side's width overflows",
        outputs=["s.npz"], subprocess=dict(within=QUICK)),
    "x spread too small": Row(files={"tiny.csv": TINY}, api=lambda t: ff.ols.ols(*ff.read_csv(t / "tiny.csv")),
        argv=["lecture", "--data", "{tmp}/tiny.csv", "--out", "{tmp}/out"],
        api_says="spread of its values (9e-300) is too small to fit",
        cli_says="spread of its values (9e-300) is too small to fit", outputs=["out"],
        subprocess=dict(within=QUICK)),
    "torch x spread too small": Row(files={"tiny.csv": TINY},
        api=lambda t: parity.ols.ols(*parity.tensors(*ff.read_csv(t / "tiny.csv"))), argv=None,
        api_says="is too small to fit", cli_says=None, outputs=[]),
    "least squares spread too small": Row(files={"tiny.csv": TINY},
        api=lambda t: ff.ols.least_squares(*ff.read_csv(t / "tiny.csv"), degree=2), argv=None,
        api_says="is too small to fit", cli_says=None, outputs=[]),
    "x too large to square": Row(files={}, api=lambda t: ff.ols.ols(X * 1e200, Y), argv=None,
        api_says="x: its values (up to 1.5e+200) are too large", cli_says=None, outputs=[]),
    "complex x in a sweep": Row(files={}, api=lambda t: sweep.sweep("gd", np.zeros(2), X.astype(complex), Y, [0.1], steps=2),
        argv=None, api_says="x must hold real numbers", cli_says=None, outputs=[]),
    "complex x in a surface": Row(files={},
        api=lambda t: surface.loss_surface("linear", "l1", X.astype(complex), Y, [0.0], [0.0]),
        argv=None, api_says="x must hold real numbers", cli_says=None, outputs=[]),
    "unknown model name in a surface": Row(files={}, api=lambda t: surface.loss_surface("cubic", "l1", X, Y, [0.0], [0.0]), argv=None,
        api_says="model must be one of", cli_says=None, outputs=[]),
    "unknown model name in a sweep": Row(files={}, api=lambda t: sweep.sweep("gd", np.zeros(2), X, Y, [0.1], steps=2, model="cubic"),
        argv=None, api_says="model must be one of", cli_says=None, outputs=[]),
    "model neither name nor function": Row(files={}, api=lambda t: surface.mse_surface_exact(3, X, Y, [0.0], [0.0]), argv=None,
        api_says="model must be a function or a registry name", cli_says=None, outputs=[]),
    "no devices for a surface": Row(files={},
        api=lambda t: surface.loss_surface(models.linear, losses.l1, X, Y, [0.0], [0.0], devices=[]),
        argv=None, api_says="devices must name at least one device", cli_says=None, outputs=[]),
    "no devices for a sweep": Row(files={}, api=lambda t: sweep.sweep("gd", np.zeros(2), X, Y, [0.1], steps=2, devices=[]),
        argv=None, api_says="devices must name at least one device", cli_says=None, outputs=[]),
    "a device by name": Row(files={}, api=lambda t: sweep.sweep("gd", np.zeros(2), X, Y, [0.1], steps=2, devices=["cpu"]),
        argv=None, api_says="devices[0] must be a JAX device", cli_says=None, outputs=[]),
    "steps beyond int32": Row(files={}, api=lambda t: fit.gradient_descent(np.zeros(2), X, Y, steps=2**31),
        argv=["surface", "--grid", "3x3", "--steps", str(2**31)],
        api_says="steps must be below 2**31", cli_says="--steps must be below 2**31", outputs=[]),
    # Resource limits: refused before any allocation, naming the option to change.
    "surface path beyond memory": Row(files={}, api=None,
        argv=["surface", "--grid", "3x3", "--steps", "1000000000", "--plot", "{tmp}/s.png"],
        api_says=None, cli_says="--steps: this run needs about 44.7 GiB", outputs=["s.png"],
        subprocess=dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "4G"})),
    "sweep data beyond memory": Row(files={}, api=None, argv=["sweep", "--n", "10000000000"], api_says=None,
        cli_says="--n: this run needs about 596.0 GiB", outputs=[],
        subprocess=dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "4G"})),
    "sweep runs beyond memory": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:10000000000", "--json"], api_says=None,
        cli_says="--lr: this run needs about", outputs=[], subprocess=dict(within=QUICK)),
    "lecture data beyond memory": Row(files={}, api=None, argv=["lecture", "--n", "10000000", "--out", "{tmp}/out"], api_says=None,
        cli_says="--n: this run needs about", outputs=["out"],
        subprocess=dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "4G"})),
    "parity cases beyond memory": Row(files={}, api=None, argv=["parity", "--cases", "1000000000"], api_says=None,
        cli_says="--cases: this run needs about", outputs=[], subprocess=dict(within=QUICK)),
    "fit path beyond a limit": Row(files={},
        api=lambda t: fit.gradient_descent(
            np.zeros(2), X, Y, steps=10**6, runtime=runtime.defaults(memory_limit="1M")),
        argv=None, api_says="steps: this run needs about 22.9 MiB", cli_says=None, outputs=[]),
    # The environment.
    "JAX_ENABLE_X64 not a truth value": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4"], api_says=None,
        cli_says="environment variable JAX_ENABLE_X64='maybe'", outputs=[],
        subprocess=dict(within=QUICK, env={"JAX_ENABLE_X64": "maybe"})),
    "JAX_PLATFORMS unknown": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4"], api_says=None,
        cli_says="environment variable JAX_PLATFORMS='bogus'", outputs=[],
        subprocess=dict(within=QUICK, env={"JAX_PLATFORMS": "bogus"})),
    "memory limit not a size": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4"], api_says=None,
        cli_says="FUNCTIONAL_FIT_MEMORY_LIMIT='plenty' must be a number of bytes", outputs=[],
        subprocess=dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "plenty"})),
    # Streams: a closed or full stdout is an I/O error: exit status 1.
    "stdout closed": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4", *LONG], api_says=None,
        cli_says="standard output is closed", outputs=[],
        subprocess=dict(within=QUICK, stdout="closed", status=1)),
    "stdout full": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4", "--steps", "3"], api_says=None,
        cli_says="cannot write standard output: No space left on device", outputs=[],
        subprocess=dict(stdout="full", status=1)),
    # issue 19, group D: the environment, CSV values, advice the command can follow.
    "JAX_PLATFORMS not installed": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4"], api_says=None,
        cli_says="environment variable JAX_PLATFORMS='cuda': JAX has no working backend for it",
        outputs=[], subprocess=dict(within=QUICK, env={"JAX_PLATFORMS": "cuda"})),
    "XLA_FLAGS unknown flag": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4"], api_says=None,
        cli_says="environment variable XLA_FLAGS='--garbage': Unknown flag in XLA_FLAGS: --garbage",
        outputs=[], subprocess=dict(within=QUICK, env={"XLA_FLAGS": "--garbage"})),
    "XLA_FLAGS bad value": Row(files={}, api=None, argv=["lecture", "--out", "{tmp}/out"], api_says=None,
        cli_says="XLA_FLAGS='--xla_force_host_platform_device_count=abc': Couldn't interpret value abc",
        outputs=["out"], subprocess=dict(within=QUICK, env={
            "XLA_FLAGS": "--xla_force_host_platform_device_count=abc"})),
    "lecture diverges on large-scale data": Row(files={"engel.csv": ENGEL}, api=None,
        argv=["lecture", "--data", "{tmp}/engel.csv", "--out", "{tmp}/out"], api_says=None,
        cli_says="rescale x and y (divide them by a power of ten), or choose a learning rate with "
        "`functional-fit sweep --data", outputs=["out"]),
    "csv thousands separator": Row(files={"k.csv": 'x,y\n"1,000",2\n3,4\n'},
        api=lambda t: ff.read_csv(t / "k.csv"), argv=["lecture", "--data", "{tmp}/k.csv"],
        api_says="a thousands separator (1000) or a decimal comma (1.000)?",
        cli_says="a thousands separator (1000) or a decimal comma (1.000)?", outputs=[]),
    "csv digits grouped with _": Row(files={"u.csv": "x,y\n1_000,2\n3,4\n"},
        api=lambda t: ff.read_csv(t / "u.csv"), argv=None, api_says="'1_000' is not a number; digits "
        "grouped with '_'", cli_says=None, outputs=[]),
    "csv digits grouped with _, quoted": Row(files={"q.csv": 'x,y\n"1_000",2\n3,4\n'},
        api=lambda t: ff.read_csv(t / "q.csv"), argv=None, api_says="'1_000' is not a number",
        cli_says=None, outputs=[]),
    "csv full-width digits": Row(files={"w.csv": "x,y\n\uff11\uff12,2\n3,4\n"},
        api=lambda t: ff.read_csv(t / "w.csv"), argv=None, api_says="is not a number; a character "
        "that is not ASCII", cli_says=None, outputs=[]),
    "csv doubled byte-order mark": Row(files={"b.csv": "\ufeff\ufeffx,y\n1,2\n3,4\n".encode()},
        api=lambda t: ff.read_csv(t / "b.csv"), argv=["sweep", "--data", "{tmp}/b.csv"],
        api_says="(header is '\\ufeffx', y); '\\ufeffx' holds an invisible character",
        cli_says="(header is '\\ufeffx', y)", outputs=[]),
    "csv NUL in the header": Row(files={"n.csv": "x\0,y\n1,2\n3,4\n"},
        api=lambda t: ff.read_csv(t / "n.csv"), argv=None,
        api_says="(header is 'x\\x00', y)", cli_says=None, outputs=[]),
    # issue 19, group A: the command line's outputs, signals and options.
    "out folder holds a figure of the user's": Row(files={"res/results.json": '{"old": true}', "res/my.png": "mine"},
        api=None, argv=["lecture", "--n", "20", "--out", "{tmp}/res"], api_says=None,
        cli_says="--out '{tmp}/res' holds 'my.png', which a run of this command does not write",
        outputs=[], subprocess=dict(within=QUICK)),
    "out folder holds more than its manifest lists": Row(files={
            "res/manifest.json": '{"written_by": "functional-fit", "files": ["results.json"]}',
            "res/results.json": '{"old": true}', "res/notes.html": "mine"},
        api=None, argv=["lecture", "--n", "20", "--out", "{tmp}/res"], api_says=None,
        cli_says="holds 'notes.html', which a run of this command does not write", outputs=[]),
    "out is the data": Row(files={"good.csv": GOOD}, api=None,
        argv=["surface", "--data", "{tmp}/good.csv", "--grid", "3x3", "--steps", "5", "--out", "{tmp}/./good.csv"],
        api_says=None, cli_says="would overwrite the input --data", outputs=[]),
    "html is the data": Row(files={"good.csv": GOOD}, api=None,
        argv=["lecture", "--data", "{tmp}/good.csv", "--html", "{tmp}/good.csv"],
        api_says=None, cli_says="--html '{tmp}/good.csv' would overwrite the input --data", outputs=[],
        subprocess=dict(within=QUICK)),
    "out folder holds the data": Row(files={"res/good.csv": GOOD}, api=None,
        argv=["lecture", "--data", "{tmp}/res/good.csv", "--out", "{tmp}/res"],
        api_says=None, cli_says="would overwrite the input --data", outputs=[]),
    "out and plot are one file": Row(files={}, api=None,
        argv=["surface", "--grid", "3x3", "--steps", "5", "--out", "{tmp}/s.png", "--plot", "{tmp}/./s.png"],
        api_says=None, cli_says="--out and --plot name the same file", outputs=["s.png"]),
    "html inside the out folder": Row(files={"res/results.json": '{"old": true}'}, api=None,
        argv=["lecture", "--n", "20", "--out", "{tmp}/res", "--html", "{tmp}/res/page.html"],
        api_says=None, cli_says="is inside --out", outputs=["res/page.html"]),
    "out name too long": Row(files={}, api=None,
        argv=["surface", "--grid", "3x3", *LONG, "--out", "{tmp}/" + "a" * 260 + ".npz"], api_says=None,
        cli_says="argument --out: ", outputs=[], subprocess=dict(within=QUICK)),
    "plot name too long": Row(files={}, api=None,
        argv=["surface", "--grid", "3x3", *LONG, "--plot", "{tmp}/" + "a" * 250 + ".png"], api_says=None,
        cli_says="is longer than this file system allows", outputs=[], subprocess=dict(within=QUICK)),
    "out path too long": Row(files={}, api=None,
        argv=["sweep", "--lr", "1e-3:1:4", *LONG, "--plot", "{tmp}/" + "/".join(["b" * 200] * 22) + "/s.png"],
        api_says=None, cli_says="argument --plot: ", outputs=[], subprocess=dict(within=QUICK)),
    "range matplotlib cannot draw": Row(files={}, api=None,
        argv=["surface", "--grid", "3x3", "--steps", "5", "--range=0:1,1e308:1.7e308", "--out", "{tmp}/s.npz",
              "--plot", "{tmp}/s.png"], api_says=None, cli_says="--range: matplotlib cannot draw",
        outputs=["s.npz", "s.png"], subprocess=dict()),
    "option given twice": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4", "--steps", "5", "--steps", "7"],
        api_says=None, cli_says="argument --steps: given twice", outputs=[]),
    "lr count not a whole number": Row(files={}, api=None, argv=["sweep", "--lr", "0.1:1:1.5"], api_says=None,
        cli_says="COUNT, the third field, must be a whole number", outputs=[]),
    "lecture on one point": Row(files={}, api=None, argv=["lecture", "--n", "1", "--out", "{tmp}/out"], api_says=None,
        cli_says="--n 1: ", outputs=["out"]),
    "memory limit of a kilobyte": Row(files={}, api=None, argv=["sweep", "--lr", "1e-3:1:4"], api_says=None,
        cli_says="more than the 1.0 KiB available", outputs=[],
        subprocess=dict(within=QUICK, env={"FUNCTIONAL_FIT_MEMORY_LIMIT": "1K"})),
    # issue 19, group C
    "torch optimizer over another module": Row(files={},
        api=lambda t: _train(LIN64(), optimizer=torch.optim.SGD(LIN64().parameters(), 0.1), steps=3),
        argv=None, api_says="optimizer holds 2 of 2 tensors that are not the module's", cli_says=None,
        outputs=[]),
    "torch optimizer over no trainable parameter": Row(files={},
        api=lambda t: _weight_only(LIN64()),
        argv=None, api_says="optimizer holds none of the module's trainable parameters (bias)",
        cli_says=None, outputs=[]),
    "torch float32 module, float64 data": Row(files={},
        api=lambda t: _train(torch.nn.Linear(1, 1), steps=3),
        argv=None, api_says="x has dtype torch.float64, the module's parameters torch.float32",
        cli_says=None, outputs=[]),
    "torch loss with reduction none": Row(files={},
        api=lambda t: _train(LIN64(), torch.nn.MSELoss(reduction="none"),
                             order=ff.batch_order(20, 2), batch_size=7),
        argv=None, api_says="loss_fn must return a scalar tensor, got shape (7, 1)", cli_says=None,
        outputs=[]),
    "compare a module with BatchNorm, a port without state": Row(files={},
        api=lambda t: parity.compare(_jax_batchnorm, torch.nn.Sequential(
            torch.nn.Linear(1, 1), torch.nn.BatchNorm1d(1)).double(), X[:, None], Y[:, None],
            jax_loss=losses.mse, torch_loss=parity.losses.mse, steps=3),
        argv=None, api_says="torch_module has buffers (1.running_mean, 1.running_var, "
        "1.num_batches_tracked), so jax_model must be jax_model(params, state, x) -> (y_hat, "
        "new_state)", cli_says=None, outputs=[]),
    "compare a stateful port that returns the wrong state": Row(files={},
        api=lambda t: parity.compare(lambda p, s, x: (x @ p["weight"].T, {}), _with_buffer(),
            X[:, None], Y[:, None], jax_loss=losses.mse, torch_loss=parity.losses.mse, steps=3),
        argv=None, api_says="jax_model's new state must be a dict of the buffers ['count'], "
        "got []", cli_says=None, outputs=[]),
    "compare dropout unknown": Row(files={},
        api=lambda t: parity.compare(models.mlp, parity.models.MLP((1, 2, 1), dtype=torch.float64),
            X[:, None], Y[:, None], jax_loss=losses.mse, torch_loss=parity.losses.mse, steps=3,
            dropout="sometimes"),
        argv=None, api_says="dropout must be one of", cli_says=None, outputs=[]),
    "compare a Dropout2d in training mode": Row(files={},
        api=lambda t: parity.compare(models.mlp, torch.nn.Sequential(torch.nn.Linear(1, 1),
            torch.nn.Dropout2d(0.5)).double(), X[:, None], Y[:, None], jax_loss=losses.mse,
            torch_loss=parity.losses.mse, steps=3),
        argv=None, api_says="torch_module has '1' (Dropout2d), whose masks cannot be shared "
        "with JAX", cli_says=None, outputs=[]),
    "train a stateful model given a bad key": Row(files={},
        api=lambda t: ff.fit.train({"w": np.zeros(2)}, X, Y, model=lambda p, x, key=None: x,
            loss=losses.mse, optimizer=optax.sgd(0.1), steps=3, key=3),
        argv=None, api_says="key must be a JAX PRNG key (jax.random.key(0)), got int",
        cli_says=None, outputs=[]),
    "train a stateful model whose state changes shape": Row(files={},
        api=lambda t: ff.fit.train({"w": np.zeros(2)}, X, Y,
            model=lambda p, s, x: (p["w"][0] + p["w"][1] * x, {"n": jnp.zeros(3)}),
            loss=losses.mse, optimizer=optax.sgd(0.1), steps=3, state={"n": np.zeros(2)}),
        argv=None, api_says="model's new state has a leaf float64[3] where the state has "
        "float64[2]", cli_says=None, outputs=[]),
    "train a state holding strings": Row(files={},
        api=lambda t: ff.fit.train({"w": np.zeros(2)}, X, Y,
            model=lambda p, s, x: (p["w"][0] + p["w"][1] * x, s),
            loss=losses.mse, optimizer=optax.sgd(0.1), steps=3, state={"n": np.array(["a"])}),
        argv=None, api_says="state['n'] must hold numbers, got dtype <U1", cli_says=None,
        outputs=[]),
    "compare a module without parameters": Row(files={},
        api=lambda t: parity.compare(lambda p, x: x, torch.nn.Identity(), X[:, None], Y[:, None],
            jax_loss=losses.mse, torch_loss=parity.losses.mse, steps=3),
        argv=None, api_says="torch_module (Identity) has no parameters", cli_says=None, outputs=[]),
    "compare given a JAX start missing a parameter": Row(files={},
        api=lambda t: parity.compare(models.mlp, parity.models.MLP((1, 2, 1), dtype=torch.float64),
            X[:, None], Y[:, None], jax_loss=losses.mse, torch_loss=parity.losses.mse, steps=3,
            jax_params={"0.weight": np.zeros((2, 1))}),
        argv=None, api_says="jax_params must be a dict of the module's parameters by state_dict "
        "name (0.weight, 0.bias, 2.weight, 2.bias)", cli_says=None, outputs=[]),
    "parity cases beyond any working day": Row(files={}, api=lambda t: parity_report.cases(10**6),
        argv=["parity", "--cases", "100000"], api_says="cases must be at most 72000",
        cli_says="--cases must be at most 72000", outputs=[], subprocess=dict(within=QUICK)),
    # issue 19, group B
    "surface base longer than the model's": Row(files={},
        api=lambda t: surface.loss_surface("linear", "mse", X, Y, [0.0, 1.0], [0.0, 1.0], base=np.zeros(5), coords=(3, 4)),
        argv=None, api_says="base must have shape (2,) for the linear model, got (5,)", cli_says=None,
        outputs=[]),
    "surface base shorter than the model's": Row(files={},
        api=lambda t: surface.loss_surface("sine", "mse", X, Y, [0.0, 1.0], [0.0, 1.0], base=np.zeros(2)),
        argv=None, api_says="base must have shape (3,) for the sine model, got (2,)", cli_says=None,
        outputs=[]),
    "exact surface plane of the wrong length": Row(files={},
        api=lambda t: surface.mse_surface_exact("linear", X, Y, [0.0, 1.0], [0.0, 1.0], plane=surface.Plane(np.zeros(3), np.eye(3)[0], np.eye(3)[1])),
        argv=None, api_says="plane.origin must have shape (2,) for the linear model", cli_says=None,
        outputs=[]),
    "streamed layout of a loss that is not a mean": Row(files={},
        api=lambda t: surface.loss_surface("linear", lambda a, b: jnp.minimum(jnp.mean((a - b) ** 2), 60.0), X, Y, [0.0, 1.0], [0.0, 1.0], layout="streamed"),
        argv=None, api_says="layout: 'streamed' needs a loss that is a mean of per-point terms",
        cli_says=None, outputs=[]),
    "exact surface overflowing at the corners": Row(files={},
        api=lambda t: surface.mse_surface_exact("linear", X, Y, [0.0, 1.0], [0.0, 1e300]),
        argv=["surface", "--exact", "--loss", "mse", "--grid", "3x3", "--range=0:1,1e300:1.7e308"],
        api_says="a_values, b_values: the MSE overflows float64 at a corner of the grid",
        cli_says="--range 0:1,1e300:1.7e308: a_values, b_values: the MSE overflows float64 at a "
        "corner of the grid", outputs=[]),
    "model fails on the short last batch": Row(files={},
        api=lambda t: fit.train({"w": np.zeros(1)}, X, Y, model=_squeezed, loss="mse", optimizer=registry.optimizer("adam")(0.1), order=ORDER, batch_size=19),
        argv=None, api_says="batch_size 19: on a batch of 1 of the 20 points, y_hat and y must have the same shape",
        cli_says=None, outputs=[]),
    # issue 22: functional-fit compare
    "compare without --torch": Row(files=COMPARE_FILES, api=None,
        argv=[a for a in COMPARE if "torch_model" not in a and a != "--torch"], api_says=None,
        cli_says="--torch FILE.py:NAME is required", outputs=[]),
    "compare --torch file missing": Row(files=COMPARE_FILES, api=None,
        argv=[a.replace("torch_model.py", "nowhere.py") for a in COMPARE], api_says=None,
        cli_says="/nowhere.py' does not exist", outputs=[]),
    "compare unknown loss": Row(files=COMPARE_FILES, api=None, argv=[*COMPARE, "--loss", "huber"],
        api_says=None, cli_says="--loss must be one of", outputs=[]),
    "compare unknown optimizer": Row(files=COMPARE_FILES,
        api=lambda t: _compare(optimizer=("Adamm", {})), argv=[*COMPARE, "--optimizer", "Adamm"],
        api_says="optimizer must be one of", cli_says="--optimizer must be one of", outputs=[]),
    "compare optimizer keyword unknown": Row(files=COMPARE_FILES,
        api=lambda t: _compare(optimizer=("SGD", {"lr": 0.1, "beta": 1})),
        argv=[*COMPARE, "--opt", "beta=1"], api_says="SGD has no keyword 'beta'",
        cli_says="--opt: SGD has no keyword 'beta'", outputs=[]),
    "compare unknown scheduler": Row(files=COMPARE_FILES, api=None,
        argv=[*COMPARE, "--scheduler", "StepLRR"], api_says=None,
        cli_says="--scheduler must be one of StepLR", outputs=[]),
    "compare scheduler keyword unknown": Row(files=COMPARE_FILES, api=None,
        argv=[*COMPARE, "--scheduler", "StepLR", "--sched", "step=2"], api_says=None,
        cli_says="--sched: StepLR has no keyword 'step'", outputs=[],
        subprocess=dict(within=QUICK)),
    "compare scheduler keyword missing": Row(files=COMPARE_FILES, api=None,
        argv=[*COMPARE, "--scheduler", "ExponentialLR"], api_says=None,
        cli_says="--sched: ExponentialLR needs gamma", outputs=[]),
    "compare scheduler keyword out of range": Row(files=COMPARE_FILES,
        api=lambda t: _compare(scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 0)),
        argv=[*COMPARE, "--scheduler", "StepLR", "--sched", "step_size=0"],
        api_says="step_size must be a positive integer",
        cli_says="--sched: StepLR: step_size must be a positive integer", outputs=[]),
    "compare --sched without --scheduler": Row(files=COMPARE_FILES, api=None,
        argv=[*COMPARE, "--sched", "step_size=2"], api_says=None,
        cli_says="--sched needs --scheduler NAME", outputs=[]),
    "compare max norm negative": Row(files=COMPARE_FILES, api=lambda t: _compare(max_norm=-1.0),
        argv=[*COMPARE, "--max-norm", "-1"], api_says="max_norm must be positive",
        cli_says="--max-norm must be positive", outputs=[]),
    "compare norm type zero": Row(files=COMPARE_FILES,
        api=lambda t: _compare(max_norm=1.0, norm_type=0.0),
        argv=[*COMPARE, "--max-norm", "1", "--norm-type", "0"], api_says="norm_type must be positive",
        cli_says="--norm-type must be positive", outputs=[]),
    "compare --norm-type without --max-norm": Row(files=COMPARE_FILES, api=None,
        argv=[*COMPARE, "--norm-type", "1"], api_says=None,
        cli_says="--norm-type needs --max-norm X", outputs=[]),
    "compare matmul precision unknown": Row(files=COMPARE_FILES,
        api=lambda t: _compare(matmul_precision="low"), argv=[*COMPARE, "--matmul-precision", "low"],
        api_says="matmul_precision must be one of",
        cli_says="argument --matmul-precision: invalid choice: 'low'", outputs=[]),
    "compare epochs without a batch size": Row(files=COMPARE_FILES,
        api=lambda t: _compare(epochs=2),
        argv=[a for a in COMPARE if a not in ("--steps", "3")] + ["--epochs", "2"],
        api_says="batch_size must be a positive integer", cli_says="--batch-size", outputs=[]),
    # issue 23: a surface in the files other tools read (more rows: tests/test_landscape_files.py)
    "h5 surface transposed": Row(files={},
        api=lambda t: surface.save_h5(t / "s.h5", [0.0, 1.0, 2.0], [0.0, 1.0], np.zeros((3, 2))),
        argv=None, api_says="z must have shape (len(b), len(a)) = (2, 3), got (3, 2); it is "
        "transposed", cli_says=None, outputs=["s.h5"]),
    "vtp surface in a missing folder": Row(files={},
        api=lambda t: surface.save_vtp(t / "no" / "s.vtp", [0.0, 1.0], [0.0, 1.0], np.zeros((2, 2))),
        argv=None, api_says="path: its folder", cli_says=None, outputs=["no/s.vtp"]),
    "interactive page names a folder": Row(files={"d/keep.txt": ""},
        api=lambda t: ff.plot.interactive(t / "d", [0.0, 1.0], [0.0, 1.0], np.zeros((2, 2))),
        argv=None, api_says="path names a folder", cli_says=None, outputs=[]),
    # issue 24: handout --print, the page as a PDF through headless Chromium
    "handout without a page": Row(files={}, api=None, argv=["handout"], api_says=None,
        cli_says="--print FILE is required", outputs=[]),
    "handout page missing": Row(files={}, api=None,
        argv=["handout", "--print", "{tmp}/index.html"], api_says=None,
        cli_says="index.html' does not exist; give the page", outputs=["index.pdf"]),
    "handout page not HTML": Row(files={"notes.txt": "mine"}, api=None,
        argv=["handout", "--print", "{tmp}/notes.txt"], api_says=None,
        cli_says="is not an HTML file", outputs=["notes.pdf"]),
    "handout page a folder": Row(files={"res/index.html": PAGE}, api=None,
        argv=["handout", "--print", "{tmp}/res"], api_says=None,
        cli_says="is a folder; give its HTML page", outputs=["res.pdf"]),
    "handout pdf into a missing folder": Row(files={"index.html": PAGE}, api=None,
        argv=["handout", "--print", "{tmp}/index.html", "--pdf", "{tmp}/nowhere/p.pdf"],
        api_says=None, cli_says="argument --pdf: ", outputs=["nowhere", "index.pdf"]),
    "handout pdf is the page": Row(files={"index.html": PAGE}, api=None,
        argv=["handout", "--print", "{tmp}/index.html", "--pdf", "{tmp}/index.html"],
        api_says=None, cli_says="would overwrite the input --print", outputs=["index.pdf"]),
    "handout without Chromium": Row(files={"index.html": PAGE}, api=None,
        argv=["handout", "--print", "{tmp}/index.html"], api_says=None,
        cli_says="no Chromium found: install Debian's package (sudo apt-get install chromium)",
        outputs=["index.pdf"],
        subprocess=dict(within=QUICK, env={"PATH": os.path.dirname(sys.executable)})),
    "handout FUNCTIONAL_FIT_CHROMIUM not executable": Row(files={"index.html": PAGE}, api=None,
        argv=["handout", "--print", "{tmp}/index.html"], api_says=None,
        cli_says="FUNCTIONAL_FIT_CHROMIUM='/nonexistent/chromium' is not an executable file",
        outputs=["index.pdf"],
        subprocess=dict(within=QUICK, env={"FUNCTIONAL_FIT_CHROMIUM": "/nonexistent/chromium"})),
}


def _setup(tmp_path: Path, files: dict) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        csv(tmp_path, name, text)


def _leftovers(tmp_path: Path, files: dict, outputs: list) -> list:
    """Anything under tmp_path that the row did not create itself."""
    made = {tmp_path / name for name in files} | {(tmp_path / n).parent for n in files}
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p not in made)


#: Bad inputs that are accepted today, in files that are not ours: strict xfail, so that the fix
#: turns them into failures to remove from this list.
KNOWN_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("row", [
    pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[k])) if k in KNOWN_GAPS else k
    for k, v in ROWS.items() if v.api is not None
])
def test_api(row, tmp_path):
    r = ROWS[row]
    _setup(tmp_path, r.files)
    with pytest.raises((InputError, ff.PrecisionError)) as exc:
        r.api(tmp_path)
    assert r.api_says in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("row", [k for k, v in ROWS.items()
                                 if v.argv is not None and v.subprocess is None])
def test_cli(row, tmp_path, capsys):
    r = ROWS[row]
    files, cli_says, outputs = r.files, r.cli_says, r.outputs
    _setup(tmp_path, files)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in r.argv]
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


@pytest.mark.parametrize("row", [k for k, v in ROWS.items()
                                 if v.argv is not None and v.subprocess is not None]
                         + ["csv malformed number", "grid too large", "lr negative"])
def test_cli_subprocess(row, tmp_path):
    """Through the entry point, in its own process: status, one line, no traceback, no file,
    and (``within``) far sooner than the refused computation would have taken."""
    r = ROWS[row]
    files, cli_says, outputs, how = r.files, r.cli_says, r.outputs, r.subprocess or {}
    _setup(tmp_path, files)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in r.argv]
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
    from functional_fit_cli.options import json_text

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


# --------------------------------------------------------------------------- issue 19, group D


def test_xla_flags_are_tried_in_a_child_and_good_ones_pass(monkeypatch):
    from functional_fit_cli import environment

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert environment.flags_problem() is None  # unset: no child at all
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert environment.flags_problem() is None
    monkeypatch.setenv("XLA_FLAGS", "no-dashes")
    assert environment.flags_problem() == (
        "environment variable XLA_FLAGS='no-dashes': Could not open file \"no-dashes\" to read "
        "flags for environment variable \"XLA_FLAGS\". (We assumed \"no-dashes\" was a file "
        "name because it did not start with a \"--\".)")


def test_both_csv_readers_refuse_what_only_python_reads(tmp_path):
    """numpy's reader (a file without quotes) and the csv module's (with quotes) agree on
    every value: a value is a number for both or for neither."""
    for value in ["1_000", "\uff11\uff12", "\u0661\u0662", "1\u00a0000"]:
        for quoted in (False, True):
            field = f'"{value}"' if quoted else value
            path = tmp_path / "v.csv"
            path.write_text(f"x,y\n{field},2\n3,4\n", encoding="utf-8")
            with pytest.raises(InputError, match="is not a number"):
                ff.read_csv(path)
    for value, number in [(" 1.5 ", 1.5), ("\u00a02", 2.0), ("-.5", -0.5), ("+1e3", 1000.0),
                          ("Inf", None)]:
        for quoted in (False, True):
            field = f'"{value}"' if quoted else value
            path = tmp_path / "v.csv"
            path.write_text(f"x,y\n{field},2\n3,4\n", encoding="utf-8")
            if number is None:
                with pytest.raises(InputError, match="not a finite number"):
                    ff.read_csv(path)
            else:
                assert ff.read_csv(path)[0].tolist() == [number, 3.0]
# --------------------------------------------------------------------------- issue 19, group A


def test_sigterm_and_sighup_end_a_run_as_ctrl_c_does(tmp_path):
    """``kill`` and a closed terminal: one line, exit status 128 + signum, no temporary left.
    The two runs go side by side, each in a folder of its own."""
    runs = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        folder = tmp_path / signal.Signals(signum).name
        folder.mkdir()
        runs[signum] = folder, subprocess.Popen(
            [sys.executable, "-m", "functional_fit", "surface", "--grid", "3x3", *LONG, "--out",
             f"{folder}/s.npz", "--plot", f"{folder}/s.png"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    for signum, (folder, proc) in runs.items():
        assert proc.poll() is None, "the fit ended before it was signalled"
        proc.send_signal(signum)
    for signum, (folder, proc) in runs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signum, err
        name = signal.Signals(signum).name
        assert err.strip().splitlines()[-1] == f"functional-fit surface: interrupted by {name}", err
        assert "Traceback" not in err
        assert list(folder.iterdir()) == []


def test_an_output_file_that_is_a_symbolic_link_is_written_through(tmp_path, capsys):
    """As ``open(link, "w")`` would: the file the link names gets the output; the link stays."""
    (tmp_path / "real.npz").write_bytes(b"old")
    (tmp_path / "s.npz").symlink_to("real.npz")
    assert main(["surface", "--grid", "4x4", "--steps", "5", "--out", f"{tmp_path}/s.npz"]) == 0
    assert (tmp_path / "s.npz").is_symlink() and os.readlink(tmp_path / "s.npz") == "real.npz"
    assert np.load(tmp_path / "real.npz")["losses"].shape == (4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.npz", "s.npz"]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                     KeyboardInterrupt()], ids=["full disk", "ctrl-c"])
def test_two_outputs_land_together_or_not_at_all(failure, tmp_path, monkeypatch, capsys):
    """A failure while the figure is written, after the archive was: neither lands."""
    from functional_fit import plot

    (tmp_path / "s.npz").write_bytes(b"old")

    def failing_save(fig, path, **kwargs):
        Path(path).write_bytes(b"half a PNG")
        raise failure

    monkeypatch.setattr(plot, "save", failing_save)
    rc = main(["surface", "--grid", "4x4", "--steps", "5", "--out", f"{tmp_path}/s.npz",
               "--plot", f"{tmp_path}/s.png"])
    err = capsys.readouterr().err
    assert rc == (1 if isinstance(failure, OSError) else 130), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if isinstance(failure, OSError):
        assert f"cannot write '{tmp_path}/s.png'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]
    assert (tmp_path / "s.npz").read_bytes() == b"old"


def test_lecture_folder_and_page_land_together(tmp_path, monkeypatch, capsys):
    """``lecture --out res --html page.html`` on a full disk while the page is written: the old
    ``res`` stays as it was, no page, no temporary."""
    from comparison import handout

    res = tmp_path / "res"
    res.mkdir()
    (res / "results.json").write_text('{"old": true}')  # an earlier version's set: no manifest
    real = handout.write

    def full_for_the_page(path, *args, **kwargs):
        if Path(path).parent == tmp_path:  # the page's temporary, beside page.html
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(handout, "write", full_for_the_page)
    rc = main(["lecture", "--n", "20", "--out", str(res), "--html", f"{tmp_path}/page.html"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"cannot write '{tmp_path}/page.html'" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    assert [p.name for p in res.iterdir()] == ["results.json"]
    assert (res / "results.json").read_text() == '{"old": true}'


def test_lecture_out_replaces_only_what_it_wrote_and_writes_through_a_link(tmp_path, capsys):
    """A symbolic link to a folder is written through (the link stays, its folder gets the new
    set); the manifest names what was written; a file of the user's added later is refused,
    and kept, unless --overwrite."""
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir()
    (target / "results.json").write_text('{"old": true}')
    link.symlink_to(target)
    assert main(["lecture", "--n", "20", "--out", str(link), "--json"]) == 0
    capsys.readouterr()
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads((target / "results.json").read_text())["data"]["n"] == 20
    listed = json.loads((target / "manifest.json").read_text())["files"]
    assert sorted(listed + ["manifest.json"]) == sorted(p.name for p in target.iterdir())
    assert {"results.json", "index.html", "data.png"} <= set(listed)
    (target / "my.png").write_bytes(b"mine")
    assert main(["lecture", "--n", "20", "--out", str(link)]) == 2
    err = capsys.readouterr().err
    assert "holds 'my.png'" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (target / "my.png").read_bytes() == b"mine"
    assert main(["lecture", "--n", "20", "--out", str(link), "--overwrite", "--json"]) == 0
    assert not (target / "my.png").exists() and (target / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


@pytest.mark.parametrize("spelling", ["dot-dot", "symbolic link", "hard link"])
def test_an_output_that_is_the_input_is_refused_whatever_its_spelling(spelling, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text(GOOD)
    (tmp_path / "sub").mkdir()
    out = tmp_path / "o.csv"
    if spelling == "dot-dot":
        out = tmp_path / "sub" / ".." / "d.csv"
    elif spelling == "symbolic link":
        out.symlink_to(data)
    else:
        os.link(data, out)
    rc = main(["surface", "--data", str(data), "--grid", "3x3", "--steps", "5", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "would overwrite the input --data" in err, err
    assert data.read_text() == GOOD


def test_data_from_standard_input_and_from_a_stream(tmp_path, monkeypatch, capsys):
    """``--data -`` reads standard input; `read_table` takes an open file or a text stream."""
    path = Path(csv(tmp_path, "d.csv", GOOD))
    want = ff.data.read_table(path)
    for source in (io.StringIO(GOOD), open(path, "rb"), open(path, encoding="utf-8")):
        with source:
            got = ff.data.read_table(source)
        np.testing.assert_array_equal(got.x, want.x)
        np.testing.assert_array_equal(got.y, want.y)
    np.testing.assert_array_equal(ff.read_csv(io.StringIO("x;y\n1;2\n;3\n"), dropna=True)[0], [1.0])
    with pytest.raises(InputError, match=r"data: '<stream>' lacks column\(s\) y"):
        ff.data.read_table(io.StringIO("x,z\n1,2\n"))
    argv = ["sweep", "--lr", "0.1:1:2", "--steps", "5", "--json"]
    assert main([*argv, "--data", str(path)]) == 0
    from_file = json.loads(capsys.readouterr().out)["runs"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(GOOD.encode())))
    assert main([*argv, "--data", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == from_file


def test_a_rename_that_fails_puts_back_what_the_earlier_ones_replaced(tmp_path, monkeypatch):
    """Three outputs committed together, the last rename failing: the file and the folder that
    were already renamed into place get their old contents back, and no temporary is left."""
    from functional_fit_cli import files

    res = tmp_path / "res"
    res.mkdir()
    (res / "results.json").write_text("old set")
    (tmp_path / "s.npz").write_text("old archive")
    before = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real = os.replace

    def failing(src, dst, *args, **kwargs):
        if Path(dst).name == "page.html":
            raise OSError(errno.EIO, os.strerror(errno.EIO), src, dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(files.WriteError, match=f"cannot write '{tmp_path}/page.html'"):
        with files.together() as outputs:
            Path(outputs.file(tmp_path / "s.npz")).write_text("new archive")
            Path(outputs.folder(res), "results.json").write_text("new set")
            Path(outputs.file(tmp_path / "page.html")).write_text("new page")
    after = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res", "s.npz"]


# --------------------------------------------------------------------------- issue 19, group C


def test_an_optimizer_over_part_of_the_module_trains_that_part():
    """torch lets an optimizer hold a subset of a module's parameters: the subset moves, the
    rest stays, exactly as torch's own loop does; only another module's tensors are refused."""
    module = LIN64()
    reference = LIN64()
    reference.load_state_dict(module.state_dict())
    result = _train(module, optimizer=torch.optim.SGD([module.weight], 0.1), steps=5)
    opt = torch.optim.SGD([reference.weight], 0.1)
    for _ in range(5):  # torch's loop, written out
        opt.zero_grad()
        parity.losses.mse(reference(XY64[0]), XY64[1]).backward()
        opt.step()
    assert (result.path["bias"] == result.path["bias"][0]).all()
    np.testing.assert_array_equal(result.params["weight"], reference.weight.detach().numpy())
    assert result.path["weight"][-1] != result.path["weight"][0]


# --------------------------------------------------------------------------- issue 19, group B


def test_a_model_is_checked_at_the_users_own_n():
    """A model that is valid at the data's n is not refused for its shape at one point."""
    w0 = {"w": np.zeros(1)}
    opt = registry.optimizer("gd")(0.1)
    got = fit.train(w0, X, Y, model=_squeezed, loss="mse", optimizer=opt, steps=3)
    want = fit.train(w0, X, Y, model=lambda p, x: x * p["w"][0], loss="mse", optimizer=opt,
                     steps=3)
    np.testing.assert_array_equal(np.asarray(got.params["w"]), np.asarray(want.params["w"]))
    runs = sweep.sweep("gd", w0, X, Y, [0.1, 0.2], steps=3, model=_squeezed, loss="mse")
    assert np.all(np.isfinite(np.asarray(runs.loss)))


def test_a_surface_of_a_registry_model_takes_its_own_length_by_default():
    """The sine model's default base is its three parameters, not max(coords) + 1 = 2."""
    a, b = np.linspace(-1, 1, 3), np.linspace(0, 2, 3)
    got = surface.loss_surface("sine", "mse", X, Y, a, b)
    want = [[float(losses.mse(models.sine(np.array([ai, bi, 0.0]), X), Y)) for ai in a] for bi in b]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_the_surface_summary_uses_the_finite_points_and_counts_the_rest(capsys):
    """A surface whose loss overflows at 90 of 100 points: the least and largest finite losses
    (from the numpy loop), and the count of the others, never "min loss nan"."""
    assert main(["surface", "--loss", "mse", "--grid", "10x10", "--range=0:1,0:1e160"]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("min loss")][0]
    a = np.linspace(0, 1, 10)
    want = [np.mean((ai - ff.lecture_data()[1]) ** 2) for ai in a]  # b = 0: the only finite row
    assert line.startswith(f"min loss {min(want):.10g} at a = 0, b = 0; max {max(want):.10g};")
    assert line.endswith("; 90 of 100 points are not finite")


def test_every_public_submodule_of_parity_is_an_attribute_of_the_package():
    """``parity.<module>`` works for each of its modules after ``import parity``, in a fresh
    interpreter (``parity.export.to_jax``, ``parity.params.to_nnx``, ...); ``comparison``
    aliases aside."""
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(parity.__path__)
                   if not m.name.startswith("_") and m.name != "comparison")
    assert {"export", "dropout", "modules", "flax_params"} <= set(names)
    code = (f"import parity; missing = [n for n in {names!r} if not hasattr(parity, n)]; "
            f"print(missing, set(parity.__all__) >= set({names!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def test_every_public_submodule_is_an_attribute_of_the_package():
    """After ``import functional_fit as ff``, ``ff.<module>`` works for each of its modules, in
    a fresh interpreter (a module imported by another one would hide a missing name here). The
    old names of the command line's plumbing (files, resources, cli) are not the core's: they
    are imported by name, as before."""
    import pkgutil

    old_names = {"files", "resources", "cli", "__main__"}
    names = sorted(m.name for m in pkgutil.iter_modules(ff.__path__)
                   if not m.name.startswith("_") and m.name not in old_names)
    assert {"surface", "sweep", "plot", "engine", "tables"} <= set(names)
    code = ("import functional_fit as ff, sys; "
            f"missing = [n for n in {names!r} if not hasattr(ff, n)]; "
            f"print(missing, 'torch' in sys.modules, set(ff.__all__) >= set({names!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] False True"


def test_the_readmes_sine_surface_shows_what_it_claims(tmp_path, capsys):
    """The README's sine example, as written: its fit moves the amplitude and frequency (the
    PCA plane's second direction carries some of the path), and the grid holds the fit, so
    the grid's least loss is not above the fit's own."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(s for s in readme.splitlines() if "surface --model sine" in s)
    argv = line.split()[1:]
    argv[argv.index("--plot") + 1] = str(tmp_path / "sine.png")
    assert main([*argv, "--out", str(tmp_path / "sine.npz")]) == 0
    saved = np.load(tmp_path / "sine.npz")
    x, y = ff.lecture_data()
    fit_loss = fit.full_loss(saved["path"][-1], x, y, model="sine", loss="mse")
    assert saved["losses"].min() <= fit_loss
    assert 0.0 in saved["a_values"] and 0.0 in saved["b_values"]  # the fit, on the plane
    assert float(surface.pca_plane(saved["path"]).explained[1]) > 0.01
    assert "PC2 (0.0%" not in capsys.readouterr().out


def test_centred_values_hold_the_centre_at_the_spans_step():
    """The centre is one of the values exactly, the step is the span's, the shift under one step."""
    for span, count, centre in (((-0.5, 2.37), 1000, 0.0), ((-1.0, 1.0), 4, 0.3), ((0.0, 1.0), 7, 1.0)):
        values = surface.centred_values(span, count, centre)
        step = (span[1] - span[0]) / (count - 1)
        assert values.shape == (count,) and centre in values
        np.testing.assert_allclose(np.diff(values), step, rtol=1e-12)
        assert abs(values[0] - span[0]) < step
    np.testing.assert_array_equal(surface.centred_values((0.0, 1.0), 5, 2.0), np.linspace(0, 1, 5))
