"""One small app per queue, each defining the same benchmark task.

Every app reads ``BENCH_REDIS_URL``, ``BENCH_CONC`` (tasks in flight in one
worker process), ``BENCH_SLEEP_S`` (0 = the no-op task of W1; 0.01 for W2) and
``BENCH_STYLE`` from the environment, which the harness sets for each worker it
starts. Style ``noop``: the body only sleeps ``SLEEP_S`` (if any). Style
``redis``: the body first makes one Redis round trip of its own (``INCR`` of
``TASK_KEY`` on the bench's redis-server) through a client the worker process
opens on first use and reuses, as a real task does I/O.
"""

import os
import threading
from typing import Any

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/0")
CONC = int(os.environ.get("BENCH_CONC", "8"))
SLEEP_S = float(os.environ.get("BENCH_SLEEP_S", "0"))
STYLE = os.environ.get("BENCH_STYLE", "noop")
QUEUE = "bench"
TASK_KEY = "bench:task-io"  # the harness reads it to check one INCR per task run

_lock = threading.Lock()
_clients: dict[tuple[int, str], Any] = {}


def _client(kind: str) -> Any:
    """The process's own client (per pid: dramatiq forks its worker process)."""
    key = (os.getpid(), kind)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                if kind == "sync":
                    import redis
                    client = redis.Redis.from_url(REDIS_URL)
                else:
                    import redis.asyncio
                    client = redis.asyncio.Redis.from_url(REDIS_URL)
                _clients[key] = client
    return client


def task_io() -> None:
    """The task's own I/O in style ``redis`` (threads share the client's pool)."""
    if STYLE == "redis":
        _client("sync").execute_command("INCR", TASK_KEY)


async def task_io_async() -> None:
    """``task_io`` for asyncio tasks (arq): the same round trip without blocking the loop."""
    if STYLE == "redis":
        await _client("async").execute_command("INCR", TASK_KEY)
