"""When a schedule fires: ``every_s`` intervals and 5-field cron rules (croniter).

Fire times are absolute instants (Unix seconds), the same for every manager that
holds the rule, so managers agree on them without talking to each other:
``every_s`` fires at the multiples of the interval since the Unix epoch, a cron
rule at the times croniter gives in its time zone (UTC by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Counting a long gap of cron fire times costs ~0.1 ms each; beyond this many the
# count stops (documented as "at least").
MISSED_COUNT_LIMIT = 1000


@dataclass(frozen=True)
class Every:
    """Fires at every multiple of ``every_s`` seconds since the Unix epoch."""

    every_s: float

    def _time(self, k: int) -> float:
        return round(k * self.every_s, 6)  # whole microseconds: 0.3, not 0.30000000000000004

    def latest_at_or_before(self, t: float) -> float:
        k = math.floor(t / self.every_s)
        while self._time(k) > t:  # the division rounds either way
            k -= 1
        while self._time(k + 1) <= t:
            k += 1
        return self._time(k)

    def next_after(self, t: float) -> float:
        return self._time(round(self.latest_at_or_before(t) / self.every_s) + 1)

    def count_between(self, after: float, before: float) -> int:
        """Fire times strictly between ``after`` and the fire time ``before``."""
        first = self.next_after(after)
        return max(0, round((before - first) / self.every_s))

    def describe(self) -> str:
        return f"every {self.every_s:g}s"

    def as_dict(self) -> dict[str, Any]:
        return {"every_s": self.every_s}


@dataclass(frozen=True)
class Cron:
    """A standard 5-field cron rule, evaluated in ``tz`` (an IANA zone name)."""

    expr: str
    tz: str = "UTC"

    def _iter(self, t: float) -> Any:
        zone = UTC if self.tz == "UTC" else ZoneInfo(self.tz)
        return _croniter()(self.expr, datetime.fromtimestamp(t, zone))

    def latest_at_or_before(self, t: float) -> float:
        before = float(self._iter(t).get_prev(float))  # strictly before t
        at = float(self._iter(before).get_next(float))
        return at if at <= t else before

    def next_after(self, t: float) -> float:
        return float(self._iter(t).get_next(float))

    def count_between(self, after: float, before: float) -> int:
        """Fire times strictly between ``after`` and ``before``, counted up to
        MISSED_COUNT_LIMIT."""
        times = self._iter(after)
        for count in range(MISSED_COUNT_LIMIT + 1):
            if float(times.get_next(float)) >= before:
                return count
        return MISSED_COUNT_LIMIT

    def describe(self) -> str:
        return f"cron {self.expr}" + ("" if self.tz == "UTC" else f" ({self.tz})")

    def as_dict(self) -> dict[str, Any]:
        return {"cron": self.expr, "tz": self.tz}


Rule = Every | Cron


def make_rule(every_s: object = None, cron: object = None, tz: object = None) -> Rule:
    """The rule for exactly one of ``every_s`` and ``cron``; raises ValueError saying what
    is wrong otherwise."""
    if (every_s is None) == (cron is None):
        raise ValueError("give exactly one of every_s (seconds) and cron (a 5-field rule)")
    if every_s is not None:
        if tz is not None:
            raise ValueError("tz applies to cron rules only; every_s counts seconds "
                             "since the Unix epoch")
        if not isinstance(every_s, int | float) or isinstance(every_s, bool) or not (
                0 < every_s < math.inf):
            raise ValueError(f"every_s must be a finite number of seconds > 0, got {every_s!r}")
        return Every(float(every_s))
    if not isinstance(cron, str) or len(cron.split()) != 5 or not _croniter().is_valid(cron):
        raise ValueError(
            f"cron must be a standard 5-field rule (minute hour day-of-month month "
            f"day-of-week, e.g. '0 3 * * *'), got {cron!r}")
    return Cron(" ".join(cron.split()), _check_tz(tz))


def _check_tz(tz: object) -> str:
    if tz is None or tz == "UTC":
        return "UTC"
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"tz must be an IANA time zone name such as 'Europe/Berlin', got {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}: use an IANA name such as "
                         "'Europe/Berlin' or 'UTC'") from exc
    return tz


def rule_from_dict(data: dict[str, Any]) -> Rule:
    """The inverse of ``as_dict`` (a manager's registry entry)."""
    return make_rule(data.get("every_s"), data.get("cron"), data.get("tz"))


def iso_utc(t: float) -> str:
    """``2024-01-01T03:00:00Z`` (microseconds only when there are some)."""
    stamp = datetime.fromtimestamp(t, UTC)
    return stamp.isoformat(timespec="microseconds" if stamp.microsecond else "seconds"
                           ).replace("+00:00", "Z")


def _croniter() -> Any:
    """croniter, imported on first use: its import took ~10 ms of every start-up, and
    most managers declare no cron schedule."""
    from croniter import croniter

    return croniter
