"""Benchmark kubetaskqueue against celery, rq, dramatiq, arq and huey in one run.

    bench/setup.sh                      # once: bench/.venv with every peer
    bench/.venv/bin/python -m bench.run # full run, both task styles; --quick: smoke test

One fresh redis-server on a free port serves every workload of every peer
(flushed in between). Prints one Markdown table, then the JSON of every run;
also writes bench/results/latest.json. Workloads, task styles and how each
figure is taken are described in bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from bench.bytecode import precompile
from bench.peers import PEERS
from bench.redisserver import RedisServer
from bench.report import summarise, table
from bench.workers import REPO
from bench.workloads import Bench, loadavg

STYLES = ("noop", "redis")
FULL = {"w1": 20_000, "w2": 19_200, "single": 5_000, "lat": 1_000, "cmds": 2_000,
        "idle_s": 30.0, "runs": 3, "scale": (1, 2)}
QUICK = {"w1": 2_000, "w2": 300, "single": 500, "lat": 100, "cmds": 300, "idle_s": 3.0,
         "runs": 1, "scale": (1, 2)}


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


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def freeze_worker(repo: str, rev: str, dest: str) -> str:
    """Copy ``worker/`` as committed at ``rev`` of ``repo`` into ``dest``; returns the commit.

    Other engineers commit to the core while a 30-minute run goes on; an
    editable install would mix versions between runs, so every worker process
    imports this frozen copy instead (``--ktq-tree`` measures a tree as it is on disk).
    """
    commit = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    archive = subprocess.run(["git", "-C", repo, "archive", commit, "worker"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    precompile(os.path.join(dest, "worker"))
    return commit


def ktq_source(args: argparse.Namespace) -> tuple[str, str]:
    """(worker/ directory the workers import kubetaskqueue from, what it is for the report)."""
    tree = REPO if args.worktree else args.ktq_tree
    if tree:
        src = os.path.join(os.path.abspath(tree), "worker")
        if not os.path.isdir(os.path.join(src, "kubetaskqueue")):
            sys.exit(f"no worker/kubetaskqueue under {tree}")
        try:
            dirty = _git(tree, "status", "--porcelain", "--", "worker")
            what = f"tree {tree} at {_git(tree, 'rev-parse', 'HEAD')}" + (
                " + uncommitted changes" if dirty else "")
        except subprocess.CalledProcessError:
            what = f"tree {tree} (not a git checkout)"
        precompile(src)
        return src, what
    frozen = tempfile.mkdtemp(prefix="bench-ktq-")
    commit = freeze_worker(os.path.abspath(args.ktq_repo), args.ktq_rev, frozen)
    return os.path.join(frozen, "worker"), f"{args.ktq_rev} = {commit} of {args.ktq_repo}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run: smoke test")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--styles", default=",".join(STYLES),
                    help="task bodies, comma-separated: noop (nothing), redis (one INCR)")
    ap.add_argument("--runs", type=int, help="runs per peer and style (median is reported)")
    ap.add_argument("--scale", help="worker processes for the W1 scale-out rows, e.g. 1,2,4")
    ap.add_argument("--conc", action="append", default=[], metavar="PEER=N",
                    help="override a peer's tasks in flight per process for W1 (repeatable)")
    ap.add_argument("--only", help="comma-separated steps: enqueue,w1x1,w1x2,w2,cmds,latency")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--ktq-rev", default="HEAD",
                     help="git revision whose worker/ is measured (default HEAD); see --ktq-repo")
    src.add_argument("--ktq-tree", metavar="PATH",
                     help="measure PATH/worker as it is on disk (any checkout or worktree)")
    src.add_argument("--worktree", action="store_true",
                     help="measure this checkout's working tree (= --ktq-tree of this repo)")
    ap.add_argument("--ktq-repo", default=REPO, help="git repository for --ktq-rev")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "latest.json"))
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C: the finally blocks stop the workers and redis-server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = dict(QUICK if args.quick else FULL)
    if args.runs:
        sizes["runs"] = args.runs
    if args.scale:
        sizes["scale"] = tuple(int(p) for p in args.scale.split(","))
    names = [n for n in args.peers.split(",") if n]
    styles = [s for s in args.styles.split(",") if s]
    unknown = (set(names) - set(PEERS)) | (set(styles) - set(STYLES))
    if unknown:
        sys.exit(f"unknown peers or styles {sorted(unknown)}; peers: {', '.join(PEERS)}; "
                 f"styles: {', '.join(STYLES)}")
    for item in args.conc:
        name, _, n = item.partition("=")
        PEERS[name] = dataclasses.replace(PEERS[name], conc_w1=int(n))
    if args.only:
        sizes["only"] = args.only.split(",")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    logdir = tempfile.mkdtemp(prefix="bench-logs-")
    info = machine()
    ktq_src, info["kubetaskqueue_source"] = ktq_source(args)
    redis = RedisServer()
    info["redis"] = redis.version
    print(f"redis {redis.version} on port {redis.port}; kubetaskqueue from "
          f"{info['kubetaskqueue_source']}; worker logs in {logdir}", file=sys.stderr)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {n: [] for n in names} for s in styles}
    loads = []
    started = time.time()
    try:
        bench = Bench(redis, sizes, logdir, ktq_src)
        for run in range(sizes["runs"]):
            loads.append({"run": run + 1, "at": time.strftime("%H:%M UTC", time.gmtime()),
                          "load_before": loadavg()})
            print(f"run {run + 1}/{sizes['runs']} (load {loads[-1]['load_before']})",
                  file=sys.stderr, flush=True)
            for style in styles:
                bench.style = style
                for name in names:
                    results[style][name].append(bench.run_peer(PEERS[name], style == styles[0]))
            loads[-1]["load_after"] = loadavg()
    finally:
        redis.stop()
    span = (f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))}-"
            f"{time.strftime('%H:%M UTC', time.gmtime())} ({(time.time() - started) / 60:.1f} min)")
    rows = summarise(results, sizes["scale"])
    report = {"machine": info, "span": span, "sizes": sizes, "load": loads, "summary": rows,
              "runs": results,
              "config": {n: {"worker": " ".join(PEERS[n].worker_argv(
                  PEERS[n].conc_w1, False, 0)).replace(os.path.dirname(sys.executable) + "/", ""),
                  "conc_w1": PEERS[n].conc_w1, "conc_w2": PEERS[n].conc_w2,
                  "batch": PEERS[n].batch_api} for n in names}}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(f"Median of {sizes['runs']} run(s), {span}; kubetaskqueue "
          f"{info['kubetaskqueue_source']}; load before each run / at the end: "
          + "; ".join(f"{x['load_before']} / {x['load_after']}" for x in loads) + "\n")
    print(table(rows, sizes["scale"]))
    print()
    print("```json")
    print(json.dumps({"machine": info, "span": span, "load": loads}, indent=1))
    print("```")


if __name__ == "__main__":
    main()
