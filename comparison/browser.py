"""Headless Chromium: which one to use (`chromium`), and printing a page to PDF (`print_pdf`).

The command line (``functional-fit handout --print``) and the browser tests find the same
browser: ``$FUNCTIONAL_FIT_CHROMIUM``, else ``chromium``, ``chromium-browser`` or
``google-chrome`` on the PATH. Printing runs Chromium's own command line (no playwright): the
page's ``@media print`` style sheet decides the layout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from functional_fit.checks import InputError

#: Flags for a headless Chromium in a container or as root (no sandbox, no GPU, no network
#: chatter of its own).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
#: What to do when `chromium` finds none.
HOW_TO_GET_CHROMIUM = ("no Chromium found: install Debian's package (sudo apt-get install "
                       "chromium), or set FUNCTIONAL_FIT_CHROMIUM to a Chrome or Chromium "
                       "binary")
#: Seconds a print may take before Chromium is stopped.
PRINT_TIMEOUT = 120.0


class BrowserError(RuntimeError):
    """Chromium failed or timed out; the message is one line."""


def chromium() -> str | None:
    """The Chromium to drive: $FUNCTIONAL_FIT_CHROMIUM, or one on the PATH.

    Returns:
      The path of the executable, or None when there is none.

    Raises:
      InputError: FUNCTIONAL_FIT_CHROMIUM names something that is not an executable file.
    """
    named = os.environ.get("FUNCTIONAL_FIT_CHROMIUM")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise InputError(f"FUNCTIONAL_FIT_CHROMIUM={named!r} is not an executable file; "
                             "name a Chrome or Chromium binary, or unset it")
        return named
    return (shutil.which("chromium") or shutil.which("chromium-browser")
            or shutil.which("google-chrome"))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def print_pdf(page, pdf, *, exe: str, timeout: float = PRINT_TIMEOUT) -> None:
    """Print the HTML file `page` to the PDF file `pdf` with headless Chromium `exe`.

    Chromium's profile lives in a temporary folder, removed afterwards. `pdf` is written in
    place (the caller makes it a temporary name to rename).

    Args:
      page: path of an HTML file.
      pdf: path of the PDF to write.
      exe: the Chromium executable (`chromium`).
      timeout: seconds before Chromium is stopped.

    Raises:
      BrowserError: Chromium failed, timed out, or wrote something that is not a PDF; the
        message ends with Chromium's last line on stderr.
    """
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="functional-fit-chromium-") as profile:
        argv = [exe, "--headless", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                "--no-pdf-header-footer", f"--print-to-pdf={os.path.abspath(pdf)}", url]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr or ""
            err = err.decode(errors="replace") if isinstance(err, bytes) else err
            raise BrowserError(f"Chromium did not print within {timeout:g} s: "
                               f"{_last_line(err)}") from None
        except OSError as exc:
            raise BrowserError(f"cannot run {exe!r}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise BrowserError(f"Chromium failed (exit status {done.returncode}): "
                           f"{_last_line(done.stderr)}")
    try:
        with open(pdf, "rb") as fh:
            head = fh.read(5)
    except FileNotFoundError:
        head = b""
    if head != b"%PDF-":
        raise BrowserError(f"Chromium wrote no PDF: {_last_line(done.stderr)}")
