"""What `helm template` produces: security defaults, probes, replicas, RBAC, alerts, toggles."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from chartrender import (
    CHART,
    NAMESPACE,
    POD_KINDS,
    RELEASE,
    TOGGLES,
    HelmError,
    container,
    env,
    find,
    notes,
    one,
    pod_spec,
    render,
    secret_file,
)
from kubetaskqueue_operator.kube import REQUIRED_PERMISSIONS

WORKER = f"{RELEASE}-kubetaskqueue-worker"
OPERATOR = f"{RELEASE}-kubetaskqueue-operator"
SECRET = f"{RELEASE}-kubetaskqueue-redis"


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_every_pod_is_locked_down_and_requests_resources(toggle: str) -> None:
    pods = [o for o in render(TOGGLES[toggle]) if o["kind"] in POD_KINDS]
    assert len(pods) >= 4
    for obj in pods:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert c["resources"]["requests"]["cpu"], where
            assert c["resources"]["requests"]["memory"], where


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_every_object_is_namespaced_and_labelled(toggle: str) -> None:
    for obj in render(TOGGLES[toggle]):
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE, meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/name"] == "kubetaskqueue"
        assert meta["labels"]["app.kubernetes.io/component"]
        assert len(meta["name"]) <= 63


def test_the_worker_prefetch_is_the_workers_own_default_unless_set() -> None:
    """null (the default) leaves KUBETASKQUEUE_PREFETCH unset: the worker takes one a slot,
    at least 16. 0 (off) is a value, not a missing one."""
    def prefetch_env(values: dict) -> object:  # type: ignore[type-arg]
        return env(container(one(render(values), "Deployment", WORKER))).get(
            "KUBETASKQUEUE_PREFETCH")

    assert prefetch_env({}) is None
    assert prefetch_env({"worker": {"prefetch": 0}}) == "0"
    assert prefetch_env({"worker": {"prefetch": 48}}) == "48"


def test_worker_deployment_runs_the_app_with_env_probes_and_grace() -> None:
    worker = one(render(), "Deployment", WORKER)
    c = container(worker)
    assert c["command"] == ["kubetaskqueue", "worker", "kubetaskqueue_example:manager"]
    variables = env(c)
    assert "KUBETASKQUEUE_REDIS_URL" not in variables
    assert secret_file(worker, "KUBETASKQUEUE_REDIS_URL_FILE") == {"name": SECRET, "key": "url"}
    assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["KUBETASKQUEUE_NAMESPACE"] == "kubetaskqueue"
    assert variables["KUBETASKQUEUE_NUM_WORKERS"] == "5"
    assert variables["KUBETASKQUEUE_LEASE_TTL_S"] == "30"
    assert variables["KUBETASKQUEUE_SHUTDOWN_GRACE_S"] == "25"
    [port] = c["ports"]
    assert port == {"name": "metrics", "containerPort": 9100}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    grace = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace > 25 and grace >= 30


def test_termination_grace_follows_the_shutdown_grace() -> None:
    worker = one(render({"worker": {"shutdownGraceSeconds": 120}}), "Deployment", WORKER)
    assert pod_spec(worker)["terminationGracePeriodSeconds"] == 130
    assert env(container(worker))["KUBETASKQUEUE_SHUTDOWN_GRACE_S"] == "120"


def test_own_worker_image_and_app() -> None:
    objs = render(TOGGLES["own worker image"])
    c = container(one(objs, "Deployment", WORKER))
    assert c["image"] == "registry.example/myapp:1.2.3"
    assert c["command"] == ["kubetaskqueue", "worker", "myapp.tasks:manager"]
    assert "PYTHONPATH" not in env(c)
    assert not find(objs, "ConfigMap", f"{WORKER}-example-app")
    # Operator and exporter keep the kubetaskqueue image.
    assert container(one(objs, "Deployment", OPERATOR))["image"].startswith(
        "ghcr.io/kubetaskqueue/kubetaskqueue:")


def test_worker_replicas_only_on_install_while_the_operator_scales() -> None:
    assert one(render(), "Deployment", WORKER)["spec"]["replicas"] == 1
    # An upgrade that cannot read the live count (helm template, dry runs) leaves it out,
    # so Helm never resets what the operator chose.
    upgraded = one(render(upgrade=True), "Deployment", WORKER)
    assert "replicas" not in upgraded["spec"]
    assert "replicas" not in one(render({"worker": {"replicas": None}}), "Deployment",
                                 WORKER)["spec"]
    # Without the operator nothing else scales it: Helm owns replicas on every render.
    off = {"operator": {"enabled": False}, "worker": {"replicas": 3}}
    assert one(render(off, upgrade=True), "Deployment", WORKER)["spec"]["replicas"] == 3


def test_worker_replicas_come_from_the_live_deployment_on_a_real_upgrade() -> None:
    # Offline rendering cannot run lookup; check the template reads it and uses it.
    text = (CHART / "templates" / "worker-deployment.yaml").read_text()
    assert 'lookup "apps/v1" "Deployment" .Release.Namespace $name' in text
    assert "replicas: {{ $live.spec.replicas }}" in text


def test_operator_is_one_recreated_replica_with_lease_and_health() -> None:
    op = one(render(), "Deployment", OPERATOR)
    assert op["spec"]["replicas"] == 1
    assert op["spec"]["strategy"] == {"type": "Recreate"}
    c = container(op)
    assert c["command"] == ["kubetaskqueue-operator"]
    assert f"--lease-name={OPERATOR}" in c["args"]
    assert "--metrics-port=9090" in c["args"]
    assert env(c)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert pod_spec(op)["serviceAccountName"] == OPERATOR


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_operator_rbac_is_exactly_the_documented_verbs() -> None:
    objs = render()
    role = one(objs, "Role", OPERATOR)
    assert granted(role) == REQUIRED_PERMISSIONS
    names = {tuple(r["resources"]): r.get("resourceNames") for r in role["rules"]}
    assert names[("secrets",)] == [SECRET]
    assert [r.get("resourceNames") for r in role["rules"] if r["resources"] == ["leases"]] == [
        None, [OPERATOR]]
    binding = one(objs, "RoleBinding", OPERATOR)
    assert binding["roleRef"]["name"] == OPERATOR
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert not find(objs, "ClusterRole") and not find(objs, "ClusterRoleBinding")


def test_the_release_owns_the_operators_lease_and_leaves_its_spec_alone() -> None:
    objs = render()
    lease = one(objs, "Lease")
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["metadata"]["name"] == OPERATOR
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert f"--lease-name={OPERATOR}" in container(one(objs, "Deployment", OPERATOR))["args"]
    # A plain release object (no hook, no keep policy), so `helm uninstall` deletes it.
    assert not (lease["metadata"].get("annotations") or {})
    # No spec: the operator writes holder and renewTime. Every render is this same empty
    # object, so Helm's three-way patch on upgrade has no spec field to change or remove.
    assert set(lease) == {"apiVersion", "kind", "metadata"}
    assert one(render(upgrade=True), "Lease") == lease
    # The operator may get and update exactly this Lease (and create one: kube.py's list).
    role = one(objs, "Role", OPERATOR)
    named = [r for r in role["rules"] if r.get("resourceNames") == [OPERATOR]]
    assert [(r["apiGroups"], r["resources"], r["verbs"]) for r in named] == [
        (["coordination.k8s.io"], ["leases"], ["get", "update"])]
    assert not find(render(TOGGLES["operator.enabled=false"]), "Lease")


def test_workerpool_targets_the_worker_deployment_and_the_url_secret() -> None:
    pool = one(render({"workerPool": {"topics": ["email"], "maxReplicas": 30}}), "WorkerPool")
    spec = pool["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": WORKER}
    assert spec["redis"] == {"urlSecretRef": {"name": SECRET, "key": "url"},
                             "keyPrefix": "kubetaskqueue"}
    assert spec["topics"] == ["email"] and spec["maxReplicas"] == 30


def test_exporter_is_a_single_copy_serving_queue_state() -> None:
    objs = render({"exporter": {"topics": ["a", "b"]}})
    exporter = one(objs, "Deployment", f"{RELEASE}-kubetaskqueue-exporter")
    assert exporter["spec"]["replicas"] == 1
    assert exporter["spec"]["strategy"] == {"type": "Recreate"}
    c = container(exporter)
    assert c["command"] == ["kubetaskqueue", "exporter", "--http-port=9100"]
    assert c["args"] == ["--topic=a", "--topic=b"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = one(objs, "Service", f"{RELEASE}-kubetaskqueue-exporter")
    assert service["spec"]["ports"][0]["name"] == "metrics"
    assert not find(render({"exporter": {"enabled": False}}), "Deployment",
                    f"{RELEASE}-kubetaskqueue-exporter")


def test_metrics_services_cover_workers_exporter_and_operator() -> None:
    services = find(render(), "Service")
    with_metrics = {s["metadata"]["labels"]["app.kubernetes.io/component"]
                    for s in services if s["spec"]["ports"][0]["name"] == "metrics"}
    assert with_metrics == {"worker", "exporter", "operator"}
    worker = next(s for s in services if s["metadata"]["name"] == f"{WORKER}-metrics")
    assert worker["spec"]["publishNotReadyAddresses"] is True


def test_bundled_redis_is_persistent_noeviction_with_a_generated_password() -> None:
    objs = render()
    sts = one(objs, "StatefulSet", SECRET)
    assert sts["spec"]["replicas"] == 1
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    conf = one(objs, "ConfigMap", SECRET)["data"]["redis.conf"].splitlines()
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf
    assert "include /run/redis-auth/auth.conf" in conf
    c = container(sts)
    assert c["command"] == ["sh", "/etc/redis/start.sh"]
    assert "env" not in c
    assert redis_password_secret(sts) == SECRET
    secret = one(objs, "Secret", SECRET)
    assert set(secret["data"]) == {"redis-password", "url"}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Generated once: the template reuses the live Secret's password (lookup).
    text = (CHART / "templates" / "redis-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in text
    no_pvc = one(render(TOGGLES["redis.persistence off"]), "StatefulSet", SECRET)
    assert "volumeClaimTemplates" not in no_pvc["spec"]
    assert {"name": "data", "emptyDir": {}} in pod_spec(no_pvc)["volumes"]


def redis_password_secret(sts: dict[str, Any]) -> str:
    """The Secret whose redis-password the bundled Redis mounts for start.sh."""
    [mount] = [m for m in container(sts)["volumeMounts"] if m["mountPath"] == "/etc/redis-auth"]
    [volume] = [v for v in pod_spec(sts)["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["items"] == [{"key": "redis-password", "path": "redis-password"}]
    return str(volume["secret"]["secretName"])


def test_external_redis_url_and_existing_secret() -> None:
    objs = render(TOGGLES["externalRedis.url"])
    assert not find(objs, "StatefulSet")
    [secret] = find(objs, "Secret")
    assert set(secret["data"]) == {"url"}
    assert "helm.sh/resource-policy" not in (secret["metadata"].get("annotations") or {})
    objs = render(TOGGLES["externalRedis.existingSecret"])
    assert not find(objs, "Secret") and not find(objs, "StatefulSet")
    assert secret_file(one(objs, "Deployment", WORKER), "KUBETASKQUEUE_REDIS_URL_FILE") == {
        "name": "my-redis", "key": "uri"}
    assert one(objs, "WorkerPool")["spec"]["redis"]["urlSecretRef"] == {"name": "my-redis",
                                                                        "key": "uri"}
    role = one(objs, "Role", OPERATOR)
    assert [r["resourceNames"] for r in role["rules"] if r["resources"] == ["secrets"]] == [
        ["my-redis"]]
    objs = render(TOGGLES["redis.auth.existingSecret"])
    assert not find(objs, "Secret")
    assert redis_password_secret(one(objs, "StatefulSet")) == "my-redis-auth"


@pytest.mark.parametrize(("values", "message"), [
    ({"redis": {"enabled": False}}, "no Redis"),
    ({"externalRedis": {"url": "redis://x:6379/0"}}, "choose one"),
    ({"redis": {"enabled": False}, "externalRedis": {"url": "redis://x", "existingSecret": "s"}},
     "give one"),
])
def test_redis_choice_mistakes_fail_with_a_clear_message(values: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)


def test_operator_disabled_leaves_no_operator_pool_or_hook() -> None:
    objs = render(TOGGLES["operator.enabled=false"])
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objs}
    assert "operator" not in components and "uninstall" not in components
    assert not find(objs, "WorkerPool")
    assert one(objs, "Deployment", WORKER)["spec"]["replicas"] == 1


def test_service_monitor_scrapes_the_metrics_ports() -> None:
    assert not find(render(), "ServiceMonitor")
    sm = one(render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"r": "p"}}}}),
             "ServiceMonitor")
    assert sm["metadata"]["labels"]["r"] == "p"
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics",
                                        "interval": "30s"}]
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE


def test_prometheus_rule_is_the_alerts_file_unchanged() -> None:
    assert not find(render(), "PrometheusRule")
    rule = one(render(TOGGLES["metrics.prometheusRule.enabled"]), "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"] == alerts
    # Prometheus' own templates reach Prometheus unrendered by Helm.
    summaries = [r["annotations"]["summary"] for r in rule["spec"]["groups"][0]["rules"]]
    assert "Tasks of topic {{ $labels.topic }} are dying" in summaries


def test_network_policies_fence_redis_and_the_components() -> None:
    assert {p["metadata"]["name"] for p in find(render(), "NetworkPolicy")} == {
        SECRET, f"{RELEASE}-kubetaskqueue-components"}
    assert not find(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
    objs = render({"networkPolicy": {"redisFrom": [{"namespaceSelector": {}}]}})
    redis = one(objs, "NetworkPolicy", SECRET)
    [rule] = redis["spec"]["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert {"podSelector": {"matchLabels": {f"{SECRET}-client": "true"}}} in rule["from"]
    assert {"namespaceSelector": {}} in rule["from"]
    assert len(find(objs, "NetworkPolicy")) == 2
    # Without the bundled Redis there is nothing to fence there.
    assert not find(render(TOGGLES["externalRedis.url"]), "NetworkPolicy", SECRET)


def test_pod_disruption_budget_for_workers() -> None:
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    assert not find(render({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")


def test_helm_test_hook_enqueues_and_waits() -> None:
    [pod] = [o for o in render() if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = container(pod)
    assert c["command"] == ["kubetaskqueue", "enqueue", "example",
                            '{"message": "hello from helm test"}', "--wait", "120"]
    assert secret_file(pod, "KUBETASKQUEUE_REDIS_URL_FILE")["name"] == SECRET
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_say_how_to_enqueue_and_watch_scaling() -> None:
    text = notes()
    assert f"exec deploy/{WORKER} -- \\\n    kubetaskqueue enqueue example" in text
    assert f"get workerpool {WORKER} -w" in text
    assert f"helm test {RELEASE}" in text
