"""Child processes for sync processors registered with ``isolation="process"``.

In a task thread, a C call that holds the GIL longer than the lease TTL starves
the heartbeat thread (the lease expires, the task runs twice), a timed-out task
cannot be killed, and a segfault or OOM kill ends every lease of the worker.
Here such a processor runs in a long-lived child process instead, one per busy
slot, started on first use and reused (like Celery's prefork pool): the
heartbeat keeps running in the parent, a timeout kills the child, and a child
that dies fails only its own attempt.

Children start with "spawn": a plain fork of this threaded process could copy
locks that other threads hold. A child imports the processors by name; tasks
and outcomes cross the pipe as JSON bytes. Nothing is unpickled but spawn's own
bootstrap arguments (a connection and strings), which this module writes.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError
from .task import Outcome, Task, call_processor

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

log = logging.getLogger("kubetaskqueue")

Isolation = Literal["thread", "process"]

# After SIGTERM a child gets this long to exit before SIGKILL.
_TERM_GRACE_S = 1.0
# How often a child checks that its worker is alive (to exit mid-task if not).
_PARENT_CHECK_S = 1.0
# A new child must have imported the processors' modules within this long; an import
# that hangs (a network call at import time, say) must not keep the slot busy forever.
START_TIMEOUT_S = 60.0


def reference(fn: Callable[..., Any], topic: str) -> str:
    """``module:qualname``: how a child process finds ``fn``. Lambdas and nested
    functions have no such name; ConfigError says so."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname:  # <lambda>, outer.<locals>.inner
        raise ConfigError(
            f"processor {qualname or fn!r} of topic {topic!r} cannot run with "
            "isolation='process': the child process imports it by name, so define it at "
            "module level (not as a lambda or a nested function)")
    return f"{module}:{qualname}"


def resolve(ref: str) -> Any:
    """What ``module:qualname`` names (importing the module if needed)."""
    module, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for name in qualname.split("."):
        obj = getattr(obj, name)
    return obj


def _importable(topic: str, fn: Callable[..., Any]) -> str:
    ref = reference(fn, topic)
    try:
        found = resolve(ref)
    except (ImportError, AttributeError) as exc:
        found = exc
    if found is not fn:  # e.g. a wrapping decorator kept the name for itself
        raise ConfigError(
            f"processor {ref} of topic {topic!r} cannot run with isolation='process': "
            f"a child process importing {ref} gets {found!r}, not the registered function; "
            "register the module-level function itself")
    return ref


class _ChildFailed(Exception):
    """The child cannot go on (died, timed out, could not import); the attempt fails."""


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    tasks_run: int = 0


class ChildProcesses:
    """The child processes of one runner, for the topics registered with isolation="process".

    ``run`` blocks the calling task thread while its child works, so a child is
    busy for exactly one slot at a time.
    """

    def __init__(self, processors: dict[str, Callable[[Task], Any]], max_tasks: int = 0
                 ) -> None:
        """``max_tasks`` > 0 replaces a child after that many tasks (memory a processor
        leaks goes with it, like Celery's worker_max_tasks_per_child)."""
        self._refs = {topic: _importable(topic, fn) for topic, fn in processors.items()}
        self._max_tasks = max_tasks
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._busy: dict[tuple[str, str], _Child] = {}
        self._closed = False

    def run(self, task: Task, timeout_s: float | None) -> Outcome:
        """Run ``task`` in an idle child (or a new one). ``timeout_s`` counts from when
        the child has the task, so a new child's start-up (its imports) is not counted."""
        key = (task.topic, task.id)
        child = None
        try:
            child, fresh = self._checkout(key)
            if fresh:  # its first message says whether it could import the processors
                ready = self._exchange(child, None, START_TIMEOUT_S, "starting")
                if ready.error is not None:
                    raise _ChildFailed(ready.error)
            outcome = self._exchange(child, task.to_json(), timeout_s, "running the task")
            child.tasks_run += 1
        except _ChildFailed as exc:
            if child is not None:
                self._discard(key, child)
            return Outcome(error=str(exc))
        self._checkin(key, child)
        return outcome

    def close(self) -> None:
        """Stop every child, busy ones included (their tasks are being released)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            children = idle + list(self._busy.values())
        _end(*(c.process for c in children))
        for child in idle:  # a busy child's task thread closes its own end
            child.conn.close()

    def _checkout(self, key: tuple[str, str]) -> tuple[_Child, bool]:
        with self._lock:  # a child started here is one close() sees
            if self._closed:
                raise _ChildFailed("the worker is stopping")
            child = None
            while self._idle and child is None:
                child = self._idle.pop()
                if not child.process.is_alive():  # died while idle (e.g. OOM-killed)
                    child.conn.close()
                    child = None
            fresh = child is None
            if child is None:
                try:
                    child = self._start()
                except OSError as exc:  # out of processes, memory or file descriptors
                    raise _ChildFailed(f"could not start a worker process: {exc}") from exc
            self._busy[key] = child
            return child, fresh

    def _start(self) -> _Child:
        # The context is got here, not at import: multiprocessing.connection took ~10 ms
        # of every start-up, and most topics run in threads.
        spawn = multiprocessing.get_context("spawn")
        ours, theirs = spawn.Pipe()
        # Daemonic: multiprocessing also stops it if this process exits without close().
        process = spawn.Process(target=_child_main, args=(theirs, self._refs), daemon=True,
                                 name="kubetaskqueue-child")
        process.start()
        theirs.close()  # only the child holds its end, so its death reads as EOF here
        log.info("started worker process %d for topic(s) %s (isolation='process')",
                 process.pid, ", ".join(sorted(self._refs)))
        return _Child(process, ours)

    def _checkin(self, key: tuple[str, str], child: _Child) -> None:
        worn_out = 0 < self._max_tasks <= child.tasks_run
        with self._lock:
            if not self._closed and not worn_out:
                self._busy.pop(key, None)
                self._idle.append(child)
                return
        self._discard(key, child)

    def _discard(self, key: tuple[str, str], child: _Child) -> None:
        with self._lock:
            self._busy.pop(key, None)
        _end(child.process)
        child.conn.close()

    def _exchange(self, child: _Child, request: bytes | None, timeout_s: float | None,
                  doing: str) -> Outcome:
        try:
            if request is not None:
                child.conn.send_bytes(request)
            if timeout_s is not None and not child.conn.poll(timeout_s):
                what = "starting (importing the processors)" if request is None else ""
                raise _ChildFailed(f"timed out after {timeout_s:.1f}s {what}".rstrip()
                                   + " (worker process killed)")
            return Outcome(**json.loads(child.conn.recv_bytes()))
        except (EOFError, OSError):
            child.process.join(_TERM_GRACE_S)  # it is exiting: wait for its real exit code
            _end(child.process)
            raise _ChildFailed(f"worker process exited with code {child.process.exitcode} "
                               f"while {doing}") from None
        except (ValueError, TypeError) as exc:  # not JSON, or not Outcome's fields
            raise _ChildFailed(f"worker process sent an unreadable reply ({exc})") from None


def _end(*processes: BaseProcess) -> None:
    """SIGTERM, then SIGKILL for those still there after the grace period; reaps all."""
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + _TERM_GRACE_S
    for process in alive:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join()


def _child_main(conn: Connection, refs: dict[str, str]) -> None:
    """A child's life: import the processors, then run one task per message until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's: it stops gracefully
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        processors = {topic: resolve(ref) for topic, ref in refs.items()}
    except BaseException:
        conn.send_bytes(_encode(Outcome(error=traceback.format_exc())))
        return
    conn.send_bytes(_encode(Outcome()))
    while True:
        try:
            request = conn.recv_bytes()
        except EOFError:
            return  # the worker closed the pipe, or died
        task = Task.from_json(request)
        conn.send_bytes(_encode(call_processor(processors[task.topic], task)))


def _encode(outcome: Outcome) -> bytes:
    return json.dumps(dataclasses.asdict(outcome)).encode()


def _exit_with_parent(parent_pid: int) -> None:
    """Exit, even mid-task, once the worker is gone (re-parented: the parent pid changes)."""
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_CHECK_S)
    os._exit(1)
