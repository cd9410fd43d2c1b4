"""Chaos fixtures: private redis-servers (queue and ledger), worker pools that are
always killed at teardown, and the figures table printed after the run."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # chaos helper modules, whatever the rootdir

from ledger import Ledger
from redis_proc import RedisFleet, RedisProc
from workers import WorkerPool

FIGURES: list[dict[str, Any]] = []


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RedisFleet]:
    servers = RedisFleet(tmp_path / "redis")
    yield servers
    servers.kill_all()


@pytest.fixture
def queue_redis(fleet: RedisFleet) -> RedisProc:
    """The queue's redis-server (AOF, fsync always): scenarios may kill or pause it."""
    return fleet.start("queue")


@pytest.fixture
def ledger(fleet: RedisFleet) -> Ledger:
    """A second redis-server holding every attempt's start and finish; never killed."""
    return Ledger(fleet.start("ledger", appendonly=False).url)


@pytest.fixture
def pool(queue_redis: RedisProc, ledger: Ledger, tmp_path: Path) -> Iterator[WorkerPool]:
    workers = WorkerPool(queue_redis.url, ledger.url, tmp_path / "logs",
                         env={"KUBETASKQUEUE_HTTP_PORT": "0"})
    yield workers
    workers.stop_all()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Measured figures of one scenario; printed in the summary, appended to
    $KUBETASKQUEUE_CHAOS_RESULTS (JSON lines) when set."""
    row: dict[str, Any] = {"scenario": request.node.name}
    yield row
    row["outcome"] = getattr(request.node, "chaos_outcome", "passed")
    FIGURES.append(row)
    out = os.environ.get("KUBETASKQUEUE_CHAOS_RESULTS")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and not report.passed:
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        item.chaos_outcome = outcome  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("chaos figures")
    for row in FIGURES:
        terminalreporter.write_line(json.dumps(row))
