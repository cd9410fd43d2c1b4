"""``kubetaskqueue-operator``: run the operator with leader election.

Examples:
  kubetaskqueue-operator                       # namespace from $POD_NAMESPACE (in a pod)
  kubetaskqueue-operator --namespace jobs      # watch WorkerPools in "jobs"
  kubetaskqueue-operator --all-namespaces      # needs the ClusterRole variant of the RBAC
  kubetaskqueue-operator --no-leader-election  # local development, one copy only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetaskqueue_operator.leader import LeaderElector

EXIT_OK = 0
EXIT_RUNTIME = 1  # also: lost the Lease; the pod restarts and campaigns again
EXIT_USAGE = 2

log = logging.getLogger("kubetaskqueue_operator")

EXAMPLES = """examples:
  kubetaskqueue-operator                       # namespace from $POD_NAMESPACE (in a pod)
  kubetaskqueue-operator --namespace jobs      # watch WorkerPools in "jobs"
  kubetaskqueue-operator --no-leader-election  # local development, one copy only
"""


def _env_namespaces() -> list[str]:
    raw = os.environ.get("KUBETASKQUEUE_OPERATOR_NAMESPACES") or os.environ.get("POD_NAMESPACE")
    return [ns.strip() for ns in (raw or "").split(",") if ns.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubetaskqueue-operator",
        description="Scale kubetaskqueue worker Deployments on Redis backlog (WorkerPool CRD).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="namespace to watch; repeatable (env KUBETASKQUEUE_OPERATOR_NAMESPACES, comma "
        "separated, else POD_NAMESPACE)",
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--lease-name", default="kubetaskqueue-operator", help="coordination Lease")
    p.add_argument(
        "--lease-namespace", default=None, help="namespace of the Lease (default: POD_NAMESPACE)"
    )
    p.add_argument("--no-leader-election", action="store_true", help="do not take the Lease")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("KUBETASKQUEUE_OPERATOR_METRICS_PORT") or 0) or None,
        help="serve /metrics on this port (needs prometheus-client)",
    )
    p.add_argument("--health-port", type=int, default=8080, help="kopf liveness /healthz port")
    p.add_argument("--log-json", action="store_true", help="JSON log lines (default off a tty)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    namespaces = args.namespace or _env_namespaces()
    if not namespaces and not args.all_namespaces:
        print(
            "kubetaskqueue-operator: no namespace to watch; pass --namespace NS, set "
            "POD_NAMESPACE, or pass --all-namespaces",
            file=sys.stderr,
        )
        return EXIT_USAGE
    lease_ns = args.lease_namespace or os.environ.get("POD_NAMESPACE") or (namespaces or [""])[0]
    if not args.no_leader_election and not lease_ns:
        print("kubetaskqueue-operator: set --lease-namespace", file=sys.stderr)
        return EXIT_USAGE

    import kopf

    from kubetaskqueue_operator import handlers
    from kubetaskqueue_operator.kube import load_kube_config
    from kubetaskqueue_operator.leader import ClientLeaseApi, LeaderElector

    json_logs = args.log_json or not sys.stderr.isatty()
    kopf.configure(
        verbose=args.verbose, log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.FULL
    )
    if not args.verbose:  # lightkube's HTTP client logs every request at INFO
        logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        load_kube_config()
    except Exception as exc:
        print(f"kubetaskqueue-operator: no Kubernetes credentials: {exc}", file=sys.stderr)
        return EXIT_RUNTIME

    done, lost = threading.Event(), threading.Event()
    elector = None
    if not args.no_leader_election:
        identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        elector = LeaderElector(ClientLeaseApi(lease_ns, args.lease_name), identity)
        # SIGTERM while a standby waits for the Lease: stop waiting and exit 0. (Once kopf
        # runs, its own SIGTERM handler replaces this one.)
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        if not elector.acquire(done):
            return EXIT_OK

    if args.metrics_port:
        os.environ["KUBETASKQUEUE_OPERATOR_METRICS_PORT"] = str(args.metrics_port)
    kopf_args = {
        "standalone": True,
        "clusterwide": args.all_namespaces,
        "namespaces": [] if args.all_namespaces else namespaces,
        "memo": kopf.Memo(deps=handlers.default_deps()),
        "liveness_endpoint": f"http://0.0.0.0:{args.health_port}/healthz",
    }
    with contextlib.suppress(asyncio.CancelledError):  # cancelled: the Lease was lost
        asyncio.run(_operate(kopf_args, elector, lost, done))
    if lost.is_set():
        log.error("lost the leader Lease; exiting so the pod restarts and campaigns again")
        return EXIT_RUNTIME
    if elector is not None:
        elector.release()  # the next operator leads within one retry, not after expiry
    return EXIT_OK


async def _operate(
    kopf_args: dict[str, Any],
    elector: LeaderElector | None,
    lost: threading.Event,
    done: threading.Event,
) -> None:
    """Run kopf until SIGTERM/SIGINT (kopf's own handlers) or until the Lease is lost.

    No ``stop_flag`` for kopf: kopf waits for a threading.Event flag with
    ``run_in_executor(None, flag.wait)``, a thread that only returns once the flag is
    set, and ``asyncio.run`` joins the default executor's threads before it returns. On
    SIGTERM nothing set the flag (main() could only do so after ``kopf.run`` returned),
    so the operator hung until SIGKILL while its lease thread kept renewing the Lease.
    Losing the Lease now cancels the kopf task instead, which kopf handles like a stop.
    """
    import kopf

    holder = None
    if elector is not None:
        loop, operator = asyncio.get_running_loop(), asyncio.current_task()
        assert operator is not None

        def hold() -> None:
            elector.hold(lost, done)
            if lost.is_set():  # stop kopf before another operator may take over
                loop.call_soon_threadsafe(operator.cancel)

        holder = threading.Thread(target=hold, name="lease", daemon=True)
        holder.start()
    try:
        await kopf.operator(**kopf_args)
    finally:
        done.set()
        if holder is not None:
            holder.join()  # a renewal in flight ends before main() releases the Lease


if __name__ == "__main__":
    sys.exit(main())
