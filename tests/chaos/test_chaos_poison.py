"""Scenario 5, poison zoo: tasks that kill their worker, raise, hang or cannot be
parsed all end dead with a reason; normal tasks complete.

A task that kills its worker is a worker loss each time (its lease expires): no retry
is spent, and after MAX_WORKER_LOSSES + 1 losses it is dead as poison. Tasks that raise,
hang or cannot be parsed spend num_retries. Any task running on a worker a suicide task
killed is a worker loss too: it comes back without spending a retry (and would die as
poison only if it were lost more than MAX_WORKER_LOSSES times)."""

from __future__ import annotations

import signal
from collections import Counter, defaultdict
from typing import Any

import pytest
import redis
from chaos_env import POISON_EACH, POISON_NORMAL
from kubetaskqueue import Manager
from kubetaskqueue.events import Event, read_stream
from kubetaskqueue.keys import TopicKeys
from ledger import Ledger
from probe import NS, client, task_field, topic_state, wait_until
from redis_proc import RedisProc
from workers import Supervisor, WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

LEASE_TTL_S = 2.0
WORKERS = 3
MAX_WORKER_LOSSES = 3  # the default, set explicitly: the expectations below depend on it
RETRIES = {"suicide": 1, "raise": 2, "hang": 1, "parse": 2}
REASON = {"raise": "always raises", "hang": "timed out after", "parse": "cannot parse payload"}


def poison_reason(losses: int) -> str:
    return (f"poison: lost its worker {losses} times (max_worker_losses {MAX_WORKER_LOSSES});"
            " last: lease expired: manager chaos-s")


def stream(r: redis.Redis, topic: str) -> list[Event]:
    """The topic's event stream, oldest first (not trimmed here: the caller checks every
    id's TASK_ENQUEUE is still in it)."""
    return read_stream(r, TopicKeys(NS, topic).events, topic)


def start_attempts(events: list[Event], task_id: str) -> list[int]:
    """The attempt number of each claim of ``task_id`` (TASK_START events), in order."""
    return [e.attempt for e in events if e.task_id == task_id and e.type == "TASK_START"]


def loss_owners(events: list[Event]) -> list[str]:
    """The manager named by each TASK_LEASE_EXPIRED event ("lease expired: manager <id> …")."""
    return [e.detail.split()[3] for e in events if e.type == "TASK_LEASE_EXPIRED"]


def test_poison_zoo(queue_redis: RedisProc, ledger: Ledger, pool: WorkerPool,
                    figures: dict[str, Any]) -> None:
    r = client(queue_redis.url)
    producer = Manager(queue_redis.url)
    normal = producer.enqueue_many("work", [{"ms": 5 + i % 25} for i in range(POISON_NORMAL)],
                                   num_retries=5)
    poison: dict[str, list[str]] = {
        "suicide": producer.enqueue_many("suicide", [{}] * POISON_EACH, num_retries=1),
        "raise": producer.enqueue_many("raise", [{}] * POISON_EACH, num_retries=2),
        "hang": producer.enqueue_many("hang", [{"s": 3}] * POISON_EACH, num_retries=1),
        "parse": producer.enqueue_many("parse", [["n"], {"n": "7"}, "seven", None][:POISON_EACH]
                                       * max(1, POISON_EACH // 4), num_retries=2),
    }
    # Payloads that are not JSON at all, written by hand into otherwise valid tasks.
    malformed = producer.enqueue_many("work", [{"ms": 1}] * POISON_EACH, num_retries=3)
    for i, task_id in enumerate(malformed):
        r.hset(TopicKeys(NS, "work").task(task_id), "payload", [b"{not json", b"\xff\xfe"][i % 2])

    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S), KUBETASKQUEUE_NUM_WORKERS="4",
                    KUBETASKQUEUE_MAX_WORKER_LOSSES=str(MAX_WORKER_LOSSES))
    for slot in range(WORKERS):
        pool.start(slot)
    topics = ["work", *poison]
    work_total = len(normal) + len(malformed)
    with Supervisor(pool, range(WORKERS)) as supervisor:
        # A normal or malformed task dies only as poison (see below), so "work" is done
        # when every task there is completed or dead and nothing is left in flight.
        wait_until(lambda: all(topic_state(r, t).settled for t in topics)
                   and all(topic_state(r, t).dead == len(ids) for t, ids in poison.items())
                   and topic_state(r, "work")["completed"] + topic_state(r, "work").dead
                   == work_total, 150, 0.2,
                   what="every poison task dead, every normal task done")
        deaths = list(supervisor.deaths)
    counts = ledger.start_counts()
    by_id = ledger.starts_by_id()
    finished = ledger.finished_ids()
    dead_pids = {pid for pid, _ in deaths}
    suicide_pids = {e.pid for i in poison["suicide"] for e in by_id[i]}
    pod_pid = {w.pod: w.pid for w in pool.workers}
    log = {t: stream(r, t) for t in topics}
    events: dict[str, dict[str, Counter[str]]] = {t: defaultdict(Counter) for t in topics}
    for topic in topics:
        for e in log[topic]:
            events[topic][e.task_id][e.type] += 1
    for topic, ids in [("work", normal + malformed), *poison.items()]:
        assert all(events[topic][i]["TASK_ENQUEUE"] == 1 for i in ids), topic  # not trimmed
    lost = {t: {i: n["TASK_LEASE_EXPIRED"] for i, n in events[t].items()} for t in topics}
    normal_lost = [lost["work"].get(i, 0) for i in normal]

    figures.update(tasks=len(normal) + sum(map(len, poison.values())) + len(malformed),
                   normal=len(normal), poison={t: len(v) for t, v in poison.items()},
                   malformed=len(malformed), worker_deaths=len(deaths),
                   suicide_starts=sum(counts[i] for i in poison["suicide"]),
                   max_worker_losses=MAX_WORKER_LOSSES,
                   lost={t: topic_state(r, t)["lost"] for t in topics},
                   normal_lost_once_or_more=sum(n > 0 for n in normal_lost),
                   normal_max_losses=max(normal_lost),
                   normal_dead_as_poison=sum(n > MAX_WORKER_LOSSES for n in normal_lost))
    print(figures)
    # Every loss was a lease of a worker that died; the stats count each one.
    for topic in topics:
        owners = loss_owners(log[topic])
        assert topic_state(r, topic)["lost"] == len(owners) == sum(lost[topic].values())
        assert all(pod_pid[o.rsplit("-", 1)[0]] in dead_pids for o in owners), (topic, owners)
    # A worker loss spends no retry: nothing in "work" or "suicide" was ever retried.
    assert topic_state(r, "work")["retried"] == topic_state(r, "suicide")["retried"] == 0

    # Suicide tasks: every claim killed a worker (its own, or a sibling suicide task got
    # there first): MAX_WORKER_LOSSES + 1 claims, none counted but the last, then poison.
    for task_id in poison["suicide"]:
        error = task_field(r, "suicide", task_id, "last_error") or ""
        assert error.startswith(poison_reason(MAX_WORKER_LOSSES + 1)), error
        assert task_field(r, "suicide", task_id, "losses") == str(MAX_WORKER_LOSSES + 1)
        assert task_field(r, "suicide", task_id, "attempts") == "1"
        assert start_attempts(log["suicide"], task_id) == [1] * (MAX_WORKER_LOSSES + 1)
        assert events["suicide"][task_id]["TASK_RETRY"] == 0
        # The ledger misses a start when a sibling suicide task killed the process
        # between claim and start.
        assert counts[task_id] <= MAX_WORKER_LOSSES + 1
    assert len(deaths) <= len(poison["suicide"]) * (MAX_WORKER_LOSSES + 1)

    def check_rule(topic: str, task_id: str, spent: int, reason: str) -> bool:
        """``spent`` counted attempts end the task with ``reason``, after any number of
        uncounted losses up to the cap; a loss past the cap makes it poison instead.
        Returns True when it died as poison."""
        n_lost = lost[topic].get(task_id, 0)
        attempts = start_attempts(log[topic], task_id)
        error = task_field(r, topic, task_id, "last_error") or ""
        if n_lost > MAX_WORKER_LOSSES:
            assert n_lost == MAX_WORKER_LOSSES + 1, (topic, task_id, n_lost)
            assert error.startswith(poison_reason(n_lost)), (topic, task_id, error)
            assert task_field(r, topic, task_id, "losses") == str(n_lost)
            return True
        # Every claim was a counted attempt or a loss; losses gave their attempt back.
        assert len(attempts) == spent + n_lost, (topic, task_id, attempts, n_lost)
        assert sorted(set(attempts)) == list(range(1, spent + 1)), (topic, task_id, attempts)
        if reason:
            assert reason in error, (topic, task_id, error)
            assert task_field(r, topic, task_id, "attempts") == str(spent)
        return False

    # Raise, hang, parse: num_retries + 1 counted attempts, each ran the processor, ending
    # with the task's own reason; a sibling suicide task's kill spent none of them.
    for topic, ids in poison.items():
        if topic == "suicide":
            continue
        for task_id in ids:
            if not check_rule(topic, task_id, RETRIES[topic] + 1, REASON[topic]):
                n_lost = lost[topic].get(task_id, 0)
                assert RETRIES[topic] + 1 <= counts[task_id] <= RETRIES[topic] + 1 + n_lost, (
                    topic, task_id, counts[task_id], n_lost)
                assert events[topic][task_id]["TASK_RETRY"] == RETRIES[topic]
    for task_id in malformed:  # can never succeed: dead after one attempt, processor not run
        assert counts[task_id] == 0
        check_rule("work", task_id, 1, "malformed")
    # Normal tasks complete; those a sibling suicide task killed ran again as attempt 1.
    poisoned = [i for i in normal if check_rule("work", i, 1, "")]
    assert set(normal) - set(poisoned) <= finished
    assert topic_state(r, "work")["completed"] == len(normal) - len(poisoned)
    assert topic_state(r, "work").dead == len(malformed) + len(poisoned)
    # Only the suicide tasks killed workers, each death was one, and all came back.
    assert dead_pids == suicide_pids
    assert all(code == -signal.SIGKILL for _, code in deaths)
    assert all(pool.current(slot).alive() for slot in range(WORKERS))
    assert set(pool.terminate_all().values()) == {0}
