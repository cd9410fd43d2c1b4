"""``kubetaskqueue-operator``: run the operator with leader election.

Examples:
  kubetaskqueue-operator                       # namespace from $POD_NAMESPACE (in a pod)
  kubetaskqueue-operator --namespace jobs      # watch WorkerPools in "jobs"
  kubetaskqueue-operator --all-namespaces      # needs the ClusterRole variant of the RBAC
  kubetaskqueue-operator --no-leader-election  # local development, one copy only
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Sequence

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
    try:
        load_kube_config()
    except Exception as exc:
        print(f"kubetaskqueue-operator: no Kubernetes credentials: {exc}", file=sys.stderr)
        return EXIT_RUNTIME

    stop, lost = threading.Event(), threading.Event()
    elector = None
    if not args.no_leader_election:
        identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        elector = LeaderElector(ClientLeaseApi(lease_ns, args.lease_name), identity)
        if not elector.acquire(stop):
            return EXIT_OK

        def hold() -> None:
            elector.hold(lost, stop)
            stop.set()  # lost the Lease: stop kopf before another operator takes over

        threading.Thread(target=hold, name="lease", daemon=True).start()

    if args.metrics_port:
        os.environ["KUBETASKQUEUE_OPERATOR_METRICS_PORT"] = str(args.metrics_port)
    deps = handlers.default_deps()
    kopf.run(
        standalone=True,
        clusterwide=args.all_namespaces,
        namespaces=[] if args.all_namespaces else namespaces,
        memo=kopf.Memo(deps=deps),
        stop_flag=stop,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
    )
    stop.set()
    if elector is not None and not lost.is_set():
        elector.release()
    if lost.is_set():
        log.error("lost the leader Lease; exiting so the pod restarts and campaigns again")
        return EXIT_RUNTIME
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
