"""`kubetaskqueue dashboard`: refusals with exit codes and the line a person reads; the real
server process streams state and stops promptly on SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner
from dashboard_helpers import TOKEN, Dashboard
from helpers import free_port
from kubetaskqueue import Manager, dashboard
from kubetaskqueue.cli import EXIT_RUNTIME_ERROR, EXIT_USAGE, cli

FILE_TOKEN = "from-a-file-0123456789abcdef"


def make_dead_task(url: str) -> None:
    m = Manager(url)
    m.register("jobs", lambda task: 1 / 0)
    m.enqueue("jobs", {})
    m.run(burst=True)


@pytest.mark.parametrize("token", [None, "short"])
def test_allow_actions_without_a_token_is_refused(token: str | None) -> None:
    env = {"KUBETASKQUEUE_DASHBOARD_TOKEN": token}
    result = CliRunner().invoke(cli, ["dashboard", "--allow-actions"], env=env)
    assert result.exit_code == EXIT_USAGE
    assert result.output.splitlines()[-1] == (
        "Error: --allow-actions needs a bearer token of at least 16 characters in "
        "KUBETASKQUEUE_DASHBOARD_TOKEN, or in the file KUBETASKQUEUE_DASHBOARD_TOKEN_FILE "
        "names (e.g. $(openssl rand -hex 32))")


def test_a_token_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    env = {"KUBETASKQUEUE_DASHBOARD_TOKEN": None,
           "KUBETASKQUEUE_DASHBOARD_TOKEN_FILE": str(tmp_path / "token")}
    result = CliRunner().invoke(cli, ["dashboard", "--allow-actions"], env=env)
    assert result.exit_code == EXIT_RUNTIME_ERROR
    assert result.output == ("error: KUBETASKQUEUE_DASHBOARD_TOKEN_FILE: cannot read "
                             f"{tmp_path / 'token'}: No such file or directory\n")


def test_url_and_token_from_files_as_the_chart_mounts_them(redis_url: str,
                                                           tmp_path: Path) -> None:
    (tmp_path / "url").write_text(redis_url + "\n")
    (tmp_path / "token").write_text(FILE_TOKEN + "\n")
    make_dead_task(redis_url)
    # No URL or token in the environment: only the files.
    server = Dashboard("", allow_actions=True, KUBETASKQUEUE_DASHBOARD_TOKEN="",
                       KUBETASKQUEUE_REDIS_URL_FILE=str(tmp_path / "url"),
                       KUBETASKQUEUE_DASHBOARD_TOKEN_FILE=str(tmp_path / "token"))
    try:
        requeue = f"{server.url}/api/topics/jobs/dead/requeue"
        wrong = httpx.post(requeue, json={"all": True}, headers={
            "Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert wrong.status_code == 401
        done = httpx.post(requeue, json={"all": True}, headers={
            "Authorization": f"Bearer {FILE_TOKEN}"}, timeout=10)
        assert done.status_code == 200, done.text
        stats = Manager(redis_url).stats()["topics"]["jobs"]
        assert (stats["dead"], stats["input"]) == (0, 1)
    finally:
        server.stop()


def test_missing_web_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "missing_dependencies", lambda: ["starlette", "uvicorn"])
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == EXIT_RUNTIME_ERROR
    assert result.output == ("error: the dashboard needs starlette and uvicorn: "
                             "pip install 'kubetaskqueue[dashboard]' "
                             "(from a clone: pip install -e '.[dashboard]')\n")


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
