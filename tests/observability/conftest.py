"""Prometheus binaries for the observability tests.

They are skipped where Prometheus is not installed, except in CI: `.ci/run`
installs Debian's `prometheus` and sets KUBETASKQUEUE_REQUIRE_PROMETHEUS=1, so a
missing binary fails there instead of hiding the tests.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found (apt-get install prometheus)"
    if os.environ.get("KUBETASKQUEUE_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_binary("prometheus")
