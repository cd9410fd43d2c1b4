"""isolation="process": sync processors in reused child processes, with hard timeouts
and crash containment. The processors live in tests/isolation_app.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import isolation_app
import isolation_hang_app
import pytest
import redis
from helpers import wait_until
from kubetaskqueue import ConfigError, Manager, Task, isolation

TESTS_DIR = Path(__file__).parent


def make(url: str, *, timeout_s: float | None = None, **kw: Any) -> Manager:
    options: dict[str, Any] = {"poll_interval_s": 0.1, "num_workers": 1, "lease_ttl_s": 5.0}
    options.update(kw)
    m = Manager(url, **options)
    m.register("iso", isolation_app.work, timeout_s=timeout_s, isolation="process")
    return m


def attempts(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie no one reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def last_error(m: Manager, topic: str, task_id: str) -> str:
    return str(m.store.client.hget(m.store.keys(topic).task(task_id), "last_error"))


def test_tasks_run_in_one_reused_child_process(redis_url: str, tmp_path: Path) -> None:
    m = make(redis_url)
    log = tmp_path / "log"
    ids = [m.enqueue("iso", {"log": str(log), "n": n}, num_retries=2) for n in range(3)]
    m.run(burst=True)
    assert m.stats()["topics"]["iso"]["completed"] == 3
    runs = attempts(log)
    assert [(r["id"], r["attempt"], r["num_retries"], r["payload"]["n"]) for r in runs] == [
        (i, 1, 2, n) for n, i in enumerate(ids)]
    [pid] = {r["pid"] for r in runs}
    assert pid != os.getpid()
    assert not alive(pid) and not multiprocessing.active_children()  # ended at stop


def test_an_exception_retries_then_goes_dead_with_its_traceback(redis_url: str,
                                                                tmp_path: Path) -> None:
    m = make(redis_url, backoff=lambda n: 0.01)
    log = tmp_path / "log"
    task_id = m.enqueue("iso", {"log": str(log), "do": "raise"}, num_retries=1)
    m.run(burst=True)
    stats = m.stats()["topics"]["iso"]
    assert (stats["retried"], stats["dead"], stats["completed"]) == (1, 1, 0)
    error = last_error(m, "iso", task_id)
    assert "Traceback" in error and f"RuntimeError: task {task_id} always raises" in error
    assert len({r["pid"] for r in attempts(log)}) == 1  # an exception does not end the child


def test_retry_waits_the_requested_delay(redis_url: str, tmp_path: Path) -> None:
    m = make(redis_url)
    log = tmp_path / "log"
    m.enqueue("iso", {"log": str(log), "do": "retry", "delay_s": 0.3}, num_retries=1)
    m.run(burst=True)
    first, second = attempts(log)
    assert second["at"] - first["at"] >= 0.28
    stats = m.stats()["topics"]["iso"]
    assert (stats["retried"], stats["completed"], stats["dead"]) == (1, 1, 0)


def test_a_timeout_kills_the_child_and_the_next_task_gets_a_new_one(
        redis_url: str, tmp_path: Path) -> None:
    m = make(redis_url, timeout_s=0.5)
    log = tmp_path / "log"
    hung = m.enqueue("iso", {"log": str(log), "do": "sleep", "s": 30})
    m.enqueue("iso", {"log": str(log)})
    m.run(burst=True)
    stats = m.stats()["topics"]["iso"]
    assert (stats["dead"], stats["completed"]) == (1, 1)
    assert last_error(m, "iso", hung) == "timed out after 0.5s (worker process killed)"
    first, second = attempts(log)
    assert first["id"] == hung and not alive(first["pid"])
    assert second["pid"] != first["pid"]


def test_a_child_that_dies_fails_only_its_own_attempt(redis_url: str, tmp_path: Path) -> None:
    m = make(redis_url, num_workers=2, backoff=lambda n: 0.01)
    log = tmp_path / "log"
    exits = m.enqueue("iso", {"log": str(log), "do": "exit"}, num_retries=1)
    killed = m.enqueue("iso", {"log": str(log), "do": "kill"})
    m.enqueue_many("iso", [{"log": str(log)} for _ in range(3)])
    m.run(burst=True)
    stats = m.stats()["topics"]["iso"]
    assert (stats["completed"], stats["retried"], stats["dead"]) == (3, 1, 2)
    assert last_error(m, "iso", exits) == (
        "worker process exited with code 3 while running the task")
    assert last_error(m, "iso", killed) == (
        "worker process exited with code -9 while running the task")
    assert not any(alive(r["pid"]) for r in attempts(log))


def test_a_child_is_replaced_after_child_max_tasks(redis_url: str, tmp_path: Path) -> None:
    m = make(redis_url)
    m.configure(child_max_tasks=2)
    log = tmp_path / "log"
    m.enqueue_many("iso", [{"log": str(log)} for _ in range(5)])
    m.run(burst=True)
    pids = [r["pid"] for r in attempts(log)]
    assert len(pids) == 5 and len(set(pids)) == 3
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert not any(alive(pid) for pid in pids)


def test_a_child_that_cannot_start_fails_the_attempt(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "START_TIMEOUT_S", 1.0)
    m = Manager(redis_url, poll_interval_s=0.1, num_workers=1)
    m.register("hangs", isolation_hang_app.work, isolation="process")
    task_id = m.enqueue("hangs", {})
    m.run(burst=True)
    assert m.stats()["topics"]["hangs"]["dead"] == 1
    assert last_error(m, "hangs", task_id) == (
        "timed out after 1.0s starting (importing the processors) (worker process killed)")
    assert not multiprocessing.active_children()


def test_stop_releases_the_task_and_ends_its_child(redis_url: str, tmp_path: Path) -> None:
    m = make(redis_url)
    log = tmp_path / "log"
    m.start()
    try:
        m.enqueue("iso", {"log": str(log), "do": "sleep", "s": 30}, num_retries=0)
        [run] = wait_until(lambda: attempts(log), what="task started in a child")
    finally:
        m.stop(timeout_s=0.1)
    stats = m.stats()["topics"]["iso"]
    assert (stats["input"], stats["work"], stats["dead"]) == (1, 0, 0)  # released, not failed
    assert not alive(run["pid"]) and not multiprocessing.active_children()


def worker(url: str, **env: str) -> subprocess.Popen[bytes]:
    """`kubetaskqueue worker isolation_app:manager`: topic "isolated" in child processes."""
    environ = dict(os.environ, KUBETASKQUEUE_REDIS_URL=url, KUBETASKQUEUE_POLL_INTERVAL_S="0.1",
                   KUBETASKQUEUE_LOG_FORMAT="text", KUBETASKQUEUE_HTTP_PORT="0",
                   PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    environ.update(env)
    return subprocess.Popen([sys.executable, "-m", "kubetaskqueue", "worker",
                             "isolation_app:manager"], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_child_outlives_its_worker(redis_url: str, tmp_path: Path, sig: int) -> None:
    proc = worker(redis_url, KUBETASKQUEUE_SHUTDOWN_GRACE_S="0.2")
    log = tmp_path / "log"
    try:
        Manager(redis_url).enqueue("isolated", {"log": str(log), "do": "sleep", "s": 30})
        [run] = wait_until(lambda: attempts(log), timeout_s=20, what="task started in a child")
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        # SIGTERM: the worker ends it; SIGKILL: the child sees its parent gone (~1 s).
        wait_until(lambda: not alive(run["pid"]), timeout_s=5, what="child process gone")
    finally:
        proc.kill()
        proc.wait()
    if sig == signal.SIGTERM:
        r = redis.Redis.from_url(redis_url)
        assert r.zcard(Manager(redis_url).store.keys("isolated").input) == 1  # released


def test_processors_a_child_cannot_import_are_refused(redis_url: str) -> None:
    m = Manager(redis_url)

    def nested(task: Task) -> None:
        pass

    with pytest.raises(ConfigError, match="define it at module level"):
        m.register("a", lambda task: None, isolation="process")
    with pytest.raises(ConfigError, match="nested"):
        m.register("b", nested, isolation="process")
    with pytest.raises(ConfigError, match="async def: isolation='process' runs sync"):
        m.register("c", isolation_app.async_work, isolation="process")
    with pytest.raises(ValueError, match="isolation must be 'thread' or 'process', got 'fork'"):
        m.register("d", isolation_app.work, isolation="fork")  # type: ignore[arg-type]
    assert m.topics == []
    # Importable by name, but the name holds a wrapper: refused when the manager starts.
    inner = isolation_app.shadowed.__wrapped__  # type: ignore[attr-defined]
    m.register("e", inner, isolation="process")
    with pytest.raises(ConfigError, match="not the registered function"):
        m.start()
