"""A private, throwaway redis-server for one harness invocation."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any

import redis

# Commands the harness itself sends; never counted against a queue.
_HARNESS_COMMANDS = {"info", "flushall", "config|resetstat"}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a running process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        return process_cpu_s(self.proc.pid)

    def monitor(self) -> Monitor:
        return Monitor(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Monitor:
    """Counts commands by origin with MONITOR, which marks a call made inside a Lua script
    as ``[0 lua]``; commandstats cannot tell them apart. MONITOR slows the server, so it is
    used in a run of its own whose timing is not reported."""

    _STOP = "bench-monitor-stop"

    def __init__(self, port: int) -> None:
        self.port = port
        self.lua: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MONITOR did not start")

    def _read(self) -> None:
        client = redis.Redis(port=self.port, decode_responses=True, lib_name=None, lib_version=None)
        with client.monitor() as m:
            self._ready.set()
            while True:
                line = m.connection.read_response()
                _, _, rest = line.partition(" [")
                origin, _, args = rest.partition("] ")
                cmd = args.split(" ", 1)[0].strip('"').lower()
                if cmd == "echo" and self._STOP in args:
                    return
                if cmd in _HARNESS_COMMANDS:
                    continue
                counts = self.lua if origin.endswith(" lua") else self.sent
                counts[cmd] = counts.get(cmd, 0) + 1

    def stop(self) -> None:
        """Read everything the server has sent so far, then stop."""
        redis.Redis(port=self.port, lib_name=None, lib_version=None).echo(self._STOP)
        self._thread.join(30)
