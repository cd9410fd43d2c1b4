"""Secrets reach containers as files, never through the pod spec; NetworkPolicies fence
Redis by default and admit every pod that reads it; the Redis image is a patch release.
The bundled Redis' start script runs here against a real redis-server."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from chartrender import (
    POD_KINDS,
    RELEASE,
    TOGGLES,
    by_template,
    chart,
    container,
    find,
    notes,
    one,
    pod_spec,
    render,
)
from helpers import free_port, wait_until
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS = f"{RELEASE}-kubetaskqueue-redis"
EVERY_POD = {**TOGGLES["everything on"], "dashboard": {"enabled": True, "allowActions": True}}


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec["containers"], *spec.get("initContainers", [])]


def secret_values(objs: list[dict[str, Any]]) -> list[str]:
    """Every value of every Secret the chart renders (passwords, URLs, tokens)."""
    return [base64.b64decode(v).decode() for s in find(objs, "Secret")
            for v in s.get("data", {}).values()]


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_no_container_gets_a_secret_through_its_spec(toggle: str) -> None:
    objs = render({**TOGGLES[toggle], "dashboard": {"enabled": True, "allowActions": True}})
    secrets = secret_values(objs)
    assert secrets or toggle.startswith(("externalRedis.existingSecret", "redis.auth"))
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        for c in containers(obj):
            where = f"{obj['metadata']['name']}/{c['name']}"
            # Files only: no Secret in env (kubelet would put it in the process environment)
            # and no $(VAR) expansion in the command line (the process list shows it).
            assert not [e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
                        ], where
            assert not [e for e in c.get("envFrom", []) if "secretRef" in e], where
            line = json.dumps([c.get("command", []), c.get("args", [])])
            assert "$(" not in line, where
            text = json.dumps(c)
            assert not [s for s in secrets if s in text], where


def test_network_policies_are_on_by_default() -> None:
    assert chart().values["networkPolicy"]["enabled"] is True
    kinds = {o["metadata"]["name"] for o in find(render(), "NetworkPolicy")}
    assert kinds == {REDIS, f"{RELEASE}-kubetaskqueue-components"}


def test_notes_name_the_client_label_for_producers() -> None:
    assert f'  {REDIS}-client: "true"' in notes()
    assert "-client" not in notes({"networkPolicy": {"enabled": False}})


def admits(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a pod in the release's namespace with ``labels`` may open the Redis port."""
    for rule in policy["spec"]["ingress"]:
        assert {"port": "redis", "protocol": "TCP"} in rule["ports"]
        for peer in rule["from"]:
            if set(peer) == {"podSelector"}:  # no namespaceSelector: this namespace
                selector = peer["podSelector"]
                assert set(selector) == {"matchLabels"}
                if selector["matchLabels"].items() <= labels.items():
                    return True
    return False


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Pod":
        return dict(obj["metadata"]["labels"])
    return dict(obj["spec"]["template"]["metadata"]["labels"])


def test_every_pod_that_reads_redis_is_admitted_and_others_are_not() -> None:
    objs = render(EVERY_POD)
    policy = one(objs, "NetworkPolicy", REDIS)
    pods = [o for o in objs if o["kind"] in POD_KINDS]
    # Workers, exporter, dashboard and `helm test` read the URL file; the operator reads
    # the same Secret through the API (WorkerPool urlSecretRef) and connects too.
    readers = {pod_labels(o)["app.kubernetes.io/component"] for o in pods
               if any("KUBETASKQUEUE_REDIS_URL_FILE" in json.dumps(c.get("env", []))
                      for c in containers(o))}
    assert readers == {"worker", "exporter", "dashboard", "test"}
    for obj in pods:
        component = pod_labels(obj)["app.kubernetes.io/component"]
        if component in readers | {"operator", "uninstall"}:
            assert admits(policy, pod_labels(obj)), obj["metadata"]["name"]
    # Your producers: any pod of the namespace with the client label.
    assert admits(policy, {"app": "shop", f"{REDIS}-client": "true"})
    assert not admits(policy, {"app": "shop"})
    assert not admits(policy, {"app.kubernetes.io/name": "kubetaskqueue",
                               "app.kubernetes.io/instance": "other-release"})


def test_policies_add_no_egress_rules() -> None:
    """DNS and every outbound connection keep working: only ingress is restricted."""
    for policy in find(render(EVERY_POD), "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert "egress" not in policy["spec"]


def test_the_redis_image_is_a_patch_release() -> None:
    tag = chart().values["redis"]["image"]["tag"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9.]+)?", tag), tag
    image = container(one(render(), "StatefulSet", REDIS))["image"]
    assert image == f"docker.io/library/redis:{tag}"


# -- the bundled Redis' start and probe scripts, run against a real redis-server ---------

# Spaces, quotes, a backslash, shell syntax, a tab and non-ASCII: each must reach Redis as it is.
PASSWORD = "pa ss\"w\\o'rd $(id) `x` \t é;#"


class RedisPod:
    """The Redis container's files in a temporary directory, as the pod mounts them."""

    def __init__(self, root: Path, password_file: bytes, path_dirs: list[str]) -> None:
        self.root = root
        self.port = free_port()
        for sub in ("config", "secret", "run", "data"):
            (root / sub).mkdir(parents=True)
        data = one(by_template()["redis-configmap.yaml"], "ConfigMap")["data"]
        for name, text in data.items():
            for pod_path, local in [("/etc/redis-auth/", root / "secret"),
                                    ("/run/redis-auth/", root / "run"),
                                    ("/etc/redis/", root / "config"),
                                    ("/data", root / "data")]:
                text = text.replace(pod_path, f"{local}/" if pod_path.endswith("/") else
                                    str(local))
            text = text.replace("port 6379", f"port {self.port}").replace(
                "bind * -::*", "bind 127.0.0.1").replace("redis-cli ping",
                                                         f"redis-cli -p {self.port} ping")
            (root / "config" / name).write_text(text)
        (root / "secret" / "redis-password").write_bytes(password_file)
        self.env = dict(os.environ, PATH=os.pathsep.join([*path_dirs, os.environ["PATH"]]))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(["sh", str(self.root / "config" / "start.sh")],
                                     env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        return self.proc

    def ping_probe(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(self.root / "config" / "ping.sh")], env=self.env,
                              capture_output=True, text=True, timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()


def shells(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    yield "system sh", []
    busybox = shutil.which("busybox")
    if busybox:  # the alpine image's sh, od, tr, sed and cat
        bindir = tmp_path / "busybox"
        bindir.mkdir()
        for applet in ("sh", "od", "tr", "sed", "cat"):
            (bindir / applet).symlink_to(busybox)
        yield "busybox", [str(bindir)]


@pytest.fixture
def needs_redis_binaries() -> None:
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} not found: apt-get install redis-server redis-tools")


@pytest.mark.usefixtures("needs_redis_binaries")
def test_redis_takes_its_password_from_the_mounted_file(tmp_path: Path) -> None:
    ran = []
    for name, path_dirs in shells(tmp_path):
        pod = RedisPod(tmp_path / name.replace(" ", "-"), PASSWORD.encode() + b"\n", path_dirs)
        proc = pod.start()
        try:
            client = redis.Redis(port=pod.port, password=PASSWORD)
            wait_until(partial(_answers, client), 10, what=f"Redis started by {name}")
            # The trailing newline of the file is not part of the password.
            for wrong in (PASSWORD + "\n", None):
                with pytest.raises(redis.AuthenticationError):
                    redis.Redis(port=pod.port, password=wrong, retry=Retry(NoBackoff(), 0)).ping()
            # start.sh exec'd redis-server: its command line holds no password.
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert cmdline.startswith(b"redis-server"), cmdline
            assert b"pa ss" not in cmdline
            probe = pod.ping_probe()
            assert (probe.returncode, probe.stdout.strip()) == (0, "PONG"), probe
            ran.append(name)
        finally:
            pod.stop()
    assert ran[0] == "system sh"


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.usefixtures("needs_redis_binaries")
def test_an_empty_password_stops_redis_instead_of_running_it_open(tmp_path: Path) -> None:
    pod = RedisPod(tmp_path, b"\n", [])
    proc = pod.start()
    try:
        out, _ = proc.communicate(timeout=10)
    finally:
        pod.stop()
    assert proc.returncode == 1
    assert out.decode() == (f"redis-password in Secret {REDIS} is empty: Redis would run "
                            "without a password\n")
