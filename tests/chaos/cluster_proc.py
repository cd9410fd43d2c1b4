"""A local Redis Cluster of redis-server children, and the operations an operator runs on
one: moving a hash slot between masters, and losing a master to a replica."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import redis
from helpers import free_cluster_port
from probe import wait_until
from redis_proc import RedisFleet, RedisProc

# A master unreachable this long is failed over to its replica (cluster-node-timeout).
NODE_TIMEOUT_MS = 1000


@dataclass
class ClusterSet:
    nodes: list[RedisProc]
    client: redis.RedisCluster

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, port: int) -> RedisProc:
        return next(n for n in self.nodes if n.port == port)

    def owner(self, topic: str) -> RedisProc:
        """The master serving ``topic``'s slot, as the cluster itself says now."""
        slot = self.client.keyslot(f"kubetaskqueue:{{{topic}}}:input")
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                owners = node.client().execute_command("CLUSTER", "SLOTS")
            except redis.ConnectionError:
                continue
            for start, end, master, *_ in owners:
                if start <= slot <= end:
                    return self.node(int(master[1]))
        raise AssertionError(f"no live node knows who serves slot {slot}")

    def masters(self) -> list[RedisProc]:
        return [n for n in self.nodes if n.proc is not None
                and n.client().info("replication")["role"] == "master"]

    def migrate(self, topic: str, to: RedisProc, batch: int = 20,
                pause_s: float = 0.05) -> int:
        """Move ``topic``'s slot to ``to`` the way `redis-cli --cluster reshard` does
        (IMPORTING / MIGRATING, MIGRATE in batches, SETSLOT NODE), slowly enough that
        clients run into the half-moved slot; returns the number of keys moved."""
        source = self.owner(topic)
        slot = self.client.keyslot(f"kubetaskqueue:{{{topic}}}:input")
        src, dst = source.client(), to.client()
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, batch):
            src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            time.sleep(pause_s)
        for node in (dst, src):
            node.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        return moved


def start_cluster(fleet: RedisFleet, masters: int = 3, replicas: int = 0) -> ClusterSet:
    """``masters`` x (1 + ``replicas``) nodes joined by `redis-cli --cluster create`."""
    nodes = [fleet.start(f"cluster{i}", "--cluster-enabled", "yes", "--cluster-config-file",
                         "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                         appendonly=False, port=free_cluster_port())
             for i in range(masters * (1 + replicas))]
    subprocess.run(["redis-cli", "--cluster", "create",
                    *[f"127.0.0.1:{n.port}" for n in nodes],
                    "--cluster-replicas", str(replicas), "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port, decode_responses=True)
    cluster = ClusterSet(nodes, client)

    def ready() -> bool:
        infos = [n.client().cluster("info") for n in nodes]
        return all(i.get("cluster_state") == "ok" for i in infos) and len(
            cluster.masters()) == masters
    wait_until(ready, 30, 0.1, what="cluster state ok on every node")
    if replicas:  # a replica must have synced before its master can be failed over
        wait_until(lambda: all(n.client().info("replication").get("master_link_status")
                               == "up" for n in nodes if n not in cluster.masters()),
                   30, 0.1, what="replicas in sync")
    return cluster
