"""The producer side: payload encoding, task ids, and what one enqueue call writes
(producer.py, enqueue.lua), on the embedded store and a real redis-server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubetaskqueue import DuplicateTaskError, Manager, PayloadError, Task
from kubetaskqueue.producer import encode_payload

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)


@given(JSON_VALUES)
def test_a_payload_encodes_as_compact_json_dumps_and_its_length_is_its_size(value: Any) -> None:
    body = encode_payload("t", value, 1 << 20)
    assert body == json.dumps(value, separators=(",", ":"), allow_nan=False)
    assert len(body) == len(body.encode())


def test_what_json_cannot_hold_or_the_cap_refuses_is_a_payload_error() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    for value in (float("nan"), float("-inf"), {1, 2}, {(1,): 2}, object(), cyclic):
        with pytest.raises(PayloadError, match="not JSON-serialisable"):
            encode_payload("t", value, 100)
    assert encode_payload("t", "é", 8) == '"\\u00e9"'
    with pytest.raises(PayloadError, match="is 8 bytes, over the 7-byte cap"):
        encode_payload("t", "é", 7)


def test_generated_ids_are_uuid4_hex(any_url: str) -> None:
    ids = Manager(any_url).enqueue_many("t", range(300))
    assert len(set(ids)) == 300
    assert all(uuid.UUID(i).hex == i and uuid.UUID(i).version == 4 for i in ids)


@pytest.mark.parametrize("task_ids, payloads, error", [
    (["a b"], 1, "invalid task id 'a b'"),
    (["a\u00a0b"], 1, "no whitespace"),  # str.isspace() beyond ASCII
    (["x" * 201], 1, "1-200 characters"),
    ([""], 1, "1-200 characters"),
    ([7], 1, "invalid task id 7"),
    (["a", "a"], 2, "must be unique"),
    (["a"], 2, "got 1 task ids for 2 payloads"),
])
def test_given_task_ids_are_checked(any_url: str, task_ids: list[Any], payloads: int,
                                    error: str) -> None:
    m = Manager(any_url)
    with pytest.raises(ValueError, match=error):
        m.enqueue_many("t", [1] * payloads, task_ids=task_ids)
    assert m.stats()["topics"] == {}
    assert m.enqueue_many("t", [1], task_ids=["x" * 200]) == ["x" * 200]


def test_a_duplicate_deep_in_a_big_batch_is_named_and_nothing_is_written(any_url: str) -> None:
    m = Manager(any_url)
    m.enqueue("t", 0, task_id="id-300")  # past the first EXISTS of 256 ids
    with pytest.raises(DuplicateTaskError, match="'id-300' already exists"):
        m.enqueue_many("t", range(600), task_ids=[f"id-{i}" for i in range(600)])
    stats = m.stats()["topics"]["t"]
    assert (stats["input"], stats["enqueued"]) == (1, 1)
    keys = m.store.keys("t")
    assert not m.store.client.exists(keys.task("id-0"), keys.task("id-599"))


def test_fields_at_their_default_are_left_out_and_read_as_the_default(any_url: str) -> None:
    m = Manager(any_url)
    m.enqueue("t", {"a": 1}, task_id="plain")
    m.enqueue("t", {"b": 2}, task_id="full", num_retries=2, timeout_s=1.5, keep_result_s=60,
              priority=3)
    client, keys = m.store.client, m.store.keys("t")
    assert set(client.hgetall(keys.task("plain"))) == {"id", "topic", "payload", "enqueued_at",
                                                       "ready_at"}
    full = client.hgetall(keys.task("full"))
    assert (full["num_retries"], full["timeout_s"], full["keep_result_s"], full["priority"]) == (
        "2", "1.5", "60.0", "3")
    info = m.task("t", "plain")
    assert info is not None
    assert (info.attempts, info.num_retries, info.timeout_s, info.keep_result_s,
            info.priority) == (0, 0, None, None, 0)
    got: dict[str, Task] = {}
    m.register("t", lambda task: got.setdefault(task.id, task))
    m.run(burst=True)
    assert [(t.attempt, t.num_retries, t.timeout_s, t.keep_result_s, t.priority, t.payload)
            for t in (got["plain"], got["full"])] == [(1, 0, None, None, 0, {"a": 1}),
                                                      (1, 2, 1.5, 60.0, 3, {"b": 2})]


def test_a_delayed_batch_is_scheduled_for_one_due_time(any_url: str) -> None:
    m = Manager(any_url)
    ids = m.enqueue_many("t", range(5), delay_s=30)
    client, keys = m.store.client, m.store.keys("t")
    due = dict(client.zrange(keys.scheduled, 0, -1, withscores=True))
    assert set(due) == set(ids) and len(set(due.values())) == 1
    fields = client.hgetall(keys.task(ids[0]))
    assert float(fields["ready_at"]) == pytest.approx(float(fields["enqueued_at"]) + 30)
    assert m.stats()["topics"]["t"]["input"] == 0


def test_wake_hints_come_one_per_task_up_to_the_cap_and_none_while_paused(any_url: str) -> None:
    m = Manager(any_url)
    client, wake = m.store.client, m.store.keys("t").wake
    m.enqueue_many("t", range(3))
    assert client.llen(wake) == 3
    m.enqueue_many("t", range(100))
    assert client.llen(wake) == 64
    m.pause("t")
    client.delete(wake)
    m.enqueue_many("t", range(5))
    assert client.llen(wake) == 0
