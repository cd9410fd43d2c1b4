"""The manifests agree with the code: CRD defaults, printer columns, RBAC verbs.

manifests/ is generated from the Helm chart (charts/generate_manifests.py);
tests/chart/ checks that it is up to date and renders the chart's other variants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubetaskqueue_operator.kube import REQUIRED_PERMISSIONS
from kubetaskqueue_operator.spec import parse_spec

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def crd_spec_schema() -> dict[str, Any]:
    [crd] = load("crd-workerpool.yaml")
    [version] = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """Apply the schema's defaults the way the API server does, to an empty object."""
    out: dict[str, Any] = {}
    for key, prop in schema.get("properties", {}).items():
        if "default" in prop:
            out[key] = prop["default"]
        if prop.get("type") == "object" and key in out:
            out[key] = {**defaults(prop), **out[key]}
    return out


def test_crd_defaults_equal_the_operators_defaults() -> None:
    schema = crd_spec_schema()
    server = {
        **defaults(schema),
        "scaleTargetRef": {"name": "w"},
        "redis": {"urlSecretRef": {"name": "r"}},
    }
    local = {"scaleTargetRef": {"name": "w"}, "redis": {"urlSecretRef": {"name": "r"}}}
    assert parse_spec(server) == parse_spec(local)


def test_crd_rejects_negative_numbers_and_min_above_max() -> None:
    schema = crd_spec_schema()
    props = schema["properties"]
    for name in ("minReplicas", "maxReplicas", "activationTasks"):
        assert props[name]["minimum"] == 0
    assert props["targetTasksPerReplica"]["minimum"] == 1
    assert props["scaleUp"]["properties"]["maxStep"]["minimum"] == 1
    assert props["scaleDown"]["properties"]["stabilizationSeconds"]["minimum"] == 0
    [rule] = schema["x-kubernetes-validations"]
    assert "self.minReplicas <= self.maxReplicas" in rule["rule"]
    assert "minReplicas" in rule["message"]


def test_printer_columns_point_at_status_fields_the_operator_writes() -> None:
    [crd] = load("crd-workerpool.yaml")
    columns = {
        c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns["Backlog"] == ".status.backlog"
    assert columns["Replicas"] == ".status.currentReplicas"
    assert columns["Desired"] == ".status.desiredReplicas"


def test_rbac_is_the_documented_least_privilege_set() -> None:
    role = next(d for d in load("rbac.yaml") if d["kind"] == "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == REQUIRED_PERMISSIONS


def test_kustomization_lists_every_manifest() -> None:
    [kust] = load("kustomization.yaml")
    listed = set(kust["resources"])
    on_disk = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_workerpool_is_valid_for_the_operator() -> None:
    [pool] = load("workerpool.yaml")
    spec = parse_spec(pool["spec"])
    assert spec.topics is None  # the chart's default: every topic counts
    # The pool scales the worker Deployment the manifests ship...
    workers = {d["metadata"]["name"] for d in load("worker.yaml") if d["kind"] == "Deployment"}
    assert spec.target.kind == "Deployment" and spec.target.name in workers
    # ...and the operator's Role may read exactly the Secret the pool names.
    role = next(d for d in load("rbac.yaml") if d["kind"] == "Role")
    [secret_rule] = [r for r in role["rules"] if r["resources"] == ["secrets"]]
    assert secret_rule["resourceNames"] == [spec.redis_url_secret.name] == ["kubetaskqueue-redis"]


def test_crd_key_prefix_takes_what_the_core_takes() -> None:
    """A brace in the prefix would break Redis Cluster slot co-location: the core's
    settings refuse it, and so must the API server."""
    import re

    from kubetaskqueue.settings import Settings

    prefix = crd_spec_schema()["properties"]["redis"]["properties"]["keyPrefix"]
    core = Settings.model_fields["namespace"].metadata
    core_pattern = next(m.pattern for m in core if getattr(m, "pattern", None))
    assert prefix["pattern"] == core_pattern
    for bad in ("a{b}", "with space", "x}"):
        assert not re.match(prefix["pattern"], bad)
    assert re.match(prefix["pattern"], "kubetaskqueue:staging")
