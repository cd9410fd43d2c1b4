"""Polls a worker's /readyz and keeps each change of state (if the worker serves it)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from functools import cache


@cache
def worker_serves_http() -> bool:
    """Whether `kubetaskqueue worker` has an HTTP port with /readyz (--http-port)."""
    out = subprocess.run([sys.executable, "-m", "kubetaskqueue", "worker", "--help"],
                         capture_output=True, text=True, check=False).stdout
    return "--http-port" in out


class ReadyzWatch:
    """Records (monotonic time, ready) whenever /readyz changes; None = no answer."""

    def __init__(self, port: int, poll_s: float = 0.1) -> None:
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.poll_s = poll_s
        self.changes: list[tuple[float, bool | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="readyz-watch")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _probe(self) -> bool | None:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:
            return False if exc.code == 503 else None
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            state = self._probe()
            if not self.changes or self.changes[-1][1] is not state:
                self.changes.append((time.monotonic(), state))

    def states(self) -> list[bool | None]:
        return [s for _, s in self.changes if s is not None]

    def went_down_and_back_up(self) -> bool:
        """Not ready at some point, and ready again after the last time it was not."""
        seq = self.states()
        return False in seq and seq[-1] is True
