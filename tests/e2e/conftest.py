"""End-to-end tests need a live cluster; say so in the summary when they are skipped."""

from __future__ import annotations

from typing import Any

from e2e_env import ENV_IMAGE, ENV_REDIS_URL, skip_reason


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for suite, needs in (("cluster e2e", ENV_IMAGE), ("operator e2e", ENV_REDIS_URL)):
        reason = skip_reason(needs)
        if reason:
            terminalreporter.write_line(f"{suite} skipped: {reason}")
