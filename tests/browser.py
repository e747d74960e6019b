"""A page loaded in headless Chromium, for the browser tests (the handout, the landscape page).

Debian's chromium driven by playwright (which downloads no browser of its own), found as the
command line finds it (`comparison.browser.chromium`). Without a
Chromium the tests skip, except in CI (``CI=true``), where they fail and say how to get one.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from comparison import browser
from comparison.browser import CHROMIUM_FLAGS, chromium  # noqa: F401  (the CLI's browser)

HOW_TO_GET_CHROMIUM = (f"{browser.HOW_TO_GET_CHROMIUM}; and pip install playwright (the test "
                       "extras)")


def skip_without_chromium() -> str:
    """The Chromium the CLI finds; without one the test skips, except in CI (``CI=true``)."""
    exe = chromium()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {browser.HOW_TO_GET_CHROMIUM}")
        pytest.skip(browser.HOW_TO_GET_CHROMIUM)
    return exe


@contextlib.contextmanager
def loaded(url: str, profile, wait_for: str | None = None):
    """(page, requests made, console errors) of `url` in a fresh headless Chromium profile
    (the folder `profile`), on a laptop-sized screen; `wait_for`: a selector to wait for."""
    exe = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {HOW_TO_GET_CHROMIUM}")
        pytest.skip(HOW_TO_GET_CHROMIUM)
    requests, errors = [], []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=exe, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 900})
        try:
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url, wait_until="load")
            if wait_for is not None:
                page.wait_for_selector(wait_for)
            yield page, requests, errors
        finally:
            context.close()
