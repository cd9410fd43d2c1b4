"""The web dashboard: live queue state, managers and dead tasks, served by Starlette + uvicorn.

Optional: ``pip install 'kubetaskqueue[dashboard]'``. Nothing here holds queue
logic; it reads through ``queue_state`` and ``events`` and acts through
``admin``, like the CLI does. Modules: ``live`` (the sampler behind the live
page), ``app`` (routes and JSON API), ``guards`` (Host check and body cap),
``server`` (uvicorn), ``static/`` (the page). This module needs neither web package.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from importlib.util import find_spec

REQUIRED_MODULES = ("starlette", "uvicorn")
TOKEN_MIN_CHARS = 16  # --allow-actions refuses shorter tokens (guessable)
# Both forms: README's Quick start installs from a clone (-e .), where the package form
# would look for kubetaskqueue on the index instead.
INSTALL_HINT = ("pip install 'kubetaskqueue[dashboard]' "
                "(from a clone: pip install -e '.[dashboard]')")

# This machine only: reading needs no token, so a wider bind is a choice (the chart makes
# it, behind its Service), not a default.
DEFAULT_BIND_HOST = "127.0.0.1"
# Host headers always accepted. A DNS rebinding page sends its own site's name as Host,
# so names that only ever point at this machine are safe; any other name must be listed.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST = "*"  # --allowed-host '*' turns the Host check off
# Request bodies above this are refused (413) before they are read: an action's body is
# a few ids or {"all": true}, and the chart gives the dashboard 128 Mi of memory.
MAX_BODY_BYTES = 1024 * 1024

_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")  # *. only in front


def missing_dependencies() -> list[str]:
    """Web packages the dashboard needs that are missing (the core does not need them)."""
    return [name for name in REQUIRED_MODULES if find_spec(name) is None]


def host_pattern(value: str) -> str:
    """One allowed host as the Host check compares it: lower case, IPv6 in brackets, no port.

    ``*.example.com`` matches every subdomain of example.com; ``*`` matches everything.
    Raises ValueError, saying why, for a port, a URL or a malformed name.
    """
    host = value.strip().lower()
    if host == ANY_HOST:
        return host
    if "/" in host:
        raise ValueError(f"allowed host {value!r}: give a host name, not a URL")
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return f"[{ipaddress.IPv6Address(inner).compressed}]"
    except ValueError:
        pass
    if ":" in host:
        raise ValueError(f"allowed host {value!r}: give it without a port (any port passes)")
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"allowed host {value!r} is not a host name, IP address or *.domain")
    return host


def allowed_hosts(extra: Iterable[str] = (), bind_host: str | None = None) -> list[str]:
    """The Host header patterns to accept: the local names, the bind address and ``extra``.

    Each item of ``extra`` may itself be a comma-separated list (the environment variable's
    form); empty items are ignored. ``["*"]`` when any item is ``*``.
    """
    given = [part for item in extra for part in item.split(",") if part.strip()]
    if bind_host and bind_host.strip():
        given.append(bind_host)
    patterns = list(LOCAL_HOSTS)
    for item in given:
        pattern = host_pattern(item)
        if pattern == ANY_HOST:
            return [ANY_HOST]
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns
