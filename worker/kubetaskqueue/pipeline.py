"""The claim/ack pipeline: claims tasks into free slots, runs them, records successes.

Threads:
- the claim thread: waits for a free slot or a finished success, then acks the
  successes waiting and claims into the slots free, in one script call per topic
  (claim.lua); blocks on the wake-up list when nothing is ready (a manager of one
  topic that claimed lately sends its next claim behind that wait, in one round trip);
- reusable task threads for sync processors (threads.py), and one event loop
  thread for ``async def`` processors.
A success waits for the claim thread's next call, unless that thread is blocked in
Redis or has stopped claiming: then the task's own thread acks it (attempts.py).
Only the claim thread claims, so a round's room (the slots free when it began, and
those its acks free) cannot be taken by another.
Failures (rarer, each with its own backoff) are recorded by the thread that saw them.
An async task settles on the event loop; only its Redis write (a failure's, or an
ack while the claim thread is away) goes to a thread, so the loop never waits on Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable

from .attempts import Attempt, InFlight, Processor
from .cluster import REDIS_ERRORS
from .errors import ConfigError, Retry
from .health import RedisHealth
from .isolation import ChildProcesses
from .metrics import WorkerMetrics
from .outcomes import Recorder
from .ratelimit import LimitDeclarations
from .settings import Settings
from .store import Claimed, RedisStore
from .task import MalformedTaskError, Outcome, Task, call_processor, oversized, success
from .threads import TaskThreads

log = logging.getLogger("kubetaskqueue")

# Redis checks blocked clients' timeouts about every 100 ms (hz 10): a wait on the
# wake-up list may end that much late, so it stops that much early, and waits for
# a due task (or a rate limit's token) shorter than twice that sleep locally.
_SHORT_WAIT_S = 0.1
# An idle manager claims after a wake-up hint, or after this many empty waits.
_IDLE_RECHECK_POLLS = 5

# A claim round: tasks claimed, the soonest next due time (None: none), whether every
# topic was asked, and whether each gave fewer than asked (Pipeline._claim_round).
Round = tuple[int, float | None, bool, bool]


class Pipeline:
    def __init__(self, settings: Settings, store: RedisStore, processors: dict[str, Processor],
                 inflight: InFlight, recorder: Recorder, health: RedisHealth,
                 limits: LimitDeclarations, metrics: WorkerMetrics, manager_id: str,
                 stopping: threading.Event) -> None:
        self.settings = settings
        self.store = store
        self.processors = processors
        self.topics = sorted(processors)
        self.inflight = inflight
        self.recorder = recorder
        self.health = health
        self.limits = limits
        self.metrics = metrics
        self.manager_id = manager_id
        self._stopping = stopping
        self.fatal: BaseException | None = None
        self.claim_loop_done = threading.Event()
        self.burst = False
        self.loop: asyncio.AbstractEventLoop | None = None  # for async processors
        # Called when a sync attempt with a timeout starts (the maintenance thread's kick).
        self.on_deadline: Callable[[], None] = lambda: None
        self._offsets = itertools.count()  # rotates the first topic of each round
        self._claimed_at = -float("inf")  # monotonic: the last claim that leased a task
        self._claims_behind_wait = len(self.topics) == 1 and store.pipelines_on_one_connection
        self.task_threads = TaskThreads("kubetaskqueue-task")
        self.children = ChildProcesses({topic: p.fn for topic, p in processors.items()
                                        if p.isolation == "process"},
                                       max_tasks=settings.child_max_tasks)

    # -- claiming ----------------------------------------------------------------

    def claim_loop(self) -> None:
        try:
            self._check_redis_config()
            came: Round | None = None  # the round the last wait claimed with it, if any
            while not self._stopping.is_set():
                try:
                    if came is None:
                        taken = self.inflight.wait_round(self._stopping)
                        if taken is None:
                            break
                        came = self._claim_round(*taken)
                    claimed, next_due, complete, drained = came
                    came = None
                    self.health.success()
                    # Topics that gave fewer than asked are empty: a round straight after
                    # would claim nothing, and take the GIL from the tasks just started.
                    # Burst mode claims on, so it exits as soon as the last task is done.
                    if not complete or (claimed and (self.burst or not drained)):
                        continue
                    if self.burst and self._nothing_left():
                        break
                    came = self._wait(next_due)
                except REDIS_ERRORS as exc:
                    came = None
                    self._stopping.wait(self.health.failure(exc))
        except ConfigError as exc:
            self.fatal = exc  # Manager.run raises it; the CLI prints one line
        except BaseException as exc:  # a bug here must not leave a silent, idle worker
            log.exception("claim loop stopped by an unexpected error")
            self.fatal = exc
        finally:
            self.claim_loop_done.set()
            self._ack(self.inflight.stop_claiming())

    def _wait(self, next_due: float | None) -> Round | None:
        """Every topic is drained: wait until there may be more to claim. Returns the
        round the wait claimed with it, if it did (``_wait_for_wake``)."""
        if next_due is None and not self.burst:
            return self._wait_idle()
        if next_due is not None and next_due < 2 * _SHORT_WAIT_S:
            self.inflight.wait_done(next_due, self._stopping)
            return None
        wait_s = self.settings.poll_interval_s
        if next_due is not None:
            wait_s = min(wait_s, next_due - _SHORT_WAIT_S)
        return self._wait_for_wake(wait_s)[1]

    def _wait_idle(self) -> Round | None:
        """Nothing ready or scheduled: block on the wake-up list, claiming again only when
        woken. Every move into input or scheduled pushes a hint, so re-claiming after each
        empty wait is needed only as a safety net (a task pushed by hand): every
        ``_IDLE_RECHECK_POLLS`` waits."""
        for _ in range(_IDLE_RECHECK_POLLS):
            if self._stopping.is_set():
                return None
            woken, came = self._wait_for_wake(self.settings.poll_interval_s)
            if woken or (came is not None and (came[0] or came[1] is not None)):
                return came
        return None

    def _wait_for_wake(self, wait_s: float) -> tuple[bool, Round | None]:
        """Block on the wake-up list for up to ``wait_s``: True if woken (or successes
        wait to be acked). A manager of one topic that claimed within the last poll
        interval, so is likely to get more soon, sends its next claim in the same
        pipeline; it returns that claim's round too. An idle one pays no claim a wait."""
        topic = self.topics[0]
        with self.inflight.claimer_away() as may_block:
            if not may_block:
                return True, None
            ask = self.inflight.free
            if (not self._claims_behind_wait or ask <= 0
                    or time.monotonic() - self._claimed_at > self.settings.poll_interval_s):
                return self.store.wait_for_wake(self.topics, wait_s), None
            woken, (_, due_in, rows) = self.store.wait_then_claim(
                topic, wait_s, ask, self.settings.lease_ttl_s, self.manager_id)
        if self._stopping.is_set():  # asked during the wait: another manager may run them
            for row in rows:
                self.store.release(topic, row.id, row.token)
            return woken, None
        self._take_claimed(topic, rows)
        return woken, (len(rows), due_in, True, len(rows) < ask)

    def _check_redis_config(self) -> None:
        """Refuse to work against a Redis that may evict tasks, publish the topics'
        max_queued (for every producer) and declare this manager's rate limits before its
        first claim; wait while Redis is down."""
        while not self._stopping.is_set():
            try:
                warning = self.store.check_eviction_policy()
                for topic, processor in self.processors.items():
                    self.store.declare_max_queued(topic, processor.max_queued)
                self.limits.renew()
                self.health.success()
                if warning:
                    log.warning(warning)
                return
            except ConfigError:
                raise
            except REDIS_ERRORS as exc:
                self._stopping.wait(self.health.failure(exc))

    def _claim_round(self, acks: list[Attempt], free: int) -> Round:
        """Ack ``acks`` and claim into the ``free`` slots and those the acks free, one
        call per topic, starting at a rotating topic for fairness. Returns the tasks
        claimed, the soonest next due time, whether every topic was asked to claim (if
        not, ``next_due`` does not cover them all), and whether each gave fewer than
        asked (none has more ready now)."""
        by_topic: dict[str, list[Attempt]] = {}
        for attempt in acks:
            by_topic.setdefault(attempt.task.topic, []).append(attempt)
        room = free  # what the round may still claim, besides into its acks' slots (< 0: fewer)
        claimed, next_due, asked, drained = 0, None, 0, True
        n = len(self.topics)
        offset = next(self._offsets)
        try:
            for i in range(n):
                topic = self.topics[(offset + i) % n]
                group = by_topic.get(topic, [])
                if room <= 0 and not group:
                    continue
                leases = [(a.task.id, a.task.lease_token) for a in group]
                results = {a.task.id: a.result for a in group if a.result is not None}
                # The script records the topic's acks before it claims: their slots are
                # this call's to fill too.
                ask = max(0, room + len(group))
                fenced, due_in, rows = self.store.ack_and_claim(
                    topic, leases, ask, self.settings.lease_ttl_s, self.manager_id, results,
                    _ran_s(group))
                asked += 1
                drained = drained and len(rows) < ask
                if due_in is not None:
                    next_due = due_in if next_due is None else min(next_due, due_in)
                room += len(group)  # recorded: the acks' slots are the round's to fill
                by_topic.pop(topic, None)
                self._acked(topic, group, fenced)
                self._take_claimed(topic, rows)
                claimed += len(rows)
                room -= len(rows)
        finally:
            self._ack(self.inflight.requeue([a for group in by_topic.values() for a in group]))
        return claimed, next_due, asked == n, drained

    def _nothing_left(self) -> bool:
        """Burst mode ends when this manager's topics have nothing ready, scheduled or in
        flight; a paused topic's queued tasks cannot be claimed, so they do not count."""
        if len(self.inflight):
            return False
        controls = self.store.read_controls(self.topics)
        for topic in self.topics:
            _, inp, sched, _, work, *_ = self.store.inspect(topic)
            if int(work) or (not controls[topic].paused and (int(inp) or int(sched))):
                return False
        return True

    def _take_claimed(self, topic: str, rows: list[Claimed]) -> None:
        """Take the tasks a claim leased (``_start_attempt``)."""
        if rows:
            self._claimed_at = time.monotonic()
        for row in rows:
            self._start_attempt(topic, row)

    def _start_attempt(self, topic: str, row: Claimed) -> None:
        """Take a claimed task: run it if a slot is free, else it waits (prefetched)."""
        try:
            task = Task.from_claim(topic, row)
        except MalformedTaskError as exc:
            log.error("%s; moving it to dead", exc)
            self.recorder.fail(topic, row.id, row.token, row.attempts,
                               Outcome(error=str(exc), bury=True))
            return
        processor = self.processors[topic]
        timeout = task.timeout_s if task.timeout_s is not None else processor.timeout_s
        attempt = Attempt(task, processor, timeout)
        self.metrics.attempt_started(topic, task.wait_s)
        if self.inflight.add(attempt):
            self._run(attempt)

    # -- running -----------------------------------------------------------------

    def _run(self, attempt: Attempt) -> None:
        """Start an attempt that holds a slot: on the event loop or a task thread."""
        processor = attempt.processor
        if processor.is_async:
            assert self.loop is not None
            # Not run_coroutine_threadsafe: its concurrent Future, chained to the task
            # both ways, cost a tenth of the loop's time (W2, redis.asyncio tasks).
            self.loop.call_soon_threadsafe(self._start_async, attempt)
            return
        # A child process times itself. A thread's deadline counts from now: a wait for
        # a task thread counts, a wait for a slot (prefetched) does not.
        if attempt.timeout_s is not None and processor.isolation == "thread":
            attempt.deadline = time.monotonic() + attempt.timeout_s
            self.on_deadline()
        self.task_threads.submit(self._run_sync, attempt)

    def _run_sync(self, attempt: Attempt) -> None:
        # Timed from here, as in _run_async: the run time prefetch goes by is the task's
        # own, not a wait for a thread (which turned prefetch on at W1's start-up).
        attempt.started = time.monotonic()
        if attempt.processor.isolation == "process":
            outcome = self.children.run(attempt.task, attempt.timeout_s)
        else:
            outcome = call_processor(attempt.processor.fn, attempt.task)
        self.task_threads.free()
        self.settle(attempt, outcome)

    def _start_async(self, attempt: Attempt) -> None:
        """On the loop: start an async attempt, unless it was released before it began."""
        if not attempt.settled:
            attempt.async_task = asyncio.ensure_future(self._run_async(attempt))

    def cancel_async(self, attempt: Attempt) -> None:
        """Cancel a released async attempt. Queued on the loop after its ``_start_async``,
        so it finds the task started, or not started at all."""
        assert self.loop is not None

        def cancel() -> None:
            if attempt.async_task is not None:
                attempt.async_task.cancel()

        self.loop.call_soon_threadsafe(cancel)

    async def _run_async(self, attempt: Attempt) -> None:
        attempt.started = time.monotonic()
        task, timeout_s = attempt.task, attempt.timeout_s
        try:
            outcome = success(task, await asyncio.wait_for(attempt.processor.fn(task), timeout_s))
        except TimeoutError:
            outcome = Outcome(error=f"timed out after {timeout_s}s (cancelled)")
        except asyncio.CancelledError:
            return  # released at shutdown; the release already settled it
        except Retry as exc:
            outcome = Outcome(error=f"Retry: {exc}", retry_delay_s=exc.delay_s)
        except Exception:
            outcome = Outcome(error=traceback.format_exc())
        # A success the claim thread acks needs no Redis call: settled on the loop. A
        # thread hop for each (asyncio.to_thread) cost more than a no-op task itself.
        write = self._settle_in_memory(attempt, outcome)
        if write is not None:
            await asyncio.to_thread(write)

    def settle(self, attempt: Attempt, outcome: Outcome) -> None:
        """Record an attempt's outcome in Redis exactly once, then free its slot.

        Successes wait for the claim thread's next call, which acks all that wait
        (unless it is away: then they are acked here); failures (rarer, and each
        needs its own backoff) are recorded right here. A prefetched attempt given
        this one's slot starts first.
        """
        write = self._settle_in_memory(attempt, outcome)
        if write is not None:
            write()

    def _settle_in_memory(self, attempt: Attempt, outcome: Outcome,
                          ) -> Callable[[], None] | None:
        """``settle`` up to its Redis write, which it returns (None: there is none)."""
        first, successor = self.inflight.settle(attempt)
        if not first:
            return None  # timed out or released meanwhile; its lease is gone
        outcome = oversized(outcome, self.settings.max_payload_bytes)
        if outcome.error is None:
            attempt.result = outcome.result
            # Before the successor is queued for a thread (it is counted in neither).
            mine = self.inflight.succeeded(attempt, self.task_threads.queued)
            if successor is not None:
                self._run(successor)
            return (lambda: self._ack(mine)) if mine else None
        if successor is not None:
            self._run(successor)
        return lambda: self._record_failure(attempt, outcome)

    def _record_failure(self, attempt: Attempt, outcome: Outcome) -> None:
        task = attempt.task
        try:
            self.recorder.fail(task.topic, task.id, task.lease_token, task.attempt, outcome,
                               time.monotonic() - attempt.started,
                               retries_left=not task.is_last_attempt)
        finally:
            self.inflight.finish([attempt])

    # -- acking --------------------------------------------------------------------

    def _ack(self, attempts: list[Attempt]) -> None:
        """Ack successes outside a claim call (the claim thread is away), per topic."""
        by_topic: dict[str, list[Attempt]] = {}
        for attempt in attempts:
            by_topic.setdefault(attempt.task.topic, []).append(attempt)
        for topic, group in by_topic.items():
            leases = [(a.task.id, a.task.lease_token) for a in group]
            results = {a.task.id: a.result for a in group if a.result is not None}
            ran_s = _ran_s(group)
            try:
                fenced = self.recorder.until_recorded(
                    lambda: self.store.ack_many(topic, leases, results, ran_s),  # noqa: B023
                    f"{len(group)} finished task(s) of {topic!r}")
                self._acked(topic, group, fenced)
            except Exception:  # a bug here must not keep the slots busy forever
                log.exception("recording %d finished task(s) of %r failed", len(group), topic)
                self.inflight.finish(group)

    def _acked(self, topic: str, group: list[Attempt], fenced: set[str] | None) -> None:
        """Ack recorded ``group`` (None: given up on): count it, free its slots."""
        try:
            if fenced is not None:
                self.recorder.acked(topic, group, fenced)
        finally:
            self.inflight.finish(group)


def _ran_s(group: list[Attempt]) -> float:
    """How long the attempts of ``group`` ran in all, until now."""
    return time.monotonic() * len(group) - sum(a.started for a in group)
