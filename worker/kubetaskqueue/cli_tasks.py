"""`kubetaskqueue task show|delete TOPIC ID`: one task by id (Manager.task, Manager.delete)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from .cli import _fail, _lasting_manager, _manager, cli, examples, runtime_errors

if TYPE_CHECKING:
    from .task_info import TaskInfo

_UNKNOWN = ("never enqueued, deleted, or finished (a finished task stays only with "
            "--keep-result, for that long)")


@cli.group(epilog=examples(
    "kubetaskqueue task show email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d",
    "kubetaskqueue task delete email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d",
))
def task() -> None:
    """Look up or delete one task by its id."""


@task.command("show", epilog=examples(
    "kubetaskqueue task show email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d",
    "kubetaskqueue task show email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d --json",
))
@click.argument("topic")
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object")
@click.pass_context
@runtime_errors
def task_show(ctx: click.Context, topic: str, task_id: str, as_json: bool) -> None:
    """Where task ID of TOPIC is (scheduled, input, work, dead, or done while its result
    is kept), its attempts, times, last error, payload and result."""
    info = _manager(ctx).task(topic, task_id)
    if info is None:
        _fail(f"topic {topic!r} has no task {task_id!r}: {_UNKNOWN}")
        return
    click.echo(json.dumps(info.as_dict()) if as_json else format_task(info))


@task.command("delete", epilog=examples(
    "kubetaskqueue task delete email 4f6b0c2e9a7d4e1b8c3a5d7f9e1b2c4d",
))
@click.argument("topic")
@click.argument("task_id", metavar="ID")
@click.pass_context
@runtime_errors
def task_delete(ctx: click.Context, topic: str, task_id: str) -> None:
    """Delete task ID of TOPIC for good, if it is waiting (scheduled, input or dead).

    A running task cannot be deleted: let it finish, or stop the worker pod that runs
    it (`task show` names it); the task then goes back to input, where this command
    can take it before another worker claims it.
    """
    manager = _lasting_manager(ctx, "task delete")
    if manager.delete(topic, task_id):
        click.echo(f"deleted {task_id}")
        return
    info = manager.task(topic, task_id)
    if info is None:
        _fail(f"topic {topic!r} has no task {task_id!r}: {_UNKNOWN}")
    elif info.state == "work":
        pod = info.owner.rpartition("-")[0] or info.owner
        _fail(f"task {task_id} is running (attempt {info.attempts}, manager {info.owner}): "
              f"a running task is neither deleted nor stopped from here. Let it finish, or "
              f"stop its worker pod {pod}: the task goes back to input (the attempt not "
              "counted), where `task delete` can take it before another worker claims it")
    elif info.state == "done":
        _fail(f"task {task_id} has finished; its result is kept "
              f"{_for(info.result_expires_in_s)}, then it is gone by itself")
    else:
        _fail(f"task {task_id} moved meanwhile (now {info.state}); try again")


def _for(seconds: float | None) -> str:
    return "without an expiry" if seconds is None else f"for another {seconds:.0f}s"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"


def format_task(info: TaskInfo) -> str:
    rows = [
        ("task", info.id), ("topic", info.topic), ("state", info.state),
        ("priority", str(info.priority)),
        ("attempts", f"{info.attempts} (num_retries {info.num_retries}, worker losses "
                     f"{info.losses})"),
        ("enqueued", _when(info.enqueued_at)),
        ("due" if info.state == "scheduled" else "ready", _when(info.ready_at)),
        ("claimed", _when(info.claimed_at)), ("failed", _when(info.failed_at)),
        ("dead", _when(info.dead_at)), ("done", _when(info.done_at)),
    ]
    if info.state == "work":
        rows += [("owner", info.owner), ("lease until", _when(info.lease_expires_at))]
    if info.keep_result_s is not None:
        rows.append(("keep result", f"{info.keep_result_s:g}s"))
    if info.state == "done":
        rows += [("result", json.dumps(info.result)),
                 ("result kept", _for(info.result_expires_in_s))]
    rows.append(("payload", json.dumps(info.payload)))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    if info.last_error:
        lines += ["last error:", info.last_error.rstrip()]
    return "\n".join(lines)
