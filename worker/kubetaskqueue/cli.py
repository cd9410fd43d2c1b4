"""The `kubetaskqueue` command: thin wrappers over the library; no queue logic here."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from .admin import iter_dead, not_dead, purge_dead, requeue_dead, select_dead
from .cli_enqueue import enqueue_file, wait_for
from .cli_schedules import schedules
from .cli_topics import add_topic_commands, text_table
from .cluster import REDIS_ERRORS
from .errors import KubeTaskQueueError, error_line, redis_error_text
from .keys import PRIORITY_MAX, PRIORITY_MIN
from .logs import configure_logging
from .manager import Manager
from .settings import env_or_secret_file
from .version import __version__

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry

    from .events import Event

# prometheus_client (with the HTTP server) and the dashboard are imported by the
# commands that serve them, not at every start-up: `enqueue` is run in loops.

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


def load_manager(path: str) -> Manager:
    """Import ``module:attr`` (from the current directory too) and check it is a Manager."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{path!r} is not MODULE:ATTR (e.g. myapp.tasks:manager)")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import module {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise click.BadParameter(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, Manager):
        raise click.BadParameter(f"{path} is a {type(obj).__name__}, not a kubetaskqueue Manager")
    return obj


@cli.command(epilog=examples(
    "kubetaskqueue worker myapp.tasks:manager --num-workers 16",
    "kubetaskqueue worker myapp.tasks:manager --burst   # a job: exit once the topics are empty",
    "kubetaskqueue -v worker myapp.tasks:manager        # log every outcome and traceback",
))
@click.argument("app", metavar="MODULE:ATTR")
@click.option("--num-workers", type=click.IntRange(min=1), default=None,
              envvar="KUBETASKQUEUE_NUM_WORKERS", show_envvar=True,
              help="Tasks in flight at once in this process")
@click.option("--lease-ttl", type=click.FloatRange(min=0, min_open=True), default=None,
              envvar=["KUBETASKQUEUE_LEASE_TTL", "KUBETASKQUEUE_LEASE_TTL_S"], show_envvar=True,
              help="Seconds a claimed task stays leased without a heartbeat")
@click.option("--grace", type=click.FloatRange(min=0), default=None,
              envvar=["KUBETASKQUEUE_GRACE", "KUBETASKQUEUE_SHUTDOWN_GRACE_S"], show_envvar=True,
              help="Seconds to finish in-flight tasks after SIGTERM")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None,
              envvar="KUBETASKQUEUE_HTTP_PORT", show_envvar=True,
              help="Port of /metrics, /healthz, /readyz [default 9100; 0 = off]")
@click.option("--export-queue-state", is_flag=True, envvar="KUBETASKQUEUE_EXPORT_QUEUE_STATE",
              help="Also export queue sizes from Redis (normally the exporter's job)")
@click.option("--burst", is_flag=True, help="Exit once the topics are empty")
@click.pass_context
@runtime_errors
def worker(ctx: click.Context, app: str, num_workers: int | None, lease_ttl: float | None,
           grace: float | None, http_port: int | None, export_queue_state: bool,
           burst: bool) -> None:
    """Run the Manager found at MODULE:ATTR until SIGTERM.

    Options and their KUBETASKQUEUE_* variables override what the app's code
    set, so a Deployment configures workers through its environment.
    """
    from .metrics import QueueStateCollector

    manager = load_manager(app)
    manager.configure(redis_url=ctx.obj["redis_url"], namespace=ctx.obj["namespace"],
                      num_workers=num_workers, lease_ttl_s=lease_ttl, shutdown_grace_s=grace,
                      http_port=http_port)
    registry = manager.metrics.registry
    if export_queue_state:
        registry.register(QueueStateCollector(manager.store.client, manager.settings.namespace))
    server = _serve(manager.settings.http_port, registry, manager.readiness)
    try:
        manager.run(burst=burst)
    finally:
        if server is not None:
            server.shutdown()


def _serve(port: int, registry: CollectorRegistry,
           readiness: Callable[[], tuple[bool, str]] | None) -> WSGIServer | None:
    """Start the HTTP endpoint (0 = off); a taken port stops the worker (ConfigError)."""
    from .httpserver import start_http_server

    if port == 0:
        return None
    return start_http_server(port, registry, readiness)


@cli.command(epilog=examples(
    "kubetaskqueue exporter --http-port 9100",
    "kubetaskqueue exporter --topic email --topic resize",
))
@click.option("--http-port", type=click.IntRange(1, 65535), default=9100, show_default=True,
              envvar="KUBETASKQUEUE_HTTP_PORT", show_envvar=True,
              help="Port of /metrics and /healthz")
@click.option("--topic", "topics", multiple=True,
              help="Only these topics (repeatable) [default: every topic ever enqueued to]")
@click.pass_context
@runtime_errors
def exporter(ctx: click.Context, http_port: int, topics: tuple[str, ...]) -> None:
    """Export queue state from Redis for Prometheus, once per cluster, until SIGTERM."""
    from prometheus_client import CollectorRegistry

    from .httpserver import start_http_server
    from .metrics import QueueStateCollector

    manager = _manager(ctx)
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(manager.store.client, manager.settings.namespace,
                                          topics or None))
    start_http_server(http_port, registry)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


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


def _selection(ids: tuple[str, ...], all_: bool) -> list[str] | None:
    if bool(ids) == all_:
        raise click.UsageError("give task ids or --all (not both)")
    return None if all_ else list(ids)


def _report_skipped(topic: str, missing: dict[str, str]) -> None:
    """Given ids that were no dead task (see admin.not_dead) were skipped: say so, exit 1."""
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
    store = _lasting_manager(ctx, "dead requeue").store
    selection = _selection(ids, all_)
    missing = not_dead(store, topic, list(ids))
    chosen = select_dead(store, topic, selection, error_contains)
    n = requeue_dead(store, topic, chosen, dry_run)
    click.echo(f"{'would requeue' if dry_run else 'requeued'} {n} task(s)")
    _report_skipped(topic, missing)


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
    store = _lasting_manager(ctx, "dead purge").store
    selection = _selection(ids, all_)
    missing = not_dead(store, topic, list(ids))
    chosen = select_dead(store, topic, selection, None)
    n = purge_dead(store, topic, chosen, dry_run)
    click.echo(f"{'would purge' if dry_run else 'purged'} {n} task(s)")
    _report_skipped(topic, missing)


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


@cli.command(epilog=examples(
    "kubetaskqueue dashboard --host 127.0.0.1      # then open http://127.0.0.1:8080/",
    "KUBETASKQUEUE_DASHBOARD_TOKEN=$(openssl rand -hex 32) \\",
    "  kubetaskqueue dashboard --allow-actions",
))
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              envvar="KUBETASKQUEUE_DASHBOARD_PORT", show_envvar=True, help="Port of the page")
@click.option("--host", default="127.0.0.1", show_default=True,
              envvar="KUBETASKQUEUE_DASHBOARD_HOST", show_envvar=True,
              help="Address to listen on (0.0.0.0 = every interface, as a container needs)")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="HOST",
              envvar="KUBETASKQUEUE_DASHBOARD_ALLOWED_HOSTS", show_envvar=True,
              help="Host header to serve besides localhost, 127.0.0.1, [::1] and --host "
                   "(repeatable; the variable is comma-separated; *.example.com for "
                   "subdomains); other Hosts get 400")
@click.option("--allow-actions", is_flag=True, envvar="KUBETASKQUEUE_DASHBOARD_ALLOW_ACTIONS",
              show_envvar=True,
              help="Allow requeue and purge, for requests with the bearer token in "
                   "KUBETASKQUEUE_DASHBOARD_TOKEN")
@click.pass_context
@runtime_errors
def dashboard(ctx: click.Context, port: int, host: str, allowed_hosts: tuple[str, ...],
              allow_actions: bool) -> None:
    """Serve the web dashboard: live topics and managers, dead tasks (read-only by default)."""
    from .dashboard import INSTALL_HINT, TOKEN_MIN_CHARS, missing_dependencies

    missing = missing_dependencies()
    if missing:
        _fail(f"the dashboard needs {' and '.join(missing)}: {INSTALL_HINT}")
    token = (env_or_secret_file("KUBETASKQUEUE_DASHBOARD_TOKEN") or "").strip() or None
    if allow_actions and (token is None or len(token) < TOKEN_MIN_CHARS):
        raise click.UsageError(
            f"--allow-actions needs a bearer token of at least {TOKEN_MIN_CHARS} characters "
            "in KUBETASKQUEUE_DASHBOARD_TOKEN, or in the file KUBETASKQUEUE_DASHBOARD_TOKEN_FILE "
            "names (e.g. $(openssl rand -hex 32))")
    from .dashboard.server import serve

    serve(_manager(ctx), host=host, port=port, allow_actions=allow_actions, token=token,
          extra_hosts=allowed_hosts)


cli.add_command(schedules)
add_topic_commands(cli, _manager, _lasting_manager, examples, runtime_errors)
from . import cli_tasks  # noqa: E402, F401  (registers `task show|delete` on `cli`)


def main() -> None:
    cli(prog_name="kubetaskqueue")
