"""Prometheus metrics: per-pod task metrics, and queue state read from Redis at scrape time.

Per-pod metrics carry no pod or task-id labels (Prometheus adds the target's
labels), so series stay bounded. Queue state is global: it is exported once
per cluster (by `kubetaskqueue exporter` or the operator), never by every
worker, so sums over targets do not multiply it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .cluster import REDIS_ERRORS, Client
from .keys import STAT_FIELDS
from .queue_state import read_queue_state
from .version import __version__

# The words of README's glossary. An attempt ends in exactly one outcome, and the
# outcomes that share a name with a queue event count the same thing.
OUTCOMES = ("completed", "retried", "failed", "released", "lost", "fenced")
QUEUE_STATES = ("input", "scheduled", "work", "dead")

# Task durations range from milliseconds to many minutes.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                     300, 600, 1800, 3600)


class WorkerMetrics:
    """The runner's observer: counts attempt outcomes, durations and waits of this pod."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.processed = Counter(
            "kubetaskqueue_tasks_processed", "Task attempts that ended on this pod, by outcome: "
            "completed, retried (runs again), failed (no retries left: moved to dead), "
            "released (handed back at shutdown), lost (lease expired, found by this pod's "
            "reaper), fenced (result refused: the lease was taken over).",
            ["topic", "outcome"], registry=self.registry)
        self.errors = Counter(
            "kubetaskqueue_task_errors", "Attempts on this pod whose processor raised, timed "
            "out or got a malformed task; each also counts as outcome retried or failed "
            "(a Retry request is not an error).", ["topic"], registry=self.registry)
        self.duration = Histogram(
            "kubetaskqueue_task_duration_seconds", "Time a processor ran, per attempt.",
            ["topic"], buckets=_DURATION_BUCKETS, registry=self.registry)
        self.wait = Histogram(
            "kubetaskqueue_task_wait_seconds",
            "Time from becoming ready (enqueued, due, retried) to the start of an attempt.",
            ["topic"], buckets=_DURATION_BUCKETS, registry=self.registry)
        self.slots = Gauge("kubetaskqueue_worker_slots", "Worker slots of this pod by state.",
                           ["state"], registry=self.registry)
        self.schedule_fires = Counter(
            "kubetaskqueue_schedule_fires", "Tasks this pod enqueued for a schedule's fire "
            "times (each fire time is enqueued by one pod only).", ["schedule", "topic"],
            registry=self.registry)
        self.schedule_missed = Counter(
            "kubetaskqueue_schedule_missed_fires", "Fire times a schedule skipped because no "
            "manager ran it then (the fire that ended the gap counts them).",
            ["schedule", "topic"], registry=self.registry)
        Info("kubetaskqueue_build", "kubetaskqueue version.",
             registry=self.registry).info({"version": __version__})

    def track_slots(self, busy: Callable[[], int], total: int) -> None:
        """Read slot use at scrape time rather than on every task."""
        self.slots.labels("busy").set_function(busy)
        self.slots.labels("idle").set_function(lambda: total - busy())

    def attempt_started(self, topic: str, wait_s: float) -> None:
        self._child(self.wait, topic).observe(wait_s)

    def attempt_finished(self, topic: str, outcome: str, duration_s: float | None,
                         error: bool = False) -> None:
        """``outcome`` is one of OUTCOMES; ``error`` = the processor raised or timed out."""
        self._child(self.processed, topic, outcome).inc()
        if error:
            self._child(self.errors, topic).inc()
        if duration_s is not None:
            self._child(self.duration, topic).observe(duration_s)

    def attempts_completed(self, topic: str, durations: list[float]) -> None:
        """Attempts acked in one batch: the counter moves once for them all."""
        self._child(self.processed, topic, "completed").inc(len(durations))
        observe = self._child(self.duration, topic).observe
        for duration_s in durations:
            observe(duration_s)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: .labels() cost ~8 % of a no-op task's CPU."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def declare_schedule(self, schedule: str, topic: str) -> None:
        """Export both schedule counters at 0 from the start (increase() needs a first value)."""
        self.schedule_fires.labels(schedule, topic)
        self.schedule_missed.labels(schedule, topic)

    def schedule_fired(self, schedule: str, topic: str, missed: int) -> None:
        self.schedule_fires.labels(schedule, topic).inc()
        if missed:
            self.schedule_missed.labels(schedule, topic).inc(missed)

    def leases_expired(self, topic: str, lost: int, dead: int) -> None:
        """The reaper found expired leases: ``lost`` run again, ``dead`` were poison."""
        if lost:
            self.processed.labels(topic, "lost").inc(lost)
        if dead:
            self.processed.labels(topic, "failed").inc(dead)


class QueueStateCollector(Collector):
    """Reads every topic's queue sizes from Redis when Prometheus scrapes."""

    def __init__(self, client: Client, namespace: str,
                 topics: Iterable[str] | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.topics = None if topics is None else list(topics)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kubetaskqueue_redis_up",
                               "1 if the last scrape could read Redis, else 0.")
        try:
            state = read_queue_state(self.client, self.namespace, self.topics)
        except REDIS_ERRORS:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        tasks = GaugeMetricFamily(
            "kubetaskqueue_queue_tasks", "Tasks per topic and state: input (ready), scheduled "
            "(delayed or backing off), work (leased to a worker), dead (failed for good).",
            labels=["topic", "state"])
        oldest = GaugeMetricFamily(
            "kubetaskqueue_queue_oldest_task_age_seconds",
            "How long the oldest ready task has waited (0 when none is ready; delayed and "
            "backoff-parked tasks do not count).", labels=["topic"])
        dead_oldest = GaugeMetricFamily(
            "kubetaskqueue_dead_oldest_task_age_seconds",
            "Age of the oldest task in the dead queue (0 when empty).", labels=["topic"])
        events = CounterMetricFamily(
            "kubetaskqueue_queue_events",
            "Cluster-wide task events per topic, counted in Redis (the stats counters): "
            "enqueued, started (attempts), retried, failed (no retries left: moved to dead), "
            "completed, lost (worker losses: runs again without spending a retry, or dead "
            "as poison), fenced (late results refused), dead_dropped (oldest dead tasks "
            "deleted by dead_max_tasks / dead_ttl_s).", labels=["topic", "event"])
        paused = GaugeMetricFamily(
            "kubetaskqueue_queue_paused",
            "1 while the topic is paused (no manager claims from it), else 0.",
            labels=["topic"])
        for topic, t in sorted(state.topics.items()):
            paused.add_metric([topic], 1 if t.paused else 0)
            for name in QUEUE_STATES:
                tasks.add_metric([topic, name], getattr(t, name))
            for event in STAT_FIELDS:
                events.add_metric([topic, event], t.counters.get(event, 0))
            oldest.add_metric([topic], t.oldest_ready_age_s or 0.0)
            dead_oldest.add_metric([topic], t.oldest_dead_age_s or 0.0)
        managers = GaugeMetricFamily("kubetaskqueue_managers", "Live managers (worker pods).")
        managers.add_metric([], len(state.managers))
        yield from (tasks, oldest, dead_oldest, events, paused, managers)
