"""Scenario sizes: short by default (CI, under ~3 minutes in all), full with
KUBETASKQUEUE_CHAOS=full (the sizes issue #3 asks for)."""

from __future__ import annotations

import os
from dataclasses import dataclass

FULL = os.environ.get("KUBETASKQUEUE_CHAOS", "").lower() == "full"


@dataclass(frozen=True)
class StormSize:
    tasks: int  # short tasks of min_ms..max_ms
    min_ms: int
    max_ms: int
    long_tasks: int  # tasks of 3 x lease TTL
    workers: int
    slots: int
    victims: int  # workers SIGKILLed each round (the rest are never killed)
    kill_every_s: float
    storm_s: float
    lease_ttl_s: float


STORM = (StormSize(10_000, 10, 500, 50, 4, 8, 2, 2.0, 60.0, 2.0) if FULL
         else StormSize(2_000, 10, 300, 8, 4, 8, 2, 2.0, 16.0, 2.0))

# Poison zoo: normal tasks among the poison ones, and poison tasks of each kind.
POISON_NORMAL = 1_000 if FULL else 200
POISON_EACH = 5 if FULL else 2

# Redis SIGSTOP outage length.
REDIS_PAUSE_S = 20.0 if FULL else 9.0
OUTAGE_TASKS = 2_000 if FULL else 300

# Hypothesis examples per fuzz target.
FUZZ_EXAMPLES = 400 if FULL else 60

# Graceful rollout: task length and grace period from the issue.
ROLLOUT_TASK_S = 120.0
ROLLOUT_GRACE_S = 5.0
