"""End-to-end tests need a live cluster; say so in the summary when they are skipped."""

from __future__ import annotations

from typing import Any

from e2e_env import skip_reason


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reason = skip_reason()
    if reason:
        terminalreporter.write_line(f"operator e2e skipped: {reason}")
