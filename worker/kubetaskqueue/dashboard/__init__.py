"""The web dashboard: live queue state, managers and dead tasks, served by Starlette + uvicorn.

Optional: ``pip install 'kubetaskqueue[dashboard]'``. Nothing here holds queue
logic; it reads through ``queue_state`` and ``events`` and acts through
``admin``, like the CLI does. Modules: ``live`` (the sampler behind the live
page), ``app`` (routes and JSON API), ``guards`` (body cap), ``server`` (uvicorn),
``static/`` (the page).
"""

from __future__ import annotations

from importlib.util import find_spec

REQUIRED_MODULES = ("starlette", "uvicorn")
TOKEN_MIN_CHARS = 16  # --allow-actions refuses shorter tokens (guessable)
INSTALL_HINT = "pip install 'kubetaskqueue[dashboard]'"
# Request bodies above this are refused (413) before they are read: an action's body is
# a few ids or {"all": true}, and the chart gives the dashboard 128 Mi of memory.
MAX_BODY_BYTES = 1024 * 1024


def missing_dependencies() -> list[str]:
    """Web packages the dashboard needs that are missing (the core does not need them)."""
    return [name for name in REQUIRED_MODULES if find_spec(name) is None]
