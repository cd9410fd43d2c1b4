"""Run the dashboard under uvicorn (what `kubetaskqueue dashboard` calls)."""

from __future__ import annotations

import logging

import uvicorn

from ..manager import Manager
from .app import create_app

log = logging.getLogger("kubetaskqueue")

# Open live streams would hold a stop forever; after this long uvicorn closes them.
SHUTDOWN_GRACE_S = 2


def serve(manager: Manager, *, host: str, port: int, allow_actions: bool,
          token: str | None) -> None:
    """Serve the dashboard for ``manager``'s Redis and namespace until SIGTERM or Ctrl-C."""
    manager.store.client.ping()  # fail at start, with the CLI's Redis hint, not on first view
    app = create_app(manager.store.client, manager.settings.namespace,
                     allow_actions=allow_actions, token=token)
    log.info("dashboard on http://%s:%d/ (%s)", host, port,
             "actions allowed with the bearer token" if allow_actions else "read-only")
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            server_header=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                            lifespan="on")
    uvicorn.Server(config).run()
