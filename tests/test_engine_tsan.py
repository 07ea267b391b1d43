"""The engine's queues under ThreadSanitizer: tests/c/engine_stress.c submits, cancels and closes from one thread
while the engine thread runs the requests; a data race, a lost or doubled completion fails it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="needs gcc and make")
def test_engine_queues_have_no_data_race_under_tsan():
    proc = subprocess.run(["make", "-s", "--no-print-directory", "tsan"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    assert "1 passed, 0 failed" in proc.stdout
