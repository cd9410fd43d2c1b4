"""A processor module whose import never finishes in a child process (as one that
makes a network call at import time might), for tests/test_isolation.py."""

from __future__ import annotations

import multiprocessing
import time

from kubetaskqueue import Task

if multiprocessing.parent_process() is not None:  # only in the spawned child
    time.sleep(60)


def work(task: Task) -> None:
    """Never reached in a child."""
