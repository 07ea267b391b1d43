"""The scale-out recipes a user copies as they are: each file checked by a tool that knows its format (no Docker
engine or cluster runs here). Each check is also shown a broken copy, which it must refuse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_gate_helpers import ROOT

BIN = Path(sys.executable).parent
EXAMPLES = ROOT / "examples"


def check(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = BIN / tool
    if not path.exists():
        pytest.fail(f"{tool} is not installed (make test installs the dev extras)")
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("schema", "recipe", "breakage"), [
    ("vendor.github-workflows", "ci/github-actions.yml", ("runs-on: ubuntu-latest", "runs_on: ubuntu-latest")),
    ("vendor.compose-spec", "docker/docker-compose.yml", ("replicas: ${WORKERS:-2}", "replicas: [2]")),
    ("vendor.compose-spec", "observability/docker-compose.yml", ("stop_signal: SIGINT", "stop_signal: [SIGINT]")),
])
def test_the_recipe_matches_its_schema(tmp_path: Path, schema: str, recipe: str, breakage: tuple[str, str]) -> None:
    ok = check("check-jsonschema", "--builtin-schema", schema, str(EXAMPLES / recipe))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / Path(recipe).name
    text = (EXAMPLES / recipe).read_text()
    assert breakage[0] in text
    broken.write_text(text.replace(breakage[0], breakage[1], 1))
    assert check("check-jsonschema", "--builtin-schema", schema, str(broken)).returncode != 0


def test_the_kubernetes_manifests_are_valid_resources(tmp_path: Path) -> None:
    manifests = EXAMPLES / "kubernetes" / "locust-c.yaml"
    ok = check("kubernetes-validate", str(manifests))
    assert ok.returncode == 0 and ok.stdout.count("passed for resource") == 3, ok.stdout + ok.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(manifests.read_text().replace("containerPort: 8089", "containerPort: web-ui", 1))
    assert check("kubernetes-validate", str(broken)).returncode != 0


def test_the_dockerfile_builds_from_this_checkout() -> None:
    # No Docker engine here: the file's COPY sources and the packages it installs are what can go stale.
    text = (EXAMPLES / "docker" / "Dockerfile").read_text()
    assert (ROOT / "examples" / "shop" / "locustfile.py").exists() and "COPY examples/shop/locustfile.py" in text
    makefile = (ROOT / "Makefile").read_text()
    for package in ("libcurl4-openssl-dev", "libuv1-dev", "libbrotli-dev", "pkg-config"):
        assert package in text and package in makefile, package
