"""``functional-fit handout --print DIR/index.html [--pdf FILE]``: the handout page as a PDF.

Printed by headless Chromium (`comparison.browser.print_pdf`) with the page's own print style
sheet. Without a Chromium the command says so in one line, exit status 2, before any work.
The PDF is written to a temporary file beside its target and renamed into place once Chromium
has written a whole one.
"""

from __future__ import annotations

from pathlib import Path

from functional_fit.checks import InputError
from functional_fit_cli.options import output_file


def add_parser(sub):
    p = sub.add_parser(
        "handout",
        help="print the handout page (lecture --out DIR writes DIR/index.html) to a PDF",
        description="Print the handout page that `functional-fit lecture --out DIR` writes "
        "(DIR/index.html) to a PDF through headless Chromium, with the page's print style "
        "sheet: A4, a step per page, both frameworks' code side by side, the static figures.",
    )
    p.add_argument("--print", dest="page", metavar="PAGE", required=True,
                   help="the handout page to print, e.g. DIR/index.html")
    p.add_argument("--pdf", metavar="FILE", type=output_file("--pdf"),
                   help="where to write the PDF (default: beside the page, PAGE with .pdf)")
    return p


def _page(text: str) -> Path:
    """The page to print: an existing HTML file; InputError naming ``--print`` otherwise."""
    path = Path(text)
    if not text or not path.exists():
        raise InputError(f"--print {text!r}: no such file (lecture --out DIR writes "
                         "DIR/index.html)")
    if not path.is_file():
        raise InputError(f"--print {text!r} is not a file; give the page, e.g. DIR/index.html")
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if not head.startswith((b"<!doctype html", b"<html")):
        raise InputError(f"--print {text!r} is not an HTML page")
    return path


def run(args) -> int:
    from comparison import browser
    from functional_fit_cli.files import atomic_path

    page = _page(args.page)
    pdf = Path(args.pdf) if args.pdf else page.with_suffix(".pdf")
    if args.pdf is None:  # the default is checked as --pdf is
        output_file("--pdf")(str(pdf))
    if pdf.resolve() == page.resolve():
        raise InputError(f"--pdf {str(pdf)!r} is the page itself; give another file")
    exe = browser.require_chromium()
    with atomic_path(pdf) as tmp:
        try:
            browser.print_pdf(page, tmp, exe=exe)
        except RuntimeError as exc:
            raise InputError(str(exc)) from None
    print(f"functional-fit handout: wrote {pdf} ({pdf.stat().st_size / 1e6:.1f} MB)")
    return 0
