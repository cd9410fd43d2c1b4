"""Status conditions in the Kubernetes API convention (pure helpers).

A condition's ``lastTransitionTime`` changes only when its ``status`` flips, so
``kubectl describe`` shows how long the pool has been Ready or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

READY = "Ready"
REDIS_REACHABLE = "RedisReachable"
SCALING = "Scaling"
ORDER = (READY, REDIS_REACHABLE, SCALING)


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
) -> list[dict[str, Any]]:
    """Return ``conditions`` with ``type_`` set; status None means "Unknown"."""
    text = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in conditions if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == text else None
    new = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
    }
    rest = [dict(c) for c in conditions if c.get("type") != type_]
    result = [*rest, new]
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(result, key=lambda c: rank.get(str(c.get("type")), len(ORDER)))


def get_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
