"""``functional-fit handout --print PAGE [--pdf FILE]``: the page printed to PDF by headless
Chromium (`comparison.browser`).

The PDF is read back by hand, without a PDF library: it starts with ``%PDF-`` and holds one
``/Type /Page`` object per page. Each step of the handout starts a new page in print, so the
PDF has at least as many pages as the page has ``<section class="step"`` sections (the
lecture's own page is printed in tests/test_handout.py, which builds it once). Without a
Chromium these tests skip, except in CI (``CI=true``), where they fail (`tests.browser`).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from comparison import browser as library_browser
from functional_fit_cli import main
from tests import browser

#: One page object of a PDF (not the ``/Type /Pages`` tree above them).
PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
#: A page of three steps, each on its own page in print, as the handout's style sheet does.
STEPS = """<!doctype html><html><head><meta charset="utf-8"><title>steps</title>
<style>@media print { @page { size: A4; } section.step { break-before: page; } }</style>
</head><body><h1>Three steps</h1>
<section class="step"><h2>Step one</h2></section>
<section class="step"><h2>Step two</h2></section>
<section class="step"><h2>Step three</h2></section></body></html>"""


def pages(pdf: Path) -> int:
    """The number of page objects in `pdf`."""
    return len(PAGE_OBJECT.findall(pdf.read_bytes()))


def _print(argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``functional-fit ARGV`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def steps(tmp_path):
    """A small page of three steps, DIR/index.html."""
    browser.skip_without_chromium()
    page = tmp_path / "dir" / "index.html"
    page.parent.mkdir()
    page.write_text(STEPS, encoding="utf-8")
    return page


def test_prints_beside_the_page_by_default(steps):
    rc, out, err = _print(["handout", "--print", str(steps)])
    assert (rc, err) == (0, "")
    pdf = steps.with_suffix(".pdf")
    assert out.strip() == str(pdf)
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert pages(pdf) == 1 + 3  # the title's page, then one per step
    assert sorted(p.name for p in steps.parent.iterdir()) == ["index.html", "index.pdf"]


def test_pdf_elsewhere(steps, tmp_path):
    target = tmp_path / "elsewhere" / "handout.pdf"
    target.parent.mkdir()
    rc, out, err = _print(["handout", "--print", str(steps), "--pdf", str(target)])
    assert (rc, err) == (0, "")
    assert target.read_bytes().startswith(b"%PDF-")
    assert not steps.with_suffix(".pdf").exists()
    assert os.listdir(target.parent) == ["handout.pdf"]  # no temporary left beside it


def test_replaces_an_old_pdf(steps):
    pdf = steps.with_suffix(".pdf")
    pdf.write_bytes(b"old")
    assert _print(["handout", "--print", str(steps)])[0] == 0
    assert pdf.read_bytes().startswith(b"%PDF-")


def test_a_failing_chromium_is_one_line_exit_1_and_nothing_written(steps, tmp_path, monkeypatch):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho starting >&2\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("FUNCTIONAL_FIT_CHROMIUM", str(fake))
    rc, out, err = _print(["handout", "--print", str(steps)])
    assert rc == 1 and out == ""
    assert err.count("\n") == 1
    assert "exit status 3" in err and "cannot open display" in err
    assert os.listdir(steps.parent) == ["index.html"]


def test_a_chromium_writing_no_pdf_is_refused(steps, tmp_path, monkeypatch):
    fake = tmp_path / "chromium"
    fake.write_text('#!/bin/sh\nfor a; do case "$a" in --print-to-pdf=*) '
                    'echo "<html>" > "${a#--print-to-pdf=}";; esac; done\n')
    fake.chmod(0o755)
    monkeypatch.setenv("FUNCTIONAL_FIT_CHROMIUM", str(fake))
    rc, _, err = _print(["handout", "--print", str(steps)])
    assert rc == 1 and "wrote no PDF" in err and err.count("\n") == 1
    assert os.listdir(steps.parent) == ["index.html"]


def test_a_chromium_that_hangs_times_out(steps, tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'waiting' >&2\nexec sleep 30\n")
    fake.chmod(0o755)
    pdf = tmp_path / "out.pdf"
    with pytest.raises(library_browser.BrowserError, match="did not print within 0.5 s: waiting"):
        library_browser.print_pdf(steps, pdf, exe=str(fake), timeout=0.5)


def test_runs_headless_without_sandbox_and_removes_its_profile(steps, tmp_path, monkeypatch):
    """The real Chromium behind a wrapper that notes its arguments: its profile folder is gone
    afterwards."""
    exe = browser.skip_without_chromium()
    log = tmp_path / "argv"
    wrapper = tmp_path / "chromium"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {str(log)!r}\nexec {exe!r} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("FUNCTIONAL_FIT_CHROMIUM", str(wrapper))
    assert _print(["handout", "--print", str(steps)])[0] == 0
    argv = log.read_text().splitlines()
    assert {"--headless", "--no-sandbox", "--no-pdf-header-footer"} <= set(argv)
    assert argv[-1] == steps.resolve().as_uri()
    profile = [a.split("=", 1)[1] for a in argv if a.startswith("--user-data-dir=")]
    assert len(profile) == 1 and not os.path.exists(profile[0])
    assert steps.with_suffix(".pdf").read_bytes().startswith(b"%PDF-")


def test_without_chromium_one_line_exit_2_nothing_written(tmp_path):
    page = tmp_path / "index.html"
    page.write_text(STEPS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "FUNCTIONAL_FIT_CHROMIUM"}
    env["PATH"] = os.path.dirname(sys.executable)
    proc = subprocess.run([sys.executable, "-m", "functional_fit_cli", "handout", "--print",
                           str(page)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "apt-get install chromium" in proc.stderr
    assert "FUNCTIONAL_FIT_CHROMIUM" in proc.stderr
    assert os.listdir(tmp_path) == ["index.html"]


def test_tests_and_command_line_find_the_same_browser():
    assert browser.chromium is library_browser.chromium
    assert browser.CHROMIUM_FLAGS is library_browser.CHROMIUM_FLAGS

