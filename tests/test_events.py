"""Task and manager events: published atomically by the state-move scripts, watched from Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import RedisServer, wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.events import Event
from proc_lines import Lines


def replay(m: Manager, stop_when: str, task_id: str) -> list[Event]:
    """Every event the topic's stream holds, up to ``stop_when`` for ``task_id``."""
    events: list[Event] = []
    for event in m.watch(["t"], from_start=True, stats_interval_s=None, block_s=0.05):
        events.append(event)
        if event.type == stop_when and event.task_id == task_id:
            return events
    raise AssertionError("unreachable: watch never ends by itself")


def test_lifecycle_events_in_order(any_url: str) -> None:
    m = Manager(any_url, poll_interval_s=0.05)

    @m.processor("t")
    def work(task: Task) -> None:
        if task.payload == "bad" and task.attempt == 1:
            raise ValueError("first try fails")

    m.enqueue("t", "ok", task_id="a")
    m.enqueue("t", "bad", task_id="b", num_retries=1)
    m.run(burst=True)
    events = replay(m, "MANAGER_STOP", "")  # the last event in time order
    by_task = {tid: [e.type for e in events if e.task_id == tid] for tid in ("a", "b")}
    assert by_task["a"] == ["TASK_ENQUEUE", "TASK_START", "TASK_COMPLETION"]
    assert by_task["b"] == ["TASK_ENQUEUE", "TASK_START", "TASK_FAILURE", "TASK_RETRY",
                            "TASK_START", "TASK_COMPLETION"]
    failure = next(e for e in events if e.type == "TASK_FAILURE")
    assert failure.detail == "ValueError: first try fails" and failure.attempt == 1
    assert [e.type for e in events if not e.topic] == ["MANAGER_START", "MANAGER_STOP"]
    assert all(e.time > 1.7e9 for e in events)


def test_dead_fenced_released_and_lease_expired_events(redis_url: str) -> None:
    m = Manager(redis_url, poll_interval_s=0.05)
    store = m.store
    m.enqueue("t", 1, task_id="dies")
    m.enqueue("t", 2, task_id="stale", num_retries=1)
    m.enqueue("t", 3, task_id="kept")
    _, rows = store.claim("t", 3, 0.05, "m1")
    tokens = {r.id: r.token for r in rows}
    store.fail("t", "dies", tokens["dies"], "Traceback...\nRuntimeError: boom", 0)
    store.release("t", "kept", tokens["kept"])
    wait_until(lambda: store.reap("t", 3) == (1, 0))  # "stale" lost its lease
    store.ack("t", "stale", tokens["stale"])  # the late ack is refused
    events = replay(m, "TASK_FENCED", "stale")
    kinds = {(e.type, e.task_id) for e in events}
    assert {("TASK_DEAD", "dies"), ("TASK_RELEASED", "kept"), ("TASK_LEASE_EXPIRED", "stale"),
            ("TASK_FENCED", "stale")} <= kinds
    dead = next(e for e in events if e.type == "TASK_DEAD")
    assert dead.detail == "RuntimeError: boom"


def test_watch_sees_new_events_and_manager_start_stop(redis_url: str) -> None:
    m = Manager(redis_url, poll_interval_s=0.05)
    m.register("t", lambda task: None)
    m.enqueue("t", "before")  # the watcher starts after this: it must not see it
    seen: list[Event] = []
    started = threading.Event()

    def watch() -> None:
        for event in m.watch(stats_interval_s=0.2, block_s=0.1):
            started.set()
            seen.append(event)
            if event.type == "MANAGER_STOP":
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started.wait(5)
    m.start()
    m.enqueue("t", "after", task_id="after")
    wait_until(lambda: any(e.type == "TASK_COMPLETION" for e in seen))
    m.stop()
    thread.join(10)
    types = [e.type for e in seen]
    assert "MANAGER_STATS" in types and "MANAGER_START" in types and "MANAGER_STOP" in types
    task_ids = {e.task_id for e in seen if e.type == "TASK_ENQUEUE"}
    assert task_ids == {"after"}
    stats = next(e for e in seen if e.type == "MANAGER_STATS").stats
    assert stats is not None and "t" in stats["topics"]


def test_awatch_is_an_async_iterator(redis_url: str) -> None:
    m = Manager(redis_url)
    m.enqueue("t", 1, task_id="x")

    async def first() -> Event:
        async for event in m.awatch(["t"], from_start=True, stats_interval_s=None, block_s=0.1):
            return event
        raise AssertionError("no event")

    event = asyncio.run(first())
    assert (event.type, event.task_id) == ("TASK_ENQUEUE", "x")


def test_events_can_be_turned_off(redis_url: str) -> None:
    m = Manager(redis_url)
    m.configure(events_max_len=0)
    m.enqueue("t", 1)
    assert not m.store.client.exists(m.store.keys("t").events)


def test_events_cli_json_lines(redis_url: str) -> None:
    Manager(redis_url).enqueue("t", {"a": 1}, task_id="cli")
    proc = subprocess.Popen([sys.executable, "-m", "kubetaskqueue", "--redis-url", redis_url,
                             "events", "--json", "--from-start", "--stats-interval", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        event = json.loads(proc.stdout.readline())
        assert (event["type"], event["topic"], event["task_id"], event["attempt"]) == (
            "TASK_ENQUEUE", "t", "cli", 0)
        assert event["time"] > 1.7e9
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_watchers_ride_out_a_redis_restart(own_redis: RedisServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A watch() thread, an awatch() task and the events CLI each see every event once,
    in order, across a Redis restart (AOF keeps the stream); the CLI keeps running."""
    caplog.set_level(logging.INFO, logger="kubetaskqueue")
    producer = Manager(own_redis.url)
    batches = {name: [f"{name}{i}" for i in range(5)] for name in ("before", "gap", "after")}
    expected = [task_id for ids in batches.values() for task_id in ids]
    seen: dict[str, list[tuple[float, str]]] = {"watch": [], "awatch": []}
    options = {"from_start": True, "stats_interval_s": None, "block_s": 0.1}

    def record(name: str, event: Event) -> bool:
        seen[name].append((time.monotonic(), event.task_id))
        return event.task_id == expected[-1]

    def follow() -> None:
        for event in Manager(own_redis.url).watch(["t"], **options):
            if record("watch", event):
                return

    async def afollow() -> None:
        async for event in Manager(own_redis.url).awatch(["t"], **options):
            if record("awatch", event):
                return

    watchers = [threading.Thread(target=follow, daemon=True),
                threading.Thread(target=asyncio.run, args=(afollow(),), daemon=True)]
    cli = subprocess.Popen([sys.executable, "-m", "kubetaskqueue", "--log-format", "text",
                            "--redis-url", own_redis.url, "events", "--json", "--topic", "t",
                            "--from-start", "--stats-interval", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cli_out, cli_err = Lines(cli.stdout), Lines(cli.stderr)

    def cli_ids() -> list[str]:
        return [json.loads(line)["task_id"] for line in list(cli_out.lines)]

    def everyone_saw(task_id: str) -> bool:
        return all(task_id in [t for _, t in s] for s in seen.values()) and (
            task_id in cli_ids())

    try:
        for thread in watchers:
            thread.start()
        for task_id in batches["before"]:
            producer.enqueue("t", None, task_id=task_id)
        wait_until(lambda: everyone_saw("before4"), what="events before the restart")
        own_redis.kill()
        # Every watcher has met the outage (each logs it once), so Redis comes back to
        # watchers that are backing off, not ones redis-py's own retries carried through.
        wait_until(lambda: caplog.text.count("is unreachable") == 2 and
                   cli_err.count("is unreachable") == 1, 30, what="watchers saw the outage")
        own_redis.start()
        back = time.monotonic()
        for task_id in batches["gap"]:  # before the watchers are back
            producer.enqueue("t", None, task_id=task_id)
        wait_until(lambda: everyone_saw("gap4"), 20, what="events right after the restart")
        for task_id in batches["after"]:
            producer.enqueue("t", None, task_id=task_id)
        wait_until(lambda: everyone_saw("after4"), what="events after the restart")
        for thread in watchers:
            thread.join(5)
        assert cli.poll() is None  # still following
    finally:
        cli.send_signal(signal.SIGTERM)
        cli.wait(10)
    for name, events in seen.items():
        assert [t for _, t in events] == expected, name
        gap_s = min(at for at, t in events if t == "gap0") - back
        print(f"{name}: first event {gap_s:.2f}s after Redis was back")
    assert cli_ids() == expected
    assert caplog.text.count("is unreachable") == 2  # one line per outage and watcher
    assert caplog.text.count("reachable again") == 2
    assert (cli_err.count("is unreachable"), cli_err.count("reachable again")) == (1, 1)


def test_a_replay_of_several_streams_is_merged_by_time(any_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetaskqueue import events as events_module

    # Pages of 4: stream "c" fills exactly one page, "a" and "b" need several, and a
    # stream-by-stream replay would print b's events before a's second half.
    monkeypatch.setattr(events_module, "READ_COUNT", 4)
    m = Manager(any_url)
    order = [("c", 4), ("a", 10), ("b", 10), ("a", 10)]
    for topic, n in order:
        for i in range(n):
            m.enqueue(topic, i)
    seen: list[Event] = []

    def follow() -> None:
        for event in m.watch(["a", "b", "c"], from_start=True, stats_interval_s=None,
                             block_s=0.05):
            seen.append(event)

    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: len(seen) >= 34, 10, what="all 34 enqueue events replayed")
    times = [e.time for e in seen]
    assert times == sorted(times)
    assert [e.topic for e in seen] == [t for t, n in order for _ in range(n)]
