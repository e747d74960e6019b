"""Every notebook runs, on small settings, so a broken notebook fails CI like a broken function.

The notebooks are jupytext pairs: ``NAME.py`` (percent format, the reviewed text) and
``NAME.ipynb``. The text file is what runs; the pair must hold the same cells.
"""

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.py"))
#: Seconds a notebook may run on small settings before the test gives up (they take ~20 s).
TIMEOUT = 600


def _sources(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"lecture", "surfaces"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_paired(path):
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"run: jupytext --sync {path}"
    paired = nbformat.read(ipynb, as_version=4)
    assert _sources(paired) == _sources(jupytext.read(path)), f"out of sync: jupytext --sync {path}"
    assert not any(c.get("outputs") for c in paired.cells if c.cell_type == "code"), \
        f"{ipynb.name} is committed with outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, tmp_path):
    """Run in a folder of its own, neither the notebook's nor the repository's: a notebook
    that opens a path relative to where it was started fails here."""
    monkeypatch.setenv("FUNCTIONAL_FIT_SMALL", "1")  # the kernel inherits the environment
    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, "the notebook showed no figure"
