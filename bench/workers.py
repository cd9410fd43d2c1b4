"""Start and stop worker processes; read their CPU time and memory (psutil)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import IO

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Workers:
    """``count`` worker processes of one peer, each in its own process group."""

    def __init__(self, argvs: list[list[str]], env: dict[str, str], log: IO[str]) -> None:
        self.launched = time.time()
        self.procs = [subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=log,
                                       start_new_session=True) for argv in argvs]

    def _tree(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for p in self.procs:
            try:
                root = psutil.Process(p.pid)
                out += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return out

    def cpu_s(self) -> float:
        """User + system CPU seconds of every worker process and its children."""
        total = 0.0
        for proc in self._tree():
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total / 2**20

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM each group, then SIGKILL what is left after ``timeout_s``."""
        for p in self.procs:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(p.pid, signal.SIGKILL)  # stray children of a clean exit too
            p.wait()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
