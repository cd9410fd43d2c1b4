"""ThreadLimit: trials of fewer (or more) task threads, judged by the jobs' rate."""

from __future__ import annotations

import itertools
import math
import time

from kubetaskqueue.thread_limit import (
    BUSY_SHARE,
    FIRST_WAIT_WINDOWS,
    TOLERANCE,
    WINDOW_JOBS,
    ThreadLimit,
)

STARTED = 16  # threads the pool has started


class Clock:
    """Feeds a ThreadLimit whole windows of jobs at a chosen rate and CPU share."""

    def __init__(self, limit: ThreadLimit) -> None:
        self.limit = limit
        self.now = time.monotonic()

    def window(self, rate: float, busy: float = 0.9, awake: int | None = None) -> float:
        """One window of jobs finishing ``rate`` a second, their CPU time ``busy`` of the
        wall time, with ``awake`` threads awake (default: as many as the limit allows).
        Returns the limit after it."""
        if awake is None:
            awake = int(min(self.limit.limit, STARTED))
        for _ in range(WINDOW_JOBS):
            self.now += 1 / rate
            self.limit.finished(self.now, busy / rate, awake, STARTED)
        return self.limit.limit

    def judged(self, rate: float) -> float:
        """The window a change began in (not judged), then the one judged, at ``rate``."""
        self.window(rate)
        return self.window(rate)

    def until_trial(self, rate: float) -> float:
        """Windows at ``rate`` until one starts a trial; returns the trial's limit."""
        before = self.limit.limit
        for _ in range(100):
            if self.window(rate) != before:
                return self.limit.limit
        raise AssertionError("no trial in 100 windows")


def test_fewer_threads_as_fast_are_kept_down_to_one() -> None:
    clock = Clock(ThreadLimit())
    assert clock.until_trial(5000) == STARTED // 2
    limits = []
    while len(limits) < 12 and clock.limit.limit > 1:
        limits.append(clock.window(5000))
    assert limits[-1] == 1
    # every halving was kept: the limit only went down, and by half at a time
    assert all(a >= b for a, b in itertools.pairwise(limits))
    assert {STARTED // 2, STARTED // 4, STARTED // 8, 1} <= set(limits)


def test_a_slower_trial_is_undone_and_the_next_one_waits_longer() -> None:
    clock = Clock(ThreadLimit())
    assert clock.until_trial(5000) == STARTED // 2
    assert clock.judged(5000 * (1 - 2 * TOLERANCE)) == math.inf  # slower: undone
    waited = 0
    while clock.window(5000) == math.inf:
        waited += 1
    assert waited == 1 + FIRST_WAIT_WINDOWS  # windows before the next trial (one settles)
    assert clock.judged(5000 * (1 - 2 * TOLERANCE)) == math.inf  # undone again
    waited = 0
    while clock.window(5000) == math.inf:
        waited += 1
    assert waited == 1 + 2 * FIRST_WAIT_WINDOWS


def test_a_trial_is_judged_after_the_jobs_begun_before_it_have_finished() -> None:
    """Long jobs begun on every thread still finish in the window a halving began in,
    at the old rate: that window is not the halving's."""
    clock = Clock(ThreadLimit())
    assert clock.until_trial(5000) == STARTED // 2
    assert clock.window(5000) == STARTED // 2  # the jobs of all 16 threads finishing
    assert clock.window(3500) == math.inf  # the halving's own window: slower, undone


def test_a_trial_is_set_against_the_windows_before_it_not_one_slow_one() -> None:
    clock = Clock(ThreadLimit())
    for _ in range(FIRST_WAIT_WINDOWS):
        assert clock.window(5000) == math.inf
    assert clock.window(3000) == STARTED // 2  # a slow window (noise) starts the trial
    assert clock.judged(3800) == math.inf  # slower than the windows before it: undone


def test_jobs_that_leave_the_cpu_idle_lift_the_limit() -> None:
    clock = Clock(ThreadLimit())
    clock.until_trial(5000)
    clock.judged(5000)  # the halving is kept
    assert clock.limit.limit < STARTED
    # Jobs that mostly wait (I/O) do not contend for the GIL: every thread may run.
    assert clock.window(5000, busy=BUSY_SHARE / 3) == math.inf


def test_no_cut_is_tried_while_the_jobs_leave_the_gil_half_idle() -> None:
    clock = Clock(ThreadLimit())
    for _ in range(50):
        assert clock.window(5000, busy=BUSY_SHARE * 0.8) == math.inf


def test_a_lowered_limit_is_tried_higher_and_kept_if_faster() -> None:
    clock = Clock(ThreadLimit())
    clock.until_trial(5000)
    while clock.limit.limit > 1:  # as fast on fewer threads: down to one
        clock.window(5000)
    assert clock.until_trial(5000) == 2  # from one thread, the trial is two
    assert clock.judged(5000 * (1 + 2 * TOLERANCE)) == 2  # faster: kept
    assert clock.window(5500) == 4  # and it goes on upward at once
    assert clock.judged(5500) == 2  # not faster on four: back to two
