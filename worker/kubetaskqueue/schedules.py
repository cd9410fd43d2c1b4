"""Periodic tasks: every replica declares the same schedules; each fire time is enqueued once.

A manager that declares schedules runs a ``Scheduler`` thread. It wakes at each fire
time (and every SCHEDULE_CHECK_IN_S), and for every schedule asks fire_schedule.lua
to enqueue the task of the latest fire time due on the Redis clock. The script
enqueues it only if that fire time is after the schedule's cursor in Redis, and
moves the cursor in the same atomic step, so N managers fire it once. A fire after a
gap (no manager ran) says how many fire times it skipped.

Each manager also publishes its schedules under its registry entry (expiring), which
``kubetaskqueue schedules`` and the dashboard read: a schedule removed from the code
is neither fired nor listed, whatever its record in Redis says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from . import defaults
from .cluster import REDIS_ERRORS, Client
from .keys import TopicKeys, manager_schedules_key
from .metrics import WorkerMetrics
from .producer import NewTasks
from .queue_state import read_managers
from .runner import RedisHealth
from .schedule_rules import Rule, iso_utc, rule_from_dict
from .store import RedisStore

log = logging.getLogger("kubetaskqueue")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
# Wake a little after a fire time, so the Redis clock has surely reached it.
_FIRE_MARGIN_S = 0.002
# Script calls per schedule and tick at most (another manager moving the cursor between).
_TICK_ATTEMPTS = 3


def check_schedule_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid schedule name {name!r}: use 1-100 characters from "
                         "letters, digits and '_', '.', ':', '-'")
    return name


@dataclass(frozen=True)
class Schedule:
    """One declared schedule: what to enqueue, where, and when."""

    name: str
    topic: str
    payload_json: str
    rule: Rule
    num_retries: int = 0
    timeout_s: float | None = None

    @property
    def definition(self) -> str:
        """A hash of everything that decides its tasks: a new value is a changed schedule."""
        text = json.dumps([self.topic, self.rule.as_dict(), self.payload_json,
                           self.num_retries, self.timeout_s], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def task_id(self, fire_at: float) -> str:
        return f"schedule:{self.name}:{iso_utc(fire_at)}"

    def task(self, fire_at: float, missed: int) -> NewTasks:
        """The task of one fire time: the declared payload wrapped with the fire's facts."""
        body = json.dumps({"schedule": self.name, "fire_time": fire_at, "missed": missed,
                           "payload": json.loads(self.payload_json)}, separators=(",", ":"))
        return NewTasks([self.task_id(fire_at)], [body], self.num_retries, self.timeout_s)

    def registry_entry(self) -> dict[str, Any]:
        return {"name": self.name, "topic": self.topic, "rule": self.rule.as_dict(),
                "definition": self.definition, "num_retries": self.num_retries,
                "timeout_s": self.timeout_s}


class Scheduler:
    """Fires one manager's schedules. ``tick`` is one pass; ``start`` runs it in a thread."""

    def __init__(self, store: RedisStore, schedules: list[Schedule], manager_id: str,
                 metrics: WorkerMetrics, health: RedisHealth, registry_ttl_s: float) -> None:
        self.store = store
        self.schedules = schedules
        self.manager_id = manager_id
        self.metrics = metrics
        self.health = health
        self.registry_ttl_s = registry_ttl_s
        self._cursors: dict[str, str] = {}  # name -> its cursor as the script last returned it
        self._clock: tuple[float, float] | None = None  # (Redis time, monotonic) of a reply
        self._registered_at: float | None = None  # monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for schedule in schedules:
            metrics.declare_schedule(schedule.name, schedule.topic)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="kubetaskqueue-schedules",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No fire after this returns; the registry entry goes (else it expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(*REDIS_ERRORS):
            self.store.client.delete(self._registry_key)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait_s = self.tick()
                self.health.success()
            except REDIS_ERRORS as exc:
                wait_s = self.health.failure(exc)
            except Exception:  # a bug must not silently end every schedule of this manager
                log.exception("firing schedules failed; trying again")
                wait_s = defaults.SCHEDULE_CHECK_IN_S
            self._stop.wait(wait_s)

    def tick(self) -> float:
        """Check in every schedule, fire those due; returns how long to wait until the
        next fire time or check-in."""
        for schedule in self.schedules:
            if self._stop.is_set():
                break
            self._tick(schedule)
        ttl = self.registry_ttl_s
        if self._registered_at is None or time.monotonic() - self._registered_at >= ttl / 3:
            self.store.client.set(self._registry_key, json.dumps(
                [s.registry_entry() for s in self.schedules]), ex=max(1, math.ceil(ttl)))
            self._registered_at = time.monotonic()
        now = self._now()
        wait_s = defaults.SCHEDULE_CHECK_IN_S
        if now is not None:
            for schedule in self.schedules:
                wait_s = min(wait_s, schedule.rule.next_after(now) - now)
        return max(0.0, wait_s) + _FIRE_MARGIN_S

    @property
    def _registry_key(self) -> str:
        return manager_schedules_key(self.store.namespace, self.manager_id)

    def _now(self) -> float | None:
        """The Redis clock, estimated from the last reply (it lags by part of a round trip,
        so a fire time reached here has been reached in Redis too)."""
        if self._clock is None:
            return None
        redis_time, at = self._clock
        return redis_time + time.monotonic() - at

    def _tick(self, schedule: Schedule) -> None:
        now = self._now()
        for _ in range(_TICK_ATTEMPTS):
            cursor = self._cursors.get(schedule.name)
            fire, missed = None, 0
            if cursor is not None and now is not None:
                due = schedule.rule.latest_at_or_before(now)
                if due > float(cursor):
                    missed = schedule.rule.count_between(float(cursor), due)
                    fire = (due, schedule.task(due, missed))
            status, self._cursors[schedule.name], now = self.store.fire_schedule(
                schedule.topic, schedule.name, schedule.definition, fire, cursor or "",
                missed, defaults.SCHEDULE_LIVE_S)
            self._clock = (now, time.monotonic())
            if fire is not None and status in ("fired", "exists", "full"):
                self._fired(schedule, fire[0], missed, status)
                return
            if schedule.rule.latest_at_or_before(now) <= float(self._cursors[schedule.name]):
                return  # nothing due (or another manager fired it)

    def _fired(self, schedule: Schedule, fire_at: float, missed: int, status: str) -> None:
        if status == "full":
            log.warning("schedule %r: topic %r is full (max_queued); the fire of %s is "
                        "skipped", schedule.name, schedule.topic, iso_utc(fire_at))
            return
        if status == "exists":
            log.warning("schedule %r: task %s already existed (enqueued by hand?); it counts "
                        "as the fire of %s", schedule.name, schedule.task_id(fire_at),
                        iso_utc(fire_at))
            return
        self.metrics.schedule_fired(schedule.name, schedule.topic, missed)
        if missed:
            log.warning("schedule %r missed %d fire time(s) while no manager ran it; fired "
                        "once for the latest, %s", schedule.name, missed, iso_utc(fire_at))
        else:
            log.debug("schedule %r fired for %s", schedule.name, iso_utc(fire_at))


@dataclass(frozen=True)
class ScheduleView:
    """One schedule as live managers declare it, with its fire record from Redis."""

    name: str
    topic: str
    rule: str
    definition: str
    managers: int  # live managers declaring this definition
    last_fire: float | None
    last_missed: int | None  # fire times the last fire skipped
    next_fire: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_schedules(client: Client, namespace: str) -> list[ScheduleView]:
    """The schedules of live managers (one row per name, topic and definition), by name."""
    secs, micros = client.time()
    now = secs + micros / 1e6
    managers = read_managers(client, namespace, now)
    pipe = client.pipeline(transaction=False)
    for manager in managers:
        pipe.get(manager_schedules_key(namespace, manager.id))
    declared: dict[tuple[str, str, str], tuple[Rule, int]] = {}
    for raw in pipe.execute():
        for key, rule in _entries(raw):
            declared[key] = (rule, declared.get(key, (rule, 0))[1] + 1)
    rows = sorted(declared.items())
    pipe = client.pipeline(transaction=False)
    for (name, topic, _), _ in rows:
        pipe.hmget(TopicKeys(namespace, topic).schedule(name), "last_fire", "last_missed")
    views = []
    for ((name, topic, definition), (rule, count)), (last, missed) in zip(
            rows, pipe.execute(), strict=True):
        missed_n = _number(missed)
        views.append(ScheduleView(name, topic, rule.describe(), definition, count,
                                  _number(last), None if missed_n is None else int(missed_n),
                                  rule.next_after(now)))
    return views


def _entries(raw: str | None) -> list[tuple[tuple[str, str, str], Rule]]:
    """A manager's registry entry as ((name, topic, definition), rule) pairs, leaving out
    what does not parse (hand-edited)."""
    found = []
    try:
        entries = json.loads(raw or "[]")
    except ValueError:
        return []
    for entry in entries if isinstance(entries, list) else []:
        try:
            key = (str(entry["name"]), str(entry["topic"]), str(entry["definition"]))
            found.append((key, rule_from_dict(entry["rule"])))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return found


def _number(raw: str | None) -> float | None:
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None
