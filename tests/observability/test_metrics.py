"""Per-pod metrics, the queue-state collector, and the worker's HTTP endpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import kubetaskqueue
import pytest
from click.testing import CliRunner
from helpers import RedisServer, Workers, free_port, run_mixed_outcomes, wait_until
from helpers import http_get as get
from kubetaskqueue import Manager
from kubetaskqueue.cli import cli
from kubetaskqueue.metrics import OUTCOMES, QueueStateCollector
from prometheus_client import CollectorRegistry


def test_worker_metrics_count_outcomes(any_url: str) -> None:
    m = run_mixed_outcomes(any_url, "t")
    value = m.metrics.registry.get_sample_value
    outcomes = {o: value("kubetaskqueue_tasks_processed_total", {"topic": "t", "outcome": o})
                for o in OUTCOMES}
    # One outcome per attempt, and the words mean what the stats counters mean.
    assert outcomes == {"completed": 2, "retried": 1, "failed": 1, "released": None,
                        "lost": None, "fenced": None}
    stats = m.stats()["topics"]["t"]
    assert (stats["completed"], stats["retried"], stats["failed"]) == (2, 1, 1)
    assert value("kubetaskqueue_task_errors_total", {"topic": "t"}) == 2  # both bad attempts
    assert value("kubetaskqueue_task_duration_seconds_count", {"topic": "t"}) == 4
    assert value("kubetaskqueue_task_wait_seconds_count", {"topic": "t"}) == 4
    assert value("kubetaskqueue_worker_slots", {"state": "idle"}) == 5
    assert value("kubetaskqueue_build_info", {"version": kubetaskqueue.__version__}) == 1


def test_a_reaped_lease_counts_as_lost(any_url: str) -> None:
    m = Manager(any_url, poll_interval_s=0.05)
    m.configure(reap_interval_s=0.05)
    m.register("t", lambda task: None)
    m.enqueue("t", 1)
    m.store.claim("t", 1, 0.01, "gone-0-aaaaaaaa")  # a worker that died holding the lease
    value = m.metrics.registry.get_sample_value
    m.start()
    try:
        wait_until(lambda: value("kubetaskqueue_tasks_processed_total",
                                 {"topic": "t", "outcome": "completed"}) == 1)
    finally:
        m.stop()
    assert value("kubetaskqueue_tasks_processed_total", {"topic": "t", "outcome": "lost"}) == 1
    assert m.stats()["topics"]["t"]["started"] == 2  # the lost attempt and the one that ran


def test_queue_state_collector_matches_stats_json(redis_url: str) -> None:
    m = Manager(redis_url, poll_interval_s=0.05)
    m.register("a", lambda task: 1 / 0)
    m.enqueue_many("a", [1, 2], num_retries=0)
    m.run(burst=True)  # both die
    m.enqueue("a", 3, delay_s=600)
    m.enqueue_many("b", [1, 2, 3])
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(m.store.client, "kubetaskqueue"))
    out = CliRunner().invoke(cli, ["--redis-url", redis_url, "stats", "--json"]).stdout
    stats = json.loads(out)
    for topic, row in stats["topics"].items():
        for state in ("input", "scheduled", "work", "dead"):
            assert registry.get_sample_value(
                "kubetaskqueue_queue_tasks", {"topic": topic, "state": state}) == row[state]
        for event in ("enqueued", "started", "retried", "failed", "completed"):
            assert registry.get_sample_value(
                "kubetaskqueue_queue_events_total", {"topic": topic, "event": event}) == row[event]
    assert registry.get_sample_value("kubetaskqueue_managers") == stats["managers"]
    assert registry.get_sample_value("kubetaskqueue_redis_up") == 1
    assert stats["topics"]["a"]["dead"] == 2 and stats["topics"]["b"]["input"] == 3
    # Ready tasks age; a topic holding only a delayed task does not.
    time.sleep(0.2)
    assert registry.get_sample_value(
        "kubetaskqueue_queue_oldest_task_age_seconds", {"topic": "b"}) >= 0.2
    assert registry.get_sample_value(
        "kubetaskqueue_queue_oldest_task_age_seconds", {"topic": "a"}) == 0
    assert registry.get_sample_value(
        "kubetaskqueue_dead_oldest_task_age_seconds", {"topic": "a"}) >= 0.2


def test_collector_reports_redis_down() -> None:
    m = Manager("redis://127.0.0.1:1/0")
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(m.store.client, "kubetaskqueue"))
    assert registry.get_sample_value("kubetaskqueue_redis_up") == 0
    assert registry.get_sample_value("kubetaskqueue_managers") is None


@pytest.fixture
def pool(own_redis: RedisServer) -> Iterator[Workers]:
    workers = Workers(own_redis.url)
    yield workers
    workers.stop_all()


def test_worker_http_endpoints_follow_drain_and_redis_outage(own_redis: RedisServer,
                                                             pool: Workers) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = pool.start(kubetaskqueue_http_port=port, kubetaskqueue_shutdown_grace_s=30)
    wait_until(lambda: get(f"{base}/readyz") == (200, "ready\n"))
    assert get(f"{base}/healthz") == (200, "ok\n")
    assert get(f"{base}/nope") == (404, "not found; this port serves /metrics, /healthz, "
                                        "/readyz\n")
    status, body = get(f"{base}/metrics")
    assert status == 200 and 'kubetaskqueue_worker_slots{state="idle"} 4.0' in body
    assert "kubetaskqueue_queue_tasks" not in body  # queue state is the exporter's job

    own_redis.kill()
    assert wait_until(lambda: get(f"{base}/readyz") == (503, "Redis unreachable\n"),
                      timeout_s=20)
    assert get(f"{base}/healthz") == (200, "ok\n")  # alive: never touches Redis
    own_redis.start()
    wait_until(lambda: get(f"{base}/readyz") == (200, "ready\n"), timeout_s=20)

    Manager(own_redis.url).enqueue("sleep", {"s": 5})
    wait_until(lambda: 'kubetaskqueue_worker_slots{state="busy"} 1.0' in get(f"{base}/metrics")[1])
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: get(f"{base}/readyz") == (503, "draining: shutting down\n"))
    worker.send_signal(signal.SIGTERM)  # the second signal releases at once
    assert worker.wait(timeout=15) == 0


def test_exporter_command_serves_queue_state(redis_url: str) -> None:
    Manager(redis_url).enqueue_many("email", [1, 2, 3])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubetaskqueue", "--redis-url", redis_url,
                             "exporter", "--http-port", str(port)])
    try:
        body = wait_until(lambda: get(f"http://127.0.0.1:{port}/metrics")[1])
        assert 'kubetaskqueue_queue_tasks{state="input",topic="email"} 3.0' in body
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        for typo in ("/nope", "/", "/metric", "/readyz"):  # no readiness on the exporter
            assert get(f"http://127.0.0.1:{port}{typo}") == (
                404, "not found; this port serves /metrics, /healthz\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
