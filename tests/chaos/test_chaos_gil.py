"""Scenario 3, GIL-heavy tasks: computing for 3 x lease TTL must not lose the lease."""

from __future__ import annotations

from typing import Any

import pytest
from chaos_env import FULL
from kubetaskqueue import Manager
from ledger import Ledger
from probe import client, topic_state, wait_until
from redis_proc import RedisProc
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

LEASE_TTL_S = 2.0


def run_gil_task(topic: str, queue_redis: RedisProc, ledger: Ledger, pool: WorkerPool,
                 figures: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """One 3 x TTL task on a worker, a second idle worker that would reap its lease."""
    r = client(queue_redis.url)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S), KUBETASKQUEUE_NUM_WORKERS="2")
    busy, idle = pool.start(0), pool.start(1)
    pool.wait_started(idle)
    pool.wait_started(busy)
    Manager(queue_redis.url).enqueue(topic, {"s": 3 * LEASE_TTL_S}, num_retries=3)
    # A lease that expires is a worker loss (counted in `lost`, not `retried`).
    wait_until(lambda: topic_state(r, topic)["completed"] == 1
               or topic_state(r, topic)["lost"] > 0, 60, 0.1, what="task completed or lease lost")
    counters = topic_state(r, topic).counters
    assert set(pool.terminate_all().values()) == {0}
    starts = ledger.count("starts")
    figures.update(tasks=1, task_s=3 * LEASE_TTL_S, lease_ttl_s=LEASE_TTL_S, starts=starts,
                   retried=counters.get("retried", 0), lost=counters.get("lost", 0),
                   fenced=counters.get("fenced", 0))
    print(figures)
    return starts, counters


def test_pure_python_loop_keeps_its_lease(queue_redis: RedisProc, ledger: Ledger,
                                          pool: WorkerPool, figures: dict[str, Any]) -> None:
    starts, counters = run_gil_task("gil_py", queue_redis, ledger, pool, figures)
    assert starts == 1
    assert (counters.get("retried", 0), counters.get("lost", 0), counters.get("fenced", 0)) == (
        0, 0, 0)
    assert all("lost the lease" not in w.log() for w in pool.workers)


@pytest.mark.skipif(not FULL, reason=(
    "KUBETASKQUEUE_CHAOS=full only: it documents a limit (16 s), and CI's chaos run must "
    "stay near 3 minutes"))
@pytest.mark.xfail(strict=True, reason=(
    "design limit of isolation='thread': a C call that never releases the GIL (here sum() "
    "over a huge range) stops the heartbeat thread, so the lease expires and the task runs "
    "twice; the documented fix is registering the topic with isolation='process' "
    "(test_c_call_in_an_isolated_process_keeps_its_lease)"))
def test_c_call_holding_the_gil_keeps_its_lease(queue_redis: RedisProc, ledger: Ledger,
                                                pool: WorkerPool,
                                                figures: dict[str, Any]) -> None:
    starts, counters = run_gil_task("gil_c", queue_redis, ledger, pool, figures)
    assert starts == 1
    assert (counters.get("retried", 0), counters.get("lost", 0), counters.get("fenced", 0)) == (
        0, 0, 0)


def test_c_call_in_an_isolated_process_keeps_its_lease(queue_redis: RedisProc, ledger: Ledger,
                                                       pool: WorkerPool,
                                                       figures: dict[str, Any]) -> None:
    starts, counters = run_gil_task("gil_c_process", queue_redis, ledger, pool, figures)
    assert starts == 1
    assert (counters.get("retried", 0), counters.get("lost", 0), counters.get("fenced", 0)) == (
        0, 0, 0)
    assert counters.get("completed", 0) == 1
    assert all("lost the lease" not in w.log() for w in pool.workers)
