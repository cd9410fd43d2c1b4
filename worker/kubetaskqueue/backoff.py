"""Retry delays: the seed's 10**n ms growth, with jitter and a cap."""

from __future__ import annotations

import random
from collections.abc import Callable

from . import defaults

Backoff = Callable[[int], float]
"""Maps retries done so far (0 for the first retry) to a delay in seconds."""


def default_backoff(retries_done: int) -> float:
    """10**n ms (1 ms, 10 ms, 100 ms, 1 s, 10 s, ...) with up to +-25 % jitter, capped at 10 min.

    Jitter keeps a burst of tasks that failed together (a dependency outage)
    from retrying in lockstep.
    """
    base = defaults.BACKOFF_BASE_S * 10.0 ** min(max(retries_done, 0), 12)
    return min(defaults.BACKOFF_CAP_S, base * random.uniform(0.75, 1.25))
