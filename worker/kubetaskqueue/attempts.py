"""The attempts a manager holds leases for, and the slots they take.

One condition guards the table: the claim thread waits on it for a free slot or
a success to ack, graceful stop for the table to empty. A slot is freed (the
attempt leaves the table) only after its outcome is recorded in Redis, so a
manager never holds more leases than its slots plus the prefetch allowed when it
claimed (below).

Successes wait in ``done`` for the next claim round, which acks them in its claim
call; while more than half the prefetch is still to start (queued for a task
thread or waiting for a slot), the claim thread lets successes gather (at most
``ACK_BATCH_S``) so one round acks many, and its claims arrive before the slots
run dry.
Only the claim thread runs rounds, one at a time: a round fills the slots free
when it began and those its own acks free (the same script records the acks
before it claims). Task threads running rounds of their own, overlapping the
claim thread's round trips, was measured slower (more threads contending for
the GIL and for Redis). While the claim thread is blocked in Redis (nothing to
claim) or has stopped claiming, nobody would take successes soon: then the
thread that finished the task acks it itself.

Prefetch: a round claims tasks beyond the slots (leased and heartbeated like the
others), so that no slot sits idle for a claim round trip; they wait in
``_waiting`` and a finishing attempt hands its slot straight to the oldest, with
no round trip between. Only as many as start within ``PREFETCH_WAIT_S`` are
held, so no task waits here long while another manager could run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .isolation import Isolation
from .ratelimit import RateLimit
from .task import Task


@dataclass(frozen=True)
class Processor:
    fn: Callable[[Task], Any]
    timeout_s: float | None
    is_async: bool
    isolation: Isolation = "thread"
    max_queued: int | None = None  # the topic's enqueue limit, published at start
    rate_limit: RateLimit | None = None


@dataclass
class Attempt:
    """One task in flight in this manager."""

    task: Task
    processor: Processor
    timeout_s: float | None = None  # the task's, else the topic's
    started: float = field(default_factory=time.monotonic)  # claimed; reset when it runs
    deadline: float | None = None  # monotonic; sync processors in task threads only
    settled: bool = False  # acked, failed, timed out or released: later results are dropped
    async_task: asyncio.Task[None] | None = None  # async processors only, once started
    result: str | None = None  # JSON of the return value, for a task that keeps it
    running: bool = False  # holds a slot (else it waits for one, prefetched)


Leases = dict[str, list[tuple[str, str]]]  # topic -> (id, lease token)

# While more than half the prefetch is still to start, a success waits this long at
# most for others to be acked with it in one claim round (seconds): fewer, larger rounds.
ACK_BATCH_S = 0.002
# A round holds as many tasks beyond the slots as the slots start within
# PREFETCH_WAIT_S, by the median of the last PREFETCH_SAMPLES run times, at most the
# manager's ``prefetch``: for short tasks all of it, so the next claim round runs while
# the tasks held run (W1: with no task running for 43 % of the time, one claim round
# trip after another, before this). A median, not a mean: a task thread starved of the
# GIL for 50 ms once in a while must not shrink it.
PREFETCH_SAMPLES = 31
PREFETCH_WAIT_S = 0.01


class InFlight:
    def __init__(self, slots: int, prefetch: int = 0) -> None:
        self.slots = slots
        self.prefetch = prefetch
        self.cond = threading.Condition()
        self._attempts: dict[tuple[str, str], Attempt] = {}
        self._done: list[Attempt] = []  # succeeded, not yet acked
        self._done_since = 0.0  # monotonic: when the oldest of _done succeeded
        self._acks_due = False  # _done should be acked now, not batched with later ones
        self._claimer_away = False  # the claim thread cannot take done soon
        self._claimer_waiting = False  # the claim thread waits on cond
        self._waiting: deque[Attempt] = deque()  # prefetched, waiting for a slot
        self._running = 0  # attempts holding a slot
        self._run_times: deque[float] = deque(maxlen=PREFETCH_SAMPLES)  # recent, seconds
        self._prefetch_now = 0  # tasks to hold beyond the slots, set each round

    def _free(self) -> int:
        return self.slots + self._prefetch_now - len(self._attempts)

    def _update_prefetch(self) -> None:
        """How many tasks to hold beyond the slots (see PREFETCH_WAIT_S); once a round,
        not once a task: the median costs microseconds."""
        if not self.prefetch or len(self._run_times) < PREFETCH_SAMPLES:
            self._prefetch_now = 0
            return
        typical_s = statistics.median(self._run_times)
        if typical_s * self.prefetch <= self.slots * PREFETCH_WAIT_S:
            self._prefetch_now = self.prefetch
        else:
            self._prefetch_now = int(self.slots * PREFETCH_WAIT_S / typical_s)

    def wait_round(self, stopping: threading.Event) -> tuple[list[Attempt], int] | None:
        """Block until a slot is free or a success waits; then begin a claim round: take
        the successes to ack. Returns them and the slots free besides theirs, or None
        when a stop is asked. That room is negative when more attempts are held than
        the prefetch allows now (it shrank): their acks then free no room for claims."""
        with self.cond:
            self._update_prefetch()
            while self._free() <= 0 and not stopping.is_set():
                wait_s = None
                if self._done:
                    wait_s = self._done_since + ACK_BATCH_S - time.monotonic()
                    if self._acks_due or wait_s <= 0:
                        break
                self._claimer_waiting = True
                self.cond.wait(wait_s)
                self._claimer_waiting = False
            if stopping.is_set():
                return None
            acks, self._done = self._done, []
            self._acks_due = False
            return acks, self._free()

    def succeeded(self, attempt: Attempt, queued: int) -> list[Attempt]:
        """Queue a success for the next claim round. Returns the successes the caller
        must ack itself (the claim thread is away), usually none. ``queued``: tasks of
        this manager waiting for a thread. The claim thread is woken once a success
        leaves at most half the prefetch not yet started (queued for a thread or
        waiting for a slot), so the round's claims arrive before the slots run dry;
        else ``ACK_BATCH_S`` after the first success."""
        with self.cond:
            if not self._done:
                self._done_since = time.monotonic()
            self._done.append(attempt)
            if self._claimer_away:
                done, self._done = self._done, []
                return done
            # While over half the prefetch is still to start, no slot idles for the round:
            # let successes gather (W2: 10.7 -> 6.1 commands, 109 -> 82 us of CPU a task).
            if queued + len(self._waiting) <= self._prefetch_now // 2:
                self._acks_due = True
            # The first success also wakes it, to start its ACK_BATCH_S timer.
            if self._claimer_waiting and (self._acks_due or len(self._done) == 1):
                self.cond.notify_all()
            return []

    def requeue(self, acks: list[Attempt]) -> list[Attempt]:
        """Successes a claim round did not ack (Redis failed): the next round takes them.
        Returns those the caller must ack itself instead (the claim thread is away)."""
        with self.cond:
            if self._claimer_away:
                return acks
            if acks and not self._done:
                self._done_since = time.monotonic()
            self._done[:0] = acks
            return []

    @contextlib.contextmanager
    def claimer_away(self) -> Iterator[bool]:
        """Around a blocking Redis call of the claim thread: True if it may block (nothing
        is waiting to be acked); successes meanwhile are acked by their own threads."""
        with self.cond:
            if self._done:
                yield False
                return
            self._claimer_away = True
        try:
            yield True
        finally:
            with self.cond:
                self._claimer_away = False

    def stop_claiming(self) -> list[Attempt]:
        """The claim thread ends: from now on every success is acked by its own thread.
        Returns the successes waiting for it."""
        with self.cond:
            self._claimer_away = True
            done, self._done = self._done, []
            return done

    def wait_done(self, timeout_s: float, stopping: threading.Event) -> None:
        """Sleep up to ``timeout_s``, less if a success waits to be acked or a stop is asked."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not self._done and not stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._claimer_waiting = True
                self.cond.wait(left)
                self._claimer_waiting = False

    def __len__(self) -> int:
        with self.cond:
            return len(self._attempts)

    @property
    def free(self) -> int:
        """Slots (and prefetch room) free now; only grows while the claim thread waits."""
        with self.cond:
            return self._free()

    @property
    def running(self) -> int:
        """Attempts holding a slot (the others are prefetched, waiting)."""
        with self.cond:
            return self._running

    def add(self, attempt: Attempt) -> bool:
        """Take a claimed attempt: True if it has a slot and runs now, False if it waits
        (prefetched) until ``settle`` hands it one."""
        with self.cond:
            self._attempts[(attempt.task.topic, attempt.task.id)] = attempt
            if self._running < self.slots:
                self._running += 1
                attempt.running = True
            else:
                self._waiting.append(attempt)
            return attempt.running

    def settle(self, attempt: Attempt) -> tuple[bool, Attempt | None]:
        """Claim the right to record ``attempt``'s outcome: False if another path (timeout,
        release) already did. The first settle passes its slot on: it returns the
        prefetched attempt that takes it, for the caller to run."""
        with self.cond:
            if attempt.settled:
                return False, None
            attempt.settled = True
            if not attempt.running:
                return True, None  # prefetched: it held no slot to pass on
            self._run_times.append(time.monotonic() - attempt.started)
            while self._waiting:
                successor = self._waiting.popleft()
                if not successor.settled:
                    successor.running = True
                    return True, successor
            self._running -= 1
            return True, None

    def drop_waiting(self) -> list[Attempt]:
        """Graceful stop: settle and return the prefetched attempts that never ran, to be
        released back to input at once."""
        with self.cond:
            dropped = [a for a in self._waiting if not a.settled]
            self._waiting.clear()
            for attempt in dropped:
                attempt.settled = True
                self._attempts.pop((attempt.task.topic, attempt.task.id), None)
            self.cond.notify_all()
            return dropped

    def finish(self, attempts: list[Attempt]) -> None:
        """Their outcomes are recorded (or given up on): free their slots."""
        with self.cond:
            for attempt in attempts:
                self._attempts.pop((attempt.task.topic, attempt.task.id), None)
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait_empty(self, grace_s: float, force: threading.Event) -> list[Attempt]:
        """Wait up to ``grace_s`` for every attempt to finish; settle and return the rest."""
        deadline = time.monotonic() + grace_s
        with self.cond:
            while self._attempts and not force.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
            leftover = [a for a in self._attempts.values() if not a.settled]
            for attempt in leftover:
                attempt.settled = True
            return leftover

    def leases(self) -> tuple[Leases, int]:
        """The leases of unsettled attempts by topic (prefetched ones too), and how many
        slots are busy."""
        by_topic: Leases = {}
        with self.cond:
            for attempt in self._attempts.values():
                if not attempt.settled:
                    task = attempt.task
                    by_topic.setdefault(task.topic, []).append((task.id, task.lease_token))
            return by_topic, self._running

    def unsettled(self, topic: str, ids: list[str]) -> list[str]:
        """Those of ``ids`` still in flight and unsettled."""
        with self.cond:
            return [i for i in ids if (a := self._attempts.get((topic, i))) and not a.settled]

    def past_deadline(self, now: float) -> tuple[list[Attempt], float | None]:
        """Unsettled attempts past their deadline, and the next deadline of the others."""
        expired, next_deadline = [], None
        with self.cond:
            for attempt in self._attempts.values():
                if attempt.deadline is None or attempt.settled:
                    continue
                if attempt.deadline <= now:
                    expired.append(attempt)
                elif next_deadline is None or attempt.deadline < next_deadline:
                    next_deadline = attempt.deadline
        return expired, next_deadline
