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
        migration = self.begin_migration(topic, to)
        moved = 0
        while keys := migration.keys_left(batch):
            migration.move(keys)
            moved += len(keys)
            time.sleep(pause_s)
        migration.finish()
        return moved

    def begin_migration(self, topic: str, to: RedisProc) -> SlotMigration:
        """Mark ``topic``'s slot IMPORTING on ``to`` and MIGRATING on its owner; the
        caller moves keys in any order it likes, then finishes."""
        source = self.owner(topic)
        slot = int(self.client.keyslot(f"kubetaskqueue:{{{topic}}}:input"))
        migration = SlotMigration(slot, source, to)
        migration.dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", migration.src_id)
        migration.src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", migration.dst_id)
        return migration


class SlotMigration:
    """One hash slot half-way between two masters."""

    def __init__(self, slot: int, source: RedisProc, target: RedisProc) -> None:
        self.slot, self.target = slot, target
        self.src, self.dst = source.client(), target.client()
        self.src_id = self.src.execute_command("CLUSTER MYID")
        self.dst_id = self.dst.execute_command("CLUSTER MYID")

    def keys_left(self, count: int) -> list[str]:
        return list(self.src.execute_command("CLUSTER GETKEYSINSLOT", self.slot, count))

    def move(self, keys: list[str]) -> None:
        self.src.execute_command("MIGRATE", "127.0.0.1", self.target.port, "", 0, 5000,
                                 "KEYS", *keys)

    def finish(self) -> None:
        """Move what is left, then hand the slot to the target on both nodes."""
        while keys := self.keys_left(100):
            self.move(keys)
        for node in (self.dst, self.src):
            node.execute_command("CLUSTER SETSLOT", self.slot, "NODE", self.dst_id)


def start_cluster(fleet: RedisFleet, masters: int = 3, replicas: int = 0) -> ClusterSet:
    """``masters`` x (1 + ``replicas``) nodes joined by `redis-cli --cluster create`."""
    nodes = [fleet.start(f"cluster{i}", "--cluster-enabled", "yes", "--cluster-config-file",
                         "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                         appendonly=False, port=free_cluster_port())
             for i in range(masters * (1 + replicas))]
    if masters * (1 + replicas) >= 3:
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in nodes],
                        "--cluster-replicas", str(replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
    else:  # redis-cli refuses fewer than three masters: share the slots out by hand
        share = 16384 // len(nodes)
        for i, node in enumerate(nodes):
            last = 16383 if i == len(nodes) - 1 else (i + 1) * share - 1
            node.client().execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)
            if i:
                node.client().execute_command("CLUSTER MEET", "127.0.0.1", nodes[0].port)
    def ready() -> bool:
        infos = [n.client().cluster("info") for n in nodes]
        roles = [n.client().info("replication")["role"] for n in nodes]
        return all(i.get("cluster_state") == "ok" for i in infos) and roles.count(
            "master") == masters
    wait_until(ready, 30, 0.1, what="cluster state ok on every node")
    client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port, decode_responses=True)
    cluster = ClusterSet(nodes, client)
    if replicas:  # a replica must have synced before its master can be failed over
        wait_until(lambda: all(n.client().info("replication").get("master_link_status")
                               == "up" for n in nodes if n not in cluster.masters()),
                   30, 0.1, what="replicas in sync")
    return cluster
