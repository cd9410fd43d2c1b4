"""Global rate limits: a token bucket in claim.lua on the Redis clock, shared by every
manager of a topic; the lowest declared limit wins; waiting tasks stay in input."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis
from helpers import Workers, wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.connection import connect
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.queue_state import read_queue_state
from kubetaskqueue.ratelimit import RateLimit
from kubetaskqueue.store import RedisStore

TOPIC = "limited"


@pytest.fixture
def store(any_url: str) -> RedisStore:
    return RedisStore(connect(any_url))


@pytest.fixture
def workers(redis_url: str) -> Iterator[Workers]:
    pool = Workers(redis_url)
    yield pool
    pool.stop_all()


def tasks(n: int) -> NewTasks:
    return NewTasks([f"t{i:03d}" for i in range(n)], ['{"s": 0}'] * n)


def declare(store: RedisStore, manager_id: str, spec: str, lapse_s: float = 30.0,
            slots: int = 4) -> tuple[str, dict[str, str]]:
    limit = RateLimit.parse(spec)
    return store.declare_limit(TOPIC, manager_id, lapse_s,
                               (limit.interval_s, limit.burst, slots, limit.text))


def limit_of(store: RedisStore) -> tuple[str, bool] | None:
    limit = read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC].rate_limit
    return None if limit is None else (limit.text, limit.in_force)


def in_force(store: RedisStore) -> bool:
    limit = limit_of(store)
    return limit is not None and limit[1]


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of ``times`` inside one half-open window [t, t + window_s)."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + window_s) for i, t in enumerate(times))


def test_ten_per_second_over_three_manager_processes(redis_url: str, workers: Workers) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    procs = [workers.start("limited_app:manager", kubetaskqueue_num_workers=8,
                           test_rate_limit="10/s") for _ in range(3)]
    rate_key = RedisStore(r).keys(TOPIC).rate
    wait_until(lambda: sum(f.startswith("d:") for f in r.hkeys(rate_key)) == 3, timeout_s=30,
               what="three managers declared the limit")
    n = 30
    Manager(redis_url).enqueue_many(TOPIC, [{"s": 0.05}] * n)
    wait_until(lambda: Manager(redis_url).stats()["topics"][TOPIC]["completed"] == n,
               timeout_s=30, what="every task completed")
    starts = [line.split() for line in r.lrange("test:limited", 0, -1)]
    assert len(starts) == n  # each ran once
    claimed_at = [float(s[1]) for s in starts]
    began = [float(s[2]) for s in starts]
    assert all(p.poll() is None for p in procs)
    # On the Redis clock the bucket spaces starts 0.1 s apart: never more than 10 in a second,
    # and 30 take at least 2.9 s. In the processors (on a loaded machine) at most 12.
    assert most_in_any_window(claimed_at, 1.0 - 1e-4) <= 10
    assert max(claimed_at) - min(claimed_at) >= 2.9 - 1e-3
    assert most_in_any_window(began, 1.0) <= 12
    print(f"starts: {len({s[3] for s in starts})} processes, most in 1 s: "
          f"{most_in_any_window(claimed_at, 1.0)} (Redis clock), "
          f"{most_in_any_window(began, 1.0)} (processors)")


def test_tasks_over_the_limit_wait_in_input_and_the_manager_does_not_poll(
        redis_url: str) -> None:
    m = Manager(redis_url, num_workers=4, poll_interval_s=2.0)
    started: list[str] = []
    m.register(TOPIC, lambda task: started.append(task.id), rate_limit="1/m")
    m.start()
    try:
        m.enqueue_many(TOPIC, [1, 2, 3])
        wait_until(lambda: started, what="the first task started")
        wait_until(lambda: m.stats()["topics"][TOPIC]["completed"] == 1, what="it completed")
        r = redis.Redis.from_url(redis_url)
        calls_before = int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        time.sleep(1.0)  # the next token is a minute away: nothing may happen meanwhile
        calls = int(r.info("commandstats")["cmdstat_evalsha"]["calls"]) - calls_before
        s = m.stats()["topics"][TOPIC]
        assert (s["input"], s["started"], len(started)) == (2, 1, 1)
        assert calls <= 4  # it blocks on the wake-up list (a claim, a reap at most)
        m.enqueue(TOPIC, 4)  # a new task wakes the manager; the limit still holds it back
        wait_until(lambda: m.stats()["topics"][TOPIC]["input"] == 3, what="the 4th waits too")
        assert len(started) == 1
    finally:
        m.stop()


def test_the_claim_says_when_the_next_token_is_due(store: RedisStore) -> None:
    declare(store, "w-1-aaaaaaaa", "2/s")
    store.enqueue(TOPIC, tasks(3))
    due_in, rows = store.claim(TOPIC, 10, 30.0, "w-1-aaaaaaaa")
    assert len(rows) == 1  # 2/s holds one token: starts 0.5 s apart
    assert due_in is not None and 0.4 < due_in <= 0.5
    due_in, rows = store.claim(TOPIC, 10, 30.0, "w-2-bbbbbbbb")  # any manager: same bucket
    assert rows == [] and due_in is not None and 0.3 < due_in <= 0.5
    wait_until(lambda: store.claim(TOPIC, 10, 30.0, "w-2-bbbbbbbb")[1], timeout_s=2,
               what="the next token")
    assert read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC].input == 1


def test_an_unlimited_topic_claims_everything_and_reports_no_token(store: RedisStore) -> None:
    store.enqueue(TOPIC, tasks(5))
    due_in, rows = store.claim(TOPIC, 10, 30.0, "w-1-aaaaaaaa")
    assert (due_in, len(rows)) == (None, 5)


def test_the_lowest_declared_limit_wins_with_a_warning(any_url: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    # A short lease: the heartbeat that renews declarations runs every 0.5 s.
    fast, slow = (Manager(any_url, num_workers=4, poll_interval_s=0.1, lease_ttl_s=1.5)
                  for _ in range(2))
    starts: list[float] = []

    def record(task: Task) -> None:
        starts.append(task.claimed_at)

    fast.register(TOPIC, record, rate_limit="20/s")
    slow.register(TOPIC, record, rate_limit="5/s")
    caplog.set_level(logging.WARNING, logger="kubetaskqueue")
    fast.start()
    slow.start()
    try:
        wait_until(lambda: caplog.text.count("the lowest, 5/s, applies") >= 2,
                   what="a warning from each manager")
        state = read_queue_state(fast.store.client, topics=[TOPIC]).topics[TOPIC]
        assert state.rate_limit is not None
        assert (state.rate_limit.text, state.rate_limit.per_s) == ("5/s", 5.0)
        fast.enqueue_many(TOPIC, list(range(6)))
        wait_until(lambda: len(starts) == 6, what="six tasks started")
    finally:
        fast.stop()
        slow.stop()
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert min(gaps) >= 0.2 - 1e-4  # 5/s, not 20/s
    assert f"(5/s by {slow.id}; this one 20/s)" in caplog.text
    assert f"(20/s by {fast.id}; this one 5/s)" in caplog.text


def test_a_declaration_lapses_without_its_heartbeat_and_withdraws_at_stop(
        store: RedisStore, any_url: str) -> None:
    declare(store, "gone-aaaaaaaa", "1/h", lapse_s=0.2)
    store.enqueue(TOPIC, tasks(3))
    assert len(store.claim(TOPIC, 10, 30.0, "w-1-aaaaaaaa")[1]) == 1
    wait_until(lambda: not in_force(store), what="the declaration lapsed")
    due_in, rows = store.claim(TOPIC, 10, 30.0, "w-1-aaaaaaaa")
    assert (due_in, len(rows)) == (None, 2)  # nothing in force: no limit
    assert limit_of(store) == ("1/h", False)  # remembered, for the operator

    m = Manager(any_url, poll_interval_s=0.1)
    m.register(TOPIC, lambda task: None, rate_limit="3/m")
    m.start()
    wait_until(lambda: in_force(store), what="declared at start")
    m.stop()
    assert limit_of(store) == ("3/m", False)


def test_the_mean_run_time_follows_the_acks_of_a_limited_topic(store: RedisStore) -> None:
    store.enqueue(TOPIC, tasks(6))
    _, rows = store.claim(TOPIC, 6, 30.0, "w-1-aaaaaaaa")
    store.ack_many(TOPIC, [(r.id, r.token) for r in rows[4:]], run_s=1.0)
    assert read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC].mean_run_s is None
    declare(store, "w-1-aaaaaaaa", "1000/s")  # only a rate-limited topic keeps it
    store.ack_many(TOPIC, [(r.id, r.token) for r in rows[:2]], run_s=1.0)  # 0.5 s each
    assert read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC].mean_run_s == 0.5
    store.ack_many(TOPIC, [(r.id, r.token) for r in rows[2:4]], run_s=5.0)  # 2.5 s each
    mean = read_queue_state(store.client, topics=[TOPIC]).topics[TOPIC].mean_run_s
    assert mean == pytest.approx(0.5 + (1 - 0.95**2) * 2.0, abs=1e-6)


@pytest.mark.parametrize("spec", ["10", "10/d", "0/s", "-1/s", "1/s/s", "ten/s", "", 10,
                                  "2000000/s"])
def test_a_bad_rate_limit_is_refused_at_registration(spec: object) -> None:
    m = Manager("memory://rate-limit-specs")
    with pytest.raises(ValueError, match="rate_limit"):
        m.register(TOPIC, lambda task: None, rate_limit=spec)  # type: ignore[arg-type]
    assert m.topics == []


@pytest.mark.parametrize(("spec", "per_s", "burst", "text"), [
    ("10/s", 10.0, 1, "10/s"), (" 100 / s ", 100.0, 10, "100/s"), ("600/m", 10.0, 1, "600/m"),
    ("36000/h", 10.0, 1, "36000/h"), ("0.5/s", 0.5, 1, "0.5/s"), ("250/s", 250.0, 25, "250/s")])
def test_limits_parse_and_size_their_bucket(spec: str, per_s: float, burst: int,
                                            text: str) -> None:
    limit = RateLimit.parse(spec)
    assert (limit.per_s, limit.burst, limit.text) == (per_s, burst, text)
    assert limit.interval_s == pytest.approx(1 / per_s)
