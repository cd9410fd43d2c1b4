"""Run the dashboard under uvicorn (what `kubetaskqueue dashboard` calls)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import uvicorn

from ..manager import Manager
from . import ANY_HOST, allowed_hosts
from .app import create_app

log = logging.getLogger("kubetaskqueue")

# Open live streams would hold a stop forever; after this long uvicorn closes them.
SHUTDOWN_GRACE_S = 2


def serve(manager: Manager, *, host: str, port: int, allow_actions: bool,
          token: str | None, extra_hosts: Sequence[str] = ()) -> None:
    """Serve the dashboard for ``manager``'s Redis and namespace until SIGTERM or Ctrl-C.

    Host headers accepted: localhost, 127.0.0.1, [::1], ``host`` and ``extra_hosts``.
    """
    hosts = allowed_hosts(extra_hosts, host)  # a bad name fails here, before Redis is asked
    manager.store.client.ping()  # fail at start, with the CLI's Redis hint, not on first view
    app = create_app(manager.store.client, manager.settings.namespace,
                     allow_actions=allow_actions, token=token, allowed_hosts=hosts)
    log.info("dashboard on http://%s:%d/ (%s)", host, port,
             "actions allowed with the bearer token" if allow_actions else "read-only")
    if hosts == [ANY_HOST]:
        log.warning("dashboard: any Host header is served (--allowed-host '*'): a page on "
                    "another site can read it through DNS rebinding")
    else:
        log.info("dashboard: serving Host headers %s", ", ".join(hosts))
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            server_header=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                            lifespan="on")
    uvicorn.Server(config).run()
