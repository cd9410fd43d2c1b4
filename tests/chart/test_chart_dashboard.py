"""The dashboard toggle: Deployment, Service, token Secret, Ingress, NetworkPolicy, NOTES."""

from __future__ import annotations

import re
from typing import Any

import pytest
from chartrender import (
    CHART,
    NAMESPACE,
    RELEASE,
    TOGGLES,
    HelmError,
    chart,
    container,
    env,
    find,
    notes,
    one,
    pod_spec,
    render,
    secret_file,
)

DASHBOARD = f"{RELEASE}-kubetaskqueue-dashboard"
REDIS_SECRET = f"{RELEASE}-kubetaskqueue-redis"
ON = {"dashboard": {"enabled": True}}
ACTIONS = {"dashboard": {"enabled": True, "allowActions": True}}


def dashboard_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in render(values)
            if o["metadata"]["labels"]["app.kubernetes.io/component"] == "dashboard"]


def test_off_by_default() -> None:
    assert chart().values["dashboard"]["enabled"] is False
    assert dashboard_objects({}) == []
    assert "dashboard" not in notes()


def test_read_only_dashboard_is_a_deployment_and_a_service_without_a_token() -> None:
    objs = dashboard_objects(ON)
    assert sorted(o["kind"] for o in objs) == ["Deployment", "NetworkPolicy", "Service"]
    deploy = one(objs, "Deployment", DASHBOARD)
    c = container(deploy)
    assert c["name"] == "dashboard"
    assert c["command"] == ["kubetaskqueue", "dashboard", "--host=0.0.0.0", "--port=8080"]
    assert c["image"] == f"ghcr.io/kubetaskqueue/kubetaskqueue:{chart().metadata['appVersion']}"
    variables = env(c)
    assert secret_file(deploy, "KUBETASKQUEUE_REDIS_URL_FILE") == {"name": REDIS_SECRET,
                                                                  "key": "url"}
    assert variables["KUBETASKQUEUE_NAMESPACE"] == "kubetaskqueue"
    assert not {"KUBETASKQUEUE_DASHBOARD_TOKEN", "KUBETASKQUEUE_DASHBOARD_TOKEN_FILE"} & set(
        variables)
    assert c["ports"] == [{"name": "http", "containerPort": 8080}]
    # The kubelet would send the pod IP as Host, which the dashboard refuses (400).
    probe = {"path": "/healthz", "port": "http",
             "httpHeaders": [{"name": "Host", "value": "localhost"}]}
    assert c["readinessProbe"] == {"httpGet": probe, "periodSeconds": 10}
    assert c["livenessProbe"] == {"httpGet": probe, "initialDelaySeconds": 10,
                                  "periodSeconds": 20}
    assert c["resources"] == {"requests": {"cpu": "20m", "memory": "64Mi"},
                              "limits": {"memory": "128Mi"}}
    assert deploy["spec"]["replicas"] == 1
    service = one(objs, "Service", DASHBOARD)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http",
                                         "protocol": "TCP"}]
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector["app.kubernetes.io/component"] == "dashboard"
    assert deploy["spec"]["template"]["metadata"]["labels"] == selector


def test_dashboard_pod_is_locked_down_like_the_exporter() -> None:
    deploy = one(render(ON), "Deployment", DASHBOARD)
    exporter = one(render(ON), "Deployment", f"{RELEASE}-kubetaskqueue-exporter")
    spec, ref = pod_spec(deploy), pod_spec(exporter)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == ref["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    c = container(deploy)
    assert c["securityContext"] == container(exporter)["securityContext"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["volumeMounts"] == container(exporter)["volumeMounts"]
    assert spec["volumes"] == ref["volumes"]  # /tmp and the Redis URL Secret


def test_actions_take_the_token_from_the_generated_secret() -> None:
    objs = dashboard_objects(ACTIONS)
    assert sorted(o["kind"] for o in objs) == ["Deployment", "NetworkPolicy", "Secret", "Service"]
    c = container(one(objs, "Deployment", DASHBOARD))
    assert c["command"][-1] == "--allow-actions"
    deploy = one(objs, "Deployment", DASHBOARD)
    assert "KUBETASKQUEUE_DASHBOARD_TOKEN" not in env(c)
    assert secret_file(deploy, "KUBETASKQUEUE_DASHBOARD_TOKEN_FILE") == {"name": DASHBOARD,
                                                                        "key": "token"}
    secret = one(objs, "Secret", DASHBOARD)
    assert list(secret["data"]) == ["token"]
    import base64

    token = base64.b64decode(secret["data"]["token"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token)  # the CLI wants >= 16 characters
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Generated once: the template reuses the live Secret's token (lookup) on upgrades.
    text = (CHART / "templates" / "dashboard-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in text


SERVICE_NAMES = [DASHBOARD, f"{DASHBOARD}.{NAMESPACE}", f"{DASHBOARD}.{NAMESPACE}.svc",
                 f"{DASHBOARD}.{NAMESPACE}.svc.cluster.local"]


def allowed_hosts_env(values: dict[str, Any]) -> list[str]:
    c = container(one(render(values), "Deployment", DASHBOARD))
    assert "--host=0.0.0.0" in c["command"]  # a pod must listen beyond its loopback
    return str(env(c)["KUBETASKQUEUE_DASHBOARD_ALLOWED_HOSTS"]).split(",")


def test_dashboard_serves_its_service_names_the_ingress_host_and_allowed_hosts() -> None:
    from kubetaskqueue.dashboard import allowed_hosts

    assert allowed_hosts_env(ON) == SERVICE_NAMES
    # The Ingress host only with the Ingress on; then dashboard.allowedHosts.
    assert allowed_hosts_env(TOGGLES["dashboard"]) == [*SERVICE_NAMES, "queues.example"]
    off = {"dashboard": {"enabled": True, "ingress": {"host": "queues.example"}}}
    assert allowed_hosts_env(off) == SERVICE_NAMES
    extra = {"dashboard": {"enabled": True, "allowedHosts": ["10.0.0.5", "*.corp.example",
                                                             "[fd00::5]"],
                           "ingress": {"enabled": True, "host": "*.queues.example"}}}
    hosts = allowed_hosts_env(extra)
    assert hosts == [*SERVICE_NAMES, "*.queues.example", "10.0.0.5", "*.corp.example",
                     "[fd00::5]"]
    # The dashboard takes every one of them (a bad one would stop it at start).
    assert allowed_hosts(hosts, "0.0.0.0")[3:-1] == hosts


@pytest.mark.parametrize("host", ["queues.example:443", "https://queues.example", "a,b", "::1"])
def test_schema_refuses_allowed_hosts_the_dashboard_would_not_take(host: str) -> None:
    values = {"dashboard": {"allowedHosts": [host]}}
    with pytest.raises(HelmError, match=re.escape("- dashboard.allowedHosts.0: Does not match")):
        render(values)


def test_existing_secret_and_key_are_used_and_no_secret_is_created() -> None:
    values = {"dashboard": {"enabled": True, "allowActions": True,
                            "token": {"existingSecret": "dash-token", "secretKey": "bearer"}}}
    objs = dashboard_objects(values)
    assert not find(objs, "Secret")
    assert secret_file(one(objs, "Deployment", DASHBOARD),
                       "KUBETASKQUEUE_DASHBOARD_TOKEN_FILE") == {"name": "dash-token",
                                                                 "key": "bearer"}
    text = notes(values)
    assert "get secret dash-token \\\n    -o jsonpath='{.data.bearer}' | base64 -d" in text
    # A chart-made Secret uses secretKey too.
    secret = one(dashboard_objects({"dashboard": {"enabled": True, "allowActions": True,
                                                  "token": {"secretKey": "t"}}}), "Secret")
    assert list(secret["data"]) == ["t"]


def test_token_settings_are_ignored_while_read_only() -> None:
    values = {"dashboard": {"enabled": True, "token": {"existingSecret": "dash-token"}}}
    objs = dashboard_objects(values)
    assert not find(objs, "Secret")
    c = container(one(objs, "Deployment", DASHBOARD))
    assert "--allow-actions" not in c["command"]
    assert "KUBETASKQUEUE_DASHBOARD_TOKEN_FILE" not in env(c)
    assert "dashboard-token" not in {m["name"] for m in c["volumeMounts"]}


def test_ingress_routes_host_and_path_to_the_service_with_tls() -> None:
    assert not find(render(ACTIONS), "Ingress")
    ingress = one(render(TOGGLES["dashboard"]), "Ingress", DASHBOARD)
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["queues.example"], "secretName": "queues-tls"}]
    assert spec["rules"] == [{"host": "queues.example", "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": DASHBOARD, "port": {"name": "http"}}}}]}}]
    # Ingress off with the dashboard off, whatever ingress.enabled says.
    assert not find(render({"dashboard": {"ingress": {"enabled": True}}}), "Ingress")


def test_minimal_ingress_matches_every_host_with_the_default_class() -> None:
    values = {"dashboard": {"enabled": True, "ingress": {
        "enabled": True, "path": "/queues", "pathType": "ImplementationSpecific",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"}}}}
    ingress = one(render(values), "Ingress", DASHBOARD)
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-buffering": "off"}
    spec = ingress["spec"]
    assert "ingressClassName" not in spec and "tls" not in spec
    [rule] = spec["rules"]
    assert "host" not in rule
    assert rule["http"]["paths"][0]["path"] == "/queues"
    assert rule["http"]["paths"][0]["pathType"] == "ImplementationSpecific"


def test_service_type_port_annotations_and_pod_placement() -> None:
    values = {"dashboard": {
        "enabled": True, "replicas": 2,
        "service": {"type": "NodePort", "port": 80, "annotations": {"a": "b"}},
        "nodeSelector": {"pool": "ops"},
        "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {}},
        "resources": {"requests": {"cpu": "50m", "memory": "100Mi"}}}}
    objs = render(values)
    service = one(objs, "Service", DASHBOARD)
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["metadata"]["annotations"] == {"a": "b"}
    deploy = one(objs, "Deployment", DASHBOARD)
    assert deploy["spec"]["replicas"] == 2
    spec = pod_spec(deploy)
    assert spec["nodeSelector"] == {"pool": "ops"}
    assert spec["tolerations"][0]["key"] == "ops"
    assert spec["affinity"] == {"podAntiAffinity": {}}
    assert container(deploy)["resources"] == {"requests": {"cpu": "50m", "memory": "100Mi"},
                                              "limits": {"memory": "128Mi"}}
    assert "kubectl -n jobs port-forward svc/demo-kubetaskqueue-dashboard 8080:80" in notes(
        values)


def test_dashboard_follows_external_redis_and_the_key_prefix() -> None:
    values = {**TOGGLES["externalRedis.existingSecret"], **ON, "keyPrefix": "prod"}
    deploy = one(render(values), "Deployment", DASHBOARD)
    assert secret_file(deploy, "KUBETASKQUEUE_REDIS_URL_FILE") == {"name": "my-redis",
                                                                  "key": "uri"}
    assert env(container(deploy))["KUBETASKQUEUE_NAMESPACE"] == "prod"


def test_network_policy_lets_the_dashboard_serve_8080() -> None:
    objs = render(TOGGLES["dashboard"])
    policy = one(objs, "NetworkPolicy", DASHBOARD)
    deploy = one(objs, "Deployment", DASHBOARD)
    assert policy["spec"]["podSelector"]["matchLabels"] == deploy["spec"]["selector"][
        "matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    # Redis lets every pod of the release in, the dashboard included.
    redis = one(objs, "NetworkPolicy", REDIS_SECRET)
    selectors = [p["podSelector"]["matchLabels"] for p in redis["spec"]["ingress"][0]["from"]]
    assert any(all(deploy["spec"]["template"]["metadata"]["labels"].get(k) == v
                   for k, v in s.items()) for s in selectors)
    assert find(render(ACTIONS), "NetworkPolicy", DASHBOARD)  # on by default
    # No dashboard policy without the dashboard, or without network policies.
    assert not find(render(), "NetworkPolicy", DASHBOARD)
    assert not find(render({**ACTIONS, "networkPolicy": {"enabled": False}}), "NetworkPolicy")


def test_notes_show_port_forward_and_how_to_read_the_token() -> None:
    read_only = notes(ON)
    assert f"kubectl -n {NAMESPACE} port-forward svc/{DASHBOARD} 8080:8080" in read_only
    assert "read-only" in read_only and "get secret" not in read_only
    text = notes(ACTIONS)
    assert (f"kubectl -n {NAMESPACE} get secret {DASHBOARD} \\\n"
            "    -o jsonpath='{.data.token}' | base64 -d") in text
    assert f"token Secret ({DASHBOARD}) is kept" in text


@pytest.mark.parametrize(("values", "message"), [
    ({"dashboard": {"enabeld": True}}, "- dashboard: Additional property enabeld is not"),
    ({"dashboard": {"token": {"existingSecert": "x"}}},
     "- dashboard.token: Additional property existingSecert is not allowed"),
    ({"dashboard": {"ingress": {"hosts": ["a"]}}},
     "- dashboard.ingress: Additional property hosts is not allowed"),
    ({"dashboard": {"service": {"type": "ExternalName"}}}, "- dashboard.service.type: "),
    ({"dashboard": {"service": {"port": 0}}}, "- dashboard.service.port: Must be greater"),
    ({"dashboard": {"ingress": {"pathType": "prefix"}}}, "- dashboard.ingress.pathType: "),
    ({"dashboard": {"ingress": {"path": "queues"}}}, "- dashboard.ingress.path: Does not match"),
    ({"dashboard": {"allowActions": "true"}},
     "- dashboard.allowActions: Invalid type. Expected: boolean, given: string"),
    ({"dashboard": {"ingress": {"tls": [{"host": "a"}]}}},
     "- dashboard.ingress.tls.0: Additional property host is not allowed"),
])
def test_schema_rejects_dashboard_typos(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        render(values)
