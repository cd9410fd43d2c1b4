"""The attempts a manager holds leases for, and the slots they take.

One condition guards the table: the claim thread waits on it for a free slot or
a success to ack, graceful stop for the table to empty. A slot is freed (the
attempt leaves the table) only after its outcome is recorded in Redis, so a
manager never holds more leases than it has slots.

Successes wait in ``done`` for the next claim round, which acks them in its claim
call; while more tasks wait for a task thread, the claim thread lets successes
gather (until none is queued, at most ``ACK_BATCH_S``) so one round acks many.
Only the claim thread runs rounds, one at a time: a round fills the slots free
when it began and those its own acks free (the same script records the acks
before it claims). Task threads running rounds of their own, overlapping the
claim thread's round trips, was measured slower (more threads contending for
the GIL and for Redis). While the claim thread is blocked in Redis (nothing to
claim) or has stopped claiming, nobody would take successes soon: then the
thread that finished the task acks it itself.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
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
    started: float = field(default_factory=time.monotonic)
    deadline: float | None = None  # monotonic; sync processors in task threads only
    settled: bool = False  # acked, failed, timed out or released: later results are dropped
    future: concurrent.futures.Future[None] | None = None  # async processors only
    result: str | None = None  # JSON of the return value, for a task that keeps it


Leases = dict[str, list[tuple[str, str]]]  # topic -> (id, lease token)

# While more of its tasks wait for a thread, a success waits this long at most for
# others to be acked with it in one claim round (seconds): fewer, larger rounds.
ACK_BATCH_S = 0.002


class InFlight:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.cond = threading.Condition()
        self._attempts: dict[tuple[str, str], Attempt] = {}
        self._done: list[Attempt] = []  # succeeded, not yet acked
        self._done_since = 0.0  # monotonic: when the oldest of _done succeeded
        self._acks_due = False  # _done should be acked now, not batched with later ones
        self._claimer_away = False  # the claim thread cannot take done soon
        self._claimer_waiting = False  # the claim thread waits on cond

    def _free(self) -> int:
        return self.slots - len(self._attempts)

    def wait_round(self, stopping: threading.Event) -> tuple[list[Attempt], int] | None:
        """Block until a slot is free or a success waits; then begin a claim round: take
        the successes to ack. Returns them and the slots free besides theirs, or None
        when a stop is asked."""
        with self.cond:
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
            return acks, max(0, self._free())

    def succeeded(self, attempt: Attempt, more_queued: bool) -> list[Attempt]:
        """Queue a success for the next claim round. Returns the successes the caller
        must ack itself (the claim thread is away), usually none. ``more_queued``: tasks
        of this manager wait for a thread, so more successes follow soon: the claim
        thread is woken once a success comes with none queued, or ``ACK_BATCH_S``
        after the first."""
        with self.cond:
            if not self._done:
                self._done_since = time.monotonic()
            self._done.append(attempt)
            if self._claimer_away:
                done, self._done = self._done, []
                return done
            # Waking it once half the slots waited cost 43 % more CPU a task (89 -> 127 us, W1).
            if not more_queued:
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

    def add(self, attempt: Attempt) -> None:
        with self.cond:
            self._attempts[(attempt.task.topic, attempt.task.id)] = attempt

    def settle(self, attempt: Attempt) -> bool:
        """Claim the right to record ``attempt``'s outcome: False if another path (timeout,
        release) already did."""
        with self.cond:
            if attempt.settled:
                return False
            attempt.settled = True
            return True

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
        """The leases of unsettled attempts by topic, and how many slots are busy."""
        by_topic: Leases = {}
        with self.cond:
            for attempt in self._attempts.values():
                if not attempt.settled:
                    task = attempt.task
                    by_topic.setdefault(task.topic, []).append((task.id, task.lease_token))
            return by_topic, len(self._attempts)

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
