"""Memory per stats endpoint stays within what Locust's own entry costs, so that a locustfile that forgets
``name=`` on URLs with ids does not run out of memory (each row once held two 92 KiB histograms)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parent / "endpoint_memory.py"


def growth_per_endpoint(url: str, kind: str, names: int, requests: int) -> float:
    out = subprocess.run([sys.executable, str(PROBE), url, kind, str(names), str(requests)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return float(out.stdout)


@pytest.mark.parametrize("requests", [1, 5])
def test_two_thousand_endpoints_cost_no_more_than_locusts_own_entries(testserver, requests):
    """FastHttpUser's growth per row is Locust's StatsEntry alone; FastCUser pays that entry too, plus its C
    endpoint (exact histogram and batch delta), which may cost at most as much again."""
    fastc = growth_per_endpoint(testserver.url, "fastc", 2000, requests)
    fasthttp = growth_per_endpoint(testserver.url, "fasthttp", 2000, requests)
    assert fastc <= 2 * max(fasthttp, 1.0), (fastc, fasthttp)
