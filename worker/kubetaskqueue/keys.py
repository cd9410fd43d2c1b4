"""The Redis schema: every key kubetaskqueue writes, its type and what it holds.

All keys of one topic share the hash tag ``{<topic>}``, so every state move of
a task is one Lua script on one Redis Cluster slot. The manager registry has
its own tag. Nothing else in the code builds key names (but _prelude.lua
names the events counter after the events key it is given).

| key                              | type | holds                                         |
|----------------------------------|------|-----------------------------------------------|
| ``<ns>:topics``                  | set  | every topic ever enqueued to (for stats; the  |
|                                  |      | one key outside a topic's slot)               |
| ``<ns>:{<topic>}:ready``         | zset | input: ready task ids by priority, then FIFO  |
|                                  |      | (one score band per priority; _prelude.lua)   |
| ``<ns>:{<topic>}:input``         | list | input as versions before priorities kept it;  |
|                                  |      | claims move what an older worker or producer  |
|                                  |      | still puts there during an upgrade            |
| ``<ns>:{<topic>}:scheduled``     | zset | id -> due time (delays and retry backoff)     |
| ``<ns>:{<topic>}:work``          | zset | id -> lease deadline (in-flight tasks)        |
| ``<ns>:{<topic>}:dead``          | list | dead task ids, newest first (capped by        |
|                                  |      | dead_max_tasks and dead_ttl_s)                |
| ``<ns>:{<topic>}:wake``          | list | wake-up hints for idle managers (capped)      |
| ``<ns>:{<topic>}:stats``         | hash | counters (README's glossary): enqueued,       |
|                                  |      | started, retried, failed (moved to dead),     |
|                                  |      | completed, lost (worker losses), fenced,      |
|                                  |      | dead_dropped (oldest dead tasks deleted by    |
|                                  |      | the retention)                                |
| ``<ns>:{<topic>}:events``        | stream | recent task events: one entry per script    |
|                                  |      | call, holding its events (events.py)          |
| ``<ns>:{<topic>}:events:held``   | string | events the stream holds, for its cap (named |
|                                  |      | from the stream's key in _prelude.lua)        |
| ``<ns>:{<topic>}:controls``      | hash | what humans and workers set on the topic:     |
|                                  |      | paused (pause time), max_queued (declared by  |
|                                  |      | the topic's workers)                          |
| ``<ns>:{<topic>}:task:<id>``     | hash | one task: see TASK_FIELDS; after success it   |
|                                  |      | stays (state done) keep_result_s, if set      |
| ``<ns>:{<topic>}:done:<id>``     | list | "the result is kept": wakes result waiters;   |
|                                  |      | expires with the done task's hash             |
| ``<ns>:{<topic>}:schedule:<name>`` | hash | a schedule's fire record: since, last_fire, |
|                                  |      | last_missed, seen:/start:<definition> (see    |
|                                  |      | fire_schedule.lua)                            |
| ``<ns>:{<topic>}:rate``          | hash | rate limit: managers' declarations, the limit |
|                                  |      | in force, token bucket; mean run time         |
| ``<ns>:{managers}``              | zset | manager id -> last heartbeat (server time)    |
| ``<ns>:{managers}:<id>``         | hash | pod, slots, busy, topics (expires)            |
| ``<ns>:{managers}:events``       | stream | MANAGER_START / MANAGER_STOP events         |
| ``<ns>:{managers}:<id>:schedules`` | string | JSON: the schedules a manager declares    |
|                                  |      | (expires; read by ``kubetaskqueue schedules``) |

Times are Redis server seconds (``TIME``) as floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Fields of a task hash. Written by the Lua scripts; read by task.py and admin.py.
# enqueue.lua leaves out num_retries, attempts, timeout_s, token and priority while
# at their default (0, 0, none, 0, 0): every reader takes a missing field as the default.
TASK_FIELDS = (
    "id",  # task id (uuid4 hex unless the producer chose one)
    "topic",
    "payload",  # JSON text, never unpickled
    "num_retries",  # retries allowed after the first attempt
    "attempts",  # attempts started so far (claims, minus graceful releases)
    "timeout_s",  # per-task timeout, "" = topic default
    "enqueued_at",  # when the producer enqueued it
    "ready_at",  # when it last became ready (enqueue, due, retry, release)
    "token",  # fencing token of the current lease; increments on each claim
    "owner",  # manager id holding the lease
    "claimed_at",
    "last_error",  # message and traceback of the last failed attempt
    "failed_at",  # time of the last failed attempt
    "dead_at",
    "losses",  # times its worker was lost (lease expired, pod died); see max_worker_losses
    "keep_result_s",  # set only by enqueue(keep_result_s=): keep the result this long
    "result",  # the processor's return value as JSON (state done)
    "done_at",  # when it succeeded, for a task that keeps its result
    "priority",  # -100..100, higher runs first; kept through retries and requeues
)

# Task priorities: an integer in this range, higher runs first (scripts/_prelude.lua
# packs it with a sequence into one exact double score).
PRIORITY_MIN, PRIORITY_MAX = -100, 100

STAT_FIELDS = ("enqueued", "started", "retried", "failed", "completed", "lost", "fenced",
               "dead_dropped")

_TOPIC_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid topic name, else raise ValueError."""
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic):
        raise ValueError(
            f"invalid topic {topic!r}: use 1-200 characters from letters, digits "
            "and '_', '.', ':', '-'"
        )
    return topic


@dataclass(frozen=True)
class TopicKeys:
    """Key names of one topic; all share the ``{topic}`` hash tag."""

    namespace: str
    topic: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:{{{self.topic}}}"

    @property
    def input(self) -> str:
        """Ready tasks (the "input" state), a sorted set by priority, then FIFO."""
        return f"{self.prefix}:ready"

    @property
    def legacy_input(self) -> str:
        """The list input was before priorities; claims drain it (rolling upgrades)."""
        return f"{self.prefix}:input"

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}:scheduled"

    @property
    def work(self) -> str:
        return f"{self.prefix}:work"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def wake(self) -> str:
        return f"{self.prefix}:wake"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    @property
    def rate(self) -> str:
        return f"{self.prefix}:rate"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def events_held(self) -> str:
        """How many events the stream holds (its cap counts events, not entries)."""
        return f"{self.events}:held"

    @property
    def controls(self) -> str:
        return f"{self.prefix}:controls"

    @property
    def task_prefix(self) -> str:
        """Prefix of task hashes; scripts append the id (same slot as the rest)."""
        return f"{self.prefix}:task:"

    def task(self, task_id: str) -> str:
        return f"{self.task_prefix}{task_id}"

    def schedule(self, name: str) -> str:
        """A schedule's fire record, in the slot of the topic it fires into."""
        return f"{self.prefix}:schedule:{name}"

    @property
    def done_prefix(self) -> str:
        """Prefix of the lists that say a task's result is kept (result waiters block on them)."""
        return f"{self.prefix}:done:"

    def done(self, task_id: str) -> str:
        return f"{self.done_prefix}{task_id}"


def topics_key(namespace: str) -> str:
    return f"{namespace}:topics"


def managers_key(namespace: str) -> str:
    return f"{namespace}:{{managers}}"


def manager_events_key(namespace: str) -> str:
    return f"{namespace}:{{managers}}:events"


def manager_key(namespace: str, manager_id: str) -> str:
    return f"{namespace}:{{managers}}:{manager_id}"


def manager_schedules_key(namespace: str, manager_id: str) -> str:
    return f"{namespace}:{{managers}}:{manager_id}:schedules"
