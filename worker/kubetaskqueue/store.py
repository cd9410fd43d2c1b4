"""RedisStore: every task state move, each one Lua script from scripts/ (lua.py loads
them), as a typed Python call."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
from redis.cluster import RedisCluster

from . import defaults
from .cluster import Client, WakeFanOut
from .errors import ConfigError, DuplicateTaskError, QueueFullError
from .keys import TopicKeys, manager_key, managers_key, topics_key
from .lua import SCRIPTS
from .producer import NewTasks, enqueue_call

# The shortest blocking wait: the timeout's resolution is 0.01 s on Redis >= 6, and 0
# would mean forever.
_MIN_BLOCK_S = 0.01

# Policies under which Redis may delete our keys when memory runs out.
_EVICTING_POLICIES = {"allkeys-lru", "allkeys-lfu", "allkeys-random",
                      "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}


def _seconds(raw: str) -> float:
    """A time field; one edited by hand to a non-number still reads (as 0)."""
    try:
        return float(raw)
    except ValueError:
        return 0.0


def _flat(leases: list[tuple[str, str]]) -> list[str]:
    """(id, token) pairs as the id, token, id, token... argument list the scripts read."""
    return [part for lease in leases for part in lease]


class Claimed(NamedTuple):
    """One leased task as the claim script returns it (raw strings, parsed in task.py);
    a tuple, as it is built for every task claimed."""

    id: str
    token: str
    attempts: int
    payload: str
    num_retries: str
    timeout_s: str
    enqueued_at: str
    ready_at: str
    claimed_at: str  # Redis server time of the claim
    keep_result_s: str  # '' = the result is not kept
    priority: str


def _claim_reply(reply: list[Any]) -> tuple[set[str], float | None, list[Claimed]]:
    """claim.lua's reply: the fenced ids of its acks, the seconds until the topic may have
    more (None: nothing is coming) and the tasks leased."""
    next_due, rows, fenced = reply
    due_in = float(next_due)
    claimed = [Claimed(r[0], r[1], int(r[2]), *r[3:11]) for r in rows]
    return set(fenced), (None if due_in < 0 else due_in), claimed


@dataclass(frozen=True)
class TopicControls:
    """What is set on a topic (its controls hash)."""

    paused_at: float | None = None  # Redis time of the pause; None = not paused
    max_queued: int | None = None  # declared by the topic's workers; None = not declared

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


class RedisStore:
    def __init__(self, client: Client, namespace: str = defaults.NAMESPACE,
                 events_max_len: int = defaults.EVENTS_MAX_LEN,
                 dead_max_tasks: int = defaults.DEAD_MAX_TASKS,
                 dead_ttl_s: float = defaults.DEAD_TTL_S,
                 max_queued: int = defaults.MAX_QUEUED) -> None:
        self.client = client
        self.namespace = namespace
        self._listed_topics: set[str] = set()  # already in the topics set
        self._wake_fan_outs: dict[tuple[str, ...], WakeFanOut] = {}
        self._next_dead_sweep: dict[str, float] = {}  # topic -> time.monotonic()
        # Constants in the script text rather than arguments of every call.
        head = (f"local EVENTS_MAX_LEN = {int(events_max_len)}\n"
                f"local DEAD_MAX_TASKS, DEAD_TTL_S = {int(dead_max_tasks)}, {float(dead_ttl_s)!r}\n"
                f"local DEAD_TRIM_PER_DEATH = {defaults.DEAD_TRIM_PER_DEATH}\n"
                f"local MAX_QUEUED = {int(max_queued)}\n")
        self._scripts = {name: client.register_script(head + src)
                         for name, src in SCRIPTS.items()}

    def keys(self, topic: str) -> TopicKeys:
        return TopicKeys(self.namespace, topic)

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return self._scripts[script](keys=keys, args=args)
        except redis.exceptions.MovedError as exc:
            raise ConfigError(
                f"this Redis is a Redis Cluster node (the topic's slot lives at {exc.host}:"
                f"{exc.port}); connect with redis+cluster://host:port"
            ) from exc

    # -- checks ------------------------------------------------------------

    def check_eviction_policy(self) -> str | None:
        """Raise ConfigError if Redis may evict our keys; return a warning if it cannot tell."""
        if type(self.client).__module__.startswith("fakeredis"):
            return None  # the embedded store never evicts
        try:
            if isinstance(self.client, RedisCluster):  # every primary holds some topics
                replies: dict[str, dict[str, str]] = self.client.config_get(  # type: ignore[assignment]
                    "maxmemory-policy", target_nodes=RedisCluster.PRIMARIES)
                policies = {reply.get("maxmemory-policy", "") for reply in replies.values()}
            else:
                policies = {str(self.client.config_get("maxmemory-policy").get(
                    "maxmemory-policy", ""))}
        except redis.ResponseError as exc:  # CONFIG is often disabled on managed Redis
            return f"cannot read Redis maxmemory-policy ({exc}); make sure it is noeviction"
        evicting = sorted(policies & _EVICTING_POLICIES)
        if evicting:
            raise ConfigError(
                f"Redis maxmemory-policy is {evicting[0]!r}, which can silently delete queued "
                "tasks; set it to 'noeviction' (redis-cli CONFIG SET maxmemory-policy noeviction)"
            )
        return None

    # -- producer ----------------------------------------------------------

    def enqueue(self, topic: str, tasks: NewTasks) -> None:
        try:
            result = self._run("enqueue", *enqueue_call(self.namespace, topic, tasks))
        except redis.exceptions.OutOfMemoryError as exc:
            raise QueueFullError(
                f"Redis refused the enqueue to topic {topic!r}: it reached maxmemory ({exc}); "
                "nothing was enqueued") from exc
        if int(result[0]) == 0:
            raise DuplicateTaskError(
                f"task id {result[1]!r} already exists in topic {topic!r}; nothing was enqueued"
            )
        if int(result[0]) == -1:
            raise QueueFullError(
                f"topic {topic!r} is full: {result[1]} task(s) queued (input + scheduled), "
                f"{len(tasks.ids)} more would pass max_queued {result[2]}; nothing was enqueued")
        self._list_topic(topic, new_counters=bool(int(result[1])))

    def _list_topic(self, topic: str, new_counters: bool) -> None:
        # The topics set lives in another cluster slot than the topic, so it cannot
        # join the script; once per topic and process is enough for listing it, and
        # again when the script saw the topic's counters new (it was dropped meanwhile).
        if topic not in self._listed_topics or new_counters:
            self.client.sadd(topics_key(self.namespace), topic)
            self._listed_topics.add(topic)

    def fire_schedule(self, topic: str, name: str, definition: str,
                      fire: tuple[float, NewTasks] | None, expected_cursor: str, missed: int,
                      live_s: float) -> tuple[str, str, float]:
        """Check in ``definition`` of schedule ``name`` and, given ``fire`` (fire time,
        task), enqueue the task if that fire time is after the definition's cursor and
        the cursor is still ``expected_cursor``. Returns (status, the cursor as the
        script formats it, Redis time); see fire_schedule.lua."""
        fire_at, tasks = (f"{fire[0]:.6f}", fire[1]) if fire else ("", NewTasks([], []))
        keys, args = enqueue_call(self.namespace, topic, tasks)
        args += [self.keys(topic).schedule(name), definition, fire_at, expected_cursor,
                 missed, live_s]
        status, cursor, now = self._run("fire_schedule", keys, args)
        if status == "fired":
            self._list_topic(topic, new_counters=False)
        return str(status), str(cursor), float(now)

    # -- worker ------------------------------------------------------------

    def claim(self, topic: str, max_count: int, lease_ttl_s: float,
              owner: str) -> tuple[float | None, list[Claimed]]:
        """Lease up to ``max_count`` ready tasks, highest priority first and within the
        topic's rate limit; also report in how many seconds there may be more (the next
        scheduled task is due, or the limit's next token), None when nothing is coming."""
        _, due_in, claimed = self.ack_and_claim(topic, [], max_count, lease_ttl_s, owner)
        return due_in, claimed

    def ack_and_claim(self, topic: str, leases: list[tuple[str, str]], max_count: int,
                      lease_ttl_s: float, owner: str, results: Mapping[str, str] | None = None,
                      run_s: float | None = None,
                      ) -> tuple[set[str], float | None, list[Claimed]]:
        """``ack_many`` then ``claim``, in one script call: returns the fenced ids of the
        acks, and what ``claim`` returns."""
        return _claim_reply(self._run("claim", *self._claim_call(
            topic, leases, max_count, lease_ttl_s, owner, results, run_s)))

    def _claim_call(self, topic: str, leases: list[tuple[str, str]], max_count: int,
                    lease_ttl_s: float, owner: str, results: Mapping[str, str] | None = None,
                    run_s: float | None = None) -> tuple[list[str], list[Any]]:
        """claim.lua's keys and arguments."""
        k = self.keys(topic)
        return ([k.input, k.legacy_input, k.scheduled, k.work, k.stats, k.dead, k.rate,
                 k.controls, k.events],
                [k.task_prefix, max_count, lease_ttl_s, owner, defaults.PROMOTE_LIMIT,
                 *self._ack_args(k, leases, results, run_s)])

    @property
    def pipelines_on_one_connection(self) -> bool:
        """Whether ``wait_then_claim`` works here: a Redis Cluster client's pipeline is
        not one connection."""
        return not isinstance(self.client, RedisCluster)

    def wait_then_claim(self, topic: str, timeout_s: float, max_count: int, lease_ttl_s: float,
                        owner: str) -> tuple[bool, tuple[set[str], float | None, list[Claimed]]]:
        """``wait_for_wake`` on one topic with ``claim`` pipelined behind it: Redis runs the
        claim as soon as the wait ends, a round trip sooner than a claim sent after the
        wake-up (bench/README, session 16). Returns whether a hint came and what
        ``ack_and_claim`` returns; the claim runs after a timeout too."""
        keys, args = self._claim_call(topic, [], max_count, lease_ttl_s, owner)
        script = self._scripts["claim"]
        pipe = self.client.pipeline(transaction=False)
        pipe.blpop([self.keys(topic).wake], timeout=max(_MIN_BLOCK_S, timeout_s))
        # EVALSHA itself: a Script given a pipeline asks SCRIPT EXISTS first, a round trip.
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        hint, reply = pipe.execute(raise_on_error=False)
        if isinstance(hint, Exception):
            raise hint
        if isinstance(reply, redis.exceptions.NoScriptError):  # Redis restarted or flushed
            return hint is not None, self.ack_and_claim(topic, [], max_count, lease_ttl_s, owner)
        if isinstance(reply, Exception):
            raise reply
        return hint is not None, _claim_reply(reply)

    @staticmethod
    def _ack_args(k: TopicKeys, leases: list[tuple[str, str]],
                  results: Mapping[str, str] | None, run_s: float | None) -> list[str]:
        """The done prefix, run time and id/token/result triples that _ack.lua reads."""
        args = [k.done_prefix, "" if run_s is None else repr(max(0.0, run_s))]
        kept = results or {}
        for task_id, token in leases:
            args += [task_id, token, kept.get(task_id, "")]
        return args

    def extend(self, topic: str, leases: list[tuple[str, str]], lease_ttl_s: float) -> list[str]:
        """Renew leases given as (id, token); returns the ids whose lease was lost."""
        k = self.keys(topic)
        return list(self._run("extend", [k.work], [k.task_prefix, lease_ttl_s, *_flat(leases)]))

    def ack(self, topic: str, task_id: str, token: str) -> bool:
        """Delete a finished task; False when the lease was lost (fenced)."""
        return not self.ack_many(topic, [(task_id, token)])

    def ack_many(self, topic: str, leases: list[tuple[str, str]],
                 results: Mapping[str, str] | None = None,
                 run_s: float | None = None) -> set[str]:
        """Finish tasks given as (id, token) in one call; returns the fenced ids. A task
        that keeps its result is given it in ``results`` (id -> JSON text). ``run_s``:
        how long these attempts ran in all, for the topic's mean run time."""
        k = self.keys(topic)
        args = [k.task_prefix, *self._ack_args(k, leases, results, run_s)]
        return set(self._run("ack", [k.work, k.stats, k.rate, k.events], args))

    def fail(self, topic: str, task_id: str, token: str, error: str, retry_delay_s: float,
             *, bury: bool = False) -> str:
        """Record an attempt that errored or asked to Retry; returns 'retried', 'dead' (the
        task failed: no retries left) or 'fenced'."""
        k = self.keys(topic)
        return str(self._run(
            "fail", [k.input, k.scheduled, k.work, k.dead, k.stats, k.wake, k.events],
            [k.task_prefix, task_id, token, error, retry_delay_s, "1" if bury else "0"],
        ))

    def release(self, topic: str, task_id: str, token: str) -> bool:
        k = self.keys(topic)
        return bool(self._run("release", [k.input, k.work, k.wake, k.events],
                              [k.task_prefix, task_id, token]))

    def reap(self, topic: str, max_worker_losses: int) -> tuple[int, int]:
        """Expired leases are worker losses (retry not spent); returns (requeued, dead).
        Once every DEAD_SWEEP_INTERVAL_S it also sweeps the dead queue's retention."""
        k = self.keys(topic)
        now = time.monotonic()
        sweep = 0
        if now >= self._next_dead_sweep.get(topic, 0.0):
            sweep = defaults.DEAD_SWEEP_LIMIT
            self._next_dead_sweep[topic] = now + defaults.DEAD_SWEEP_INTERVAL_S
        lost, dead = self._run(
            "reap", [k.input, k.scheduled, k.work, k.dead, k.stats, k.wake, k.events],
            [k.task_prefix, defaults.REAP_LIMIT, max_worker_losses, sweep],
        )
        return int(lost), int(dead)

    def release_lost_worker(self, topic: str, manager_ids: list[str], reason: str,
                            max_worker_losses: int) -> tuple[int, int]:
        """These managers died (their pod is gone): release their leases now, as worker
        losses with ``reason``; returns (requeued, dead)."""
        k = self.keys(topic)
        lost, dead = self._run(
            "release_lost", [k.input, k.scheduled, k.work, k.dead, k.stats, k.wake, k.events],
            [k.task_prefix, reason, max_worker_losses, *manager_ids],
        )
        return int(lost), int(dead)

    def lease_owners(self, topic: str) -> dict[str, int]:
        """Manager id -> leases it holds in ``topic`` right now (one atomic read)."""
        k = self.keys(topic)
        flat = self._run("owners", [k.work], [k.task_prefix])
        return {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def declare_limit(self, topic: str, manager_id: str, lapse_s: float,
                      limit: tuple[float, int, int, str] | None) -> tuple[str, dict[str, str]]:
        """Declare this manager's rate limit of ``topic`` as (seconds between starts, burst,
        slots, text), or withdraw it (None); it lapses ``lapse_s`` after the last call.
        Returns the limit text in force ('' for none) and every live declaration."""
        k = self.keys(topic)
        args: list[Any] = [manager_id, lapse_s]
        if limit is not None:
            interval_s, burst, slots, text = limit
            args += [repr(interval_s), burst, slots, text]
        in_force, *flat = self._run("declare_limit", [k.rate], args)
        return str(in_force), {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}

    def wait_for_wake(self, topics: list[str], timeout_s: float) -> bool:
        """Block until a state move signals work (True), or the timeout passes (False)."""
        wake_keys = [self.keys(t).wake for t in topics]
        if isinstance(self.client, RedisCluster) and len(wake_keys) > 1:
            fan_out = self._wake_fan_outs.get(tuple(topics))
            if fan_out is None:  # the topics stay the same for a manager's whole run
                fan_out = WakeFanOut(self.client, wake_keys)
                self._wake_fan_outs[tuple(topics)] = fan_out
            return fan_out.wait(timeout_s)
        return self.client.blpop(wake_keys, timeout=max(_MIN_BLOCK_S, timeout_s)) is not None

    # -- topic controls ------------------------------------------------------

    def set_paused(self, topic: str, paused: bool, who: str) -> bool:
        """Pause or resume claims from ``topic``; False when it already was so."""
        k = self.keys(topic)
        changed = bool(self._run("pause", [k.controls, k.wake, k.events],
                                 ["1" if paused else "0", who]))
        self.client.sadd(topics_key(self.namespace), topic)  # a topic paused first is listed
        return changed

    def declare_max_queued(self, topic: str, limit: int | None) -> None:
        """Publish the topic's own enqueue limit (None: none, producers' setting applies)."""
        controls = self.keys(topic).controls
        if limit is None:
            self.client.hdel(controls, "max_queued")
        else:
            self.client.hset(controls, "max_queued", limit)

    def read_controls(self, topics: list[str]) -> dict[str, TopicControls]:
        """Each topic's controls, in one pipelined round trip."""
        if not topics:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for topic in topics:
            pipe.hmget(self.keys(topic).controls, ["paused", "max_queued"])
        result = {}
        for topic, (paused, limit) in zip(topics, pipe.execute(), strict=True):
            result[topic] = TopicControls(
                paused_at=None if paused is None else _seconds(paused),
                max_queued=int(limit) if limit is not None and str(limit).isdigit() else None)
        return result

    def drop(self, topic: str) -> bool:
        """Delete an empty topic's keys and unlist it; False (nothing changed) if not empty."""
        k = self.keys(topic)
        listing = topics_key(self.namespace)
        # Unlisted first: an enqueue racing the drop either makes the script refuse (and
        # the topic is listed again here) or comes after it and lists the topic itself.
        self.client.srem(listing, topic)
        dropped = bool(self._run("drop", [k.input, k.scheduled, k.work, k.dead, k.legacy_input,
                                          k.wake, k.stats, k.controls, k.rate, k.events], []))
        if not dropped:
            self.client.sadd(listing, topic)
        self._listed_topics.discard(topic)
        return dropped

    # -- managers registry ---------------------------------------------------

    def heartbeat_manager(self, manager_id: str, info: Mapping[str, str | int],
                          ttl_s: float) -> None:
        """Refresh this manager's entry; it expires by itself if the pod dies."""
        now_s, now_us = self.client.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(managers_key(self.namespace), {manager_id: now_s + now_us / 1e6})
        pipe.hset(manager_key(self.namespace, manager_id), mapping=dict(info))  # type: ignore[arg-type]
        pipe.expire(manager_key(self.namespace, manager_id), max(1, int(ttl_s + 0.999)))
        pipe.execute()

    def deregister_manager(self, manager_id: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(managers_key(self.namespace), manager_id)
        pipe.delete(manager_key(self.namespace, manager_id))
        pipe.execute()

    # -- humans: dead queue ---------------------------------------------------

    def dead_requeue(self, topic: str, ids: list[str]) -> int:
        k = self.keys(topic)
        return int(self._run("dead_requeue", [k.input, k.dead, k.wake, k.events],
                             [k.task_prefix, *ids]))

    def dead_purge(self, topic: str, ids: list[str]) -> int:
        k = self.keys(topic)
        return int(self._run("dead_purge", [k.dead], [k.task_prefix, *ids]))

    # -- one task ---------------------------------------------------------------

    def task_info(self, topic: str, task_id: str) -> list[Any]:
        """[] for an unknown id, else [state, flat hash, lease deadline, ms to expiry]."""
        k = self.keys(topic)
        return list(self._run("task_info", [k.input, k.scheduled, k.work, k.dead,
                                            k.legacy_input], [k.task_prefix, task_id]))

    def task_delete(self, topic: str, task_id: str) -> str:
        """Delete a waiting task; returns the state it was in ('' = unknown). Only
        scheduled, input and dead tasks are deleted."""
        k = self.keys(topic)
        return str(self._run("task_delete", [k.input, k.scheduled, k.work, k.dead,
                                             k.legacy_input, k.events], [k.task_prefix, task_id]))

    def wait_done(self, topic: str, task_id: str, timeout_s: float) -> bool:
        """Block until the task's result is kept (True) or the timeout passes (False).
        The done list is rotated onto itself, not popped, so it wakes every waiter."""
        done = self.keys(topic).done(task_id)
        return self.client.blmove(done, done, max(_MIN_BLOCK_S, timeout_s),  # type: ignore[arg-type]
                                  "LEFT", "RIGHT") is not None  # (Redis >= 6 takes fractions)

    def inspect(self, topic: str) -> list[Any]:
        k = self.keys(topic)
        return list(self._run("inspect", [k.input, k.legacy_input, k.scheduled, k.work, k.dead,
                                          k.stats, k.rate], [k.task_prefix]))
