"""`helm uninstall` leaves no WorkerPool stuck on the operator's finalizer.

Helm deletes Deployments (the operator) before custom resources, and kopf keeps a
finalizer on every pool it runs a daemon for. The chart's pre-delete hook deletes the
release's pools while the operator still runs; pools still there after the timeout
lose the finalizer. Here: the rendered hook, and its script against a fake API.
"""

from __future__ import annotations

from typing import Any

import pytest
from chartrender import (
    CHART,
    RELEASE,
    container,
    env,
    find,
    load_file_module,
    one,
    pod_spec,
    render,
)

HOOK = f"{RELEASE}-kubetaskqueue-uninstall"
FINALIZER = "kubetaskqueue.io/operator"


def _script() -> Any:
    return load_file_module("delete_workerpools", CHART / "files" / "delete_workerpools.py")


def test_hook_objects_run_before_delete_with_their_own_narrow_account() -> None:
    hooks = [o for o in render() if (o["metadata"].get("annotations") or {}).get(
        "helm.sh/hook") == "pre-delete"]
    assert sorted(o["kind"] for o in hooks) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    weight = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in hooks}
    assert weight["ServiceAccount"] < weight["Job"] and weight["Role"] < weight["Job"]
    assert weight["RoleBinding"] < weight["Job"]
    for o in hooks:
        policy = o["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
        assert set(policy.split(",")) == {"before-hook-creation", "hook-succeeded"}
    role = one(hooks, "Role")
    assert role["rules"] == [{"apiGroups": ["kubetaskqueue.io"], "resources": ["workerpools"],
                              "verbs": ["list", "get", "delete", "patch"]}]
    job = one(hooks, "Job")
    assert pod_spec(job)["serviceAccountName"] == HOOK
    assert one(hooks, "RoleBinding")["subjects"][0]["name"] == HOOK


def test_hook_job_runs_the_script_on_this_releases_pools() -> None:
    job = one(render(), "Job", HOOK)
    c = container(job)
    script = (CHART / "files" / "delete_workerpools.py").read_text()
    assert c["command"] == ["python", "-c", script]
    variables = env(c)
    assert variables["POOL_SELECTOR"] == (
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=kubetaskqueue")
    assert variables["TIMEOUT_S"] == "60"
    # The selector matches the release's WorkerPool.
    pool = one(render(), "WorkerPool")
    for term in variables["POOL_SELECTOR"].split(","):
        key, value = term.split("=")
        assert pool["metadata"]["labels"][key] == value
    assert job["spec"]["activeDeadlineSeconds"] > 60


def test_no_hook_without_the_operator_or_when_turned_off() -> None:
    assert not find(render({"operator": {"enabled": False}}), "Job")
    assert not find(render({"uninstallHook": {"enabled": False}}), "Job")


class FakePools:
    """CustomObjectsApi for WorkerPools; ``operator_running`` releases deleted pools."""

    def __init__(self, names: list[str], operator_running: bool) -> None:
        self.pools = {n: {"metadata": {"name": n, "finalizers": [FINALIZER, "other/keep"]}}
                      for n in names}
        self.deleting: set[str] = set()
        self.operator_running = operator_running
        self.calls: list[str] = []

    def _gone_if_released(self, name: str) -> None:
        if name in self.deleting and not self.pools[name]["metadata"]["finalizers"]:
            del self.pools[name]

    def list_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str,
                                      label_selector: str) -> dict[str, Any]:
        assert (group, version, plural, ns) == ("kubetaskqueue.io", "v1alpha1",
                                                "workerpools", "jobs")
        assert label_selector == "app.kubernetes.io/instance=demo"
        self.calls.append("list")
        if self.operator_running:  # kopf stops the daemon and drops its finalizer
            for name in list(self.deleting & set(self.pools)):
                fins = self.pools[name]["metadata"]["finalizers"]
                self.pools[name]["metadata"]["finalizers"] = [f for f in fins if f != FINALIZER]
        return {"items": list(self.pools.values())}

    def delete_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str,
                                        name: str) -> None:
        self.calls.append(f"delete {name}")
        self.deleting.add(name)

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str,
                                     name: str) -> dict[str, Any]:
        return self.pools[name]

    def patch_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str,
                                       name: str, body: dict[str, Any],
                                       _content_type: str) -> None:
        assert _content_type == "application/merge-patch+json"
        self.calls.append(f"patch {name}")
        self.pools[name]["metadata"]["finalizers"] = body["metadata"]["finalizers"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, s: float) -> None:
        self.now += s


@pytest.mark.parametrize("operator_running", [True, False])
def test_script_deletes_pools_and_only_forces_when_the_operator_is_gone(
        operator_running: bool) -> None:
    delete_pools = _script().delete_pools
    api, clock = FakePools(["a", "b"], operator_running), Clock()
    # "other/keep" is someone else's finalizer: pools keep it, so they stay listed.
    forced = delete_pools(api, "jobs", "app.kubernetes.io/instance=demo", 60.0,
                          say=lambda _: None, sleep=clock.sleep, clock=lambda: clock.now)
    assert api.calls[:3] == ["list", "delete a", "delete b"]
    if operator_running:
        assert forced == [] and not any(c.startswith("patch") for c in api.calls)
    else:
        assert forced == ["a", "b"] and clock.now >= 60.0
    for pool in api.pools.values():
        assert pool["metadata"]["finalizers"] == ["other/keep"]


def test_script_with_no_pools_returns_at_once() -> None:
    api, clock = FakePools([], operator_running=False), Clock()
    assert _script().delete_pools(api, "jobs", "app.kubernetes.io/instance=demo", 60.0,
                                  say=lambda _: None, sleep=clock.sleep,
                                  clock=lambda: clock.now) == []
    assert clock.now == 0.0
