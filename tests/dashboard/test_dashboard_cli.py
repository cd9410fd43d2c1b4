"""`kubetaskqueue dashboard`: refusals with exit codes and the line a person reads; the real
server process streams state and stops promptly on SIGTERM."""

from __future__ import annotations

import json
import signal
import time

import httpx2 as httpx
import pytest
from click.testing import CliRunner
from dashboard_helpers import Dashboard
from helpers import free_port
from kubetaskqueue import Manager, dashboard
from kubetaskqueue.cli import EXIT_RUNTIME_ERROR, EXIT_USAGE, cli


@pytest.mark.parametrize("token", [None, "short"])
def test_allow_actions_without_a_token_is_refused(token: str | None) -> None:
    env = {"KUBETASKQUEUE_DASHBOARD_TOKEN": token}
    result = CliRunner().invoke(cli, ["dashboard", "--allow-actions"], env=env)
    assert result.exit_code == EXIT_USAGE
    assert result.output.splitlines()[-1] == (
        "Error: --allow-actions needs a bearer token of at least 16 characters in "
        "KUBETASKQUEUE_DASHBOARD_TOKEN (e.g. $(openssl rand -hex 32))")


def test_missing_web_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "missing_dependencies", lambda: ["starlette", "uvicorn"])
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == EXIT_RUNTIME_ERROR
    assert result.output == ("error: the dashboard needs starlette and uvicorn: "
                             "pip install 'kubetaskqueue[dashboard]'\n")


@pytest.mark.parametrize(("given", "why"), [
    ("queues.example:443", "'queues.example:443': give it without a port (any port passes)"),
    ("https://queues.example", "'https://queues.example': give a host name, not a URL"),
])
def test_a_bad_allowed_host_is_refused_before_serving(given: str, why: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # never asked: the option is checked first
    for args, env in [(["--allowed-host", "ok.example", "--allowed-host", given], {}),
                      ([], {"KUBETASKQUEUE_DASHBOARD_ALLOWED_HOSTS": f"ok.example,{given}"})]:
        result = CliRunner().invoke(cli, ["--redis-url", url, "dashboard", *args], env=env)
        assert result.exit_code == EXIT_RUNTIME_ERROR
        assert result.output == f"error: allowed host {why}\n"


def test_unreachable_redis_fails_at_start() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(cli, ["--redis-url", url, "dashboard", "--port",
                                      str(free_port())])
    assert result.exit_code == EXIT_RUNTIME_ERROR
    assert result.output.startswith("error: Redis failed: ")
    assert result.output.rstrip().endswith("is it running? (set KUBETASKQUEUE_REDIS_URL)")


def test_server_streams_state_and_stops_on_sigterm(redis_url: str) -> None:
    Manager(redis_url).enqueue_many("mail", [1, 2])
    server = Dashboard(redis_url)
    try:
        with httpx.stream("GET", f"{server.url}/api/stream", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            while not (line := next(lines)).startswith("data: "):
                pass
            state = json.loads(line.removeprefix("data: "))
            assert [(t["name"], t["input"]) for t in state["topics"]] == [("mail", 2)]
            # SIGTERM with a stream still open: uvicorn closes it after a short grace,
            # then re-raises the signal (so the exit status says "terminated").
            started = time.monotonic()
            assert server.stop() in (0, -signal.SIGTERM)
            assert time.monotonic() - started < 4
    finally:
        server.stop()
