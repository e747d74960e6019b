"""pytest's plugin for parity tests: ``pytest --parity-report DIR``.

Registered through the ``pytest11`` entry point (pyproject.toml, under the name ``parity``), so
a project that installs functional-fit has it. It adds one option and does nothing else unless
asked. With ``--parity-report DIR``, each failing comparison made through
`comparison.testing.assert_same_training` (``parity.testing``) during a test writes two files
into DIR (created when missing):

- ``NAME.txt``: the assertion's message (`comparison.testing.report`: the verdict, the first
  divergence, the per-parameter table);
- ``NAME.png``: the per-parameter plot (`Comparison.plot`),

NAME being the test's node id with every run of characters other than letters, digits, ``.``,
``-`` and ``_`` made one ``_`` (`file_name`); the second failing comparison of one test is
``NAME-2``, and so on. Each file is written under a temporary name beside it and renamed into
place, so a reader never sees half a file. A file that cannot be written is named in the
terminal summary; the test's outcome stays the comparison's.

This module imports only pytest and the standard library, since pytest loads it at every start;
JAX and torch are loaded when ``--parity-report`` is given.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import uuid
from pathlib import Path

import pytest

#: The longest NAME before its digest is cut in: with ``-NN.png`` it stays well under the
#: 255 bytes a file name may have.
MAX_NAME = 150


def file_name(nodeid: str) -> str:
    """The file name (without suffix) of a test's reports: its node id, sanitized.

    >>> file_name("tests/test_port.py::test_mlp[adam-0.1]")
    'tests_test_port.py_test_mlp_adam-0.1'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("._") or "test"
    if len(name) > MAX_NAME:  # cut, and told apart from other long ids by a digest of its own
        name = f"{name[:MAX_NAME - 11]}_{hashlib.sha1(nodeid.encode()).hexdigest()[:10]}"
    return name


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` to a new file beside `path`, then renamed over `path` (removed on
    failure). The file is created by ``open``, so its permissions follow the umask."""
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ReportWriter:
    """The hooks registered by ``--parity-report DIR``: each test runs inside
    `comparison.testing.on_failure`, whose callback writes the failing comparison's files."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[str] = []  # the NAMEs written
        self.errors: list[str] = []  # "NAME: the OSError", for the files that could not be

    def write(self, nodeid: str, name: str, comparison, message: str) -> None:
        """DIR/NAME.txt (the message) and DIR/NAME.png (the per-parameter plot)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic(self.folder / f"{name}.txt",
                    lambda tmp: tmp.write_text(message + "\n", encoding="utf-8"))
            fig = comparison.plot(title=f"{nodeid}: JAX against torch, per parameter")
            _atomic(self.folder / f"{name}.png", lambda tmp: fig.savefig(tmp, format="png"))
            self.written.append(name)
        except OSError as exc:
            self.errors.append(f"{name}: {exc}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        from comparison.testing import on_failure

        count = itertools.count(1)

        def callback(comparison, message):
            n = next(count)
            name = file_name(item.nodeid) + ("" if n == 1 else f"-{n}")
            self.write(item.nodeid, name, comparison, message)

        with on_failure(callback):
            return (yield)

    def pytest_terminal_summary(self, terminalreporter):
        if not (self.written or self.errors):
            return
        terminalreporter.section("parity report")
        if self.written:
            terminalreporter.write_line(f"{len(self.written)} failing comparison(s) written to "
                                        f"{self.folder}")
        for line in self.errors:
            terminalreporter.write_line(f"could not write {line}")


def pytest_addoption(parser):
    group = parser.getgroup("parity", "parity reports (functional-fit)")
    group.addoption("--parity-report", metavar="DIR", default=None, dest="parity_report",
                    help="write each failing parity.testing.assert_same_training's table "
                         "(NAME.txt) and per-parameter plot (NAME.png) to DIR, NAME the test's "
                         "node id")


def pytest_configure(config):
    folder = config.getoption("parity_report")
    if folder is not None:
        config.pluginmanager.register(
            ReportWriter(Path(config.invocation_params.dir, folder)), "parity-report")
