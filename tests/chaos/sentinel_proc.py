"""A Sentinel-managed Redis for the failover scenario: two data nodes (a primary and a
replica) and three sentinels (quorum 2), every one a child of the chaos ``RedisFleet``
so the fixture kills them all at teardown, pass or fail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from probe import wait_until
from redis_proc import RedisFleet, RedisProc, redis_binary

SERVICE = "jobs"
DOWN_AFTER_MS = 1000  # a killed primary is "objectively down" after ~1 s
FAILOVER_TIMEOUT_MS = 4000  # also the pause between two failovers of the same service
# A full sync starts at once instead of waiting 5 s for more replicas to share it.
NODE_ARGS = ("--repl-diskless-sync-delay", "0")


class SentinelProc(RedisProc):
    """``redis-server <conf> --sentinel``; sentinel rewrites its config file, so each
    one gets its own in its own directory."""

    def __init__(self, workdir: Path, number: int, *, tls: bool = False) -> None:
        super().__init__(workdir, appendonly=False, tls=tls)
        self.conf = workdir / "sentinel.conf"
        self.myid = f"{number + 1:040x}"  # fixed, so the others can be told about it

    def configure(self, primary: RedisProc, replicas: list[RedisProc], quorum: int,
                  peers: list[SentinelProc]) -> None:
        """What the sentinels would learn over ~2-10 s (the replicas from INFO, each
        other from the hello channel), written up front so the set is ready at once."""
        known = "".join(f"sentinel known-sentinel {SERVICE} 127.0.0.1 {p.port} {p.myid}\n"
                        for p in peers if p is not self)
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"logfile {self.workdir / 'sentinel.log'}\nsentinel myid {self.myid}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
            + "".join(f"sentinel known-replica {SERVICE} 127.0.0.1 {r.port}\n"
                      for r in replicas) + known)

    def command(self) -> list[str]:
        return [redis_binary(), str(self.conf), "--sentinel"]

    def master(self) -> int | None:
        """The port this sentinel names as the service's primary (None: cannot tell)."""
        try:
            addr: Any = self.client().sentinel_get_master_addr_by_name(SERVICE)
        except redis.RedisError:
            return None
        return None if addr is None else int(addr[1])

    def view(self) -> dict[str, int]:
        """Known replicas and other sentinels of the service."""
        info: Any = self.client().sentinel_master(SERVICE)
        return {"replicas": int(info["num-slaves"]),
                "sentinels": int(info["num-other-sentinels"])}

    def log(self) -> str:
        path = self.workdir / "sentinel.log"
        return path.read_text(errors="replace") if path.exists() else ""


def role(node: RedisProc) -> tuple[str, int | None, bool]:
    """(role, port of its primary, replication link up) as the node itself reports."""
    info = node.client().info("replication")
    if info["role"] == "master":
        return "master", None, True
    return "slave", int(info["master_port"]), info.get("master_link_status") == "up"


class SentinelSet:
    """Two data nodes (three with ``spare``) and three sentinels; ``node_args`` go to
    every data node (e.g. ``--min-replicas-to-write 1``: any may become primary).

    The spare node has a low replica priority, so Sentinel always promotes one of the
    first two and the scenario's steps stay the same: the spare only keeps a replica
    next to whichever of them is primary."""

    def __init__(self, fleet: RedisFleet, *node_args: str, quorum: int = 2,
                 spare: bool = False) -> None:
        node_args = (*NODE_ARGS, *node_args)
        first = fleet.start("node0", *node_args)
        follow = ("--replicaof", "127.0.0.1", str(first.port))
        self.nodes = [first, fleet.start("node1", *follow, *node_args)]
        if spare:
            self.nodes.append(fleet.start("node2", *follow, "--replica-priority", "200",
                                          *node_args))
        replicas = self.nodes[1:]
        wait_until(lambda: all(role(r) == ("slave", first.port, True) for r in replicas), 30,
                   what="replicas in sync")
        if "--min-replicas-to-write" in node_args:
            # A replica's link is up before the primary has its first REPLCONF ACK; till
            # then it counts no good replica and refuses writes (NOREPLICAS).
            needed = int(node_args[node_args.index("--min-replicas-to-write") + 1])
            wait_until(lambda: int(first.client().info("replication").get(
                "min_slaves_good_slaves", 0)) >= needed, 30, what="the primary's good replicas")
        self.sentinels = [SentinelProc(fleet.root / f"sentinel{n}", n) for n in range(3)]
        for sentinel in self.sentinels:
            sentinel.configure(first, replicas, quorum, self.sentinels)
            fleet.servers.append(sentinel)  # killed with the rest at teardown
            sentinel.start()
        # A forced failover needs a known replica; a real one needs every sentinel to
        # know the others (they find each other through the primary's hello channel).
        wait_until(lambda: all(s.view() == {"replicas": len(replicas), "sentinels": 2}
                               for s in self.sentinels), 30, 0.1, what="sentinels agree")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def node(self, port: int) -> RedisProc:
        return next(n for n in self.nodes if n.port == port)

    def primary(self) -> RedisProc:
        """The node a majority of sentinels name as primary, once it says so too: right
        after a failover, sentinels that have not heard of it yet still name the old
        primary, which may have rejoined as a replica by then."""
        return self.node(wait_until(self._agreed_primary, 30, what="sentinels name a primary"))

    def _agreed_primary(self) -> int | None:
        ports = [s.master() for s in self.sentinels]
        best = max(set(ports), key=ports.count)
        if best is None or ports.count(best) < 2:
            return None
        return best if role(self.node(best))[0] == "master" else None

    def wait_replicated(self, timeout_s: float = 40.0) -> RedisProc:
        """Until the primary the sentinels name has the other node as its replica, link
        up, whichever node that is by then (Sentinel may fail over once more under load,
        flapping); returns the primary."""
        def replicated() -> int | None:
            port = self._agreed_primary()
            if port is None:
                return None
            other = self.other(self.node(port))
            return port if role(other) == ("slave", port, True) else None
        return self.node(wait_until(replicated, timeout_s, 0.05,
                                    what="the primary and its replica in sync"))

    def other(self, node: RedisProc) -> RedisProc:
        """The other one of the first two nodes (the spare is never promoted)."""
        return next(n for n in self.nodes[:2] if n is not node)

    def force_failover(self) -> float:
        """``SENTINEL FAILOVER``: promote the replica without asking the others (no
        quorum needed). Returns the monotonic time the command was sent."""
        at = time.monotonic()
        self.sentinels[0].client().execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "FAILOVER", SERVICE)
        return at

    def wait_primary(self, node: RedisProc, timeout_s: float = 30.0) -> float:
        """Until every sentinel names ``node`` and it reports role master; returns the time."""
        wait_until(lambda: all(s.master() == node.port for s in self.sentinels)
                   and role(node)[0] == "master", timeout_s, what=f"{node.port} promoted")
        return time.monotonic()

    def settle(self, timeout_s: float = 10.0) -> bool:
        """Wait (at most ``timeout_s``) until no sentinel has a failover of the service in
        progress: a node restarted while one still runs can be picked by its next
        attempt. False if one is still going (a flapping sentinel); callers go on, and
        check what they need on whichever node the sentinels name in the end."""
        def over() -> bool:
            masters: list[Any] = [s.client().sentinel_master(SERVICE) for s in self.sentinels]
            return not any("failover" in str(m["flags"]) for m in masters)
        deadline = time.monotonic() + timeout_s
        while not over():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def wait_replica(self, node: RedisProc, of: RedisProc, timeout_s: float = 40.0) -> float:
        """Until ``node`` replicates ``of`` with its link up (the old primary after a
        failover: sentinel reconfigures it some seconds later); returns the time."""
        try:
            wait_until(lambda: role(node) == ("slave", of.port, True), timeout_s, 0.05,
                       what=f"{node.port} replica of {of.port}")
        except AssertionError as exc:  # say where the node and the sentinels stand
            masters = [s.master() for s in self.sentinels]
            raise AssertionError(f"{exc}: its role is {role(node)}, the sentinels name "
                                 f"{masters} as primary") from None
        return time.monotonic()

    def sentinel_events(self, name: str) -> int:
        """How many times the first sentinel logged ``name`` (e.g. ``+switch-master``)."""
        return self.sentinels[0].log().count(name)
