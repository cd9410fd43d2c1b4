"""Operator metrics: names and labels as DESIGN.md §6 and issue #5 give them."""

from __future__ import annotations

import pytest
from helpers import free_port, http_get
from kubetaskqueue_operator.metrics import NullMetrics, PrometheusMetrics, make_metrics

prometheus_client = pytest.importorskip("prometheus_client")


def test_replicas_and_scale_total() -> None:
    registry = prometheus_client.CollectorRegistry()
    m = PrometheusMetrics(registry)
    m.replicas("jobs/pool", desired=4, current=2, max_replicas=10)
    m.scaled("jobs/pool", "up")
    m.scaled("jobs/pool", "up")
    m.scaled("jobs/pool", "down")
    get = registry.get_sample_value
    assert get("kubetaskqueue_operator_desired_replicas", {"workerpool": "jobs/pool"}) == 4
    assert get("kubetaskqueue_operator_current_replicas", {"workerpool": "jobs/pool"}) == 2
    assert get("kubetaskqueue_operator_max_replicas", {"workerpool": "jobs/pool"}) == 10
    assert (
        get("kubetaskqueue_operator_scale_total", {"workerpool": "jobs/pool", "direction": "up"})
        == 2
    )
    assert (
        get("kubetaskqueue_operator_scale_total", {"workerpool": "jobs/pool", "direction": "down"})
        == 1
    )


def test_no_port_means_no_metrics_server() -> None:
    assert isinstance(make_metrics(None), NullMetrics)


def test_the_metrics_port_serves_metrics_and_404_elsewhere() -> None:
    # As the operator starts it (the server is a daemon thread, as there).
    port = free_port()
    make_metrics(port).replicas("jobs/pool", desired=4, current=2, max_replicas=10)
    base = f"http://127.0.0.1:{port}"
    status, body = http_get(f"{base}/metrics")
    assert status == 200
    assert 'kubetaskqueue_operator_desired_replicas{workerpool="jobs/pool"} 4.0' in body
    # prometheus_client's own server answered every path with the metrics.
    for typo in ("/", "/metric", "/metrics/x"):
        assert http_get(f"{base}{typo}") == (
            404, "not found; this port serves /metrics, /healthz\n"), typo
