"""Reusable daemon threads for sync processors.

Starting a thread per task cost about as much as a no-op task itself. A
ThreadPoolExecutor would reuse threads, but its threads are joined at
interpreter exit, so one hung task (abandoned after its timeout) would keep a
stopped worker from ever exiting. These threads are daemons: a hung one is
simply left behind, and a new one starts when no idle thread is free.

A job that is about to end calls ``free()``: its thread counts as idle from then
on, so a job submitted meanwhile (the claim its own success let through) waits
for it instead of starting one more thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[Callable[[Any], None], Any] | None  # None tells one idle thread to exit


class TaskThreads:
    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads done with a job and waiting (or about to wait) for the next
        self._started = 0
        self._local = threading.local()  # .freed: the running job called free()

    @property
    def idle(self) -> int:
        """Threads waiting for a job."""
        with self._lock:
            return self._idle

    def submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` on an idle thread, or on a new one if none is idle."""
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._started += 1
            else:
                self._idle -= 1
        self._jobs.put((fn, arg))
        if spawn:
            threading.Thread(target=self._work, daemon=True,
                             name=f"{self._name}-{self._started}").start()

    def free(self) -> None:
        """Called by a job on a task thread about to end: the thread counts as idle."""
        if getattr(self._local, "freed", True):
            return  # not on a task thread of this pool, or called already
        self._local.freed = True
        with self._lock:
            self._idle += 1

    def close(self) -> None:
        """Let idle threads exit; busy (or hung) ones finish or stay behind as daemons."""
        with self._lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, arg = job
            self._local.freed = False
            fn(arg)  # callers catch their own errors: _run_sync never raises
            if not self._local.freed:
                self._local.freed = True
                with self._lock:
                    self._idle += 1
