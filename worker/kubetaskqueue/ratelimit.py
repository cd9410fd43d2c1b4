"""Global rate limits: ``@manager.processor(topic, rate_limit="N/s")`` (or ``/m``, ``/h``).

The token bucket itself runs inside claim.lua, on the Redis clock, so the limit
holds across every manager of the topic. This module parses a limit, sizes its
bucket, and keeps this manager's declaration alive in Redis: each manager that
declares a limit renews it with its heartbeat, the lowest live one is in force
for all, and a declaration lapses one lease TTL after its manager stopped.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .store import RedisStore

log = logging.getLogger("kubetaskqueue")

PERIODS_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
# The bucket holds this long's worth of tokens, at least one: a whole token at
# ordinary rates (so starts are evenly spaced), and at high rates enough that a
# claim loop running a few ms late does not lose starts.
BURST_S = 0.1
MAX_PER_S = 1_000_000.0

_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` task starts per ``period_s``, for every manager of a topic."""

    count: float
    period_s: float
    text: str  # normalised, e.g. "10/s"

    @classmethod
    def parse(cls, spec: object) -> RateLimit:
        match = _SPEC.match(spec) if isinstance(spec, str) else None
        if match is None or float(match.group(1)) <= 0:
            raise ValueError(
                f"rate_limit must be N starts per second, minute or hour with N > 0, like "
                f"'10/s', '100/m' or '1000/h'; got {spec!r}")
        limit = cls(float(match.group(1)), PERIODS_S[match.group(2)],
                    f"{match.group(1)}/{match.group(2)}")
        if limit.per_s > MAX_PER_S:
            raise ValueError(f"rate_limit {spec!r} is over {MAX_PER_S:,.0f}/s")
        return limit

    @property
    def per_s(self) -> float:
        return self.count / self.period_s

    @property
    def interval_s(self) -> float:
        """Seconds between two starts at the limit's pace."""
        return self.period_s / self.count

    @property
    def burst(self) -> int:
        """Tokens the bucket holds: starts that may go at once after a pause."""
        return max(1, math.floor(self.per_s * BURST_S + 1e-9))


class LimitDeclarations:
    """This manager's rate limits, declared in Redis at start and by every heartbeat."""

    def __init__(self, store: RedisStore, manager_id: str, limits: Mapping[str, RateLimit],
                 slots: int, lapse_s: float) -> None:
        self._store = store
        self._manager_id = manager_id
        self._limits = dict(limits)
        self._slots = slots
        self._lapse_s = lapse_s
        self._seen: dict[str, frozenset[str]] = {}  # topic -> declarations last warned about

    def renew(self) -> None:
        for topic, limit in self._limits.items():
            in_force, declared = self._store.declare_limit(
                topic, self._manager_id, self._lapse_s,
                (limit.interval_s, limit.burst, self._slots, limit.text))
            self._warn_if_different(topic, limit, in_force, declared)

    def withdraw(self) -> None:
        for topic in self._limits:
            self._store.declare_limit(topic, self._manager_id, self._lapse_s, None)

    def _warn_if_different(self, topic: str, limit: RateLimit, in_force: str,
                           declared: Mapping[str, str]) -> None:
        """Managers of one topic declare different limits: say so once per change."""
        texts = frozenset(declared.values())
        if self._seen.get(topic) == texts:
            return
        self._seen[topic] = texts
        others = sorted(f"{text} by {manager}" for manager, text in declared.items()
                        if manager != self._manager_id and _per_s(text) != limit.per_s)
        if others:
            log.warning("topic %r: managers declare different rate limits (%s; this one %s); "
                        "the lowest, %s, applies to every manager of the topic", topic,
                        ", ".join(others), limit.text, in_force or "none")


def _per_s(text: str) -> float | None:
    try:
        return RateLimit.parse(text).per_s
    except ValueError:
        return None
