"""What one benchmark run measured, and how the generators' own reports are read.

Locust's figures come from ``--json-file``, written after the runner has stopped, rather than from the CSV,
which Locust rewrites on a one-second timer and so may miss the last second of a run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(\w+),", re.MULTILINE)
WRK_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class Measurement:
    """One generator in one section: the steady-state window, the whole run, latencies and memory."""

    section: str
    generator: str
    users: int
    command: str = ""
    error: str | None = None
    # The steady-state window: requests counted by the test server, CPU seconds read with psutil.
    window_seconds: float = 0.0
    window_requests: int = 0
    window_cpu: float = 0.0
    window_server_cpu: float = 0.0
    window_other_cpu: float = 0.0
    window_other_server_cpu: float = 0.0
    # The whole run, as the generator reports it, and its CPU time from rusage (start-up and ramp-up included).
    total_requests: int = 0
    total_failures: int = 0
    reported_rps: float = 0.0
    total_cpu: float = 0.0
    exit_code: int | None = None
    # Latency in milliseconds: as the generator reports it, and (Locust) unrounded.
    p50: float | None = None
    p99: float | None = None
    exact_p50: float | None = None
    exact_p99: float | None = None
    # Memory in KiB: the generator with ``users`` idle users, and the same locustfile with one user.
    rss_kib: int | None = None
    hwm_kib: int | None = None
    base_rss_kib: int | None = None
    base_hwm_kib: int | None = None
    server_connections: int | None = None
    notes: list[str] = field(default_factory=list)
    round_no: int | None = None  # the observe section's round

    @property
    def ok(self) -> bool:
        """True when the run produced its figures."""
        return self.error is None

    @property
    def rps(self) -> float:
        """Requests per second in the steady-state window, as the server counted them."""
        return self.window_requests / self.window_seconds if self.window_seconds else 0.0

    @property
    def cpu_share(self) -> float:
        """The generator's CPU use in the window, in cores (1.0: one core busy all the time)."""
        return self.window_cpu / self.window_seconds if self.window_seconds else 0.0

    @property
    def server_cpu_share(self) -> float:
        """The test server's CPU use in the window, in cores."""
        return self.window_server_cpu / self.window_seconds if self.window_seconds else 0.0

    @property
    def other_cpu_share(self) -> float:
        """How much of the generator's CPU went to anything else in the window, in cores."""
        return self.window_other_cpu / self.window_seconds if self.window_seconds else 0.0

    @property
    def other_server_cpu_share(self) -> float:
        """How much of the server's CPU went to anything else in the window, in cores."""
        return self.window_other_server_cpu / self.window_seconds if self.window_seconds else 0.0

    def disturbed(self, limit: float) -> bool:
        """True when other work took more than ``limit`` of a CPU that mattered to this run.

        The generator's CPU always matters. The server's matters to latency (a shared CPU delays its answers)
        and to throughput when the server was the bottleneck (its CPU was full).
        """
        if self.other_cpu_share > limit:
            return True
        if self.other_server_cpu_share <= limit:
            return False
        return self.section == "latency" or self.server_cpu_share + self.other_server_cpu_share > 0.85

    @property
    def requests_per_cpu_second(self) -> float:
        """Steady-state requests per generator CPU-second."""
        return self.window_requests / self.window_cpu if self.window_cpu else 0.0

    @property
    def whole_run_requests_per_cpu_second(self) -> float:
        """Requests the generator reported over its whole run, per CPU-second of its whole life."""
        return self.total_requests / self.total_cpu if self.total_cpu else 0.0

    @property
    def rss_per_user_kib(self) -> float | None:
        """(RSS with ``users`` users - RSS with one user) / (users - 1)."""
        if self.rss_kib is None or self.base_rss_kib is None or self.users <= 1:
            return None
        return (self.rss_kib - self.base_rss_kib) / (self.users - 1)

    @property
    def hwm_per_user_kib(self) -> float | None:
        """The same from the peak RSS (VmHWM), which includes the spawning burst."""
        if self.hwm_kib is None or self.base_hwm_kib is None or self.users <= 1:
            return None
        return (self.hwm_kib - self.base_hwm_kib) / (self.users - 1)


def locust_percentile(response_times: dict[int, int], count: int, fraction: float) -> int:
    """Locust's own percentile of its rounded response-time buckets (what its CSV and UI show)."""
    wanted = int(count * fraction)
    processed = 0
    for bucket in sorted(response_times, reverse=True):
        processed += response_times[bucket]
        if count - processed <= wanted:
            return bucket
    return 0


def read_locust_json(path: Path) -> dict[str, Any]:
    """Aggregate the entries of a Locust ``--json-file`` report: requests, failures, req/s, p50, p99."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not entries:
        return {"requests": 0, "failures": 0, "rps": 0.0, "p50": None, "p99": None}
    buckets: dict[int, int] = {}
    for entry in entries:
        for bucket, n in entry["response_times"].items():
            buckets[int(float(bucket))] = buckets.get(int(float(bucket)), 0) + n
    requests = sum(e["num_requests"] for e in entries)
    start = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] or start for e in entries)
    return {
        "requests": requests,
        "failures": sum(e["num_failures"] for e in entries),
        "rps": requests / (last - start) if last > start else 0.0,
        "p50": locust_percentile(buckets, requests, 0.50),
        "p99": locust_percentile(buckets, requests, 0.99),
    }


def read_exact_latency(path: Path) -> dict[str, float] | None:
    """The unrounded p50/p99 that bench_common's recorder, or locust-c's ``--results-json``, wrote; None if none."""
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if "total" in data:  # a locust-c results file: percentiles from the engine's histograms
        return {"p50": data["total"]["p50_ms"], "p99": data["total"]["p99_ms"]}
    return data


def wrk_duration_ms(value: str, unit: str) -> float:
    """A wrk duration (``5.12ms``, ``812.00us``, ``1.02s``) in milliseconds."""
    return float(value) * WRK_UNITS_MS[unit]


def read_wrk_output(text: str) -> dict[str, Any]:
    """Requests, failures, req/s and (with ``--latency``) p50/p99 from wrk's report."""
    match = WRK_REQUESTS.search(text)
    if match is None:
        raise ValueError(f"no request count in wrk's output:\n{text}")
    requests = int(match.group(1))
    seconds = wrk_duration_ms(match.group(2), match.group(3)) / 1000.0
    failures = 0
    if non_2xx := WRK_NON_2XX.search(text):
        failures += int(non_2xx.group(1))
    if socket_errors := WRK_SOCKET_ERRORS.search(text):
        failures += sum(int(n) for n in socket_errors.groups())
    percentiles = {int(p): wrk_duration_ms(v, u) for p, v, u in WRK_PERCENTILE.findall(text)}
    return {
        "requests": requests,
        "failures": failures,
        "rps": requests / seconds if seconds else 0.0,
        "p50": percentiles.get(50),
        "p99": percentiles.get(99),
    }
