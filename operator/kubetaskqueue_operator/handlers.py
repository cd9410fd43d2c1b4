"""kopf handlers: thin glue between kopf and reconcile.py.

One daemon per WorkerPool runs a round every ``spec.pollSeconds`` (a daemon,
not a timer, because kopf timers have a fixed interval and ours is per object;
the daemon's ``body`` is kopf's live view, so spec edits apply on the next round).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import kopf

from kubetaskqueue_operator.reconcile import (
    REDIS_UNREACHABLE,
    Deps,
    PoolMemory,
    RetryLater,
    pool_ref,
    reconcile,
)
from kubetaskqueue_operator.spec import GROUP, PLURAL, VERSION

FINALIZER = "kubetaskqueue.io/operator"
METRICS_PORT_ENV = "KUBETASKQUEUE_OPERATOR_METRICS_PORT"
T = TypeVar("T")

log = logging.getLogger(__name__)


def default_deps() -> Deps:
    """Real dependencies: a lightkube client, the core's Redis reader, metrics."""
    from kubetaskqueue_operator.kube import ClientKube
    from kubetaskqueue_operator.metrics import make_metrics
    from kubetaskqueue_operator.queue import RedisQueueReader

    port = os.environ.get(METRICS_PORT_ENV)
    reader = RedisQueueReader()
    return Deps(
        kube=ClientKube(),
        read_queue=reader,
        release_lost=reader.release_lost,
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


# Seconds a round in flight may take to finish once the operator (or the pool) stops,
# before kopf cancels the daemon and the round's thread is left behind.
ROUND_GRACE_S = 5.0


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """Run blocking ``fn`` in a daemon thread and await it.

    Not asyncio.to_thread: executor threads are joined when the loop closes and at
    interpreter exit, so one Redis or API call that hangs would keep the operator from
    exiting. A cancelled caller leaves a daemon thread behind, and the process exits.
    """
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await asyncio.wrap_future(done)


@kopf.daemon(
    GROUP,
    VERSION,
    PLURAL,
    id="autoscale",
    cancellation_backoff=ROUND_GRACE_S,
    cancellation_timeout=1.0,
)
async def autoscale(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Reconcile one WorkerPool every pollSeconds until it is deleted or the operator stops.

    Async, with the blocking round in a daemon thread: the loop wakes the moment kopf
    sets ``stopped``, a round in flight gets ROUND_GRACE_S to finish, and a hung one is
    cancelled without holding up the exit.
    """
    deps: Deps = memo["deps"]
    mem: PoolMemory = memo.setdefault("pool", PoolMemory())  # per-object memo
    pool = pool_ref(body)
    redis_down = False
    while not stopped:
        try:
            wait_s = await in_daemon_thread(
                lambda: reconcile(deps, pool, body, mem), f"autoscale-{pool.name}"
            )
        except RetryLater as exc:
            if exc.reason != REDIS_UNREACHABLE:
                # kopf restarts the daemon after the delay; the condition is already set.
                raise kopf.TemporaryError(str(exc), delay=exc.delay_s) from exc
            # Redis is not reachable (not up yet at install, or gone): say so once per
            # outage, RedisReachable=False says why, and poll on (no kopf error per round).
            if not redis_down:
                log.warning("WorkerPool %s/%s: waiting for %s", pool.namespace, pool.name, exc)
            redis_down, wait_s = True, exc.delay_s
        else:
            if redis_down:
                log.info("WorkerPool %s/%s: Redis is reachable again", pool.namespace, pool.name)
            redis_down = False
        await stopped.wait(wait_s)
