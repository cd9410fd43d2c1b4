"""redis-server child processes the chaos tests kill, pause, restart and reconfigure."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from helpers import free_port


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: apt-get install redis-server (.ci/run does this)")
    return binary


class RedisProc:
    """One redis-server on a free port; ``args`` are extra command-line options."""

    def __init__(self, workdir: Path, *args: str, appendonly: bool = True,
                 tls: bool = False, password: str | None = None, port: int | None = None
                 ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = list(args)
        self.appendonly = appendonly
        self.tls = tls
        self.password = password  # for the readiness ping only
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        port_args = ["--port", str(self.port)]
        if self.tls:
            port_args = ["--port", "0", "--tls-port", str(self.port)]
        return [redis_binary(), *port_args, "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                "--dir", str(self.workdir), "--maxmemory-policy", "noeviction",
                "--logfile", str(self.workdir / "redis.log"), *self.extra]

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not self.tls:
            self.wait_ready()

    def wait_ready(self, client: redis.Redis | None = None, timeout_s: float = 15.0) -> None:
        client = client or redis.Redis(port=self.port, password=self.password)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise
                time.sleep(0.02)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, password=self.password,
                           decode_responses=True)

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGCONT)  # a paused server must die too
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class RedisFleet:
    """Every redis-server a test started; the fixture kills them all, pass or fail."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[RedisProc] = []

    def start(self, name: str, *args: str, **kwargs: object) -> RedisProc:
        server = RedisProc(self.root / name, *args, **kwargs)  # type: ignore[arg-type]
        self.servers.append(server)
        server.start()
        return server

    def kill_all(self) -> None:
        for server in self.servers:
            server.kill()
