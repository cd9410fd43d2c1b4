"""Manager.task and Manager.delete (and `kubetaskqueue task show|delete`, `dead requeue`
with ids that are not dead), on the embedded store and a real redis-server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from kubetaskqueue import Manager
from kubetaskqueue.cli import cli
from kubetaskqueue.events import read_stream

TOPIC = "jobs"


@pytest.fixture
def m(any_url: str) -> Manager:
    return Manager(any_url, poll_interval_s=0.05)


def claim(m: Manager, n: int = 1) -> list[tuple[str, str]]:
    """Lease ready tasks the way a worker does; returns (id, token) pairs."""
    _, rows = m.store.claim(TOPIC, n, 30, "pod-a-0123abcd")
    return [(r.id, r.token) for r in rows]


def bury(m: Manager, task_id: str, error: str = "RuntimeError: boom") -> None:
    m.enqueue(TOPIC, {"n": 1}, task_id=task_id)
    [(claimed, token)] = claim(m)
    assert claimed == task_id
    assert m.store.fail(TOPIC, task_id, token, f"Traceback ...\n{error}", 0) == "dead"


def run(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--redis-url", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_each_state_and_its_fields(m: Manager) -> None:
    assert m.task(TOPIC, "nope") is None
    bury(m, "gone")
    m.enqueue(TOPIC, {"k": [1, 2]}, task_id="ready", num_retries=2, timeout_s=9)
    m.enqueue(TOPIC, "later", task_id="later", delay_s=600)
    ready = m.task(TOPIC, "ready")
    assert ready is not None
    assert (ready.state, ready.payload, ready.attempts, ready.num_retries, ready.timeout_s) == (
        "input", {"k": [1, 2]}, 0, 2, 9.0)
    assert ready.enqueued_at and ready.ready_at == ready.enqueued_at and ready.claimed_at is None
    later = m.task(TOPIC, "later")
    assert later is not None and later.state == "scheduled"
    assert later.ready_at is not None and later.enqueued_at is not None
    assert later.ready_at == pytest.approx(later.enqueued_at + 600)  # when it is due

    [(_, token)] = claim(m)
    running = m.task(TOPIC, "ready")
    assert running is not None
    assert (running.state, running.attempts, running.owner) == ("work", 1, "pod-a-0123abcd")
    assert running.claimed_at and running.lease_expires_at == pytest.approx(
        running.claimed_at + 30)

    assert m.store.fail(TOPIC, "ready", token, "Traceback\nValueError: no", 0) == "retried"
    again = m.task(TOPIC, "ready")
    assert again is not None and again.state == "input" and again.owner == ""
    assert again.last_error.endswith("ValueError: no") and again.failed_at

    dead = m.task(TOPIC, "gone")
    assert dead is not None and dead.state == "dead" and dead.dead_at
    assert dead.last_error.endswith("RuntimeError: boom")
    assert dead.as_dict()["state"] == "dead"

    [(task_id, token)] = claim(m)
    assert task_id == "ready"
    assert m.store.ack(TOPIC, "ready", token)
    assert m.task(TOPIC, "ready") is None  # acked without keep_result_s: no trace left


def test_delete_takes_waiting_tasks_only(m: Manager) -> None:
    m.enqueue_many(TOPIC, [1, 2, 3], task_ids=["a", "b", "c"])
    m.enqueue(TOPIC, 4, task_id="later", delay_s=600)
    assert m.delete(TOPIC, "b") is True  # from the middle of input
    assert m.delete(TOPIC, "later") is True
    assert m.delete(TOPIC, "b") is False and m.delete(TOPIC, "nope") is False
    assert m.task(TOPIC, "b") is None and m.task(TOPIC, "later") is None
    k = m.store.keys(TOPIC)
    assert m.store.client.zcard(k.scheduled) == 0
    assert [i for i, _ in claim(m, 5)] == ["a", "c"]  # b is gone from input

    m.enqueue(TOPIC, 5, task_id="running")
    [(_, token)] = claim(m)
    assert m.delete(TOPIC, "running") is False  # in work: left alone
    info = m.task(TOPIC, "running")
    assert info is not None and info.state == "work"
    assert m.store.ack(TOPIC, "running", token)  # its lease still holds

    bury(m, "dead1")
    assert m.delete(TOPIC, "dead1") is True
    assert m.store.client.llen(k.dead) == 0
    assert not m.store.client.exists(k.task("dead1"))
    deleted = [(e.task_id, e.detail) for e in read_stream(m.store.client, k.events)
               if e.type == "TASK_DELETED"]
    assert deleted == [("b", "deleted by a human while input"),
                       ("later", "deleted by a human while scheduled"),
                       ("dead1", "deleted by a human while dead")]
    assert m.stats()["topics"][TOPIC]["input"] == 0


def test_bad_topic_is_a_clear_error(m: Manager) -> None:
    with pytest.raises(ValueError, match="invalid topic"):
        m.task("no spaces", "x")
    with pytest.raises(ValueError, match="invalid topic"):
        m.delete("", "x")


def test_cli_task_show(any_url: str, m: Manager) -> None:
    bury(m, "t1")
    code, out, _ = run(any_url, "task", "show", TOPIC, "t1")
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["task      t1", "topic     jobs", "state     dead"]
    assert 'payload   {"n": 1}' in lines
    assert lines[-3:] == ["last error:", "Traceback ...", "RuntimeError: boom"]
    code, out, _ = run(any_url, "task", "show", TOPIC, "t1", "--json")
    assert code == 0 and json.loads(out)["state"] == "dead"
    code, out, err = run(any_url, "task", "show", TOPIC, "nope")
    assert code == 1 and out == ""
    assert "topic 'jobs' has no task 'nope'" in err


def refused_on_memory(url: str, m: Manager, *args: str) -> bool:
    """The CLI's memory:// store vanishes with the command, so changes are refused there."""
    if not url.startswith("memory://"):
        return False
    code, _, err = run(url, *args)
    assert code == 2 and "memory:// is a store inside this one process" in err
    return True


def test_cli_task_delete(any_url: str, m: Manager) -> None:
    m.enqueue(TOPIC, 1, task_id="w")
    if refused_on_memory(any_url, m, "task", "delete", TOPIC, "w"):
        assert m.task(TOPIC, "w") is not None
        return
    assert run(any_url, "task", "delete", TOPIC, "w") == (0, "deleted w\n", "")
    code, _, err = run(any_url, "task", "delete", TOPIC, "w")
    assert code == 1 and "has no task 'w'" in err
    m.enqueue(TOPIC, 1, task_id="r")
    claim(m)
    code, _, err = run(any_url, "task", "delete", TOPIC, "r")
    assert code == 1
    assert "task r is running (attempt 1, manager pod-a-0123abcd)" in err
    assert "stop its worker pod pod-a" in err
    assert m.task(TOPIC, "r") is not None


def test_cli_dead_requeue_and_purge_report_ids_that_are_not_dead(any_url: str,
                                                                  m: Manager) -> None:
    bury(m, "d1")
    bury(m, "d2")
    m.enqueue(TOPIC, 1, task_id="waiting")
    if refused_on_memory(any_url, m, "dead", "requeue", TOPIC, "d1"):
        return
    code, out, err = run(any_url, "dead", "requeue", TOPIC, "d1", "missing", "waiting")
    assert (code, out) == (1, "requeued 1 task(s)\n")
    assert err == ("error: not in the dead queue of 'jobs', skipped: missing (unknown), "
                   "waiting (input)\n")
    info = m.task(TOPIC, "d1")
    assert info is not None and info.state == "input"
    code, out, err = run(any_url, "dead", "purge", TOPIC, "d2", "missing", "--dry-run")
    assert (code, out) == (1, "would purge 1 task(s)\n") and "missing (unknown)" in err
    assert run(any_url, "dead", "purge", TOPIC, "d2") == (0, "purged 1 task(s)\n", "")
    assert run(any_url, "dead", "requeue", TOPIC, "--all")[:2] == (0, "requeued 0 task(s)\n")
