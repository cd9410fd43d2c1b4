"""`kubetaskqueue dead list|requeue|purge TOPIC`: the tasks that failed after all retries."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from .cli import _fail, _lasting_manager, _manager, cli, examples, runtime_errors

if TYPE_CHECKING:
    from .store import RedisStore


@cli.group(epilog=examples(
    "kubetaskqueue dead list email --error Timeout",
    "kubetaskqueue dead requeue email --all --dry-run",
    "kubetaskqueue dead purge email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d",
))
def dead() -> None:
    """Inspect, requeue or purge dead tasks (failed after all retries)."""


@dead.command("list", epilog=examples(
    "kubetaskqueue dead list email",
    "kubetaskqueue dead list email --error Timeout --json",
))
@click.argument("topic")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line")
@click.option("--error", "error_contains", default=None, metavar="SUBSTRING",
              help="Only tasks whose last error contains this text")
@click.pass_context
@runtime_errors
def dead_list(ctx: click.Context, topic: str, as_json: bool, error_contains: str | None) -> None:
    """List dead tasks of TOPIC, newest first."""
    from .admin import iter_dead
    from .errors import error_line

    count = 0
    for task in iter_dead(_manager(ctx).store, topic, error_contains):
        count += 1
        if as_json:
            click.echo(json.dumps({**task.as_dict(), "payload": task.decoded_payload()}))
        else:
            click.echo(f"{task.id}  attempts={task.attempts}  {error_line(task.last_error)}  "
                       f"payload={task.payload}")
    if not as_json:
        click.echo(f"{count} dead task(s)")


def _act_on_dead(ctx: click.Context, verb: str, topic: str, ids: tuple[str, ...], all_: bool,
                 error_contains: str | None, dry_run: bool,
                 act: Callable[[RedisStore, str, list[str], bool], int]) -> None:
    """What requeue and purge share: choose the dead tasks, ``act`` on them (or count),
    report; given ids that were no dead task (see admin.not_dead) are named, exit 1."""
    from .admin import not_dead, select_dead

    store = _lasting_manager(ctx, f"dead {verb}").store
    if bool(ids) == all_:
        raise click.UsageError("give task ids or --all (not both)")
    missing = not_dead(store, topic, list(ids))
    chosen = select_dead(store, topic, None if all_ else list(ids), error_contains)
    n = act(store, topic, chosen, dry_run)
    click.echo(f"{'would ' + verb if dry_run else verb + 'd'} {n} task(s)")
    if missing:
        _fail(f"not in the dead queue of {topic!r}, skipped: "
              + ", ".join(f"{task_id} ({state})" for task_id, state in missing.items()))


@dead.command("requeue", epilog=examples(
    "kubetaskqueue dead requeue email --all --dry-run   # how many would move",
    "kubetaskqueue dead requeue email --all --error Timeout",
    "kubetaskqueue dead requeue email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d",
))
@click.argument("topic")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Every dead task of TOPIC")
@click.option("--error", "error_contains", default=None, metavar="SUBSTRING",
              help="Only tasks whose last error contains this text")
@click.option("--dry-run", is_flag=True, help="Count, change nothing")
@click.pass_context
@runtime_errors
def dead_requeue(ctx: click.Context, topic: str, ids: tuple[str, ...], all_: bool,
                 error_contains: str | None, dry_run: bool) -> None:
    """Move dead tasks back to input with a fresh retry budget. Given ids that are not
    dead are named (with where they are instead) and make the exit code 1."""
    from .admin import requeue_dead

    _act_on_dead(ctx, "requeue", topic, ids, all_, error_contains, dry_run, requeue_dead)


@dead.command("purge", epilog=examples(
    "kubetaskqueue dead purge email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d",
    "kubetaskqueue dead purge email --all --dry-run",
))
@click.argument("topic")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Every dead task of TOPIC")
@click.option("--dry-run", is_flag=True, help="Count, change nothing")
@click.pass_context
@runtime_errors
def dead_purge(ctx: click.Context, topic: str, ids: tuple[str, ...], all_: bool,
               dry_run: bool) -> None:
    """Delete dead tasks for good. Given ids that are not dead are named (with where
    they are instead) and make the exit code 1."""
    from .admin import purge_dead

    _act_on_dead(ctx, "purge", topic, ids, all_, None, dry_run, purge_dead)
