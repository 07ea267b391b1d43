"""Helpers shared by the gate's tests: the demo shop as a child process, the CLI, and a Locust run.

(A test module itself, so that the other test_gate_* modules can import it; its one test checks the shop.)
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from locust_c.lab.processes import shop_process

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHOP = ROOT / "examples" / "shop" / "service.py"
RUN_TIMEOUT = 60


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: this checkout first on the path, no GitHub summary unless asked."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def shop(*args: str) -> AbstractContextManager[tuple[str, subprocess.Popen[str]]]:
    """Start the demo shop on a free loopback port; yields (base URL, process) and stops it afterwards."""
    return shop_process(SHOP, *args)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``locust-c ARGS`` (as ``python -m locust_c``) in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "locust_c", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or child_env(),
        cwd=ROOT,
    )


def locust(
    locustfile: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``locust -f LOCUSTFILE --headless ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env or child_env(),
        cwd=cwd or ROOT,
    )


def recorded() -> dict[str, Any]:
    """The recorded results JSON of a real run against the shop (tests/data/shop.json), as a fresh dict."""
    return copy.deepcopy(json.loads((DATA / "shop.json").read_text()))


def endpoint(data: dict[str, Any], key: str) -> dict[str, Any]:
    """The endpoint ``"METHOD name"`` (or ``"Aggregated"``) of a results dict, for tweaking."""
    if key == "Aggregated":
        return data["total"]
    return next(e for e in data["endpoints"] if f"{e['method']} {e['name']}" == key)


def write_json(path: Path, data: dict[str, Any]) -> str:
    """Write a results dict; returns the path as a string."""
    path.write_text(json.dumps(data))
    return str(path)


def test_the_shop_serves_and_stops() -> None:
    with shop() as (url, proc):
        with urllib.request.urlopen(url + "/api/products", timeout=5) as response:
            assert response.status == 200
            assert len(json.load(response)) == 20
    assert proc.returncode is not None


def test_the_shop_stalls_on_request() -> None:
    """--stall-every 1 --stall-for 300: a request every 20 ms for 2.5 s meets the two stalls, each holding one
    request (the next goes out after the answer) for at most the stall."""
    import time

    waits = []
    with shop("--stall-every", "1", "--stall-for", "300") as (url, _):
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            sent = time.monotonic()
            with urllib.request.urlopen(url + "/api/products", timeout=5) as response:
                assert response.status == 200
            waits.append(time.monotonic() - sent)
            time.sleep(0.02)
    held = [w for w in waits if w >= 0.1]
    assert 1 <= len(held) <= 2 and all(w <= 0.4 for w in held), waits
