"""Whether Redis answers, as every thread of a manager that calls it sees it."""

from __future__ import annotations

import logging
import threading

from . import defaults

log = logging.getLogger("kubetaskqueue")


class RedisHealth:
    """Tracks whether Redis answers, logging each change of state once."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self.ok = True
        self._failures = 0

    def success(self) -> None:
        if self.ok:  # the usual case, read without the lock
            return
        with self._lock:
            if not self.ok:
                log.info("Redis at %s is reachable again", self._url)
            self.ok, self._failures = True, 0

    def failure(self, exc: Exception) -> float:
        """Record a failed call; returns how long to back off before the next one."""
        with self._lock:
            if self.ok:
                log.warning("Redis at %s is unreachable (%s); retrying with backoff, "
                            "in-flight tasks keep running", self._url, exc)
            self.ok = False
            self._failures += 1
            return min(defaults.RECONNECT_MAX_S,
                       defaults.RECONNECT_MIN_S * 2.0 ** min(self._failures, 10))
