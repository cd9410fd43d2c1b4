"""Prefetch: tasks claimed beyond the slots wait, leased, and take a slot the moment one
frees; as many as the slots start within PREFETCH_WAIT_S, and never more run than the
slots."""

from __future__ import annotations

import threading
import time

import kubetaskqueue.attempts as attempts_module
import pytest
from helpers import make_attempt, wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.attempts import PREFETCH_SAMPLES, InFlight

TOPIC = "jobs"


def _room(inflight: InFlight) -> int:
    """The slots a claim round would fill now (its acks' slots aside)."""
    taken = inflight.wait_round(threading.Event())
    assert taken is not None
    return taken[1]


def _record_runs(inflight: InFlight, run_s: list[float]) -> None:
    """Settle one attempt per entry of ``run_s``, each as if it ran that long."""
    for n, ran in enumerate(run_s):
        attempt = make_attempt(1000 + n)
        assert inflight.add(attempt)
        attempt.started = time.monotonic() - ran
        assert inflight.settle(attempt) == (True, None)
        inflight.finish([attempt])


def test_room_grows_by_what_the_slots_start_within_the_wait() -> None:
    inflight = InFlight(4, prefetch=8)
    assert _room(inflight) == 4  # no run times known yet
    _record_runs(inflight, [0.019] * PREFETCH_SAMPLES)
    assert _room(inflight) == 4 + 2  # 4 slots each start one per 19 ms: 2 within 10 ms
    _record_runs(inflight, [0.0051] * PREFETCH_SAMPLES)
    assert _room(inflight) == 4 + 7
    capped = InFlight(4, prefetch=3)
    _record_runs(capped, [0.0051] * PREFETCH_SAMPLES)
    assert _room(capped) == 4 + 3


def test_when_the_prefetch_shrinks_acks_free_no_room_until_below_it() -> None:
    """Tasks turned longer: the attempts held beyond the slots are not replaced as they
    are acked (a round's room counts them), so the prefetch drains instead of staying."""
    inflight = InFlight(2, prefetch=4)
    _record_runs(inflight, [0.0051] * PREFETCH_SAMPLES)
    held = [make_attempt(n) for n in range(_room(inflight))]
    assert len(held) == 2 + 3
    for attempt in held:
        inflight.add(attempt)
    inflight._run_times.extend([0.02] * PREFETCH_SAMPLES)  # as if longer tasks ran since
    assert inflight.settle(held[0]) == (True, held[2])
    inflight.succeeded(held[0], queued=0)
    assert _room(inflight) == 2 + 1 - 5  # its ack makes it -1: the round claims nothing


def test_short_tasks_take_the_whole_prefetch_and_outliers_do_not_shrink_it() -> None:
    inflight = InFlight(4, prefetch=8)
    runs = [0.001] * PREFETCH_SAMPLES
    runs[::3] = [0.2] * len(runs[::3])  # a third starved of the GIL: the median stays short
    _record_runs(inflight, runs)
    assert _room(inflight) == 4 + 8
    off = InFlight(4, prefetch=0)
    _record_runs(off, [0.001] * PREFETCH_SAMPLES)
    assert _room(off) == 4


def test_a_settled_attempt_hands_its_slot_to_the_oldest_waiting() -> None:
    inflight = InFlight(1, prefetch=4)
    first, second, third = make_attempt(1), make_attempt(2), make_attempt(3)
    assert inflight.add(first)
    assert not inflight.add(second) and not inflight.add(third)
    assert inflight.running == 1 and len(inflight) == 3
    assert inflight.settle(first) == (True, second) and second.running
    assert inflight.settle(first) == (False, None)  # settled once: no second hand-over
    fourth = make_attempt(4)
    assert not inflight.add(fourth)
    assert inflight.settle(fourth) == (True, None)  # never ran: no slot to pass on
    inflight.finish([fourth])
    assert inflight.running == 1
    assert inflight.drop_waiting() == [third] and third.settled
    assert len(inflight) == 2  # first waits for its ack, second runs
    assert inflight.settle(second) == (True, None)
    assert inflight.running == 0
    by_topic, busy = inflight.leases()
    assert by_topic == {} and busy == 0


def _time_round(inflight: InFlight, stopping: threading.Event, began: list[float]) -> None:
    assert inflight.wait_round(stopping) is not None
    began.append(time.monotonic())


def test_successes_gather_while_most_of_the_prefetch_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No slot idles while prefetched tasks wait, so a success wakes the claim thread
    only once at most half the prefetch waits (else ACK_BATCH_S after the first)."""
    monkeypatch.setattr(attempts_module, "ACK_BATCH_S", 0.5)  # far above a wake-up's delay
    inflight = InFlight(2, prefetch=4)
    _record_runs(inflight, [0.0051] * PREFETCH_SAMPLES)  # prefetch now: 3
    attempts = [make_attempt(n) for n in range(2 + 3)]
    for attempt in attempts:
        inflight.add(attempt)
    stopping = threading.Event()
    for done, gathers in ((attempts[0], True), (attempts[1], False)):  # 2, then 1 waits
        rounds: list[float] = []  # when the claim round began
        thread = threading.Thread(target=_time_round, args=(inflight, stopping, rounds))
        thread.start()
        wait_until(lambda: inflight._claimer_waiting, what="the claim thread waiting")
        first = time.monotonic()
        assert inflight.settle(done)[0]
        inflight.succeeded(done, queued=0)
        thread.join(5)
        assert (rounds[0] - first >= 0.5) == gathers


def test_a_manager_prefetches_but_never_runs_more_than_its_slots(any_url: str) -> None:
    m = Manager(any_url, num_workers=4, prefetch=8, poll_interval_s=0.1, lease_ttl_s=5.0)
    work_key = m.store.keys(TOPIC).work
    lock = threading.Lock()
    running, most_running, most_leased = [0], [0], [0]

    @m.processor(TOPIC)
    def work(task: Task) -> None:
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        most_leased[0] = max(most_leased[0], int(m.store.client.zcard(work_key)))
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    m.enqueue_many(TOPIC, list(range(200)))
    m.run(burst=True)
    assert m.stats()["topics"][TOPIC]["completed"] == 200
    assert most_running[0] <= 4
    assert 4 < most_leased[0] <= 4 + 8


def test_a_prefetched_tasks_timeout_counts_from_when_it_runs(redis_url: str) -> None:
    """Tasks with a 0.15 s timeout wait, prefetched, behind two 0.5 s tasks: they still
    succeed, as their time waiting for a slot is not theirs."""
    m = Manager(redis_url, num_workers=2, prefetch=4, poll_interval_s=0.1, lease_ttl_s=5.0)
    m.register(TOPIC, lambda task: time.sleep(task.payload))
    m.enqueue_many(TOPIC, [0.006] * PREFETCH_SAMPLES)  # run times: 3 start within 10 ms
    m.start()
    try:
        wait_until(lambda: m.stats()["topics"][TOPIC]["completed"] == PREFETCH_SAMPLES)
        m.enqueue_many(TOPIC, [0.5, 0.5])
        m.enqueue_many(TOPIC, [0.01, 0.01], timeout_s=0.15)
        wait_until(lambda: m.stats()["topics"][TOPIC]["work"] == 4,
                   what="the short tasks prefetched behind the long ones")
        wait_until(lambda: m.stats()["topics"][TOPIC]["completed"] == PREFETCH_SAMPLES + 4)
        assert m.stats()["topics"][TOPIC]["failed"] == 0
    finally:
        m.stop(timeout_s=5)


def test_graceful_stop_releases_prefetched_tasks_at_once(redis_url: str) -> None:
    """A stopping manager hands its prefetched tasks back to input before it waits for
    the running one, so another manager can run them meanwhile."""
    m = Manager(redis_url, num_workers=1, prefetch=4, poll_interval_s=0.1, lease_ttl_s=5.0)
    go = threading.Event()
    m.register(TOPIC, lambda task: time.sleep(0.006) if task.payload == "warm" else go.wait(20))
    m.enqueue_many(TOPIC, ["warm"] * PREFETCH_SAMPLES)
    m.start()
    stopper = threading.Thread(target=m.stop, kwargs={"timeout_s": 20})
    try:
        wait_until(lambda: m.stats()["topics"][TOPIC]["completed"] == PREFETCH_SAMPLES)
        m.enqueue_many(TOPIC, ["block", "wait"])
        wait_until(lambda: m.stats()["topics"][TOPIC]["work"] == 2,
                   what="one running, one prefetched")
        stopper.start()
        wait_until(lambda: m.stats()["topics"][TOPIC]["input"] == 1,
                   what="the prefetched task back in input")
        assert m.stats()["topics"][TOPIC]["work"] == 1  # the running one is still running
    finally:
        go.set()
        if stopper.ident:
            stopper.join(20)
        else:
            m.stop(timeout_s=5)
    assert m.stats()["topics"][TOPIC]["completed"] == PREFETCH_SAMPLES + 1


def test_the_default_prefetch_is_one_a_slot_and_at_least_sixteen(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KUBETASKQUEUE_PREFETCH", raising=False)
    assert Manager("memory://", num_workers=5).settings.prefetch_tasks == 16
    assert Manager("memory://", num_workers=64).settings.prefetch_tasks == 64
    assert Manager("memory://", num_workers=64, prefetch=0).settings.prefetch_tasks == 0
    monkeypatch.setenv("KUBETASKQUEUE_PREFETCH", "3")
    assert Manager("memory://", num_workers=64).settings.prefetch_tasks == 3
