"""Medians over runs, and the Markdown table ``bench.run`` prints: one row per figure and
task style, a column per queue, "ours ÷ fastest peer" and the 1-minute load averages
under which that figure's runs were taken."""

from __future__ import annotations

import statistics
from typing import Any, NamedTuple

IDEAL_W2 = 6400.0  # 64 slots / 10 ms


# A figure of the table: where its value comes from, and how it is shown.
class Figure(NamedTuple):
    key: str
    step: str  # the bench step whose result holds it
    field: str  # its name in that result
    header: str
    fmt: str
    higher_is_better: bool


FIGURES: list[Figure] = [
    Figure("w1_per_s", "w1x1", "per_s_from_launch",
           "W1 tasks/s, 1 process (from launch)", "{:,.0f}", True),
    Figure("w1_steady_per_s", "w1x1", "per_s_steady",
           "W1 steady tasks/s", "{:,.0f}", True),
    Figure("startup_s", "w1x1", "startup_s",
           "startup s", "{:.2f}", False),
    Figure("w2_per_s", "w2", "per_s_steady",
           "W2 10 ms tasks/s, 64 slots (% of 6,400)", "w2", True),
    Figure("enqueue_single_per_s", "enqueue", "enqueue_single_per_s",
           "enqueue single /s", "{:,.0f}", True),
    Figure("enqueue_batch_per_s", "w1x1", "enqueue_batch_per_s",
           "bulk enqueue /s (1,000 per call)", "{:,.0f}", True),
    Figure("latency_p50_ms", "latency", "latency_p50_ms",
           "enqueue → start p50 ms, idle", "{:.2f}", False),
    Figure("latency_p99_ms", "latency", "latency_p99_ms",
           "enqueue → start p99 ms, idle", "{:.2f}", False),
    Figure("idle_cmds_per_s", "latency", "idle_cmds_per_s",
           "idle cmds/s", "{:.2f}", False),
    Figure("rss_mb", "w1x1", "rss_mb",
           "RSS MB after W1", "{:.0f}", False),
    Figure("cpu_us_per_task", "w1x1", "worker_cpu_us_per_task",
           "worker CPU µs/task (W1)", "{:.0f}", False),
    Figure("redis_cpu_us_per_task", "w1x1", "redis_cpu_us_per_task",
           "redis-server CPU µs/task (W1 worker side)", "{:.0f}", False),
    Figure("enqueue_cmds_per_task", "w1x1", "enqueue_cmds_per_task",
           "Redis cmds/task, enqueue (commandstats)", "{:.2f}", False),
    Figure("worker_cmds_per_task", "w1x1", "worker_cmds_per_task",
           "Redis cmds/task, worker (commandstats, task's INCR off)", "{:.2f}", False),
    Figure("scripts_per_task", "w1x1", "scripts_per_task",
           "of them EVAL(SHA)/task", "{:.2f}", False),
    Figure("worker_sent_per_task", "cmds", "worker_sent_per_task",
           "worker cmds sent/task (MONITOR, task's INCR off)", "{:.2f}", False),
    Figure("worker_in_scripts_per_task", "cmds", "worker_in_scripts_per_task",
           "worker cmds inside scripts/task (MONITOR)", "{:.2f}", False),
    Figure("enqueue_in_scripts_per_task", "cmds", "enqueue_in_scripts_per_task",
           "bulk enqueue cmds inside scripts/task (MONITOR)", "{:.2f}", False),
]


def _scale_figures(scale: tuple[int, ...]) -> list[Figure]:
    """W1 with p worker processes, one figure per process count."""
    return [Figure(f"scale{p}_per_s", f"w1x{p}", "per_s_steady",
                   f"W1 {p} processes, steady tasks/s", "{:,.0f}", True) for p in scale]


# Figures of steps that run no task: taken in the first style only, shown once.
STYLELESS = {"enqueue_single_per_s", "idle_cmds_per_s"}


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]],
              scale: tuple[int, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    """``results[style][peer]`` = runs → ``rows[style][peer][key]`` = median (or None), and
    ``rows[style][peer]["load1:" + key]`` = the 1-minute loads of that figure's runs."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    figures = FIGURES + _scale_figures(scale)
    for style, peers in results.items():
        rows[style] = {}
        for name, runs in peers.items():
            row: dict[str, Any] = {}
            for f in figures:
                taken = [r[f.step] for r in runs if f.field in r.get(f.step, {})]
                row[f.key] = statistics.median(t[f.field] for t in taken) if taken else None
                row["load1:" + f.key] = [t["load1"] for t in taken]
            if row.get("scale1_per_s") and row.get("scale2_per_s"):
                row["scale2_over_1"] = row["scale2_per_s"] / row["scale1_per_s"]
                row["load1:scale2_over_1"] = row["load1:scale2_per_s"]
            rows[style][name] = row
    return rows


def table(rows: dict[str, dict[str, dict[str, Any]]], scale: tuple[int, ...]) -> str:
    # 1 process is the "W1 steady" row already
    figures = FIGURES + [f for f in _scale_figures(scale) if f.key != "scale1_per_s"]
    if 1 in scale and 2 in scale:
        figures.append(Figure("scale2_over_1", "", "", "W1 2 processes ÷ 1 process", "{:.2f}",
                              True))
    styles = list(rows)
    names = list(rows[styles[0]])
    out = ["| " + " | ".join(["metric", "task", *names, "ours ÷ fastest peer",
                              "load 1 min (min-max)"]) + " |",
           "|" + "---|" * (len(names) + 4)]
    for key, _, _, header, fmt, higher in figures:
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
