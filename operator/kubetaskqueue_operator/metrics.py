"""Operator metrics, served on the operator's own ``/metrics``.

prometheus-client is optional: without it ``make_metrics`` returns NullMetrics
and the operator still scales. Queue state (``kubetaskqueue_queue_tasks`` and
friends, DESIGN.md §6) is exported once per cluster by ``kubetaskqueue
exporter``; the operator does not export it too (that would double every
series). ``register_collector`` is the seam if the operator should take that
role instead.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class OperatorMetrics(Protocol):
    def replicas(self, pool: str, desired: int, current: int, max_replicas: int) -> None: ...

    def scaled(self, pool: str, direction: str) -> None: ...


class NullMetrics:
    def replicas(self, pool: str, desired: int, current: int, max_replicas: int) -> None:
        pass

    def scaled(self, pool: str, direction: str) -> None:
        pass


class RecordingMetrics:
    """For tests: remembers what was reported."""

    def __init__(self) -> None:
        self.desired_by_pool: dict[str, int] = {}
        self.current_by_pool: dict[str, int] = {}
        self.max_by_pool: dict[str, int] = {}
        self.scales: list[tuple[str, str]] = []

    def replicas(self, pool: str, desired: int, current: int, max_replicas: int) -> None:
        self.desired_by_pool[pool] = desired
        self.current_by_pool[pool] = current
        self.max_by_pool[pool] = max_replicas

    def scaled(self, pool: str, direction: str) -> None:
        self.scales.append((pool, direction))


class PrometheusMetrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge

        self._desired = Gauge(
            "kubetaskqueue_operator_desired_replicas",
            "Replicas the operator last decided for a WorkerPool.",
            ["workerpool"],
            registry=registry,
        )
        self._current = Gauge(
            "kubetaskqueue_operator_current_replicas",
            "Worker pods of a WorkerPool's target that exist (its scale status.replicas), "
            "as the operator last read them.",
            ["workerpool"],
            registry=registry,
        )
        self._max = Gauge(
            "kubetaskqueue_operator_max_replicas",
            "spec.maxReplicas of a WorkerPool (the alert on a pool pinned at max compares).",
            ["workerpool"],
            registry=registry,
        )
        self._scales = Counter(
            "kubetaskqueue_operator_scale",  # exported as ..._scale_total
            "Scale operations the operator applied.",
            ["workerpool", "direction"],
            registry=registry,
        )

    def replicas(self, pool: str, desired: int, current: int, max_replicas: int) -> None:
        self._desired.labels(workerpool=pool).set(desired)
        self._current.labels(workerpool=pool).set(current)
        self._max.labels(workerpool=pool).set(max_replicas)

    def scaled(self, pool: str, direction: str) -> None:
        self._scales.labels(workerpool=pool, direction=direction).inc()


def make_metrics(port: int | None) -> OperatorMetrics:
    """Start ``/metrics`` on ``port`` and return live metrics; NullMetrics if unavailable."""
    if port is None:
        return NullMetrics()
    try:
        import prometheus_client
        from kubetaskqueue.httpserver import start_http_server
    except ImportError:
        log.warning("prometheus-client is not installed; operator metrics are disabled")
        return NullMetrics()
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    register_collector(registry)
    # The worker's server, not prometheus_client's (which answers every path with the
    # metrics): /metrics, /healthz, and 404 elsewhere, so a wrong scrape path shows.
    start_http_server(port, registry, setting="--metrics-port")
    return metrics


def register_collector(registry: Any) -> None:
    """Seam: register the core's QueueStateCollector here to make the operator the exporter.

    Left empty on purpose: a WorkerPool names a Redis per pool, and two pools on
    one Redis would export the same series twice; the standalone exporter has one.
    """
