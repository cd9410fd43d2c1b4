"""The claim pipelined behind the wait: a manager of one topic that claimed recently
sends its next claim in the same round trip as its wait on the wake-up list, so a task
enqueued to it at idle starts a round trip sooner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers import RedisServer, wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.connection import connect
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.store import RedisStore

TOPIC = "jobs"
OWNER = "w-1-aaaaaaaa"


@pytest.fixture
def store(any_url: str) -> RedisStore:
    return RedisStore(connect(any_url), "ktq")


def test_the_claim_runs_as_the_hint_arrives(store: RedisStore) -> None:
    pusher = threading.Timer(0.2, lambda: store.enqueue(TOPIC, NewTasks(["a"], ['{"n": 1}'])))
    pusher.start()
    started = time.monotonic()
    woken, (fenced, due_in, rows) = store.wait_then_claim(TOPIC, 8.0, 4, 30.0, OWNER)
    pusher.join()
    assert woken and time.monotonic() - started < 6
    assert [r.id for r in rows] == ["a"] and rows[0].attempts == 1
    assert fenced == set() and due_in is None
    assert store.client.zrange(store.keys(TOPIC).work, 0, -1) == ["a"]


def test_after_a_timeout_the_claim_still_takes_a_task_that_came_without_a_hint(
        store: RedisStore) -> None:
    store.enqueue(TOPIC, NewTasks(["a", "b", "c"], ['{"n": 1}'] * 3))
    store.client.delete(store.keys(TOPIC).wake)  # as if pushed by hand: no hint
    woken, (_, _, rows) = store.wait_then_claim(TOPIC, 0.05, 2, 30.0, OWNER)
    assert not woken
    assert [r.id for r in rows] == ["a", "b"]  # no more than asked


def test_a_flushed_script_cache_still_claims(redis_url: str) -> None:
    store = RedisStore(connect(redis_url), "ktq")
    store.enqueue(TOPIC, NewTasks(["a"], ['{"n": 1}']))
    store.client.script_flush()  # Redis restarted or SCRIPT FLUSH: EVALSHA says NOSCRIPT
    woken, (_, _, rows) = store.wait_then_claim(TOPIC, 1.0, 4, 30.0, OWNER)
    assert woken and [r.id for r in rows] == ["a"]


def _counting(m: Manager, name: str, calls: list[Any],
              record: Callable[[Any], Any] = lambda reply: reply) -> None:
    """Record what ``m.store.<name>`` returns, through ``record``, on every call."""
    real = getattr(m.store, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        reply = real(*args, **kwargs)
        calls.append(record(reply))
        return reply

    setattr(m.store, name, counted)


def test_an_idle_manager_claims_a_task_in_the_call_that_waited_for_it(
        own_redis: RedisServer) -> None:
    # A private server: blocked_clients then counts only this manager's claim thread.
    m = Manager(own_redis.url, num_workers=2, poll_interval_s=5.0)
    ran: list[int] = []
    m.register(TOPIC, lambda task: ran.append(task.payload))
    separate: list[int] = []  # rows of each claim sent on its own
    behind: list[int] = []  # rows of each claim sent behind a wait
    _counting(m, "ack_and_claim", separate, lambda reply: len(reply[2]))
    _counting(m, "wait_then_claim", behind, lambda reply: len(reply[1][2]))

    def idle() -> bool:
        return (m.store.client.info("clients")["blocked_clients"] >= 1
                and m.stats()["topics"].get(TOPIC, {}).get("work", 1) == 0)

    m.start()
    try:
        m.enqueue(TOPIC, 0)  # the first claim after start: sent on its own
        wait_until(lambda: ran == [0] and idle(), what="the first task done, the manager idle")
        separate.clear()
        for n in (1, 2, 3):
            m.enqueue(TOPIC, n)
            wait_until(lambda n=n: ran[-1:] == [n] and idle(),  # type: ignore[misc]
                       what=f"task {n} done, the manager idle again")
        assert sum(separate) == 0 and sum(behind) == 3
    finally:
        m.stop(timeout_s=5)


def test_an_idle_manager_stops_sending_claims_behind_its_waits(redis_url: str) -> None:
    """Only the first wait after a claim carries one; waits an interval after the last
    task cost their BLPOP alone."""
    m = Manager(redis_url, num_workers=2, poll_interval_s=0.1)
    m.register(TOPIC, lambda task: None)
    plain: list[bool] = []
    behind: list[bool] = []
    _counting(m, "wait_for_wake", plain)
    _counting(m, "wait_then_claim", behind, lambda reply: reply[0])
    m.start()
    try:
        m.enqueue(TOPIC, 1)
        wait_until(lambda: m.stats()["topics"][TOPIC]["completed"] == 1)
        behind.clear()
        wait_until(lambda: len(plain) >= 20, what="twenty idle waits")
        assert len(behind) <= 2  # the one (or two) within a poll interval of the claim
    finally:
        m.stop(timeout_s=5)


def test_a_manager_of_two_topics_waits_without_a_claim(redis_url: str) -> None:
    """BLPOP on two lists wakes for either; one claim behind it would be for one topic."""
    m = Manager(redis_url, num_workers=2, poll_interval_s=5.0)
    done: list[str] = []
    for topic in ("a", "b"):
        m.register(topic, lambda task: done.append(task.topic))
    behind: list[bool] = []
    _counting(m, "wait_then_claim", behind)
    m.start()
    try:
        for n, topic in enumerate(("a", "b", "a"), start=1):
            m.enqueue(topic, 1)
            wait_until(lambda n=n: len(done) == n)  # type: ignore[misc]
        assert done == ["a", "b", "a"] and behind == []
    finally:
        m.stop(timeout_s=5)


def test_tasks_claimed_behind_a_wait_that_a_stop_interrupted_go_back(
        own_redis: RedisServer) -> None:
    """A stop asked while the claim thread waits does not end the wait; the claim behind
    it runs when it ends. What it leased goes straight back to input, attempt not
    counted, for another manager: not run, not left leased until the lease expires."""
    m = Manager(own_redis.url, num_workers=2, poll_interval_s=6.0, lease_ttl_s=30.0)
    ran: list[int] = []

    @m.processor(TOPIC)
    def work(task: Task) -> None:
        ran.append(task.payload)

    m.start()
    stopper = threading.Thread(target=m.stop, kwargs={"timeout_s": 5})
    try:
        m.enqueue(TOPIC, 1)
        wait_until(lambda: ran == [1] and m.stats()["topics"][TOPIC]["work"] == 0)
        wait_until(lambda: m.store.client.info("clients")["blocked_clients"] >= 1,
                   what="the claim thread waiting (a claim behind it)")
        stopper.start()
        wait_until(lambda: "shutting down" in m.readiness()[1], what="the stop asked")
        task_id = m.enqueue(TOPIC, 2)  # its hint ends the wait; the claim behind leases it
        stopper.join(timeout=15)
        assert not stopper.is_alive()
    finally:
        if stopper.is_alive():
            stopper.join(timeout=15)
        m.stop(timeout_s=1)
    stats = m.stats()["topics"][TOPIC]
    assert ran == [1]
    assert (stats["input"], stats["work"], stats["started"]) == (1, 0, 2)
    info = m.task(TOPIC, task_id)
    assert info is not None and info.state == "input" and info.attempts == 0
