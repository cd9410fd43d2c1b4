"""Manager: the public API. Holds topics and their processors, enqueues, runs workers."""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar, get_args

from .backoff import Backoff, default_backoff
from .backpressure import MemoryGuard
from .cluster import REDIS_ERRORS
from .connection import connect, redact_url
from .errors import (
    ConfigError,
    KubeTaskQueueError,
    RedisUnavailableError,
    redis_error_text,
)
from .events import Event, awatch, publish_manager_event, watch
from .isolation import Isolation, reference
from .keys import check_topic
from .metrics import WorkerMetrics
from .producer import check_retries, check_seconds, encode_payload, new_tasks
from .queue_state import read_queue_state
from .ratelimit import RateLimit
from .results import get_result
from .runner import Processor, Runner
from .schedule_rules import make_rule
from .schedules import Schedule, Scheduler, check_schedule_name
from .settings import Settings
from .signals import on_stop_signals
from .store import RedisStore
from .task import Task
from .task_info import TaskInfo, delete_task, lookup_task
from .topics import ServedTopicsCheck

log = logging.getLogger("kubetaskqueue")

F = TypeVar("F", bound=Callable[..., Any])


class Manager:
    """Topics with one processor each, a pool of ``num_workers`` slots, and a Redis store.

    Arguments left as None come from ``KUBETASKQUEUE_*`` environment variables,
    else from defaults.py (redis://localhost:6379/0, 5 workers, 30 s leases, ...).
    """

    def __init__(self, redis_url: str | None = None, *, num_workers: int | None = None,
                 prefetch: int | None = None, lease_ttl_s: float | None = None,
                 poll_interval_s: float | None = None, shutdown_grace_s: float | None = None,
                 namespace: str | None = None,
                 backoff: Backoff | None = None, max_payload_bytes: int | None = None,
                 dead_max_tasks: int | None = None, dead_ttl_s: float | None = None,
                 max_queued: int | None = None) -> None:
        self._overrides: dict[str, Any] = {}
        self._store: RedisStore | None = None
        self._memory: MemoryGuard  # these two are made with the store
        self._served_check: ServedTopicsCheck
        self._runner: Runner | None = None
        self._scheduler: Scheduler | None = None
        self.configure(redis_url=redis_url, num_workers=num_workers, prefetch=prefetch,
                       lease_ttl_s=lease_ttl_s, poll_interval_s=poll_interval_s,
                       shutdown_grace_s=shutdown_grace_s,
                       namespace=namespace, max_payload_bytes=max_payload_bytes,
                       dead_max_tasks=dead_max_tasks, dead_ttl_s=dead_ttl_s,
                       max_queued=max_queued)
        self.backoff: Backoff = backoff or default_backoff
        self.id = ""
        self._processors: dict[str, Processor] = {}
        self._schedules: dict[str, Schedule] = {}
        self._stop_requested = threading.Event()
        self.metrics = WorkerMetrics()  # this manager's per-pod metrics (own registry)

    def configure(self, **overrides: Any) -> None:
        """Change settings before start (the CLI's flags use this); None values are ignored."""
        if self._running:
            raise KubeTaskQueueError("cannot change settings of a running manager")
        self._overrides.update({k: v for k, v in overrides.items() if v is not None})
        try:
            self.settings = Settings(**self._overrides)
        except ValueError as exc:
            raise ConfigError(f"invalid manager settings: {exc}") from exc
        self._store = None

    @contextlib.contextmanager
    def _redis_failures(self) -> Iterator[None]:
        """A Redis error in a public call becomes RedisUnavailableError naming the URL."""
        try:
            yield
        except REDIS_ERRORS as exc:
            raise RedisUnavailableError(f"Redis at {redact_url(self.settings.redis_url)} "
                                        f"failed: {redis_error_text(exc)}") from exc

    @property
    def _running(self) -> bool:
        return self._runner is not None

    @property
    def store(self) -> RedisStore:
        """The Redis store, connected on first use so that importing an app needs no Redis."""
        if self._store is None:
            client = connect(self.settings.redis_url,
                             socket_timeout_s=self.settings.poll_interval_s + 5.0)
            self._store = RedisStore(client, self.settings.namespace,
                                     self.settings.events_max_len, self.settings.dead_max_tasks,
                                     self.settings.dead_ttl_s, self.settings.max_queued)
            self._memory = MemoryGuard(client, self.settings.max_memory_share)
            self._served_check = ServedTopicsCheck(client, self.settings.namespace)
        return self._store

    # -- topics ------------------------------------------------------------------

    def register(self, topic: str, processor: Callable[[Task], Any], *,
                 timeout_s: float | None = None, isolation: Isolation = "thread",
                 max_queued: int | None = None, rate_limit: str | None = None) -> None:
        """Register the one processor of ``topic``.

        ``isolation="process"`` runs a sync processor in a child process (one per busy
        slot, reused): for C calls that hold the GIL, hard timeouts, crash containment.
        ``max_queued`` (0 = unlimited) is published to Redis when the manager starts and
        then bounds every producer's enqueues to the topic, overriding their own setting.
        ``rate_limit="N/s"`` (``/m``, ``/h``): at most N starts per period across every
        manager of the topic (ratelimit.py; the lowest declared limit wins).
        """
        check_topic(topic)
        if topic in self._processors:
            raise KubeTaskQueueError(f"topic {topic!r} already has a processor")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if max_queued is not None and (not isinstance(max_queued, int)
                                       or isinstance(max_queued, bool) or max_queued < 0):
            raise ValueError(f"max_queued must be an int >= 0 (0 = unlimited), "
                             f"got {max_queued!r}")
        if isolation not in get_args(Isolation):
            raise ValueError(f"isolation must be 'thread' or 'process', got {isolation!r}")
        limit = None if rate_limit is None else RateLimit.parse(rate_limit)
        if self._running:
            raise KubeTaskQueueError("register topics before the manager starts")
        is_async = inspect.iscoroutinefunction(processor)
        if isolation == "process":
            if is_async:
                raise ConfigError(
                    f"processor of topic {topic!r} is async def: isolation='process' runs "
                    "sync processors only; make it a plain def (or keep isolation='thread')")
            reference(processor, topic)  # a lambda or nested function fails now, not at start
        self._processors[topic] = Processor(processor, timeout_s, is_async, isolation,
                                            max_queued, limit)

    def processor(self, topic: str, timeout_s: float | None = None,
                  isolation: Isolation = "thread", max_queued: int | None = None,
                  rate_limit: str | None = None) -> Callable[[F], F]:
        """Decorator form of :meth:`register`."""
        def decorate(fn: F) -> F:
            self.register(topic, fn, timeout_s=timeout_s, isolation=isolation,
                          max_queued=max_queued, rate_limit=rate_limit)
            return fn
        return decorate

    @property
    def topics(self) -> list[str]:
        return sorted(self._processors)

    # -- periodic tasks ------------------------------------------------------------

    def schedule(self, name: str, topic: str, payload: Any, *, every_s: float | None = None,
                 cron: str | None = None, tz: str | None = None, num_retries: int = 0,
                 timeout_s: float | None = None) -> None:
        """Enqueue a task to ``topic`` at every fire time of ``every_s`` (seconds, counted
        from the Unix epoch) or ``cron`` (5 fields, in UTC or the IANA zone ``tz``).

        Every replica declares the same schedules; while managers run, each fire time is
        enqueued once in all. The processor gets ``{"schedule": name, "fire_time": t,
        "missed": n, "payload": payload}`` (``missed``: fire times skipped while no manager
        ran). ``topic`` may be one that other deployments process.
        """
        check_schedule_name(name)
        check_topic(topic)
        if name in self._schedules:
            raise KubeTaskQueueError(f"schedule {name!r} is already declared")
        if self._running:
            raise KubeTaskQueueError("declare schedules before the manager starts")
        check_retries(num_retries)
        check_seconds("timeout_s", timeout_s, allow_zero=False)
        rule = make_rule(every_s, cron, tz)
        body = encode_payload(topic, payload, self.settings.max_payload_bytes)
        self._schedules[name] = Schedule(name, topic, body, rule, num_retries, timeout_s)

    # -- producing ----------------------------------------------------------------

    def enqueue(self, topic: str, payload: Any, *, num_retries: int = 0,
                delay_s: float | None = None, timeout_s: float | None = None,
                task_id: str | None = None, keep_result_s: float | None = None,
                priority: int = 0) -> str:
        """Enqueue one task; returns its id. No processor for ``topic`` is needed here.

        ``keep_result_s``: keep what the processor returns (it must be JSON-serialisable)
        this long after success, for :meth:`result`. ``priority``: see :meth:`enqueue_many`.
        """
        return self.enqueue_many(topic, [payload], num_retries=num_retries, delay_s=delay_s,
                                 timeout_s=timeout_s, keep_result_s=keep_result_s,
                                 priority=priority,
                                 task_ids=None if task_id is None else [task_id])[0]

    def enqueue_many(self, topic: str, payloads: Iterable[Any], *, num_retries: int = 0,
                     delay_s: float | None = None, timeout_s: float | None = None,
                     task_ids: list[str] | None = None,
                     keep_result_s: float | None = None, priority: int = 0) -> list[str]:
        """Enqueue a batch in one round trip; all or nothing. Returns the ids in order.

        ``priority``: an int from -100 to 100; higher runs first, FIFO within one priority.
        Raises QueueFullError (nothing written) when the batch would take the topic past
        its ``max_queued``, or Redis memory is over ``max_memory_share`` of maxmemory.
        """
        tasks = new_tasks(topic, payloads, task_ids, num_retries=num_retries,
                          delay_s=delay_s, timeout_s=timeout_s, keep_result_s=keep_result_s,
                          priority=priority, max_payload_bytes=self.settings.max_payload_bytes)
        if not tasks.ids:
            return []
        with self._redis_failures():
            store = self.store  # connecting may fail too
            self._memory.check(store.keys(topic).input)
            store.enqueue(topic, tasks)
        if topic not in self._processors:  # this manager will serve its own topics
            self._served_check.enqueued(topic)
        return tasks.ids

    # -- controls ------------------------------------------------------------------

    def pause(self, topic: str) -> bool:
        """Stop every manager claiming from ``topic`` (enqueues still go in, in-flight
        tasks finish, due tasks still become ready). False if it was paused already."""
        return self._set_paused(topic, True)

    def resume(self, topic: str) -> bool:
        """Let managers claim from ``topic`` again; idle ones wake at once. False if it
        was not paused."""
        return self._set_paused(topic, False)

    def _set_paused(self, topic: str, paused: bool) -> bool:
        check_topic(topic)
        with self._redis_failures():
            return self.store.set_paused(topic, paused, f"by {self.settings.pod_name}")

    # -- running -------------------------------------------------------------------

    def start(self, *, burst: bool = False) -> None:
        """Start workers in background threads and return (for embedding)."""
        if self._running:
            raise KubeTaskQueueError("manager already started")
        if not self._processors:
            raise ConfigError("no processors registered: use @manager.processor(topic)")
        self.id = f"{self.settings.pod_name}-{uuid.uuid4().hex[:8]}"
        self._runner = Runner(self.settings, self.store, dict(self._processors), self.backoff,
                              self.id, self.metrics)
        self._runner.start(burst=burst)
        self._start_scheduler(self._runner)
        publish_manager_event(self.store.client, self.settings.namespace, "MANAGER_START",
                              self.id, f"pod {self.settings.pod_name}, topics "
                              f"{','.join(self.topics)}, {self.settings.num_workers} workers")
        log.info("manager %s started: topics %s, %d workers, lease %.0fs", self.id,
                 ", ".join(self.topics), self.settings.num_workers, self.settings.lease_ttl_s)

    def _start_scheduler(self, runner: Runner) -> None:
        if not self._schedules:
            return
        for s in self._schedules.values():
            if s.topic not in self._processors:
                log.warning("schedule %r enqueues to topic %r, which this manager does not "
                            "process: make sure another deployment does", s.name, s.topic)
        self._scheduler = Scheduler(self.store, list(self._schedules.values()), self.id,
                                    self.metrics, runner.redis, self.settings.lease_ttl_s)
        self._scheduler.start()
        log.info("schedules: %s", ", ".join(f"{s.name} ({s.rule.describe()} -> {s.topic})"
                                             for s in self._schedules.values()))

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop claiming, wait up to ``timeout_s`` (default: shutdown grace) for in-flight
        tasks, release the rest back to input without counting an attempt."""
        runner = self._runner
        if runner is None:
            return
        if self._scheduler is not None:  # no fire while draining
            self._scheduler.stop()
            self._scheduler = None
        grace = self.settings.shutdown_grace_s if timeout_s is None else timeout_s
        runner.stop(grace)
        self._runner = None
        publish_manager_event(self.store.client, self.settings.namespace, "MANAGER_STOP",
                              self.id)
        log.info("manager %s stopped", self.id)

    def run(self, *, burst: bool = False) -> None:
        """Run until SIGTERM/SIGINT (a second signal skips the grace period).

        ``burst=True`` returns once this manager's topics are empty instead, and raises
        RedisUnavailableError once Redis has been unreachable for ``burst_redis_wait_s``.
        """
        # Handlers go in before the first claim: a SIGTERM right after start must
        # release tasks, not kill the process with them leased.
        self._stop_requested.clear()
        restore = on_stop_signals(self._on_stop_signal)
        try:
            self.start(burst=burst)
        except BaseException:
            restore()
            raise
        runner = self._runner
        assert runner is not None
        gave_up: RedisUnavailableError | None = None
        last_ok = time.monotonic()
        try:
            while not (self._stop_requested.is_set() or runner.claim_loop_done.is_set()):
                self._stop_requested.wait(0.5)
                if runner.redis.ok or not burst:
                    last_ok = time.monotonic()
                elif time.monotonic() - last_ok >= self.settings.burst_redis_wait_s:
                    gave_up = RedisUnavailableError(
                        f"Redis at {redact_url(self.settings.redis_url)} unreachable for "
                        f"{self.settings.burst_redis_wait_s:g}s; a burst worker stops waiting "
                        "(KUBETASKQUEUE_BURST_REDIS_WAIT_S)")
                    break
        finally:
            self.stop()
            restore()
        if runner.fatal is not None:
            raise runner.fatal
        if gave_up is not None:
            raise gave_up

    def request_stop(self) -> None:
        """Ask a running :meth:`run` to stop gracefully (thread-safe)."""
        self._stop_requested.set()

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: ready while running, Redis answers and no shutdown is under way."""
        runner = self._runner
        if runner is None:
            return False, "not running"
        if runner.draining:
            return False, "draining: shutting down"
        if not runner.redis.ok:
            return False, "Redis unreachable"
        return True, "ready"

    def _on_stop_signal(self, name: str) -> None:
        """The first SIGTERM/SIGINT drains: no new tasks, in-flight ones may finish within
        the grace period. A second releases them now."""
        runner = self._runner
        if self._stop_requested.is_set():
            log.warning("%s again: releasing in-flight tasks now", name)
            if runner is not None:
                runner.force()
            return
        log.info("%s received: no new tasks; finishing in-flight ones within %.0fs "
                 "(send again to release them now)", name, self.settings.shutdown_grace_s)
        if runner is not None:
            runner.request_stop()
        self._stop_requested.set()

    # -- inspecting ------------------------------------------------------------------

    def watch(self, topics: Iterable[str] | None = None, **options: Any) -> Iterator[Event]:
        """Stream task and manager events from Redis (see events.watch for options)."""
        return watch(self.store.client, self.settings.namespace, topics, **options)

    def awatch(self, topics: Iterable[str] | None = None,
               **options: Any) -> AsyncIterator[Event]:
        """:meth:`watch` as an async iterator."""
        return awatch(self.store.client, self.settings.namespace, topics, **options)

    def stats(self) -> dict[str, Any]:
        """``{"topics": {topic: {input, scheduled, work, dead, enqueued, started, retried,
        failed, completed, dead_dropped, paused}}, "managers": n}``"""
        with self._redis_failures():
            return read_queue_state(self.store.client, self.settings.namespace).as_stats()

    # -- one task --------------------------------------------------------------------

    def task(self, topic: str, task_id: str) -> TaskInfo | None:
        """Where task ``task_id`` is (``.state``: scheduled, input, work, dead, or done while
        its result is kept) and what it holds; None if ``topic`` does not know the id."""
        check_topic(topic)
        with self._redis_failures():
            return lookup_task(self.store, topic, task_id)

    def delete(self, topic: str, task_id: str) -> bool:
        """Delete a waiting task (scheduled, input or dead) for good: True. False for an
        unknown id, a done one, or one in work: a running processor cannot be stopped from
        outside (see README, "Task lookup and delete", for how to stop one)."""
        check_topic(topic)
        with self._redis_failures():
            return delete_task(self.store, topic, task_id)

    def result(self, topic: str, task_id: str, wait_s: float | None = None) -> Any:
        """What the processor of a task enqueued with ``keep_result_s`` returned; waits up to
        ``wait_s`` seconds for the task to finish (None or 0: no wait), blocked on Redis.

        Raises TaskNotFoundError (unknown id, or the result expired), NoResultError (the
        task died, or keeps no result), ResultTimeoutError (not finished in time).
        """
        check_topic(topic)
        with self._redis_failures():
            return get_result(self.store, topic, task_id, wait_s,
                              recheck_s=self.settings.poll_interval_s)
