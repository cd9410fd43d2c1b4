"""The worker runtime: claims tasks into free slots, runs them, keeps their leases alive.

Threads:
- claim loop: waits for a free slot, claims from Redis, blocks on the wake-up
  list when nothing is ready;
- maintenance: heartbeat (lease renewal + manager entry), reaping expired
  leases of every manager, and per-task timeouts of sync processors;
- reusable task threads for sync processors (threads.py), and one event loop
  thread for ``async def`` processors.
The heartbeat lives in its own thread so a task that computes for minutes in
pure Python cannot starve it (the interpreter switches threads every 5 ms).
A C call that holds the GIL can; topics registered with ``isolation="process"``
run in child processes (isolation.py), their task thread only waits on a pipe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import defaults
from .backoff import Backoff
from .cluster import REDIS_ERRORS
from .errors import ConfigError, Retry, error_line
from .isolation import ChildProcesses, Isolation
from .metrics import WorkerMetrics
from .ratelimit import LimitDeclarations, RateLimit
from .settings import Settings
from .store import Claimed, RedisStore, redact_url
from .task import MalformedTaskError, Outcome, Task, call_processor, oversized, success
from .threads import TaskThreads

log = logging.getLogger("kubetaskqueue")

T = TypeVar("T")

# Redis checks blocked clients' timeouts about every 100 ms (hz 10): a wait on the
# wake-up list may end that much late, so it stops that much early, and waits for
# a due task (or a rate limit's token) shorter than twice that sleep locally.
_SHORT_WAIT_S = 0.1
# Successes acked in one script call at most (per topic).
_ACK_BATCH = 256
# An idle manager claims after a wake-up hint, or after this many empty waits.
_IDLE_RECHECK_POLLS = 5


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


class RedisHealth:
    """Tracks whether Redis answers, logging each change of state once."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self.ok = True
        self._failures = 0

    def success(self) -> None:
        with self._lock:
            if not self.ok:
                log.info("Redis at %s is reachable again", self._url)
            self.ok, self._failures = True, 0

    def failure(self, exc: Exception) -> float:
        """Record a failed call; returns how long to back off before the next one."""
        with self._lock:
            if self.ok:
                log.warning("Redis at %s is unreachable (%s); retrying with backoff, "
                            "in-flight tasks keep running", self._url, exc)
            self.ok = False
            self._failures += 1
            return min(defaults.RECONNECT_MAX_S,
                       defaults.RECONNECT_MIN_S * 2.0 ** min(self._failures, 10))


class Runner:
    def __init__(self, settings: Settings, store: RedisStore, processors: dict[str, Processor],
                 backoff: Backoff, manager_id: str, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.processors = processors
        self.backoff = backoff
        self.manager_id = manager_id
        self.topics = sorted(processors)
        self.redis = RedisHealth(redact_url(settings.redis_url))
        self.fatal: BaseException | None = None
        self.claim_loop_done = threading.Event()
        self._cond = threading.Condition()
        self._inflight: dict[tuple[str, str], Attempt] = {}
        self._stopping = threading.Event()  # stop claiming
        self._force = threading.Event()  # stop waiting for in-flight tasks
        self._maint_kick = threading.Event()
        self._maint_stop = threading.Event()
        self._burst = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task_threads = TaskThreads("kubetaskqueue-task")
        self._children = ChildProcesses({topic: p.fn for topic, p in processors.items()
                                         if p.isolation == "process"},
                                        max_tasks=settings.child_max_tasks)
        self._acks: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()  # None = stop
        self._limits = LimitDeclarations(
            store, manager_id, {t: p.rate_limit for t, p in processors.items() if p.rate_limit},
            settings.num_workers, settings.lease_ttl_s)
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------

    def start(self, *, burst: bool = False) -> None:
        self._burst = burst
        self.metrics.track_slots(lambda: self.busy, self.settings.num_workers)
        if any(p.is_async for p in self.processors.values()):
            self._loop = asyncio.new_event_loop()
            self._spawn("kubetaskqueue-async", self._loop.run_forever)
        self._spawn("kubetaskqueue-ack", self._ack_loop)
        self._spawn("kubetaskqueue-claim", self._claim_loop)
        self._spawn("kubetaskqueue-maintenance", self._maintenance_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def request_stop(self) -> None:
        """Stop claiming; in-flight tasks go on."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def force(self) -> None:
        """Stop waiting for in-flight tasks: release them now."""
        self._force.set()
        self.request_stop()

    @property
    def draining(self) -> bool:
        return self._stopping.is_set()

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._inflight)

    def stop(self, grace_s: float) -> None:
        """Stop claiming, wait up to ``grace_s`` for in-flight tasks, release the rest."""
        self.request_stop()
        deadline = time.monotonic() + grace_s
        with self._cond:
            if self._inflight:
                log.info("stopping: waiting up to %.0fs for %d in-flight task(s)",
                         grace_s, len(self._inflight))
            while self._inflight and not self._force.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            leftover = [a for a in self._inflight.values() if not a.settled]
            for attempt in leftover:
                attempt.settled = True
        self._children.close()  # a released task must stop before another manager claims it
        for attempt in leftover:
            self._release(attempt)
        self._maint_stop.set()
        self._maint_kick.set()
        self._acks.put(None)
        for thread in self._threads:
            if thread.name != "kubetaskqueue-async":
                thread.join(timeout=self.settings.poll_interval_s + 5)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._task_threads.close()
        self._force.set()  # outcome writes still retrying against a dead Redis give up
        try:
            self._limits.withdraw()
            self.store.deregister_manager(self.manager_id)
        except REDIS_ERRORS as exc:
            log.warning("could not deregister manager %s: %s (its entry expires by itself)",
                        self.manager_id, exc)

    def _release(self, attempt: Attempt) -> None:
        task = attempt.task
        if attempt.future is not None:
            attempt.future.cancel()
        try:
            released = self.store.release(task.topic, task.id, task.lease_token)
        except REDIS_ERRORS as exc:
            log.warning("could not release task %s (%s); it restarts when its lease expires",
                        task.id, exc)
            return
        if released:
            log.info("released unfinished task %s of %r back to input", task.id, task.topic)
            self.metrics.attempt_finished(task.topic, "released",
                                          time.monotonic() - attempt.started)
        with self._cond:
            self._inflight.pop((task.topic, task.id), None)
            self._cond.notify_all()

    # -- claiming ----------------------------------------------------------------

    def _free_slots(self) -> int:
        with self._cond:
            while len(self._inflight) >= self.settings.num_workers and not self._stopping.is_set():
                self._cond.wait()
            return self.settings.num_workers - len(self._inflight)

    def _claim_loop(self) -> None:
        try:
            self._check_redis_config()
            offset = 0
            while not self._stopping.is_set():
                free = self._free_slots()
                if self._stopping.is_set():
                    break
                try:
                    claimed, next_due = self._claim_round(free, offset)
                    offset += 1
                    self.redis.success()
                    if claimed:
                        continue
                    if self._burst and self._nothing_left():
                        break
                    if next_due is None and not self._burst:
                        self._wait_idle()
                        continue
                    if next_due is not None and next_due < 2 * _SHORT_WAIT_S:
                        self._stopping.wait(next_due)
                        continue
                    wait_s = self.settings.poll_interval_s
                    if next_due is not None:
                        wait_s = min(wait_s, next_due - _SHORT_WAIT_S)
                    self.store.wait_for_wake(self.topics, wait_s)
                except REDIS_ERRORS as exc:
                    self._stopping.wait(self.redis.failure(exc))
        except ConfigError as exc:
            self.fatal = exc  # Manager.run raises it; the CLI prints one line
        except BaseException as exc:  # a bug here must not leave a silent, idle worker
            log.exception("claim loop stopped by an unexpected error")
            self.fatal = exc
        finally:
            self.claim_loop_done.set()

    def _wait_idle(self) -> None:
        """Nothing ready or scheduled: block on the wake-up list, claiming again only when
        woken. Every move into input or scheduled pushes a hint, so re-claiming after each
        empty wait is needed only as a safety net (a task pushed by hand): every
        ``_IDLE_RECHECK_POLLS`` waits."""
        for _ in range(_IDLE_RECHECK_POLLS):
            if self._stopping.is_set():
                return
            if self.store.wait_for_wake(self.topics, self.settings.poll_interval_s):
                return

    def _check_redis_config(self) -> None:
        """Refuse to work against a Redis that may evict tasks, publish the topics'
        max_queued (for every producer) and declare this manager's rate limits before its
        first claim; wait while Redis is down."""
        while not self._stopping.is_set():
            try:
                warning = self.store.check_eviction_policy()
                for topic, processor in self.processors.items():
                    self.store.declare_max_queued(topic, processor.max_queued)
                self._limits.renew()
                self.redis.success()
                if warning:
                    log.warning(warning)
                return
            except ConfigError:
                raise
            except REDIS_ERRORS as exc:
                self._stopping.wait(self.redis.failure(exc))

    def _claim_round(self, free: int, offset: int) -> tuple[int, float | None]:
        """Claim up to ``free`` tasks across topics, starting at a rotating topic for fairness."""
        claimed, next_due = 0, None
        n = len(self.topics)
        for i in range(n):
            if claimed >= free:
                break
            topic = self.topics[(offset + i) % n]
            due_in, rows = self.store.claim(topic, free - claimed, self.settings.lease_ttl_s,
                                            self.manager_id)
            if due_in is not None:
                next_due = due_in if next_due is None else min(next_due, due_in)
            for row in rows:
                self._start_attempt(topic, row)
            claimed += len(rows)
        return claimed, next_due

    def _nothing_left(self) -> bool:
        """Burst mode ends when this manager's topics have nothing ready, scheduled or in
        flight; a paused topic's queued tasks cannot be claimed, so they do not count."""
        if self.busy:
            return False
        controls = self.store.read_controls(self.topics)
        for topic in self.topics:
            _, inp, sched, _, work, *_ = self.store.inspect(topic)
            if int(work) or (not controls[topic].paused and (int(inp) or int(sched))):
                return False
        return True

    def _start_attempt(self, topic: str, row: Claimed) -> None:
        try:
            task = Task.from_claim(topic, row)
        except MalformedTaskError as exc:
            log.error("%s; moving it to dead", exc)
            self._fail_in_redis(topic, row.id, row.token, row.attempts,
                                Outcome(error=str(exc), bury=True))
            return
        processor = self.processors[topic]
        timeout = task.timeout_s if task.timeout_s is not None else processor.timeout_s
        attempt = Attempt(task, processor, timeout)
        self.metrics.attempt_started(topic, task.wait_s)
        with self._cond:
            self._inflight[(topic, task.id)] = attempt
        if processor.is_async:
            assert self._loop is not None
            attempt.future = asyncio.run_coroutine_threadsafe(
                self._run_async(attempt, timeout), self._loop)
            return
        if timeout is not None and processor.isolation == "thread":  # a child times itself
            attempt.deadline = attempt.started + timeout
            self._maint_kick.set()
        self._task_threads.submit(self._run_sync, attempt)

    # -- running -----------------------------------------------------------------

    def _run_sync(self, attempt: Attempt) -> None:
        if attempt.processor.isolation == "process":
            outcome = self._children.run(attempt.task, attempt.timeout_s)
        else:
            outcome = call_processor(attempt.processor.fn, attempt.task)
        self._settle(attempt, outcome)

    async def _run_async(self, attempt: Attempt, timeout_s: float | None) -> None:
        task = attempt.task
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
        await asyncio.to_thread(self._settle, attempt, outcome)

    def _settle(self, attempt: Attempt, outcome: Outcome) -> None:
        """Record an attempt's outcome in Redis exactly once, then free its slot.

        Successes go to the ack thread, which acks all that are waiting in one
        script call per topic; failures (rarer, and each needs its own backoff)
        are recorded right here.
        """
        with self._cond:
            if attempt.settled:
                return  # timed out or released meanwhile; its lease is gone
            attempt.settled = True
        outcome = oversized(outcome, self.settings.max_payload_bytes)
        if outcome.error is None:
            attempt.result = outcome.result
            self._acks.put(attempt)
            return
        task = attempt.task
        try:
            self._fail_in_redis(task.topic, task.id, task.lease_token, task.attempt, outcome,
                                time.monotonic() - attempt.started,
                                retries_left=not task.is_last_attempt)
        finally:
            with self._cond:
                self._inflight.pop((task.topic, task.id), None)
                self._cond.notify_all()

    def _fail_in_redis(self, topic: str, task_id: str, token: str, attempt_no: int,
                       outcome: Outcome, duration_s: float = 0.0,
                       retries_left: bool = False) -> None:
        """Record an attempt that raised, timed out or asked to Retry (successes go through
        the ack thread)."""
        assert outcome.error is not None
        error = outcome.error
        retry_delay_s = outcome.retry_delay_s
        if retry_delay_s is None:
            retry_delay_s = self.backoff(attempt_no - 1) if retries_left else 0.0
        result = self._until_recorded(
            lambda: self.store.fail(topic, task_id, token, error, retry_delay_s,
                                    bury=outcome.bury),
            f"the outcome of task {task_id}")
        if result is None:
            return
        ended = "failed" if result == "dead" else result  # the glossary's word for it
        _log_outcome(topic, task_id, attempt_no, ended, outcome, duration_s)
        # An error: raised, timed out, malformed (a Retry request is not one).
        errored = outcome.retry_delay_s is None and ended != "fenced"
        self.metrics.attempt_finished(topic, ended, duration_s, error=errored)

    def _ack_loop(self) -> None:
        while True:
            batch = [self._acks.get()]
            while batch[-1] is not None and len(batch) < _ACK_BATCH:
                try:
                    batch.append(self._acks.get_nowait())
                except queue.Empty:
                    break
            attempts = [a for a in batch if a is not None]
            by_topic: dict[str, list[Attempt]] = {}
            for attempt in attempts:
                by_topic.setdefault(attempt.task.topic, []).append(attempt)
            for topic, group in by_topic.items():
                self._ack_group(topic, group)
            if len(attempts) < len(batch):
                return  # stop() asked: everything before the marker is recorded

    def _ack_group(self, topic: str, group: list[Attempt]) -> None:
        leases = [(a.task.id, a.task.lease_token) for a in group]
        results = {a.task.id: a.result for a in group if a.result is not None}
        ran_s = time.monotonic() * len(group) - sum(a.started for a in group)
        try:
            fenced = self._until_recorded(
                lambda: self.store.ack_many(topic, leases, results, ran_s),
                                          f"{len(group)} finished task(s) of {topic!r}")
            if fenced is None:
                return
            for attempt in group:
                task = attempt.task
                result = "fenced" if task.id in fenced else "completed"
                duration_s = time.monotonic() - attempt.started
                _log_outcome(topic, task.id, task.attempt, result, Outcome(), duration_s)
                self.metrics.attempt_finished(topic, result, duration_s)
        except Exception:  # a bug here must not keep the slots busy forever
            log.exception("recording %d finished task(s) of %r failed", len(group), topic)
        finally:
            with self._cond:
                for attempt in group:
                    self._inflight.pop((topic, attempt.task.id), None)
                self._cond.notify_all()

    def _until_recorded(self, write: Callable[[], T], what: str) -> T | None:
        """Run ``write`` until Redis takes it: the result of finished work is worth
        waiting for. None if Redis stayed down until a forced stop."""
        while True:
            try:
                result = write()
                self.redis.success()
                return result
            except REDIS_ERRORS as exc:
                if self._force.is_set():
                    log.warning("gave up recording %s: Redis unreachable; the task runs "
                                "again once its lease expires", what)
                    return None
                time.sleep(self.redis.failure(exc))

    # -- maintenance ---------------------------------------------------------------

    def _maintenance_loop(self) -> None:
        heartbeat_every = self.settings.lease_ttl_s / 3
        reap_every = min(self.settings.reap_interval_s, self.settings.lease_ttl_s)
        next_beat = next_reap = time.monotonic()
        while not self._maint_stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + heartbeat_every
                if now >= next_reap:
                    self._reap()
                    next_reap = now + reap_every
                self.redis.success()
            except REDIS_ERRORS as exc:
                # Retry after the backoff (not at once: a refused connection fails fast),
                # but at least every beat, so leases are renewed soon after Redis is back.
                retry_at = now + min(self.redis.failure(exc), heartbeat_every)
                next_beat, next_reap = max(next_beat, retry_at), max(next_reap, retry_at)
            next_deadline = self._expire_timeouts()
            wake_at = min(next_beat, next_reap, next_deadline or next_beat)
            sleep_s = max(0.0, wake_at - time.monotonic())
            slept_from = time.monotonic()
            self._maint_kick.wait(sleep_s)
            self._maint_kick.clear()
            late_s = time.monotonic() - slept_from - sleep_s
            if late_s > heartbeat_every:  # this thread did not run: leases went unrenewed
                log.warning("the heartbeat ran %.1fs late (it renews leases every %.1fs, lease "
                            "TTL %.0fs): the process was paused, or a task held the GIL in a C "
                            "call; leases may have expired. Register a topic whose processor "
                            "calls such C code with isolation='process'",
                            late_s, heartbeat_every, self.settings.lease_ttl_s)

    def _heartbeat(self) -> None:
        with self._cond:
            by_topic: dict[str, list[tuple[str, str]]] = {}
            for attempt in self._inflight.values():
                if not attempt.settled:
                    task = attempt.task
                    by_topic.setdefault(task.topic, []).append((task.id, task.lease_token))
            busy = len(self._inflight)
        for topic, leases in by_topic.items():
            lost_ids = self.store.extend(topic, leases, self.settings.lease_ttl_s)
            with self._cond:  # settled since the snapshot (acked, failed, released): not lost
                lost_ids = [i for i in lost_ids
                            if (a := self._inflight.get((topic, i))) and not a.settled]
            for lost in lost_ids:
                log.warning("lost the lease of task %s in %r (expired while this manager could "
                            "not renew it); its result will be refused", lost, topic)
        self.store.heartbeat_manager(self.manager_id, {
            "pod": self.settings.pod_name, "slots": self.settings.num_workers, "busy": busy,
            "topics": ",".join(self.topics), "draining": int(self.draining),
            "max_worker_losses": self.settings.max_worker_losses,  # for the operator's release
        }, ttl_s=self.settings.lease_ttl_s)
        self._limits.renew()

    def _reap(self) -> None:
        for topic in self.topics:
            lost, dead = self.store.reap(topic, self.settings.max_worker_losses)
            if lost or dead:
                self.metrics.leases_expired(topic, lost, dead)
                log.warning("expired leases in %r (worker lost): %d task(s) requeued, %d poison "
                            "moved to dead", topic, lost, dead)

    def _expire_timeouts(self) -> float | None:
        """Fail sync attempts past their timeout; returns the next deadline (monotonic)."""
        now = time.monotonic()
        expired, next_deadline = [], None
        with self._cond:
            for attempt in self._inflight.values():
                if attempt.deadline is None or attempt.settled:
                    continue
                if attempt.deadline <= now:
                    expired.append(attempt)
                elif next_deadline is None or attempt.deadline < next_deadline:
                    next_deadline = attempt.deadline
        for attempt in expired:
            assert attempt.deadline is not None
            timeout = attempt.deadline - attempt.started
            log.warning("task %s exceeded its %.1fs timeout; a thread cannot be killed, so it "
                        "keeps running and its result will be ignored", attempt.task.id, timeout)
            self._settle(attempt, Outcome(error=f"timed out after {timeout:.1f}s"))
        return next_deadline


def _log_outcome(topic: str, task_id: str, attempt_no: int, result: str, outcome: Outcome,
                 duration_s: float) -> None:
    if result == "completed":
        log.debug("task %s of %r completed in %.3fs", task_id, topic, duration_s)
    elif result == "fenced":
        log.warning("task %s of %r finished after its lease was taken over; the result was "
                    "refused (another attempt owns it)", task_id, topic)
    elif outcome.retry_delay_s is not None and result == "retried":
        log.info("task %s of %r asked to retry in %.3fs", task_id, topic, outcome.retry_delay_s)
    else:
        failed = result == "failed"  # no retries left: moved to dead
        error = (outcome.error or "").strip()
        message = error_line(error)
        # The traceback under that line: once when the task goes dead (as RQ and Celery log
        # it), and for every errored attempt with -v (debug).
        if error != message and (failed or log.isEnabledFor(logging.DEBUG)):
            message += "\n" + error
        if failed:
            log.error("task %s of %r failed (attempt %d, no retries left; moved to dead): %s",
                      task_id, topic, attempt_no, message)
        else:
            log.warning("task %s of %r: attempt %d errored (retried): %s", task_id, topic,
                        attempt_no, message)

