"""A lost worker spends no retry: reaped leases, the operator's release, owners, fencing."""

from __future__ import annotations

import pytest
from helpers import LEASE_TTL_S, Workers, wait_until
from kubetaskqueue import Manager
from kubetaskqueue.connection import connect
from kubetaskqueue.events import read_stream
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.queue_state import read_lease_owners, read_queue_state, release_lost_managers
from kubetaskqueue.store import RedisStore

TOPIC = "jobs"
NS = "ktq"


@pytest.fixture
def store(any_url: str) -> RedisStore:
    return RedisStore(connect(any_url), NS)


def new(*ids: str, retries: int = 0) -> NewTasks:
    return NewTasks(list(ids), ['{"n": 1}'] * len(ids), retries)


def field(store: RedisStore, task_id: str, name: str, topic: str = TOPIC) -> str | None:
    value = store.client.hget(store.keys(topic).task(task_id), name)
    return None if value is None else str(value)


def reap_expired(store: RedisStore, max_losses: int) -> tuple[int, int]:
    """Reap once the short lease has expired on the Redis clock (no fixed sleep)."""
    found = wait_until(lambda: {store.reap(TOPIC, max_losses)} - {(0, 0)},
                       what="an expired lease reaped")
    return found.pop()


def counters(store: RedisStore) -> dict[str, int]:
    return read_queue_state(store.client, NS, [TOPIC]).topics[TOPIC].counters


def test_an_expired_lease_requeues_without_spending_a_retry(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", retries=0))
    store.claim(TOPIC, 1, 0.01, "w-1-aaaaaaaa")
    assert reap_expired(store, 3) == (1, 0)
    assert store.client.zrange(store.keys(TOPIC).input, 0, -1) == ["a"]
    assert (field(store, "a", "attempts"), field(store, "a", "losses")) == ("0", "1")
    assert field(store, "a", "owner") == ""
    c = counters(store)
    assert (c.get("lost"), c.get("retried", 0), c.get("failed", 0)) == (1, 0, 0)
    [lease_expired] = [e for e in read_stream(store.client, store.keys(TOPIC).events)
                       if e.type == "TASK_LEASE_EXPIRED"]
    assert lease_expired.detail == field(store, "a", "last_error")
    assert lease_expired.detail.startswith("lease expired: manager w-1-aaaaaaaa stopped")
    # It still has its one attempt: a real failure now ends it, as num_retries=0 says.
    _, [row] = store.claim(TOPIC, 1, 30, "w-2-bbbbbbbb")
    assert row.attempts == 1
    assert store.fail(TOPIC, "a", row.token, "RuntimeError: boom", 0) == "dead"


def test_max_worker_losses_zero_makes_the_first_loss_fatal(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", retries=5))
    store.claim(TOPIC, 1, 0.01, "w-1-aaaaaaaa")
    assert reap_expired(store, 0) == (0, 1)
    error = field(store, "a", "last_error") or ""
    assert error.startswith("poison: lost its worker 1 times (max_worker_losses 0); last: lease")
    assert store.client.lrange(store.keys(TOPIC).dead, 0, -1) == ["a"]
    assert (counters(store)["lost"], counters(store)["failed"]) == (1, 1)
    kinds = [e.type for e in read_stream(store.client, store.keys(TOPIC).events)]
    assert kinds[-2:] == ["TASK_LEASE_EXPIRED", "TASK_DEAD"]


def test_the_loss_after_max_worker_losses_is_poison(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", retries=0))
    for expected in [(1, 0)] * 3 + [(0, 1)]:
        _, [row] = store.claim(TOPIC, 1, 0.01, "w-1-aaaaaaaa")
        assert row.attempts == 1  # every run is still the first attempt
        assert reap_expired(store, 3) == expected
    error = field(store, "a", "last_error") or ""
    assert error.startswith("poison: lost its worker 4 times (max_worker_losses 3); last: lease "
                            "expired: manager w-1-aaaaaaaa stopped renewing it")


def test_failures_still_spend_retries(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", retries=1))
    for expected in ("retried", "dead"):
        _, [row] = store.claim(TOPIC, 1, 30, "w-1-aaaaaaaa")
        assert store.fail(TOPIC, "a", row.token, "boom", 0) == expected
    assert field(store, "a", "losses") is None


def test_owners_are_read_from_the_leases_per_manager(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("j0", "j1", "j2"))
    store.enqueue("mail", new("m0", "m1"))
    store.claim(TOPIC, 2, 30, "w-1-aaaaaaaa")
    store.claim(TOPIC, 1, 30, "w-10-bbbbbbbb")
    store.claim("mail", 2, 30, "w-1-aaaaaaaa")
    assert read_lease_owners(store.client, NS, [TOPIC, "mail"]) == {
        "w-1-aaaaaaaa": 4, "w-10-bbbbbbbb": 1}
    assert read_lease_owners(store.client, NS, ["mail"]) == {"w-1-aaaaaaaa": 2}


def test_releasing_a_lost_manager_frees_only_its_leases_and_fences_it(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", "b", "c"))
    _, [a, b] = store.claim(TOPIC, 2, 30, "w-1-aaaaaaaa")
    store.claim(TOPIC, 1, 30, "w-10-bbbbbbbb")
    reason = "pod w-1 OOMKilled (exit 137)"
    assert release_lost_managers(store.client, NS, [TOPIC], ["w-1-aaaaaaaa"], reason) == (2, 0)
    assert sorted(store.client.zrange(store.keys(TOPIC).input, 0, -1)) == ["a", "b"]
    assert field(store, "a", "last_error") == reason
    assert field(store, "c", "owner") == "w-10-bbbbbbbb"  # the other pod keeps its task
    state = read_queue_state(store.client, NS, [TOPIC]).topics[TOPIC]
    assert (state.work, state.counters["lost"]) == (1, 2)
    # The "dead" worker was alive after all: its late ack is refused, the task runs again.
    assert store.extend(TOPIC, [(a.id, a.token)], 30) == [a.id]
    assert store.ack(TOPIC, a.id, a.token) is False
    assert store.fail(TOPIC, b.id, b.token, "late", 0) == "fenced"
    assert counters(store)["fenced"] == 2
    _, again = store.claim(TOPIC, 2, 30, "w-2-cccccccc")
    assert {t.id for t in again} == {"a", "b"}
    assert all(t.attempts == 1 for t in again)
    lost = [e for e in read_stream(store.client, store.keys(TOPIC).events)
            if e.type == "TASK_WORKER_LOST"]
    assert {e.task_id for e in lost} == {"a", "b"} and {e.detail for e in lost} == {reason}


def test_the_release_uses_the_lost_managers_own_cap(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a"))
    store.heartbeat_manager("w-1-aaaaaaaa", {"pod": "w-1", "max_worker_losses": 0}, 30)
    store.claim(TOPIC, 1, 30, "w-1-aaaaaaaa")
    assert release_lost_managers(store.client, NS, [TOPIC], ["w-1-aaaaaaaa"], "pod w-1 was "
                                 "deleted") == (0, 1)
    assert (field(store, "a", "last_error") or "").endswith("last: pod w-1 was deleted")


def test_a_worker_killed_mid_task_does_not_spend_num_retries(redis_url: str) -> None:
    """The real thing: a worker process SIGKILLed with a task; num_retries=0 still runs it."""
    producer = Manager(redis_url)
    task_id = producer.enqueue("sleep", {"s": 30}, num_retries=0)
    workers = Workers(redis_url)
    try:
        doomed = workers.start()
        wait_until(lambda: producer.stats()["topics"]["sleep"]["work"] == 1, 15,
                   what="the task to start")
        doomed.kill()
        doomed.wait(10)
        producer.store.client.hset(producer.store.keys("sleep").task(task_id), "payload",
                                   '{"s": 0}')  # the second run is quick
        workers.start()
        wait_until(lambda: producer.stats()["topics"]["sleep"]["completed"] == 1,
                   LEASE_TTL_S * 4 + 15, 0.1, what="the task to run again and complete")
        assert producer.stats()["topics"]["sleep"]["dead"] == 0
    finally:
        workers.stop_all()


@pytest.mark.parametrize("name", ["losses", "attempts"])
def test_a_hand_edited_counter_does_not_strand_a_lost_task(store: RedisStore, name: str) -> None:
    store.enqueue(TOPIC, new("a"))
    store.claim(TOPIC, 1, 0.01, "w-1-aaaaaaaa")
    store.client.hset(store.keys(TOPIC).task("a"), name, "not a number")
    wait_until(lambda: store.reap(TOPIC, 3) == (1, 0), 5, what="the lease to expire and be reaped")
    assert store.client.zrange(store.keys(TOPIC).input, 0, -1) == ["a"]
