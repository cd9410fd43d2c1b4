"""Pre-delete hook of the chart: delete this release's WorkerPools while the operator runs.

Helm deletes a release's Deployments before its custom resources, so without this
hook the operator would be gone when the WorkerPools are deleted and they would stay
Terminating forever on its finalizer. The operator, still running, stops each pool's
daemon and removes the finalizer. Pools still present after TIMEOUT_S (no operator
running, e.g. it crashed) get the finalizer removed here, so uninstall never hangs.

API errors are retried until DEADLINE_S; then the hook says what it could not do and
how to finish it by hand, and still exits 0: a failed pre-delete hook would abort
`helm uninstall` (the release stays "uninstalling"), which helps nobody. Helm prints
this output (helm.sh/hook-output-log-policy). A pod that never starts cannot say
anything: the Job's activeDeadlineSeconds fails it, and docs/chart.md says what then.

Runs in the kubetaskqueue image (``python -c``; lightkube comes with the operator).
Environment: POD_NAMESPACE, POOL_SELECTOR (label selector), TIMEOUT_S, DEADLINE_S.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

GROUP, VERSION, PLURAL = "kubetaskqueue.io", "v1alpha1", "workerpools"
FINALIZER = "kubetaskqueue.io/operator"
POLL_S = 2.0


def _names(api: Any, namespace: str, selector: str) -> list[str]:
    found = api.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=selector
    )
    return sorted(item["metadata"]["name"] for item in found.get("items", []))


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status", None)  # lightkube's ApiError: a Status with .code
    return getattr(status, "code", status)


def delete_pools(
    api: Any,
    namespace: str,
    selector: str,
    force_at: float,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Delete the pools, wait until ``force_at`` (a ``clock()`` time) for the operator to
    release them, then remove its finalizer from any still there; return those forced."""
    for name in _names(api, namespace, selector):
        say(f"deleting WorkerPool {namespace}/{name}")
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except Exception as exc:
            if _status(exc) != 404:
                raise
    remaining = _names(api, namespace, selector)
    while remaining and clock() < force_at:
        sleep(POLL_S)
        remaining = _names(api, namespace, selector)
    forced = []
    for name in remaining:
        pool = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        finalizers = pool["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            continue
        say(f"WorkerPool {namespace}/{name} still there (is the operator running?): "
            f"removing finalizer {FINALIZER}")
        try:
            api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name,
                {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER]}},
                _content_type="application/merge-patch+json",
            )
        except Exception as exc:
            if _status(exc) != 404:
                raise
        forced.append(name)
    return forced


def run(
    make_api: Callable[[], Any],
    namespace: str,
    selector: str,
    timeout_s: float,
    deadline_s: float,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """``delete_pools``, retried on any error for at most ``deadline_s``. False: it gave up
    and said what is left to do; the caller exits 0 all the same."""
    start = clock()
    while True:
        try:
            delete_pools(make_api(), namespace, selector, start + timeout_s, say, sleep, clock)
            say("no WorkerPool of this release is left")
            return True
        except Exception as exc:
            if clock() + POLL_S > start + deadline_s:
                say(f"gave up after {deadline_s:g}s: {exc}")
                say(f"helm uninstall goes on; a WorkerPool of this release that still has "
                    f"the finalizer {FINALIZER} stays Terminating. Find and release it:\n"
                    f"  kubectl -n {namespace} get workerpools -l {selector}\n"
                    f"  kubectl -n {namespace} patch workerpool NAME --type=merge "
                    """-p '{"metadata":{"finalizers":null}}'""")
                return False
            say(f"{exc}; retrying in {POLL_S:g}s")
            sleep(POLL_S)


class LightkubePools:
    """The four WorkerPool calls ``delete_pools`` makes, on a lightkube Client."""

    def __init__(self) -> None:
        from lightkube import Client
        from lightkube.generic_resource import create_namespaced_resource

        self.client = Client()  # in a pod: the hook's service account
        self.pool = create_namespaced_resource(GROUP, VERSION, "WorkerPool", PLURAL)

    def list_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                      plural: str, label_selector: str) -> dict[str, Any]:
        found = self.client.list(self.pool, namespace=namespace, labels=_labels(label_selector))
        return {"items": [{"metadata": {"name": p.metadata.name}} for p in found]}

    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                        plural: str, name: str) -> None:
        self.client.delete(self.pool, name, namespace=namespace)

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                     plural: str, name: str) -> dict[str, Any]:
        pool = self.client.get(self.pool, name, namespace=namespace)
        return {"metadata": {"finalizers": list(pool.metadata.finalizers or [])}}

    def patch_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                       plural: str, name: str, body: dict[str, Any],
                                       _content_type: str) -> None:
        from lightkube.types import PatchType

        self.client.patch(self.pool, name, body, namespace=namespace, patch_type=PatchType.MERGE)


def _labels(selector: str) -> dict[str, str]:
    """``a=b,c=d`` (the chart's selector form) as lightkube's label filter."""
    return dict(part.split("=", 1) for part in selector.split(",") if part)


def main() -> int:
    run(
        LightkubePools,
        os.environ["POD_NAMESPACE"],
        os.environ["POOL_SELECTOR"],
        float(os.environ.get("TIMEOUT_S", "60")),
        float(os.environ.get("DEADLINE_S", "90")),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
