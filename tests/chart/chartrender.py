"""Render charts/kubetaskqueue with the real helm binary (`helm template`, no cluster).

The binary is KUBETASKQUEUE_HELM (.ci/run installs helm 3.18 into .tools/ and sets it),
else .tools/helm3, else `helm` on PATH. Without one the chart tests skip, unless
KUBETASKQUEUE_REQUIRE_HELM=1 (CI), where they fail.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubetaskqueue"
RELEASE, NAMESPACE = "demo", "jobs"
POD_KINDS = {"Deployment", "StatefulSet", "Job", "Pod"}


def load_file_module(name: str, path: Path) -> Any:
    """Import a .py file that is not on sys.path (charts/ must not be: it holds a
    "kubetaskqueue" directory that would shadow the package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in charts/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


generate_manifests = load_file_module(
    "generate_manifests", ROOT / "charts" / "generate_manifests.py"
)
HelmError = generate_manifests.HelmError

if generate_manifests.helm_binary() is None:
    if os.environ.get("KUBETASKQUEUE_REQUIRE_HELM") == "1":
        pytest.fail("helm not found: .ci/run installs it into .tools/ (KUBETASKQUEUE_HELM)",
                    pytrace=False)
    pytest.skip("helm not found (set KUBETASKQUEUE_HELM)", allow_module_level=True)


@functools.cache
def chart() -> SimpleNamespace:
    """The chart's files as data: values, metadata (Chart.yaml), schema, CRDs."""
    return SimpleNamespace(
        values=yaml.safe_load((CHART / "values.yaml").read_text()),
        metadata=yaml.safe_load((CHART / "Chart.yaml").read_text()),
        schema=json.loads((CHART / "values.schema.json").read_text()),
        crds=[{"name": p.name, "data": p.read_text()} for p in sorted(CHART.glob("crds/*"))],
    )


@functools.cache
def _render(values_json: str, upgrade: bool) -> tuple[tuple[str, tuple[dict[str, Any], ...]], ...]:
    rendered = generate_manifests.render_chart(json.loads(values_json), release=RELEASE,
                                               namespace=NAMESPACE, upgrade=upgrade)
    return tuple((name, tuple(docs)) for name, docs in sorted(rendered.items()))


def render(values: dict[str, Any] | None = None, upgrade: bool = False) -> list[dict[str, Any]]:
    """Every rendered object (hooks included), as plain dicts (copies: safe to mutate).
    Values the schema refuses, or a template's `fail`, raise HelmError."""
    rendered = _render(json.dumps(values or {}, sort_keys=True), upgrade)
    return [json.loads(json.dumps(doc)) for _, docs in rendered for doc in docs]


def by_template(values: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [json.loads(json.dumps(d)) for d in docs]
        for name, docs in _render(json.dumps(values or {}, sort_keys=True), False)
    }


@functools.cache
def _notes(values_json: str) -> str:
    # `helm template` leaves NOTES.txt out, so a copy of the chart renders it as the
    # data of a ConfigMap.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / CHART.name
        shutil.copytree(CHART, copy)
        notes_text = (copy / "templates" / "NOTES.txt").read_text()
        (copy / "templates" / "NOTES.txt").unlink()
        (copy / "templates" / "zz-notes.yaml").write_text(
            '{{- define "notes.text" }}' + notes_text + "{{ end }}\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
            'data:\n  text: {{ include "notes.text" . | toJson }}\n')
        rendered = generate_manifests.render_chart(json.loads(values_json), chart=copy,
                                                   release=RELEASE, namespace=NAMESPACE)
    [doc] = rendered["zz-notes.yaml"]
    return str(doc["data"]["text"])


def notes(values: dict[str, Any] | None = None) -> str:
    return _notes(json.dumps(values or {}, sort_keys=True))


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = find(objs, kind, name)
    return found


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def container(obj: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = pod_spec(obj)["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def secret_file(obj: dict[str, Any], variable: str,
                c: dict[str, Any] | None = None) -> dict[str, str]:
    """The Secret key behind the file a container's ``variable`` names, as
    {"name": Secret, "key": key}, following the path to its read-only mount and volume."""
    c = c or container(obj)
    directory, _, filename = env(c)[variable].rpartition("/")
    [mount] = [m for m in c.get("volumeMounts", []) if m["mountPath"] == directory]
    assert mount.get("readOnly") is True, mount
    [volume] = [v for v in pod_spec(obj)["volumes"] if v["name"] == mount["name"]]
    [item] = [i for i in volume["secret"]["items"] if i["path"] == filename]
    return {"name": volume["secret"]["secretName"], "key": item["key"]}


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


# One values set per toggle (and the non-default Redis choices).
TOGGLES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "externalRedis.url": {"redis": {"enabled": False},
                          "externalRedis": {"url": "rediss://:pw@redis.example:6380/1"}},
    "externalRedis.existingSecret": {"redis": {"enabled": False},
                                     "externalRedis": {"existingSecret": "my-redis",
                                                       "existingSecretKey": "uri"}},
    "redis.auth.existingSecret": {"redis": {"auth": {"existingSecret": "my-redis-auth"}}},
    "redis.persistence off": {"redis": {"persistence": {"enabled": False}}},
    "operator.enabled=false": {"operator": {"enabled": False}},
    "metrics.serviceMonitor.enabled": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "metrics.prometheusRule.enabled": {"metrics": {"prometheusRule": {"enabled": True}}},
    "metrics.grafanaDashboard.enabled": {"metrics": {"grafanaDashboard": {"enabled": True}}},
    "networkPolicy off": {"networkPolicy": {"enabled": False}},
    "own worker image": {"worker": {"image": {"repository": "registry.example/myapp",
                                              "tag": "1.2.3"},
                                    "app": "myapp.tasks:manager", "exampleApp": False},
                         "test": {"topic": "email"}},
    "dashboard": {"dashboard": {"enabled": True, "allowActions": True,
                                "ingress": {"enabled": True, "className": "nginx",
                                            "host": "queues.example",
                                            "tls": [{"hosts": ["queues.example"],
                                                     "secretName": "queues-tls"}]}},
                  "networkPolicy": {"enabled": True}},
    "everything on": {"metrics": {"serviceMonitor": {"enabled": True},
                                  "prometheusRule": {"enabled": True},
                                  "grafanaDashboard": {"enabled": True}},
                      "networkPolicy": {"enabled": True},
                      "imagePullSecrets": [{"name": "regcred"}]},
}
