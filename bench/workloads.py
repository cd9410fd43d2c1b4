"""The workloads ``bench.run`` takes from every queue: each starts worker processes of one
peer against the shared redis-server and returns that run's raw figures.

How each figure is taken is described in bench/README.md ("How each figure is taken").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import probe
from bench.apps import TASK_KEY
from bench.peers import Peer
from bench.redisserver import RedisServer
from bench.workers import REPO, Workers

SCRIPT_CALLS = ("eval", "evalsha", "fcall")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Bench:
    def __init__(self, redis: RedisServer, sizes: dict[str, Any], logdir: str,
                 ktq_src: str | None) -> None:
        self.ktq_src = ktq_src  # the kubetaskqueue tree's worker/, put first on sys.path
        self.redis = redis
        self.sizes = sizes
        self.logdir = logdir
        self.style = "noop"  # the task body (bench/apps/__init__.py), set per pass by run.py

    # -- helpers ----------------------------------------------------------------

    def _env(self, conc: int, sleep_s: float, probe_dir: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(BENCH_REDIS_URL=self.redis.url, BENCH_CONC=str(conc),
                   BENCH_SLEEP_S=str(sleep_s), BENCH_PROBE_DIR=probe_dir,
                   BENCH_STYLE=self.style,
                   PYTHONPATH=os.pathsep.join(
                       [*([self.ktq_src] if self.ktq_src else []), REPO,
                        env.get("PYTHONPATH", "")]))
        return env

    def _enqueue(self, peer: Peer, mode: str, n: int) -> float:
        env = self._env(1, 0.0, "/nonexistent")
        out = subprocess.run([sys.executable, "-m", "bench.enqueue", peer.name, mode, str(n)],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"{peer.name} enqueue {mode} failed:\n{out.stderr[-2000:]}")
        return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])

    def _start(self, peer: Peer, nproc: int, conc: int, io: bool, probe_dir: str,
               tag: str) -> Workers:
        env = self._env(conc, 0.01 if io else 0.0, probe_dir)
        log = open(os.path.join(self.logdir, f"{peer.name}-{self.style}-{tag}.log"), "a")  # noqa: SIM115
        argvs = [peer.worker_argv(conc, io, i) for i in range(nproc)]
        for argv in argvs:
            argv[:] = [a.replace("BENCH_REDIS_URL", self.redis.url) for a in argv]
        return Workers(argvs, env, log)

    def _wait_done(self, workers: Workers, probe_dir: str, n: int,
                   timeout_s: float) -> dict[str, Any]:
        """Poll the probe files until ``n`` tasks finished; note CPU at the first one."""
        deadline = time.monotonic() + timeout_s
        cpu_first = done_first = None
        while True:
            done, first, last = probe.read(probe_dir)
            if cpu_first is None and done:
                cpu_first, done_first = workers.cpu_s(), done
            if done >= n:
                break
            if time.monotonic() > deadline or not workers.alive():
                raise TimeoutError(f"only {done}/{n} tasks finished"
                                   + ("" if workers.alive() else " (a worker exited)"))
            time.sleep(0.005)
        cpu_end = workers.cpu_s()
        return {"first": first, "last": last, "cpu_first": cpu_first, "done_first": done_first,
                "cpu_end": cpu_end}

    def _task_incrs(self) -> int:
        """INCRs the tasks made themselves (style redis), read after the counts are taken."""
        return int(self.redis.client.get(TASK_KEY) or 0)

    # -- workloads ----------------------------------------------------------------

    def enqueue_single(self, peer: Peer) -> dict[str, Any]:
        self.redis.flush()
        n = self.sizes["single"]
        before = self.redis.commands()
        took = self._enqueue(peer, "single", n)
        cmds = sum(RedisServer.delta(before, self.redis.commands()).values())
        self.redis.flush()
        return {"enqueue_single_per_s": n / took, "enqueue_single_cmds_per_task": cmds / n}

    def throughput(self, peer: Peer, nproc: int, io: bool) -> dict[str, Any]:
        """W1 (no-op, ``nproc`` processes) or W2 (10 ms sleeps, one process)."""
        self.redis.flush()
        n = self.sizes["w2" if io else "w1"]
        conc = peer.conc_w2 if io else peer.conc_w1
        assert conc is not None
        c0 = self.redis.commands()
        batch_s = self._enqueue(peer, "batch", n)
        c1 = self.redis.commands()
        redis_cpu0 = self.redis.cpu_s()
        probe_dir = tempfile.mkdtemp(prefix="bench-probe-")
        workers = self._start(peer, nproc, conc, io, probe_dir, "w2" if io else f"w1x{nproc}")
        try:
            r = self._wait_done(workers, probe_dir, n, timeout_s=max(120.0, n / 50))
            rss = workers.rss_mb()
            time.sleep(0.3)  # let the last acks land
            done_after, _, _ = probe.read(probe_dir)
            c2 = self.redis.commands()
            redis_cpu_us = (self.redis.cpu_s() - redis_cpu0) / n * 1e6
            task_incrs = self._task_incrs()
        finally:
            workers.stop()
        enq_cmds = RedisServer.delta(c0, c1)
        work_cmds = _without_task_io(RedisServer.delta(c1, c2), task_incrs)
        out: dict[str, Any] = {
            "tasks": n, "duplicates": done_after - n, "task_incrs": task_incrs,
            "per_s_from_launch": n / (r["last"] - workers.launched),
            "per_s_steady": n / (r["last"] - r["first"]),
            "startup_s": r["first"] - workers.launched,
        }
        if nproc == 1:
            left = n - r["done_first"]
            out.update(
                enqueue_batch_per_s=n / batch_s,
                enqueue_cmds_per_task=sum(enq_cmds.values()) / n,
                worker_cmds_per_task=sum(work_cmds.values()) / n,
                scripts_per_task=sum(v for k, v in {**enq_cmds, **work_cmds}.items()
                                     if k in SCRIPT_CALLS) / n,
                worker_cpu_us_per_task=(r["cpu_end"] - r["cpu_first"]) / max(1, left) * 1e6,
                redis_cpu_us_per_task=redis_cpu_us,
                rss_mb=rss, worker_commands=work_cmds, enqueue_commands=enq_cmds,
            )
        if peer.name == "kubetaskqueue":
            out["queue_state"] = self._ktq_state()
        self.redis.flush()
        return out

    def commands_by_origin(self, peer: Peer) -> dict[str, Any]:
        """A smaller W1 under MONITOR: commands sent by clients vs run inside Lua, per task
        (commandstats counts both alike). Its timing is not reported: MONITOR slows Redis."""
        self.redis.flush()
        n = self.sizes["cmds"]
        mon = self.redis.monitor()
        self._enqueue(peer, "batch", n)
        mon.stop()
        enq = mon
        probe_dir = tempfile.mkdtemp(prefix="bench-probe-")
        mon = self.redis.monitor()
        workers = self._start(peer, 1, peer.conc_w1, False, probe_dir, "cmds")
        try:
            self._wait_done(workers, probe_dir, n, timeout_s=max(120.0, n / 20))
            time.sleep(0.3)  # let the last acks land
            mon.stop()
            task_incrs = self._task_incrs()
        finally:
            workers.stop()
        sent = _without_task_io(mon.sent, task_incrs)
        self.redis.flush()
        return {
            "tasks": n,
            "enqueue_sent_per_task": sum(enq.sent.values()) / n,
            "enqueue_in_scripts_per_task": sum(enq.lua.values()) / n,
            "worker_sent_per_task": sum(sent.values()) / n,
            "worker_in_scripts_per_task": sum(mon.lua.values()) / n,
            "worker_sent": sent, "worker_in_scripts": mon.lua,
            "enqueue_sent": enq.sent, "enqueue_in_scripts": enq.lua,
        }

    def _ktq_state(self) -> dict[str, int]:
        """Tasks left in input/scheduled/work/dead after a run (all must be 0); input is the
        ``ready`` sorted set (and the list older versions kept it in)."""
        c = self.redis.client
        keys = {"input": ("ready", "input"), "scheduled": ("scheduled",), "work": ("work",),
                "dead": ("dead",)}
        return {kind: int(sum((c.llen(k) if c.type(k) == "list" else c.zcard(k))
                              for name in names for k in c.scan_iter(f"kubetaskqueue:*:{name}")))
                for kind, names in keys.items()}

    def latency_and_idle(self, peer: Peer, idle: bool) -> dict[str, Any]:
        """Enqueue → start at idle; then, if ``idle``, Redis commands/s of the idle worker."""
        self.redis.flush()
        probe_dir = tempfile.mkdtemp(prefix="bench-probe-")
        n = self.sizes["lat"]
        workers = self._start(peer, 1, peer.conc_w1, False, probe_dir, "latency")
        out: dict[str, Any] = {}
        try:
            self._enqueue(peer, "single", 1)  # warm-up: the worker is up and has run a task
            self._wait_done(workers, probe_dir, 1, timeout_s=60)
            time.sleep(1.0)  # idle again
            self._enqueue(peer, "spaced", n)
            self._wait_done(workers, probe_dir, n + 1, timeout_s=120)
            lat = sorted(probe.latencies(probe_dir))
            out["latency_p50_ms"] = 1e3 * lat[len(lat) // 2]
            out["latency_p99_ms"] = 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            if idle:
                time.sleep(2.0)
                c0 = self.redis.commands()
                t0 = time.monotonic()
                time.sleep(self.sizes["idle_s"])
                cmds = RedisServer.delta(c0, self.redis.commands())
                out["idle_cmds_per_s"] = sum(cmds.values()) / (time.monotonic() - t0)
                out["idle_commands"] = cmds
        finally:
            workers.stop()
        self.redis.flush()
        return out

    def run_peer(self, peer: Peer, first_style: bool) -> dict[str, Any]:
        """Every step for one peer in the current style. Enqueue-only steps and idle do not
        run a task, so they are taken in the first style only."""
        res: dict[str, Any] = {}
        steps: list[tuple[str, Any]] = []
        if first_style:
            steps.append(("enqueue", lambda: self.enqueue_single(peer)))
        for nproc in self.sizes["scale"]:
            steps.append((f"w1x{nproc}", lambda p=nproc: self.throughput(peer, p, False)))
        if peer.conc_w2 is not None:
            steps.append(("w2", lambda: self.throughput(peer, 1, True)))
        steps.append(("cmds", lambda: self.commands_by_origin(peer)))
        steps.append(("latency", lambda: self.latency_and_idle(peer, first_style)))
        for name, step in steps:
            if "only" in self.sizes and name not in self.sizes["only"]:
                continue
            t0 = time.monotonic()
            info = {"load1": float(loadavg().split()[0]),
                    "at": time.strftime("%H:%M:%S", time.gmtime())}
            try:
                res[name] = {**info, **step()}
            except Exception as exc:
                res[name] = {**info, "error": str(exc).strip().splitlines()[-1][:300]}
            print(f"  {peer.name:13} {self.style:5} {name:8} {time.monotonic() - t0:6.1f}s "
                  f"{_brief(res[name])}", file=sys.stderr, flush=True)
        return res


def _without_task_io(cmds: dict[str, int], task_incrs: int) -> dict[str, int]:
    """The queue's own commands: the tasks' INCRs (one per task run, style redis) taken off."""
    out = dict(cmds)
    if task_incrs:
        out["incr"] = out.get("incr", 0) - task_incrs
    return {k: v for k, v in out.items() if v}


def _brief(r: dict[str, Any]) -> str:
    keys = ("error", "per_s_from_launch", "per_s_steady", "enqueue_single_per_s",
            "worker_in_scripts_per_task", "latency_p50_ms", "idle_cmds_per_s", "duplicates",
            "queue_state", "load1")
    return " ".join(f"{k}={_fmt(r[k])}" for k in keys if k in r)


def _fmt(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)
