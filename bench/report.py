"""Medians over runs, and the Markdown table ``bench.run`` prints: one row per figure and
task style, a column per queue, "ours ÷ fastest peer" and the 1-minute load averages
under which that figure's runs were taken."""

from __future__ import annotations

import statistics
from typing import Any

IDEAL_W2 = 6400.0  # 64 slots / 10 ms

# (key, step, field in the step's result)
FIGURES: list[tuple[str, str, str]] = [
    ("w1_per_s", "w1x1", "per_s_from_launch"),
    ("w1_steady_per_s", "w1x1", "per_s_steady"),
    ("startup_s", "w1x1", "startup_s"),
    ("w2_per_s", "w2", "per_s_steady"),
    ("enqueue_single_per_s", "enqueue", "enqueue_single_per_s"),
    ("enqueue_batch_per_s", "w1x1", "enqueue_batch_per_s"),
    ("latency_p50_ms", "latency", "latency_p50_ms"),
    ("latency_p99_ms", "latency", "latency_p99_ms"),
    ("idle_cmds_per_s", "latency", "idle_cmds_per_s"),
    ("rss_mb", "w1x1", "rss_mb"),
    ("cpu_us_per_task", "w1x1", "worker_cpu_us_per_task"),
    ("redis_cpu_us_per_task", "w1x1", "redis_cpu_us_per_task"),
    ("enqueue_cmds_per_task", "w1x1", "enqueue_cmds_per_task"),
    ("worker_cmds_per_task", "w1x1", "worker_cmds_per_task"),
    ("scripts_per_task", "w1x1", "scripts_per_task"),
    ("worker_sent_per_task", "cmds", "worker_sent_per_task"),
    ("worker_in_scripts_per_task", "cmds", "worker_in_scripts_per_task"),
    ("enqueue_in_scripts_per_task", "cmds", "enqueue_in_scripts_per_task"),
]

# (key, header, format, higher is better); scale rows are added per process count
COLUMNS: list[tuple[str, str, str, bool]] = [
    ("w1_per_s", "W1 tasks/s, 1 process (from launch)", "{:,.0f}", True),
    ("w1_steady_per_s", "W1 steady tasks/s", "{:,.0f}", True),
    ("startup_s", "startup s", "{:.2f}", False),
    ("w2_per_s", "W2 10 ms tasks/s, 64 slots (% of 6,400)", "w2", True),
    ("enqueue_single_per_s", "enqueue single /s", "{:,.0f}", True),
    ("enqueue_batch_per_s", "bulk enqueue /s (1,000 per call)", "{:,.0f}", True),
    ("latency_p50_ms", "enqueue → start p50 ms, idle", "{:.2f}", False),
    ("latency_p99_ms", "enqueue → start p99 ms, idle", "{:.2f}", False),
    ("idle_cmds_per_s", "idle cmds/s", "{:.2f}", False),
    ("rss_mb", "RSS MB after W1", "{:.0f}", False),
    ("cpu_us_per_task", "worker CPU µs/task (W1)", "{:.0f}", False),
    ("redis_cpu_us_per_task", "redis-server CPU µs/task (W1 worker side)", "{:.0f}", False),
    ("enqueue_cmds_per_task", "Redis cmds/task, enqueue (commandstats)", "{:.2f}", False),
    ("worker_cmds_per_task", "Redis cmds/task, worker (commandstats, task's INCR off)",
     "{:.2f}", False),
    ("scripts_per_task", "of them EVAL(SHA)/task", "{:.2f}", False),
    ("worker_sent_per_task", "worker cmds sent/task (MONITOR, task's INCR off)", "{:.2f}",
     False),
    ("worker_in_scripts_per_task", "worker cmds inside scripts/task (MONITOR)", "{:.2f}",
     False),
    ("enqueue_in_scripts_per_task", "bulk enqueue cmds inside scripts/task (MONITOR)",
     "{:.2f}", False),
]
# Figures of steps that run no task: taken in the first style only, shown once.
STYLELESS = {"enqueue_single_per_s", "idle_cmds_per_s"}


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]],
              scale: tuple[int, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    """``results[style][peer]`` = runs → ``rows[style][peer][key]`` = median (or None), and
    ``rows[style][peer]["load1:" + key]`` = the 1-minute loads of that figure's runs."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    figures = FIGURES + [(f"scale{p}_per_s", f"w1x{p}", "per_s_steady") for p in scale]
    for style, peers in results.items():
        rows[style] = {}
        for name, runs in peers.items():
            row: dict[str, Any] = {}
            for key, step, field in figures:
                vals = [r[step][field] for r in runs if field in r.get(step, {})]
                row[key] = statistics.median(vals) if vals else None
                row["load1:" + key] = [r[step]["load1"] for r in runs
                                       if field in r.get(step, {})]
            if row.get("scale1_per_s") and row.get("scale2_per_s"):
                row["scale2_over_1"] = row["scale2_per_s"] / row["scale1_per_s"]
                row["load1:scale2_over_1"] = row["load1:scale2_per_s"]
            rows[style][name] = row
    return rows


def table(rows: dict[str, dict[str, dict[str, Any]]], scale: tuple[int, ...]) -> str:
    cols = list(COLUMNS)
    # 1 process is the "W1 steady" row already
    cols += [(f"scale{p}_per_s", f"W1 {p} processes, steady tasks/s", "{:,.0f}", True)
             for p in scale if p != 1]
    if 1 in scale and 2 in scale:
        cols.append(("scale2_over_1", "W1 2 processes ÷ 1 process", "{:.2f}", True))
    styles = list(rows)
    names = list(rows[styles[0]])
    out = ["| " + " | ".join(["metric", "task", *names, "ours ÷ fastest peer",
                              "load 1 min (min-max)"]) + " |",
           "|" + "---|" * (len(names) + 4)]
    for key, header, fmt, higher in cols:
        for style in styles[:1] if key in STYLELESS else styles:
            r = rows[style]
            if all(r[n].get(key) is None for n in names):
                continue
            cells = [_cell(r[n].get(key), fmt) for n in names]
            loads = [x for n in names for x in r[n].get("load1:" + key, [])]
            load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"
            task = "—" if key in STYLELESS else style
            out.append("| " + " | ".join([header, task, *cells, _ratio(r, names, key, higher),
                                          load]) + " |")
    return "\n".join(out)


def _cell(v: float | None, fmt: str) -> str:
    if v is None:
        return "n/a"
    if fmt == "w2":
        return f"{v:,.0f} ({100 * v / IDEAL_W2:.0f} %)"
    return fmt.format(v)


def _ratio(r: dict[str, dict[str, Any]], names: list[str], key: str, higher: bool) -> str:
    """Ours ÷ the fastest peer: the highest rate, or the lowest cost or latency."""
    peers = [r[n][key] for n in names if n != "kubetaskqueue" and r[n].get(key) is not None]
    ours = r.get("kubetaskqueue", {}).get(key)
    if not peers or ours is None:
        return "n/a"
    best = max(peers) if higher else min(peers)
    # a peer that sends (almost) none of these, e.g. no scripts: a ratio would mean nothing
    return f"{ours / best:.2f}" if abs(best) >= 0.05 else "n/a"
