"""How many task threads to keep awake, found by trying fewer (or more) and measuring.

The CPU-share rule in threads.py reads its signal under the concurrency it sets:
with 64 threads contending for the GIL, a job of one Redis call runs 20 ms and
seems to wait 99 % of it, so the rule keeps a thread per job, and the contention
that misled it stays (64 slots: 2.8k tasks/s at 367 µs of CPU each, against 5k/s
on two threads). Whether fewer threads are as fast is a question only a trial
answers, so this one tries: every so often it halves the threads awake, and keeps
the halving if the jobs finished about as fast; a limit once lowered is tried
higher again the same way.

A trial is judged on one window of jobs, against the median of the (up to
``BASE_WINDOWS``) windows before it under the old limit, and not on the window it
began in: the jobs running when the limit changed still finish in that one, at
the old concurrency. With 10 ms jobs on 64 threads a window of 128 jobs is two
jobs long, and window rates vary by 15 % on a busy machine: judged at once and
against one window, halvings looked as fast and were kept (W2, one Redis call a
job: a limit of 32 for most of a run, 2.7k tasks/s against 3.9k/s on every thread).

Fewer threads are tried only while the jobs keep the GIL busy (their CPU time
summed is ``BUSY_SHARE`` of the window or more), and a window under half that
lifts any limit at once: threads that mostly wait do not contend (10 ms sleeps on
64 slots need all 64), and then the rate says more about the arrivals than about
the threads. A trial that was slower is undone, and the next one waits twice as
many windows (up to ``MAX_WAIT_WINDOWS``).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque

# Jobs a window counts. A window is the unit of comparison: its rate is jobs/second.
WINDOW_JOBS = 128
# A trial's rate is set against the median of this many windows before it, at most.
BASE_WINDOWS = 3
# A trial with fewer threads is kept unless its window was this much slower; one with
# more threads only if this much faster (the noise of one window on a quiet machine).
TOLERANCE = 0.05
# The share of a window's wall time its jobs spent on the CPU (the threads' CPU time
# summed) from which the GIL is the bottleneck and fewer threads are tried; under half
# of it, no limit. (One thread of jobs that each wait a half: 0.5.)
BUSY_SHARE = 0.5
# Windows between trials after one failed, doubling with each failure up to the max.
FIRST_WAIT_WINDOWS = 4
MAX_WAIT_WINDOWS = 64


class ThreadLimit:
    def __init__(self) -> None:
        self.limit = math.inf  # threads to keep awake at most
        self._lock = threading.Lock()  # window ends only; jobs never wait on it
        self._jobs = 0  # finished in this window
        self._cpu_s = 0.0  # their CPU time
        self._start = time.monotonic()
        self._trial: tuple[float, float] | None = None  # (limit before it, rate before it)
        self._settling = False  # this window began under another limit: not judged
        self._rates: deque[float] = deque(maxlen=BASE_WINDOWS)  # windows since the last change
        self._wait = FIRST_WAIT_WINDOWS  # windows until the next trial
        self._wait_after_failure = FIRST_WAIT_WINDOWS
        self._try_more = False  # the next trial raises the limit (as does one from 1)

    def finished(self, now: float, cpu_s: float, awake: int, started: int) -> None:
        """A job finished at ``now`` after ``cpu_s`` of CPU time, with ``awake`` of the
        ``started`` threads awake. Unlocked but for a window's end: two threads racing
        here may lose a count, which a rate over 128 jobs does not notice."""
        self._jobs += 1
        self._cpu_s += cpu_s
        if self._jobs < WINDOW_JOBS or not self._lock.acquire(blocking=False):
            return
        try:
            wall_s = max(now - self._start, 1e-9)
            rate, busy = self._jobs / wall_s, self._cpu_s / wall_s
            self._jobs, self._cpu_s, self._start = 0, 0.0, now
            if self._settling:
                self._settling = False
            elif busy >= BUSY_SHARE / 2 or self._trial is not None:  # a trial: judged by rate
                self._judge(rate, awake, started, may_cut=busy >= BUSY_SHARE)
            else:
                self._change(math.inf)
                self._try_more = False
        finally:
            self._lock.release()

    def _judge(self, rate: float, awake: int, started: int, may_cut: bool) -> None:
        if self._trial is not None:
            before, base = self._trial
            self._trial = None
            fewer = self.limit < before
            kept = rate >= base * (1 - TOLERANCE) if fewer else rate > base * (1 + TOLERANCE)
            if kept:
                self._rates.append(rate)  # a window under the limit kept
                if self.limit >= started:
                    self.limit = math.inf
                self._try_more = not fewer and self.limit < started  # go on the same way
                self._wait = 0 if fewer or self._try_more else FIRST_WAIT_WINDOWS
                self._wait_after_failure = FIRST_WAIT_WINDOWS
            else:
                self._change(before)
                self._try_more = fewer and before < started  # a lowered limit: try higher
                self._wait = self._wait_after_failure
                self._wait_after_failure = min(2 * self._wait_after_failure, MAX_WAIT_WINDOWS)
            return
        self._rates.append(rate)
        if self._wait > 0:
            self._wait -= 1
            return
        current = max(1, min(self.limit, awake))
        if (self._try_more or current == 1) and self.limit < started:
            self._start_trial(current * 2)
        elif current > 1 and may_cut:
            self._start_trial(max(1, current // 2))
        self._try_more = False

    def _start_trial(self, limit: float) -> None:
        self._trial = (self.limit, statistics.median(self._rates))
        self._change(limit)

    def _change(self, limit: float) -> None:
        """Set a new limit: the window now begun is not judged, nor a base for a trial."""
        if limit != self.limit:
            self.limit = limit
            self._settling = True
            self._rates.clear()
