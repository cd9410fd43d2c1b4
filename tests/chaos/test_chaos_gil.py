"""Scenario 3, GIL-heavy tasks: computing for 3 x lease TTL must not lose the lease."""

from __future__ import annotations

from typing import Any

import pytest
from kubetaskqueue import Manager
from ledger import Ledger
from probe import client, topic_state, wait_until
from redis_proc import RedisProc
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

LEASE_TTL_S = 2.0


def run_gil_task(topic: str, queue_redis: RedisProc, ledger: Ledger,
                 pool: WorkerPool) -> tuple[int, dict[str, int]]:
    """One 3 x TTL task on a worker, a second idle worker that would reap its lease."""
    r = client(queue_redis.url)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S), KUBETASKQUEUE_NUM_WORKERS="2")
    busy, idle = pool.start(0), pool.start(1)
    pool.wait_started(idle)
    pool.wait_started(busy)
    Manager(queue_redis.url).enqueue(topic, {"s": 3 * LEASE_TTL_S}, num_retries=3)
    wait_until(lambda: topic_state(r, topic)["completed"] == 1
               or topic_state(r, topic)["retried"] > 0, 60, 0.1, what="task completed or retried")
    state = topic_state(r, topic)
    assert set(pool.terminate_all().values()) == {0}
    return ledger.count("starts"), state.counters


def test_pure_python_loop_keeps_its_lease(queue_redis: RedisProc, ledger: Ledger,
                                          pool: WorkerPool, figures: dict[str, Any]) -> None:
    starts, counters = run_gil_task("gil_py", queue_redis, ledger, pool)
    figures.update(tasks=1, task_s=3 * LEASE_TTL_S, lease_ttl_s=LEASE_TTL_S, starts=starts,
                   retried=counters.get("retried", 0), fenced=counters.get("fenced", 0))
    print(figures)
    assert starts == 1
    assert (counters.get("retried", 0), counters.get("fenced", 0)) == (0, 0)
    assert all("lost the lease" not in w.log() for w in pool.workers)


@pytest.mark.xfail(strict=True, reason=(
    "design limit: a C call that never releases the GIL (here sum() over a huge range) "
    "stops the heartbeat thread, so the lease expires and the task runs twice; the fix "
    "is renewing leases outside the task's interpreter (see tests/chaos/README.md)"))
def test_c_call_holding_the_gil_keeps_its_lease(queue_redis: RedisProc, ledger: Ledger,
                                                pool: WorkerPool,
                                                figures: dict[str, Any]) -> None:
    starts, counters = run_gil_task("gil_c", queue_redis, ledger, pool)
    figures.update(tasks=1, task_s=3 * LEASE_TTL_S, lease_ttl_s=LEASE_TTL_S, starts=starts,
                   retried=counters.get("retried", 0), fenced=counters.get("fenced", 0))
    print(figures)
    assert starts == 1
    assert (counters.get("retried", 0), counters.get("fenced", 0)) == (0, 0)
