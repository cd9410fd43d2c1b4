"""What the live page shows: queue state sampled once a second, rates and a throughput history.

Counts, ages and managers come from ``queue_state.read_queue_state``; rates
are deltas of the topics' Redis-kept counters between samples; the sparkline
counts TASK_COMPLETION events per minute, read with ``events.watch`` (which
replays the streams' history first, so a freshly opened dashboard already
shows the last half hour, as far as the capped streams reach).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from typing import Any

from ..cluster import REDIS_ERRORS, Client
from ..events import watch
from ..queue_state import read_queue_state

log = logging.getLogger("kubetaskqueue")

SAMPLE_INTERVAL_S = 1.0  # how often the page's numbers move
RATE_WINDOW_S = 10.0  # rates are counter deltas over about this long
SPARK_BUCKET_S = 60  # one sparkline bar: completions in one minute
SPARK_BUCKETS = 30  # the sparkline covers the last half hour
RATE_COUNTERS = ("enqueued", "completed", "failed", "retried")
_EVENTS_RETRY_S = 2.0  # wait before following the events again after a Redis error


class Rates:
    """Per-second rates of each topic's counters, from the deltas between samples."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._history: dict[str, deque[tuple[float, dict[str, int]]]] = {}

    def update(self, topic: str, now: float, counters: dict[str, int]) -> dict[str, float]:
        history = self._history.setdefault(topic, deque())
        history.append((now, counters))
        # Keep one sample at or before the window's start, as the base of the delta.
        while len(history) > 2 and history[1][0] <= now - self.window_s:
            history.popleft()
        base_time, base = history[0]
        elapsed = now - base_time
        rates = {}
        for name in RATE_COUNTERS:
            delta = counters.get(name, 0) - base.get(name, 0)
            # A counter that went down was reset by hand: no rate until the next window.
            rates[name] = round(delta / elapsed, 3) if elapsed > 0 and delta > 0 else 0.0
        return rates


class Throughput:
    """Completions per minute and topic, counted from TASK_COMPLETION events."""

    def __init__(self, bucket_s: int = SPARK_BUCKET_S, buckets: int = SPARK_BUCKETS) -> None:
        self.bucket_s = bucket_s
        self.buckets = buckets
        self._counts: dict[str, dict[int, int]] = {}
        self._lock = threading.Lock()

    def add(self, topic: str, when: float) -> None:
        with self._lock:
            per_topic = self._counts.setdefault(topic, {})
            bucket = int(when // self.bucket_s)
            per_topic[bucket] = per_topic.get(bucket, 0) + 1

    def series(self, topic: str, now: float) -> list[int]:
        """Completions per bucket, oldest first; the last bucket is the current, partial one."""
        last = int(now // self.bucket_s)
        first = last - self.buckets + 1
        with self._lock:
            per_topic = self._counts.get(topic, {})
            for stale in [b for b in per_topic if b < first]:
                del per_topic[stale]
            return [per_topic.get(b, 0) for b in range(first, last + 1)]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


class LiveState:
    """Samples queue state every ``interval_s`` and hands the newest snapshot to every page."""

    def __init__(self, client: Client, namespace: str, *,
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.client = client
        self.namespace = namespace
        self.interval_s = interval_s
        self.rates = Rates()
        self.throughput = Throughput()
        self._sample_lock = threading.Lock()
        self._stopping = threading.Event()
        self._snapshot: dict[str, Any] | None = None
        self._version = 0
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> dict[str, Any]:
        """Read Redis now and build the snapshot the page and ``/api/state`` show."""
        with self._sample_lock:
            state = read_queue_state(self.client, self.namespace)
            now = state.redis_time
            topics = []
            for name, t in sorted(state.topics.items()):
                topics.append({
                    "name": name, "input": t.input, "scheduled": t.scheduled,
                    "scheduled_due": t.scheduled_due, "work": t.work, "dead": t.dead,
                    "oldest_ready_age_s": t.oldest_ready_age_s,
                    "oldest_dead_age_s": t.oldest_dead_age_s,
                    "paused": t.paused, "max_queued": t.controls.max_queued,
                    "counters": t.counters,
                    "rates_per_s": self.rates.update(name, now, t.counters),
                    "completions_per_min": self.throughput.series(name, now),
                })
            managers = [{
                "id": m.id, "pod": m.pod, "slots": m.slots, "busy": m.busy,
                "idle": max(0, m.slots - m.busy), "topics": m.topics,
                "heartbeat_age_s": round(m.heartbeat_age_s, 3),
            } for m in sorted(state.managers, key=lambda m: (m.pod, m.id))]
            return {"redis_time": now, "error": None, "topics": topics, "managers": managers,
                    "sparkline_bucket_s": self.throughput.bucket_s}

    # -- the live loop (runs inside the web server's event loop) --------------------------

    async def start(self) -> None:
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="kubetaskqueue-dashboard-sampler")
        threading.Thread(target=self._follow_events, name="kubetaskqueue-dashboard-events",
                         daemon=True).start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                snapshot = await asyncio.to_thread(self.sample)
                if failing:
                    log.info("dashboard: Redis is reachable again")
                failing = False
            except REDIS_ERRORS as exc:
                if not failing:
                    log.warning("dashboard: cannot read Redis: %s", exc)
                failing = True
                snapshot = dict(self._snapshot or {"topics": [], "managers": []},
                                error=f"cannot read Redis: {exc}")
            self._publish(snapshot)
            await asyncio.sleep(self.interval_s)

    def _publish(self, snapshot: dict[str, Any]) -> None:
        self._snapshot = snapshot
        self._version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_newer(self, version: int, timeout_s: float
                         ) -> tuple[int, dict[str, Any] | None]:
        """The newest snapshot if it is newer than ``version``; else wait up to ``timeout_s``.

        Returns ``(version, None)`` when nothing new came in time (send a keep-alive).
        """
        if self._version <= version and self._changed is not None:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                return version, None
        if self._snapshot is None:
            return version, None
        return self._version, self._snapshot

    def _follow_events(self) -> None:
        """Count completions per minute; after a Redis error, start over from the history."""
        while not self._stopping.is_set():
            self.throughput.clear()
            # MANAGER_STATS ticks every second let this loop notice a stop when nothing happens.
            stream = watch(self.client, self.namespace, None, stats_interval_s=1.0,
                           from_start=True)
            try:
                for event in stream:
                    if self._stopping.is_set():
                        return
                    if event.type == "TASK_COMPLETION":
                        self.throughput.add(event.topic, event.time)
            except REDIS_ERRORS as exc:
                log.debug("dashboard: events stopped (%s); following again", exc)
                time.sleep(_EVENTS_RETRY_S)
