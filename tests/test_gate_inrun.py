"""The in-run gate: real `locust --headless` runs against the demo shop with --sla-file, --results-json, --leak-pid.

The locustfiles use plain FastHttpUser and `import locust_c`, which registers the options.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import locust
import pytest
from test_gate_helpers import DATA, child_env, cli, shop
from test_gate_helpers import locust as run_locust

from locust_c.gate.results import load_run

LOCUSTFILE = """
import locust_c  # adds --sla-file, --results-json and --leak-pid
from locust import FastHttpUser, constant, task


class Shopper(FastHttpUser):
    wait_time = constant(0.02)

    @task(4)
    def products(self):
        self.client.get("/api/products")

    @task
    def order(self):
        self.client.post("/api/orders", json={"product": 1})
"""

# Orders sleep 50-150 ms, so a 20 ms p95 budget is always breached, and 1000 ms never is.
SLA = """
endpoints:
  "GET /api/products":
    p95_ms: 1000
    error_rate: 0.5
  "POST /api/orders":
    p95_ms: {orders_p95}
total:
  min_rps: 1
"""

LOAD = ("-u", "4", "-r", "4", "-t", "3s")


@pytest.fixture
def locustfile(tmp_path: Path) -> Path:
    path = tmp_path / "locustfile.py"
    path.write_text(LOCUSTFILE)
    return path


def write_sla(tmp_path: Path, orders_p95: int) -> str:
    (tmp_path / "slas.yml").write_text(SLA.format(orders_p95=orders_p95))
    return str(tmp_path / "slas.yml")


def test_importing_locust_c_registers_the_plugin() -> None:
    import locust_c
    import locust_c.plugin

    assert locust_c.plugin.add_options in locust.events.init_command_line_parser._handlers
    assert locust_c.plugin.on_init in locust.events.init._handlers


def test_a_breached_budget_fails_the_run(tmp_path: Path, locustfile: Path) -> None:
    summary = tmp_path / "summary.md"
    results = tmp_path / "out" / "results.json"
    sla = write_sla(tmp_path, orders_p95=20)
    with shop("--order-error-ratio", "0") as (url, _):
        run = run_locust(
            locustfile,
            *LOAD,
            "-H",
            url,
            "--sla-file",
            sla,
            "--results-json",
            str(results),
            "--csv",
            str(tmp_path / "run"),
            env=child_env(GITHUB_STEP_SUMMARY=str(summary)),
        )
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"POST /api/orders +p95_ms +<= 20\.0 ms +\d+ ms +FAIL", run.stdout)
    assert re.search(r"GET /api/products +p95_ms +<= 1000 ms +\S+ ms +PASS", run.stdout)
    assert re.search(r"Aggregated +min_rps +>= 1\.0/s +\S+/s +PASS", run.stdout)
    assert run.stdout.rstrip().endswith("SLA gate: FAIL (1 of 4 budgets breached)")
    assert "Shutting down (exit code 1)" in run.stderr
    assert "| POST /api/orders | p95_ms | <= 20.0 ms |" in summary.read_text()

    data = json.loads(results.read_text())
    assert data["format"] == "locust-c-results/1" and data["source"] == "locust"
    assert data["user_count"] == 4 and data["host"] == url and data["locust_version"] == locust.__version__
    assert {e["name"] for e in data["endpoints"]} == {"/api/products", "/api/orders"}
    assert data["total"]["name"] == "Aggregated" and data["total"]["method"] == ""
    run_json = load_run(str(results))
    assert run_json.total.num_requests == sum(e.num_requests for e in run_json.endpoints) > 0

    # The same budgets after the run, on the results JSON and on Locust's own CSV.
    for gated in (str(results), str(tmp_path / "run")):
        after = cli("gate", "--sla-file", sla, gated)
        assert after.returncode == 1, after.stdout + after.stderr
        assert re.search(r"POST /api/orders +p95_ms +<= 20\.0 ms +\d+ ms +FAIL", after.stdout)


def test_budgets_that_hold_pass_the_run(tmp_path: Path, locustfile: Path) -> None:
    sla = write_sla(tmp_path, orders_p95=1000)
    with shop("--order-error-ratio", "0") as (url, _):
        run = run_locust(locustfile, *LOAD, "-H", url, "--sla-file", sla)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.rstrip().endswith("SLA gate: PASS (4 budgets checked)")
    assert "FAIL" not in run.stdout


@pytest.mark.parametrize(
    ("sla_text", "expected"),
    [
        (None, "slas.yml: no such SLA file"),
        (
            'endpoints:\n  "GET /api/products":\n    p95_msec: 10\n',
            "slas.yml:3: endpoints: 'GET /api/products': unknown",
        ),
        ("defaults: [\n", "slas.yml:2: not valid YAML"),
    ],
    ids=["missing", "unknown-key", "not-yaml"],
)
def test_a_bad_sla_file_stops_locust_before_any_load(
    tmp_path: Path, locustfile: Path, sla_text: str | None, expected: str
) -> None:
    sla = tmp_path / "slas.yml"
    if sla_text is not None:
        sla.write_text(sla_text)
    results = tmp_path / "results.json"
    # Nothing listens on the host: a run that started would log connection errors.
    run = run_locust(
        locustfile, *LOAD, "-H", "http://127.0.0.1:9", "--sla-file", str(sla), "--results-json", str(results)
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"locust-c: error: {tmp_path}/{expected}" in run.stderr
    assert "Ramping to" not in run.stderr and "users spawned" not in run.stderr
    assert not results.exists()


def test_a_run_ended_by_sigterm_is_gated_too(tmp_path: Path, locustfile: Path) -> None:
    """SIGTERM (a cancelled CI job) ends Locust through 'quitting' without a test_stop first."""
    sla = write_sla(tmp_path, orders_p95=20)
    results = tmp_path / "results.json"
    with shop("--order-error-ratio", "0") as (url, _):
        command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary"]
        command += ["-u", "2", "-r", "2", "-t", "60s", "-H", url, "--sla-file", sla, "--results-json", str(results)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "users spawned" in line:
                    break
            time.sleep(1.5)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out + err
    assert re.search(r"POST /api/orders +p95_ms +<= 20\.0 ms +\d+ ms +FAIL", out)
    assert load_run(str(results)).total.num_requests > 0


def test_leak_pid_during_a_run(tmp_path: Path, locustfile: Path) -> None:
    plot = tmp_path / "memory.png"
    with shop("--leak-kb-per-request", "50", "--order-error-ratio", "0") as (url, service):
        run = run_locust(
            locustfile,
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "4s",
            "-H",
            url,
            "--leak-pid",
            str(service.pid),
            "--leak-interval",
            "0.2",
            "--leak-plot",
            str(plot),
        )
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"Leak hunter: RSS of PID {service.pid}" in run.stdout
    assert run.stdout.rstrip().endswith("Leak hunter: FAIL: memory is leaking")
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_leak_pid_that_does_not_exist_stops_locust(tmp_path: Path, locustfile: Path) -> None:
    run = run_locust(locustfile, *LOAD, "-H", "http://127.0.0.1:9", "--leak-pid", "99999999")
    assert run.returncode == 2
    assert "locust-c: error: --leak-pid 99999999: no process with PID 99999999" in run.stderr


def test_only_the_master_gates_a_distributed_run(tmp_path: Path, locustfile: Path) -> None:
    results = tmp_path / "results.json"
    sla = write_sla(tmp_path, orders_p95=20)
    with shop("--order-error-ratio", "0") as (url, _):
        run = run_locust(
            locustfile, *LOAD, "--processes", "2", "-H", url, "--sla-file", sla, "--results-json", str(results)
        )
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.count("SLA verdicts") == 1
    data = json.loads(results.read_text())
    assert data["total"]["num_requests"] > 0 and data["user_count"] == 4


def test_recorded_data_is_what_a_run_writes() -> None:
    """tests/data/shop.json was recorded by such a run; it must stay loadable by the current code."""
    assert load_run(str(DATA / "shop.json")).total.num_requests > 0


FASTC_LOCUSTFILE = """
from locust import constant, task

from locust_c import FastCUser


class Shopper(FastCUser):
    wait_time = constant(0.01)

    @task(3)
    def fast(self):
        self.client.get("/", name="/fast")

    @task
    def slow(self):
        self.client.get("/delay/60", name="/slow")
"""

# /slow takes 60 ms: a 30 ms p95 budget is breached and a 500 ms one is not; /fast always passes.
FASTC_SLA = """
endpoints:
  "GET /fast":
    p99_ms: 500
    error_rate: 0
  "GET /slow":
    p95_ms: {slow_p95}
"""


@pytest.mark.parametrize(("slow_p95", "code", "verdict"), [(30, 1, "FAIL"), (500, 0, "PASS")])
def test_fastcuser_run_is_gated_on_exact_percentiles(tmp_path: Path, testserver, slow_p95, code, verdict) -> None:
    locustfile = tmp_path / "fastc.py"
    locustfile.write_text(FASTC_LOCUSTFILE)
    sla = tmp_path / "slas.yml"
    sla.write_text(FASTC_SLA.format(slow_p95=slow_p95))
    results = tmp_path / "results.json"
    run = run_locust(locustfile, "--host", testserver.url, *LOAD, "--sla-file", str(sla),
                     "--results-json", str(results))
    assert run.returncode == code, run.stderr[-3000:]
    slow_row = next(line for line in run.stdout.splitlines() if "GET /slow" in line and "p95_ms" in line)
    assert verdict in slow_row
    data = json.loads(results.read_text())
    assert data["source"] == "locust-c"
    slow = next(e for e in data["endpoints"] if e["name"] == "/slow")
    assert 60 <= slow["p95_ms"] < 200
