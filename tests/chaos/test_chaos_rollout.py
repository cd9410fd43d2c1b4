"""Scenario 7, graceful rollout: SIGTERM during 120 s tasks with a 5 s grace."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from chaos_env import ROLLOUT_GRACE_S, ROLLOUT_TASK_S
from kubetaskqueue import Manager
from kubetaskqueue.keys import TopicKeys
from ledger import Ledger
from probe import NS, client, task_field, topic_state, wait_until
from redis_proc import RedisProc
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

LEASE_TTL_S = 15.0
LONG = 4
QUICK = 10


def test_sigterm_releases_and_another_worker_restarts(
        queue_redis: RedisProc, ledger: Ledger, pool: WorkerPool,
        figures: dict[str, Any]) -> None:
    r = client(queue_redis.url)
    producer = Manager(queue_redis.url)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S), KUBETASKQUEUE_NUM_WORKERS="6",
                    KUBETASKQUEUE_SHUTDOWN_GRACE_S=str(ROLLOUT_GRACE_S))
    long_ids = producer.enqueue_many("work", [{"ms": ROLLOUT_TASK_S * 1000}] * LONG)
    old = pool.start(0)
    wait_until(lambda: ledger.count("starts") == LONG, 30, what="old worker runs the long tasks")
    new = pool.start(1)
    pool.wait_started(new)
    pool.wait_started(old)

    deadline_floor = min(float(s) for _, s in r.zrange(TopicKeys(NS, "work").work, 0, -1,
                                                       withscores=True))
    term_wall, term_mono = time.time(), time.monotonic()
    old.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM received" in old.log(), 10, what="old worker saw SIGTERM")
    quick_ids = producer.enqueue_many("work", [{"ms": 50}] * QUICK)  # old has 2 free slots
    assert old.proc.wait(timeout=ROLLOUT_GRACE_S + 10) == 0
    exit_s = time.monotonic() - term_mono
    wait_until(lambda: {e.task_id for e in ledger.starts() if e.pid == new.pid}
               >= set(long_ids) | set(quick_ids), 15, what="new worker restarts released tasks")

    by_id = ledger.starts_by_id()
    restarts = [by_id[i][1].at - term_wall for i in long_ids]
    figures.update(tasks=LONG + QUICK, grace_s=ROLLOUT_GRACE_S, lease_ttl_s=LEASE_TTL_S,
                   old_exit_after_s=round(exit_s, 2),
                   restart_after_sigterm_max_s=round(max(restarts), 2),
                   lease_would_expire_after_s=round(deadline_floor - term_wall, 2),
                   released=old.log().count("released unfinished task"))
    print(figures)
    # Nothing claimed after the signal: the quick tasks all ran on the new worker.
    assert all(e.pid == new.pid for i in quick_ids for e in by_id[i])
    # Each long task: released by the old worker (attempt not counted), restarted once by
    # the new one as attempt 1, before the old lease would have expired.
    assert figures["released"] == LONG
    for task_id in long_ids:
        assert [(e.pid, e.attempt) for e in by_id[task_id]] == [(old.pid, 1), (new.pid, 1)]
        assert by_id[task_id][1].at < deadline_floor
        assert task_field(r, "work", task_id, "attempts") == "1"
    assert ROLLOUT_GRACE_S <= exit_s < ROLLOUT_GRACE_S + 5
    state = topic_state(r, "work")
    # Released, not reaped: no lease expired (`lost`), nothing retried or fenced.
    assert (state["retried"], state["lost"], state["fenced"], state.input, state.dead) == (
        0, 0, 0, 0, 0)
    assert "lease expired" not in new.log()
