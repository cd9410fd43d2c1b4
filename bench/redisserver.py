"""A private, throwaway redis-server for one harness invocation."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from typing import Any

import redis

# Commands the harness itself sends; never counted against a queue.
_HARNESS_COMMANDS = {"info", "flushall", "config|resetstat"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        self.version = self.client.info("server")["redis_version"]

    def flush(self) -> None:
        self.client.flushall()

    def commands(self) -> dict[str, int]:
        """Calls per command since start (INFO commandstats; includes calls made inside Lua)."""
        stats: dict[str, Any] = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        out = {k: v - before.get(k, 0) for k, v in after.items() if k not in _HARNESS_COMMANDS}
        return {k: v for k, v in out.items() if v}

    def cpu_s(self) -> float:
        """CPU seconds (user + system) redis-server has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
