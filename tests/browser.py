"""A real browser for the UI tests: Debian's headless Chromium driven by Playwright (which
cannot download a browser of its own here), logged in through Airflow's own login page."""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from collections.abc import Iterator

CHROMIUM = "chromium"


@functools.cache
def chromium_problem() -> str | None:
    """Why a headless Chromium cannot be driven here; None when it can."""
    hint = "make install installs Debian's chromium and the playwright package"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return f"the playwright package is not installed ({hint})"
    path = shutil.which(CHROMIUM)
    if not path:
        return f"no {CHROMIUM} on PATH ({hint})"
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60,
                          check=False)
    if proc.returncode != 0:
        return f"{path} --version exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return None


@contextlib.contextmanager
def browser_page(width: int = 1300, height: int = 1000) -> Iterator:
    """A fresh page (no cookies) in a headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which(CHROMIUM),
                                    args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def log_in(page, user: str, password: str) -> None:
    """Fill Airflow's login form on ``page`` (where an anonymous request was sent) and wait
    until the browser has been sent back."""
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
