"""`kubetaskqueue worker MODULE:ATTR` and `kubetaskqueue exporter`: the processes that run
until SIGTERM and serve /metrics.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from .cli import _manager, cli, examples, runtime_errors

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry

    from .manager import Manager


def load_manager(path: str) -> Manager:
    """Import ``module:attr`` (from the current directory too) and check it is a Manager."""
    from .manager import Manager

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
@click.option("--prefetch", type=click.IntRange(min=0), default=None,
              envvar="KUBETASKQUEUE_PREFETCH", show_envvar=True,
              help="Most tasks claimed beyond the slots, to start as a slot frees "
                   "[default: one a slot, at least 16; 0 = off]")
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
def worker(ctx: click.Context, app: str, num_workers: int | None, prefetch: int | None,
           lease_ttl: float | None, grace: float | None, http_port: int | None,
           export_queue_state: bool, burst: bool) -> None:
    """Run the Manager found at MODULE:ATTR until SIGTERM.

    Options and their KUBETASKQUEUE_* variables override what the app's code
    set, so a Deployment configures workers through its environment.
    """
    from .metrics import QueueStateCollector

    manager = load_manager(app)
    manager.configure(redis_url=ctx.obj["redis_url"], namespace=ctx.obj["namespace"],
                      num_workers=num_workers, prefetch=prefetch, lease_ttl_s=lease_ttl,
                      shutdown_grace_s=grace, http_port=http_port)
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
    stop = threading.Event()
    # Before the port answers: whoever sees it up may stop the exporter at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    start_http_server(http_port, registry)
    stop.wait()
