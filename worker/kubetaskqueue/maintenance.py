"""The maintenance thread: heartbeat (lease renewal + the manager's entry), reaping
expired leases of every manager, and per-task timeouts of sync processors.

It is a thread of its own so a task that computes for minutes in pure Python cannot
starve it (the interpreter switches threads every 5 ms). A C call that holds the GIL
can; topics registered with ``isolation="process"`` run in child processes
(isolation.py), their task thread only waits on a pipe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .attempts import Attempt, InFlight
from .cluster import REDIS_ERRORS
from .health import RedisHealth
from .metrics import WorkerMetrics
from .ratelimit import LimitDeclarations
from .settings import Settings
from .store import RedisStore
from .task import Outcome

log = logging.getLogger("kubetaskqueue")


class Maintenance:
    def __init__(self, settings: Settings, store: RedisStore, inflight: InFlight,
                 health: RedisHealth, limits: LimitDeclarations, metrics: WorkerMetrics,
                 manager_id: str, topics: list[str], draining: Callable[[], bool],
                 settle: Callable[[Attempt, Outcome], None]) -> None:
        self.settings = settings
        self.store = store
        self.inflight = inflight
        self.health = health
        self.limits = limits
        self.metrics = metrics
        self.manager_id = manager_id
        self.topics = topics
        self._draining = draining
        self._settle = settle  # records a timed-out attempt's failure
        self._kick = threading.Event()
        self._stop = threading.Event()

    def kick(self) -> None:
        """Look again now (a new deadline, or stop)."""
        self._kick.set()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()

    def run(self) -> None:
        heartbeat_every = self.settings.lease_ttl_s / 3
        reap_every = min(self.settings.reap_interval_s, self.settings.lease_ttl_s)
        next_beat = next_reap = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + heartbeat_every
                if now >= next_reap:
                    self._reap()
                    next_reap = now + reap_every
                self.health.success()
            except REDIS_ERRORS as exc:
                # Retry after the backoff (not at once: a refused connection fails fast),
                # but at least every beat, so leases are renewed soon after Redis is back.
                retry_at = now + min(self.health.failure(exc), heartbeat_every)
                next_beat, next_reap = max(next_beat, retry_at), max(next_reap, retry_at)
            next_deadline = self._expire_timeouts()
            wake_at = min(next_beat, next_reap, next_deadline or next_beat)
            sleep_s = max(0.0, wake_at - time.monotonic())
            slept_from = time.monotonic()
            self._kick.wait(sleep_s)
            self._kick.clear()
            late_s = time.monotonic() - slept_from - sleep_s
            if late_s > heartbeat_every:  # this thread did not run: leases went unrenewed
                log.warning("the heartbeat ran %.1fs late (it renews leases every %.1fs, lease "
                            "TTL %.0fs): the process was paused, or a task held the GIL in a C "
                            "call; leases may have expired. Register a topic whose processor "
                            "calls such C code with isolation='process'",
                            late_s, heartbeat_every, self.settings.lease_ttl_s)

    def _heartbeat(self) -> None:
        by_topic, busy = self.inflight.leases()
        for topic, leases in by_topic.items():
            lost_ids = self.store.extend(topic, leases, self.settings.lease_ttl_s)
            # settled since the snapshot (acked, failed, released): not lost
            for lost in self.inflight.unsettled(topic, lost_ids):
                log.warning("lost the lease of task %s in %r (expired while this manager could "
                            "not renew it); its result will be refused", lost, topic)
        self.store.heartbeat_manager(self.manager_id, {
            "pod": self.settings.pod_name, "slots": self.settings.num_workers, "busy": busy,
            "topics": ",".join(self.topics), "draining": int(self._draining()),
            "max_worker_losses": self.settings.max_worker_losses,  # for the operator's release
        }, ttl_s=self.settings.lease_ttl_s)
        self.limits.renew()

    def _reap(self) -> None:
        for topic in self.topics:
            lost, dead = self.store.reap(topic, self.settings.max_worker_losses)
            if lost or dead:
                self.metrics.leases_expired(topic, lost, dead)
                log.warning("expired leases in %r (worker lost): %d task(s) requeued, %d poison "
                            "moved to dead", topic, lost, dead)

    def _expire_timeouts(self) -> float | None:
        """Fail sync attempts past their timeout; returns the next deadline (monotonic)."""
        expired, next_deadline = self.inflight.past_deadline(time.monotonic())
        for attempt in expired:
            timeout = attempt.timeout_s
            log.warning("task %s exceeded its %.1fs timeout; a thread cannot be killed, so it "
                        "keeps running and its result will be ignored", attempt.task.id, timeout)
            self._settle(attempt, Outcome(error=f"timed out after {timeout:.1f}s"))
        return next_deadline
