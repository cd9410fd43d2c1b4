"""Render charts/kubetaskqueue offline (helm-python-sdk: Helm's Go SDK, no helm binary)."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

helm_python = pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

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


@functools.cache
def chart() -> Any:
    return helm_python.Chart.load(CHART)


@functools.cache
def _render(values_json: str, upgrade: bool) -> tuple[tuple[str, tuple[dict[str, Any], ...]], ...]:
    opts = {"is_upgrade": True, "is_install": False} if upgrade else {}
    out = chart().render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE, **opts)
    return tuple(
        (path.split("/templates/", 1)[1], tuple(d for d in yaml.safe_load_all(text) if d))
        for path, text in sorted(out.items())
        if not path.endswith("NOTES.txt")
    )


def render(values: dict[str, Any] | None = None, upgrade: bool = False) -> list[dict[str, Any]]:
    """Every rendered object (hooks included), as plain dicts (copies: safe to mutate)."""
    rendered = _render(json.dumps(values or {}, sort_keys=True), upgrade)
    return [json.loads(json.dumps(doc)) for _, docs in rendered for doc in docs]


def by_template(values: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [json.loads(json.dumps(d)) for d in docs]
        for name, docs in _render(json.dumps(values or {}, sort_keys=True), False)
    }


def notes(values: dict[str, Any] | None = None) -> str:
    out = chart().render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


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
