"""Parsing WorkerPool specs, and the CRD manifest that validates them on the server."""

from __future__ import annotations

import re

import pytest
from kubetaskqueue_operator.conditions import set_condition
from kubetaskqueue_operator.queue import redact
from kubetaskqueue_operator.spec import SpecError, parse_spec

MINIMAL = {
    "scaleTargetRef": {"name": "workers"},
    "redis": {"urlSecretRef": {"name": "redis"}},
}


def test_defaults_match_the_crd() -> None:
    spec = parse_spec(MINIMAL)
    assert (spec.target.api_version, spec.target.kind, spec.target.name) == (
        "apps/v1",
        "Deployment",
        "workers",
    )
    assert (spec.redis_url_secret.name, spec.redis_url_secret.key) == ("redis", "url")
    assert spec.topics is None
    assert spec.poll_s == 15.0
    p = spec.policy
    assert (p.target_tasks_per_replica, p.min_replicas, p.max_replicas) == (10, 0, 10)
    assert (p.activation_tasks, p.stabilization_s, p.max_step) == (1, 300, 10)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"redis": {"urlSecretRef": {"name": "r"}}}, "scaleTargetRef.name"),
        ({"scaleTargetRef": {"name": "w"}}, "urlSecretRef.name"),
        ({**MINIMAL, "minReplicas": 4, "maxReplicas": 2}, "minReplicas (4) must be <="),
        ({**MINIMAL, "maxReplicas": "many"}, "spec.maxReplicas must be a whole number"),
        ({**MINIMAL, "pollSeconds": 0}, "pollSeconds"),
    ],
)
def test_bad_specs_say_which_field(spec: dict[str, object], words: str) -> None:
    with pytest.raises(SpecError, match=re.escape(words)):
        parse_spec(spec)


def test_condition_keeps_transition_time_while_status_holds() -> None:
    c1 = set_condition([], "Ready", True, "Reconciled", "ok", "T1")
    c2 = set_condition(c1, "Ready", True, "Reconciled", "still ok", "T2")
    c3 = set_condition(c2, "Ready", False, "RedisUnreachable", "down", "T3")
    assert c2[0]["lastTransitionTime"] == "T1" and c2[0]["message"] == "still ok"
    assert c3[0]["lastTransitionTime"] == "T3" and c3[0]["status"] == "False"


def test_redact_hides_redis_password() -> None:
    assert redact("rediss://user:p%40ss@host:6380/1") == "rediss://user:***@host:6380/1"
    assert redact("redis://:pw@host") == "redis://:***@host"
    assert redact("redis://host:6379") == "redis://host:6379"
