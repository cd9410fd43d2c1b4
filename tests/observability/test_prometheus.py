"""A real Prometheus scrapes a real exporter and real workers, and evaluates the shipped rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Workers, free_port, wait_until
from kubetaskqueue import Manager
from prometheus_proc import Prometheus


@pytest.fixture
def exporter(redis_url: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubetaskqueue", "--redis-url", redis_url,
                             "exporter", "--http-port", str(port)])
    yield f"127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_dead_tasks_fire_alert_and_queue_sums_are_not_multiplied(
        prometheus_bin: str, tmp_path: Path, redis_url: str, exporter: str) -> None:
    pool = Workers(redis_url)
    ports = [free_port() for _ in range(3)]
    try:
        for port in ports:
            pool.start(kubetaskqueue_http_port=port)
        prometheus = Prometheus(prometheus_bin, tmp_path,
                                [exporter, *(f"127.0.0.1:{p}" for p in ports)])
        try:
            wait_until(lambda: len(prometheus.query("up == 1")) == 4, timeout_s=30)
            producer = Manager(redis_url)
            # Scrape a calm baseline of the topic first: increase() counts from a
            # series' first sample, so deaths need an earlier sample to show.
            producer.enqueue("sleep", {"s": 0})
            wait_until(lambda: prometheus.query(
                'kubetaskqueue_queue_events_total{topic="sleep", event="completed"} == 1'),
                timeout_s=20)
            assert prometheus.firing("KubeTaskQueueDeadQueueGrowing") == []
            producer.enqueue_many("sleep", [{"s": "not a number"}] * 2)  # they die at once
            producer.enqueue_many("waiting", [{}] * 7)  # no worker serves this topic
            alert = wait_until(lambda: prometheus.firing("KubeTaskQueueDeadQueueGrowing"),
                               timeout_s=30)
            assert alert[0]["labels"]["topic"] == "sleep"
            assert alert[0]["annotations"]["runbook_url"].endswith("#kubetaskqueuedeadqueuegrowing")

            def summed(state: str) -> float | None:
                result = prometheus.query(f'sum(kubetaskqueue_queue_tasks{{state="{state}"}})')
                return float(result[0]["value"][1]) if result else None

            wait_until(lambda: summed("input") == 7, timeout_s=15)
            real = producer.stats()["topics"]
            assert summed("input") == real["waiting"]["input"] + real["sleep"]["input"]
            assert summed("dead") == real["sleep"]["dead"] == 2
            processed = prometheus.query(
                'sum(kubetaskqueue_tasks_processed_total{outcome="failed"})')
            assert float(processed[0]["value"][1]) == 2
        finally:
            prometheus.stop()
    finally:
        pool.stop_all()
