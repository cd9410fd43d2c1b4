"""What every benchmark task calls, in every queue's worker process.

Each worker process writes into its own small memory-mapped file
``$BENCH_PROBE_DIR/<pid>.probe``: tasks finished, wall time of the first task
start and of the last task end. The harness sums the files to know when a
workload is done, without adding Redis commands to the queue being measured.
For the latency workload each task also appends ``start - enqueued_at`` to
``<pid>.lat``.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from typing import Any

_LAYOUT = struct.Struct("<qdd")  # finished, first start, last end (epoch seconds)
_lock = threading.Lock()
_state: dict[str, Any] = {}


def _open() -> dict[str, Any]:
    pid = os.getpid()
    if _state.get("pid") != pid:  # first call in this process (or after a fork)
        folder = os.environ["BENCH_PROBE_DIR"]
        path = os.path.join(folder, f"{pid}.probe")
        with open(path, "wb") as f:
            f.write(b"\0" * _LAYOUT.size)
        fd = os.open(path, os.O_RDWR)
        # Kept open for the life of the worker process; line-buffered so the harness sees it.
        lat = open(os.path.join(folder, f"{pid}.lat"), "a", buffering=1)  # noqa: SIM115
        _state.update(pid=pid, map=mmap.mmap(fd, _LAYOUT.size), done=0, first=0.0, lat=lat)
        os.close(fd)
    return _state


def begin(payload: dict[str, Any]) -> None:
    """Call first thing in a task."""
    now = time.time()
    with _lock:
        st = _open()
        if "t" in payload:
            st["lat"].write(f"{now - payload['t']:.6f}\n")
        if not st["first"]:
            st["first"] = now
            _LAYOUT.pack_into(st["map"], 0, st["done"], now, 0.0)


def end() -> None:
    """Call last thing in a task."""
    now = time.time()
    with _lock:
        st = _open()
        st["done"] += 1
        _LAYOUT.pack_into(st["map"], 0, st["done"], st["first"], now)


def read(folder: str) -> tuple[int, float | None, float | None]:
    """Sum over worker processes: (tasks finished, first start, last end)."""
    done, first, last = 0, None, None
    for name in os.listdir(folder):
        if not name.endswith(".probe"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            raw = f.read(_LAYOUT.size)
        if len(raw) < _LAYOUT.size:
            continue
        n, t0, t1 = _LAYOUT.unpack(raw)
        done += n
        if t0:
            first = t0 if first is None else min(first, t0)
        if t1:
            last = t1 if last is None else max(last, t1)
    return done, first, last


def latencies(folder: str) -> list[float]:
    out: list[float] = []
    for name in os.listdir(folder):
        if name.endswith(".lat"):
            with open(os.path.join(folder, name)) as f:
                out += [float(line) for line in f if line.strip()]
    return out
