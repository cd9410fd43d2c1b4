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
        wait_until(lambda n=n: len(done) == n + 1)  # one at a time: one thread suffices
    assert len(names) == 1

    hang = threading.Event()
    pool.submit(lambda _: hang.wait(10), None)  # takes the idle thread and never returns
    pool.submit(job, 200)
    wait_until(lambda: 200 in done)
    assert len(names) == 2  # a new thread ran it
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("t-"))
    hang.set()
    wait_until(lambda: pool.idle == 2)
    pool.close()
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("t-")])
