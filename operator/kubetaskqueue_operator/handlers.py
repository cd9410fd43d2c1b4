"""kopf handlers: thin glue between kopf and reconcile.py.

One daemon per WorkerPool runs a round every ``spec.pollSeconds`` (a daemon,
not a timer, because kopf timers have a fixed interval and ours is per object;
the daemon's ``body`` is kopf's live view, so spec edits apply on the next round).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from kubetaskqueue_operator.reconcile import Deps, PoolMemory, RetryLater, pool_ref, reconcile
from kubetaskqueue_operator.spec import GROUP, PLURAL, VERSION

FINALIZER = "kubetaskqueue.io/operator"
METRICS_PORT_ENV = "KUBETASKQUEUE_OPERATOR_METRICS_PORT"


def default_deps() -> Deps:
    """Real dependencies: a lightkube client, the core's Redis reader, metrics."""
    from kubetaskqueue_operator.kube import ClientKube
    from kubetaskqueue_operator.metrics import make_metrics
    from kubetaskqueue_operator.queue import RedisQueueReader

    port = os.environ.get(METRICS_PORT_ENV)
    return Deps(
        kube=ClientKube(),
        read_queue=RedisQueueReader(),
        metrics=make_metrics(int(port) if port else None),
    )


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # We post our own scale Events; kopf should only mirror warnings and errors.
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # No cluster-wide watch of namespaces and CRDs: the operator's RBAC stays namespaced.
    settings.scanning.disabled = True
    # At most one active operator is ensured by the coordination Lease (leader.py).
    settings.peering.standalone = True
    if "deps" not in memo:  # main() injects them; `kopf run -m` does not
        memo["deps"] = default_deps()


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscale", cancellation_timeout=10.0)
def autoscale(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile one WorkerPool every pollSeconds until it is deleted or the operator stops."""
    deps: Deps = memo["deps"]
    mem: PoolMemory = memo.setdefault("pool", PoolMemory())  # per-object memo
    while not stopped:
        try:
            wait_s = reconcile(deps, pool_ref(body), body, mem)
        except RetryLater as exc:
            # kopf restarts the daemon after the delay; the condition is already set.
            raise kopf.TemporaryError(str(exc), delay=exc.delay_s) from exc
        stopped.wait(wait_s)
