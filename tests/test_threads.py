"""TaskThreads: reused daemon threads, a new one only when none is idle, and as few
awake as the work needs."""

from __future__ import annotations

import threading
import time

from helpers import wait_until
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


def test_a_burst_of_short_jobs_queues_for_one_thread() -> None:
    pool = TaskThreads("q", wake_after_s=0.05)  # generous: holds on a busy machine
    names: list[str] = []
    done = threading.Semaphore(0)

    def short(_: object) -> None:
        names.append(threading.current_thread().name)
        done.release()

    pool.submit(short, None)  # the first job: a thread, and the mean run time
    assert done.acquire(timeout=10)
    for _ in range(20):  # 20 jobs of microseconds each: the last starts well within 50 ms
        pool.submit(short, None)
    for _ in range(20):
        assert done.acquire(timeout=10)
    assert set(names) == {"q-1"}
    pool.close()
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("q-")])


def test_long_jobs_each_get_a_thread_at_once() -> None:
    pool = TaskThreads("l", wake_after_s=0.01)
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
