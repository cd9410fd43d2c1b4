"""Dead-queue retention: dead_max_tasks and dead_ttl_s drop the oldest dead tasks (and
their hashes) inside the scripts that bury, and in the reaper's sweep; counted as
dead_dropped. On the embedded store and a real redis-server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import wait_until
from kubetaskqueue import Manager, Task, defaults
from kubetaskqueue.cli import cli
from kubetaskqueue.connection import connect
from kubetaskqueue.events import read_stream
from kubetaskqueue.metrics import QueueStateCollector
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.queue_state import read_queue_state
from kubetaskqueue.store import RedisStore
from prometheus_client import CollectorRegistry

TOPIC = "jobs"


def store_for(url: str, **retention: Any) -> RedisStore:
    return RedisStore(connect(url), "ktq", **retention)


def bury(store: RedisStore, ids: list[str]) -> None:
    """Enqueue, claim and fail each task once (no retries): dead, in this order."""
    store.enqueue(TOPIC, NewTasks(ids, ['{"n": 1}'] * len(ids)))
    _, rows = store.claim(TOPIC, len(ids), 30, "m1")
    for row in rows:
        assert store.fail(TOPIC, row.id, row.token, f"boom {row.id}", 0) == "dead"


def dead_ids(store: RedisStore) -> list[str]:
    return list(store.client.lrange(store.keys(TOPIC).dead, 0, -1))


def counter(store: RedisStore, name: str) -> int:
    return int(read_queue_state(store.client, "ktq", [TOPIC]).topics[TOPIC].counters.get(name, 0))


def redis_now(store: RedisStore) -> float:
    secs, micros = store.client.time()
    return float(secs + micros / 1e6)


def test_a_death_over_the_cap_drops_the_oldest_and_its_hash(any_url: str) -> None:
    store = store_for(any_url, dead_max_tasks=3)
    bury(store, ["a", "b", "c", "d", "e"])
    assert dead_ids(store) == ["e", "d", "c"]  # newest first: a and b went
    assert not store.client.exists(store.keys(TOPIC).task("a"), store.keys(TOPIC).task("b"))
    assert store.client.hget(store.keys(TOPIC).task("c"), "last_error") == "boom c"
    assert counter(store, "dead_dropped") == 2
    assert counter(store, "failed") == 5  # every death counts, dropped or not


def test_zero_means_no_cap_and_no_age(any_url: str) -> None:
    store = store_for(any_url, dead_max_tasks=0, dead_ttl_s=0)
    bury(store, [f"t{i}" for i in range(12)])
    assert len(dead_ids(store)) == 12
    assert store.reap(TOPIC, 3) == (0, 0)  # the sweep finds nothing to drop either
    assert len(dead_ids(store)) == 12 and counter(store, "dead_dropped") == 0


def test_dead_past_the_age_go_on_the_next_death_a_few_at_a_time(any_url: str) -> None:
    store = store_for(any_url, dead_max_tasks=0, dead_ttl_s=0.3)
    old = [f"old{i}" for i in range(6)]
    bury(store, old)
    born = redis_now(store)
    wait_until(lambda: redis_now(store) > born + 0.35, what="the age passed on the Redis clock")
    bury(store, ["new"])
    # One death drops at most DEAD_TRIM_PER_DEATH of them, oldest first.
    assert defaults.DEAD_TRIM_PER_DEATH == 4
    assert dead_ids(store) == ["new", "old5", "old4"]
    assert counter(store, "dead_dropped") == 4
    # The reaper's sweep takes the rest (the first reap of a topic sweeps at once).
    assert store.reap(TOPIC, 3) == (0, 0)
    assert dead_ids(store) == ["new"]
    assert counter(store, "dead_dropped") == 6
    assert store.client.exists(store.keys(TOPIC).task("new"))


def test_sweep_applies_a_lowered_cap_and_runs_once_a_minute(any_url: str) -> None:
    bury(store_for(any_url, dead_max_tasks=0), [f"t{i}" for i in range(10)])
    store = store_for(any_url, dead_max_tasks=3)
    store.reap(TOPIC, 3)
    assert dead_ids(store) == ["t9", "t8", "t7"]
    assert counter(store, "dead_dropped") == 7
    # Lower the cap again: the next reap within the sweep interval does not sweep ...
    tighter = store_for(any_url, dead_max_tasks=1)
    tighter._next_dead_sweep[TOPIC] = time.monotonic() + defaults.DEAD_SWEEP_INTERVAL_S
    tighter.reap(TOPIC, 3)
    assert len(dead_ids(store)) == 3
    # ... one after it does.
    tighter._next_dead_sweep[TOPIC] = 0.0
    tighter.reap(TOPIC, 3)
    assert dead_ids(store) == ["t9"]


def test_poison_found_by_the_reaper_keeps_the_cap(any_url: str) -> None:
    store = store_for(any_url, dead_max_tasks=2)
    bury(store, ["a", "b"])
    store._next_dead_sweep[TOPIC] = time.monotonic() + 3600  # no sweep: only the death trims
    store.enqueue(TOPIC, NewTasks(["p"], ["{}"]))
    store.claim(TOPIC, 1, 0.05, "m1")
    start = redis_now(store)
    wait_until(lambda: redis_now(store) > start + 0.1, what="the lease expired")
    assert store.reap(TOPIC, 0) == (0, 1)  # max_worker_losses 0: the first loss is poison
    assert dead_ids(store) == ["p", "b"]
    assert counter(store, "dead_dropped") == 1


def test_requeued_tasks_are_not_dropped_and_leftover_ids_go(any_url: str) -> None:
    store = store_for(any_url, dead_max_tasks=2)
    bury(store, ["a", "b"])
    assert store.dead_requeue(TOPIC, ["a"]) == 1
    _, [row] = store.claim(TOPIC, 1, 30, "m1")
    assert row.id == "a"
    store.client.lpush(store.keys(TOPIC).dead, "ghost")  # an id without a hash
    bury(store, ["c"])
    # b, the oldest, went over the cap; the ghost behind it is a leftover: it goes too.
    assert dead_ids(store) == ["c"]
    assert counter(store, "dead_dropped") == 2
    assert store.ack(TOPIC, "a", row.token)  # the requeued task was left alone


def test_dropping_emits_events(any_url: str) -> None:
    store = store_for(any_url, dead_max_tasks=1)
    bury(store, ["a", "b"])
    dropped = [e for e in read_stream(store.client, store.keys(TOPIC).events)
               if e.type == "TASK_DROPPED"]
    assert [(e.task_id, e.detail) for e in dropped] == [("a", "over dead_max_tasks 1")]


def test_manager_settings_stats_and_exporter(any_url: str, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.setenv("KUBETASKQUEUE_DEAD_MAX_TASKS", "2")
    monkeypatch.setenv("KUBETASKQUEUE_DEAD_TTL_S", "86400")
    m = Manager(any_url, poll_interval_s=0.05)
    assert (m.settings.dead_max_tasks, m.settings.dead_ttl_s) == (2, 86400.0)
    assert Manager(any_url, dead_max_tasks=7, dead_ttl_s=0).settings.dead_max_tasks == 7

    @m.processor(TOPIC)
    def fail(task: Task) -> None:
        raise RuntimeError("no")

    m.enqueue_many(TOPIC, list(range(5)))
    m.run(burst=True)
    row = m.stats()["topics"][TOPIC]
    assert (row["dead"], row["failed"], row["dead_dropped"]) == (2, 5, 3)
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(m.store.client, "kubetaskqueue"))
    assert registry.get_sample_value("kubetaskqueue_queue_events_total",
                                     {"topic": TOPIC, "event": "dead_dropped"}) == 3
    code = CliRunner().invoke(cli, ["--redis-url", any_url, "stats", "--json"]).exit_code
    assert code == 0


def test_bad_settings_are_refused(any_url: str) -> None:
    with pytest.raises(Exception, match="dead_max_tasks"):
        Manager(any_url, dead_max_tasks=-1)
    with pytest.raises(Exception, match="dead_ttl_s"):
        Manager(any_url, dead_ttl_s=float("inf"))


def test_sweep_trims_deaths_that_did_not_trim_themselves(any_url: str) -> None:
    """A malformed task goes dead inside the claim script, which does not trim."""
    store = store_for(any_url, dead_max_tasks=1)
    bury(store, ["a"])
    store.enqueue(TOPIC, NewTasks(["m"], ["{}"]))
    store.client.hset(store.keys(TOPIC).task("m"), "token", "not a number")
    assert store.claim(TOPIC, 1, 30, "m1")[1] == []
    assert dead_ids(store) == ["m", "a"]
    store.reap(TOPIC, 3)
    assert dead_ids(store) == ["m"]
