"""Topics as a whole: which exist and who serves them, dropping an empty one, and the
warning a producer logs when it enqueues to a topic no live manager serves."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from . import defaults
from .cluster import REDIS_ERRORS, Client
from .errors import KubeTaskQueueError
from .queue_state import (
    ManagerInfo,
    TopicState,
    known_topics,
    read_managers,
    read_queue_state,
    read_topic_state,
    served_topics,
)
from .store import RedisStore

log = logging.getLogger("kubetaskqueue")


@dataclass(frozen=True)
class TopicRow:
    """One line of `kubetaskqueue topics`."""

    name: str
    state: TopicState
    managers: int  # live managers serving it (several may share a pod or host)
    pods: list[str]  # their pods, each once

    def as_dict(self) -> dict[str, Any]:
        t = self.state
        return {"topic": self.name, "paused": t.paused, "max_queued": t.controls.max_queued,
                "managers": self.managers, "pods": self.pods, "input": t.input,
                "scheduled": t.scheduled, "work": t.work, "dead": t.dead}


def list_topics(client: Client, namespace: str) -> list[TopicRow]:
    """Every topic enqueued to or served by a live manager, with counts and controls."""
    managers = read_managers(client, namespace, 0.0)
    served = served_topics(managers)
    names = sorted(set(known_topics(client, namespace)) | set(served))
    state = read_queue_state(client, namespace, names)
    rows = []
    for name in names:
        serving = served.get(name, [])
        rows.append(TopicRow(name, state.topics[name], len(serving), _pods_of(serving)))
    return rows


def _pods_of(managers: list[ManagerInfo]) -> list[str]:
    """The pods ``managers`` run in, each once (a manager's id where it has no pod)."""
    return sorted({m.pod or m.id for m in managers})


def drop_topic(store: RedisStore, topic: str) -> None:
    """Forget an empty topic nobody serves; raise KubeTaskQueueError (nothing changed)
    if it is unknown, served by a live manager, or holds a task."""
    client, namespace = store.client, store.namespace
    if topic not in known_topics(client, namespace):
        raise KubeTaskQueueError(f"no topic {topic!r} in namespace {namespace!r}")
    serving = served_topics(read_managers(client, namespace, 0.0)).get(topic, [])
    if serving:
        pods = ", ".join(_pods_of(serving))
        raise KubeTaskQueueError(
            f"topic {topic!r} is served by {len(serving)} live manager(s) (pods {pods}): "
            "remove it from their app first; nothing was dropped")
    if not store.drop(topic):
        _, t = read_topic_state(store, topic)
        raise KubeTaskQueueError(
            f"topic {topic!r} is not empty (input {t.input}, scheduled {t.scheduled}, work "
            f"{t.work}, dead {t.dead}): let its tasks finish and purge its dead ones "
            f"(kubetaskqueue dead purge {topic} --all); nothing was dropped")


# (namespace, topic) already warned about in this process, by any Manager.
_warned: set[tuple[str, str]] = set()


class ServedTopicsCheck:
    """Warns once per topic and process when an enqueue goes to a topic that no live
    manager serves: a typo, or workers not deployed yet. Not an error, since producers
    may well start before their workers. The manager registry is read at most every
    ``ttl_s``, so an enqueue pays for it about twice a minute, not every time."""

    def __init__(self, client: Client, namespace: str,
                 ttl_s: float = defaults.SERVED_TOPICS_TTL_S) -> None:
        self._client = client
        self._namespace = namespace
        self._ttl_s = ttl_s
        self._served: set[str] = set()
        self._read_at: float | None = None

    def enqueued(self, topic: str) -> None:
        if (self._namespace, topic) in _warned:
            return
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self._ttl_s:
            try:
                self._served = set(served_topics(read_managers(self._client,
                                                               self._namespace, 0.0)))
            except REDIS_ERRORS:  # the tasks are in; a warning is not worth an error
                return
            self._read_at = now
        if topic in self._served:
            return
        _warned.add((self._namespace, topic))
        others = ", ".join(sorted(self._served)) or "none"
        log.warning("enqueued to topic %r, which no live manager serves (served topics: %s); "
                    "its tasks wait until a worker registers it. Logged once per topic and "
                    "process", topic, others)
