"""The claim/ack pipeline: one call acks and claims, slots bound the leases held even
with two claim rounds at once, and a success is acked while the claim thread blocks."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import make_attempt, wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.attempts import ACK_BATCH_S, Attempt, InFlight
from kubetaskqueue.connection import connect
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.store import RedisStore
from kubetaskqueue.threads import TaskThreads

TOPIC = "jobs"


@pytest.fixture
def store(any_url: str) -> RedisStore:
    return RedisStore(connect(any_url), "ktq")


def test_one_call_acks_then_claims(store: RedisStore) -> None:
    for ids, keep in (("a", None), ("b", 60.0), ("cde", None)):  # only b keeps its result
        store.enqueue(TOPIC, NewTasks(list(ids), ['{"n": 1}'] * len(ids), keep_result_s=keep))
    _, first = store.claim(TOPIC, 3, 30.0, "w-1-aaaaaaaa")
    a, b, c = first
    leases = [(a.id, a.token), (b.id, b.token), (c.id, "999")]  # c's token is stale
    fenced, due_in, claimed = store.ack_and_claim(TOPIC, leases, 5, 30.0, "w-1-aaaaaaaa",
                                                  {b.id: '"kept"'}, 1.0)
    assert fenced == {c.id} and due_in is None
    assert [r.id for r in claimed] == ["d", "e"]
    k = store.keys(TOPIC)
    assert sorted(store.client.zrange(k.work, 0, -1)) == ["c", "d", "e"]
    assert not store.client.exists(k.task("a"))
    assert store.client.hget(k.task("b"), "result") == '"kept"'
    assert store.client.llen(k.done("b")) == 1
    stats = store.client.hgetall(k.stats)
    assert (stats["completed"], stats["fenced"], stats["started"]) == ("2", "1", "5")


def test_leases_held_never_exceed_the_slots(any_url: str) -> None:
    """A success's slot is reused only by the claim call that records its ack (the ack
    first), so work never holds more than the manager's slots (here the only manager),
    prefetch off (test_prefetch.py: with it, the slots plus the prefetch)."""
    m = Manager(any_url, num_workers=3, prefetch=0, poll_interval_s=0.1, lease_ttl_s=5.0)
    seen: list[int] = []
    work_key = m.store.keys(TOPIC).work

    @m.processor(TOPIC)
    def work(task: Task) -> None:
        seen.append(int(m.store.client.zcard(work_key)))

    m.enqueue_many(TOPIC, list(range(300)))
    m.run(burst=True)
    assert len(seen) == 300 and max(seen) <= 3
    assert m.stats()["topics"][TOPIC]["completed"] == 300


def test_a_success_is_acked_while_the_claim_thread_blocks(redis_url: str) -> None:
    """With nothing left to claim the claim thread blocks on the wake-up list for a whole
    poll interval; a task finishing meanwhile is acked by its own thread, at once.
    (A real Redis: it counts blocked clients.)"""
    m = Manager(redis_url, num_workers=2, poll_interval_s=6.0, lease_ttl_s=5.0)
    go = threading.Event()
    m.register(TOPIC, lambda task: go.wait(10) and "done")
    task_id = m.enqueue(TOPIC, 1, keep_result_s=60)
    m.start()
    try:
        wait_until(lambda: m.stats()["topics"][TOPIC]["work"] == 1)
        # The claim thread's next round found nothing: it now waits in Redis.
        wait_until(lambda: m.store.client.info("clients")["blocked_clients"] >= 1,
                   what="the claim thread blocked on the wake-up list")
        go.set()
        started = time.monotonic()
        assert m.result(TOPIC, task_id, wait_s=10) == "done"
        assert time.monotonic() - started < 3  # well before the 6 s poll ends
    finally:
        go.set()
        m.stop(timeout_s=5)


def test_a_thread_freed_by_its_job_takes_the_next_one() -> None:
    pool = TaskThreads("f")
    names: list[str] = []
    done = threading.Event()

    def job(n: int) -> None:
        names.append(threading.current_thread().name)
        if n < 20:
            pool.free()  # about to end: what it submits waits for this thread
            pool.submit(job, n + 1)
        else:
            done.set()

    pool.submit(job, 0)
    assert done.wait(10)
    assert set(names) == {"f-1"}
    pool.close()


def test_successes_batch_while_tasks_queue_but_wait_at_most_ack_batch_s() -> None:
    """With more tasks queued for its threads, a success wakes the claim thread only
    ACK_BATCH_S after the first success, or once one comes with none queued."""
    inflight = InFlight(8)
    stopping = threading.Event()
    for n in range(8):
        inflight.add(make_attempt(n))
    rounds: list[tuple[float, list[str]]] = []

    def claim_thread() -> None:
        for _ in range(2):
            taken = inflight.wait_round(stopping)
            assert taken is not None
            rounds.append((time.monotonic(), [a.task.id for a in taken[0]]))

    thread = threading.Thread(target=claim_thread)
    thread.start()
    wait_until(lambda: inflight._claimer_waiting, what="the claim thread waiting")
    first = time.monotonic()
    inflight.succeeded(_attempt_of(inflight, "t0"), queued=1)
    wait_until(lambda: len(rounds) == 1, what="the first round")
    assert rounds[0][1] == ["t0"] and rounds[0][0] - first >= ACK_BATCH_S  # waited, alone
    wait_until(lambda: inflight._claimer_waiting, what="the claim thread waiting again")
    with inflight.cond:  # (reentrant) the claim thread wakes only once the lock is free
        for n in range(1, 4):
            inflight.succeeded(_attempt_of(inflight, f"t{n}"), queued=1)
        assert not inflight._acks_due
        inflight.succeeded(_attempt_of(inflight, "t4"), queued=0)  # the last
        assert inflight._acks_due
    thread.join(10)
    assert rounds[1][1] == ["t1", "t2", "t3", "t4"]


def _attempt_of(inflight: InFlight, task_id: str) -> Attempt:
    return inflight._attempts[(TOPIC, task_id)]


def test_a_round_that_empties_the_topics_is_not_followed_by_an_empty_one(
        redis_url: str) -> None:
    """An idle manager woken for one task claims it in one call (after the first, the
    claim sent behind the wait: test_claim_behind_wait.py) and blocks again while the
    task runs: the round gave fewer than it asked for, so a round straight after would
    find nothing."""
    m = Manager(redis_url, num_workers=4, poll_interval_s=5.0)
    go = threading.Semaphore(0)
    m.register(TOPIC, lambda task: go.acquire(timeout=10))
    calls: list[int] = []  # the rows each claim call returned
    claim, claim_behind = m.store.ack_and_claim, m.store.wait_then_claim

    def counted(*args: object, **kwargs: object) -> tuple[set[str], float | None, list]:
        reply = claim(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(len(reply[2]))
        return reply

    def counted_behind(*args: object, **kwargs: object) -> tuple[bool, tuple]:
        reply = claim_behind(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(len(reply[1][2]))
        return reply

    def blocked_with(work: int) -> bool:  # the claim thread waits on the wake-up list
        return (m.store.client.info("clients")["blocked_clients"] >= 1
                and m.stats()["topics"].get(TOPIC, {}).get("work", 0) == work)

    m.store.ack_and_claim = counted  # type: ignore[method-assign]
    m.store.wait_then_claim = counted_behind  # type: ignore[method-assign]
    m.start()
    try:
        for _ in range(3):
            wait_until(lambda: blocked_with(0), what="the claim thread idle")
            calls.clear()
            m.enqueue(TOPIC, 1)
            wait_until(lambda: blocked_with(1), what="the claim thread blocked, a task running")
            assert calls == [1]
            go.release()
    finally:
        go.release()
        m.stop(timeout_s=5)
