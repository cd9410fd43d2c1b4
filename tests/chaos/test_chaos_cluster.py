"""Scenario 8c, Redis Cluster (``redis+cluster://``): topics on three masters with a worker
SIGKILLed; a topic's hash slot resharded to another master mid-run; the master of a busy
topic killed and replaced by its replica."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
from chaos_env import FULL
from cluster_proc import NODE_TIMEOUT_MS, ClusterSet, start_cluster
from kubetaskqueue import Manager
from kubetaskqueue.settings import Settings
from ledger import Ledger, duplicates
from probe import wait_until
from redis_proc import RedisFleet
from workers import Worker, WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

TASKS = 1_200 if FULL else 300
SLOTS = 4
PREFETCH = Settings(num_workers=SLOTS).prefetch_tasks  # what each worker holds beyond its slots
LEASE_TTL_S = 2.0


def start_workers(pool: WorkerPool, cluster: ClusterSet, n: int = 2) -> list[Worker]:
    pool.redis_url = cluster.url
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S),
                    KUBETASKQUEUE_NUM_WORKERS=str(SLOTS))
    return [pool.start(i) for i in range(n)]


def enqueue_work(producer: Manager, count: int) -> list[str]:
    return producer.enqueue_many("work", [{"ms": random.randint(10, 100)}
                                          for _ in range(count)], num_retries=3)


def lost(producer: Manager, topic: str) -> int:
    """Reaped leases (worker losses): the stats hash's `lost`, which stats() leaves out."""
    return int(producer.store.client.hget(producer.store.keys(topic).stats, "lost") or 0)


def task_hash(producer: Manager, topic: str, task_id: str) -> dict[str, str]:
    return producer.store.client.hgetall(producer.store.keys(topic).task(task_id))


def settled(producer: Manager, topic: str, done: int) -> bool:
    state = producer.stats()["topics"][topic]
    return state["completed"] >= done and state["input"] == state["work"] == 0


def test_topics_on_three_masters(fleet: RedisFleet, ledger: Ledger, pool: WorkerPool,
                                 figures: dict[str, Any]) -> None:
    """"raise", "work" and "fuzz" live on three different masters; one worker is
    SIGKILLed after a third of the tasks."""
    cluster = start_cluster(fleet)
    owners = {t: cluster.owner(t).port for t in ("raise", "work", "fuzz")}
    assert len(set(owners.values())) == 3, owners
    producer = Manager(cluster.url)
    work = enqueue_work(producer, TASKS)
    fuzz = producer.enqueue_many("fuzz", [{"n": i} for i in range(TASKS // 4)], num_retries=3)
    poison = producer.enqueue_many("raise", [{}] * 5, num_retries=2)
    victim, survivor = start_workers(pool, cluster)
    wait_until(lambda: ledger.count("finishes") >= TASKS // 3, 60,
               what="a third of the tasks done")
    pool.sigkill(victim)
    pool.start(0)
    wait_until(lambda: settled(producer, "work", len(work)) and settled(
        producer, "fuzz", len(fuzz)) and producer.stats()["topics"]["raise"]["dead"] == 5,
        120, what="every task settled")
    stats = producer.stats()["topics"]
    starts = ledger.start_counts()
    dups = duplicates(Counter({i: n for i, n in starts.items() if i not in poison}))
    reaped = lost(producer, "work") + lost(producer, "fuzz")
    figures.update(tasks=len(work) + len(fuzz) + len(poison), masters=3, kills=1,
                   duplicates=dups, reaped=reaped,
                   fenced=sum(s.get("fenced", 0) for s in stats.values()))
    print(figures)
    assert ledger.finished_ids() >= set(work) | set(fuzz)
    assert all(stats[t]["scheduled"] == 0 for t in owners)
    for task_id in poison:  # num_retries + 1 counted attempts, each one ran the processor
        fields = task_hash(producer, "raise", task_id)
        # plus a claim the victim took with it (a worker loss: not counted, maybe not started)
        losses = int(fields.get("losses", 0))
        assert fields["attempts"] == "3" and losses <= 1, fields
        assert 3 <= starts[task_id] <= 3 + losses, (task_id, starts[task_id], losses)
    # A re-run follows a lease reaped from the victim: one it held when it died, running,
    # finished but not yet acked, or prefetched; at most its slots plus its prefetch.
    assert dups <= reaped <= SLOTS + PREFETCH, (dups, reaped)
    assert survivor.alive() and pool.terminate_all()[survivor.pid] == 0


def test_slot_of_a_busy_topic_moves_to_another_master(
        fleet: RedisFleet, ledger: Ledger, pool: WorkerPool, figures: dict[str, Any]) -> None:
    """While the slot migrates, every script of the topic gets TRYAGAIN (its keys are
    split between two masters) and the workers back off; afterwards they follow MOVED."""
    cluster = start_cluster(fleet)
    producer = Manager(cluster.url)
    work = enqueue_work(producer, TASKS * 2)
    workers = start_workers(pool, cluster)
    wait_until(lambda: ledger.count("finishes") >= TASKS // 3, 60, what="a third done")
    source = cluster.owner("work")
    target = next(n for n in cluster.masters() if n is not source)
    began = time.monotonic()
    moved = cluster.migrate("work", target)
    migration_s = time.monotonic() - began
    done_at_move = ledger.count("finishes")
    assert cluster.owner("work") is target
    wait_until(lambda: ledger.count("finishes") > done_at_move, 30, 0.05,
               what="a task finished on the new master")
    resumed_s = time.monotonic() - began - migration_s
    more = enqueue_work(producer, TASKS // 2)  # producers follow the move too
    wait_until(lambda: settled(producer, "work", len(work) + len(more)), 120,
               what="every task done")
    state = producer.stats()["topics"]["work"]
    dups = duplicates(ledger.start_counts())
    logs = "".join(w.log() for w in workers)
    figures.update(tasks=len(work) + len(more), keys_moved=moved,
                   migration_s=round(migration_s, 2), resumed_after_s=round(resumed_s, 2),
                   duplicates=dups, fenced=state.get("fenced", 0), reaped=lost(producer, "work"))
    print(figures)
    assert ledger.finished_ids() >= set(work) | set(more)
    assert not source.client().execute_command(
        "CLUSTER", "COUNTKEYSINSLOT", cluster.client.keyslot("kubetaskqueue:{work}:input"))
    # A re-run only follows a lease that expired while the slot was unavailable.
    assert dups <= lost(producer, "work")
    assert "Traceback" not in logs and all(w.alive() for w in workers)
    assert set(pool.terminate_all().values()) == {0}


def test_master_of_a_busy_topic_dies_and_its_replica_takes_over(
        fleet: RedisFleet, ledger: Ledger, pool: WorkerPool, figures: dict[str, Any]) -> None:
    cluster = start_cluster(fleet, masters=3, replicas=1)
    producer = Manager(cluster.url)
    work = enqueue_work(producer, TASKS * 2)
    workers = start_workers(pool, cluster)
    wait_until(lambda: ledger.count("finishes") >= TASKS // 3, 60, what="a third done")
    doomed = cluster.owner("work")
    doomed.kill()
    killed_at = time.monotonic()
    done_at_kill = ledger.count("finishes")
    wait_until(lambda: cluster.owner("work") is not doomed, 30, 0.05,
               what="a replica promoted")
    promoted_s = time.monotonic() - killed_at
    wait_until(lambda: ledger.count("finishes") > done_at_kill, 60, 0.05,
               what="a task finished on the promoted replica")
    resumed_s = time.monotonic() - killed_at
    wait_until(lambda: settled(producer, "work", len(work)), 120, what="every task done")
    state = producer.stats()["topics"]["work"]
    dups = duplicates(ledger.start_counts())
    logs = "".join(w.log() for w in workers)
    figures.update(tasks=len(work), masters=3, replicas=3, master_kills=1,
                   node_timeout_ms=NODE_TIMEOUT_MS, promoted_after_s=round(promoted_s, 2),
                   resumed_after_s=round(resumed_s, 2), duplicates=dups,
                   fenced=state.get("fenced", 0), reaped=lost(producer, "work"))
    print(figures)
    # Enqueued long before the kill, so replicated: every id runs to the end.
    assert ledger.finished_ids() >= set(work)
    assert "Traceback" not in logs and all(w.alive() for w in workers)
    assert set(pool.terminate_all().values()) == {0}
