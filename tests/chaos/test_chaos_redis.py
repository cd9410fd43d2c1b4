"""Scenario 4, Redis restart and outage: kill -9 and restart the queue's Redis (AOF,
fsync always), then freeze it with SIGSTOP; workers ride it out, nothing is lost."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from chaos_env import OUTAGE_TASKS, REDIS_PAUSE_S
from helpers import free_port
from kubetaskqueue import Manager
from ledger import Ledger, duplicates
from probe import client, topic_state, wait_until
from readyz import ReadyzWatch, worker_serves_http
from redis_proc import RedisProc
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

LEASE_TTL_S = 5.0
REDIS_DOWN_S = 2.0  # from the kill -9 to the restart
WORKERS, SLOTS = 2, 8


def start_watched_workers(pool: WorkerPool) -> list[ReadyzWatch]:
    watches = []
    for slot in range(WORKERS):
        port = free_port()
        worker = pool.start(slot, kubetaskqueue_http_port=port)
        pool.wait_started(worker)
        if worker_serves_http():
            watch = ReadyzWatch(port)
            watch.start()
            watches.append(watch)
    return watches


def test_redis_killed_and_frozen_loses_nothing(queue_redis: RedisProc, ledger: Ledger,
                                               pool: WorkerPool,
                                               figures: dict[str, Any]) -> None:
    r = client(queue_redis.url)
    rng = random.Random(4)
    ids = Manager(queue_redis.url).enqueue_many(
        "work", [{"ms": rng.randint(20, 120)} for _ in range(OUTAGE_TASKS)], num_retries=20)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S),
                    KUBETASKQUEUE_NUM_WORKERS=str(SLOTS))
    watches = start_watched_workers(pool)
    workers = list(pool.workers)
    try:
        wait_until(lambda: ledger.count("finishes") >= OUTAGE_TASKS // 5, 60, what="run going")
        queue_redis.kill()  # SIGKILL mid-run; AOF with fsync always keeps every ack
        killed_at = time.monotonic()
        wait_until(lambda: all(w.log().count("is unreachable") == 1 for w in workers), 30,
                   what="every worker saw Redis go")
        time.sleep(max(0.0, killed_at + REDIS_DOWN_S - time.monotonic()))  # the outage itself
        queue_redis.start()
        down_s = time.monotonic() - killed_at
        # Each worker notices the restart before the freeze (it retries within a beat).
        wait_until(lambda: all(w.log().count("is reachable again") == 1 for w in workers), 30,
                   what="every worker reconnected")
        wait_until(lambda: ledger.count("finishes") >= OUTAGE_TASKS // 2, 60, what="resumed")
        queue_redis.pause()  # SIGSTOP: connections hang instead of failing
        paused_at = time.monotonic()
        wait_until(lambda: all(w.log().count("is unreachable") == 2 for w in workers),
                   REDIS_PAUSE_S + 30, what="every worker saw Redis hang")
        time.sleep(max(0.0, paused_at + REDIS_PAUSE_S - time.monotonic()))  # the outage itself
        queue_redis.resume()
        pause_s = time.monotonic() - paused_at
        wait_until(lambda: topic_state(r, "work")["completed"] == OUTAGE_TASKS, 120, 0.2,
                   what="every task completed")
        # The others may finish the work before a worker's own next call to the thawed
        # Redis (a beat, or its blocked wait returning) logs that it is back.
        wait_until(lambda: all(w.log().count("is reachable again") == 2 for w in workers), 30,
                   what="every worker reconnected after the freeze")
        wait_until(lambda: all(w.went_down_and_back_up() for w in watches), 30,
                   what="every /readyz ready again")
    finally:
        for watch in watches:
            watch.stop()
    state = topic_state(r, "work")
    counts = ledger.start_counts()
    figures.update(tasks=OUTAGE_TASKS, redis_kills=1, redis_down_s=round(down_s, 1),
                   redis_pause_s=round(pause_s, 1),
                   duplicates=duplicates(counts), fenced=state["fenced"],
                   reaped=state["lost"],
                   readyz=[w.states() for w in watches] or "worker has no HTTP port")
    print(figures)
    assert set(counts) == set(ids) and ledger.finished_ids() == set(ids)
    assert (state.input, state.scheduled, state.work, state.dead) == (0, 0, 0, 0)
    # A lease that expired in an outage is a worker loss (`lost`): no retry is spent.
    assert state["retried"] == 0
    # The same processes rode out both outages; each logged one down and one up per outage.
    assert pool.workers == workers and all(w.alive() for w in workers)
    for w in workers:
        log = w.log()
        assert log.count("is unreachable") == log.count("is reachable again") == 2, w.pod
    # Redis' clock ran on while frozen, so in-flight leases could expire: a re-run is only
    # possible for a task in flight at one of the two outages.
    assert duplicates(counts) <= 2 * WORKERS * SLOTS
    assert all(w.went_down_and_back_up() for w in watches), [w.states() for w in watches]
    assert set(pool.terminate_all().values()) == {0}


def test_redis_without_persistence_loses_state_workers_recover(
        fleet: Any, ledger: Ledger, pool: WorkerPool, figures: dict[str, Any]) -> None:
    """Documents the loss: a restart of a Redis without AOF/RDB forgets every task."""
    volatile = fleet.start("volatile", appendonly=False)
    pool.redis_url = volatile.url
    r = client(volatile.url)
    producer = Manager(volatile.url)
    old = producer.enqueue_many("work", [{"ms": 1500}] * 40, num_retries=3)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S), KUBETASKQUEUE_NUM_WORKERS="4")
    worker = pool.start(0)
    wait_until(lambda: ledger.count("starts") >= 4, 30, what="first tasks running")
    in_flight = ledger.count("starts") - ledger.count("finishes")
    started_before = {e.task_id for e in ledger.starts()}
    volatile.kill()
    volatile.start()  # empty: no AOF, no RDB
    assert r.dbsize() == 0
    new = producer.enqueue_many("work", [{"ms": 10}] * 5)
    wait_until(lambda: topic_state(r, "work")["completed"] == len(new), 30,
               what="new tasks completed")
    started_after = {e.task_id for e in ledger.starts()} - started_before
    fenced = topic_state(r, "work")["fenced"]
    figures.update(tasks=len(old), in_flight_at_crash=in_flight,
                   never_started_lost=len(set(old) - started_before),
                   fenced_after_restart=fenced)
    print(figures)
    assert worker.alive() and pool.workers == [worker]
    assert started_after == set(new)  # no old task comes back: they are gone for good
    assert not set(old) & {k.rsplit(":", 1)[-1] for k in r.keys("kubetaskqueue:*:task:*")}
    # The in-flight attempts finish, but their acks find no lease: refused as fenced.
    wait_until(lambda: topic_state(r, "work")["fenced"] >= in_flight, 15,
               what="in-flight acks fenced")
    assert set(pool.terminate_all().values()) == {0}
