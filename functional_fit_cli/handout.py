"""``functional-fit handout --print DIR/index.html [--pdf FILE]``: the handout page as a PDF,
printed by headless Chromium (`comparison.browser`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from functional_fit.checks import InputError
from functional_fit_cli.options import output_file

#: Suffixes of a page to print.
HTML_SUFFIXES = (".html", ".htm")


def add_parser(sub):
    p = sub.add_parser(
        "handout",
        help="print the handout page to PDF with headless Chromium",
        description="Print a handout page (lecture --out DIR writes DIR/index.html) to PDF "
        "with headless Chromium ($FUNCTIONAL_FIT_CHROMIUM, or chromium on the PATH); the "
        "page's print style sheet lays it out on A4, each step on a new page.",
    )
    p.add_argument("--print", metavar="FILE", dest="page",
                   help="the HTML page to print, e.g. DIR/index.html (required)")
    p.add_argument("--pdf", metavar="FILE", type=output_file("--pdf"),
                   help="the PDF to write (default: beside the page, DIR/index.pdf)")
    return p


def _page(text: str) -> Path:
    """The page to print: an existing HTML file; InputError naming --print."""
    if text is None:
        raise InputError("--print FILE is required: the page to print, e.g. DIR/index.html")
    path = Path(text)
    if not path.exists():
        raise InputError(f"--print {text!r} does not exist; give the page lecture --out wrote "
                         "(DIR/index.html)")
    if path.is_dir():
        raise InputError(f"--print {text!r} is a folder; give its HTML page, e.g. "
                         f"{os.path.join(text, 'index.html')!r}")
    if path.suffix.lower() not in HTML_SUFFIXES or not path.is_file():
        raise InputError(f"--print {text!r} is not an HTML file (.html)")
    if not os.access(path, os.R_OK):
        raise InputError(f"--print {text!r} is not readable")
    return path


def _pdf(args, page: Path) -> str:
    """The PDF to write: --pdf, or the page's name with .pdf; InputError naming --pdf."""
    text = args.pdf if args.pdf is not None else str(page.with_suffix(".pdf"))
    if args.pdf is None:
        try:
            output_file("--pdf")(text)
        except argparse.ArgumentTypeError as exc:
            raise InputError(f"--pdf (default) {exc}") from None
    if os.path.exists(text) and os.path.samefile(text, page):
        raise InputError(f"--pdf {text!r} would overwrite the input --print {str(page)!r}; "
                         "write the PDF elsewhere")
    return text


def run(args) -> int:
    from comparison import browser
    from functional_fit_cli.files import atomic_path

    page = _page(args.page)
    pdf = _pdf(args, page)
    exe = browser.chromium()
    if exe is None:
        raise InputError(browser.HOW_TO_GET_CHROMIUM)
    try:
        with atomic_path(pdf) as tmp:
            browser.print_pdf(page, tmp, exe=exe)
    except browser.BrowserError as exc:
        print(f"functional-fit handout: error: {exc}", file=sys.stderr)
        return 1
    print(pdf)
    return 0
