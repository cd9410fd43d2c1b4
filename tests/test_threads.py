"""TaskThreads: reused daemon threads, a new one only when none is idle, and as many
awake as the jobs' CPU share makes useful."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from helpers import wait_until
from kubetaskqueue import threads
from kubetaskqueue.threads import TaskThreads


def test_threads_are_reused_and_a_hung_one_is_left_behind() -> None:
    pool = TaskThreads("t")
    done: list[int] = []
    names: set[str] = set()

    def job(n: int) -> None:
        names.add(threading.current_thread().name)
        done.append(n)

    for n in range(200):
        pool.submit(job, n)
        # One at a time, each after the thread went idle again: one thread suffices.
        wait_until(lambda n=n: len(done) == n + 1 and pool.idle == 1)
    assert len(names) == 1

    hang = threading.Event()
    hung_on: list[str] = []

    def hang_job(_: object) -> None:
        hung_on.append(threading.current_thread().name)
        hang.wait(10)

    names.clear()
    pool.submit(hang_job, None)  # occupies a thread until released
    pool.submit(job, 200)  # no idle thread left: a second one starts
    wait_until(lambda: 200 in done and hung_on)
    assert len(names) == 1 and names.isdisjoint(hung_on)
    assert {t.name for t in threading.enumerate() if t.name.startswith("t-")} == \
        {"t-1", "t-2", "t-watchdog"}  # the second was woken by the watchdog
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("t-"))
    hang.set()
    wait_until(lambda: pool.idle == 2)
    pool.close()
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("t-")])


def _busy(seconds: float) -> None:
    """Hold the GIL (CPU) for about ``seconds``."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _pool_threads(prefix: str) -> set[str]:
    return {t.name for t in threading.enumerate()
            if t.name.startswith(f"{prefix}-") and not t.name.endswith("watchdog")}


def _close(pool: TaskThreads, prefix: str) -> None:
    pool.close()
    wait_until(lambda: not _pool_threads(prefix))


def _warm_up(pool: TaskThreads, job: Callable[[object], None], n: int = 40) -> None:
    """Run ``n`` jobs one at a time: the pool learns their run time and CPU share."""
    for _ in range(n):
        ran = threading.Event()
        pool.submit(lambda arg, ran=ran: (job(arg), ran.set()), None)
        assert ran.wait(10)


def _cpu_bound_burst(pool: TaskThreads, n: int) -> list[str]:
    """Submit ``n`` short CPU-bound jobs at once; the threads that ran them, in order."""
    names: list[str] = []
    done = threading.Semaphore(0)

    def short(_: object) -> None:
        _busy(0.0002)
        names.append(threading.current_thread().name)
        done.release()

    for _ in range(n):
        pool.submit(short, None)
    for _ in range(n):
        assert done.acquire(timeout=20)
    return names


def test_a_burst_of_cpu_bound_jobs_queues_for_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Generous: a job preempted half its run on a busy machine still counts CPU-bound.
    monkeypatch.setattr(threads, "TWO_THREADS_SHARE", 0.2)
    pool = TaskThreads("q")
    _warm_up(pool, lambda _: _busy(0.0002))
    names = _cpu_bound_burst(pool, 50)  # a second thread would only wait for the GIL
    assert set(names) == {"q-1"}
    _close(pool, "q")


def test_short_jobs_that_wait_on_io_run_on_two_threads() -> None:
    pool = TaskThreads("w", long_job_s=0.05)  # short, even on a busy machine

    def half_waiting(_: object) -> None:  # CPU share about a half
        _busy(0.0005)
        time.sleep(0.0005)

    _warm_up(pool, half_waiting)
    running, most, lock = [0], [0], threading.Lock()
    done = threading.Semaphore(0)

    def job(_: object) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        half_waiting(None)
        with lock:
            running[0] -= 1
        done.release()

    for _ in range(100):
        pool.submit(job, None)
    for _ in range(100):
        assert done.acquire(timeout=10)
    assert most[0] >= 2  # one runs Python while the other waits
    # A third only when the watchdog saw no progress (a thread preempted for 2 ms).
    assert len(_pool_threads("w")) <= 3
    _close(pool, "w")


def test_threads_beyond_what_the_jobs_want_park_with_jobs_queued(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "TWO_THREADS_SHARE", 0.2)
    pool = TaskThreads("p", long_job_s=0.01)
    pool.submit(lambda _: time.sleep(0.05), None)  # long: a thread each, at once
    wait_until(lambda: pool.idle == 1)
    overlapping = threading.Barrier(4, timeout=10)
    for _ in range(4):
        pool.submit(lambda _: overlapping.wait(), None)
    wait_until(lambda: pool.idle == 4)
    names = _cpu_bound_burst(pool, 400)  # short and CPU-bound: the pool learns it, parks three
    assert len(set(names[-100:])) <= 2  # one, or two while the watchdog woke one
    _close(pool, "p")


def test_long_jobs_each_get_a_thread_at_once() -> None:
    pool = TaskThreads("l", long_job_s=0.01)
    pool.submit(lambda _: time.sleep(0.05), None)  # the mean run time: 50 ms, "long"
    wait_until(lambda: pool.idle == 1)
    overlapping = threading.Barrier(4, timeout=10)
    for _ in range(4):
        pool.submit(lambda _: overlapping.wait(), None)  # returns once all four run
    wait_until(lambda: pool.idle == 4)
    names = {t.name for t in threading.enumerate() if t.name.startswith("l-")}
    assert names == {"l-1", "l-2", "l-3", "l-4"}  # woken at submit: no watchdog was needed
    pool.close()
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("l-")])


def test_a_crowd_of_threads_contending_for_the_gil_thins_out() -> None:
    """Short jobs that let go of the GIL often (as Redis calls do), 32 at once on a cold
    pool: every job gets a thread at first, and contending for the GIL they seem to
    wait most of their run, which by the CPU share alone keeps a thread each (32 ran
    them all, before thread_limit.py). Trials of fewer threads find them as fast, and
    the crowd parks."""
    pool = TaskThreads("c")
    done = threading.Semaphore(0)
    names: list[str] = []

    def call(_: object) -> None:
        for _ in range(20):
            _busy(0.00001)
            time.sleep(0)  # lets go of the GIL, as a wait on a socket does
        names.append(threading.current_thread().name)
        done.release()

    for _ in range(32):
        pool.submit(call, None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # keep 32 queued, as a manager's slots do
        assert done.acquire(timeout=20)
        pool.submit(call, None)
        if len(names) >= 1000 and len(set(names[-200:])) <= 8:
            break
    assert len(set(names[-200:])) <= 8, sorted(set(names[-200:]))
    for _ in range(32):
        assert done.acquire(timeout=20)
    _close(pool, "c")
