"""Benchmark kubetaskqueue against celery, rq, dramatiq, arq and huey in one run.

    bench/setup.sh                      # once: bench/.venv with every peer
    bench/.venv/bin/python -m bench.run # full run: ~30 min; --quick: ~2 min

One fresh redis-server on a free port serves every workload of every peer
(flushed in between). Prints one Markdown table, then the JSON of every run;
also writes bench/results/latest.json. Workloads and how each figure is taken
are described in bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from bench import probe
from bench.peers import PEERS, Peer
from bench.redisserver import RedisServer
from bench.workers import REPO, Workers

IDEAL_W2 = 6400.0  # 64 slots / 10 ms
FULL = {"w1": 20_000, "w2": 3_000, "single": 5_000, "lat": 1_000, "idle_s": 30.0, "runs": 3,
        "scale": (1, 2, 4)}
QUICK = {"w1": 2_000, "w2": 300, "single": 500, "lat": 100, "idle_s": 3.0, "runs": 1,
         "scale": (1, 2)}


class Bench:
    def __init__(self, redis: RedisServer, sizes: dict[str, Any], logdir: str,
                 ktq_src: str | None) -> None:
        self.ktq_src = ktq_src  # a frozen copy of worker/ put first on sys.path, or None
        self.redis = redis
        self.sizes = sizes
        self.logdir = logdir

    # -- helpers ----------------------------------------------------------------

    def _env(self, peer: Peer, conc: int, sleep_s: float, probe_dir: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(BENCH_REDIS_URL=self.redis.url, BENCH_CONC=str(conc),
                   BENCH_SLEEP_S=str(sleep_s), BENCH_PROBE_DIR=probe_dir,
                   PYTHONPATH=os.pathsep.join(
                       [*([self.ktq_src] if self.ktq_src else []), REPO,
                        env.get("PYTHONPATH", "")]))
        return env

    def _enqueue(self, peer: Peer, mode: str, n: int) -> float:
        env = self._env(peer, 1, 0.0, "/nonexistent")
        out = subprocess.run([sys.executable, "-m", "bench.enqueue", peer.name, mode, str(n)],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"{peer.name} enqueue {mode} failed:\n{out.stderr[-2000:]}")
        return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])

    def _start(self, peer: Peer, nproc: int, conc: int, io: bool, probe_dir: str,
               tag: str) -> Workers:
        env = self._env(peer, conc, 0.01 if io else 0.0, probe_dir)
        log = open(os.path.join(self.logdir, f"{peer.name}-{tag}.log"), "a")  # noqa: SIM115
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
        finally:
            workers.stop()
        enq_cmds = RedisServer.delta(c0, c1)
        work_cmds = RedisServer.delta(c1, c2)
        out: dict[str, Any] = {
            "tasks": n, "duplicates": done_after - n,
            "per_s_from_launch": n / (r["last"] - workers.launched),
            "per_s_steady": n / (r["last"] - r["first"]),
            "startup_s": r["first"] - workers.launched,
        }
        if not io and nproc == 1:
            left = n - r["done_first"]
            out.update(
                enqueue_batch_per_s=n / batch_s,
                enqueue_cmds_per_task=sum(enq_cmds.values()) / n,
                worker_cmds_per_task=sum(work_cmds.values()) / n,
                scripts_per_task=sum(v for k, v in {**enq_cmds, **work_cmds}.items()
                                     if k in ("eval", "evalsha", "fcall")) / n,
                worker_cpu_us_per_task=(r["cpu_end"] - r["cpu_first"]) / max(1, left) * 1e6,
                redis_cpu_us_per_task=redis_cpu_us,
                rss_mb=rss, worker_commands=work_cmds, enqueue_commands=enq_cmds,
            )
        if peer.name == "kubetaskqueue":
            out["queue_state"] = self._ktq_state()
        self.redis.flush()
        return out

    def _ktq_state(self) -> dict[str, int]:
        """Tasks left in input/scheduled/work/dead after a run (all must be 0); input is the
        ``ready`` sorted set (and the list older versions kept it in)."""
        c = self.redis.client
        keys = {"input": ("ready", "input"), "scheduled": ("scheduled",), "work": ("work",),
                "dead": ("dead",)}
        return {kind: int(sum((c.llen(k) if c.type(k) == "list" else c.zcard(k))
                              for name in names for k in c.scan_iter(f"kubetaskqueue:*:{name}")))
                for kind, names in keys.items()}

    def latency_and_idle(self, peer: Peer) -> dict[str, Any]:
        self.redis.flush()
        probe_dir = tempfile.mkdtemp(prefix="bench-probe-")
        n = self.sizes["lat"]
        workers = self._start(peer, 1, peer.conc_w1, False, probe_dir, "latency")
        try:
            self._enqueue(peer, "single", 1)  # warm-up: the worker is up and has run a task
            self._wait_done(workers, probe_dir, 1, timeout_s=60)
            time.sleep(1.0)  # idle again
            self._enqueue(peer, "spaced", n)
            self._wait_done(workers, probe_dir, n + 1, timeout_s=120)
            lat = sorted(probe.latencies(probe_dir))
            time.sleep(2.0)
            c0 = self.redis.commands()
            t0 = time.monotonic()
            time.sleep(self.sizes["idle_s"])
            idle = RedisServer.delta(c0, self.redis.commands())
            idle_s = time.monotonic() - t0
        finally:
            workers.stop()
        self.redis.flush()
        return {
            "latency_p50_ms": 1e3 * lat[len(lat) // 2],
            "latency_p99_ms": 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "idle_cmds_per_s": sum(idle.values()) / idle_s, "idle_commands": idle,
        }

    def run_peer(self, peer: Peer) -> dict[str, Any]:
        res: dict[str, Any] = {}
        steps: list[tuple[str, Any]] = [("enqueue", lambda: self.enqueue_single(peer))]
        for nproc in self.sizes["scale"]:
            steps.append((f"w1x{nproc}", lambda p=nproc: self.throughput(peer, p, False)))
        if peer.conc_w2 is not None:
            steps.append(("w2", lambda: self.throughput(peer, 1, True)))
        steps.append(("latency", lambda: self.latency_and_idle(peer)))
        for name, step in steps:
            if "only" in self.sizes and name not in self.sizes["only"]:
                continue
            t0 = time.monotonic()
            try:
                res[name] = step()
            except Exception as exc:
                res[name] = {"error": str(exc).strip().splitlines()[-1][:300]}
            print(f"  {peer.name:13} {name:8} {time.monotonic() - t0:6.1f}s "
                  f"{_brief(res[name])}", file=sys.stderr, flush=True)
        return res


def _brief(r: dict[str, Any]) -> str:
    keys = ("error", "per_s_from_launch", "per_s_steady", "enqueue_single_per_s",
            "latency_p50_ms", "idle_cmds_per_s", "duplicates", "queue_state")
    return " ".join(f"{k}={_fmt(r[k])}" for k in keys if k in r)


def _fmt(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def machine() -> dict[str, Any]:
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    dists = sorted({d for p in PEERS.values() for d in p.dists})
    versions = {}
    for d in dists:
        try:
            versions[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            versions[d] = "not installed"
    return {
        "date": sh("date -u '+%Y-%m-%d %H:%M UTC'"), "nproc": sh("nproc"),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "ram": sh("free -h | awk '/Mem:/{print $2}'"),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"), "kernel": sh("uname -r"),
        "python": sys.version.split()[0], "versions": versions,
    }


def freeze_worker(dest: str) -> str:
    """Copy worker/ as committed at HEAD into ``dest``; returns the commit.

    Other engineers commit to the core while a 30-minute run goes on; an
    editable install would mix versions between runs, so every worker process
    imports this frozen copy instead (``--worktree`` measures the working tree).
    """
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "worker"], cwd=REPO,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return commit


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def median(runs: list[dict[str, Any]], step: str, key: str) -> float | None:
    vals = [r[step][key] for r in runs if step in r and key in r[step]]
    return statistics.median(vals) if vals else None


def summarise(results: dict[str, list[dict[str, Any]]], scale: tuple[int, ...]) -> dict[str, Any]:
    rows: dict[str, dict[str, float | None]] = {}
    for name, runs in results.items():
        row = {
            "w1_per_s": median(runs, "w1x1", "per_s_from_launch"),
            "w1_steady_per_s": median(runs, "w1x1", "per_s_steady"),
            "startup_s": median(runs, "w1x1", "startup_s"),
            "w2_per_s": median(runs, "w2", "per_s_steady"),
            "enqueue_single_per_s": median(runs, "enqueue", "enqueue_single_per_s"),
            "enqueue_batch_per_s": median(runs, "w1x1", "enqueue_batch_per_s"),
            "latency_p50_ms": median(runs, "latency", "latency_p50_ms"),
            "latency_p99_ms": median(runs, "latency", "latency_p99_ms"),
            "idle_cmds_per_s": median(runs, "latency", "idle_cmds_per_s"),
            "rss_mb": median(runs, "w1x1", "rss_mb"),
            "cpu_us_per_task": median(runs, "w1x1", "worker_cpu_us_per_task"),
            "redis_cpu_us_per_task": median(runs, "w1x1", "redis_cpu_us_per_task"),
            "enqueue_cmds_per_task": median(runs, "w1x1", "enqueue_cmds_per_task"),
            "worker_cmds_per_task": median(runs, "w1x1", "worker_cmds_per_task"),
            "scripts_per_task": median(runs, "w1x1", "scripts_per_task"),
        }
        for p in scale:
            row[f"scale{p}_per_s"] = median(runs, f"w1x{p}", "per_s_steady")
        rows[name] = row
    return rows


# (key, header, format, higher is better)
COLUMNS = [
    ("w1_per_s", "W1 no-op tasks/s", "{:,.0f}", True),
    ("w1_steady_per_s", "W1 steady tasks/s", "{:,.0f}", True),
    ("startup_s", "startup s", "{:.2f}", False),
    ("w2_per_s", "W2 I/O tasks/s (% of 6,400)", "w2", True),
    ("enqueue_single_per_s", "enqueue single /s", "{:,.0f}", True),
    ("enqueue_batch_per_s", "enqueue batch /s", "{:,.0f}", True),
    ("latency_p50_ms", "latency p50 ms", "{:.2f}", False),
    ("latency_p99_ms", "latency p99 ms", "{:.2f}", False),
    ("idle_cmds_per_s", "idle cmds/s", "{:.2f}", False),
    ("rss_mb", "RSS MB after W1", "{:.0f}", False),
    ("cpu_us_per_task", "worker CPU µs/task", "{:.0f}", False),
    ("redis_cpu_us_per_task", "redis-server CPU µs/task (worker side)", "{:.0f}", False),
    ("enqueue_cmds_per_task", "Redis cmds/task enqueue", "{:.2f}", False),
    ("worker_cmds_per_task", "Redis cmds/task worker", "{:.2f}", False),
    ("scripts_per_task", "of them EVAL(SHA)/task", "{:.2f}", False),
]


def table(rows: dict[str, dict[str, float | None]], scale: tuple[int, ...]) -> str:
    cols = list(COLUMNS)
    for p in scale:
        cols.append((f"scale{p}_per_s", f"W1 {p} proc(s) steady tasks/s", "{:,.0f}", True))
    names = list(rows)
    out = ["| " + " | ".join(["metric", *names, "ours ÷ best peer"]) + " |",
           "|" + "---|" * (len(names) + 2)]
    for key, header, fmt, higher in cols:
        cells = []
        for n in names:
            v = rows[n][key]
            if v is None:
                cells.append("n/a")
            elif fmt == "w2":
                cells.append(f"{v:,.0f} ({100 * v / IDEAL_W2:.0f} %)")
            else:
                cells.append(fmt.format(v))
        peers = [rows[n][key] for n in names if n != "kubetaskqueue" and rows[n][key] is not None]
        ours = rows.get("kubetaskqueue", {}).get(key)
        ratio = "n/a"
        if peers and ours:
            best = max(peers) if higher else min(peers)
            ratio = f"{ours / best:.2f}" if best else "n/a"
        out.append("| " + " | ".join([header, *cells, ratio]) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run: smoke test")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--runs", type=int, help="runs per peer (median is reported)")
    ap.add_argument("--conc", action="append", default=[], metavar="PEER=N",
                    help="override a peer's tasks in flight per process for W1 (repeatable)")
    ap.add_argument("--only", help="comma-separated steps: enqueue,w1x1,w1x2,w1x4,w2,latency")
    ap.add_argument("--worktree", action="store_true",
                    help="run kubetaskqueue from the working tree instead of a copy of HEAD")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "latest.json"))
    args = ap.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    if args.runs:
        sizes["runs"] = args.runs
    names = [n for n in args.peers.split(",") if n]
    unknown = set(names) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    for item in args.conc:
        name, _, n = item.partition("=")
        PEERS[name] = dataclasses.replace(PEERS[name], conc_w1=int(n))
    if args.only:
        sizes["only"] = args.only.split(",")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    logdir = tempfile.mkdtemp(prefix="bench-logs-")
    info = machine()
    ktq_src = None
    if not args.worktree:
        frozen = tempfile.mkdtemp(prefix="bench-ktq-")
        info["kubetaskqueue_commit"] = freeze_worker(frozen)
        ktq_src = os.path.join(frozen, "worker")
    else:
        info["kubetaskqueue_commit"] = "working tree"
    redis = RedisServer()
    info["redis"] = redis.version
    print(f"redis {redis.version} on port {redis.port}; worker logs in {logdir}", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    loads = []
    try:
        bench = Bench(redis, sizes, logdir, ktq_src)
        for run in range(sizes["runs"]):
            loads.append({"run": run + 1, "load_before": loadavg()})
            print(f"run {run + 1}/{sizes['runs']} (load {loads[-1]['load_before']})",
                  file=sys.stderr, flush=True)
            for name in names:
                results[name].append(bench.run_peer(PEERS[name]))
            loads[-1]["load_after"] = loadavg()
    finally:
        redis.stop()
    rows = summarise(results, sizes["scale"])
    report = {"machine": info, "sizes": sizes, "load": loads, "summary": rows, "runs": results,
              "config": {n: {"worker": " ".join(PEERS[n].worker_argv(
                  PEERS[n].conc_w1, False, 0)).replace(os.path.dirname(sys.executable) + "/", ""),
                  "conc_w1": PEERS[n].conc_w1, "conc_w2": PEERS[n].conc_w2,
                  "batch": PEERS[n].batch_api} for n in names}}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(table(rows, sizes["scale"]))
    print()
    print("```json")
    print(json.dumps({"machine": info, "load": loads, "summary": rows}, indent=1))
    print("```")


if __name__ == "__main__":
    main()
