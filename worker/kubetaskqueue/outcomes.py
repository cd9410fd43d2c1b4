"""Recording attempts' outcomes in Redis: retried until Redis takes them, then logged
and counted. A finished task's result is worth waiting for; only a forced stop gives
up (the task then runs again once its lease expires)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .attempts import Attempt
from .backoff import Backoff
from .cluster import REDIS_ERRORS
from .errors import error_line
from .health import RedisHealth
from .metrics import WorkerMetrics
from .store import RedisStore
from .task import Outcome

log = logging.getLogger("kubetaskqueue")

T = TypeVar("T")

_COMPLETED = Outcome()


class Recorder:
    def __init__(self, store: RedisStore, backoff: Backoff, metrics: WorkerMetrics,
                 health: RedisHealth, force: threading.Event) -> None:
        self.store = store
        self.backoff = backoff
        self.metrics = metrics
        self.health = health
        self._force = force

    def until_recorded(self, write: Callable[[], T], what: str) -> T | None:
        """Run ``write`` until Redis takes it. None if Redis stayed down until a forced
        stop."""
        while True:
            try:
                result = write()
                self.health.success()
                return result
            except REDIS_ERRORS as exc:
                if self._force.is_set():
                    log.warning("gave up recording %s: Redis unreachable; the task runs "
                                "again once its lease expires", what)
                    return None
                time.sleep(self.health.failure(exc))

    def fail(self, topic: str, task_id: str, token: str, attempt_no: int,
             outcome: Outcome, duration_s: float = 0.0, retries_left: bool = False) -> None:
        """Record an attempt that raised, timed out or asked to Retry."""
        assert outcome.error is not None
        error = outcome.error
        retry_delay_s = outcome.retry_delay_s
        if retry_delay_s is None:
            retry_delay_s = self.backoff(attempt_no - 1) if retries_left else 0.0
        result = self.until_recorded(
            lambda: self.store.fail(topic, task_id, token, error, retry_delay_s,
                                    bury=outcome.bury),
            f"the outcome of task {task_id}")
        if result is None:
            return
        ended = "failed" if result == "dead" else result  # the glossary's word for it
        log_outcome(topic, task_id, attempt_no, ended, outcome, duration_s)
        # An error: raised, timed out, malformed (a Retry request is not one).
        errored = outcome.retry_delay_s is None and ended != "fenced"
        self.metrics.attempt_finished(topic, ended, duration_s, error=errored)

    def acked(self, topic: str, group: list[Attempt], fenced: set[str]) -> None:
        """Log and count successes that ack recorded (``fenced``: the refused ids)."""
        now = time.monotonic()
        completed = []
        for attempt in group:
            task = attempt.task
            duration_s = now - attempt.started
            if fenced and task.id in fenced:
                log_outcome(topic, task.id, task.attempt, "fenced", _COMPLETED, duration_s)
                self.metrics.attempt_finished(topic, "fenced", duration_s)
            else:
                completed.append(duration_s)
                if log.isEnabledFor(logging.DEBUG):
                    log_outcome(topic, task.id, task.attempt, "completed", _COMPLETED,
                                duration_s)
        if completed:
            self.metrics.attempts_completed(topic, completed)


def log_outcome(topic: str, task_id: str, attempt_no: int, result: str, outcome: Outcome,
                duration_s: float) -> None:
    if result == "completed":
        log.debug("task %s of %r completed in %.3fs", task_id, topic, duration_s)
    elif result == "fenced":
        log.warning("task %s of %r finished after its lease was taken over; the result was "
                    "refused (another attempt owns it)", task_id, topic)
    elif outcome.retry_delay_s is not None and result == "retried":
        log.info("task %s of %r asked to retry in %.3fs", task_id, topic, outcome.retry_delay_s)
    else:
        failed = result == "failed"  # no retries left: moved to dead
        error = (outcome.error or "").strip()
        message = error_line(error)
        # The traceback under that line: once when the task goes dead (as RQ and Celery log
        # it), and for every errored attempt with -v (debug).
        if error != message and (failed or log.isEnabledFor(logging.DEBUG)):
            message += "\n" + error
        if failed:
            log.error("task %s of %r failed (attempt %d, no retries left; moved to dead): %s",
                      task_id, topic, attempt_no, message)
        else:
            log.warning("task %s of %r: attempt %d errored (retried): %s", task_id, topic,
                        attempt_no, message)
