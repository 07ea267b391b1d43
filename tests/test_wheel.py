"""``make wheel``: a wheel that bundles libcurl and libuv, installed into a fresh virtual environment, runs a
FastCUser locustfile against the test server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_gate_helpers import ROOT

SIMPLE = ROOT / "tests" / "locustfiles" / "simple.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("make") is None:
        pytest.fail("make is needed to build the wheel")
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(["make", "--no-print-directory", "wheel"], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    wheels = list((ROOT / "wheelhouse").glob("locust_c-*manylinux*.whl"))
    assert len(wheels) == 1, wheels
    return Path(shutil.copy(wheels[0], out))


def test_the_wheel_bundles_libcurl_libuv_and_what_they_need(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    bundled = [Path(n).name for n in names if n.startswith("locust_c.libs/")]
    for library in ("libcurl-", "libuv-", "libssl-", "libnghttp2-"):
        assert any(n.startswith(library) for n in bundled), (library, bundled)
    # Every subpackage is in it: the gate's commands and the lab's.
    assert {"locust_c/gate/sla.py", "locust_c/lab/scenarios.py", "locust_c/py.typed"} <= set(names)
    # auditwheel repair names the wheel by its own verdict: the manylinux policy every bundled library meets.
    assert "-manylinux_2_" in wheel.name and wheel.name.endswith("_x86_64.whl"), wheel.name


def test_the_wheel_installed_in_a_fresh_venv_runs_a_locustfile(wheel: Path, tmp_path: Path, testserver) -> None:
    venv = tmp_path / "venv"
    # A venv of its own, which this pip fills (pip --python): the wheel and its dependencies from the index.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile",
                          "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Run from the temporary directory, so that the repository's own locust_c cannot be imported instead.
    where = subprocess.run([str(python), "-c", "import locust_c._engine as e; print(e.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env=env, timeout=60)
    assert str(venv) in where.stdout, where.stdout + where.stderr
    results = tmp_path / "results.json"
    run = subprocess.run([str(venv / "bin" / "locust"), "-f", str(SIMPLE), "--headless", "--only-summary", "-u", "2",
                          "-r", "2", "-t", "2s", "-H", testserver.url, "--results-json", str(results)],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert '"source": "locust-c"' in results.read_text()
