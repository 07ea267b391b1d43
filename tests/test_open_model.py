"""The open model against a server that stalls: a constant arrival rate, the latency from when each iteration was
due, dropped iterations, enough users, and the rate split across workers (real ``locust --headless`` runs).

The assertions are on counts and on the stalls the server adds, never on the generator's own speed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from test_gate_helpers import locust as run_locust

from locust_c.testserver import TestServer

STALL_EVERY_S, STALL_FOR_MS = 5.0, 500
RATE, USERS, RUN_S = 300, 10, 30

LOCUSTFILE = """
import os

from locust import constant_throughput, task

from locust_c import FastCUser, arrival_rate


class Visitor(FastCUser):
    # The open model: the class's iterations arrive at RATE a second, whoever is free; or the closed one:
    # each user sends its next request when its answer is back (at RATE / USERS a second each at most).
    wait_time = (constant_throughput({rate} / {users}) if os.environ.get("CLOSED")
                 else arrival_rate({rate}))

    @task
    def index(self):
        self.client.get("/")
"""

SLA = """
total:
  p99_ms: {service}
  p99_corrected_ms: {service}
"""


def expected_corrected(percentile: float, service_ms: float) -> float:
    """The corrected latency at ``percentile`` that follows from the stall pattern: iterations due evenly over
    whole periods, those due during a stall waiting for its end, every one taking ``service_ms`` besides."""
    n = 100_000
    stall_begins = STALL_EVERY_S - STALL_FOR_MS / 1000
    due = (i / n * STALL_EVERY_S for i in range(n))
    waits = sorted(STALL_EVERY_S - t if t >= stall_begins else 0.0 for t in due)
    return waits[math.ceil(percentile / 100 * n) - 1] * 1000 + service_ms


def run(tmp_path: Path, url: str, *args: str, closed: bool = False, seconds: int = RUN_S) -> tuple[object, dict]:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(rate=RATE, users=USERS))
    results = tmp_path / ("closed.json" if closed else "open.json")
    from test_gate_helpers import child_env

    env = child_env()
    if closed:
        env["CLOSED"] = "1"
    proc = run_locust(locustfile, "-H", url, "-u", str(USERS), "-r", str(USERS), "-t", f"{seconds}s",
                      "--results-json", str(results), *args, env=env)
    return proc, json.loads(results.read_text())


@pytest.fixture(scope="module")
def stalling_server():
    with TestServer(stall_every=STALL_EVERY_S, stall_for_ms=STALL_FOR_MS) as server:
        yield server


def test_the_open_model_sees_the_stalls_that_the_closed_model_hides(tmp_path, stalling_server):
    sla = tmp_path / "slas.yml"
    budget = STALL_FOR_MS / 5  # far above a loopback answer, far below the stall
    sla.write_text(SLA.format(service=budget))
    proc, data = run(tmp_path, stalling_server.url, "--sla-file", str(sla))
    total = data["total"]
    arrival = data["arrival"]["Visitor"]

    # The rate is kept through the stalls: every iteration due started, none was dropped.
    assert arrival["dropped"] == 0, proc.stdout + proc.stderr
    assert arrival["sent_rate"] == pytest.approx(RATE, rel=0.01)
    # One request per iteration; the stop interrupts at most one per user, which Locust does not count.
    assert 0 <= arrival["iterations"] - total["num_requests"] <= USERS
    assert arrival["late"] > 0  # those due while all ten users waited in a stall
    assert "arrival_rate Visitor: 300/s asked" in proc.stdout + proc.stderr

    # The latency from when each iteration was due shows the stalls: 10 % of the time, up to 500 ms.
    service = total["p50_ms"]
    assert total["p99_corrected_ms"] == pytest.approx(expected_corrected(99, service), rel=0.10)
    assert total["p95_corrected_ms"] == pytest.approx(expected_corrected(95, service), rel=0.10)
    # p90 is at the stalls' edge (they take exactly 10 % of the time): there the iterations due while the ten
    # users catch up after a stall decide it, not the stall itself. Within 10 % of the stall, then.
    assert abs(total["p90_corrected_ms"] - expected_corrected(90, service)) < STALL_FOR_MS * 0.10
    # The service time does not: only the few requests that were in flight when a stall began waited.
    assert total["p99_ms"] < budget < total["p99_corrected_ms"]

    # The gate judges both, and fails the run on the corrected one alone.
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"Aggregated\s+p99_corrected_ms.*FAIL", out), out
    assert re.search(r"Aggregated\s+p99_ms\s.*PASS", out), out

    # The closed model on the same service reports a low p99, and knows no due times. Its slow requests are one per
    # user per stall, the same share of its requests however long it runs: two stalls show it.
    closed_proc, closed = run(tmp_path, stalling_server.url, closed=True, seconds=int(2 * STALL_EVERY_S))
    assert closed_proc.returncode == 0, closed_proc.stdout + closed_proc.stderr
    assert closed["total"]["p99_ms"] < budget
    assert "p99_corrected_ms" not in closed["total"] and "arrival" not in closed


SHAPED = """
from locust import task

from locust_c import FastCUser, arrival_rate
from locust_c.shapes import ArrivalRateShape


class Buyer(FastCUser):
    wait_time = arrival_rate({rate})

    @task
    def slow(self):
        self.client.get("/delay/{delay_ms}", name="/delay")

    def on_stop(self):
        self.client.get("/", name="/bye")  # in no iteration: no due time


class Shape(ArrivalRateShape):
    rate = {rate}
    max_users = {max_users}
    duration = {duration}
"""


def run_shaped(tmp_path: Path, url: str, rate: int, max_users: int, delay_ms: int, duration: int = 6,
               *args: str) -> tuple[object, dict]:
    locustfile = tmp_path / "shaped.py"
    locustfile.write_text(SHAPED.format(rate=rate, max_users=max_users, delay_ms=delay_ms, duration=duration))
    results = tmp_path / "shaped.json"
    proc = run_locust(locustfile, "-H", url, "--results-json", str(results), *args)
    return proc, json.loads(results.read_text())


def due_times(arrival: dict) -> int:
    """How many due times the schedule had: one every 1 / rate from the first to the end of the test."""
    return math.ceil(arrival["span_s"] * arrival["rate"] - 1e-6)


def test_too_few_users_drop_iterations_and_every_due_time_is_accounted_for(tmp_path, testserver):
    # Two users whose iterations take 250 ms run 8 a second; 40 are due.
    proc, data = run_shaped(tmp_path, testserver.url, rate=40, max_users=2, delay_ms=250)
    out = proc.stdout + proc.stderr
    arrival = data["arrival"]["Buyer"]
    assert proc.returncode == 0, out
    assert data["user_count"] == 2
    # Each due time is run, dropped (no user free within max_lag) or, in the last second, not started.
    assert arrival["iterations"] + arrival["dropped"] + arrival["unstarted"] == due_times(arrival), arrival
    bye = next(e for e in data["endpoints"] if e["name"] == "/bye")
    assert bye["num_requests"] == 2 and "p99_corrected_ms" not in bye
    delay = next(e for e in data["endpoints"] if e["name"] == "/delay")
    assert 0 <= arrival["iterations"] - delay["num_requests"] <= 2
    # What two users could run: one iteration each per 250 ms, the first at once.
    capacity = 2 * (arrival["span_s"] // 0.25 + 1)
    assert capacity - 2 <= arrival["iterations"] <= capacity
    assert arrival["dropped"] >= due_times(arrival) - capacity - 40 * 1.0  # all but max_lag's worth, at most
    assert "ArrivalRateShape: max_users=2 was too few" in out, out
    assert f"{arrival['dropped']} dropped" in out


def test_the_shape_starts_enough_users_to_keep_the_rate(tmp_path, testserver):
    # 50 a second of 100 ms each need 5 users at a time; the shape starts 5 and adds headroom once measured.
    proc, data = run_shaped(tmp_path, testserver.url, rate=50, max_users=40, delay_ms=100)
    out = proc.stdout + proc.stderr
    arrival = data["arrival"]["Buyer"]
    assert proc.returncode == 0, out
    assert arrival["dropped"] == 0, arrival
    assert arrival["sent_rate"] == pytest.approx(50, rel=0.02)
    assert 5 < data["user_count"] <= 12
    assert "too few" not in out


def run_distributed(tmp_path: Path, url: str, rate: int, users: int, seconds: int) -> dict:
    """A ``--processes 2`` run of the open-model locustfile: the master's results."""
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(rate=rate, users=users))
    results = tmp_path / "distributed.json"
    proc = run_locust(locustfile, "-H", url, "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
                      "--processes", "2", "--results-json", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(results.read_text())


def test_workers_split_the_rate_and_the_master_adds_their_tallies(tmp_path, testserver):
    data = run_distributed(tmp_path, testserver.url, rate=100, users=4, seconds=5)
    arrival = data["arrival"]["Visitor"]
    assert arrival["rate"] == pytest.approx(100)  # 50 a second on each of the two workers
    assert arrival["sent_rate"] == pytest.approx(100, rel=0.03)
    assert 0 <= arrival["iterations"] - data["total"]["num_requests"] <= 4
    assert arrival["dropped"] == 0


def test_a_worker_without_users_of_the_class_leaves_its_share_to_the_others(tmp_path, testserver):
    # One user on two workers: the worker that has it runs the whole rate, once the master has told it.
    arrival = run_distributed(tmp_path, testserver.url, rate=40, users=1, seconds=6)["arrival"]["Visitor"]
    assert arrival["rate"] == pytest.approx(40)
    # Until the master's first word (a fraction of a second) the worker runs half of it.
    assert arrival["sent_rate"] == pytest.approx(40, rel=0.05)
    assert arrival["dropped"] == 0
