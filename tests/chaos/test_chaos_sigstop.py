"""Scenario 2, SIGSTOP fencing: a frozen worker's late results are refused."""

from __future__ import annotations

import json
import re
import signal
import time
from typing import Any

import pytest
from kubetaskqueue import Manager
from kubetaskqueue.keys import TopicKeys
from ledger import Ledger
from probe import NS, client, leases_of, task_field, topic_state, wait_until
from redis_proc import RedisProc
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

LEASE_TTL_S = 2.0
LEASES = 5


def test_sigstopped_worker_acks_are_fenced(queue_redis: RedisProc, ledger: Ledger,
                                            pool: WorkerPool, figures: dict[str, Any]) -> None:
    r = client(queue_redis.url)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S),
                    KUBETASKQUEUE_NUM_WORKERS=str(LEASES))
    # The frozen worker's run is short; the rescuer's is still running when the frozen
    # worker wakes up and tries to ack, so fencing must protect it. Both runs are attempt
    # 1 (an expired lease is a worker loss, not a counted attempt), so the rescuer's
    # length is written into the payload once the frozen worker has read its own.
    ids = Manager(queue_redis.url).enqueue_many("work", [{"ms": 1000}] * LEASES,
                                                num_retries=3)
    frozen = pool.start(0)
    wait_until(lambda: ledger.count("starts") == LEASES, 30, what="frozen worker holds 5 leases")
    assert len(leases_of(r, "work", frozen.pod + "-")) == LEASES
    frozen.proc.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    for task_id in ids:
        r.hset(TopicKeys(NS, "work").task(task_id), "payload", json.dumps({"ms": 4000}))
    rescuer = pool.start(1)
    wait_until(lambda: len(leases_of(r, "work", rescuer.pod + "-")) == LEASES, 20,
               what="rescuer reclaims all 5")
    time.sleep(max(0.0, stopped_at + 2 * LEASE_TTL_S - time.monotonic()))
    frozen.proc.send_signal(signal.SIGCONT)

    wait_until(lambda: pool.fenced_in_logs(frozen) == LEASES, 20, what="5 refused late acks")
    # The late acks changed nothing: the rescuer still holds every lease.
    assert len(leases_of(r, "work", rescuer.pod + "-")) == LEASES
    assert topic_state(r, "work")["completed"] == 0
    wait_until(lambda: topic_state(r, "work")["completed"] == LEASES, 20,
               what="rescuer's acks stand")
    state = topic_state(r, "work")
    starts = ledger.starts()
    figures.update(tasks=LEASES, sigstop_s=2 * LEASE_TTL_S, fenced=state["fenced"],
                   fenced_in_frozen_log=pool.fenced_in_logs(frozen), duplicates=LEASES)
    print(figures)
    assert state["fenced"] == LEASES
    # Each frozen lease expired once: a worker loss that spent no retry.
    assert (state["lost"], state["retried"]) == (LEASES, 0)
    assert (state.input, state.scheduled, state.work, state.dead) == (0, 0, 0, 0)
    assert sorted((e.task_id, e.attempt, e.pid) for e in starts) == sorted(
        [(i, 1, frozen.pid) for i in ids] + [(i, 1, rescuer.pid) for i in ids])
    finished = {(e.task_id, e.pid) for e in ledger.finishes()}
    assert finished == {(i, p) for i in ids for p in (frozen.pid, rescuer.pid)}
    assert all(task_field(r, "work", i, "id") is None for i in ids)  # acked and gone
    # It notices either way: the heartbeat after SIGCONT, or the refused ack if the
    # task finishes first (whichever thread the scheduler runs first).
    assert "lost the lease" in frozen.log() or "lease was taken over" in frozen.log()
    # And it says why: its heartbeat ran about as late as it was stopped.
    late = [float(x) for x in re.findall(r"the heartbeat ran ([\d.]+)s late", frozen.log())]
    assert late and max(late) >= 2 * LEASE_TTL_S - LEASE_TTL_S / 3 - 0.5, late
    assert pool.fenced_in_logs(rescuer) == 0
    assert pool.terminate_all() == {frozen.pid: 0, rescuer.pid: 0}
