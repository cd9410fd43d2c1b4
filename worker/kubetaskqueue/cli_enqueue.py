"""`kubetaskqueue enqueue TOPIC --file PATH`: JSON lines in, tasks out; and
`enqueue --wait`, which waits for the one task it enqueued.

Every line is checked before the first task is sent, so a bad line enqueues
nothing; the tasks then go to Redis in chunks, one ``enqueue_many`` round trip each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import click

from .admin import wait_for_task
from .errors import KubeTaskQueueError, NoResultError, ResultTimeoutError
from .manager import Manager

CHUNK_SIZE = 1000


class BadLine(ValueError):
    """A line that is not a payload Manager.enqueue_many would take."""


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, counting blank lines, so it matches an editor's
    payload: Any


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads takes NaN and Infinity; enqueue does not


def read_lines(lines: Iterable[str], max_payload_bytes: int) -> list[Line]:
    """Parse every non-blank line as one JSON value; the first bad one raises BadLine."""
    parsed = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            payload = json.loads(text.rstrip(), parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise BadLine(f"line {number}, column {exc.colno}: not valid JSON ({exc.msg})") from exc
        except (ValueError, RecursionError) as exc:  # NaN; nested deeper than Python recurses
            raise BadLine(f"line {number}: not a payload ({exc})") from exc
        # The size check Manager.enqueue_many makes, on the same compact encoding.
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if size > max_payload_bytes:
            raise BadLine(f"line {number}: the payload is {size} bytes, over the "
                          f"{max_payload_bytes}-byte cap")
        parsed.append(Line(number, payload))
    return parsed


def enqueue_lines(manager: Manager, topic: str, lines: list[Line], *, num_retries: int,
                  delay_s: float | None, timeout_s: float | None,
                  keep_result_s: float | None = None, priority: int = 0,
                  chunk_size: int = CHUNK_SIZE) -> list[str]:
    """Enqueue the payloads in order, ``chunk_size`` at a time; returns their ids.

    Each chunk is all or nothing. If one fails, the error says which lines went in,
    so the rest can be sent again without duplicating the first ones.
    """
    ids: list[str] = []
    for start in range(0, len(lines), chunk_size):
        chunk = lines[start:start + chunk_size]
        try:
            ids += manager.enqueue_many(topic, [line.payload for line in chunk],
                                        num_retries=num_retries, delay_s=delay_s,
                                        timeout_s=timeout_s, keep_result_s=keep_result_s,
                                        priority=priority)
        except KubeTaskQueueError as exc:
            if not ids:
                raise
            raise KubeTaskQueueError(
                f"{exc}; {len(ids)} task(s) were enqueued (lines 1-{lines[start - 1].number}), "
                f"the rest were not: resend from line {chunk[0].number} "
                f"(tail -n +{chunk[0].number} FILE)") from exc
    return ids


def enqueue_file(manager: Manager, topic: str, lines: IO[str], *, num_retries: int,
                 delay_s: float | None, timeout_s: float | None, as_json: bool,
                 keep_result_s: float | None = None, priority: int = 0) -> None:
    """The command: check every line, enqueue them, print the count (or JSON with the ids)."""
    try:
        parsed = read_lines(lines, manager.settings.max_payload_bytes)
    except BadLine as exc:
        raise click.BadParameter(f"{lines.name} {exc}; nothing was enqueued",
                                 param_hint="'--file'") from exc
    ids = enqueue_lines(manager, topic, parsed, num_retries=num_retries, delay_s=delay_s,
                        timeout_s=timeout_s, keep_result_s=keep_result_s, priority=priority)
    click.echo(json.dumps({"enqueued": len(ids), "ids": ids}) if as_json
               else f"enqueued {len(ids)} task(s)")


def wait_for(manager: Manager, topic: str, task_id: str, wait_s: float,
             keeps_result: bool) -> None:
    """`--wait`: return once the task completed, printing its result as JSON if it is
    kept (blocked on Redis); KubeTaskQueueError if it died or time ran out."""
    if keeps_result:
        try:
            click.echo(json.dumps(manager.result(topic, task_id, wait_s)))
            return
        except NoResultError:  # it died: the one way a kept result goes missing
            state = "dead"
        except ResultTimeoutError:
            state = "pending"
    else:
        state = wait_for_task(manager.store, topic, task_id, wait_s)
    if state == "dead":
        raise KubeTaskQueueError(f"task {task_id} died: see `kubetaskqueue dead list {topic}`")
    if state == "pending":
        raise KubeTaskQueueError(f"task {task_id} did not finish within {wait_s:g}s")
