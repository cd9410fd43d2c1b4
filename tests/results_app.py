"""A processor for tests/test_results.py that a child process can import by name
(isolation="process"); it returns what it was given."""

from __future__ import annotations

from typing import Any

from kubetaskqueue import Task


def echo(task: Task) -> Any:
    return {"echo": task.payload, "attempt": task.attempt}
