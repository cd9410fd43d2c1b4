"""Producing tasks: the checks and encoding behind Manager.enqueue and enqueue_many, and
the arguments of the enqueue script.

The tasks of one call share their options, so enqueue.lua gets them once, then an
(id, payload) pair a task: the fewest arguments to pack, send and parse.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from . import defaults
from .errors import PayloadError
from .keys import PRIORITY_MAX, PRIORITY_MIN, TopicKeys, check_topic


class NewTasks(NamedTuple):  # a tuple: a frozen dataclass takes microseconds to build
    """The tasks of one enqueue call, in order: ids, payload JSON texts and what they share."""

    ids: list[str]
    payloads: list[str]
    num_retries: int = 0
    timeout_s: float | None = None
    delay_s: float = 0.0
    keep_result_s: float | None = None
    priority: int = 0


def new_tasks(topic: str, payloads: Iterable[Any], task_ids: list[str] | None, *,
              num_retries: int, delay_s: float | None, timeout_s: float | None,
              keep_result_s: float | None, priority: int,
              max_payload_bytes: int) -> NewTasks:
    """Check an enqueue's arguments and encode its payloads; raises before anything is sent."""
    check_topic(topic)
    check_retries(num_retries)
    _check_priority(priority)
    check_seconds("delay_s", delay_s, allow_zero=True)
    check_seconds("timeout_s", timeout_s, allow_zero=False)
    check_seconds("keep_result_s", keep_result_s, allow_zero=False)
    if keep_result_s is not None and keep_result_s > defaults.MAX_KEEP_RESULT_S:
        raise ValueError(f"keep_result_s must be at most {defaults.MAX_KEEP_RESULT_S:g} "
                         f"seconds (a year), got {keep_result_s!r}")
    bodies = [encode_payload(topic, p, max_payload_bytes) for p in payloads]
    if task_ids is None:
        ids = _new_ids(len(bodies))
    else:
        _check_ids(task_ids, len(bodies))
        ids = list(task_ids)
    return NewTasks(ids, bodies, num_retries, timeout_s, delay_s or 0.0, keep_result_s,
                    priority)


def enqueue_call(namespace: str, topic: str,
                 tasks: NewTasks) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of enqueue.lua (fire_schedule.lua takes them too)."""
    keys, task_prefix = _script_keys(namespace, topic)
    pairs: list[Any] = [None] * (2 * len(tasks.ids))
    pairs[0::2] = tasks.ids
    pairs[1::2] = tasks.payloads
    return list(keys), [task_prefix, topic, len(tasks.ids), tasks.num_retries,
                        _seconds_arg(tasks.timeout_s), repr(float(tasks.delay_s)),
                        _seconds_arg(tasks.keep_result_s), tasks.priority, *pairs]


@functools.lru_cache(maxsize=1024)  # a single enqueue would spend microseconds on the names
def _script_keys(namespace: str, topic: str) -> tuple[tuple[str, ...], str]:
    k = TopicKeys(namespace, topic)
    return (k.input, k.scheduled, k.wake, k.stats, k.controls, k.legacy_input,
            k.events), k.task_prefix


def _seconds_arg(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _type_error(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON without NaN: json.dumps with options builds an encoder on every call;
    the C encoder built once is 2-3x faster. Non-ASCII is escaped: the length is the size."""
    make = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed: a private name
    if make is None:  # an interpreter without json's C accelerator
        return json.JSONEncoder(allow_nan=False, separators=(",", ":"),
                                default=_type_error).encode
    # No markers: a cycle raises RecursionError instead of costing a lookup per container.
    chunks = make(None, _type_error, json.encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, False)
    return lambda value: "".join(chunks(value, 0))


_to_json = _json_encoder()


def encode_payload(topic: str, payload: Any, max_bytes: int) -> str:
    """The payload as compact JSON; PayloadError if JSON cannot hold it or it is too big."""
    try:
        body = _to_json(payload)
    except (TypeError, ValueError, RecursionError) as exc:  # a cycle recurses too deep
        raise PayloadError(
            f"payload for topic {topic!r} is not JSON-serialisable: {exc}") from exc
    if len(body) > max_bytes:
        raise PayloadError(
            f"payload for topic {topic!r} is {len(body)} bytes, over the "
            f"{max_bytes}-byte cap; store large data elsewhere and enqueue a reference")
    return body


# uuid4().hex, built from one urandom read a batch: uuid.uuid4() costs microseconds a call.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def _new_ids(count: int) -> list[str]:
    raw, from_bytes = os.urandom(16 * count), int.from_bytes
    return ["%032x" % (from_bytes(raw[i:i + 16]) & _UUID4_CLEAR | _UUID4_SET)
            for i in range(0, 16 * count, 16)]


def check_retries(num_retries: object) -> None:
    if not isinstance(num_retries, int) or isinstance(num_retries, bool) or num_retries < 0:
        raise ValueError(f"num_retries must be an int >= 0, got {num_retries!r}")


def _check_priority(priority: object) -> None:
    if (not isinstance(priority, int) or isinstance(priority, bool)
            or not PRIORITY_MIN <= priority <= PRIORITY_MAX):
        raise ValueError(f"priority must be an int from {PRIORITY_MIN} to {PRIORITY_MAX} "
                         f"(higher runs first), got {priority!r}")


def check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not (
            value >= 0 if allow_zero else value > 0) or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")


_TASK_ID = re.compile(r"\S{1,200}")  # for str, \s is exactly str.isspace()


def _check_ids(ids: list[str], count: int) -> None:
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} task ids for {count} payloads")
    if len(set(ids)) != len(ids):
        raise ValueError("task ids in one batch must be unique")
    for task_id in ids:
        if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
            raise ValueError(f"invalid task id {task_id!r}: 1-200 characters, no whitespace")
