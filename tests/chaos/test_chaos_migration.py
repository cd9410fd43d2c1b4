"""Scenario 8d, a Redis Cluster reshard caught half-way: the task hashes of a topic
have already moved to the new master while its queue keys have not (`redis-cli
--cluster reshard` moves keys in whatever order the slot lists them). Every
script that runs against the old master then must refuse before writing
anything, and once the slot has moved every task is still in exactly one queue,
with its hash."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from cluster_proc import ClusterSet, start_cluster
from kubetaskqueue import Manager
from kubetaskqueue.metrics import WorkerMetrics
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.runner import RedisHealth
from kubetaskqueue.schedule_rules import make_rule
from kubetaskqueue.schedules import Schedule, Scheduler
from kubetaskqueue.store import RedisStore
from probe import wait_until
from redis_proc import RedisFleet

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TOPIC = "mig"
LEASE_S = 0.2


def where(client: redis.Redis | redis.RedisCluster, store: RedisStore,
          ids: list[str]) -> dict[str, list[str]]:
    """Each id -> the queues that hold it (exactly one, for a task that is not lost)."""
    k = store.keys(TOPIC)

    def members(read: Callable[[], list[str]]) -> set[str]:
        try:
            return set(read())
        except redis.exceptions.AskError:  # a migrating slot's source no longer has the key
            return set()
    queues = {"input": members(lambda: client.zrange(k.input, 0, -1)),
              "scheduled": members(lambda: client.zrange(k.scheduled, 0, -1)),
              "work": members(lambda: client.zrange(k.work, 0, -1)),
              "dead": members(lambda: client.lrange(k.dead, 0, -1))}
    return {i: [name for name, found in queues.items() if i in found] for i in ids}


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def set_up_every_state(store: RedisStore, on_source: redis.Redis) -> dict[str, list[str]]:
    """Tasks in input, due in scheduled, dead, and in work with an expired lease."""
    ids = [f"t{i:02d}" for i in range(16)]
    store.enqueue(TOPIC, NewTasks(ids[:12], ["{}"] * 12))
    store.enqueue(TOPIC, NewTasks(ids[12:], ["{}"] * 4, delay_s=0.05))
    _, claimed = store.claim(TOPIC, 6, LEASE_S, "gone-manager")
    for c in claimed[:3]:
        assert store.fail(TOPIC, c.id, c.token, "boom", 0.0) == "dead"
    expired = [c.id for c in claimed[3:]]
    wait_until(lambda: all(score < redis_now(on_source) for _, score in on_source.zrange(
        store.keys(TOPIC).work, 0, -1, withscores=True)), 10, 0.02, what="leases expired")
    return {"all": ids, "dead": [c.id for c in claimed[:3]], "expired": expired,
            "input": ids[6:12], "scheduled": ids[12:]}


def test_a_half_moved_slot_stops_claim_reap_and_requeue_before_they_write(
        fleet: RedisFleet) -> None:
    cluster: ClusterSet = start_cluster(fleet, masters=2)
    source = cluster.owner(TOPIC)
    target = next(n for n in cluster.masters() if n.port != source.port)
    manager = Manager(cluster.url)
    store = manager.store
    k = store.keys(TOPIC)
    on_source = source.client()
    tasks = set_up_every_state(store, on_source)

    migration = cluster.begin_migration(TOPIC, target)
    # Only task hashes move: every one the three scripts below would touch.
    migration.move([k.task(i) for i in tasks["all"]])
    before = where(on_source, store, tasks["all"])
    assert all(len(queues) == 1 for queues in before.values()), before

    for attempt in (lambda: store.claim(TOPIC, 10, 30.0, "live-manager"),
                    lambda: store.reap(TOPIC, 3),
                    lambda: store.dead_requeue(TOPIC, tasks["dead"]),
                    lambda: store.ack_many(TOPIC, [(i, "1") for i in tasks["expired"]]),
                    lambda: store.dead_purge(TOPIC, tasks["dead"])):
        with pytest.raises(redis.RedisError) as refused:
            attempt()
        assert "TRYAGAIN" in str(refused.value) or "TTL exhausted" in str(refused.value), (
            refused.value)
        # Nothing moved between queues on the old master.
        assert where(on_source, store, tasks["all"]) == before

    migration.finish()
    wait_until(lambda: cluster.owner(TOPIC).port == target.port, 10, 0.05,
               what="slot served by the target")
    after = where(cluster.client, store, tasks["all"])
    assert after == before
    assert all(cluster.client.exists(k.task(i)) for i in tasks["all"])

    # And the same scripts work on the new master.
    assert store.reap(TOPIC, 3) == (len(tasks["expired"]), 0)
    assert store.dead_requeue(TOPIC, tasks["dead"]) == len(tasks["dead"])
    _, claimed = store.claim(TOPIC, 100, 30.0, "live-manager")
    assert sorted(c.id for c in claimed) == sorted(
        tasks["input"] + tasks["scheduled"] + tasks["expired"] + tasks["dead"])


def test_a_half_moved_schedule_record_stops_its_fire_before_it_writes(
        fleet: RedisFleet) -> None:
    """fire_schedule.lua reads the schedule's record (not in KEYS) like a task hash."""
    cluster: ClusterSet = start_cluster(fleet, masters=2)
    source = cluster.owner(TOPIC)
    target = next(n for n in cluster.masters() if n.port != source.port)
    store = Manager(cluster.url).store
    k = store.keys(TOPIC)
    beat = Schedule("mig-beat", TOPIC, "{}", make_rule(every_s=0.2))
    scheduler = Scheduler(store, [beat], "m", WorkerMetrics(), RedisHealth("test"), 30.0)
    last_fire = lambda: cluster.client.hget(k.schedule("mig-beat"), "last_fire")  # noqa: E731
    wait_until(lambda: scheduler.tick() and last_fire(), 10, 0.05, what="a first fire")
    on_source = source.client()
    fired = set(on_source.keys(k.task_prefix + "*"))
    record = on_source.hgetall(k.schedule("mig-beat"))

    migration = cluster.begin_migration(TOPIC, target)
    migration.move([k.schedule("mig-beat")])  # the record moves first, the queues stay
    time.sleep(0.25)  # the next fire time is due
    with pytest.raises(redis.RedisError) as refused:
        scheduler.tick()
    assert "TRYAGAIN" in str(refused.value) or "TTL exhausted" in str(refused.value)
    assert set(on_source.keys(k.task_prefix + "*")) == fired  # nothing enqueued on the old master

    migration.finish()
    wait_until(lambda: cluster.owner(TOPIC).port == target.port, 10, 0.05,
               what="slot served by the target")
    assert cluster.client.hgetall(k.schedule("mig-beat")) == record
    wait_until(lambda: scheduler.tick() and last_fire() != record["last_fire"], 10, 0.05,
               what="fires again on the new master")
    assert set(target.client().keys(k.task_prefix + "*")) > fired
