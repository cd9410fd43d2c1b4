"""`helm uninstall` leaves no WorkerPool stuck on the operator's finalizer.

Helm deletes Deployments (the operator) before custom resources, and kopf keeps a
finalizer on every pool it runs a daemon for. The chart's pre-delete hook deletes the
release's pools while the operator still runs; pools still there after the timeout
lose the finalizer. A failed hook would abort the uninstall, so the script retries API
errors until its own deadline and then exits 0 saying what is left, and the Job's
deadline (a pod that never starts) comes before Helm's 5-minute wait. Here: the rendered
hook, and its script against a fake API.
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
    notes,
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
    # Helm prints the script's lines, so a user sees what it did or could not do.
    logs = one(hooks, "Job")["metadata"]["annotations"]["helm.sh/hook-output-log-policy"]
    assert set(logs.split(",")) == {"hook-succeeded", "hook-failed"}
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
    assert variables["DEADLINE_S"] == "90"
    # The selector matches the release's WorkerPool.
    pool = one(render(), "WorkerPool")
    for term in variables["POOL_SELECTOR"].split(","):
        key, value = term.split("=")
        assert pool["metadata"]["labels"][key] == value


HELM_DEFAULT_TIMEOUT_S = 300  # `helm uninstall --timeout` 5m0s


@pytest.mark.parametrize("timeout_s", [60, 5, 150])
def test_the_job_gives_up_before_helm_does_and_after_the_script(timeout_s: int) -> None:
    job = one(render({"uninstallHook": {"timeoutSeconds": timeout_s}}), "Job", HOOK)
    script_deadline = int(env(container(job))["DEADLINE_S"])
    assert script_deadline == timeout_s + 30  # the script's own end, its API calls included
    # The pod gets 90 s to be scheduled and pulled before the Job's deadline can cut the
    # script short; a pod that never starts fails the Job before Helm stops waiting.
    assert job["spec"]["activeDeadlineSeconds"] == script_deadline + 90
    assert job["spec"]["activeDeadlineSeconds"] < HELM_DEFAULT_TIMEOUT_S
    assert job["spec"]["backoffLimit"] == 2


def test_notes_say_what_to_do_if_the_hook_job_fails() -> None:
    assert "then `helm uninstall --no-hooks`" in notes()
    assert "--no-hooks" not in notes({"uninstallHook": {"enabled": False}})


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

    def time(self) -> float:
        return self.now


@pytest.mark.parametrize("operator_running", [True, False])
def test_script_deletes_pools_and_only_forces_when_the_operator_is_gone(
        operator_running: bool) -> None:
    delete_pools = _script().delete_pools
    api, clock = FakePools(["a", "b"], operator_running), Clock()
    # "other/keep" is someone else's finalizer: pools keep it, so they stay listed.
    forced = delete_pools(api, "jobs", "app.kubernetes.io/instance=demo", 60.0,
                          say=lambda _: None, sleep=clock.sleep, clock=clock.time)
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
                                  clock=clock.time) == []
    assert clock.now == 0.0


class Flaky(FakePools):
    """The API refuses ``failures`` calls (lists), then answers; None: refuses them all."""

    def __init__(self, failures: int | None, clock: Clock) -> None:
        super().__init__(["a"], operator_running=False)
        self.failures, self.clock = failures, clock

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.failures is None or self.failures > 0:
            if self.failures:
                self.failures -= 1
            self.clock.now += 10.0  # a request that hung until the client's timeout
            raise ConnectionError("connection refused")
        return super().list_namespaced_custom_object(*args, **kwargs)


def test_run_retries_api_errors_then_does_the_job() -> None:
    clock, said = Clock(), []
    api = Flaky(3, clock)
    assert _script().run(lambda: api, "jobs", "app.kubernetes.io/instance=demo", 60.0, 90.0,
                         say=said.append, sleep=clock.sleep, clock=clock.time)
    assert said.count("connection refused; retrying in 2s") == 3
    assert said[-1] == "no WorkerPool of this release is left"
    assert api.pools["a"]["metadata"]["finalizers"] == ["other/keep"]  # forced at 60 s


def test_run_gives_up_by_its_deadline_and_says_what_to_do() -> None:
    clock, said = Clock(), []
    selector = "app.kubernetes.io/instance=demo"
    assert not _script().run(lambda: Flaky(None, clock), "jobs", selector, 60.0, 90.0,
                             say=said.append, sleep=clock.sleep, clock=clock.time)
    assert clock.now <= 90.0 + 10.0  # the deadline, overrun by at most one request
    assert said[-2] == "gave up after 90s: connection refused"
    assert f"kubectl -n jobs get workerpools -l {selector}" in said[-1]
    assert """patch workerpool NAME --type=merge -p '{"metadata":{"finalizers":null}}'""" in (
        said[-1])


def test_main_exits_0_when_it_cannot_even_reach_the_api(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script()

    def no_cluster() -> Any:
        raise RuntimeError("no in-cluster config")

    monkeypatch.setattr(script, "LightkubePools", no_cluster)
    for name, value in {"POD_NAMESPACE": "jobs", "POOL_SELECTOR": "a=b", "TIMEOUT_S": "0",
                        "DEADLINE_S": "0"}.items():
        monkeypatch.setenv(name, value)
    assert script.main() == 0
    assert "gave up after 0s: no in-cluster config" in capsys.readouterr().out
