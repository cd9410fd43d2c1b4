"""Reusable daemon threads for sync processors, woken only as many as the work needs.

Starting a thread per task cost about as much as a no-op task itself. A
ThreadPoolExecutor would reuse threads, but its threads are joined at
interpreter exit, so one hung task (abandoned after its timeout) would keep a
stopped worker from ever exiting. These threads are daemons: a hung one is
simply left behind, and a new one starts when no idle thread is free.

Every thread that runs Python at once competes for the GIL, and threads beyond
what keeps the GIL busy only add futex hand-offs: a plain loop of Redis ``INCR``
calls ran 11.7k/s on one thread, 23.4k/s on two, 24.4k/s on three, 15.5k/s on
eight. So how many threads are awake follows what a job spends holding the GIL,
its CPU time (``time.thread_time``) over its run time, its CPU share:

- a job held the GIL most of its run (over ``TWO_THREADS_SHARE``): one thread
  runs them one after another (a second would only wait for the GIL);
- it waited (for I/O) a third of its run or more: two threads, one running
  Python while the other waits;
- it mostly waited (at most ``ONE_EACH_SHARE``), ran longer than ``LONG_JOB_S``,
  or nothing is known yet: every job gets a thread of its own.

That share is read under the concurrency it sets, so a crowd of threads can keep
itself: contending for the GIL, short jobs seem to wait most of their run. So a
limit found by trials caps it too (thread_limit.py): while the jobs keep the GIL
busy, fewer threads are tried, and kept where the jobs finish as fast.

A thread that finds more threads awake than that parks after its job, even with
jobs queued: the awake ones take them. A watchdog wakes one more thread whenever
queued jobs made no progress for ``_WATCH_S`` (the running ones hang, or take
far longer than the mean).

The hot path takes no Python lock: a lock held across a GIL switch makes the
other thread sleep on it, and those futex round trips cost more than the task.
The job queue is a deque and parked threads wait on their own lock; a thread
about to park checks the queue once more after it has said so.

A job that is about to end calls ``free()``: its thread counts as free from then
on, so a job submitted meanwhile (the claim its own success let through) waits
for it instead of waking one more thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .thread_limit import ThreadLimit

_Job = tuple[Callable[[Any], None], Any]

# A job that runs longer than this (seconds, mean) gets a thread of its own: so long a
# wait for a thread would be latency, and such jobs wait on I/O as a rule.
LONG_JOB_S = 0.002
# The CPU share (CPU time over run time) at or below which jobs each get a thread, and
# above which they run on one thread; between the two, two threads. Measured (W1, a task
# doing one Redis call: share 0.4-0.5 on two threads; 0.15 with sixteen awake).
ONE_EACH_SHARE = 0.1
TWO_THREADS_SHARE = 0.67
# How often the watchdog checks that queued jobs are being taken.
_WATCH_S = 0.002
# The moving averages weigh each finished job by this much.
_MEAN_WEIGHT = 0.05


class TaskThreads:
    def __init__(self, name: str, long_job_s: float = LONG_JOB_S) -> None:
        self._name = name
        self._long_job_s = long_job_s
        self._jobs: deque[_Job] = deque()
        # deque and list appends and pops, and dict item writes, are atomic in CPython.
        self._parked: list[threading.Lock] = []  # each parked thread blocks on its own
        # thread id -> (monotonic, thread CPU time) at the start of its job, until free()
        self._running: dict[int, tuple[float, float]] = {}
        self._started = 0  # threads alive, also numbering the next (under _start_lock)
        self._start_lock = threading.Lock()
        self._mean_s: float | None = None  # a job's run time, moving average
        self._cpu_share: float | None = None  # its CPU time over its run time, likewise
        self._limit = ThreadLimit()  # what trials found the threads awake should not exceed
        self._closed = False
        self._queued = threading.Event()  # jobs may wait that no thread was woken for
        self._watchdog: threading.Thread | None = None

    @property
    def idle(self) -> int:
        """Threads without a job (parked, or about to take the next)."""
        return self._started - len(self._running)

    @property
    def _awake(self) -> int:
        """Threads alive and not parked."""
        return self._started - len(self._parked)

    @property
    def queued(self) -> int:
        """Jobs waiting for a thread."""
        return len(self._jobs)

    def submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` on a thread: one already awake, one woken, or a new one."""
        self._jobs.append((fn, arg))
        awake = self._awake
        if len(self._jobs) > awake - len(self._running) and awake < self._wanted():
            self._wake_one()
            return
        if not self._queued.is_set():  # set() takes a lock and notifies, set or not
            self._queued.set()  # in case the threads it waits for are stuck
        if self._watchdog is None:
            with self._start_lock:
                if self._watchdog is None:
                    self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                                      name=f"{self._name}-watchdog")
                    self._watchdog.start()

    def _wanted(self) -> float:
        """How many threads to keep awake while jobs queue (module docstring)."""
        mean, share = self._mean_s, self._cpu_share
        if mean is None or share is None or mean > self._long_job_s or share <= ONE_EACH_SHARE:
            return self._limit.limit
        return min(1 if share > TWO_THREADS_SHARE else 2, self._limit.limit)

    def _unpark(self) -> bool:
        """Wake a parked thread, if there is one."""
        try:
            self._parked.pop().release()
        except IndexError:
            return False
        return True

    def _wake_one(self) -> None:
        """Wake a parked thread, or start one."""
        if self._unpark():
            return
        with self._start_lock:
            self._started += 1
            number = self._started
        threading.Thread(target=self._work, daemon=True, name=f"{self._name}-{number}").start()

    def free(self) -> None:
        """Called by a job on a task thread about to end: the thread counts as free."""
        self._finished(threading.get_ident())

    def _finished(self, ident: int) -> None:
        """The job of thread ``ident`` is done (or about to be): count its run time, CPU
        share and the thread free, and tell the trials of thread_limit.py; nothing if it
        was counted already (or is not one of ours). Called on that thread (its CPU time
        is the caller's)."""
        started = self._running.pop(ident, None)
        if started is not None:
            now = time.monotonic()
            ran_s, cpu_s = now - started[0], time.thread_time() - started[1]
            share = min(1.0, cpu_s / ran_s) if ran_s > 0 else 1.0
            # Unlocked: two threads racing here lose one sample of a moving average.
            self._mean_s = _moved(self._mean_s, ran_s)
            self._cpu_share = _moved(self._cpu_share, share)
            self._limit.finished(now, cpu_s, self._awake, self._started)

    def close(self) -> None:
        """Let idle threads exit; busy (or hung) ones finish or stay behind as daemons."""
        self._closed = True
        while self._unpark():
            pass
        self._queued.set()

    def _work(self) -> None:
        ident = threading.get_ident()
        park = threading.Lock()
        park.acquire()  # held: the next acquire blocks until a waker releases it
        parking = False  # more threads awake than wanted: park even with jobs queued
        while True:
            job = None
            if not parking:
                with contextlib.suppress(IndexError):
                    job = self._jobs.popleft()
            if job is None:
                if self._closed:
                    with self._start_lock:
                        self._started -= 1
                    return
                self._parked.append(park)
                if parking:
                    self._queued.set()  # the watchdog sees that the others take the jobs
                elif self._jobs:  # a job came before this thread was seen parked
                    try:
                        self._parked.remove(park)
                        continue
                    except ValueError:
                        pass  # a waker took it already: take its release
                parking = False
                park.acquire()
                continue
            fn, arg = job
            self._running[ident] = time.monotonic(), time.thread_time()
            fn(arg)  # callers catch their own errors: _run_sync never raises
            self._finished(ident)
            parking = self._awake > self._wanted()

    def _watch(self) -> None:
        """Wake one more thread whenever the first queued job has waited ``_WATCH_S``."""
        while not self._closed:
            self._queued.wait()
            head = self._head()
            time.sleep(_WATCH_S)
            if head is None:
                self._queued.clear()
                if self._jobs:  # queued meanwhile: check it next round
                    self._queued.set()
            elif head is self._head():
                self._wake_one()

    def _head(self) -> _Job | None:
        try:
            return self._jobs[0]
        except IndexError:
            return None


def _moved(average: float | None, sample: float) -> float:
    """A moving average with one more sample (the first sample starts it)."""
    return sample if average is None else average + _MEAN_WEIGHT * (sample - average)
