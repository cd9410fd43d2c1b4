"""Redis Cluster: connecting, and the two reads that span several hash slots.

Every state move touches the keys of one topic only, and those share the
``{topic}`` hash tag, so the Lua scripts run unchanged on the node owning the
topic's slot. What does not fit one slot is a blocking read over several
topics (BLPOP on their wake-up lists, XREAD on their event streams): Redis
refuses those with CROSSSLOT. Here a blocking wait fans out to one thread per
wake-up list, and stream reads of several slots poll instead of blocking.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from .errors import ConfigError

Client: TypeAlias = "redis.Redis | RedisCluster"

SCHEMES = ("redis+cluster://", "rediss+cluster://")

# redis-py's cluster client raises RedisClusterException, which is not a RedisError,
# when it cannot reach or map the cluster ("Redis Cluster cannot be connected", a slot
# left uncovered while a master fails over): both mean Redis is unavailable for now.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)

# An event watcher over several slots polls at this interval when nothing happens.
_STREAM_POLL_S = 0.25
# Each wake-up thread's BLPOP timeout (below any socket timeout connect() sets).
_WAKE_BLOCK_S = 1.0
# A wake-up thread exits when nobody has waited for this long.
_WAKE_IDLE_EXIT_S = 3.0


def connect_cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    """``redis+cluster://[[user]:password@]host:port[,host2:port...][/0][?query]``;
    ``rediss+cluster://`` for TLS. Any reachable node finds the rest."""
    parts = urlsplit(url)
    userinfo, _, hosts_part = parts.netloc.rpartition("@")
    hosts = [h for h in hosts_part.split(",") if h]
    if not hosts:
        raise ConfigError(f"Redis Cluster URL {url.split('@')[-1]!r} names no node")
    try:
        # redis-py's cluster module has few type hints, hence the ignores here.
        nodes = [ClusterNode(host, int(port or 6379))  # type: ignore[no-untyped-call]
                 for host, _, port in
                 (h.rpartition(":") if ":" in h else (h, "", "") for h in hosts)]
    except ValueError as exc:
        raise ConfigError(f"bad port in Redis Cluster URL: {exc}") from exc
    scheme = parts.scheme.replace("+cluster", "")
    netloc = f"{userinfo}@{hosts[0]}" if userinfo else hosts[0]
    first = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    try:
        return RedisCluster.from_url(first, startup_nodes=nodes[1:], **options)
    except redis.exceptions.RedisClusterException as exc:
        # e.g. "Cluster mode is not enabled on this node"; not a RedisError subclass
        raise redis.ConnectionError(str(exc)) from exc


class WakeFanOut:
    """Waits on the wake-up lists of several topics, which a cluster cannot BLPOP
    together: one thread blocks on each list and raises a shared flag.

    Threads start on the first wait and exit after a few periods without a
    waiter, so a stopped manager leaves none behind.
    """

    def __init__(self, client: RedisCluster, keys: list[str]) -> None:
        self._client = client
        self._keys = keys
        self._woken = threading.Event()
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}  # wake-up key -> its thread
        self._waiting = False
        self._last_wait = time.monotonic()

    def wait(self, timeout_s: float) -> bool:
        self._waiting = True
        self._ensure_threads()
        try:
            woken = self._woken.wait(timeout_s)
        finally:
            self._waiting, self._last_wait = False, time.monotonic()
        if woken:  # the claim that follows sees every task pushed before this clear
            self._woken.clear()
        return woken

    def _keep_watching(self, key: str) -> bool:
        """False once nobody has waited for a while; then the key's entry goes too,
        under the lock, so a new waiter either sees this thread alive or starts one."""
        with self._lock:
            if self._waiting or time.monotonic() - self._last_wait < _WAKE_IDLE_EXIT_S:
                return True
            del self._threads[key]
            return False

    def _ensure_threads(self) -> None:
        """Start a thread for each key that has none (first wait, or it exited idle)."""
        with self._lock:
            for key in self._keys:
                if key not in self._threads:
                    self._threads[key] = threading.Thread(
                        target=self._watch, args=(key,), daemon=True,
                        name=f"kubetaskqueue-wake-{key}")
                    self._threads[key].start()

    def _watch(self, key: str) -> None:
        try:
            while self._keep_watching(key):
                try:
                    if self._client.blpop([key], timeout=_WAKE_BLOCK_S) is not None:
                        self._woken.set()
                except REDIS_ERRORS:
                    # The claim loop sees the outage itself; wake it so it finds out.
                    self._woken.set()
                    time.sleep(_WAKE_BLOCK_S)
        finally:  # also after an unexpected error: the next wait starts a new thread
            with self._lock:
                if self._threads.get(key) is threading.current_thread():
                    del self._threads[key]


def read_streams(client: Client, cursors: dict[str, str], block_s: float,
                 count: int) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """XREAD over ``cursors`` ({stream: last id}); blocks up to ``block_s`` when the
    streams share a slot, else polls them one by one and sleeps a little when idle."""
    if isinstance(client, RedisCluster) and len(
            {client.keyslot(k) for k in cursors}) > 1:  # type: ignore[no-untyped-call]
        pipe = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        for key, cursor in cursors.items():
            pipe.xread({key: cursor}, count=count)
        replies = [reply for result in pipe.execute() for reply in (result or [])]
        if not replies:
            time.sleep(min(block_s, _STREAM_POLL_S))
        return replies
    return client.xread(cursors, block=max(1, int(block_s * 1000)),  # type: ignore[arg-type,return-value]
                        count=count) or []
