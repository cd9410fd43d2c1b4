"""The CLI: exit codes and the exact lines a person reads."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner
from kubetaskqueue import Manager, Task
from kubetaskqueue.cli import cli


@pytest.fixture
def url() -> str:
    return f"memory://cli-{uuid.uuid4().hex}"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def make_dead(url: str, n: int, error: str = "boom") -> Manager:
    m = Manager(url, poll_interval_s=0.05)

    @m.processor("email")
    def fail(task: object) -> None:
        raise RuntimeError(error)

    m.enqueue_many("email", [{"i": i} for i in range(n)])
    m.run(burst=True)
    return m


def test_enqueue_prints_id_and_stats_json_has_the_contract_shape(url: str) -> None:
    code, out, _ = run("--redis-url", url, "enqueue", "email", '{"to": "a@b.c"}',
                       "--retries", "3", "--id", "abc")
    assert (code, out) == (0, "abc\n")
    code, out, _ = run("--redis-url", url, "stats", "--json")
    assert code == 0
    assert json.loads(out) == {"topics": {"email": {
        "input": 1, "scheduled": 0, "work": 0, "dead": 0, "enqueued": 1, "started": 0,
        "retried": 0, "failed": 0, "completed": 0}}, "managers": 0}


def test_stats_table(url: str) -> None:
    run("--redis-url", url, "enqueue", "email", "{}", "--delay", "60")
    code, out, _ = run("--redis-url", url, "stats")
    assert code == 0
    assert out.splitlines() == [
        "topic  input  scheduled  work  dead  enqueued  started  retried  failed  completed",
        "email      0          1     0     0         1        0        0       0          0",
        "live managers: 0",
    ]


def test_usage_errors_exit_2(url: str) -> None:
    code, _, err = run("--redis-url", url, "enqueue", "email", "{not json")
    assert code == 2 and "not valid JSON" in err
    code, _, err = run("--redis-url", url, "dead", "requeue", "email")
    assert code == 2 and "give task ids or --all" in err
    code, _, err = run("worker", "no_such_module_xyz:manager")
    assert code == 2 and "cannot import module 'no_such_module_xyz'" in err
    code, _, err = run("worker", "kubetaskqueue.cli:nothing")
    assert code == 2 and "module 'kubetaskqueue.cli' has no attribute 'nothing'" in err
    code, _, err = run("worker", "kubetaskqueue.cli:cli")
    assert code == 2 and "not a kubetaskqueue Manager" in err


def test_runtime_errors_exit_1_with_one_line(url: str) -> None:
    run("--redis-url", url, "enqueue", "email", "{}", "--id", "same")
    code, out, err = run("--redis-url", url, "enqueue", "email", "{}", "--id", "same")
    assert code == 1 and out == ""
    assert err == "error: task id 'same' already exists in topic 'email'; nothing was enqueued\n"
    code, _, err = run("--redis-url", "redis://127.0.0.1:1/0", "stats")
    assert code == 1 and err.startswith("error: Redis at redis://127.0.0.1:1/0 failed:")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_dead_list_requeue_purge(url: str) -> None:
    make_dead(url, 3, error="SMTP timeout")
    code, out, _ = run("--redis-url", url, "dead", "list", "email", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 3
    assert all("SMTP timeout" in r["last_error"] and r["attempts"] == 1 for r in rows)
    code, out, _ = run("--redis-url", url, "dead", "list", "email", "--error", "nope")
    assert out == "0 dead task(s)\n"
    code, out, _ = run("--redis-url", url, "dead", "requeue", "email", "--all", "--dry-run")
    assert out == "would requeue 3 task(s)\n"
    code, out, _ = run("--redis-url", url, "dead", "requeue", "email", rows[0]["id"])
    assert (code, out) == (0, "requeued 1 task(s)\n")
    code, out, _ = run("--redis-url", url, "dead", "purge", "email", "--all")
    assert (code, out) == (0, "purged 2 task(s)\n")
    stats = json.loads(run("--redis-url", url, "stats", "--json")[1])["topics"]["email"]
    assert (stats["input"], stats["dead"]) == (1, 0)


def test_dead_requeue_filters_by_error(url: str) -> None:
    make_dead(url, 2, error="SMTP timeout")
    code, out, _ = run("--redis-url", url, "dead", "requeue", "email", "--all", "--error",
                       "timeout")
    assert code == 0
    assert out == "requeued 2 task(s)\n"


def test_demo_runs_to_completion() -> None:
    code, out, _ = run("demo", "--tasks", "60")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["topic", "input", "scheduled", "work", "dead", "enqueued",
                                "started", "retried", "failed", "completed"]
    rows = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in lines[1:4]}
    assert set(rows) == {"email", "report", "thumbnail"}
    # every task ended completed or dead; nothing left queued or in flight
    assert sum(r[8] + r[7] for r in rows.values()) == 60
    assert all(r[0] == r[1] == r[2] == 0 for r in rows.values())
    assert rows["thumbnail"][3] == 2  # the bad widths end dead


def test_console_script_help_lists_examples() -> None:
    out = subprocess.run([sys.executable, "-m", "kubetaskqueue", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "Examples:" in out and "KUBETASKQUEUE_REDIS_URL" in out


def test_enqueue_wait_reports_completion_death_and_timeout(redis_url: str) -> None:
    m = Manager(redis_url, poll_interval_s=0.05)

    @m.processor("t")
    def work(task: Task) -> None:
        if task.payload == "die":
            raise RuntimeError("no")

    m.start()
    try:
        code, out, _ = run("--redis-url", redis_url, "enqueue", "t", '"ok"', "--wait", "10")
        assert code == 0 and len(out.strip()) == 32
        code, _, err = run("--redis-url", redis_url, "enqueue", "t", '"die"', "--wait", "10")
        assert code == 1 and "died: see `kubetaskqueue dead list t`" in err
        code, _, err = run("--redis-url", redis_url, "enqueue", "nobody", "1", "--wait", "0.3")
        assert code == 1 and "did not finish within 0.3s" in err
    finally:
        m.stop()
