"""Operator metrics: names and labels as DESIGN.md §6 and issue #5 give them."""

from __future__ import annotations

import pytest
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
