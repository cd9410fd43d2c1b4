"""Dashboard fixtures: headless Chromium (the Debian package) driven by Playwright.

The browser tests skip where chromium or Playwright is missing, except when
KUBETASKQUEUE_REQUIRE_BROWSER=1 (`.ci/run` sets it after installing them), so
CI cannot pass by hiding them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # dashboard_helpers, whatever the rootdir

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _browser_missing(reason: str) -> None:
    if os.environ.get("KUBETASKQUEUE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (KUBETASKQUEUE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Chromium from Debian (/usr/bin/chromium); Playwright never downloads one.

    Module scope, not session: Playwright's sync API keeps an asyncio loop running on
    the main thread while it is open, which would break later tests' asyncio.run().
    """
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _browser_missing("chromium not found (apt-get install chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_missing("playwright not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
