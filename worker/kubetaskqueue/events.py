"""Task and manager events: what happened, streamed from Redis so any pod can watch.

Every state-move script appends its events to its topic's capped stream
(``<ns>:{<topic>}:events``) in the same atomic step as the move, so watchers
see exactly what happened and the hot path pays no extra round trip; one entry
per script call (see :func:`entry_events`), so a claim of 16 is one XADD. A stream
rather than pub/sub: a watcher that reconnects resumes where it was, and a
dashboard can show the last minutes right after it opens. Managers add
MANAGER_START / MANAGER_STOP to ``<ns>:{managers}:events``; MANAGER_STATS is
made by the watcher itself every ``stats_interval_s``. A watcher of several
streams yields their events merged by time, so a replay reads as one timeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from . import defaults
from .cluster import REDIS_ERRORS, Client, read_streams
from .keys import TopicKeys, manager_events_key
from .queue_state import known_topics, read_queue_state

log = logging.getLogger("kubetaskqueue")

TASK_EVENTS = ("TASK_ENQUEUE", "TASK_START", "TASK_RETRY", "TASK_COMPLETION", "TASK_FAILURE",
               "TASK_DEAD", "TASK_RELEASED", "TASK_LEASE_EXPIRED", "TASK_WORKER_LOST",
               "TASK_FENCED", "TASK_DROPPED", "TASK_DELETED")
MANAGER_EVENTS = ("MANAGER_START", "MANAGER_STOP", "MANAGER_STATS")

_MANAGER_EVENTS_MAX_LEN = 1000
READ_COUNT = 500  # entries read per stream and round trip
_DISCOVERY_INTERVAL_S = 2.0  # how soon a watcher of all topics notices a new one


@dataclass(frozen=True)
class Event:
    type: str
    time: float  # Redis server time, seconds since the epoch
    topic: str = ""
    task_id: str = ""
    attempt: int | None = None
    detail: str = ""  # error line, retry delay, owning manager, ...
    manager: str = ""  # MANAGER_* events
    stats: dict[str, Any] | None = None  # MANAGER_STATS: the `stats --json` shape

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


def publish_manager_event(client: Client, namespace: str, kind: str,
                          manager_id: str, detail: str = "") -> None:
    """Best effort: a manager must start and stop even when Redis is away."""
    try:
        client.xadd(manager_events_key(namespace),
                    {"type": kind, "manager": manager_id, "detail": detail},
                    maxlen=_MANAGER_EVENTS_MAX_LEN, approximate=True)
    except REDIS_ERRORS as exc:
        log.debug("could not publish %s: %s", kind, exc)


def entry_events(entry_id: str, fields: dict[str, str], topic: str = "") -> list[Event]:
    """The events of one stream entry, in the order they happened.

    A script call writes all its events in one entry (_prelude.lua's flush_events):
    one event as fields type, id, attempt, time, detail (the layout of every
    version, so a previous version's streams read too), several as ``n`` and
    ``events``, a JSON array of those five strings per event, one event after another.
    """
    if "events" in fields:
        try:
            flat = [str(part) for part in json.loads(fields["events"])]
        except ValueError:
            flat = ["?", "", "", "", "unreadable event batch"]
    else:
        flat = [fields.get(name, "") for name in ("type", "id", "attempt", "time", "detail")]
    millis = int(entry_id.split("-", 1)[0])
    manager = fields.get("manager", "")
    return [_event(flat[i:i + 5], millis, topic, manager) for i in range(0, len(flat) - 4, 5)]


def _event(row: list[str], millis: int, topic: str, manager: str) -> Event:
    kind, task_id, attempt, stamp, detail = row
    try:
        at = float(stamp or millis / 1000)
    except ValueError:
        at = millis / 1000
    return Event(type=kind or "?", time=at, topic=topic, task_id=task_id,
                 attempt=int(attempt) if attempt.lstrip("-").isdigit() else None,
                 detail=detail, manager=manager)


def read_stream(client: Client, key: str, topic: str = "") -> list[Event]:
    """Every event a stream holds now, oldest first (one XRANGE; for tools and tests)."""
    entries: list[tuple[str, dict[str, str]]] = client.xrange(key)  # type: ignore[assignment]
    return [event for entry_id, fields in entries
            for event in entry_events(entry_id, fields, topic)]


def watch(client: Client, namespace: str, topics: Iterable[str] | None = None, *,
          stats_interval_s: float | None = 1.0, block_s: float = 1.0,
          from_start: bool = False) -> Iterator[Event]:
    """Yield events as they happen (forever; stop by closing the iterator).

    ``topics`` None follows every topic, including ones that appear later.
    ``from_start`` replays what the streams still hold first. While Redis is
    unreachable it retries with backoff, then resumes each stream after the last
    event it yielded, so an outage loses no event and repeats none.
    """
    follow_all = topics is None
    names = [] if follow_all else list(topics or ())
    start = "0-0" if from_start else "$"
    cursors: dict[str, str] = {manager_events_key(namespace): start}
    topics_by_stream: dict[str, str] = {}

    def follow(topic: str, since: str) -> None:
        key = TopicKeys(namespace, topic).events
        topics_by_stream[key] = topic
        cursors.setdefault(key, since)

    for name in names:
        follow(name, start)
    discovered_since = start  # topics known at the first look; later ones from their start
    outage = _Outage()
    merge = _TimeMerge()
    next_stats = next_discovery = time.monotonic()
    while True:
        try:
            now = time.monotonic()
            if follow_all and now >= next_discovery:
                for name in known_topics(client, namespace):
                    follow(name, discovered_since)
                discovered_since, next_discovery = "0-0", now + _DISCOVERY_INTERVAL_S
            for key, cursor in cursors.items():
                cursors[key] = _resolve(client, key, cursor)
            if stats_interval_s is not None and now >= next_stats:
                state = read_queue_state(client, namespace, None if follow_all else names)
                next_stats = now + stats_interval_s
                merge.add("", [Event(type="MANAGER_STATS", time=state.redis_time,
                                     stats=state.as_stats())], more=False)
            replies = read_streams(client, cursors, block_s, count=READ_COUNT)
            outage.over()
        except REDIS_ERRORS as exc:
            time.sleep(outage.failed(exc))
            continue
        merge.read_round({stream for stream, _ in replies})
        for stream, entries in replies:
            if entries:
                cursors[stream] = entries[-1][0]
            topic = topics_by_stream.get(stream, "")
            merge.add(stream, [event for entry_id, fields in entries
                               for event in entry_events(entry_id, fields, topic)],
                      more=len(entries) >= READ_COUNT)
        yield from merge.ready()


class _TimeMerge:
    """Events of several streams in time order, as they are read.

    XREAD returns at most READ_COUNT entries per stream, so a replay reads a busy
    stream a page at a time. An event is held back until every stream whose last
    page was full (it may hold earlier events not read yet) has been read past its
    time; each stream's own events keep their order.
    """

    def __init__(self) -> None:
        self._pending: dict[str, deque[Event]] = {}
        self._unread_after: dict[str, float] = {}  # stream -> time of its last event read

    def read_round(self, streams_with_entries: set[str]) -> None:
        """After a read: a stream it returned nothing for has no unread events left."""
        for stream in [s for s in self._unread_after if s not in streams_with_entries]:
            del self._unread_after[stream]

    def add(self, stream: str, events: list[Event], more: bool) -> None:
        self._pending.setdefault(stream, deque()).extend(events)
        if more and events:
            self._unread_after[stream] = events[-1].time
        else:
            self._unread_after.pop(stream, None)

    def ready(self) -> Iterator[Event]:
        """Pop the events that no unread one can precede, oldest first."""
        horizon = min(self._unread_after.values(), default=math.inf)
        while True:
            heads = [(queue[0].time, stream) for stream, queue in self._pending.items() if queue]
            if not heads:
                return
            at, stream = min(heads)
            if at > horizon:
                return
            yield self._pending[stream].popleft()


class _Outage:
    """A watcher's reconnect backoff, logging the start and end of each outage once."""

    def __init__(self) -> None:
        self._failures = 0

    def failed(self, exc: Exception) -> float:
        """Returns how long to wait before the next try."""
        if not self._failures:
            log.warning("event watcher: Redis is unreachable (%s); reconnecting with backoff",
                        exc)
        self._failures += 1
        return min(defaults.RECONNECT_MAX_S,
                   defaults.RECONNECT_MIN_S * 2.0 ** min(self._failures - 1, 10))

    def over(self) -> None:
        if self._failures:
            log.info("event watcher: Redis is reachable again; resuming after the last "
                     "event seen")
        self._failures = 0


def _resolve(client: Client, key: str, cursor: str) -> str:
    """Turn "$" into the stream's current last id, so a later XREAD misses nothing."""
    if cursor != "$":
        return cursor
    last = client.xrevrange(key, count=1)
    return str(last[0][0]) if last else "0-0"


async def awatch(client: Client, namespace: str, topics: Iterable[str] | None = None,
                 **options: Any) -> AsyncIterator[Event]:
    """:func:`watch` for asyncio code: each blocking read runs in a worker thread."""
    events = watch(client, namespace, topics, **options)
    done = object()
    while True:
        event = await asyncio.to_thread(next, events, done)
        if event is done:
            return
        assert isinstance(event, Event)
        yield event
