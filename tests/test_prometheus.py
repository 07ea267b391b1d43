"""``--prometheus-port``: a real Prometheus server (Debian's) scrapes real ``locust --headless`` runs.

What Prometheus stored must be what the run measured: the request counters equal the run's totals exactly, and
``histogram_quantile`` over the run's buckets lands within one bucket of ``--results-json``'s exact p95.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port
from test_gate_helpers import child_env
from test_gate_helpers import locust as run_locust

from locust_c.prometheus import BUCKETS_MS, RunCollector

PROMETHEUS = shutil.which("prometheus")
RENDER = Path(__file__).resolve().parent.parent / "examples" / "observability" / "render_dashboard.py"

LOCUSTFILE = """
from locust import constant, task

from locust_c import FastCUser


class Client(FastCUser):
    wait_time = constant(0.02)

    @task(3)
    def fast(self):
        self.client.get("/", name="/fast")

    @task
    def slow(self):
        self.client.get("/delay/25", name="/slow")

    @task
    def missing(self):
        self.client.get("/status/404", name="/missing")
"""


class Prometheus:
    """A Prometheus server on loopback that scrapes one target every second; stopped by the fixture."""

    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
            "scrape_configs:\n  - job_name: locust\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=self.log,
        )
        try:
            self._wait_ready(tmp)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, tmp: Path) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert self.proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float:
        result = self.query(promql)
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[Prometheus, int]]:
    """A Prometheus server and the port of the /metrics it scrapes."""
    if PROMETHEUS is None:
        pytest.fail("Debian's prometheus package is not installed (make test installs it)")
    metrics_port = free_port()
    server = Prometheus(tmp_path, metrics_port)
    try:
        yield server, metrics_port
    finally:
        server.stop()


@contextmanager
def socket_listening() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def bucket_around(ms: float) -> tuple[float, float]:
    """The (lower, upper) bounds in ms of the Prometheus bucket that holds ``ms``."""
    lower = 0.0
    for bound in BUCKETS_MS:
        if ms <= bound:
            return lower, bound
        lower = bound
    return lower, float("inf")


@pytest.mark.parametrize("processes", [0, 2], ids=["local", "master-2-workers"])
def test_prometheus_stores_what_the_run_measured(tmp_path: Path, testserver, scraped, processes: int) -> None:
    prometheus, port = scraped
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    results = tmp_path / "results.json"
    # The distributed run also watches the test server's memory, so that every panel of the dashboard has data.
    distributed = ("--processes", str(processes), "--leak-pid", str(testserver.pid)) if processes else ()
    started = time.time()
    run = run_locust(locustfile, "-H", testserver.url, "-u", "6", "-r", "6", "-t", "8s", *distributed,
                     "--prometheus-port", str(port), "--prometheus-host", "127.0.0.1", "--prometheus-linger", "10",
                     "--results-json", str(results))
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: the 404s are failures
    data = json.loads(results.read_text())
    assert data["source"] == "locust-c"

    last = "last_over_time({}[10m])"
    total = prometheus.value("sum(" + last.format('locust_requests_total{job="locust"}') + ")")
    assert total == data["total"]["num_requests"] > 100
    for row in data["endpoints"]:
        selector = f'{{job="locust",method="GET",name="{row["name"]}"}}'
        assert prometheus.value(last.format("locust_requests_total" + selector)) == row["num_requests"]
        assert prometheus.value(last.format("locust_failures_total" + selector)) == row["num_failures"]
        exact = prometheus.value(last.format(
            f'locust_request_duration_quantile_seconds{{job="locust",name="{row["name"]}",quantile="0.95"}}'))
        assert exact * 1000 == pytest.approx(row["p95_ms"], rel=1e-9)
    assert prometheus.value(last.format('locust_failures_total{name="/missing"}')) == \
        prometheus.value(last.format('locust_requests_total{name="/missing"}')) > 0

    p95 = prometheus.value("histogram_quantile(0.95, sum by (le) ("
                           + last.format('locust_request_duration_seconds_bucket{job="locust"}') + "))") * 1000
    lower, upper = bucket_around(data["total"]["p95_ms"])
    assert lower <= p95 <= upper, (p95, data["total"]["p95_ms"])
    assert prometheus.value("sum(" + last.format('locust_request_duration_seconds_count{job="locust"}') + ")") \
        == data["total"]["num_requests"]

    users = prometheus.value('max_over_time(locust_users{job="locust"}[10m])')
    scrapes = prometheus.value('sum_over_time(up{job="locust"}[10m])')
    assert users == 6, f"{scrapes:.0f} successful scrapes"
    assert prometheus.value(last.format('locust_c_engine_requests_total{job="locust"}')) >= total
    if processes:
        assert prometheus.value("max_over_time(locust_workers[10m])") == processes
        assert prometheus.value('max_over_time(locust_sut_memory_bytes{job="locust"}[10m])') > 0
        # Every query of the Grafana dashboard runs, and every panel has data.
        drawn = subprocess.run(
            [sys.executable, str(RENDER), "--prometheus", f"http://127.0.0.1:{prometheus.port}", "--start",
             str(started), "--end", str(time.time()), "--out", str(tmp_path / "dashboard.png")],
            capture_output=True, text=True, timeout=120)
        assert drawn.returncode == 0, drawn.stderr
        panels = re.search(r"\((\d+) panels, (\d+) with data\)", drawn.stdout)
        assert panels is not None and panels.group(1) == panels.group(2), drawn.stdout
        assert (tmp_path / "dashboard.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("locustfile_text", [LOCUSTFILE, "FASTHTTP"], ids=["fastcuser", "fasthttpuser"])
def test_a_worker_serves_its_own_totals(tmp_path: Path, testserver, scraped, locustfile_text: str) -> None:
    """Locust empties a worker's table with every report to its master: its own /metrics still counts up."""
    prometheus, port = scraped
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(FASTHTTP_LOCUSTFILE if locustfile_text == "FASTHTTP" else locustfile_text)
    results = tmp_path / "results.json"
    master_port = free_port()
    common = [sys.executable, "-m", "locust", "-f", str(locustfile), "--only-summary"]
    worker = subprocess.Popen(
        [*common, "--worker", "--master-port", str(master_port), "--prometheus-port", str(port),
         "--prometheus-host", "127.0.0.1", "--prometheus-linger", "10"],
        env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        master = run_locust(locustfile, "--master", "--master-bind-port", str(master_port), "--expect-workers", "1",
                            "-H", testserver.url, "-u", "3", "-r", "3", "-t", "8s", "--results-json", str(results))
        _, worker_err = worker.communicate(timeout=60)
    finally:
        worker.kill()
        worker.wait()
    assert master.returncode in (0, 1), master.stderr[-3000:]
    data = json.loads(results.read_text())
    last = "last_over_time({}[10m])"
    total = prometheus.value("sum(" + last.format('locust_requests_total{job="locust"}') + ")")
    assert total == data["total"]["num_requests"] > 50, worker_err[-2000:]
    assert prometheus.value("sum(" + last.format('locust_request_duration_seconds_count{job="locust"}') + ")") \
        == data["total"]["num_requests"]
    # Never counted down: no reset between two scrapes (Prometheus' resets() counts them).
    assert prometheus.value('sum(resets(locust_requests_total{job="locust"}[10m]))') == 0


FASTHTTP_LOCUSTFILE = """
import locust_c  # noqa: F401  (adds --prometheus-port)
from locust import FastHttpUser, constant, task


class Client(FastHttpUser):
    wait_time = constant(0.02)

    @task(3)
    def fast(self):
        self.client.get("/", name="/fast")

    @task
    def slow(self):
        self.client.get("/delay/25", name="/slow")
"""


def test_a_fasthttpuser_run_gets_the_same_metrics_from_locusts_stats(tmp_path: Path, testserver, scraped) -> None:
    prometheus, port = scraped
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(FASTHTTP_LOCUSTFILE)
    results = tmp_path / "results.json"
    run = run_locust(locustfile, "-H", testserver.url, "-u", "4", "-r", "4", "-t", "6s", "--prometheus-port",
                     str(port), "--prometheus-host", "127.0.0.1", "--prometheus-linger", "10",
                     "--results-json", str(results))
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(results.read_text())
    assert data["source"] == "locust"  # Locust's rounded response times: no exact histograms without FastCUser
    last = "last_over_time({}[10m])"
    assert prometheus.value("sum(" + last.format('locust_requests_total{job="locust"}') + ")") \
        == data["total"]["num_requests"] > 50
    p95 = prometheus.value("histogram_quantile(0.95, sum by (le) ("
                           + last.format('locust_request_duration_seconds_bucket{job="locust"}') + "))") * 1000
    lower, upper = bucket_around(data["total"]["p95_ms"])
    assert lower <= p95 <= upper, (p95, data["total"]["p95_ms"])
    assert prometheus.query('locust_c_engine_requests_total{job="locust"}') == []  # no engine in this run


def test_a_port_that_is_taken_stops_locust_before_any_load(tmp_path: Path, testserver) -> None:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    with socket_listening() as port:
        run = run_locust(locustfile, "-H", testserver.url, "-u", "1", "-t", "2s", "--prometheus-port", str(port),
                         "--prometheus-host", "127.0.0.1")
    assert run.returncode == 2
    assert f"locust-c: error: --prometheus-port {port}: cannot listen" in run.stderr


def test_locust_users_get_the_metrics_from_locusts_stats() -> None:
    """HttpUser and FastHttpUser endpoints have no exact histogram: their metrics come from Locust's table."""
    from locust.env import Environment

    from locust_c import FastCUser

    environment = Environment(user_classes=[FastCUser])
    environment.create_local_runner()
    stats = environment.runner.stats
    for ms in (3, 4, 40, 400):
        stats.log_request("GET", "/locust", ms, 10)
    stats.log_error("GET", "/locust", RuntimeError("boom"))
    metrics = {m.name: m for m in RunCollector(environment).collect()}
    samples = {(s.name, s.labels.get("le"), s.labels.get("quantile")): s.value
               for s in metrics["locust_request_duration_seconds"].samples}
    assert samples[("locust_request_duration_seconds_bucket", "0.005", None)] == 2
    assert samples[("locust_request_duration_seconds_bucket", "0.05", None)] == 3
    assert samples[("locust_request_duration_seconds_bucket", "+Inf", None)] == 4
    assert samples[("locust_request_duration_seconds_sum", None, None)] == pytest.approx(0.447)
    requests = {s.name: s.value for s in metrics["locust_requests"].samples}
    failures = {s.name: s.value for s in metrics["locust_failures"].samples}
    assert requests["locust_requests_total"] == 4 and failures["locust_failures_total"] == 1
    states = {s.labels["state"]: s.value for s in metrics["locust_runner_state"].samples}
    assert states["ready"] == 1 and sum(states.values()) == 1
    environment.runner.quit()


def test_an_open_model_run_exports_its_corrected_latencies_and_its_iterations() -> None:
    from locust.env import Environment

    from locust_c import FastCUser
    from locust_c.stats import StatsBridge

    environment = Environment(user_classes=[FastCUser])
    environment.create_local_runner()
    ep = StatsBridge.of(environment.runner.stats).endpoint("GET", "/open")
    ep.hist.record(2_000, 99)
    ep.corrected.record(2_000, 90)
    ep.corrected.record(400_000, 9)
    environment.locust_c_arrival = lambda: {"Visitor": {"rate": 300.0, "issued": 99, "late": 9, "dropped": 4}}
    metrics = {m.name: m for m in RunCollector(environment).collect()}
    buckets = {s.labels.get("le"): s.value for s in metrics["locust_request_corrected_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 90 and buckets["0.5"] == 99 and buckets["+Inf"] == 99
    quantiles = {s.labels["quantile"]: s.value
                 for s in metrics["locust_request_corrected_duration_quantile_seconds"].samples}
    assert quantiles["0.99"] == pytest.approx(0.4, rel=1e-3)
    service = {s.labels.get("le"): s.value for s in metrics["locust_request_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    assert service["0.005"] == 99  # the service times keep their own histogram
    values = {m: metrics[m].samples[0].value for m in ("locust_arrival_iterations", "locust_arrival_late_iterations",
                                                        "locust_arrival_dropped_iterations", "locust_arrival_rate")}
    assert values == {"locust_arrival_iterations": 99, "locust_arrival_late_iterations": 9,
                      "locust_arrival_dropped_iterations": 4, "locust_arrival_rate": 300.0}
