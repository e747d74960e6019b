"""``functional-fit handout --print PAGE [--pdf FILE]``: the handout page as a PDF, printed by
headless Chromium; one line and exit status 2 for what cannot be printed, before any work.

The printing tests need Chromium (skipped without one, except on CI); the refusals do not.
The lecture's own page is printed in tests/test_handout.py, which builds it.
"""

from __future__ import annotations

import re

import pytest

from functional_fit_cli import main
from tests import browser

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
section { break-before: page; } @media print { .screen { display: none; } }
</style></head><body>
<section><h1>One</h1><p class="screen">on screen only</p></section>
<section><h1>Two</h1></section>
<section><h1>Three</h1></section>
</body></html>
"""


def _pages(pdf_bytes: bytes) -> int:
    """The number of pages of a PDF: its /Type /Page objects (not /Pages)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf_bytes))


def _run(argv, capsys):
    try:
        status = main(argv)
    except SystemExit as exc:  # the parser's refusals
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def need_chromium():
    browser.require_chromium()  # skips without one, except on CI


def test_print_writes_a_pdf_beside_the_page(need_chromium, tmp_path, capsys):
    page = tmp_path / "index.html"
    page.write_text(PAGE, encoding="utf-8")
    status, out, err = _run(["handout", "--print", str(page)], capsys)
    assert status == 0, err
    pdf = (tmp_path / "index.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and _pages(pdf) == 3  # a page per section
    assert str(tmp_path / "index.pdf") in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "index.pdf"]


def test_print_writes_the_pdf_named(need_chromium, tmp_path, capsys):
    page = tmp_path / "page.html"
    page.write_text(PAGE, encoding="utf-8")
    (tmp_path / "out").mkdir()
    status, _, err = _run(["handout", "--print", str(page), "--pdf",
                           str(tmp_path / "out" / "notes.pdf")], capsys)
    assert status == 0, err
    assert (tmp_path / "out" / "notes.pdf").read_bytes().startswith(b"%PDF-")
    assert not (tmp_path / "page.pdf").exists()


def test_without_chromium_it_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    page = tmp_path / "index.html"
    page.write_text(PAGE, encoding="utf-8")
    monkeypatch.delenv("FUNCTIONAL_FIT_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status, out, err = _run(["handout", "--print", str(page)], capsys)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no Chromium found" in err
    assert "apt-get install chromium" in err and "FUNCTIONAL_FIT_CHROMIUM" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_a_chromium_named_that_is_not_one_is_refused(tmp_path, capsys, monkeypatch):
    page = tmp_path / "index.html"
    page.write_text(PAGE, encoding="utf-8")
    monkeypatch.setenv("FUNCTIONAL_FIT_CHROMIUM", str(tmp_path / "nothing"))
    status, _, err = _run(["handout", "--print", str(page)], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "FUNCTIONAL_FIT_CHROMIUM" in err and "not an executable file" in err


@pytest.mark.parametrize("case", ["missing", "folder", "not html", "pdf is the page",
                                  "pdf in a missing folder", "pdf is a folder", "no --print"])
def test_what_cannot_be_printed_is_one_line_and_exit_2(case, tmp_path, capsys):
    page = tmp_path / "index.html"
    page.write_text(PAGE, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a page\n", encoding="utf-8")
    argv, named = {
        "missing": (["--print", str(tmp_path / "gone.html")], "--print"),
        "folder": (["--print", str(tmp_path)], "--print"),
        "not html": (["--print", str(tmp_path / "notes.txt")], "--print"),
        "pdf is the page": (["--print", str(page), "--pdf", str(page)], "--pdf"),
        "pdf in a missing folder": (["--print", str(page), "--pdf",
                                     str(tmp_path / "no" / "x.pdf")], "--pdf"),
        "pdf is a folder": (["--print", str(page), "--pdf", str(tmp_path)], "--pdf"),
        "no --print": ([], "--print"),
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    status, out, err = _run(["handout", *argv], capsys)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and named in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
