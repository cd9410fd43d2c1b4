"""`kubetaskqueue schedules`: the schedules live managers declare, with last and next fire."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .cli import _manager, cli, examples, runtime_errors

if TYPE_CHECKING:
    from .schedules import ScheduleView

COLUMNS = ("name", "topic", "rule", "last fire", "next fire", "managers")


@cli.command(epilog=examples("kubetaskqueue schedules", "kubetaskqueue schedules --json"))
@click.option("--json", "as_json", is_flag=True, help='Print {"schedules": [...]}')
@click.pass_context
@runtime_errors
def schedules(ctx: click.Context, as_json: bool) -> None:
    """Schedules declared by live managers: rule, last and next fire time (UTC).

    A schedule removed from every manager's code is not listed (and does not fire).
    """
    from .schedules import read_schedules

    manager = _manager(ctx)
    views = read_schedules(manager.store.client, manager.settings.namespace)
    if as_json:
        click.echo(json.dumps({"schedules": [v.as_dict() for v in views]}, sort_keys=True))
    else:
        click.echo(format_schedules(views))


def format_schedules(views: list[ScheduleView]) -> str:
    from .schedule_rules import iso_utc

    rows = [COLUMNS]
    for v in views:
        last = "never" if v.last_fire is None else iso_utc(v.last_fire)
        if v.last_missed:
            last += f" (after {v.last_missed} missed)"
        rows.append((v.name, v.topic, v.rule, last, iso_utc(v.next_fire), str(v.managers)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    if not views:
        lines.append("(no schedules: no live manager declares one)")
    return "\n".join(lines)
