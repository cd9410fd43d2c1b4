"""The worker app chaos tests run as `kubetaskqueue worker chaos_app:manager`.

Each processor records its attempt in the ledger (CHAOS_LEDGER_URL, a Redis the
tests never kill) before and after its work, so tests count every task id's
runs across processes that get killed, stopped or cut off from the queue.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis
from kubetaskqueue import Manager, Task

manager = Manager()  # everything from KUBETASKQUEUE_* variables
_ledger = redis.Redis.from_url(os.environ["CHAOS_LEDGER_URL"], decode_responses=True)


def _record(kind: str, task: Task) -> None:
    _ledger.rpush(kind, f"{task.id} {task.attempt} {os.getpid()} {time.time():.6f}")


def _ms(payload: Any, attempt: int) -> float:
    by_attempt = payload.get("ms_by_attempt") or {}
    return float(by_attempt.get(str(attempt), payload.get("ms", 0)))


@manager.processor("work")
def work(task: Task) -> None:
    """Sleeps payload["ms"] (or payload["ms_by_attempt"][attempt]) milliseconds."""
    _record("starts", task)
    time.sleep(_ms(task.payload, task.attempt) / 1000)
    _record("finishes", task)


@manager.processor("gil_py")
def gil_py(task: Task) -> None:
    """Computes in pure Python bytecode for payload["s"] seconds."""
    _record("starts", task)
    end = time.monotonic() + float(task.payload["s"])
    x = 0
    while time.monotonic() < end:
        for i in range(10_000):
            x ^= i * i
    _record("finishes", task)


@manager.processor("gil_c")
def gil_c(task: Task) -> None:
    """Holds the GIL in one C call (sum over a range) for about payload["s"] seconds."""
    _record("starts", task)
    t0 = time.perf_counter()
    sum(range(2_000_000))
    per_item = (time.perf_counter() - t0) / 2_000_000
    sum(range(int(float(task.payload["s"]) / per_item)))  # no bytecode runs meanwhile
    _record("finishes", task)


# The same C call in a child process: the worker's heartbeat thread keeps the GIL.
manager.register("gil_c_process", gil_c, isolation="process")


@manager.processor("suicide")
def suicide(task: Task) -> None:
    """Kills its own worker process, as an OOM kill would."""
    _record("starts", task)
    os.kill(os.getpid(), signal.SIGKILL)


@manager.processor("raise")
def raises(task: Task) -> None:
    _record("starts", task)
    raise RuntimeError(f"poison task {task.id} always raises")


@manager.processor("hang", timeout_s=0.5)
def hang(task: Task) -> None:
    """Sleeps past its 0.5 s timeout (finite, so the abandoned thread ends)."""
    _record("starts", task)
    time.sleep(float(task.payload.get("s", 3)))


@manager.processor("parse")
def parse(task: Task) -> None:
    """Expects {"n": <int>}; anything else is a payload it cannot parse."""
    _record("starts", task)
    if not isinstance(task.payload, dict) or not isinstance(task.payload.get("n"), int):
        raise ValueError(f"cannot parse payload {task.payload!r:.80}: want {{'n': int}}")
    _record("finishes", task)


@manager.processor("fuzz")
def fuzz(task: Task) -> None:
    """Accepts whatever decodes; fuzzed tasks that reach it complete."""
    _record("starts", task)
    _record("finishes", task)
