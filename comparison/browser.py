"""Headless Chromium, found and driven from its own command line: the handout page as a PDF.

The command line (``functional-fit handout --print``) and the browser tests find the same
browser: ``$FUNCTIONAL_FIT_CHROMIUM``, else ``chromium``, ``chromium-browser`` or
``google-chrome`` on the PATH (Debian's ``chromium`` package on CI). Printing needs nothing
else: `print_pdf` runs ``chromium --headless --print-to-pdf`` on the page, and the page's own
print style sheet lays it out (A4, a step per page, both code columns, the static figures).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from functional_fit.checks import InputError

#: Flags for a headless Chromium on a machine like CI's: no sandbox (root), no GPU, and no
#: background traffic of the browser's own that a network check would count.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
HOW_TO_GET_CHROMIUM = ("no Chromium found: install Debian's package (sudo apt-get install "
                       "chromium), or set FUNCTIONAL_FIT_CHROMIUM to a Chrome or Chromium "
                       "binary")
#: Seconds Chromium may take to print a page.
PRINT_TIMEOUT = 120


def chromium() -> str | None:
    """The Chromium to drive: $FUNCTIONAL_FIT_CHROMIUM, or one on the PATH; None if none."""
    return (os.environ.get("FUNCTIONAL_FIT_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser") or shutil.which("google-chrome"))


def require_chromium() -> str:
    """`chromium()`, or an InputError saying how to get one (or that the one named is none)."""
    exe = chromium()
    if exe is None:
        raise InputError(HOW_TO_GET_CHROMIUM)
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise InputError(f"FUNCTIONAL_FIT_CHROMIUM={exe!r} is not an executable file")
    return exe


def print_pdf(page, pdf, *, exe: str | None = None, timeout: float = PRINT_TIMEOUT) -> None:
    """Print the HTML file `page` to the PDF file `pdf` with headless Chromium.

    Chromium runs with a profile of its own in a temporary folder, removed afterwards, and
    without headers or footers; its output is checked to be a PDF before this returns.

    Raises:
      InputError: no Chromium (`require_chromium`).
      RuntimeError: Chromium failed, timed out, or wrote no PDF (its last line of stderr).
    """
    exe = exe or require_chromium()
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="functional-fit-chromium-") as profile:
        argv = [exe, "--headless", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                "--no-pdf-header-footer", f"--print-to-pdf={pdf}", url]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Chromium did not print {page} within {timeout:g} s") from None
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    ok = os.path.isfile(pdf) and Path(pdf).read_bytes()[:5] == b"%PDF-"
    if proc.returncode != 0 or not ok:
        raise RuntimeError(f"Chromium could not print {page} (exit status {proc.returncode})"
                           + (f": {last}" if last else ""))


__all__ = ["CHROMIUM_FLAGS", "HOW_TO_GET_CHROMIUM", "PRINT_TIMEOUT", "chromium", "print_pdf",
           "require_chromium"]
