"""Manager behaviour end to end in one process: API contract, retries, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from helpers import wait_until
from kubetaskqueue import (
    ConfigError,
    DuplicateTaskError,
    KubeTaskQueueError,
    Manager,
    PayloadError,
    Retry,
    Task,
)


def make(url: str, **kw: Any) -> Manager:
    options: dict[str, Any] = {"poll_interval_s": 0.1, "num_workers": 4, "lease_ttl_s": 5.0}
    options.update(kw)
    return Manager(url, **options)


def test_success_retry_and_dead_counters(any_url: str) -> None:
    m = make(any_url)
    seen: list[tuple[Any, int]] = []

    @m.processor("jobs")
    def work(task: Task) -> None:
        seen.append((task.payload, task.attempt))
        if task.payload == "bad":
            raise RuntimeError("always fails")

    m.enqueue("jobs", "good")
    m.enqueue("jobs", "bad", num_retries=2)
    m.run(burst=True)
    assert sorted(seen) == [("bad", 1), ("bad", 2), ("bad", 3), ("good", 1)]
    assert m.stats()["topics"]["jobs"] == {
        "input": 0, "scheduled": 0, "work": 0, "dead": 1,
        "enqueued": 2, "started": 4, "retried": 2, "failed": 1, "completed": 1,
        "dead_dropped": 0, "paused": False}
    fields = m.store.client.hgetall(m.store.keys("jobs").task(
        m.store.client.lindex(m.store.keys("jobs").dead, 0)))
    assert "RuntimeError: always fails" in fields["last_error"]
    assert "Traceback" in fields["last_error"]


def test_task_fields_reach_the_processor(any_url: str) -> None:
    m = make(any_url)
    got: list[Task] = []
    m.register("t", got.append)
    task_id = m.enqueue("t", {"k": [1, 2]}, num_retries=3, task_id="my-id")
    m.run(burst=True)
    [task] = got
    assert (task.id, task.topic, task.payload, task.attempt, task.num_retries) == (
        "my-id", "t", {"k": [1, 2]}, 1, 3)
    assert task_id == "my-id" and task.enqueued_at > 1.7e9


def test_retry_exception_waits_the_requested_delay(any_url: str) -> None:
    m = make(any_url)
    starts: list[float] = []

    @m.processor("t")
    def work(task: Task) -> None:
        starts.append(time.monotonic())
        if task.attempt == 1:
            raise Retry(delay_s=0.5)

    m.enqueue("t", {}, num_retries=1)
    m.run(burst=True)
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.45
    assert m.stats()["topics"]["t"]["completed"] == 1


def test_backoff_is_used_for_failures(any_url: str) -> None:
    asked: list[int] = []

    def backoff(retries_done: int) -> float:
        asked.append(retries_done)
        return 0.01

    m = make(any_url, backoff=backoff)
    m.register("t", lambda task: 1 / 0)
    m.enqueue("t", {}, num_retries=3)
    m.run(burst=True)
    assert asked == [0, 1, 2]


def test_async_processor_and_its_timeout_cancels(any_url: str) -> None:
    m = make(any_url)
    cancelled = threading.Event()

    @m.processor("a", timeout_s=0.2)
    async def work(task: Task) -> None:
        try:
            await asyncio.sleep(task.payload)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    m.enqueue("a", 0.01)
    m.enqueue("a", 5)
    m.run(burst=True)
    stats = m.stats()["topics"]["a"]
    assert (stats["completed"], stats["dead"]) == (1, 1)
    assert cancelled.is_set()


def test_async_successes_are_settled_on_the_loop_and_failures_still_recorded(
        any_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A success the claim thread acks needs no Redis call, so it takes no thread hop
    (asyncio.to_thread); a failure's record does, and lands: retried, then dead."""
    m = make(any_url, num_workers=8)
    attempts: list[tuple[str, int]] = []
    hops: list[object] = []
    to_thread = asyncio.to_thread

    async def counted(fn: Any, /, *args: Any) -> Any:
        hops.append(fn)
        return await to_thread(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)

    @m.processor("ok")
    async def ok(task: Task) -> None:
        await asyncio.sleep(0)

    @m.processor("fails")
    async def fails(task: Task) -> None:
        attempts.append((task.id, task.attempt))
        if task.attempt == 1:
            raise Retry(0.01)
        raise RuntimeError("no")

    m.enqueue_many("ok", list(range(200)))
    m.run(burst=True)
    assert m.stats()["topics"]["ok"]["completed"] == 200
    assert len(hops) <= 8  # successes acked by their own thread (the claim thread away)
    hops.clear()
    m.enqueue("fails", {}, num_retries=1)
    m.run(burst=True)
    stats = m.stats()["topics"]["fails"]
    assert (stats["dead"], len(attempts), len(hops)) == (1, 2, 2)


def test_sync_timeout_fails_attempt_and_frees_slot(any_url: str) -> None:
    m = make(any_url, num_workers=1)
    release = threading.Event()
    done: list[str] = []

    @m.processor("t")
    def work(task: Task) -> None:
        if task.payload == "hang":
            release.wait(10)
        done.append(task.payload)

    m.enqueue("t", "hang", timeout_s=0.3)
    m.enqueue("t", "quick")
    started = time.monotonic()
    m.run(burst=True)
    assert time.monotonic() - started < 5
    assert done == ["quick"]  # the one slot was freed for the next task
    [dead] = m.store.client.lrange(m.store.keys("t").dead, 0, -1)
    assert "timed out after 0.3s" in m.store.client.hget(m.store.keys("t").task(dead),
                                                          "last_error")
    release.set()


def test_malformed_task_goes_dead_with_reason(any_url: str) -> None:
    m = make(any_url)
    m.register("t", lambda task: None)
    task_id = m.enqueue("t", {}, num_retries=5)
    m.store.client.hset(m.store.keys("t").task(task_id), "payload", "{not json")
    m.run(burst=True)
    assert m.stats()["topics"]["t"]["dead"] == 1
    assert "malformed" in m.store.client.hget(m.store.keys("t").task(task_id), "last_error")


def test_processor_only_claims_its_own_topics(any_url: str) -> None:
    m = make(any_url)
    m.register("mine", lambda task: None)
    m.enqueue("mine", 1)
    m.enqueue("other", 2)  # a producer needs no processor
    m.run(burst=True)
    stats = m.stats()["topics"]
    assert stats["mine"]["completed"] == 1
    assert stats["other"]["input"] == 1


def test_enqueue_validation_writes_nothing(any_url: str) -> None:
    m = make(any_url, max_payload_bytes=100)
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        m.enqueue("t", {"x": object()})
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        m.enqueue("t", float("nan"))
    with pytest.raises(PayloadError, match="over the 100-byte cap"):
        m.enqueue("t", "x" * 200)
    with pytest.raises(ValueError, match="invalid topic"):
        m.enqueue("bad topic{", 1)
    with pytest.raises(ValueError, match="num_retries"):
        m.enqueue("t", 1, num_retries=-1)
    with pytest.raises(PayloadError):
        m.enqueue_many("t", [1, 2, {"x": {1, 2}}])
    assert m.stats()["topics"] == {}
    m.enqueue("t", 1, task_id="x")
    with pytest.raises(DuplicateTaskError):
        m.enqueue("t", 2, task_id="x")
    ids = m.enqueue_many("t", [1, 2, 3], num_retries=2)
    assert len(set(ids)) == 3
    assert m.stats()["topics"]["t"]["input"] == 4


def test_register_rules() -> None:
    m = Manager("memory://rules")
    m.register("t", lambda task: None)
    with pytest.raises(KubeTaskQueueError, match="already has a processor"):
        m.register("t", lambda task: None)
    with pytest.raises(ConfigError, match="no processors registered"):
        Manager("memory://none").start()


def test_settings_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETASKQUEUE_NUM_WORKERS", "7")
    monkeypatch.setenv("KUBETASKQUEUE_REDIS_URL", "memory://env")
    m = Manager(lease_ttl_s=9)
    assert (m.settings.num_workers, m.settings.redis_url, m.settings.lease_ttl_s) == (
        7, "memory://env", 9)
    assert Manager(num_workers=2).settings.num_workers == 2  # arguments win
    with pytest.raises(ConfigError, match="num_workers"):
        Manager(num_workers=0)


def test_stop_releases_unfinished_tasks_without_counting_attempt(any_url: str) -> None:
    m = make(any_url, num_workers=2)
    started = threading.Barrier(3)
    gate = threading.Event()

    @m.processor("t")
    def work(task: Task) -> None:
        started.wait(5)
        gate.wait(10)

    m.enqueue_many("t", [1, 2])
    m.start()
    started.wait(5)
    m.stop(timeout_s=0.2)
    gate.set()
    stats = m.stats()["topics"]["t"]
    assert (stats["input"], stats["work"], stats["completed"]) == (2, 0, 0)
    attempts = [m.store.client.hget(m.store.keys("t").task(i), "attempts")
                for i in m.store.client.zrange(m.store.keys("t").input, 0, -1)]
    assert attempts == ["0", "0"]


def test_stop_cancels_and_releases_unfinished_async_tasks(any_url: str) -> None:
    """Running async attempts are cancelled on the loop and released back to input."""
    m = make(any_url, num_workers=2)
    running: list[int] = []
    cancelled: list[int] = []

    @m.processor("t")
    async def work(task: Task) -> None:
        running.append(task.payload)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(task.payload)
            raise

    m.enqueue_many("t", [1, 2, 3, 4])
    m.start()
    wait_until(lambda: len(running) == 2)
    m.stop(timeout_s=0.2)
    wait_until(lambda: len(cancelled) == 2)
    stats = m.stats()["topics"]["t"]
    assert (stats["input"], stats["work"], stats["completed"]) == (4, 0, 0)
    assert sorted(cancelled) == sorted(running)


def test_stop_waits_for_tasks_within_grace(any_url: str) -> None:
    m = make(any_url)
    m.register("t", lambda task: time.sleep(0.3))
    m.enqueue("t", 1)
    m.start()
    wait_until(lambda: m.stats()["topics"]["t"]["work"] == 1)
    m.stop(timeout_s=5)
    assert m.stats()["topics"]["t"]["completed"] == 1


def test_heartbeat_keeps_long_task_leased(any_url: str) -> None:
    m = make(any_url, lease_ttl_s=0.6)
    runs: list[int] = []

    @m.processor("t")
    def work(task: Task) -> None:
        runs.append(task.attempt)
        time.sleep(2.0)  # over 3 lease TTLs

    m.enqueue("t", 1)
    m.run(burst=True)
    assert runs == [1]
    assert m.stats()["topics"]["t"]["completed"] == 1


def test_manager_registers_itself_while_running(any_url: str) -> None:
    m = make(any_url)
    m.register("t", lambda task: None)
    m.start()
    try:
        assert wait_until(lambda: m.stats()["managers"] == 1)
    finally:
        m.stop()
    assert m.stats()["managers"] == 0


def test_deeply_nested_payloads_are_refused_or_buried(any_url: str) -> None:
    m = make(any_url)
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        m.enqueue("t", deep)
    m.register("t", lambda task: None)
    task_id = m.enqueue("t", {})
    m.store.client.hset(m.store.keys("t").task(task_id), "payload", "[" * 100_000 + "]" * 100_000)
    m.run(burst=True)  # the worker survives and buries the task
    assert m.stats()["topics"]["t"]["dead"] == 1


@pytest.mark.parametrize("bad", ["3", float("inf"), -1, True])
def test_enqueue_rejects_non_numeric_delays(bad: Any) -> None:
    m = Manager("memory://delays")
    with pytest.raises(ValueError, match="delay_s must be a finite number of seconds >= 0"):
        m.enqueue("t", 1, delay_s=bad)


@pytest.mark.parametrize("verbose", [False, True])
def test_the_traceback_is_logged_when_a_task_goes_dead_and_with_debug_on_each_attempt(
        verbose: bool, caplog: pytest.LogCaptureFixture) -> None:
    m = make(f"memory://traceback-log-{verbose}")

    @m.processor("jobs")
    def work(task: Task) -> None:
        raise RuntimeError(f"disk full on attempt {task.attempt}")

    caplog.set_level(logging.DEBUG if verbose else logging.INFO, logger="kubetaskqueue")
    m.enqueue("jobs", {}, num_retries=1, task_id="t1")
    m.run(burst=True)
    failed = [r for r in caplog.records if "RuntimeError" in r.getMessage()]
    assert [(r.levelname, r.getMessage().splitlines()[0]) for r in failed] == [
        ("WARNING", "task t1 of 'jobs': attempt 1 errored (retried): "
                    "RuntimeError: disk full on attempt 1"),
        ("ERROR", "task t1 of 'jobs' failed (attempt 2, no retries left; moved to dead): "
                  "RuntimeError: disk full on attempt 2"),
    ]
    retried, dead = (r.getMessage() for r in failed)
    assert "Traceback (most recent call last)" in dead
    assert 'raise RuntimeError(f"disk full on attempt {task.attempt}")' in dead
    assert ("Traceback (most recent call last)" in retried) is verbose
