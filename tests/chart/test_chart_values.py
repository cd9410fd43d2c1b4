"""values.yaml, values.schema.json and the CRD copy (lint: test_helm_cli.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from chartrender import CHART, ROOT, HelmError, chart, render


def test_app_version_is_the_package_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert version and chart().metadata["appVersion"] == version.group(1)


def test_default_values_pass_the_schema() -> None:
    render(chart().values)


@pytest.mark.parametrize(("values", "message"), [
    ({"worker": {"replicaz": 2}}, "- worker: Additional property replicaz is not allowed"),
    ({"redis": {"enabeld": True}}, "- redis: Additional property enabeld is not allowed"),
    ({"metrics": {"serviceMonitor": {"enable": True}}}, "Additional property enable is not"),
    ({"typo": 1}, "- (root): Additional property typo is not allowed"),
    ({"worker": {"numWorkers": "5"}},
     "- worker.numWorkers: Invalid type. Expected: integer, given: string"),
    ({"redis": {"enabled": "yes"}},
     "- redis.enabled: Invalid type. Expected: boolean, given: string"),
    ({"workerPool": {"minReplicas": -1}}, "- workerPool.minReplicas: Must be greater than"),
    ({"worker": {"prefetch": -1}}, "- worker.prefetch: Must be greater than"),
    ({"worker": {"app": "myapp.tasks"}}, "- worker.app: Does not match pattern"),
    ({"externalRedis": {"url": "http://x"}}, "- externalRedis.url: Does not match pattern"),
])
def test_schema_rejects_typos_and_wrong_types(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        render(values)  # `helm install` checks the same schema


@pytest.mark.parametrize("url", [
    "redis://:pw@redis:6379/0", "rediss://redis:6380/1", "unix:///run/redis.sock",
    "redis+sentinel://:pw@s1:26379,s2:26379/jobs/0", "rediss+sentinel://s1:26379/jobs",
    "redis+cluster://:pw@n1:6379,n2:6379",
    "rediss+cluster://n1:6379"])
def test_schema_takes_every_url_form_the_worker_connects_to(url: str) -> None:
    render({"redis": {"enabled": False}, "externalRedis": {"url": url}})


def test_every_values_key_has_a_comment() -> None:
    """Each key line in values.yaml is preceded by a comment line (or its section's)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        key = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if not key:
            continue
        before = lines[i - 1].strip() if i else ""
        if not before.startswith("#"):
            missing.append(line.strip())
    # Sub-sections whose parent comment describes them.
    allowed = {"image:", "auth:", "persistence:", "scaleDown:", "scaleUp:", "serviceMonitor:",
               "prometheusRule:", "requests:", "limits:", "type: RuntimeDefault",
               "drop: [ALL]", "metrics:", "podDisruptionBudget:", "networkPolicy:"}
    undocumented = [m for m in missing if m not in allowed and not m.startswith(
        ("cpu:", "memory:", "runAs", "seccompProfile:", "allowPrivilegeEscalation:",
         "readOnlyRootFilesystem:", "capabilities:"))]
    assert undocumented == []


def test_every_values_key_is_in_the_schema() -> None:
    schema = chart().schema
    assert schema is not None

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        props = node.get("properties")
        if props is None:
            return  # free-form (resources, securityContext, ...)
        assert node.get("additionalProperties") is False, path
        for key, value in values.items():
            assert key in props, f"{path}.{key} missing from values.schema.json"
            if isinstance(value, dict):
                walk(value, props[key], f"{path}.{key}")

    walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "")


def test_toggle_names_are_the_documented_ones() -> None:
    values = chart().values
    assert isinstance(values["redis"]["enabled"], bool)
    assert values["externalRedis"]["url"] == "" and values["externalRedis"]["existingSecret"] == ""
    assert values["operator"]["enabled"] is True
    assert set(values["worker"]["image"]) == {"repository", "tag", "pullPolicy"}
    assert values["worker"]["app"]
    assert values["metrics"]["serviceMonitor"]["enabled"] is False
    assert values["metrics"]["prometheusRule"]["enabled"] is False
    assert values["networkPolicy"]["enabled"] is True


def test_crd_is_byte_identical_to_the_manifests_copy() -> None:
    [crd] = chart().crds
    source = (ROOT / "manifests" / "crd-workerpool.yaml").read_text()
    assert crd["data"] == source
    assert (CHART / "crds" / "workerpool.yaml").read_bytes() == source.encode()
