"""Reusable daemon threads for sync processors, woken only as many as the work needs.

Starting a thread per task cost about as much as a no-op task itself. A
ThreadPoolExecutor would reuse threads, but its threads are joined at
interpreter exit, so one hung task (abandoned after its timeout) would keep a
stopped worker from ever exiting. These threads are daemons: a hung one is
simply left behind, and a new one starts when no idle thread is free.

Every thread that runs Python at once competes for the GIL: sixteen threads each
making one Redis call cost three times the CPU per call of one thread (futex
hand-offs). So a job submitted while others run does not always wake a thread:
it waits in the queue when the threads already awake are expected to reach it
within ``WAKE_AFTER_S`` (the jobs ahead of it, times the mean job's run time,
shared among the threads without a job and those whose job is not already far
past the mean). Short tasks then run one after another on a thread or two; long
ones (a mean over ``WAKE_AFTER_S``: I/O-bound, as a rule) each get their own. A
watchdog wakes one more thread whenever queued jobs made no progress for
``_WATCH_S`` (the running ones hang, or take far longer than the mean).

The hot path takes no Python lock: a lock held across a GIL switch makes the
other thread sleep on it, and those futex round trips cost more than the task.
The job queue is a deque and parked threads wait on their own lock; a thread
about to park checks the queue once more after it has said so.

A job that is about to end calls ``free()``: its thread counts as free from then
on, so a job submitted meanwhile (the claim its own success let through) waits
for it instead of waking one more thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

_Job = tuple[Callable[[Any], None], Any]

# How long a queued job may be expected to wait for a thread already awake (seconds):
# the latency a burst of short tasks may add to save waking threads.
WAKE_AFTER_S = 0.002
# How often the watchdog checks that queued jobs are being taken.
_WATCH_S = 0.002
# The mean job's run time weighs each finished job by this much.
_MEAN_WEIGHT = 0.05


class TaskThreads:
    def __init__(self, name: str, wake_after_s: float = WAKE_AFTER_S) -> None:
        self._name = name
        self._wake_after_s = wake_after_s
        self._jobs: deque[_Job] = deque()
        # deque and list appends and pops, and dict item writes, are atomic in CPython.
        self._parked: list[threading.Lock] = []  # each parked thread blocks on its own
        self._running: dict[int, float] = {}  # thread id -> start of its job, until free()
        self._started = 0  # threads alive, also numbering the next (under _start_lock)
        self._start_lock = threading.Lock()
        self._mean_s: float | None = None  # a job's run time, moving average
        self._closed = False
        self._queued = threading.Event()  # jobs may wait that no thread was woken for
        self._watchdog: threading.Thread | None = None

    @property
    def idle(self) -> int:
        """Threads without a job (parked, or about to take the next)."""
        return self._started - len(self._running)

    @property
    def queued(self) -> int:
        """Jobs waiting for a thread."""
        return len(self._jobs)

    def submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` on a thread: one already awake, one woken, or a new one."""
        self._jobs.append((fn, arg))
        if self._expected_wait_s() > self._wake_after_s:
            self._wake_one()
            return
        self._queued.set()  # in case the threads it waits for are stuck
        if self._watchdog is None:
            with self._start_lock:
                if self._watchdog is None:
                    self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                                      name=f"{self._name}-watchdog")
                    self._watchdog.start()

    def _expected_wait_s(self) -> float:
        """How long the last queued job should wait for a thread awake now: the jobs
        ahead of it run one after another, shared among the threads without a job and
        those whose job is not already far past the mean. Infinite if there are none."""
        mean = self._mean_s
        running = list(self._running.values())
        free = self._started - len(self._parked) - len(running)
        if mean is None or mean > self._wake_after_s:  # unknown, or long: one thread each
            return 0.0 if len(self._jobs) <= free else float("inf")
        soon = time.monotonic() - 2 * mean - self._wake_after_s  # started after this
        takers = free + sum(1 for started in running if started > soon)
        return (len(self._jobs) - 1) * mean / takers if takers > 0 else float("inf")

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
        """The job of thread ``ident`` is done (or about to be): count its run time and
        the thread free; nothing if it was counted already (or is not one of ours)."""
        started = self._running.pop(ident, None)
        if started is not None:
            ran_s, mean = time.monotonic() - started, self._mean_s
            # Unlocked: two threads racing here lose one sample of a moving average.
            self._mean_s = ran_s if mean is None else mean + _MEAN_WEIGHT * (ran_s - mean)

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
        while True:
            try:
                fn, arg = self._jobs.popleft()
            except IndexError:
                if self._closed:
                    with self._start_lock:
                        self._started -= 1
                    return
                self._parked.append(park)
                if self._jobs:  # a job came before this thread was seen parked
                    try:
                        self._parked.remove(park)
                        continue
                    except ValueError:
                        pass  # a waker took it already: take its release
                park.acquire()
                continue
            self._running[ident] = time.monotonic()
            fn(arg)  # callers catch their own errors: _run_sync never raises
            self._finished(ident)

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
