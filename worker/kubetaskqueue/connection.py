"""Connecting to Redis: one URL for a plain server, TLS, a unix socket, Sentinel, a
Redis Cluster, or the embedded ``memory://`` store (fakeredis running the same Lua
through lupa, for demos and unit tests)."""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from . import defaults
from .cluster import SCHEMES as CLUSTER_SCHEMES
from .cluster import Client, connect_cluster
from .errors import ConfigError

_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def connect(url: str, *, socket_timeout_s: float = 10.0) -> Client:
    """A client for ``redis://``, ``rediss://`` (TLS), ``unix://``, ``memory://[name]``,
    ``redis+sentinel://[[user]:password@]host[:26379][,host2...]/service[/db]``
    (``rediss+sentinel://...?ssl_ca_certs=<pem>`` for TLS to sentinels and Redis), or
    ``redis+cluster://[[user]:password@]host:port[,host2:port...]`` (``rediss+cluster://``
    for TLS).

    ``socket_timeout_s`` must exceed every blocking read's timeout, so a
    half-open connection shows up as an error instead of a hang.
    """
    if url.startswith("memory://"):
        import fakeredis  # only the embedded store needs it

        with _memory_lock:
            server = _memory_servers.setdefault(url, fakeredis.FakeServer())
        return fakeredis.FakeRedis(server=server, decode_responses=True)
    options: dict[str, Any] = {
        "decode_responses": True,
        # A task hash edited by hand may hold invalid UTF-8; it must not crash a worker.
        "encoding_errors": "replace",
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
    }
    if url.startswith(("redis+sentinel://", "rediss+sentinel://")):
        return _connect_sentinel(url, options)
    if url.startswith(CLUSTER_SCHEMES):
        return connect_cluster(url, options)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"unsupported Redis URL {redact_url(url)!r}: use redis://, rediss:// (TLS), "
            "unix://, redis+sentinel://, redis+cluster:// or memory://"
        )
    return redis.Redis.from_url(url, **options)


def _connect_sentinel(url: str, options: dict[str, Any]) -> redis.Redis:
    """The current master of a Sentinel-managed service, re-checked every
    ``SENTINEL_RECHECK_S`` (see _follow_master)."""
    parts = urlsplit(url)
    tls = _sentinel_tls_options(url, parts.scheme == "rediss+sentinel", parts.query)
    segments = [s for s in parts.path.split("/") if s]
    hosts_part = parts.netloc.rpartition("@")[2]
    try:
        service = segments[0]
        db = int(segments[1]) if len(segments) > 1 else 0
        sentinels = [(host, int(port or 26379)) for host, _, port in
                     (h.partition(":") for h in hosts_part.split(",") if h)]
    except (IndexError, ValueError) as exc:
        raise ConfigError(
            f"bad Sentinel URL {redact_url(url)!r}: use "
            "redis+sentinel://[:password@]host:26379[,host2:26379]/service-name[/db]"
        ) from exc
    if not sentinels:
        raise ConfigError(f"Sentinel URL {redact_url(url)!r} names no sentinel host")
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    # Older redis-py's Sentinel has no type hints, 8.2's has: each ignore allows both.
    sentinel = Sentinel(sentinels, socket_timeout=5.0,  # type: ignore[no-untyped-call, unused-ignore]
                        socket_connect_timeout=5.0,
                        sentinel_kwargs={"socket_timeout": 5.0, **tls})
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        service, db=db, username=username, password=password, **options, **tls)
    threading.Thread(target=_follow_master, args=(weakref.ref(master.connection_pool),),
                     name=f"kubetaskqueue-sentinel-{service}", daemon=True).start()
    return master


_SENTINEL_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
                         "ssl_check_hostname")


def _sentinel_tls_options(url: str, tls: bool, query: str) -> dict[str, Any]:
    """redis-py connection options for ``rediss+sentinel://`` (sentinels and Redis alike);
    a plain ``redis+sentinel://`` URL takes no query options."""
    given = dict(parse_qsl(query))
    unknown = sorted(set(given) - set(_SENTINEL_TLS_OPTIONS if tls else ()))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} in Sentinel URL {redact_url(url)!r}: "
            f"rediss+sentinel:// (TLS) takes {', '.join(_SENTINEL_TLS_OPTIONS)}")
    if not tls:
        return {}
    options: dict[str, Any] = {"ssl": True, **given}
    if "ssl_check_hostname" in given:
        options["ssl_check_hostname"] = given["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return options


def _follow_master(pool_ref: weakref.ref[Any]) -> None:
    """Ask the sentinels for the master's address until the client is gone.

    redis-py asks them only after a connection error, but a failover (SENTINEL
    FAILOVER, or one after a network split) leaves the old master up and writable
    until Sentinel demotes it, ~10 s later: everything written there meanwhile is
    acknowledged, then thrown away. On a new address the pool drops its idle
    connections and each busy one as it is returned.
    """
    while (pool := pool_ref()) is not None:
        with contextlib.suppress(redis.RedisError):  # no sentinel answers: the next
            pool.get_master_address()                # connection attempt reports it
        del pool  # hold no reference while sleeping, so the client can be collected
        time.sleep(defaults.SENTINEL_RECHECK_S)


def redact_url(url: str) -> str:
    """The URL without its password, for log lines and errors."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
