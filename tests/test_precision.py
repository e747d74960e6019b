"""The precision policy: imports change no JAX configuration; float64 without 64-bit mode fails.

The test process itself runs in 64-bit mode (conftest.py), so the policy is checked in a fresh
interpreter with JAX's defaults, which reports what it saw as JSON.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from comparison.lecture import PRINTED

PROBE = textwrap.dedent(
    """
    import json
    import jax
    import torch

    before = dict(jax.config.values)
    torch_dtype = torch.get_default_dtype()
    import functional_fit as ff
    import parity
    import functional_fit_cli, comparison.lecture, comparison.report
    import functional_fit_cli.lecture, functional_fit_cli.parity
    after = dict(jax.config.values)
    out = {
        "changed": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
        "torch_default_dtype_kept": torch.get_default_dtype() == torch_dtype,
        "x64_at_start": ff.precision.x64_enabled(),
    }

    import numpy as np
    from functional_fit import fit, losses, models, ols, precision
    from comparison import lecture, report as parity_report

    x, y = ff.lecture_data()  # numpy float64
    order = ff.batch_order(100, 2)
    ENTRY_POINTS = {
        "gradient_descent": lambda: fit.gradient_descent(np.zeros(2), x, y, steps=2),
        "stochastic_gradient_descent": lambda: fit.stochastic_gradient_descent(
            np.zeros(2), x, y, order),
        "adam_sgd": lambda: fit.adam_sgd(np.zeros(2), x, y, order),
        "gradient_descent(float32 w0, float64 data)": lambda: fit.gradient_descent(
            np.zeros(2, np.float32), x, y, steps=2),
        "zeros(float64)": lambda: ff.zeros(2, "float64"),
        "zeros(lecture)": lambda: ff.zeros(2, "lecture"),
        "precision.require(float64)": lambda: precision.require("float64"),
        "lecture.run(float64)": lambda: lecture.run(x, y, dtype="float64", steps=("ols",)),
        "lecture.run(lecture)": lambda: lecture.run(x, y, dtype="lecture", steps=("ols",)),
        "parity_report.run": lambda: parity_report.run(1),
        "ols.ols": lambda: ols.ols(x, y),
        "ols.least_squares": lambda: ols.least_squares(x, y, 2),
    }
    results = {}
    for name, call in ENTRY_POINTS.items():
        try:
            value = call()
            dtypes = sorted({str(np.asarray(a).dtype) for a in
                             (value if isinstance(value, tuple) else (value,))
                             if hasattr(a, "dtype")})
            results[name] = {"raised": None, "dtypes": dtypes}
        except Exception as exc:
            results[name] = {"raised": type(exc).__name__, "message": str(exc)}
    out["entry_points"] = results

    # float32 works without 64-bit mode, and stays float32.
    r = fit.gradient_descent(np.zeros(2, np.float32), x.astype(np.float32), y.astype(np.float32),
                             steps=3)
    out["float32_fit_dtype"] = str(r.params.dtype)

    # The explicit switch: float64 inside the block, the default again after it.
    with ff.float64():
        r = fit.gradient_descent(ff.zeros(2, "float64"), x, y, lr=6.0, steps=50)
        out["inside_dtype"] = str(r.params.dtype)
        out["inside_params"] = [float(v) for v in r.params]
    out["x64_after_block"] = ff.precision.x64_enabled()
    print(json.dumps(out))
    """
)

FLOAT64_ENTRY_POINTS = [
    "gradient_descent",
    "stochastic_gradient_descent",
    "adam_sgd",
    "gradient_descent(float32 w0, float64 data)",
    "zeros(float64)",
    "zeros(lecture)",
    "precision.require(float64)",
    "lecture.run(float64)",
    "lecture.run(lecture)",
    "parity_report.run",
]


@pytest.fixture(scope="module")
def probe():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_changes_no_jax_configuration(probe):
    assert probe["x64_at_start"] is False
    assert probe["changed"] == []
    assert probe["torch_default_dtype_kept"]


@pytest.mark.parametrize("name", FLOAT64_ENTRY_POINTS)
def test_float64_without_x64_fails_saying_how_to_enable_it(probe, name):
    got = probe["entry_points"][name]
    assert got["raised"] == "PrecisionError", got
    message = got["message"]
    assert "64-bit mode is off" in message
    assert "functional_fit.float64()" in message
    assert "jax_enable_x64" in message


@pytest.mark.parametrize("name", ["ols.ols", "ols.least_squares"])
def test_ols_refuses_float64_without_x64(probe, name):
    assert probe["entry_points"][name]["raised"] == "PrecisionError"


def test_float32_needs_no_x64(probe):
    assert probe["float32_fit_dtype"] == "float32"


def test_float64_context_computes_in_float64_and_restores(probe):
    assert probe["inside_dtype"] == "float64"
    # The lecture's GD on its linear model, in float64 (its printed values are float32).
    assert probe["inside_params"] == pytest.approx(PRINTED["gd_abs_linear"]["params"], rel=1e-6)
    assert probe["x64_after_block"] is False


def test_torch_matmul_precision_is_highest_unless_the_program_chose_one():
    """float32 products as torch's (no TF32 on a GPU); a precision the program set is kept."""
    import jax

    from functional_fit.precision import torch_matmul_precision

    assert jax.config.jax_default_matmul_precision is None
    with torch_matmul_precision():
        assert jax.config.jax_default_matmul_precision == "highest"
    with jax.default_matmul_precision("tensorfloat32"), torch_matmul_precision():
        assert jax.config.jax_default_matmul_precision == "tensorfloat32"
    assert jax.config.jax_default_matmul_precision is None
