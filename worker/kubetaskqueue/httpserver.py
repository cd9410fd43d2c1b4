"""The small HTTP port of a worker or exporter: /metrics, /healthz, /readyz."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from .errors import ConfigError

log = logging.getLogger("kubetaskqueue")

StartResponse = Callable[..., Any]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape must not block shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes hit these endpoints every few seconds; access logs would be noise."""


def health_app(registry: CollectorRegistry,
               readiness: Callable[[], tuple[bool, str]] | None) -> Callable[..., Iterable[bytes]]:
    """WSGI app: /metrics; /healthz never touches Redis; /readyz asks ``readiness``;
    any other path is 404 (a typo must not look like a working endpoint)."""
    metrics_app = make_wsgi_app(registry)
    paths = _paths(readiness is not None)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz" and readiness is not None:
            ready, reason = readiness()
            start_response("200 OK" if ready else "503 Service Unavailable",
                           [("Content-Type", "text/plain")])
            return [f"{reason}\n".encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [f"not found; this port serves {paths}\n".encode()]

    return app


def _paths(with_readiness: bool) -> str:
    return "/metrics, /healthz, /readyz" if with_readiness else "/metrics, /healthz"


def start_http_server(port: int, registry: CollectorRegistry,
                      readiness: Callable[[], tuple[bool, str]] | None = None,
                      host: str = "0.0.0.0",
                      setting: str = "--http-port, KUBETASKQUEUE_HTTP_PORT") -> WSGIServer:
    """Serve in a daemon thread; returns the server (``server.shutdown()`` stops it).

    A port that cannot be bound raises ConfigError naming ``setting`` (where the port
    was chosen): a worker without /healthz and /readyz would fail its probes with no
    clear cause. Port 0 binds any free port.
    """
    paths = _paths(readiness is not None)
    try:
        server = make_server(host, port, health_app(registry, readiness),
                             server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"cannot serve {paths} on port {port}: {exc.strerror or exc}; free "
                          f"the port or pick another ({setting})") from exc
    threading.Thread(target=server.serve_forever, name="kubetaskqueue-http",
                     daemon=True).start()
    log.info("serving %s on port %d", paths, server.server_port)
    return server
