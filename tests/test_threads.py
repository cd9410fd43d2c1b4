"""TaskThreads: reused daemon threads, a new one only when none is idle."""

from __future__ import annotations

import threading

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
    assert {t.name for t in threading.enumerate() if t.name.startswith("t-")} == {"t-1", "t-2"}
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("t-"))
    hang.set()
    wait_until(lambda: pool.idle == 2)
    pool.close()
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("t-")])
