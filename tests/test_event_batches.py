"""Events batched per script call: one stream entry per call, still one Event per task."""

from __future__ import annotations

import logging
import threading

import pytest
from helpers import RedisServer, wait_until
from kubetaskqueue import Manager
from kubetaskqueue.events import Event, read_stream


def replay(m: Manager, topics: list[str], count: int) -> list[Event]:
    events: list[Event] = []
    for event in m.watch(topics, from_start=True, stats_interval_s=None, block_s=0.05):
        events.append(event)
        if len(events) == count:
            return events
    raise AssertionError("unreachable: watch never ends by itself")


def test_a_call_writes_one_entry_and_readers_see_one_event_per_task(any_url: str) -> None:
    m = Manager(any_url)
    ids = m.enqueue_many("t", range(5), task_ids=[f"id{i}" for i in range(5)])
    _, rows = m.store.claim("t", 5, 30.0, "me")
    assert m.store.ack_many("t", [(r.id, r.token) for r in rows]) == set()
    k = m.store.keys("t")
    assert m.store.client.xlen(k.events) == 3  # enqueue, claim, ack: one XADD each
    events = replay(m, ["t"], 15)
    assert [(e.type, e.task_id) for e in events] == [
        (kind, i) for kind in ("TASK_ENQUEUE", "TASK_START", "TASK_COMPLETION") for i in ids]
    assert {(e.topic, e.attempt) for e in events[5:10]} == {("t", 1)}  # the starts
    assert read_stream(m.store.client, k.events, "t") == events


def test_ids_and_details_that_json_escapes_read_back_as_written(any_url: str) -> None:
    m = Manager(any_url)
    ids = ['q"uote', "back\\slash", "ünï日本", "a/b", "\\u0041"]
    m.enqueue_many("t", range(5), task_ids=ids, delay_s=5)
    events = read_stream(m.store.client, m.store.keys("t").events, "t")
    assert [e.task_id for e in events] == ids
    assert {e.detail for e in events} == {"due in 5.000000s"}


def test_a_previous_versions_single_event_entries_still_read(redis_url: str) -> None:
    m = Manager(redis_url)
    k = m.store.keys("t")
    for i in range(3):  # as the previous version wrote them: one XADD per event
        m.store.client.xadd(k.events, {"type": "TASK_ENQUEUE", "id": f"old{i}", "attempt": "0",
                                       "time": f"{1.8e9 + i:.6f}", "detail": ""})
    m.enqueue_many("t", [1, 2], task_ids=["new0", "new1"])
    events = replay(m, ["t"], 5)
    assert [e.task_id for e in events] == ["old0", "old1", "old2", "new0", "new1"]
    assert events[0] == Event(type="TASK_ENQUEUE", time=1.8e9, topic="t", task_id="old0",
                              attempt=0)
    # The cap's counter, new in this version, starts from the stream's length.
    assert m.store.client.get(k.events_held) == "5"


def test_the_cap_counts_events_not_entries(any_url: str) -> None:
    m = Manager(any_url)
    m.configure(events_max_len=40, max_queued=0)  # slack: 16 events over the cap
    k = m.store.keys("t")

    def held() -> int:
        stored = len(read_stream(m.store.client, k.events))
        assert int(m.store.client.get(k.events_held) or 0) == stored  # the counter is exact
        return stored

    for _ in range(20):
        m.enqueue_many("t", range(8))
    assert 40 - 8 < held() <= 40 + 16
    for i in range(60):
        m.enqueue("t", i)
    assert 40 - 8 < held() <= 40 + 16
    m.enqueue_many("t", range(100))  # a call with more events than the cap keeps them all
    assert held() == 100 and m.store.client.xlen(k.events) == 1
    m.store.client.delete(k.events)  # by hand: the counter is now too high
    m.enqueue_many("t", range(60))
    assert held() == 60


def test_a_watcher_resumes_mid_batch_across_a_redis_restart(
        own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Half of one entry's events are yielded when Redis goes; the watcher yields the rest,
    meets the outage, then yields the entries written after the restart, each once."""
    caplog.set_level(logging.INFO, logger="kubetaskqueue")
    producer = Manager(own_redis.url)
    first = producer.enqueue_many("t", range(6), task_ids=[f"a{i}" for i in range(6)])
    stream = Manager(own_redis.url).watch(["t"], from_start=True, stats_interval_s=None,
                                          block_s=0.1)
    seen = [next(stream).task_id for _ in range(3)]
    own_redis.kill()
    seen += [next(stream).task_id for _ in range(3)]  # already read: no Redis needed
    rest = threading.Thread(target=lambda: seen.extend(next(stream).task_id for _ in range(4)),
                            daemon=True)
    rest.start()
    wait_until(lambda: "is unreachable" in caplog.text, what="the watcher met the outage")
    own_redis.start()
    then = producer.enqueue_many("t", range(4), task_ids=[f"b{i}" for i in range(4)])
    rest.join(20)
    assert seen == first + then
    assert "reachable again" in caplog.text


@pytest.mark.parametrize("read_count", [1, 2, 500])
def test_a_replay_of_batched_streams_is_merged_by_time(any_url: str, read_count: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetaskqueue import events as events_module

    monkeypatch.setattr(events_module, "READ_COUNT", read_count)  # entries per page
    m = Manager(any_url)
    calls = [("c", 4), ("a", 3), ("b", 5), ("a", 4), ("b", 1), ("a", 2), ("c", 1)]
    for topic, n in calls:
        m.enqueue_many(topic, range(n)) if n > 1 else m.enqueue(topic, 0)
    events = replay(m, ["a", "b", "c"], sum(n for _, n in calls))
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert [e.topic for e in events] == [t for t, n in calls for _ in range(n)]
