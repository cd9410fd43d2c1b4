"""The `kubetaskqueue` command group, its global options and error handling, and `enqueue`:
thin wrappers over the library; no queue logic here. The other commands live in cli_*.py."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from .keys import PRIORITY_MAX, PRIORITY_MIN
from .logs import configure_logging
from .version import __version__

if TYPE_CHECKING:
    from .manager import Manager

# The cli_*.py modules import the library (redis, pydantic, prometheus_client: most of
# a start-up) in the commands that use it, so `--version` and `--help` need none of it.

EXIT_OK = 0
EXIT_RUNTIME_ERROR = 1
EXIT_USAGE = 2  # click's own code for usage errors

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = """\b
Examples:
  kubetaskqueue demo
  kubetaskqueue worker myapp.tasks:manager --num-workers 16
  kubetaskqueue enqueue email '{"to": "a@b.c"}' --retries 5
  kubetaskqueue stats
  kubetaskqueue dead list email

Each command's --help shows its own examples. Options also read
KUBETASKQUEUE_<NAME> (e.g. KUBETASKQUEUE_REDIS_URL, KUBETASKQUEUE_NUM_WORKERS);
flags win over the environment.
"""


def examples(*lines: str) -> str:
    """A command's epilog: its examples, kept as written (click rewraps text otherwise)."""
    return "\b\nExamples:\n" + "".join(f"  {line}\n" for line in lines)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_RUNTIME_ERROR)


def runtime_errors(fn: F) -> F:
    """Turn library and Redis errors into one clear line on stderr and exit code 1."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .cluster import REDIS_ERRORS
        from .errors import KubeTaskQueueError, redis_error_text

        try:
            return fn(*args, **kwargs)
        except KubeTaskQueueError as exc:
            _fail(str(exc))
        except REDIS_ERRORS as exc:
            _fail(f"Redis failed: {redis_error_text(exc)}")
        except ValueError as exc:
            _fail(str(exc))
    return wrapper  # type: ignore[return-value]


@click.group(epilog=EPILOG)
@click.version_option(__version__, message="kubetaskqueue %(version)s")
@click.option("--redis-url", default=None, metavar="URL", envvar="KUBETASKQUEUE_REDIS_URL",
              show_envvar=True,
              help="redis://, rediss:// (TLS), unix://, redis(s)+sentinel://, redis(s)+cluster:// "
                   "or memory:// [default redis://localhost:6379/0; or read from the file "
                   "KUBETASKQUEUE_REDIS_URL_FILE names]")
@click.option("--namespace", default=None, envvar="KUBETASKQUEUE_NAMESPACE", show_envvar=True,
              help="Key prefix shared by producers and workers")
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), default="auto",
              envvar="KUBETASKQUEUE_LOG_FORMAT",
              help="auto = JSON lines when not on a terminal (containers)")
@click.option("-v", "--verbose", is_flag=True, help="Log every task outcome")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, namespace: str | None, log_format: str,
        verbose: bool) -> None:
    """kubetaskqueue: a lease-based task queue on Redis for Kubernetes."""
    configure_logging(log_format, logging.DEBUG if verbose else logging.INFO)
    ctx.obj = {"redis_url": redis_url, "namespace": namespace}


def _manager(ctx: click.Context) -> Manager:
    """A producer/admin manager (no processors) from the global options."""
    from .errors import KubeTaskQueueError
    from .manager import Manager

    try:
        return Manager(ctx.obj["redis_url"], namespace=ctx.obj["namespace"])
    except KubeTaskQueueError as exc:
        raise click.UsageError(str(exc)) from exc


def _lasting_manager(ctx: click.Context, command: str) -> Manager:
    """A manager for a command that changes the queue: refuses memory://, where the change
    would vanish with this process (a worker elsewhere could never see it)."""
    manager = _manager(ctx)
    if manager.settings.redis_url.startswith("memory://"):
        click.echo(f"error: memory:// is a store inside this one process and vanishes when it "
                   f"exits, so `{command}` would be lost; use a Redis URL (--redis-url or "
                   "KUBETASKQUEUE_REDIS_URL)", err=True)
        sys.exit(EXIT_USAGE)
    return manager


@cli.command(epilog=examples(
    "kubetaskqueue enqueue email '{\"to\": \"a@b.c\"}' --retries 5",
    "kubetaskqueue enqueue email '{\"to\": \"a@b.c\"}' --delay 60      # runs in a minute",
    "kubetaskqueue enqueue email '{\"to\": \"a@b.c\"}' --wait 60       # a smoke test",
    "kubetaskqueue enqueue email --file tasks.jsonl   # one JSON payload a line (- = stdin)",
))
@click.argument("topic")
@click.argument("payload", metavar="[JSON]", required=False)
@click.option("--file", "lines", type=click.File("r", encoding="utf-8"), default=None,
              metavar="PATH",
              help="Enqueue one task per line of this JSON lines file (- = stdin); "
                   "a bad line enqueues nothing")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
              help="Retries after the first attempt")
@click.option("--delay", type=click.FloatRange(min=0), default=None, help="Seconds to wait first")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds an attempt may run")
@click.option("--id", "task_id", default=None, help="Task id (rejected if it exists)")
@click.option("--priority", type=click.IntRange(PRIORITY_MIN, PRIORITY_MAX), default=0,
              show_default=True, help="Higher runs first; FIFO within one priority")
@click.option("--keep-result", "keep_result_s", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="Keep what the processor returns (JSON) this long after success")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS",
              help="Wait for the task: exit 0 if it completed (printing its result, if kept), "
                   "1 if it died or time ran out")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"enqueued": N, "ids": [...]} instead of the id or the count')
@click.pass_context
@runtime_errors
def enqueue(ctx: click.Context, topic: str, payload: str | None, lines: IO[str] | None,
            retries: int, delay: float | None, timeout: float | None, task_id: str | None,
            priority: int, keep_result_s: float | None, wait_s: float | None,
            as_json: bool) -> None:
    """Enqueue one task with a JSON payload (prints its id), or with --file one task
    per line, in chunks of 1,000 (prints the count). Options apply to every task."""
    from .cli_enqueue import enqueue_file, wait_for

    if lines is not None:
        if payload is not None:
            raise click.UsageError("give one JSON payload or --file PATH, not both")
        if task_id is not None or wait_s is not None:
            raise click.UsageError("--id and --wait take one JSON payload, not --file")
        enqueue_file(_lasting_manager(ctx, "enqueue"), topic, lines, num_retries=retries,
                     delay_s=delay, timeout_s=timeout, as_json=as_json,
                     keep_result_s=keep_result_s, priority=priority)
        return
    if payload is None:
        raise click.UsageError("give one JSON payload or --file PATH")
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="JSON") from exc
    manager = _lasting_manager(ctx, "enqueue")
    task_id = manager.enqueue(topic, body, num_retries=retries, delay_s=delay,
                              timeout_s=timeout, task_id=task_id, keep_result_s=keep_result_s,
                              priority=priority)
    click.echo(json.dumps({"enqueued": 1, "ids": [task_id]}) if as_json else task_id)
    if wait_s is not None:
        wait_for(manager, topic, task_id, wait_s, keeps_result=keep_result_s is not None)


# Each of these modules registers its commands on `cli` (so they import from here).
from . import (  # noqa: E402, F401
    cli_dashboard,
    cli_dead,
    cli_schedules,
    cli_stats,
    cli_tasks,
    cli_topics,
    cli_worker,
)


def main() -> None:
    cli(prog_name="kubetaskqueue")
