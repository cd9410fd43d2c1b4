"""Small helpers shared by tests."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from kubetaskqueue import Manager, Task
from kubetaskqueue.attempts import Attempt, Processor

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.02,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s:g}s")
        time.sleep(interval_s)


LEASE_TTL_S = 1.5  # short, so tests that wait for a lease to expire stay quick


class Workers:
    """Starts `kubetaskqueue worker sample_app:manager` (or another app in tests/apps)
    subprocesses and cleans them up."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, app: str = "sample_app:manager", **env: Any) -> subprocess.Popen[bytes]:
        environ = dict(os.environ, KUBETASKQUEUE_REDIS_URL=self.url,
                       KUBETASKQUEUE_LEASE_TTL_S=str(LEASE_TTL_S),
                       KUBETASKQUEUE_POLL_INTERVAL_S="0.2", KUBETASKQUEUE_NUM_WORKERS="4",
                       KUBETASKQUEUE_LOG_FORMAT="text", KUBETASKQUEUE_HTTP_PORT="0")
        environ.update({k.upper(): str(v) for k, v in env.items()})
        proc = subprocess.Popen([sys.executable, "-m", "kubetaskqueue", "worker", app],
                                env=environ,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET (an error status too); (0, "") while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def run_mixed_outcomes(url: str, topic: str) -> Manager:
    """A Manager on ``url`` that has run (burst) three tasks of ``topic``: two complete,
    one fails both its attempts (one retried, then failed: two errors)."""
    m = Manager(url, poll_interval_s=0.05)

    @m.processor(topic)
    def work(task: Task) -> None:
        if task.payload == "bad":
            raise ValueError("no")

    m.enqueue_many(topic, ["ok", "ok"])
    m.enqueue(topic, "bad", num_retries=1)
    m.run(burst=True)
    return m


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port for a Redis Cluster node: its bus port (port + 10000) must be free
    too, and at most 65535."""
    for port in random.sample(range(20_000, 55_000), 200):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisServer:
    """A redis-server child process the tests may kill, pause and restart."""

    def __init__(self, workdir: Path, *, appendonly: bool = True, args: tuple[str, ...] = (),
                 port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: install it (apt-get install redis-server); "
                        ".ci/run does this")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.args = args  # more redis-server options, e.g. cluster mode
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.workdir), "--maxmemory-policy", "noeviction", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def make_attempt(n: int, topic: str = "jobs") -> Attempt:
    """An attempt of task ``t<n>`` with a no-op sync processor, for InFlight unit tests."""
    task = Task(id=f"t{n}", topic=topic, payload=None, attempt=1, num_retries=0,
                enqueued_at=0.0, lease_token="1")
    return Attempt(task, Processor(lambda t: None, None, False))
