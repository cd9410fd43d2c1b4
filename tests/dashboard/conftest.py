"""Dashboard fixtures: headless Chromium (the Debian package) driven by Selenium through
Debian's chromedriver; nothing is downloaded.

The browser tests skip where chromium, chromedriver or Selenium is missing, except when
KUBETASKQUEUE_REQUIRE_BROWSER=1 (`.ci/run` sets it after installing them), so CI cannot
pass by hiding them.
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


def _browser_missing(reason: str) -> None:
    if os.environ.get("KUBETASKQUEUE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (KUBETASKQUEUE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def start_browser() -> Any:
    """browser.start_chromium, once chromium, chromedriver and Selenium are known here."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        _browser_missing("chromium not found (apt-get install chromium chromium-driver)")
    if not shutil.which("chromedriver"):
        _browser_missing("chromedriver not found (apt-get install chromium-driver)")
    try:
        from browser import start_chromium
    except ImportError:
        _browser_missing("selenium not installed (pip install -e '.[test]')")
    return start_chromium


@pytest.fixture(scope="module")
def chromium(start_browser: Any) -> Iterator[Any]:
    """One browser for a module's tests; each test opens its own tab (browser.Page)."""
    driver = start_browser(1280, 900)
    yield driver
    driver.quit()
