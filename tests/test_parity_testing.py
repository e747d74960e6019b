"""parity.testing.assert_same_training and the pytest plugin (``--parity-report DIR``).

A correct pair returns `compare`'s own comparison; a planted bug (a square weight used as
stored, untransposed) raises an AssertionError whose message holds `compare`'s table and
first divergence. The plugin is run in pytest's own test harness (``pytester``), loaded by
module name, as the ``pytest11`` entry point in pyproject.toml loads it once installed.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

import jax.numpy as jnp
import matplotlib.image
import pytest

import functional_fit as ff
import parity
from comparison import pytest_plugin
from comparison.compare import Comparison
from functional_fit import InputError, losses, models
from functional_fit.taps import tap
from parity.testing import assert_same_training, report

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1, 16, 16, 1)  # the middle layer is square: an untransposed weight still runs
STEPS = 20


def untransposed(p, x):
    """The MLP's port with the middle layer's weight used as stored, (out, in): the bug."""
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])  # (n, 16)
    h = jnp.tanh(h @ p["2.weight"] + p["2.bias"][None, :])  # torch computes h @ W.T
    return h @ p["4.weight"].T + p["4.bias"][None, :]  # (n, 1)


def arguments(jax_model):
    """compare's arguments for the MLP on the lecture's data, `jax_model` its port."""
    x, y = ff.lecture_data()
    module = parity.models.MLP(SIZES, "tanh", seed=0)
    return ((jax_model, module, x[:, None], y[:, None]),  # (n, 1), as nn.Linear takes
            dict(jax_loss=losses.mse, torch_loss=parity.losses.mse,
                 optimizer=("Adam", {"lr": 0.01}), steps=STEPS))


def test_a_correct_pair_passes_and_returns_the_comparison():
    args, kwargs = arguments(models.mlp)
    c = assert_same_training(*args, **kwargs)
    reference = parity.compare(*args, **kwargs)
    assert isinstance(c, Comparison) and c.ok and c.first_divergence is None
    assert c.steps == STEPS and c.tolerance == reference.tolerance
    assert c.table() == reference.table()


def test_a_planted_bug_raises_the_report():
    args, kwargs = arguments(untransposed)
    with pytest.raises(AssertionError) as raised:
        assert_same_training(*args, **kwargs)
    message = str(raised.value)
    reference = parity.compare(*args, **kwargs)
    assert not reference.ok and reference.first_divergence is not None
    assert reference.table() in message
    assert f"first divergence: {reference.first_divergence}" in message
    assert message.startswith("JAX and torch train apart, first in the model: the models' "
                              "outputs differ at the start")
    assert message == report(reference)


def test_bad_input_is_refused_not_asserted():
    args, kwargs = arguments(models.mlp)
    with pytest.raises(InputError, match="dtype"):
        assert_same_training(*args, **{**kwargs, "dtype": "float16"})


def tapped(p, x):
    """`untransposed` with a tap per torch submodule: compare finds its first layer."""
    h = tap("1", jnp.tanh(tap("0", x @ p["0.weight"].T + p["0.bias"][None, :])))
    h = tap("3", jnp.tanh(tap("2", h @ p["2.weight"] + p["2.bias"][None, :])))
    return tap("4", h @ p["4.weight"].T + p["4.bias"][None, :])


def test_the_report_shows_the_first_layer_and_the_findings():
    """The planted bug's report names the layer that parts first and the confirmed finding,
    with its differences before and after the switch; a correct pair's shows neither."""
    args, kwargs = arguments(tapped)
    c = parity.compare(*args, **kwargs)
    assert c.first_layer == "2" and [f.id for f in c.findings] == ["kernel_layout"]
    f = c.findings[0]
    lines = report(c).splitlines()
    assert "first layer: 2" in lines
    assert (f"  kernel_layout: {f.explanation} (difference {f.before:.2e} before the switch, "
            f"{f.after:.2e} after)") in lines
    good = parity.compare(*arguments(models.mlp)[0], **kwargs)
    assert not any(line.startswith(("first layer", "findings"))
                   for line in report(good).splitlines())


# --------------------------------------------------------------------------- the plugin

#: A project's test file, on the same pair as `arguments`: one port with the planted bug, one
#: correct, one test whose two comparisons both fail (the first caught).
PROJECT_TESTS = '''
import functional_fit as ff, jax.numpy as jnp, parity, pytest
from functional_fit import losses, models
from parity.testing import assert_same_training

def untransposed(p, x):
    h = jnp.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])
    h = jnp.tanh(h @ p["2.weight"] + p["2.bias"][None, :])  # the bug: torch's is h @ W.T
    return h @ p["4.weight"].T + p["4.bias"][None, :]

def arguments(jax_model):
    x, y = ff.lecture_data()
    module = parity.models.MLP((1, 16, 16, 1), "tanh", seed=0)
    return ((jax_model, module, x[:, None], y[:, None]),
            dict(jax_loss=losses.mse, torch_loss=parity.losses.mse,
                 optimizer=("Adam", {"lr": 0.01}), steps=20))

def test_bug():
    args, kwargs = arguments(untransposed)
    assert_same_training(*args, **kwargs)

def test_correct():
    args, kwargs = arguments(models.mlp)
    assert assert_same_training(*args, **kwargs).ok

@pytest.mark.parametrize("case", ["twice"])
def test_two(case):
    args, kwargs = arguments(untransposed)
    with pytest.raises(AssertionError):
        assert_same_training(*args, **kwargs)
    assert_same_training(*args, **kwargs)
'''


@pytest.fixture(scope="module")
def loaded():
    """Everything a failing comparison and its plot import, imported: pytester's in-process
    runs drop the modules first imported during them, and torch cannot import twice."""
    args, kwargs = arguments(untransposed)
    parity.compare(*args, **{**kwargs, "steps": 1}).plot().savefig(io.BytesIO(), format="png")


@pytest.fixture()
def project(loaded, pytester, monkeypatch):
    """A pytester folder holding `PROJECT_TESTS`; the plugin is loaded by ``-p`` alone (not
    also by its entry point, where the package is installed with it)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_port=PROJECT_TESTS)
    return pytester


def files(folder: Path) -> set[str]:
    """The files under `folder`, but Python's bytecode caches, by relative path."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


#: The plugin by module name (imported already here, so pytest cannot rewrite its asserts);
#: no cache folder, so that the runs write only what the plugin writes.
PLUGIN = ("-p", "comparison.pytest_plugin", "-W", "ignore::pytest.PytestAssertRewriteWarning",
          "-p", "no:cacheprovider")


def test_the_plugin_writes_each_failing_comparison_and_nothing_else(project):
    result = project.runpytest(*PLUGIN, "--parity-report", "out/reports")
    result.assert_outcomes(passed=1, failed=2, warnings=0)
    result.stdout.fnmatch_lines(["*parity report*", "3 failing comparison(s) written to *"])
    out = project.path / "out" / "reports"
    names = ["test_port.py_test_bug", "test_port.py_test_two_twice",
             "test_port.py_test_two_twice-2"]
    assert files(out) == {f"{n}.{suffix}" for n in names for suffix in ("txt", "png")}
    args, kwargs = arguments(untransposed)
    expected = report(parity.compare(*args, **kwargs)) + "\n"
    for name in names:
        assert (out / f"{name}.txt").read_text() == expected
        png = out / f"{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        height, width, _ = matplotlib.image.imread(png).shape
        assert (width, height) == (750, 450)  # Comparison.plot's 7.5 x 4.5 inches at 100 dpi


def test_without_the_option_the_plugin_writes_nothing(project):
    before = files(project.path)
    result = project.runpytest(*PLUGIN, "-k", "bug")
    result.assert_outcomes(failed=1, deselected=2, warnings=0)
    assert "parity report" not in result.stdout.str()
    assert files(project.path) == before


def test_a_report_that_cannot_be_written_is_named_and_the_test_fails_as_it_would(project):
    (project.path / "taken").write_text("a file where the folder should be")
    result = project.runpytest(*PLUGIN, "-k", "bug", "--parity-report", "taken")
    result.assert_outcomes(failed=1, deselected=2, warnings=0)
    result.stdout.fnmatch_lines(["*parity report*",
                                 "could not write test_port.py_test_bug: *taken*"])
    result.stdout.fnmatch_lines(["E  *AssertionError: JAX and torch train apart, first in *"])
    assert files(project.path) == {"taken", "test_port.py"}


def test_the_plugin_registers_its_hooks_only_when_asked(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    plain = pytester.parseconfigure("-p", "comparison.pytest_plugin")
    assert plain.pluginmanager.get_plugin("parity-report") is None
    asked = pytester.parseconfigure("-p", "comparison.pytest_plugin", "--parity-report",
                                    str(tmp_path / "r"))
    writer = asked.pluginmanager.get_plugin("parity-report")
    assert isinstance(writer, pytest_plugin.ReportWriter) and writer.folder == tmp_path / "r"
    assert not (tmp_path / "r").exists()  # created when a comparison fails, not before


def test_file_names_are_node_ids_made_safe():
    assert pytest_plugin.file_name("tests/a b.py::test_x[1/2 é]") == "tests_a_b.py_test_x_1_2"
    assert pytest_plugin.file_name("..::x") == "x"
    long = [pytest_plugin.file_name(f"t.py::test[{'a' * 300}{i}]") for i in range(2)]
    assert len(long[0]) == pytest_plugin.MAX_NAME and long[0] != long[1]


def test_the_entry_point_names_the_plugin():
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert entry["pytest11"] == {"parity": "comparison.pytest_plugin"}
    assert callable(pytest_plugin.pytest_addoption) and callable(pytest_plugin.pytest_configure)
    # pytest loads it at every start: it must load neither JAX nor torch
    code = ("import sys, comparison.pytest_plugin\n"
            "print(sorted({'jax', 'torch', 'functional_fit', 'parity'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
