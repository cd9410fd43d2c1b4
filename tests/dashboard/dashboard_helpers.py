"""Processes for the dashboard tests: `kubetaskqueue dashboard` and a dashboard_app worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
from helpers import free_port, wait_until

HERE = Path(__file__).parent
TOKEN = "test-token-0123456789abcdef"


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, KUBETASKQUEUE_REDIS_URL=redis_url, KUBETASKQUEUE_LOG_FORMAT="text",
               KUBETASKQUEUE_HTTP_PORT="0", KUBETASKQUEUE_POLL_INTERVAL_S="0.2",
               KUBETASKQUEUE_LEASE_TTL_S="2", KUBETASKQUEUE_NUM_WORKERS="4")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(HERE), env.get("PYTHONPATH", "")] if p)
    env.update(extra)
    return env


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Dashboard:
    """A `kubetaskqueue dashboard` child process on a free port."""

    def __init__(self, redis_url: str, *, allow_actions: bool = False,
                 host: str | None = "127.0.0.1", args: tuple[str, ...] = (),
                 **env: str) -> None:
        """``host`` None: no --host (the default bind); ``args``, ``env``: more of either."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "kubetaskqueue", "dashboard", "--port", str(self.port),
                   *(["--host", host] if host is not None else []), *args]
        if allow_actions:
            command.append("--allow-actions")
        self.proc = subprocess.Popen(command, env=_env(redis_url, **{
                                         "KUBETASKQUEUE_DASHBOARD_TOKEN": TOKEN, **env}),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_until(self._up, timeout_s=15, interval_s=0.05)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            out = self.proc.stdout.read().decode() if self.proc.stdout else ""
            raise AssertionError(f"dashboard exited with {self.proc.returncode}: {out}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> int:
        return stop(self.proc)


def start_worker(redis_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kubetaskqueue", "worker",
                             "dashboard_app:manager"], env=_env(redis_url),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
