"""LOCUST_C_THREADS runs several engine loops in one process, users spread over them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import gevent.monkey; gevent.monkey.patch_all()
import gevent
from locust.event import EventHook
from locust_c import FastCSession, engine
sessions = [FastCSession(URL, EventHook(), None) for _ in range(6)]
greenlets = [gevent.spawn(s.get, "/delay/50") for s in sessions for _ in range(3)]
gevent.joinall(greenlets, raise_error=True)
assert all(g.value.status_code == 200 for g in greenlets)
used = {id(s._handle) for s in sessions}
print(len(engine.handles()), len(used), sum(h.engine.counters()["completed"] for h in engine.handles()))
"""


def run(url: str, threads: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"URL = {url!r}\n" + SCRIPT], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), "LOCUST_C_THREADS": threads})


def test_two_engine_threads_share_the_users(testserver):
    proc = run(testserver.url, "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["2", "2", "18"]


def test_a_bad_thread_count_is_a_clear_error(testserver):
    proc = run(testserver.url, "zero")
    assert proc.returncode != 0
    assert "LOCUST_C_THREADS must be a whole number from 1 to 64, not 'zero'" in proc.stderr
