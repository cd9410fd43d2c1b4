"""Periodic tasks: each fire time enqueued once however many managers run; cron rules and
time zones, definition changes, gaps without managers, removal, the listing.

The fake-time tests drive ``Scheduler.tick`` against the embedded store with the
Redis clock (fakeredis' TIME, which the Lua scripts read) set by the test.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from fakeredis.commands_mixins import server_mixin
from helpers import Workers, wait_until
from kubetaskqueue import KubeTaskQueueError, Manager, PayloadError, Task, schedules
from kubetaskqueue.cli import cli
from kubetaskqueue.connection import connect
from kubetaskqueue.dashboard.app import create_app
from kubetaskqueue.keys import TopicKeys
from kubetaskqueue.metrics import WorkerMetrics
from kubetaskqueue.runner import RedisHealth
from kubetaskqueue.schedule_rules import make_rule
from kubetaskqueue.schedules import Schedule, Scheduler, read_schedules
from kubetaskqueue.store import RedisStore
from starlette.testclient import TestClient


def at(iso: str) -> float:
    """Unix time of ``2024-01-01T10:15:00`` (UTC unless an offset is given)."""
    stamp = datetime.fromisoformat(iso)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


class FakeClock:
    """Stands in for the ``time`` module fakeredis' TIME command reads (the Redis clock),
    and for the scheduler's monotonic clock (its estimate of the Redis clock)."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def set(self, iso: str) -> None:
        self.now = at(iso)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(server_mixin, "time", fake)
    monkeypatch.setattr(schedules, "time", fake)
    return fake


@pytest.fixture
def url() -> str:
    return f"memory://schedules-{uuid.uuid4().hex}"


def every(name: str, every_s: float, payload: Any = None) -> Schedule:
    return Schedule(name, "jobs", json.dumps(payload), make_rule(every_s=every_s))


def scheduler(url: str, *schedules: Schedule, manager_id: str = "a") -> Scheduler:
    return Scheduler(RedisStore(connect(url)), list(schedules), manager_id, WorkerMetrics(),
                     RedisHealth(url), registry_ttl_s=30.0)


def fired(url: str, topic: str = "jobs") -> list[dict[str, Any]]:
    """Every task of ``topic`` (nothing processes them here): id and payload, by fire time."""
    client, keys = connect(url), TopicKeys("kubetaskqueue", topic)
    tasks = [client.hgetall(key) for key in client.scan_iter(match=keys.task_prefix + "*")]
    return sorted(({"id": t["id"], **json.loads(t["payload"])} for t in tasks),
                  key=lambda task: task.get("fire_time", 0))


def fires(url: str) -> list[tuple[float, int]]:
    return [(t["fire_time"], t["missed"]) for t in fired(url)]


def ticks(clock: FakeClock, iso: str, *schedulers: Scheduler) -> None:
    clock.set(iso)
    for s in schedulers:
        s.tick()


# -- the Python side, fake time ---------------------------------------------------------

def test_cron_fires_each_fire_time_once_on_the_redis_clock(clock: FakeClock, url: str) -> None:
    quarter = Schedule("quarter", "jobs", '{"report": "q"}', make_rule(cron="*/15 * * * *"))
    a, b = scheduler(url, quarter, manager_id="a"), scheduler(url, quarter, manager_id="b")
    ticks(clock, "2024-01-01T10:07:00", a, b)
    assert fired(url) == []  # a new schedule waits for its first fire time
    clock.set("2024-01-01T10:14:59.900")
    assert a.tick() == pytest.approx(0.1, abs=0.01)  # it wakes at the fire time
    b.tick()
    assert fired(url) == []
    ticks(clock, "2024-01-01T10:15:00.200", b, a)
    ticks(clock, "2024-01-01T10:15:00.900", a, b)
    assert fired(url) == [{"id": "schedule:quarter:2024-01-01T10:15:00Z", "schedule": "quarter",
                           "fire_time": at("2024-01-01T10:15:00"), "missed": 0,
                           "payload": {"report": "q"}}]
    ticks(clock, "2024-01-01T10:29:59", a, b)
    ticks(clock, "2024-01-01T10:30:00.010", a, b)
    ticks(clock, "2024-01-01T10:44:00", b, a)
    assert fires(url) == [(at("2024-01-01T10:15:00"), 0), (at("2024-01-01T10:30:00"), 0)]
    fires_of = [s.metrics.registry.get_sample_value(
        "kubetaskqueue_schedule_fires_total", {"schedule": "quarter", "topic": "jobs"})
        for s in (a, b)]
    assert sum(fires_of) == 2  # counted by whichever manager enqueued each


def test_cron_in_a_time_zone(clock: FakeClock, url: str) -> None:
    rule = make_rule(cron="0 3 * * *", tz="America/New_York")  # 03:00 EDT = 07:00 UTC
    nightly = scheduler(url, Schedule("nightly", "jobs", "{}", rule))
    ticks(clock, "2024-07-01T06:30:00", nightly)
    ticks(clock, "2024-07-01T06:59:59", nightly)
    ticks(clock, "2024-07-01T07:00:00.500", nightly)
    assert fires(url) == [(at("2024-07-01T03:00:00-04:00"), 0)]
    assert rule.next_after(at("2024-12-02T00:00:00")) == at("2024-12-02T08:00:00")  # EST


def test_a_gap_without_managers_fires_once_for_the_latest_missed_time(clock: FakeClock,
                                                                      url: str) -> None:
    minutely = every("minutely", 60)
    first = scheduler(url, minutely)
    ticks(clock, "2024-01-01T10:00:30", first)
    ticks(clock, "2024-01-01T10:01:00.100", first)
    ticks(clock, "2024-01-01T10:01:30", first)  # then every manager is down until 10:10:30
    back = scheduler(url, minutely, manager_id="restarted")
    ticks(clock, "2024-01-01T10:10:30", back)
    ticks(clock, "2024-01-01T10:10:40", back)
    # 10:02 ... 10:09 were skipped: one fire for 10:10, which says so.
    assert fires(url) == [(at("2024-01-01T10:01:00"), 0), (at("2024-01-01T10:10:00"), 8)]
    labels = {"schedule": "minutely", "topic": "jobs"}
    metric = back.metrics.registry.get_sample_value
    assert metric("kubetaskqueue_schedule_fires_total", labels) == 1
    assert metric("kubetaskqueue_schedule_missed_fires_total", labels) == 8


def test_a_task_enqueued_by_hand_with_the_fire_id_counts_as_the_fire(clock: FakeClock,
                                                                      url: str) -> None:
    minutely = every("minutely", 60)
    a = scheduler(url, minutely)
    ticks(clock, "2024-01-01T10:00:30", a)
    Manager(url).enqueue("jobs", {"by": "hand"}, task_id="schedule:minutely:2024-01-01T10:01:00Z")
    ticks(clock, "2024-01-01T10:01:00.100", a)
    ticks(clock, "2024-01-01T10:02:00.100", a)
    assert [t["id"] for t in fired(url)] == ["schedule:minutely:2024-01-01T10:01:00Z",
                                             "schedule:minutely:2024-01-01T10:02:00Z"]
    assert fired(url)[1]["missed"] == 0


def test_missed_counts_only_fire_times_no_manager_fired(clock: FakeClock, url: str) -> None:
    minutely = every("minutely", 60)
    a, b = scheduler(url, minutely, manager_id="a"), scheduler(url, minutely, manager_id="b")
    ticks(clock, "2024-01-01T10:00:30", a, b)
    ticks(clock, "2024-01-01T10:01:00.100", a, b)
    ticks(clock, "2024-01-01T10:02:00.100", b)  # a is paused and still believes 10:01 last
    ticks(clock, "2024-01-01T10:03:00.100", a)
    assert fires(url) == [(at(f"2024-01-01T10:0{m}:00"), 0) for m in (1, 2, 3)]


def test_a_changed_definition_takes_effect_at_its_next_fire_time(clock: FakeClock,
                                                                url: str) -> None:
    old = scheduler(url, every("report", 60, {"v": 1}), manager_id="old")
    ticks(clock, "2024-01-01T10:00:30", old)
    ticks(clock, "2024-01-01T10:01:00.100", old)
    ticks(clock, "2024-01-01T10:01:35", old)  # the old release's last check-in
    new = scheduler(url, every("report", 10, {"v": 2}), manager_id="new")
    ticks(clock, "2024-01-01T10:01:36", new)  # 10:01:10, :20, :30 are not "missed"
    ticks(clock, "2024-01-01T10:01:40.100", new)
    payloads = [(t["fire_time"], t["missed"], t["payload"]) for t in fired(url)]
    assert payloads == [(at("2024-01-01T10:01:00"), 0, {"v": 1}),
                        (at("2024-01-01T10:01:40"), 0, {"v": 2})]


def test_a_rolled_back_definition_does_not_fire_for_the_others_time(clock: FakeClock,
                                                                   url: str) -> None:
    v1 = every("sync", 60, {"v": 1})
    first = scheduler(url, v1, manager_id="v1")
    ticks(clock, "2024-01-01T10:00:30", first)
    ticks(clock, "2024-01-01T10:01:00.100", first)
    ticks(clock, "2024-01-01T10:01:35", first)
    hourly = scheduler(url, every("sync", 3600, {"v": 2}), manager_id="v2")
    ticks(clock, "2024-01-01T10:01:40", hourly)
    ticks(clock, "2024-01-01T10:30:30", hourly)  # v2's last check-in, then the rollback
    rolled_back = scheduler(url, v1, manager_id="v1-again")
    ticks(clock, "2024-01-01T10:30:45", rolled_back)  # 10:30 was v2's time, not v1's
    ticks(clock, "2024-01-01T10:31:00.100", rolled_back)
    assert fires(url) == [(at("2024-01-01T10:01:00"), 0), (at("2024-01-01T10:31:00"), 0)]


def test_a_rolling_update_never_fires_a_time_twice(clock: FakeClock, url: str) -> None:
    old = scheduler(url, every("sync", 60, "old"), manager_id="old")
    new = scheduler(url, every("sync", 20, "new"), manager_id="new")
    start = at("2024-01-01T10:00:00.100")
    for step in range(37):  # both releases run side by side for three minutes
        clock.now = start + 5 * step
        old.tick()
        new.tick()
    times = [t for t, _ in fires(url)]
    assert times == [start - 0.1 + 20 * k for k in range(1, 10)]  # each 20 s, once


def test_rules_at_their_boundaries() -> None:
    tenth = make_rule(every_s=0.1)
    assert tenth.latest_at_or_before(1700000000.35) == 1700000000.3  # no float noise
    assert tenth.next_after(1700000000.3) == 1700000000.4
    assert tenth.count_between(1700000000.0, 1700000000.3) == 2
    hourly = make_rule(cron="0 * * * *")
    assert hourly.latest_at_or_before(at("2024-01-01T10:00:00")) == at("2024-01-01T10:00:00")
    assert hourly.latest_at_or_before(at("2024-01-01T09:59:59")) == at("2024-01-01T09:00:00")
    assert hourly.next_after(at("2024-01-01T10:00:00")) == at("2024-01-01T11:00:00")
    assert hourly.count_between(at("2024-01-01T10:00:00"), at("2024-01-01T13:00:00")) == 2
    minutely = make_rule(cron="* * * * *")
    assert minutely.count_between(at("2024-01-01T00:00:00"), at("2025-01-01T00:00:00")) == 1000
    assert hourly.describe() == "cron 0 * * * *"
    assert make_rule(cron="0  3 * * *", tz="Europe/Berlin").describe() == \
        "cron 0 3 * * * (Europe/Berlin)"


# -- real redis-server and worker processes ---------------------------------------------

def test_three_worker_processes_fire_an_every_second_schedule_once_a_second(
        redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    workers = Workers(redis_url)
    try:
        procs = [workers.start("schedule_app:manager") for _ in range(3)]
        wait_until(lambda: [v.managers for v in read_schedules(client, "kubetaskqueue")] == [3],
                   timeout_s=30, what="three managers declaring the schedule")
        secs, micros = client.time()
        window = (secs + micros / 1e6, secs + micros / 1e6 + 10)
        wait_until(lambda: float(client.time()[0]) >= window[1], timeout_s=20, interval_s=0.2)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=30) == 0
    finally:
        workers.stop_all()
    runs = [json.loads(r) for r in client.lrange("test:ticks", 0, -1)]
    fire_times = [r["fire_time"] for r in runs]
    assert len(fire_times) == len(set(fire_times)), "a fire time ran twice"
    in_window = [t for t in fire_times if window[0] < t <= window[1]]
    assert 9 <= len(in_window) <= 11, in_window
    stats = Manager(redis_url).stats()["topics"]["ticks"]
    # A fire in the last moment before the SIGTERMs land stays queued for the next worker.
    assert stats["completed"] == len(set(fire_times))
    assert stats["enqueued"] == stats["completed"] + stats["input"] and stats["input"] <= 1
    print(f"3 managers, every_s=1 for 10 s: {len(in_window)} runs, by pids "
          f"{sorted({r['pid'] for r in runs})}")


@pytest.fixture
def running(redis_url: str) -> Iterator[list[Manager]]:
    managers: list[Manager] = []
    yield managers
    for m in managers:
        m.stop()


def start_manager(redis_url: str, running: list[Manager], *names: str) -> Manager:
    m = Manager(redis_url, poll_interval_s=0.2, lease_ttl_s=3.0)
    m.register("jobs", lambda task: None)
    for name in names:
        m.schedule(name, "jobs", {"name": name}, every_s=0.25)
    m.start()
    running.append(m)
    return m


def last_fire(client: redis.Redis, name: str) -> str | None:
    return client.hget(TopicKeys("kubetaskqueue", "jobs").schedule(name), "last_fire")


def test_a_removed_schedule_stops_firing_and_leaves_the_listing(
        redis_url: str, running: list[Manager]) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    first = start_manager(redis_url, running, "keep", "gone")
    wait_until(lambda: last_fire(client, "keep") and last_fire(client, "gone"))
    assert [v.name for v in read_schedules(client, "kubetaskqueue")] == ["gone", "keep"]
    first.stop()
    gone_last = last_fire(client, "gone")
    start_manager(redis_url, running, "keep")  # the next release drops "gone"
    keep_after = last_fire(client, "keep")
    wait_until(lambda: last_fire(client, "keep") != keep_after, what="keep fires again")
    wait_until(lambda: [v.name for v in read_schedules(client, "kubetaskqueue")] == ["keep"],
               what="gone unlisted")  # at once: the stopped manager removed its entry
    time.sleep(0.6)  # two of gone's old intervals
    assert last_fire(client, "gone") == gone_last  # its record in Redis fires nothing


def test_cli_and_dashboard_list_schedules(redis_url: str, running: list[Manager]) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    start_manager(redis_url, running, "beat")
    wait_until(lambda: last_fire(client, "beat"))
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "schedules", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["schedules"]
    assert (row["name"], row["topic"], row["rule"], row["managers"]) == (
        "beat", "jobs", "every 0.25s", 1)
    assert row["last_fire"] < row["next_fire"] <= row["last_fire"] + 0.5
    table = CliRunner().invoke(cli, ["--redis-url", redis_url, "schedules"]).stdout.splitlines()
    assert table[0].split() == ["name", "topic", "rule", "last", "fire", "next", "fire",
                                "managers"]
    assert table[1].split()[:4] == ["beat", "jobs", "every", "0.25s"]
    assert table[1].split()[4].startswith("20") and table[1].split()[-1] == "1"

    app = create_app(connect(redis_url), "kubetaskqueue")
    with TestClient(app, base_url="http://localhost:8080") as api:
        answer = api.get("/api/schedules")
        assert answer.headers["cache-control"] == "no-store"
        assert [s["name"] for s in answer.json()["schedules"]] == ["beat"]
    with TestClient(app, base_url="http://evil.example") as api:
        assert api.get("/api/schedules").status_code == 400  # the Host allow-list holds


# -- declaring ------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({}, "exactly one of every_s"),
    ({"every_s": 1, "cron": "* * * * *"}, "exactly one of every_s"),
    ({"every_s": 0}, "every_s must be a finite number of seconds > 0"),
    ({"every_s": -5}, "every_s must be a finite number"),
    ({"every_s": float("inf")}, "every_s must be a finite number"),
    ({"every_s": True}, "every_s must be a finite number"),
    ({"every_s": 1, "tz": "Europe/Berlin"}, "tz applies to cron rules only"),
    ({"cron": "61 * * * *"}, "cron must be a standard 5-field rule"),
    ({"cron": "0 0 * * * *"}, "cron must be a standard 5-field rule"),
    ({"cron": "@daily"}, "cron must be a standard 5-field rule"),
    ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"cron": "0 3 * * *", "tz": "../etc"}, "unknown time zone"),
    ({"every_s": 1, "num_retries": -1}, "num_retries must be an int >= 0"),
    ({"every_s": 1, "timeout_s": 0}, "timeout_s must be a finite number of seconds > 0"),
])
def test_bad_schedules_are_refused_saying_why(options: dict[str, Any], message: str) -> None:
    m = Manager("memory://declare")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        m.schedule("s", "jobs", {}, **options)


def test_names_payloads_duplicates_and_late_declarations() -> None:
    m = Manager("memory://declare", poll_interval_s=0.1)
    with pytest.raises(ValueError, match="invalid schedule name"):
        m.schedule("has space", "jobs", {}, every_s=1)
    with pytest.raises(ValueError, match="invalid topic"):
        m.schedule("s", "no/slash", {}, every_s=1)
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        m.schedule("s", "jobs", {"when": datetime.now()}, every_s=1)
    m.schedule("s", "jobs", {}, cron="0 3 * * 1-5", tz="Europe/Berlin")
    with pytest.raises(KubeTaskQueueError, match="schedule 's' is already declared"):
        m.schedule("s", "jobs", {}, every_s=1)

    @m.processor("jobs")
    def noop(task: Task) -> None:
        pass

    m.start()
    try:
        with pytest.raises(KubeTaskQueueError, match="before the manager starts"):
            m.schedule("late", "jobs", {}, every_s=1)
    finally:
        m.stop()
