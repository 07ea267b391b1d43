"""``--sla-abort``: the budgets judged over a sliding window while real ``locust --headless`` runs go.

A breach beyond doubt stops the run with exit code 1 soon after the grace period; a run within its budgets is
never stopped. The statistics of "beyond doubt" are checked on their own first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_gate_helpers import locust as run_locust

from locust_c.gate.live import ALPHA, beyond_doubt

LOCUSTFILE = """
from locust import constant, task

from locust_c import FastCUser


class Client(FastCUser):
    wait_time = constant(0.01)

    @task(3)
    def fast(self):
        self.client.get("/", name="/fast")

    @task
    def slow(self):
        self.client.get("/delay/{slow_ms}", name="/slow")

    @task
    def flaky(self):
        self.client.get("/status/{flaky_status}", name="/flaky")
"""

SLA = """
endpoints:
  "GET /fast":
    p99_ms: 500
  "GET /slow":
    p95_ms: 40
  "GET /flaky":
    error_rate: 0.01
total:
  min_rps: 100000   # a floor is judged at the end only: it never stops a run early
"""

RUN_TIME_S = 60


def run(tmp_path: Path, testserver, slow_ms: int, flaky_status: int, *extra: str) -> tuple[object, dict]:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(slow_ms=slow_ms, flaky_status=flaky_status))
    sla = tmp_path / "slas.yml"
    sla.write_text(SLA)
    results = tmp_path / "results.json"
    done = run_locust(locustfile, "-H", testserver.url, "-u", "4", "-r", "4", "--sla-file", str(sla),
                      "--sla-abort", "--sla-abort-after", "2s", "--sla-abort-window", "2s",
                      "--results-json", str(results), *extra)
    return done, json.loads(results.read_text())


@pytest.mark.parametrize(("slow_ms", "flaky_status", "breached"),
                         [(80, 200, "GET /slow"), (5, 500, "GET /flaky")], ids=["p95", "error-rate"])
def test_a_breach_beyond_doubt_stops_the_run_early(tmp_path: Path, testserver, slow_ms, flaky_status,
                                                     breached) -> None:
    done, data = run(tmp_path, testserver, slow_ms, flaky_status, "-t", f"{RUN_TIME_S}s")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "--sla-abort: stopping the run after" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith(breached))
    assert "FAIL" in row and "beyond doubt" in row
    assert "min_rps" not in done.stdout.split("--sla-abort: stopping")[1].split("SLA gate")[0]
    assert done.stdout.rstrip().endswith("breached beyond doubt)")
    # Stopped after the grace period, within the grace period and one window (and a check's second) as the gate
    # counts, long before the run's own end.
    after = int(re.search(r"stopping the run after (\d+) s", done.stdout).group(1))
    assert 2 <= after <= 2 + 2 + 1
    assert data["run_time_s"] < RUN_TIME_S / 2


def test_a_run_within_its_budgets_is_not_stopped(tmp_path: Path, testserver) -> None:
    done, data = run(tmp_path, testserver, 5, 200, "-t", "6s")
    assert "stopping the run" not in done.stdout
    judged = re.search(r"--sla-abort: (\d+) windows judged, no budget breached beyond doubt", done.stdout)
    assert judged is not None and int(judged.group(1)) >= 2, done.stdout[-2000:]  # the gate did look
    assert data["run_time_s"] > 5  # -t 6s, less the spawn
    # The end-of-run gate still judges the floor, which this run breaks on purpose.
    assert done.returncode == 1 and "min_rps" in done.stdout


def test_the_master_stops_a_distributed_run(tmp_path: Path, testserver) -> None:
    done, data = run(tmp_path, testserver, 80, 200, "-t", f"{RUN_TIME_S}s", "--processes", "2")
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stdout.count("--sla-abort: stopping the run after") == 1
    assert data["run_time_s"] < RUN_TIME_S / 2


@pytest.mark.parametrize(("args", "message"), [
    (("--sla-abort",), "--sla-abort: needs --sla-file"),
    (("--sla-abort", "--sla-file", "SLA", "--sla-abort-after", "soon"), "--sla-abort-after: 'soon' is not a time"),
    (("--sla-abort", "--sla-file", "SLA", "--sla-abort-window", "0s"), "--sla-abort-window: '0s' is not a time"),
])
def test_bad_abort_options_stop_locust_before_any_load(tmp_path: Path, testserver, args, message) -> None:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(slow_ms=1, flaky_status=200))
    (tmp_path / "slas.yml").write_text(SLA)
    args = tuple(str(tmp_path / "slas.yml") if a == "SLA" else a for a in args)
    done = run_locust(locustfile, "-H", testserver.url, "-u", "1", "-t", "2s", *args)
    assert done.returncode == 2
    assert f"locust-c: error: {message}" in done.stderr


def test_beyond_doubt_needs_evidence_not_just_a_breach() -> None:
    # p95 <= B means at most 5 % above B. Every request slow: a handful is enough.
    assert beyond_doubt(5, 5, 0.05) and not beyond_doubt(4, 4, 0.05)
    # Just over the budget, even in a big window: not beyond doubt.
    assert not beyond_doubt(5_100, 100_000, 0.05)
    assert beyond_doubt(6_000, 100_000, 0.05)
    # At or under the budget: never.
    assert not beyond_doubt(0, 1000, 0.01) and not beyond_doubt(10, 1000, 0.01)
    assert not beyond_doubt(0, 0, 0.05)


def test_the_bound_holds_for_a_service_at_its_budget() -> None:
    """Simulate windows of a service exactly at a p95 budget: none looks like a breach beyond doubt."""
    import random

    rng = random.Random(11)
    for n in (20, 200, 2000):
        for _ in range(2000):
            k = sum(rng.random() < 0.05 for _ in range(n))
            assert not beyond_doubt(k, n, 0.05), (k, n)
    assert ALPHA <= 1e-6


def test_the_window_starts_again_when_the_statistics_are_reset() -> None:
    """--reset-stats (or the web UI's reset) in the middle of a window: no error, no verdict on a mixed window."""
    from locust.env import Environment

    from locust_c import FastCUser
    from locust_c.gate.live import LiveGate
    from locust_c.gate.sla import parse_sla

    environment = Environment(user_classes=[FastCUser])
    environment.create_local_runner()
    stats = environment.runner.stats
    gate = LiveGate(environment, parse_sla('endpoints:\n  "GET /x":\n    p95_ms: 100\n', "slas.yml"), 0, 60)
    gate.start()
    for _ in range(50):
        stats.log_request("GET", "/x", 10, 1)
    assert gate.check() is None  # the first snapshot: no window yet
    for _ in range(50):
        stats.log_request("GET", "/x", 500, 1)
    breached = gate.check()
    assert breached is not None and any(v.note == "beyond doubt" for v in breached.verdicts)

    gate.start()
    assert gate.check() is None
    stats.reset_all()
    for _ in range(200):  # more than before the reset: only the reset itself tells
        stats.log_request("GET", "/x", 10, 1)
    assert gate.check() is None  # the window that spans the reset is not judged
    for _ in range(50):
        stats.log_request("GET", "/x", 10, 1)
    assert gate.check() is None and gate.judged == 1  # judged again, from the reset on: within budget
    environment.runner.quit()


def test_a_stall_breaches_a_corrected_budget_beyond_doubt_while_the_service_time_passes() -> None:
    """An open-model window: the service times are fast, the latencies from the due times are not."""
    from locust.env import Environment

    from locust_c import FastCUser
    from locust_c.gate.live import LiveGate
    from locust_c.gate.sla import parse_sla
    from locust_c.stats import StatsBridge

    environment = Environment(user_classes=[FastCUser])
    environment.create_local_runner()
    ep = StatsBridge.of(environment.runner.stats).endpoint("GET", "/x")
    spec = parse_sla('endpoints:\n  "GET /x":\n    p99_ms: 100\n    p99_corrected_ms: 100\n', "slas.yml")
    gate = LiveGate(environment, spec, 0, 60)
    gate.start()

    def requests(n: int, service_us: int, corrected_us: int) -> None:
        for _ in range(n):
            environment.runner.stats.log_request("GET", "/x", service_us / 1000, 1)
        ep.hist.record(service_us, n)
        ep.corrected.record(corrected_us, n)

    requests(100, 1_000, 1_000)
    assert gate.check() is None
    requests(90, 1_000, 1_000)
    requests(10, 1_000, 400_000)  # due during a stall: 10 % of them waited 400 ms before they could start
    breached = gate.check()
    assert breached is not None
    verdicts = {v.metric: v for v in breached.verdicts}
    assert verdicts["p99_corrected_ms"].note == "beyond doubt" and verdicts["p99_ms"].status == "PASS"
    environment.runner.quit()
