"""`kubetaskqueue stats` (the counts per topic), `events` (the stream of what happens),
and `demo`, which ends with the stats table.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

import click

from .cli import _manager, cli, examples, runtime_errors
from .cli_topics import text_table

if TYPE_CHECKING:
    from .events import Event


STATS_COLUMNS = ("input", "scheduled", "work", "dead", "enqueued", "started", "retried",
                 "failed", "completed")
# What each column counts: README's glossary, in `stats --help` and under the demo's table.
STATS_GLOSSARY = {
    "input": "tasks ready to run",
    "scheduled": "tasks delayed or waiting out a retry backoff",
    "work": "tasks leased to a worker, running",
    "dead": "tasks that failed for good (kept until requeued or purged)",
    "enqueued": "tasks added",
    "started": "attempts begun",
    "retried": "attempts that errored (or asked to Retry) and will run again",
    "failed": "tasks with no retries left, moved to dead",
    "completed": "tasks done",
}


def glossary(columns: tuple[str, ...]) -> str:
    return "\n".join(f"{c:<10} {STATS_GLOSSARY[c]}" for c in columns)


@cli.command(help="Queue sizes and counters per topic, and live managers."
             "\n\n\b\n" + glossary(STATS_COLUMNS), epilog=examples(
    "kubetaskqueue stats",
    "kubetaskqueue stats --json",
))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
@click.pass_context
@runtime_errors
def stats(ctx: click.Context, as_json: bool) -> None:
    data = _manager(ctx).stats()
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    click.echo(format_stats_table(data))


def format_stats_table(data: dict[str, Any]) -> str:
    rows = [("topic", *STATS_COLUMNS)]
    rows += [(name, *(str(t[c]) for c in STATS_COLUMNS)) for name, t in data["topics"].items()]
    lines = text_table(rows)
    if not data["topics"]:
        lines.append("(no topics yet)")
    lines.append(f"live managers: {data['managers']}")
    paused = [name for name, t in data["topics"].items() if t.get("paused")]
    if paused:
        lines.append(f"paused (no claims): {', '.join(paused)}")
    return "\n".join(lines)


@cli.command(epilog=examples(
    "kubetaskqueue events --topic email",
    "kubetaskqueue events --json --from-start      # what Redis still holds, then live",
    "kubetaskqueue events --stats-interval 0       # task events only",
))
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line")
@click.option("--topic", "topics", multiple=True,
              help="Only these topics (repeatable) [default: all, including new ones]")
@click.option("--from-start", is_flag=True, help="Replay the events Redis still holds first")
@click.option("--stats-interval", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between MANAGER_STATS events (0 = none)")
@click.pass_context
@runtime_errors
def events(ctx: click.Context, as_json: bool, topics: tuple[str, ...], from_start: bool,
           stats_interval: float) -> None:
    """Stream task and manager events until interrupted."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stream = _manager(ctx).watch(topics or None, from_start=from_start,
                                 stats_interval_s=stats_interval or None)
    try:
        for event in stream:
            click.echo(json.dumps(event.as_dict()) if as_json else format_event(event))
    except KeyboardInterrupt:
        return


def format_event(event: Event) -> str:
    millis = int(event.time % 1 * 1000)
    stamp = time.strftime("%H:%M:%S", time.gmtime(event.time)) + f".{millis:03d}"
    if event.stats is not None:
        work = sum(t["work"] for t in event.stats["topics"].values())
        queued = sum(t["input"] for t in event.stats["topics"].values())
        return (f"{stamp} {event.type} managers={event.stats['managers']} input={queued} "
                f"work={work}")
    who = event.manager or f"{event.topic} {event.task_id}"
    attempt = f" attempt={event.attempt}" if event.attempt else ""
    detail = f" {event.detail}" if event.detail else ""
    return f"{stamp} {event.type} {who}{attempt}{detail}"


@cli.command(epilog=examples(
    "kubetaskqueue demo",
    "kubetaskqueue demo --tasks 3000",
))
@click.option("--tasks", type=click.IntRange(min=1), default=300, show_default=True,
              help="How many tasks to run")
@runtime_errors
def demo(tasks: int) -> None:
    """Run a self-contained demo on the embedded store (no Redis needed)."""
    from .demo import run_demo

    # Per-task retry lines would drown the progress bar; -v shows them.
    logger = logging.getLogger("kubetaskqueue")
    if logger.level > logging.DEBUG:
        logger.setLevel(logging.CRITICAL)
    stats, dead_reasons = run_demo(tasks)
    click.echo(format_stats_table(stats))
    click.echo(glossary(("retried", "failed")))
    for topic, reason, count in dead_reasons:
        click.echo(f"dead in {topic}: {count} x {reason}")
