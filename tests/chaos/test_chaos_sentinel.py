"""Scenario 8b, Sentinel failover mid-run: workers and a producer use a
``redis+sentinel://`` URL while the test forces ``SENTINEL FAILOVER`` and then kill -9s
the new primary (a real, uncoordinated failover back to the first node). Counts every
id, and every enqueue the producer was told had succeeded that Redis then forgot."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from chaos_env import FULL
from kubetaskqueue import Manager
from kubetaskqueue.errors import DuplicateTaskError, KubeTaskQueueError
from kubetaskqueue.keys import TopicKeys
from ledger import Ledger, duplicates
from probe import client, topic_state, wait_until
from redis_proc import RedisFleet, RedisProc
from sentinel_proc import SentinelSet
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

TASKS = 3_000 if FULL else 500  # enqueued before the first failover
MIN_MS, MAX_MS = 5, 50
WORKERS, SLOTS = 2, 4
LEASE_TTL_S = 2.0
PRODUCE_EVERY_S = 0.01  # one enqueue call (one task) per period, through both failovers
# Sentinel demotes the old primary some 8-20 s after a forced failover (it waits
# 4 x its 2 s publish period, then for its next INFO poll of the instance).
DEMOTION_TIMEOUT_S = 40.0
# On the primary: refuse writes unless a replica acked within the last second.
MIN_REPLICAS = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "1")
# With min-replicas the forced failover is the figure that differs; the short run skips
# the kill -9 there to stay near 40 s for the file (the async variant always does both).
KILL_WITH_MIN_REPLICAS = FULL


# Clients follow a promotion within Sentinel's announcement (~1 s after it promotes)
# plus the client's re-check period (defaults.SENTINEL_RECHECK_S), with margin.
FOLLOW_PROMOTION_S = 3.0
# Without the kill -9, the run goes on until the producer has this many enqueues
# acknowledged on the new primary after the old one was demoted.
MIN_ACKS_AFTER = 20


@dataclass
class Producer:
    """Enqueues one task per call through the Sentinel URL; keeps every id it got an OK
    for, with the monotonic time of the OK."""

    url: str
    acked: list[tuple[str, float]] = field(default_factory=list)  # topic "work"
    parked: list[tuple[str, float]] = field(default_factory=list)  # topic "parked"
    errors: int = 0
    duplicate_errors: int = 0  # redis-py retried a write the server had done
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="producer")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        producer = Manager(self.url)
        rng = random.Random(8)
        while not self._stop.wait(PRODUCE_EVERY_S):
            try:
                [task_id] = producer.enqueue_many(
                    "work", [{"ms": rng.randint(MIN_MS, MAX_MS)}], num_retries=50)
            except DuplicateTaskError:
                self.duplicate_errors += 1
                continue
            except KubeTaskQueueError:
                self.errors += 1
                continue
            self.acked.append((task_id, time.monotonic()))
            try:  # the same enqueue into a topic no worker runs: it must still be there
                [parked_id] = producer.enqueue_many("parked", [{}])
                self.parked.append((parked_id, time.monotonic()))
            except KubeTaskQueueError:
                self.errors += 1

    def ids(self) -> set[str]:
        return {task_id for task_id, _ in self.acked}

    def parked_ids(self) -> set[str]:
        return {task_id for task_id, _ in self.parked}

    def longest_gap_s(self) -> float:
        times = [at for _, at in self.acked]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class FirstCompletion:
    """Watches one node from before its promotion: the time it first reports role master,
    and the first time its ``completed`` counter grows past the value it had then (the
    first ack written on it as primary)."""

    def __init__(self, node: RedisProc, poll_s: float = 0.01) -> None:
        self.node = node
        self.poll_s = poll_s
        self.master_at: float | None = None
        self.completed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="first-completion")
        self._thread.start()

    def _run(self) -> None:
        r = self.node.client()
        baseline = None
        while self.completed_at is None and not self._stop.wait(self.poll_s):
            try:
                is_master = r.info("replication")["role"] == "master"
                done = int(r.hget("kubetaskqueue:{work}:stats", "completed") or 0)
            except redis.RedisError:
                continue
            now = time.monotonic()
            if is_master and baseline is None:
                self.master_at, baseline = now, done
            elif baseline is not None and done > baseline:
                self.completed_at = now

    def wait(self, timeout_s: float = 60.0) -> float:
        wait_until(lambda: self.completed_at is not None, timeout_s,
                   what=f"first completion on {self.node.port}")
        assert self.completed_at is not None
        return self.completed_at

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def acked_between(acked: list[tuple[str, float]], ids: set[str], start: float,
                  end: float) -> int:
    """How many of ``ids`` were acknowledged between ``start`` and ``end``."""
    return sum(1 for task_id, at in acked if task_id in ids and start <= at <= end)


def still_there(r: redis.Redis, topic: str, ids: set[str]) -> set[str]:
    """The ids whose task hash ``r`` holds."""
    k = TopicKeys("kubetaskqueue", topic)
    pipe = r.pipeline(transaction=False)
    for task_id in sorted(ids):
        pipe.exists(k.task(task_id))
    return {i for i, n in zip(sorted(ids), pipe.execute(), strict=True) if n}


@pytest.mark.parametrize("replication", [
    "async", "min_replicas",
    # The set-up the README recommends: a third data node, so the promoted primary has a
    # replica at once and min-replicas costs no write outage. Full runs only (CI time).
    pytest.param("min_replicas_3_nodes", marks=pytest.mark.skipif(
        not FULL, reason="KUBETASKQUEUE_CHAOS=full only: keeps the CI chaos run ~3 min")),
])
def test_sentinel_failover(replication: str, fleet: RedisFleet, ledger: Ledger,
                           pool: WorkerPool, figures: dict[str, Any]) -> None:
    t0 = time.monotonic()
    kill = replication == "async" or KILL_WITH_MIN_REPLICAS
    min_replicas = replication.startswith("min_replicas")
    sentinels = SentinelSet(fleet, *(MIN_REPLICAS if min_replicas else ()),
                            spare=replication.endswith("3_nodes"))
    first = sentinels.primary()
    second = sentinels.other(first)
    rng = random.Random(8)
    pre_ids: list[str] = []
    enqueuer = Manager(sentinels.url)
    for start in range(0, TASKS, 1000):
        pre_ids += enqueuer.enqueue_many(
            "work", [{"ms": rng.randint(MIN_MS, MAX_MS)} for _ in range(min(1000, TASKS - start))],
            num_retries=50)
    pool.redis_url = sentinels.url
    pool.env.update(KUBETASKQUEUE_NUM_WORKERS=str(SLOTS),
                    KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S))
    for slot in range(WORKERS):
        pool.wait_started(pool.start(slot))
    workers = list(pool.workers)
    producer = Producer(sentinels.url)
    producer.start()
    phases: dict[str, float] = {"set_up": time.monotonic() - t0}
    clocks: list[FirstCompletion] = []
    try:
        wait_until(lambda: ledger.count("finishes") >= TASKS // 5, 60, what="run going")

        # 1. Coordinated: SENTINEL FAILOVER promotes the replica; Sentinel turns the old
        #    primary into its replica only some seconds later.
        clock1 = FirstCompletion(second)
        clocks.append(clock1)
        forced_at = sentinels.force_failover()
        promoted1 = sentinels.wait_primary(second)
        demoted1 = sentinels.wait_replica(first, second, DEMOTION_TIMEOUT_S)
        done1 = clock1.wait()
        phases["forced"] = time.monotonic() - forced_at

        # 2. Uncoordinated: kill -9 the new primary; Sentinel promotes the first node again
        #    (in sync: it was reconfigured as a replica above). The killed node comes back
        #    as a replica, as its pod would, so a min-replicas primary can write again.
        final_node = second
        if kill:
            clock2 = FirstCompletion(first)
            clocks.append(clock2)
            killed_at = time.monotonic()
            second.kill()
            promoted2 = sentinels.wait_primary(first)
            figures["sentinels_settled_before_restart"] = sentinels.settle()
            second.start()
            rejoined = sentinels.wait_replica(second, first)
            done2 = clock2.wait()
            phases["killed"] = time.monotonic() - killed_at
            final_node = first
            figures.update(promoted_after_kill_s=round(promoted2 - killed_at, 2),
                           kill_to_first_completion_s=round(done2 - killed_at, 2),
                           killed_node_rejoined_after_s=round(rejoined - killed_at, 2))
        else:  # some work on the new primary before the producer stops
            wait_until(lambda: min(
                acked_between(producer.acked, producer.ids(), demoted1, math.inf),
                acked_between(producer.parked, producer.parked_ids(), demoted1, math.inf),
            ) >= MIN_ACKS_AFTER, 30, what="enqueues acknowledged on the new primary")
        after = time.monotonic()
    finally:
        producer.stop()
        for clock in clocks:
            clock.stop()
    drain_from = time.monotonic()
    # Under load Sentinel can fail over once more than asked (flapping); the invariants
    # below hold on whichever node ends up primary.
    final_node = sentinels.primary()
    final = client(final_node.url)
    acked, parked = producer.ids(), producer.parked_ids()

    def drained() -> bool:
        return topic_state(final, "work").settled and set(pre_ids) <= ledger.finished_ids()

    wait_until(drained, 120, 0.1, what="queues drained")
    phases["drain"] = time.monotonic() - drain_from
    state = topic_state(final, "work")
    finished = ledger.finished_ids()
    counts = ledger.start_counts()
    lost = acked - finished  # acknowledged, never ran to the end
    forgotten = parked - still_there(final, "parked", parked)  # acknowledged, then gone
    alive = all(w.alive() for w in workers)
    fenced_logged = sum(pool.fenced_in_logs(w) for w in workers)
    logs = "".join(w.log() for w in workers)
    exit_codes = pool.terminate_all()
    # Disjoint windows an acknowledged write can be lost in: from the forced failover
    # until the old primary is demoted; from then until the end (the kill -9 and its
    # failover, when there is one: a write the killed node had not sent on).
    forced_window = (forced_at, demoted1)
    after_window = (demoted1, after)
    wall = time.time() - time.monotonic()
    starts_in_forced_window = sum(1 for e in ledger.starts()
                                  if forced_at + wall <= e.at <= demoted1 + wall)
    figures.update(
        replication=replication, tasks=len(pre_ids),
        failovers=sentinels.sentinel_events("+switch-master"),
        duplicates=duplicates(counts), fenced=fenced_logged,
        fenced_on_final_primary=state["fenced"], reaped=state["lost"],
        produced_acknowledged=len(acked), lost_acknowledged_enqueues=len(lost),
        parked_acknowledged=len(parked), lost_acknowledged_parked=len(forgotten),
        parked_acknowledged_in_forced_window=acked_between(producer.parked, parked,
                                                          *forced_window),
        parked_lost_in_forced_window=acked_between(producer.parked, forgotten, *forced_window),
        parked_lost_after_demotion=acked_between(producer.parked, forgotten, *after_window),
        starts_in_forced_window=starts_in_forced_window,
        promoted_after_forced_s=round(promoted1 - forced_at, 2),
        old_primary_demoted_after_s=round(demoted1 - forced_at, 2),
        failover_to_first_completion_s=round(done1 - forced_at, 2),
        producer_errors=producer.errors, producer_duplicate_errors=producer.duplicate_errors,
        producer_longest_gap_s=round(producer.longest_gap_s(), 2),
        phases_s={k: round(v, 1) for k, v in phases.items()})
    print(figures)

    # The same worker processes rode out both failovers, and stopped cleanly.
    assert alive and pool.workers == workers
    assert set(exit_codes.values()) == {0}, exit_codes
    assert "Traceback" not in logs and "unexpected error" not in logs
    assert sentinels.sentinel_events("+switch-master") >= 1 + kill
    sentinels.wait_replicated()  # the set ends with a primary and its replica
    # Every id enqueued before the failovers ran to the end at least once (DESIGN §3.1),
    # and the final primary holds nothing: no queue entry, no task hash.
    assert set(pre_ids) <= finished
    assert (state.input, state.scheduled, state.work, state.dead) == (0, 0, 0, 0)
    assert not final.keys("kubetaskqueue:{work}:task:*")
    # Acknowledged enqueues lost. Redis replicates asynchronously and Sentinel's failover
    # is not coordinated with clients: an enqueue the old primary answered OK after its
    # replica was promoted is gone once Sentinel demotes it (it resyncs from the new
    # primary); so is one a killed primary answered but had not sent to its replica.
    # The bound that holds: every lost id was acknowledged inside one of those windows.
    for gone, acks in ((lost, producer.acked), (forgotten, producer.parked)):
        assert acked_between(acks, gone, *forced_window) + acked_between(
            acks, gone, *after_window) == len(gone)
    if replication == "min_replicas":
        # The old primary refuses writes (NOREPLICAS) as soon as it sees its replica go:
        # the producer gets errors instead of false OKs. Only an enqueue in flight to the
        # replica at the instant it was promoted can still be lost (measured: 0-1 at 100
        # enqueues/s); WAIT 1 <ms> after each enqueue would close that too.
        assert len(lost) + len(forgotten) <= 3
        assert producer.errors > 0
        # The price with two data nodes: the new primary has no replica either until
        # Sentinel demotes the old one, so nothing can be written anywhere until then.
        assert done1 > demoted1 - 1.0
    # A re-run follows an attempt whose record the failover lost (a start or an ack on
    # the old primary in the window) or a lease that expired during an outage.
    assert duplicates(counts) <= starts_in_forced_window + 2 * WORKERS * SLOTS
    if replication != "min_replicas":
        # Clients follow the promotion (store._follow_master re-asks the sentinels),
        # instead of writing to the old primary until Sentinel demotes it ~10 s later:
        # work resumes on the new primary within seconds, and the enqueues that are lost
        # were all acknowledged before clients could know of the switch. With a spare,
        # min-replicas does not stop that loss: the old primary keeps the spare as its
        # replica until Sentinel re-points it, so it goes on accepting writes.
        assert done1 - promoted1 < FOLLOW_PROMOTION_S
        for gone, acks in ((lost, producer.acked), (forgotten, producer.parked)):
            assert acked_between(acks, gone, forced_at, promoted1 + FOLLOW_PROMOTION_S) + \
                acked_between(acks, gone, *after_window) == len(gone)
