"""The exercises' checker (`comparison.exercises`) and its notebook (`notebooks/exercises.py`).

The checker is tested from outside: right answers pass in float64 and float32, each typical
wrong answer fails with its own hint, a bad function gets a one-line verdict, and what it
expects is torch's value, checked here against closed forms. The notebook runs twice, with the
right answers and with the wrong ones injected after its parameters cell, as papermill does.
"""

from pathlib import Path

import jax.numpy as jnp
import jupytext
import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from comparison import exercises
from comparison.exercises import REFERENCE, WRONG, check
from functional_fit.checks import InputError

KEYS = sorted(REFERENCE)
WRONGS = [pytest.param(key, w, id=f"{'-'.join(key)}-{i}")
          for key, ws in sorted(WRONG.items()) for i, w in enumerate(ws)]
NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "exercises.py"


@pytest.mark.parametrize("key", KEYS, ids="-".join)
def test_the_right_answers_pass_in_float64_and_float32(key):
    result = check(key[0], REFERENCE[key], framework=key[1], show=False)
    assert result, str(result)
    assert "float64 and float32" in result.message
    assert result.hint is None and result.case is None


@pytest.mark.parametrize("key, wrong", WRONGS)
def test_each_typical_wrong_answer_gets_its_hint(key, wrong):
    result = check(key[0], wrong.fn, framework=key[1], show=False)
    assert not result
    assert result.hint == wrong.hint, str(result)
    assert result.case and result.dtype and result.inputs and result.expected is not None
    text = str(result)
    assert f"input ({result.case}, {result.dtype})" in text and "expected:" in text
    assert wrong.hint in text


def test_a_wrong_value_shows_the_received_value_beside_torchs():
    result = check("l1_grad", WRONG["l1_grad", "jax"][0].fn, framework="jax", show=False)
    assert result.case.startswith("residuals exactly 0")  # the first case has no zero residual
    assert result.dtype == "float64"
    # residuals 0, 1, 0, -1 at x = 0, 1, 2, -1: torch's signs 0, 1, 0, -1; jax.grad's 1, 1, 1, -1
    np.testing.assert_array_equal(result.expected[0], [0.0, 0.5])
    np.testing.assert_array_equal(result.received[0], [0.5, 1.0])
    assert "received: g = [0.5 1. ]" in str(result)


def test_adams_first_step_moves_each_parameter_by_lr():
    """At t = 1 from zero moments, bias-corrected Adam steps by lr * g / (|g| + eps)."""
    inputs = exercises.CASES["adam_step"][0].inputs
    w, m, v = exercises.expected("adam_step", 0, "float64")
    g, lr, eps = inputs["g"], inputs["lr"], inputs["eps"]
    np.testing.assert_allclose(w, inputs["w"] - lr * g / (np.abs(g) + eps), rtol=1e-15)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-15)


def test_the_short_last_batch_is_a_mean_over_its_own_point():
    """The 7-point case's last batch holds one point: its step is lr * (sign(r), sign(r) x)."""
    inputs = exercises.CASES["sgd_epoch"][1].inputs
    assert len(inputs["x"]) % inputs["batch_size"] == 1
    w = inputs["w"].copy()
    for start in range(0, 7, 3):  # the loop, by hand
        idx = inputs["order"][start:start + 3]
        s = np.sign(w[0] + w[1] * inputs["x"][idx] - inputs["y"][idx])
        w = w - inputs["lr"] * np.array([s.mean(), (s * inputs["x"][idx]).mean()])
    np.testing.assert_allclose(exercises.expected("sgd_epoch", 1, "float64")[0], w, rtol=1e-14)


def _one_line(result):
    assert not result and "\n" not in result.message and "Traceback" not in str(result)


def test_a_function_that_raises_is_reported_in_one_line():
    def broken(w, x, y):
        return w / undefined_name  # noqa: F821

    result = check("l1_grad", broken, framework="jax", show=False)
    _one_line(result)
    assert result.message == "raised NameError: name 'undefined_name' is not defined"


def test_an_unwritten_function_says_so():
    def stub(w, x, y):
        raise NotImplementedError

    result = check("l1_grad", stub, framework="torch", show=False)
    _one_line(result)
    assert "not written yet" in result.message


def test_a_value_that_is_not_a_function_is_refused_in_one_line():
    result = check("gd_step", 3, framework="jax", show=False)
    _one_line(result)
    assert result.message == "fn must be a function; got int 3"


@pytest.mark.parametrize("returns, words", [
    (lambda w, x, y: jnp.zeros((2, 1), w.dtype), "has shape (2, 1), expected (2,)"),
    (lambda w, x, y: jnp.zeros(2, jnp.float32), "has dtype float32 for float64 inputs"),
    (lambda w, x, y: np.zeros(2), "is a ndarray, not a jax.Array"),
    (lambda w, x, y: REFERENCE["l1_grad", "jax"](w, x, y).astype(jnp.float64),
     "has dtype float64 for float32 inputs"),  # right in float64, then the float32 cases
    (lambda w, x, y: (w * 0, w * 0), "g is a tuple, not a jax.Array"),
], ids=["shape", "dtype", "numpy", "float64-only", "tuple"])
def test_a_wrong_kind_of_value_is_named(returns, words):
    result = check("l1_grad", returns, framework="jax", show=False)
    assert not result and words in result.message, str(result)


def test_a_tensor_with_grad_and_a_changed_input_are_named():
    def with_grad(w, x, y):
        return w.clone().requires_grad_(True) * 0

    result = check("l1_grad", with_grad, framework="torch", show=False)
    assert not result and "requires grad" in result.message
    wrong = WRONG["gd_step", "torch"][1].fn  # the caller's w, updated in place
    result = check("gd_step", wrong, framework="torch", show=False)
    assert result.message == "changed its input w in place"


def test_a_mistake_the_checker_does_not_know_gets_the_general_hint():
    result = check("l1_grad", lambda w, x, y: w * 0 + 7, framework="jax", show=False)
    assert not result and result.hint.startswith("g differs from torch's")


def test_check_prints_its_verdict(capsys):
    check("l1_grad", REFERENCE["l1_grad", "jax"], framework="jax")
    assert capsys.readouterr().out.startswith("l1_grad (jax): PASSED")


def test_an_unknown_exercise_or_framework_is_an_input_error():
    with pytest.raises(InputError, match="exercise must be one of"):
        check("l2_grad", REFERENCE["l1_grad", "jax"], framework="jax")
    with pytest.raises(InputError, match="framework must be one of"):
        check("l1_grad", REFERENCE["l1_grad", "jax"], framework="tf")


def test_the_gd_path_of_the_right_step_lies_on_torchs():
    paths = exercises.gd_paths(REFERENCE["gd_step", "torch"], "torch", steps=10)
    assert paths["yours"].shape == (11, 2)
    np.testing.assert_allclose(paths["yours"], paths["torch"], rtol=1e-12)
    assert list(exercises.gd_paths(lambda *a: torch.zeros(3), "torch", steps=3)) == ["torch"]


# --------------------------------------------------------------------------- the notebook

def _run(answers: str, tmp_path) -> str:
    """The notebook run with `answers` set after its parameters cell; its text outputs."""
    nb = jupytext.read(NOTEBOOK)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f"answers = {answers!r}",
                                                      metadata={"tags": ["injected-parameters"]}))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure"
    return "".join(o.get("text", "") for o in outputs)


@pytest.mark.slow
def test_the_notebook_passes_with_the_right_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCTIONAL_FIT_SMALL", "1")
    text = _run("reference", tmp_path)
    assert text.count("PASSED") == len(REFERENCE) and "FAILED" not in text
    assert f"{len(REFERENCE)} of {len(REFERENCE)} passed" in text


@pytest.mark.slow
def test_the_notebook_fails_with_the_wrong_answers_each_with_its_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCTIONAL_FIT_SMALL", "1")
    text = _run("wrong", tmp_path)
    assert text.count("FAILED") == len(WRONG) and "PASSED" not in text
    for (exercise, framework), wrongs in WRONG.items():
        verdict = text[text.index(f"{exercise} ({framework}): FAILED"):]
        verdict = verdict[:verdict.index("hint: ") + len(wrongs[0].hint) + 6]
        result = check(exercise, wrongs[0].fn, framework=framework, show=False)
        assert verdict == str(result)  # the whole verdict: input, expected, received, hint
        assert f"input ({result.case}" in verdict and "expected: " in verdict
        assert verdict.endswith(wrongs[0].hint)
    assert "received: g = [0.5 1. ]" in text  # jax.grad's |r|' = 1 at r = 0
    assert f"0 of {len(WRONG)} passed" in text
