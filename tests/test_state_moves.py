"""Every task state move, as one Lua script, on the embedded store and a real Redis."""

from __future__ import annotations

import time

import pytest
from helpers import wait_until
from kubetaskqueue.connection import connect
from kubetaskqueue.errors import DuplicateTaskError
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.queue_state import read_queue_state
from kubetaskqueue.store import RedisStore

TOPIC = "jobs"


@pytest.fixture
def store(any_url: str) -> RedisStore:
    return RedisStore(connect(any_url), "ktq")


def new(*ids: str, retries: int = 0, delay_s: float = 0.0) -> NewTasks:
    return NewTasks(list(ids), ['{"n": 1}'] * len(ids), retries, None, delay_s)


def redis_now(store: RedisStore) -> float:
    seconds, micros = store.client.time()
    return seconds + micros / 1e6


def counts(store: RedisStore) -> dict[str, int]:
    state = read_queue_state(store.client, "ktq", [TOPIC]).topics[TOPIC]
    return {"input": state.input, "scheduled": state.scheduled, "work": state.work,
            "dead": state.dead, **state.counters}


def test_enqueue_then_claim_leases_fifo(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", "b", "c"))
    _, rows = store.claim(TOPIC, 2, 30, "m1")
    assert [r.id for r in rows] == ["a", "b"]
    assert [r.attempts for r in rows] == [1, 1]
    assert rows[0].payload == '{"n": 1}'
    c = counts(store)
    assert (c["input"], c["work"], c["started"], c["enqueued"]) == (1, 2, 2, 3)
    fields = store.client.hgetall(store.keys(TOPIC).task("a"))
    assert fields["owner"] == "m1" and fields["token"] == rows[0].token


def test_duplicate_id_rejected_and_batch_writes_nothing(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a"))
    with pytest.raises(DuplicateTaskError, match="'a' already exists"):
        store.enqueue(TOPIC, new("z", "a"))
    assert counts(store)["input"] == 1
    assert not store.client.exists(store.keys(TOPIC).task("z"))


def test_ack_deletes_and_counts(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a"))
    _, [row] = store.claim(TOPIC, 1, 30, "m1")
    assert store.ack(TOPIC, "a", row.token) is True
    c = counts(store)
    assert (c["work"], c["completed"]) == (0, 1)
    assert not store.client.exists(store.keys(TOPIC).task("a"))


def test_stale_token_is_fenced(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", retries=1))
    _, [first] = store.claim(TOPIC, 1, 0.05, "m1")
    time.sleep(0.1)
    assert store.reap(TOPIC, 3) == (1, 0)  # lease expired: a worker loss, back in input
    _, [second] = store.claim(TOPIC, 1, 30, "m2")
    assert second.token != first.token
    assert store.ack(TOPIC, "a", first.token) is False  # the late worker is refused
    assert store.fail(TOPIC, "a", first.token, "late", 0) == "fenced"
    assert store.extend(TOPIC, [("a", first.token)], 30) == ["a"]
    assert counts(store)["fenced"] == 2
    assert counts(store)["work"] == 1  # the new attempt stands
    assert store.ack(TOPIC, "a", second.token) is True


def test_fail_retries_with_delay_then_dead_after_num_retries_plus_one(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", retries=1))
    _, [row] = store.claim(TOPIC, 1, 30, "m1")
    assert store.fail(TOPIC, "a", row.token, "boom 1", 0.2) == "retried"
    due_in, rows = store.claim(TOPIC, 1, 30, "m1")
    assert rows == [] and due_in is not None and 0 < due_in <= 0.2  # really waits
    assert counts(store)["scheduled"] == 1
    time.sleep(0.25)
    _, [row] = store.claim(TOPIC, 1, 30, "m1")  # promoted when due
    assert row.attempts == 2
    assert store.fail(TOPIC, "a", row.token, "boom 2\nTraceback...", 0) == "dead"
    c = counts(store)
    assert (c["dead"], c["work"], c["retried"], c["failed"], c["started"]) == (1, 0, 1, 1, 2)
    fields = store.client.hgetall(store.keys(TOPIC).task("a"))
    assert fields["last_error"] == "boom 2\nTraceback..."
    assert float(fields["dead_at"]) >= float(fields["enqueued_at"])
    assert fields["payload"] == '{"n": 1}' and fields["attempts"] == "2"


def test_bury_sends_to_dead_whatever_retries_remain(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", retries=5))
    _, [row] = store.claim(TOPIC, 1, 30, "m1")
    assert store.fail(TOPIC, "a", row.token, "malformed", 0, bury=True) == "dead"


def test_extend_renews_only_valid_leases(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", "b"))
    _, rows = store.claim(TOPIC, 2, 0.2, "m1")
    work = store.keys(TOPIC).work
    first_deadline = max(store.client.zscore(work, r.id) for r in rows)
    assert store.extend(TOPIC, [(r.id, r.token) for r in rows], 30) == []
    assert min(store.client.zscore(work, r.id) for r in rows) > first_deadline + 29
    # Past the first deadline on the Redis clock, well within the renewed one.
    wait_until(lambda: redis_now(store) > first_deadline, 10, what="first deadline passed")
    assert store.reap(TOPIC, 3) == (0, 0)
    assert store.extend(TOPIC, [("a", "999")], 30) == ["a"]


def test_an_expired_lease_is_a_worker_loss_and_the_poison_cap_ends_it(
        store: RedisStore) -> None:
    store.enqueue(TOPIC, new("poison", retries=0))
    for expected in [(1, 0), (1, 0), (0, 1)]:  # max_worker_losses 2: the third loss is fatal
        store.claim(TOPIC, 1, 0.01, "m-killed")
        time.sleep(0.03)
        assert store.reap(TOPIC, 2) == expected
        fields = store.client.hgetall(store.keys(TOPIC).task("poison"))
        assert "lease expired" in fields["last_error"] and "m-killed" in fields["last_error"]
    assert fields["last_error"].startswith("poison: lost its worker 3 times (max_worker_losses 2)")
    assert (fields["losses"], fields["attempts"]) == ("3", "1")  # no retry was spent before
    assert counts(store)["dead"] == 1
    assert store.client.hget(store.keys(TOPIC).stats, "lost") == "3"
    assert store.reap(TOPIC, 2) == (0, 0)  # idempotent


def test_release_returns_to_front_without_counting_an_attempt(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", "b"))
    _, [row] = store.claim(TOPIC, 1, 30, "m1")
    assert store.release(TOPIC, "a", row.token) is True
    assert store.release(TOPIC, "a", row.token) is False
    _, [again] = store.claim(TOPIC, 1, 30, "m1")
    assert again.id == "a" and again.attempts == 1


def test_delayed_enqueue_is_scheduled(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("later", delay_s=60))
    due_in, rows = store.claim(TOPIC, 5, 30, "m1")
    assert rows == [] and due_in is not None and 59 < due_in <= 60
    state = read_queue_state(store.client, "ktq", [TOPIC]).topics[TOPIC]
    assert (state.scheduled, state.scheduled_due, state.oldest_ready_age_s) == (1, 0, None)


def test_dead_requeue_and_purge(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", "b"))
    for row in store.claim(TOPIC, 2, 30, "m1")[1]:
        store.fail(TOPIC, row.id, row.token, "boom", 0)
    assert counts(store)["dead"] == 2
    assert store.dead_requeue(TOPIC, ["a", "missing"]) == 1
    _, [row] = store.claim(TOPIC, 1, 30, "m1")
    assert row.id == "a" and row.attempts == 1  # fresh retry budget
    assert store.dead_purge(TOPIC, ["b"]) == 1
    assert not store.client.exists(store.keys(TOPIC).task("b"))
    assert counts(store)["dead"] == 0


def test_claim_skips_ids_whose_task_was_deleted(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", "b"))
    store.client.delete(store.keys(TOPIC).task("a"))
    _, rows = store.claim(TOPIC, 2, 30, "m1")
    assert [r.id for r in rows] == ["b"]


def test_inspect_reports_oldest_ready_age(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a"))
    time.sleep(0.1)
    state = read_queue_state(store.client, "ktq").topics[TOPIC]
    assert state.oldest_ready_age_s is not None and state.oldest_ready_age_s >= 0.09


def test_claim_buries_a_task_with_corrupt_counters_and_keeps_the_others(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("ok1", "bad", "ok2"))
    store.client.hset(store.keys(TOPIC).task("bad"), "attempts", "1.5")
    _, rows = store.claim(TOPIC, 3, 30, "m1")
    assert [r.id for r in rows] == ["ok1", "ok2"]
    c = counts(store)
    assert (c["work"], c["dead"], c["input"], c["failed"]) == (2, 1, 0, 1)
    assert "not an integer" in store.client.hget(store.keys(TOPIC).task("bad"), "last_error")


def test_ack_many_acks_a_batch_and_reports_fenced_ids(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", "b", "c"))
    _, rows = store.claim(TOPIC, 3, 30, "m1")
    leases = [(r.id, r.token) for r in rows]
    leases[1] = ("b", "stale")
    assert store.ack_many(TOPIC, leases) == {"b"}
    c = counts(store)
    assert (c["completed"], c["fenced"], c["work"]) == (2, 1, 1)
