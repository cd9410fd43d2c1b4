"""Worker subprocesses (`python -m kubetaskqueue worker chaos_app:manager`), one
log file each, and a supervisor that SIGKILLs and restarts them like Kubernetes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

APPS = Path(__file__).parent / "apps"


@dataclass
class Worker:
    slot: int
    generation: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    pod: str  # POD_NAME: the manager id is "<pod>-<8 hex>"
    killed_at: float | None = None  # monotonic, when the test SIGKILLed it

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def owns(self, owner: str) -> bool:
        return owner.startswith(self.pod + "-")


@dataclass
class WorkerPool:
    """Starts workers against ``redis_url``; ``stop_all`` kills whatever still runs."""

    redis_url: str
    ledger_url: str
    logdir: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    def start(self, slot: int, **env: object) -> Worker:
        generation = sum(1 for w in self.workers if w.slot == slot)
        pod = f"chaos-s{slot}-g{generation}"
        environ = dict(os.environ)
        environ.update({
            "KUBETASKQUEUE_REDIS_URL": self.redis_url, "CHAOS_LEDGER_URL": self.ledger_url,
            "KUBETASKQUEUE_LOG_FORMAT": "text", "KUBETASKQUEUE_POLL_INTERVAL_S": "0.5",
            "POD_NAME": pod,
            "PYTHONPATH": os.pathsep.join(p for p in [str(APPS), environ.get("PYTHONPATH")] if p),
        })
        environ.update(self.env)
        environ.update({k.upper(): str(v) for k, v in env.items()})
        self.logdir.mkdir(parents=True, exist_ok=True)
        log_path = self.logdir / f"{pod}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubetaskqueue", "worker", "chaos_app:manager"],
                env=environ, stdout=out, stderr=subprocess.STDOUT)
        worker = Worker(slot, generation, proc, log_path, pod)
        self.workers.append(worker)
        return worker

    def current(self, slot: int) -> Worker:
        return [w for w in self.workers if w.slot == slot][-1]

    def sigkill(self, worker: Worker) -> float:
        """SIGKILL and reap; returns the monotonic time of the kill."""
        worker.killed_at = time.monotonic()
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
        return worker.killed_at

    def wait_started(self, worker: Worker, timeout_s: float = 30.0) -> None:
        """Until the manager logged its start (Manager.run installs its signal handlers
        before that, so a SIGTERM from then on is a graceful stop)."""
        deadline = time.monotonic() + timeout_s
        while "started: topics" not in worker.log():
            if not worker.alive() or time.monotonic() > deadline:
                raise AssertionError(f"worker {worker.pod} did not start:\n{worker.log()}")
            time.sleep(0.05)

    def terminate_all(self, timeout_s: float = 30.0) -> dict[int, int]:
        """SIGTERM every live worker (once started) and wait; returns pid -> exit code."""
        live = [w for w in self.workers if w.alive()]
        for w in live:
            self.wait_started(w)
        for w in live:
            w.proc.send_signal(signal.SIGTERM)
        return {w.pid: w.proc.wait(timeout=timeout_s) for w in live}

    def stop_all(self) -> None:
        for w in self.workers:
            if w.alive():
                w.proc.send_signal(signal.SIGCONT)
                w.proc.kill()
            w.proc.wait()

    def killed_pids(self) -> set[int]:
        return {w.pid for w in self.workers if w.killed_at is not None}

    def fenced_in_logs(self, worker: Worker) -> int:
        return worker.log().count("finished after its lease was taken over")


class Supervisor:
    """Restarts any worker of ``slots`` that exits, as a Deployment's kubelet would."""

    def __init__(self, pool: WorkerPool, slots: range, poll_s: float = 0.05) -> None:
        self.pool = pool
        self.slots = slots
        self.poll_s = poll_s
        self.deaths: list[tuple[int, int | None]] = []  # (pid, exit code)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="supervisor")

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            for slot in self.slots:
                worker = self.pool.current(slot)
                if not worker.alive():
                    self.deaths.append((worker.pid, worker.proc.returncode))
                    self.pool.start(slot)
