"""Task priorities: higher runs first, FIFO within one priority, kept through every move
back to input (retry, worker loss, release, dead requeue); bounds checked."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.cli import cli
from kubetaskqueue.connection import connect
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.queue_state import read_queue_state
from kubetaskqueue.store import RedisStore

TOPIC = "jobs"


@pytest.fixture
def store(any_url: str) -> RedisStore:
    return RedisStore(connect(any_url))


def new(*ids: str, priority: int = 0, delay_s: float = 0.0) -> NewTasks:
    return NewTasks(list(ids), ["{}"] * len(ids), 3, None, delay_s, priority=priority)


def enqueue(store: RedisStore, *batches: NewTasks) -> None:
    """One call per batch: the tasks of a call share their priority and delay."""
    for batch in batches:
        store.enqueue(TOPIC, batch)


def claim_ids(store: RedisStore, n: int = 100, ttl_s: float = 30.0) -> list[str]:
    _, rows = store.claim(TOPIC, n, ttl_s, "w-1-aaaaaaaa")
    return [r.id for r in rows]


def test_priority_9_queued_after_40_priority_0_runs_first_on_one_slot(any_url: str) -> None:
    m = Manager(any_url, num_workers=1, poll_interval_s=0.1)
    order: list[tuple[int, int]] = []
    m.register(TOPIC, lambda task: order.append((task.priority, task.payload)))
    m.enqueue_many(TOPIC, list(range(40)))  # priority 0, the default
    for i in range(5):
        m.enqueue(TOPIC, 100 + i, priority=9)
    m.start()
    try:
        wait_until(lambda: len(order) == 45, what="45 tasks run")
    finally:
        m.stop()
    assert order == [(9, 100 + i) for i in range(5)] + [(0, i) for i in range(40)]


def test_bands_in_order_fifo_within_each_and_at_the_extremes(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("low-a", "low-b", priority=-5))
    enqueue(store, new("mid-a"), new("top-a", priority=100), new("mid-b"),
            new("bottom", priority=-100))
    enqueue(store, new("top-b", priority=100), new("high", priority=3))
    assert claim_ids(store, 3) == ["top-a", "top-b", "high"]
    store.enqueue(TOPIC, new("top-c", priority=100))  # joins behind nobody: its band is empty again
    assert claim_ids(store) == ["top-c", "mid-a", "mid-b", "low-a", "low-b", "bottom"]


def test_a_claim_merges_due_scheduled_tasks_by_priority(store: RedisStore) -> None:
    enqueue(store, new("ready-0"), new("ready-1", priority=1))
    enqueue(store, new("due-5", priority=5, delay_s=0.01), new("due-0", delay_s=0.01),
            new("later", priority=9, delay_s=3600))
    time.sleep(0.02)  # a Redis-clock due time; the claim reads it, no state is assumed
    assert claim_ids(store, 2) == ["due-5", "ready-1"]
    assert claim_ids(store) == ["ready-0", "due-0"]  # promoted behind the older priority 0


@pytest.mark.parametrize("priority", [101, -101, 1.5, True, "1", None])
def test_priority_out_of_bounds_or_not_an_int_is_refused(any_url: str, priority: Any) -> None:
    m = Manager(any_url)
    with pytest.raises(ValueError, match=r"priority must be an int from -100 to 100 \(higher"):
        m.enqueue(TOPIC, {}, priority=priority)
    with pytest.raises(ValueError, match="priority must be an int"):
        m.enqueue_many(TOPIC, [1, 2], priority=priority)
    assert read_queue_state(m.store.client, topics=[TOPIC]).topics[TOPIC].input == 0


def test_a_retried_task_keeps_its_priority(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("a", priority=7))
    _, [row] = store.claim(TOPIC, 1, 30, "w-1-aaaaaaaa")
    assert row.priority == "7"
    enqueue(store, new("b"), new("c", priority=7))
    assert store.fail(TOPIC, "a", row.token, "boom", 0.0) == "retried"
    assert claim_ids(store, 1) == ["c"]  # a retry joins the back of its priority
    _, [again] = store.claim(TOPIC, 1, 30, "w-1-aaaaaaaa")
    assert (again.id, again.priority, again.attempts) == ("a", "7", 2)
    # Retried after a backoff: through scheduled, and still ahead of priority 0.
    assert store.fail(TOPIC, "a", again.token, "boom", 0.01) == "retried"
    wait_until(lambda: read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC].scheduled_due,
               what="the retry due")
    assert claim_ids(store) == ["a", "b"]


def test_a_lost_or_released_task_goes_to_the_front_of_its_priority(store: RedisStore) -> None:
    enqueue(store, new("lost", "released", "next", priority=2), new("zero"))
    _, rows = store.claim(TOPIC, 2, 0.05, "w-1-aaaaaaaa")
    assert [r.id for r in rows] == ["lost", "released"]
    assert store.release(TOPIC, "released", rows[1].token)
    store.enqueue(TOPIC, new("top", priority=9))
    wait_until(lambda: store.reap(TOPIC, 3) == (1, 0), what="the lease of 'lost' reaped")
    assert claim_ids(store) == ["top", "lost", "released", "next", "zero"]


def test_dead_requeue_keeps_the_priority(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("doomed", priority=4))
    _, [row] = store.claim(TOPIC, 1, 30, "w-1-aaaaaaaa")
    assert store.fail(TOPIC, "doomed", row.token, "boom", 0.0, bury=True) == "dead"
    enqueue(store, new("plain"), new("four", priority=4))
    assert store.dead_requeue(TOPIC, ["doomed"]) == 1
    assert claim_ids(store) == ["four", "doomed", "plain"]


def test_ids_an_older_version_left_in_the_input_list_are_claimed(store: RedisStore) -> None:
    """A rolling upgrade: old producers and workers still RPUSH/LPUSH the list input was."""
    k = store.keys(TOPIC)
    for task_id, priority in (("old-a", None), ("old-b", "6")):
        fields = {"id": task_id, "topic": TOPIC, "payload": "{}", "num_retries": 0,
                  "attempts": 0, "token": 0, "ready_at": 1.0, "enqueued_at": 1.0}
        store.client.hset(k.task(task_id), mapping=fields | ({"priority": priority}
                                                             if priority else {}))
        store.client.rpush(k.legacy_input, task_id)
    store.client.rpush(k.legacy_input, "purged-meanwhile")  # an id without a hash: dropped
    store.enqueue(TOPIC, new("new-a"))
    state = read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC]
    assert state.input == 4
    assert state.oldest_ready_age_s is not None and state.oldest_ready_age_s > 1e9
    assert claim_ids(store) == ["old-b", "new-a", "old-a"]
    assert store.client.llen(k.legacy_input) == 0


def test_oldest_ready_age_looks_past_the_highest_priority(store: RedisStore) -> None:
    store.enqueue(TOPIC, new("waiting", priority=-3))
    time.sleep(0.2)
    enqueue(store, new("fresh", priority=50), new("fresh-0"))
    age = read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC].oldest_ready_age_s
    assert age is not None and age >= 0.2


def test_stop_releases_to_the_front_of_the_priority(any_url: str) -> None:
    m = Manager(any_url, num_workers=1, poll_interval_s=0.1)
    started, gate = threading.Event(), threading.Event()

    @m.processor(TOPIC)
    def work(task: Task) -> None:
        started.set()
        gate.wait(5)

    m.enqueue(TOPIC, "first", priority=1)
    m.start()
    assert started.wait(5)
    m.enqueue(TOPIC, "second", priority=1)
    m.stop(timeout_s=0.1)
    gate.set()
    _, rows = m.store.claim(TOPIC, 2, 30, "w-2-bbbbbbbb")
    assert [r.payload for r in rows] == ['"first"', '"second"']


def test_cli_enqueue_takes_a_priority(redis_url: str, tmp_path: Any) -> None:
    any_url = redis_url  # the CLI refuses memory:// for enqueues
    runner = CliRunner()
    result = runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC, "{}", "--priority",
                                 "101"])
    assert result.exit_code == 2 and "--priority" in result.stderr
    lines = tmp_path / "tasks.jsonl"
    lines.write_text('"late"\n')
    assert runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC, '"plain"']).exit_code == 0
    assert runner.invoke(cli, ["--redis-url", any_url, "enqueue", TOPIC, "--file", str(lines),
                               "--priority", "5"]).exit_code == 0
    _, rows = Manager(any_url).store.claim(TOPIC, 2, 30, "w-1-aaaaaaaa")
    assert [(r.payload, r.priority) for r in rows] == [('"late"', "5"), ('"plain"', "0")]


def test_lookup_and_delete_find_ready_tasks_in_either_input(any_url: str) -> None:
    m = Manager(any_url)
    [new_id] = m.enqueue_many(TOPIC, ["new"], priority=3)
    k = m.store.keys(TOPIC)
    m.store.client.hset(k.task("old"), mapping={"id": "old", "topic": TOPIC, "payload": "{}"})
    m.store.client.rpush(k.legacy_input, "old")  # left by a version before priorities
    for task_id, priority in ((new_id, 3), ("old", 0)):
        info = m.task(TOPIC, task_id)
        assert info is not None and (info.state, info.priority) == ("input", priority)
        assert m.delete(TOPIC, task_id)
        assert m.task(TOPIC, task_id) is None
    assert read_queue_state(m.store.client, topics=[TOPIC]).topics[TOPIC].input == 0
