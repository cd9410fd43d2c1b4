"""Task results: enqueue(keep_result_s=) keeps what the processor returned, Manager.result
waits for it without polling, `enqueue --wait` prints it. On the embedded store and a
real redis-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import results_app
from click.testing import CliRunner
from helpers import RedisServer, wait_until
from kubetaskqueue import (
    DuplicateTaskError,
    Manager,
    NoResultError,
    ResultTimeoutError,
    Task,
    TaskNotFoundError,
)
from kubetaskqueue.cli import cli

TOPIC = "calc"


def make(url: str, **kw: Any) -> Manager:
    options: dict[str, Any] = {"poll_interval_s": 0.1, "num_workers": 4, "lease_ttl_s": 5.0}
    options.update(kw)
    m = Manager(url, **options)

    @m.processor(TOPIC)
    def work(task: Task) -> Any:
        kind = task.payload.get("do") if isinstance(task.payload, dict) else None
        if kind == "object":
            return object()
        if kind == "none":
            return None
        if kind == "big":
            return "x" * 300
        if kind == "sleep":
            time.sleep(task.payload["s"])
        return {"sum": sum(task.payload["n"])} if kind is None else kind

    return m


@pytest.fixture
def running(any_url: str) -> Iterator[Manager]:
    m = make(any_url)
    m.start()
    try:
        yield m
    finally:
        m.stop()


def test_result_is_kept_and_the_task_is_done(running: Manager) -> None:
    m = running
    task_id = m.enqueue(TOPIC, {"n": [1, 2, 3]}, keep_result_s=60)
    assert m.result(TOPIC, task_id, wait_s=10) == {"sum": 6}
    info = m.task(TOPIC, task_id)
    assert info is not None
    assert (info.state, info.result, info.payload, info.attempts) == (
        "done", {"sum": 6}, {"n": [1, 2, 3]}, 1)
    assert info.done_at and info.keep_result_s == 60.0
    assert info.result_expires_in_s is not None and 50 < info.result_expires_in_s <= 60
    assert m.result(TOPIC, task_id) == {"sum": 6}  # no wait: it is there
    assert m.delete(TOPIC, task_id) is False  # not waiting: a done task expires by itself
    with pytest.raises(DuplicateTaskError):  # the id is taken while the result is kept
        m.enqueue(TOPIC, {"n": [1]}, task_id=task_id)
    stats = m.stats()["topics"][TOPIC]
    assert (stats["completed"], stats["input"], stats["work"]) == (1, 0, 0)


def test_a_return_value_none_is_a_result_too(running: Manager) -> None:
    task_id = running.enqueue(TOPIC, {"do": "none"}, keep_result_s=60)
    assert running.result(TOPIC, task_id, wait_s=10) is None
    info = running.task(TOPIC, task_id)
    assert info is not None and info.state == "done"


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_every_waiter_wakes_on_completion(store: str, request: pytest.FixtureRequest) -> None:
    # A private server on redis: blocked_clients counts every client, and the shared one
    # may still hold a blocked connection of another test.
    any_url = (f"memory://waiters-{time.monotonic_ns()}" if store == "memory"
               else request.getfixturevalue("own_redis").url)
    m = make(any_url)
    task_id = m.enqueue(TOPIC, {"n": [4, 5]}, keep_result_s=60)
    got: list[Any] = []

    def wait() -> None:  # rechecks 30 s apart: only the wake-up can end the wait in time
        got.append(make(any_url, poll_interval_s=30.0).result(TOPIC, task_id, wait_s=20))

    waiters = [threading.Thread(target=wait) for _ in range(3)]
    for w in waiters:
        w.start()
    if any_url.startswith("redis://"):  # (fakeredis does not count blocked clients)
        client = redis.Redis.from_url(any_url)
        wait_until(lambda: client.info("clients")["blocked_clients"] == 3,
                   what="the 3 waiters blocked on the done list")
    m.start()
    try:
        start = time.monotonic()
        for w in waiters:
            w.join(20)
        assert got == [{"sum": 9}] * 3
        assert time.monotonic() - start < 10
    finally:
        m.stop()


def test_waiting_blocks_on_redis_instead_of_polling(own_redis: RedisServer) -> None:
    # A private server: commandstats count every client's calls, and the shared one
    # may still serve managers of other tests.
    redis_url = own_redis.url
    m = make(redis_url, poll_interval_s=5.0)
    task_id = m.enqueue(TOPIC, {"n": [1]}, keep_result_s=60)  # no worker: never done
    client = redis.Redis.from_url(redis_url)

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: int(v["calls"]) for name, v in stats.items()}

    assert m.task(TOPIC, task_id) is not None  # the lookup script is loaded now
    before = calls()
    start = time.monotonic()
    with pytest.raises(ResultTimeoutError, match=r"has no result within 1\.5s: it is input"):
        m.result(TOPIC, task_id, wait_s=1.5)
    assert time.monotonic() - start >= 1.5
    after = calls()
    used = {name: after[name] - before.get(name, 0) for name in after
            if after[name] != before.get(name, 0) and name != "cmdstat_info"}
    # One look at the task (a script), one blocking wait, one last look.
    assert used.get("cmdstat_blmove") == 1
    assert used.get("cmdstat_evalsha", 0) + used.get("cmdstat_eval", 0) == 2
    assert sum(used.values()) < 20, used


def test_a_result_json_cannot_hold_fails_the_attempt(running: Manager) -> None:
    m = running
    task_id = m.enqueue(TOPIC, {"do": "object"}, keep_result_s=60, num_retries=1)
    with pytest.raises(NoResultError, match="died") as raised:
        wait_until(lambda: _dead(m, task_id), what="the task died")
        m.result(TOPIC, task_id, wait_s=5)
    assert "a value of type object, which is not JSON-serialisable" in str(raised.value)
    info = m.task(TOPIC, task_id)
    assert info is not None and info.attempts == 2  # both attempts failed
    assert info.last_error.startswith("ResultError: task ")
    stats = m.stats()["topics"][TOPIC]
    assert (stats["retried"], stats["failed"], stats["completed"]) == (1, 1, 0)


def _dead(m: Manager, task_id: str) -> bool:
    info = m.task(TOPIC, task_id)
    return info is not None and info.state == "dead"


def test_without_keep_result_the_return_value_is_not_looked_at(running: Manager) -> None:
    m = running
    task_id = m.enqueue(TOPIC, {"do": "object"})
    wait_until(lambda: m.stats()["topics"][TOPIC]["completed"] == 1)
    assert m.task(TOPIC, task_id) is None
    with pytest.raises(TaskNotFoundError, match="has no task"):
        m.result(TOPIC, task_id)
    pending = m.enqueue(TOPIC, {"do": "sleep", "s": 0.5})
    with pytest.raises(NoResultError, match="enqueued without keep_result_s"):
        m.result(TOPIC, pending, wait_s=5)


def test_a_result_over_the_payload_cap_fails_the_attempt(any_url: str) -> None:
    m = make(any_url, max_payload_bytes=100)
    task_id = m.enqueue(TOPIC, {"do": "big"}, keep_result_s=60)
    m.run(burst=True)
    info = m.task(TOPIC, task_id)
    assert info is not None and info.state == "dead"
    assert "the result is 302 bytes as JSON, over the 100-byte cap" in info.last_error


def test_the_result_expires_with_the_task(running: Manager) -> None:
    m = running
    task_id = m.enqueue(TOPIC, {"n": [2]}, keep_result_s=1.0)
    assert m.result(TOPIC, task_id, wait_s=0.9) == {"sum": 2}
    wait_until(lambda: m.task(TOPIC, task_id) is None, what="the result expired")
    with pytest.raises(TaskNotFoundError):
        m.result(TOPIC, task_id)
    k = m.store.keys(TOPIC)
    assert not m.store.client.exists(k.task(task_id), k.done(task_id))
    m.enqueue(TOPIC, {"n": [3]}, task_id=task_id)  # the id is free again


def test_async_and_process_isolated_processors_keep_results(any_url: str) -> None:
    m = Manager(any_url, poll_interval_s=0.1)

    @m.processor("aio")
    async def double(task: Task) -> int:
        return int(task.payload) * 2

    m.register("iso", results_app.echo, isolation="process")
    a = m.enqueue("aio", 21, keep_result_s=60)
    b = m.enqueue("iso", [1, "x"], keep_result_s=60)
    m.run(burst=True)
    assert m.result("aio", a) == 42
    assert m.result("iso", b) == {"echo": [1, "x"], "attempt": 1}


def test_bad_arguments_are_refused(any_url: str) -> None:
    m = make(any_url)
    for bad in (0, -1, True, "5", float("inf"), float("nan"), 366 * 24 * 3600):
        with pytest.raises(ValueError, match="keep_result_s"):
            m.enqueue(TOPIC, 1, keep_result_s=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep_result_s"):
        m.enqueue_many(TOPIC, [1, 2], keep_result_s=-5)
    assert m.stats()["topics"] == {}  # nothing was written
    task_id = m.enqueue(TOPIC, 1, keep_result_s=5)
    with pytest.raises(ValueError, match="wait_s"):
        m.result(TOPIC, task_id, wait_s=-1)
    with pytest.raises(ResultTimeoutError, match="has no result yet: it is input"):
        m.result(TOPIC, task_id)
    ids = m.enqueue_many(TOPIC, [{"n": [1]}, {"n": [2]}], keep_result_s=60)
    m.run(burst=True)
    assert [m.result(TOPIC, i) for i in ids] == [{"sum": 1}, {"sum": 2}]


def test_cli_enqueue_wait_prints_the_result(running: Manager, any_url: str) -> None:
    runner = CliRunner()
    if any_url.startswith("memory://"):  # the task would vanish with the command
        out = runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC, "1", "--wait", "1"])
        assert out.exit_code == 2 and "memory:// is a store inside this one process" in out.stderr
        return
    out = runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC, '{"n": [20, 22]}',
                              "--id", "c1", "--keep-result", "60", "--wait", "10"])
    assert (out.exit_code, out.stdout) == (0, 'c1\n{"sum": 42}\n')
    out = runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC, '{"do": "object"}',
                              "--id", "c2", "--keep-result", "60", "--wait", "10"])
    assert (out.exit_code, out.stdout) == (1, "c2\n")
    assert "task c2 died: see `kubetaskqueue dead list calc`" in out.stderr
    out = runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC, '{"n": [1]}',
                              "--wait", "10"])
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 1  # no result kept: id only
    out = runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC,
                              '{"do": "sleep", "s": 1.5}', "--keep-result", "60", "--wait", "0.3"])
    assert out.exit_code == 1 and "did not finish within 0.3s" in out.stderr
