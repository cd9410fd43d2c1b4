"""manifests/ is the chart rendered as plain YAML, up to date, and builds with kustomize;
every rendered object passes the Kubernetes API schemas of 1.28 and 1.33."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml
from chartrender import ROOT, TOGGLES, generate_manifests, is_hook, render

MANIFESTS = ROOT / "manifests"


def test_manifests_are_up_to_date() -> None:
    stale = generate_manifests.stale_files(generate_manifests.generate())
    assert stale == [], "run: python charts/generate_manifests.py"


def test_manifests_have_no_hooks_no_secrets_and_no_worker_replicas() -> None:
    docs = [d for p in MANIFESTS.glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Namespace", "Role", "Deployment", "StatefulSet",
            "WorkerPool", "Kustomization"} <= kinds
    assert not [d for d in docs if d["kind"] != "Kustomization" and is_hook(d)]
    assert "Secret" not in kinds and "Job" not in kinds and "Pod" not in kinds
    worker = next(d for d in docs if d["kind"] == "Deployment"
                  and d["metadata"]["name"] == "kubetaskqueue-worker")
    assert "replicas" not in worker["spec"]
    text = "".join(p.read_text() for p in MANIFESTS.glob("*.yaml"))
    assert "helm.sh/chart" not in text and "managed-by: Helm" not in text


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_builds_offline() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("CustomResourceDefinition", "workerpools.kubetaskqueue.io") in names
    assert ("Deployment", "kubetaskqueue-operator") in names
    assert ("Deployment", "kubetaskqueue-worker") in names
    assert ("WorkerPool", "kubetaskqueue-worker") in names
    namespaced = [d for d in docs if d["kind"] not in {"Namespace", "CustomResourceDefinition"}]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"kubetaskqueue"}


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((MANIFESTS / "crd-workerpool.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("kube", ["1.28", "1.33"])
def test_rendered_objects_pass_the_kubernetes_schemas(kube: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    crd = _crd_schema()
    unique = {
        json.dumps(obj, sort_keys=True): obj
        for values in TOGGLES.values()
        for obj in render(values) + render(values, upgrade=True)
    }
    checked = 0
    for obj in unique.values():
        if obj["kind"] == "WorkerPool":
                jsonschema.validate(obj, crd)
        elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # prometheus-operator CRDs: no schema offline
        else:
            kv.validate(obj, kube, strict=True)
        checked += 1
    assert checked > 40


def test_generator_puts_every_template_somewhere() -> None:
    templates = {p.name for p in (ROOT / "charts/kubetaskqueue/templates").glob("*.yaml")}
    not_in_manifests = {"uninstall-serviceaccount.yaml", "uninstall-role.yaml",
             "uninstall-rolebinding.yaml", "uninstall-job.yaml",
             "servicemonitor.yaml", "prometheusrule.yaml", "grafana-dashboard-configmap.yaml"}
    assert templates - not_in_manifests == set(generate_manifests.FILES)


def test_generated_file_names_are_listed() -> None:
    kust = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert set(kust["resources"]) == {p.name for p in MANIFESTS.glob("*.yaml")} - {
        "kustomization.yaml"}
