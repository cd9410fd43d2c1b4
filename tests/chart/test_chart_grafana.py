"""The Grafana dashboard ConfigMap: off by default, the repo's JSON unchanged, labelled and
placed as Grafana's dashboard sidecar (kube-prometheus-stack) expects."""

from __future__ import annotations

import json

import pytest
from chartrender import CHART, NAMESPACE, RELEASE, TOGGLES, chart, find, notes, one, render

NAME = f"{RELEASE}-kubetaskqueue-grafana-dashboard"


def dashboard_configmap(values: dict[str, object]) -> dict[str, object]:
    return one(render({"metrics": {"grafanaDashboard": values}}), "ConfigMap", NAME)


def test_off_by_default() -> None:
    assert chart().values["metrics"]["grafanaDashboard"]["enabled"] is False
    assert not find(render(), "ConfigMap", NAME)
    assert "Grafana" not in notes()


def test_the_configmap_holds_the_repo_json_with_the_sidecar_label() -> None:
    cm = dashboard_configmap(TOGGLES["metrics.grafanaDashboard.enabled"]["metrics"]
                             ["grafanaDashboard"])
    meta = cm["metadata"]
    assert meta["namespace"] == NAMESPACE
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert "annotations" not in meta
    shipped = (CHART / "dashboards" / "kubetaskqueue.json").read_text()
    assert cm["data"] == {"kubetaskqueue.json": shipped.rstrip("\n")}
    assert json.loads(cm["data"]["kubetaskqueue.json"])["uid"] == "kubetaskqueue"


def test_namespace_label_and_folder_annotation_follow_the_values() -> None:
    cm = dashboard_configmap({"enabled": True, "namespace": "monitoring",
                              "label": "grafana.example.com/dashboard", "labelValue": "yes",
                              "labels": {"team": "queues"},
                              "annotations": {"grafana_folder": "kubetaskqueue"}})
    meta = cm["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana.example.com/dashboard"] == "yes"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["labels"]["team"] == "queues"
    assert meta["annotations"] == {"grafana_folder": "kubetaskqueue"}
    text = notes({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}})
    assert f"ConfigMap {NAME}" in text and "(namespace monitoring, label grafana_dashboard=1)" \
        in text.replace("\n", " ")


@pytest.mark.parametrize("values", [
    {"label": ""}, {"label": "has space"}, {"labelValue": "not/allowed"},
    {"namespace": "Monitoring"}, {"labels": {"a": 1}}, {"folder": "x"},
])
def test_the_schema_refuses_what_kubernetes_would(values: dict[str, object]) -> None:
    with pytest.raises(Exception, match="grafanaDashboard"):
        render({"metrics": {"grafanaDashboard": {"enabled": True, **values}}})
