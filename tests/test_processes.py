"""Real worker processes and a real redis-server: kills, signals, Redis outages."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import LEASE_TTL_S, RedisServer, Workers, free_port, wait_until
from kubetaskqueue import ConfigError, Manager
from proc_lines import Lines


@pytest.fixture
def workers(redis_url: str) -> Iterator[Workers]:
    pool = Workers(redis_url)
    yield pool
    pool.stop_all()


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def starts(url: str, task_id: str) -> list[list[str]]:
    return [e.split() for e in client(url).lrange("test:starts", 0, -1) if e.startswith(task_id)]


def stats(url: str, topic: str) -> dict[str, int]:
    return Manager(url).stats()["topics"][topic]  # type: ignore[no-any-return]


def test_sigkilled_worker_task_recovered_after_lease(redis_url: str, workers: Workers) -> None:
    producer = Manager(redis_url)
    victim = workers.start()
    task_id = producer.enqueue("sleep", {"s": 0.5}, num_retries=2)
    wait_until(lambda: starts(redis_url, task_id))
    victim.kill()
    killed_at = time.monotonic()
    rescuer = workers.start()
    wait_until(lambda: len(starts(redis_url, task_id)) == 2, timeout_s=15)
    recovery_s = time.monotonic() - killed_at
    wait_until(lambda: stats(redis_url, "sleep")["completed"] == 1, timeout_s=10)
    second = starts(redis_url, task_id)[1]
    assert second[1] == "1" and second[2] == str(rescuer.pid)  # a lost worker spends no retry
    s = stats(redis_url, "sleep")
    assert (s["retried"], s["work"], s["input"], s["dead"]) == (0, 0, 0, 0)
    # Lease TTL + one reap period (= lease TTL here) bounds the wait, plus start-up.
    assert recovery_s < 2 * LEASE_TTL_S + 3
    print(f"recovery after SIGKILL: {recovery_s:.2f}s with lease TTL {LEASE_TTL_S}s")


def test_new_manager_does_not_steal_from_a_live_one(redis_url: str, workers: Workers) -> None:
    producer = Manager(redis_url)
    first = workers.start()
    task_id = producer.enqueue("sleep", {"s": 3 * LEASE_TTL_S})
    wait_until(lambda: starts(redis_url, task_id))
    workers.start()  # starts while the first is mid-task
    wait_until(lambda: stats(redis_url, "sleep")["completed"] == 1, timeout_s=15)
    runs = starts(redis_url, task_id)
    assert [r[2] for r in runs] == [str(first.pid)]  # ran once, by the first worker
    assert stats(redis_url, "sleep")["retried"] == 0  # no lease expired


def test_sigterm_releases_unfinished_task_to_input(redis_url: str, workers: Workers) -> None:
    producer = Manager(redis_url)
    worker = workers.start(kubetaskqueue_shutdown_grace_s=0.5)
    task_id = producer.enqueue("sleep", {"s": 60})
    wait_until(lambda: starts(redis_url, task_id))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert "SIGTERM received" in output and "released unfinished task" in output
    s = stats(redis_url, "sleep")
    assert (s["input"], s["work"]) == (1, 0)
    assert client(redis_url).hget(producer.store.keys("sleep").task(task_id), "attempts") == "0"


def test_poison_task_that_kills_its_worker_ends_dead(redis_url: str, workers: Workers) -> None:
    producer = Manager(redis_url)
    task_id = producer.enqueue("suicide", {})
    for attempt in (1, 2):  # a supervisor restarting the pod, as Kubernetes does
        proc = workers.start(kubetaskqueue_max_worker_losses=1)
        wait_until(lambda n=attempt: len(starts(redis_url, task_id)) == n, timeout_s=15)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    workers.start(kubetaskqueue_max_worker_losses=1)  # a healthy worker reaps the second loss
    wait_until(lambda: stats(redis_url, "suicide")["dead"] == 1, timeout_s=15)
    fields = client(redis_url).hgetall(producer.store.keys("suicide").task(task_id))
    assert fields["last_error"].startswith(
        "poison: lost its worker 2 times (max_worker_losses 1); last: lease expired: manager "
    ), fields["last_error"]
    # The first loss gave its attempt back; the fatal one stays counted.
    assert (fields["losses"], fields["attempts"]) == ("2", "1")
    assert len(starts(redis_url, task_id)) == 2  # max_worker_losses + 1 runs, no endless loop


def test_worker_waits_for_redis_down_at_start(own_redis: RedisServer) -> None:
    own_redis.kill()
    pool = Workers(own_redis.url)
    try:
        worker = pool.start()
        output = Lines(worker.stdout)
        output.wait_for("is unreachable", 30)
        assert worker.poll() is None  # waiting, not crashed
        own_redis.start()
        task_id = Manager(own_redis.url).enqueue("sleep", {"s": 0})
        wait_until(lambda: stats(own_redis.url, "sleep")["completed"] == 1, timeout_s=15)
        assert len(starts(own_redis.url, task_id)) == 1
    finally:
        pool.stop_all()
    text = output.text()
    assert text.count("is unreachable") == 1  # one line per state change, not per retry
    assert text.count("is reachable again") == 1


def test_redis_restart_mid_task_loses_nothing(own_redis: RedisServer) -> None:
    pool = Workers(own_redis.url)
    try:
        worker = pool.start(kubetaskqueue_lease_ttl_s=10)
        output = Lines(worker.stdout)
        task_id = Manager(own_redis.url).enqueue("sleep", {"s": 1.5})
        wait_until(lambda: starts(own_redis.url, task_id))
        own_redis.kill()  # AOF with fsync always: nothing acknowledged is lost
        output.wait_for("is unreachable", 30)  # the worker met the outage mid-task
        assert worker.poll() is None
        own_redis.start()
        wait_until(lambda: stats(own_redis.url, "sleep")["completed"] == 1, timeout_s=20)
        assert len(starts(own_redis.url, task_id)) == 1  # the ack waited; no re-run
        later = Manager(own_redis.url).enqueue("sleep", {"s": 0})
        wait_until(lambda: len(starts(own_redis.url, later)) == 1, timeout_s=15)
    finally:
        pool.stop_all()


def test_worker_refuses_redis_that_may_evict_tasks(own_redis: RedisServer) -> None:
    client(own_redis.url).config_set("maxmemory-policy", "allkeys-lru")
    result = subprocess.run([sys.executable, "-m", "kubetaskqueue", "--log-format", "text",
                             "worker", "sample_app:manager"],
                            env=dict(os.environ, KUBETASKQUEUE_REDIS_URL=own_redis.url),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: Redis maxmemory-policy is 'allkeys-lru', which can silently delete queued "
        "tasks; set it to 'noeviction' (redis-cli CONFIG SET maxmemory-policy noeviction)")


def test_burst_worker_gives_up_on_unreachable_redis() -> None:
    """A CI job must not hang: --burst waits KUBETASKQUEUE_BURST_REDIS_WAIT_S, then exits 1."""
    port = free_port()  # nothing listens there
    url = f"redis://:secret@127.0.0.1:{port}/0"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "kubetaskqueue", "--log-format", "text",
                             "worker", "sample_app:manager", "--burst"],
                            env=dict(os.environ, KUBETASKQUEUE_REDIS_URL=url,
                                     KUBETASKQUEUE_BURST_REDIS_WAIT_S="2",
                                     KUBETASKQUEUE_HTTP_PORT="0"),
                            capture_output=True, text=True, timeout=30)
    elapsed_s = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: Redis at redis://***@127.0.0.1:{port}/0 unreachable for 2s; a burst worker "
        "stops waiting (KUBETASKQUEUE_BURST_REDIS_WAIT_S)")
    assert "secret" not in result.stderr
    print(f"burst worker exited {elapsed_s:.1f}s after start with a 2s wait")


def test_worker_whose_http_port_is_taken_fails_at_start(redis_url: str) -> None:
    """Without /healthz and /readyz a pod fails its probes for no visible reason: refuse."""
    task_id = Manager(redis_url).enqueue("sleep", {"s": 0})
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "kubetaskqueue", "--log-format", "text",
                                 "worker", "sample_app:manager"],
                                env=dict(os.environ, KUBETASKQUEUE_REDIS_URL=redis_url,
                                         KUBETASKQUEUE_HTTP_PORT=str(port)),
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot serve /metrics, /healthz, /readyz on port {port}: Address already in "
        "use; free the port or pick another (--http-port, KUBETASKQUEUE_HTTP_PORT)")
    assert not starts(redis_url, task_id)  # it stopped before claiming anything
    assert stats(redis_url, "sleep")["input"] == 1


def test_sentinel_url_finds_the_master(own_redis: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "sentinel.conf"  # sentinel rewrites its config file: give it its own
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor jobs 127.0.0.1 "
                    f"{own_redis.port} 1\n")
    sentinel = subprocess.Popen([own_redis.binary, str(conf), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        probe = redis.Redis(port=port, decode_responses=True)

        def knows_master() -> bool:
            try:
                return probe.sentinel_get_master_addr_by_name("jobs") is not None
            except redis.ConnectionError:
                return False

        wait_until(knows_master)
        m = Manager(f"redis+sentinel://127.0.0.1:{port}/jobs/0", poll_interval_s=0.05)
        m.register("t", lambda task: None)
        m.enqueue_many("t", [1, 2, 3])
        m.run(burst=True)
        assert Manager(own_redis.url).stats()["topics"]["t"]["completed"] == 3
        # The thread that re-checks the master's address ends with its client.
        assert any(t.name == "kubetaskqueue-sentinel-jobs" for t in threading.enumerate())
        del m
        gc.collect()
        wait_until(lambda: not any(t.name == "kubetaskqueue-sentinel-jobs"
                                   for t in threading.enumerate()), 5,
                   what="sentinel re-check thread gone")
    finally:
        sentinel.kill()
        sentinel.wait()


def test_bad_sentinel_urls_get_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="bad Sentinel URL"):
        Manager("redis+sentinel://:secret@127.0.0.1:26379").enqueue("t", 1)
    with pytest.raises(ConfigError, match=r"\*\*\*@"):  # the password never shows
        Manager("redis+sentinel://:secret@127.0.0.1:x/jobs").enqueue("t", 1)
    with pytest.raises(ConfigError, match="rediss\\+sentinel:// \\(TLS\\) takes ssl_ca_certs"):
        Manager("redis+sentinel://127.0.0.1/jobs?ssl_ca_certs=/ca.pem").enqueue("t", 1)
