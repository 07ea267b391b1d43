"""The performance lab: real `locust-c lab` runs against the demo shop, one per misbehaviour switch and scenario.

Each switch of examples/shop/service.py must be caught by its gate, and the healthy shop must pass them all. The
runs are short (a few seconds, a few users) and most use one Locust process; `make lab WORKERS=2` runs the
distributed lab as a user would.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from test_gate_helpers import ROOT, child_env, cli

RUN = ("--users", "8", "--duration", "4s")


def lab(out: Path, *args: str, workers: int = 0) -> subprocess.CompletedProcess[str]:
    """``locust-c lab ARGS`` with its results in OUT."""
    return cli("lab", *args, "--workers", str(workers), "--out", str(out), timeout=180)


def verdict(out: str, endpoint: str, metric: str) -> str:
    """The SLA verdict printed for an endpoint's metric."""
    match = re.search(rf"^{re.escape(endpoint)} +{metric} +\S.*? (PASS|FAIL|SKIP)", out, re.MULTILINE)
    assert match, f"no verdict for {endpoint} {metric} in:\n{out}"
    return match.group(1)


def test_the_healthy_shop_passes_every_budget_and_buyers_place_orders(tmp_path: Path) -> None:
    run = lab(tmp_path, "run", *RUN)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "lab run: PASS (exit code 0)" in run.stdout and "SLA: all 13 budgets held" in run.stdout
    data = json.loads((tmp_path / "run.json").read_text())
    names = {f"{e['method']} {e['name']}": e for e in data["endpoints"]}
    # Browsers and buyers both ran: the funnel's every step, and checkouts that became orders.
    assert set(names) == {"GET /api/products", "GET /api/products/[id]", "GET /api/search", "POST /api/login",
                          "POST /api/cart", "POST /api/orders"}
    assert names["POST /api/orders"]["num_requests"] > 0 and data["total"]["num_failures"] == 0
    assert re.search(r"checkout: (\d+) orders of \1 checkouts", run.stdout)


# Each switch, and the verdict that must catch it (the others are judged too, but this one must fail).
SWITCHES = [
    ("--search-tail-ratio 0.5", "GET /api/search", "p95_ms"),
    ("--order-min-ms 300 --order-max-ms 400", "POST /api/orders", "p95_ms"),
    ("--order-error-ratio 0.5", "POST /api/orders", "error_rate"),
    ("--order-no-id-ratio 0.5", "POST /api/orders", "error_rate"),
    ("--stall-every 1 --stall-for 300", "GET /api/products", "p99_ms"),
]


@pytest.mark.parametrize(("switches", "endpoint", "metric"), SWITCHES, ids=[s[0].split()[0] for s in SWITCHES])
def test_each_misbehaviour_of_the_shop_is_caught_by_its_gate(
    tmp_path: Path, switches: str, endpoint: str, metric: str
) -> None:
    run = lab(tmp_path, "run", *RUN, "--shop-args", switches)
    assert run.returncode == 1, run.stdout + run.stderr
    assert verdict(run.stdout, endpoint, metric) == "FAIL"
    assert "lab run: FAIL (exit code 1)" in run.stdout
    if "no-id" in switches:  # a 200 that only reading the answer shows to be no order
        assert "checkout answered 200 without an order_id" in run.stdout + run.stderr


def test_a_shop_that_never_gets_ready_fails_the_readiness_gate_before_any_load(tmp_path: Path) -> None:
    run = lab(tmp_path, "smoke", "--ready-timeout", "1", "--shop-args", "--warmup 60")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "readiness: http://127.0.0.1:" in run.stdout and "is not ready after 1 s" in run.stdout
    assert "no load was sent" in run.stdout and not (tmp_path / "smoke.json").exists()


@pytest.mark.parametrize("duration", ["2.5s", "0", "1x", "h"])
def test_a_duration_locust_would_refuse_is_refused_before_any_process_starts(tmp_path: Path, duration: str) -> None:
    run = lab(tmp_path, "smoke", "--duration", duration)
    assert run.returncode == 2 and "is not a duration of whole seconds > 0" in run.stderr, run.stderr
    assert "lab: smoke:" not in run.stdout and not (tmp_path / "smoke.json").exists()


def test_a_malformed_sla_file_is_one_line_and_exit_code_2_before_any_process_starts(tmp_path: Path) -> None:
    sla = tmp_path / "slas.yml"
    sla.write_text("defaults:\n  p95: 1\n")
    run = lab(tmp_path, "smoke", "--sla-file", str(sla))
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"locust-c lab: error: {sla}:2: defaults: unknown key 'p95'")
    assert "lab: smoke:" not in run.stdout and "is ready" not in run.stdout


def test_leak_test_catches_the_leaky_shop_and_passes_the_clean_one(tmp_path: Path) -> None:
    run = lab(tmp_path, "leak-test", "--users", "4", "--duration", "4s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"leaky shop: .* KB/s: leaking, as expected", run.stdout)
    assert re.search(r"clean shop: .* KB/s: no leak, as expected", run.stdout)


def test_baseline_then_compare_judges_three_runs_against_it(tmp_path: Path) -> None:
    missing = lab(tmp_path, "compare", *RUN)
    assert missing.returncode == 2 and "no baseline yet: run the baseline scenario first" in missing.stderr
    base = lab(tmp_path, "baseline", *RUN)
    assert base.returncode == 0, base.stdout + base.stderr
    assert f"baseline written: {tmp_path / 'baseline.json'}" in base.stdout
    # The same shop with slow checkouts: its p95 grows far beyond the 20 % compare allows.
    slow = lab(tmp_path, "compare", "--users", "8", "--duration", "3s",
               "--shop-args", "--order-min-ms 400 --order-max-ms 500")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert re.search(r"POST /api/orders +p95", slow.stdout) and "Regression gate: FAIL" in slow.stdout
    assert all((tmp_path / f"compare-{n}.json").exists() for n in (1, 2, 3))


def test_stress_reports_each_windows_users_and_where_the_budgets_broke(tmp_path: Path) -> None:
    run = lab(tmp_path, "stress", "--users", "2", "--duration", "6s", "--shop-args", "--stall-every 2 --stall-for 200")
    assert run.returncode == 1, run.stdout + run.stderr
    rows = re.findall(r"^ +(\d+) users +\d+/s +p95", run.stdout, re.MULTILINE)
    assert len(rows) >= 3 and max(map(int, rows)) == 8  # the ramp to 4 × 2 users, window by window
    assert "first breached at" in run.stdout


def test_spike_judges_the_windows_before_during_and_after_the_spike(tmp_path: Path) -> None:
    run = lab(tmp_path, "spike", "--users", "2", "--duration", "8s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"worst p95 per window: before the spike [\d.]+ ms, during the spike [\d.]+ ms, "
                     r"after the spike [\d.]+ ms", run.stdout)
    assert "recovered: p95 after the spike is back near p95 before it" in run.stdout
    assert json.loads((tmp_path / "spike.json").read_text())["user_count"] == 10  # 5 × 2 at the top


def test_soak_holds_the_users_and_hunts_a_leak_in_the_shop(tmp_path: Path) -> None:
    clean = lab(tmp_path, "soak", "--users", "4", "--duration", "5s")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert re.search(r"memory of the shop: .* KB/s: no leak", clean.stdout)
    leaky = lab(tmp_path, "soak", "--users", "4", "--duration", "5s", "--shop-args", "--leak-kb-per-request 200")
    assert leaky.returncode == 1, leaky.stdout + leaky.stderr
    assert re.search(r"memory of the shop: .* KB/s: leaking", leaky.stdout)
    assert "SLA: all 13 budgets held" in leaky.stdout  # the leak alone fails it


def test_make_lab_runs_a_master_and_two_workers(tmp_path: Path) -> None:
    run = subprocess.run(["make", "--no-print-directory", "lab", "WORKERS=2", "USERS=8", "DURATION=5s",
                          f"LAB_OUT={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=240,
                         env=child_env())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "8 users for 5 s, 2 workers" in run.stdout and "lab run: PASS (exit code 0)" in run.stdout
    assert json.loads((tmp_path / "run.json").read_text())["user_count"] == 8
