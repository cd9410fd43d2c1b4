"""`kubetaskqueue pause|resume TOPIC`, `kubetaskqueue topics [drop TOPIC]`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from .cli import _lasting_manager, _manager, cli, examples, runtime_errors

if TYPE_CHECKING:
    from .manager import Manager
    from .topics import TopicRow

TOPIC_COLUMNS = ("paused", "max_queued", "managers", "input", "scheduled", "work", "dead")


@cli.command(epilog=examples(
    "kubetaskqueue pause email      # managers stop claiming; enqueues still go in"))
@click.argument("topic")
@click.pass_context
@runtime_errors
def pause(ctx: click.Context, topic: str) -> None:
    """Stop every manager claiming from TOPIC: enqueues still go in, in-flight tasks
    finish, delayed tasks still become ready."""
    manager = _lasting_manager(ctx, "pause")
    new = _note_unknown(manager, topic)
    if manager.pause(topic):
        click.echo(f"paused topic {topic!r}{new}; `kubetaskqueue resume {topic}` undoes it")
    else:
        click.echo(f"topic {topic!r} was already paused")


@cli.command(epilog=examples(
    "kubetaskqueue resume email     # idle managers wake at once"))
@click.argument("topic")
@click.pass_context
@runtime_errors
def resume(ctx: click.Context, topic: str) -> None:
    """Let managers claim from TOPIC again (idle ones wake at once)."""
    if _lasting_manager(ctx, "resume").resume(topic):
        click.echo(f"resumed topic {topic!r}")
    else:
        click.echo(f"topic {topic!r} was not paused")


@cli.group(epilog=examples("kubetaskqueue topics", "kubetaskqueue topics --json",
                           "kubetaskqueue topics drop emial"),
           invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object a topic")
@click.pass_context
@runtime_errors
def topics(ctx: click.Context, as_json: bool) -> None:
    """List topics (enqueued to, or served by a live manager) with their managers,
    counts and controls."""
    if ctx.invoked_subcommand is not None:
        return
    from .topics import list_topics

    manager = _manager(ctx)
    rows = list_topics(manager.store.client, manager.settings.namespace)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], sort_keys=True))
    else:
        click.echo(format_topics_table(rows))


@topics.command("drop", epilog=examples("kubetaskqueue topics drop emial"))
@click.argument("topic")
@click.pass_context
@runtime_errors
def drop(ctx: click.Context, topic: str) -> None:
    """Forget TOPIC (its counters, events, pause and limit): only an empty topic that
    no live manager serves."""
    from .topics import drop_topic

    drop_topic(_lasting_manager(ctx, "topics drop").store, topic)
    click.echo(f"dropped topic {topic!r}")


def _note_unknown(manager: Manager, topic: str) -> str:
    """Pausing a topic before anything uses it is fine, but say so: it may be a typo."""
    from .queue_state import known_topics

    if topic in known_topics(manager.store.client, manager.settings.namespace):
        return ""
    return " (nothing was enqueued to it yet)"


def format_topics_table(rows: list[TopicRow]) -> str:
    cells: list[tuple[str, ...]] = [("topic", *TOPIC_COLUMNS)]
    for row in rows:
        d = row.as_dict()
        d["paused"] = "yes" if d["paused"] else "no"
        d["max_queued"] = "-" if d["max_queued"] is None else d["max_queued"]
        cells.append((row.name, *(str(d[c]) for c in TOPIC_COLUMNS)))
    return "\n".join(text_table(cells) + ([] if rows else ["(no topics yet)"]))


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns: the first left-aligned, the rest (numbers) right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
            for row in rows]
