"""The worker runtime's lifecycle: builds the claim/ack pipeline (pipeline.py) and the
maintenance thread (maintenance.py) around one table of attempts in flight
(attempts.py), starts their threads, and stops them gracefully: stop claiming, wait
for in-flight tasks up to the grace period, release the rest back to input."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from .attempts import Attempt, InFlight, Processor
from .backoff import Backoff
from .cluster import REDIS_ERRORS
from .connection import redact_url
from .health import RedisHealth
from .maintenance import Maintenance
from .metrics import WorkerMetrics
from .outcomes import Recorder
from .pipeline import Pipeline
from .ratelimit import LimitDeclarations
from .settings import Settings
from .store import RedisStore

__all__ = ["Processor", "RedisHealth", "Runner"]

log = logging.getLogger("kubetaskqueue")


class Runner:
    def __init__(self, settings: Settings, store: RedisStore, processors: dict[str, Processor],
                 backoff: Backoff, manager_id: str, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.processors = processors
        self.manager_id = manager_id
        self.redis = RedisHealth(redact_url(settings.redis_url))
        self._inflight = InFlight(settings.num_workers, settings.prefetch_tasks)
        self._stopping = threading.Event()  # stop claiming
        self._force = threading.Event()  # stop waiting for in-flight tasks
        self._limits = LimitDeclarations(
            store, manager_id, {t: p.rate_limit for t, p in processors.items() if p.rate_limit},
            settings.num_workers, settings.lease_ttl_s)
        recorder = Recorder(store, backoff, metrics, self.redis, self._force)
        self._pipeline = Pipeline(settings, store, processors, self._inflight, recorder,
                                  self.redis, self._limits, metrics, manager_id, self._stopping)
        self._maintenance = Maintenance(settings, store, self._inflight, self.redis,
                                        self._limits, metrics, manager_id,
                                        self._pipeline.topics, lambda: self.draining,
                                        self._pipeline.settle)
        self._pipeline.on_deadline = self._maintenance.kick
        self._threads: list[threading.Thread] = []

    @property
    def fatal(self) -> BaseException | None:
        """What stopped the claim loop, if not a stop request (Manager.run raises it)."""
        return self._pipeline.fatal

    @property
    def claim_loop_done(self) -> threading.Event:
        return self._pipeline.claim_loop_done

    def start(self, *, burst: bool = False) -> None:
        self._pipeline.burst = burst
        self.metrics.track_slots(lambda: self.busy, self.settings.num_workers)
        if any(p.is_async for p in self.processors.values()):
            loop = self._pipeline.loop = asyncio.new_event_loop()
            self._spawn("kubetaskqueue-async", loop.run_forever)
        self._spawn("kubetaskqueue-claim", self._pipeline.claim_loop)
        self._spawn("kubetaskqueue-maintenance", self._maintenance.run)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def request_stop(self) -> None:
        """Stop claiming; in-flight tasks go on."""
        self._stopping.set()
        self._inflight.wake()

    def force(self) -> None:
        """Stop waiting for in-flight tasks: release them now."""
        self._force.set()
        self.request_stop()

    @property
    def draining(self) -> bool:
        return self._stopping.is_set()

    @property
    def busy(self) -> int:
        """Slots running a task (prefetched tasks wait outside them)."""
        return self._inflight.running

    def stop(self, grace_s: float) -> None:
        """Stop claiming, wait up to ``grace_s`` for in-flight tasks, release the rest."""
        self.request_stop()
        for attempt in self._inflight.drop_waiting():  # another manager may run them now
            self._release(attempt)
        if busy := len(self._inflight):
            log.info("stopping: waiting up to %.0fs for %d in-flight task(s)", grace_s, busy)
        leftover = self._inflight.wait_empty(grace_s, self._force)
        self._pipeline.children.close()  # a released task must stop before another claims it
        for attempt in leftover:
            self._release(attempt)
        self._maintenance.stop()
        for thread in self._threads:
            if thread.name != "kubetaskqueue-async":
                thread.join(timeout=self.settings.poll_interval_s + 5)
        loop = self._pipeline.loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        self._pipeline.task_threads.close()
        self._force.set()  # outcome writes still retrying against a dead Redis give up
        try:
            self._limits.withdraw()
            self.store.deregister_manager(self.manager_id)
        except REDIS_ERRORS as exc:
            log.warning("could not deregister manager %s: %s (its entry expires by itself)",
                        self.manager_id, exc)

    def _release(self, attempt: Attempt) -> None:
        task = attempt.task
        if attempt.processor.is_async:
            self._pipeline.cancel_async(attempt)
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
        self._inflight.finish([attempt])
