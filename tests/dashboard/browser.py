"""A dashboard page in headless Chromium, driven by Selenium through Debian's chromedriver.

The page updates itself (server-sent events), so an element found once may be replaced
a moment later: every check looks its elements up again until it holds or TIMEOUT_S
passes, which keeps the tests steady on a busy machine.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_S = 10.0
T = TypeVar("T")
_RETRYABLE = (StaleElementReferenceException, ElementClickInterceptedException,
              ElementNotInteractableException)

# Runs before the page's own scripts, so an error while it loads is caught too.
_COLLECT_ERRORS = """
window.__errors = [];
addEventListener("error", (e) => window.__errors.push(String(e.message)));
addEventListener("unhandledrejection", (e) => window.__errors.push(String(e.reason)));
"""


def start_chromium(width: int, height: int, *args: str) -> WebDriver:
    """Debian's chromium through its chromedriver: both paths are given, so Selenium
    fetches nothing."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for arg in [*CHROMIUM_ARGS, f"--window-size={width},{height}", *args]:
        options.add_argument(arg)
    return webdriver.Chrome(options=options,
                            service=Service(shutil.which("chromedriver") or "chromedriver"))


class Page:
    """One tab: open() makes a fresh one (its own sessionStorage), close() ends it."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def open(self, url: str) -> None:
        self.driver.switch_to.new_window("tab")
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": _COLLECT_ERRORS})
        self.driver.get(url)

    def close(self) -> None:
        self.driver.close()
        self.driver.switch_to.window(self.driver.window_handles[0])

    def errors(self) -> list[str]:
        """Uncaught script errors and rejected promises since the page loaded."""
        return list(self.evaluate("window.__errors"))

    def evaluate(self, expression: str) -> Any:
        return self.driver.execute_script(f"return {expression}")

    def elements(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def raw_text(self, css: str) -> str | None:
        """The textContent of the one element ``css`` matches (None unless exactly one)."""
        found = self.elements(css)
        return str(found[0].get_property("textContent")) if len(found) == 1 else None

    def text(self, css: str) -> str | None:
        raw = self.raw_text(css)
        return None if raw is None else " ".join(raw.split())

    def until(self, read: Callable[[], T], ok: Callable[[T], bool], what: str) -> T:
        """Poll ``read`` until ``ok`` holds for its value; fail with the last value seen."""
        deadline = time.monotonic() + TIMEOUT_S
        value: Any = None
        while True:
            try:
                value = read()
                if ok(value):
                    return value
            except _RETRYABLE:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {TIMEOUT_S:g}s; last seen: {value!r}")
            time.sleep(0.05)

    def expect_text(self, css: str, text: str) -> None:
        self.until(lambda: self.text(css), lambda v: v == text, f"{css} to read {text!r}")

    def expect_contains(self, css: str, text: str) -> None:
        self.until(lambda: self.text(css), lambda v: v is not None and text in v,
                   f"{css} to contain {text!r}")

    def expect_count(self, css: str, count: int) -> None:
        self.until(lambda: len(self.elements(css)), lambda n: n == count,
                   f"{count} element(s) {css}")

    def expect_attribute(self, css: str, name: str, value: str) -> None:
        self.until(lambda: self._one(css).get_attribute(name), lambda v: v == value,
                   f"{css} to have {name}={value!r}")

    def _one(self, css: str) -> WebElement:
        [element] = self.until(lambda: self.elements(css), lambda found: len(found) == 1,
                               f"one element {css}")
        return element

    def _act(self, css: str, action: Callable[[WebElement], None], what: str) -> None:
        def attempt() -> bool:
            found = self.elements(css)
            if len(found) != 1 or not (found[0].is_displayed() and found[0].is_enabled()):
                return False
            action(found[0])
            return True
        self.until(attempt, bool, f"{what} the one visible {css}")

    def click(self, css: str) -> None:
        self._act(css, lambda e: e.click(), "to click")

    def fill(self, css: str, text: str) -> None:
        """Type ``text`` into an input in place of what it held, as a person would."""
        def type_in(element: WebElement) -> None:
            element.send_keys(Keys.CONTROL, "a")
            element.send_keys(Keys.DELETE)
            element.send_keys(text)
        self._act(css, type_in, "to type into")

    def select(self, css: str, value: str) -> None:
        """Pick an option once the page has it (the topic list arrives with the first update)."""
        self._one(f'{css} option[value="{value}"]')
        self._act(css, lambda e: Select(e).select_by_value(value), "to select in")

    def screenshot(self, path: str) -> None:
        self.driver.save_screenshot(path)
