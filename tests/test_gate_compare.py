"""Regression against a baseline: every verdict of `locust-c compare`, merging by median, noise, baselines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_gate_helpers import DATA, cli, endpoint, recorded, write_json

from locust_c.__main__ import main
from locust_c.gate.compare import FAIL, PASS, WARN, coefficient_of_variation, compare, merge_runs
from locust_c.gate.results import load_run

BASELINE = str(DATA / "shop.json")


def variant(tmp_path: Path, name: str, **changes: dict[str, Any]) -> str:
    """The recorded run with some endpoint fields changed: variant(p, "x", **{"GET /api/search": {"p95_ms": 9}})."""
    data = recorded()
    for key, fields in changes.items():
        endpoint(data, key).update(fields)
    return write_json(tmp_path / f"{name}.json", data)


def run_compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_same_run_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_compare(capsys, BASELINE, BASELINE)
    assert code == 0
    assert out.rstrip().endswith("Regression gate: PASS")
    assert re.search(r"POST /api/orders +p95_ms +130 ms +130 ms +\+0\.0 % +<= \+20 % +PASS", out)


def test_p95_growth_fails_above_20_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slower = variant(tmp_path, "slower", **{"POST /api/orders": {"p95_ms": 200}})
    code, out = run_compare(capsys, BASELINE, slower)
    assert code == 1
    assert re.search(r"POST /api/orders +p95_ms +130 ms +200 ms +\+53\.8 % +<= \+20 % +FAIL", out)
    assert "Regression gate: FAIL (1 regressions)" in out


def test_growth_within_the_limit_passes_and_the_limit_is_configurable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bit = variant(tmp_path, "a_bit", **{"POST /api/orders": {"p95_ms": 150}})  # +15 %
    assert run_compare(capsys, BASELINE, a_bit)[0] == 0
    assert run_compare(capsys, BASELINE, a_bit, "--max-p95-growth", "10")[0] == 1


def test_throughput_drop_fails_above_10_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rps = recorded()["total"]["rps"]
    slower = variant(tmp_path, "drop", Aggregated={"rps": rps * 0.85})
    code, out = run_compare(capsys, BASELINE, slower)
    assert code == 1
    assert re.search(r"Aggregated +rps +\S+ +\S+ +-15\.0 % +>= -10 % +FAIL", out)
    assert run_compare(capsys, BASELINE, slower, "--max-rps-drop", "20")[0] == 0


def test_error_rate_increase_fails_above_one_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worse = variant(tmp_path, "errors", **{"GET /api/search": {"error_rate": 0.015, "num_failures": 1}})
    code, out = run_compare(capsys, BASELINE, worse)
    assert code == 1
    assert re.search(r"GET /api/search +error_rate +0\.00 % +1\.50 % +\+1\.50 pt +<= \+1\.00 pt +FAIL", out)
    assert run_compare(capsys, BASELINE, worse, "--max-error-increase", "2")[0] == 0


def test_several_current_runs_are_merged_by_median(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [
        variant(tmp_path, f"c{i}", **{"POST /api/orders": {"p95_ms": p95}}, Aggregated={"p95_ms": 61})
        for i, p95 in enumerate((128, 400, 132))
    ]
    code, out = run_compare(capsys, BASELINE, *runs, "--max-cv", "100")
    assert code == 0, out  # the median, 132 ms, is within +20 % of 130 ms; the 400 ms outlier is not used
    assert re.search(r"POST /api/orders +p95_ms +130 ms +132 ms", out)
    merged = merge_runs([load_run(r) for r in runs])
    assert merged.count == 3 and merged.run.by_key()["POST /api/orders"].p95_ms == 132


def test_a_noisy_environment_turns_a_regression_into_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [
        variant(tmp_path, f"n{i}", **{"POST /api/orders": {"p95_ms": 300}}, Aggregated={"p95_ms": p95})
        for i, p95 in enumerate((40, 61, 90))
    ]
    code, out = run_compare(capsys, BASELINE, *runs)
    assert code == 0
    assert re.search(r"POST /api/orders +p95_ms .* WARN +environment too noisy to tell", out)
    assert "noise: current: p95 of Aggregated varies 39 % across 3 runs (limit 15 %)" in out
    assert "Regression gate: WARN" in out
    # Raising the noise limit makes the same runs a failure again.
    assert run_compare(capsys, BASELINE, *runs, "--max-cv", "50")[0] == 1


def test_several_baselines_merge_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = variant(tmp_path, "b2", **{"POST /api/orders": {"p95_ms": 140}})
    third = variant(tmp_path, "b3", **{"POST /api/orders": {"p95_ms": 500}})
    current = variant(tmp_path, "cur", **{"POST /api/orders": {"p95_ms": 165}})  # +18 % over the median 140
    code, out = run_compare(capsys, BASELINE, current, "--baseline", other, "--baseline", third, "--max-cv", "100")
    assert code == 0, out
    assert "median of 3 runs" in out


def test_new_and_missing_endpoints_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = recorded()
    data["endpoints"] = [e for e in data["endpoints"] if e["name"] != "/api/search"]
    data["endpoints"].append({**data["endpoints"][0], "method": "GET", "name": "/api/cart"})
    code, out = run_compare(capsys, BASELINE, write_json(tmp_path / "cur.json", data))
    assert code == 0
    assert "new in current: GET /api/cart" in out
    assert "missing from current: GET /api/search" in out


def test_update_baseline_writes_the_merged_current_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = variant(tmp_path, "baseline", **{"POST /api/orders": {"p95_ms": 100}})
    currents = [variant(tmp_path, f"c{i}", **{"POST /api/orders": {"p95_ms": v}}) for i, v in enumerate((101, 99, 102))]
    code, out = run_compare(capsys, baseline, *currents, "--update-baseline", "--max-cv", "100")
    assert code == 0 and f"Baseline updated: {baseline}" in out
    assert load_run(baseline).by_key()["POST /api/orders"].p95_ms == 101
    elsewhere = tmp_path / "new-baseline.json"
    assert run_compare(capsys, baseline, currents[0], "--update-baseline", str(elsewhere))[0] == 0
    assert json.loads(elsewhere.read_text())["format"] == "locust-c-results/1"


def test_update_baseline_creates_a_missing_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "first.json"
    code, out = run_compare(capsys, str(baseline), str(DATA / "shop"), "--update-baseline")
    assert code == 0 and "No baseline at" in out
    assert load_run(str(baseline)).total.num_requests == load_run(str(DATA / "shop")).total.num_requests


def test_csv_runs_compare_with_json_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_compare(capsys, str(DATA / "shop"), BASELINE, "--max-p95-growth", "1000", "--max-rps-drop", "50")
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{tmp}/absent.json", BASELINE], "absent.json: no such results file"),
        ([BASELINE, "{tmp}/absent"], "neither a results JSON file nor a Locust CSV prefix"),
        ([str(DATA / "shop"), BASELINE, "--update-baseline"], "cannot be replaced; give --update-baseline FILE.json"),
    ],
    ids=["missing-baseline", "missing-current", "csv-baseline-update"],
)
def test_compare_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, out = run_compare(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and "locust-c compare: error:" in out and expected in out


def test_compare_as_a_real_command(tmp_path: Path) -> None:
    slower = variant(tmp_path, "slower", **{"POST /api/orders": {"p95_ms": 400}})
    assert cli("compare", BASELINE, BASELINE).returncode == 0
    failing = cli("compare", BASELINE, slower)
    assert failing.returncode == 1 and "Regression gate: FAIL" in failing.stdout


def test_unit_compare_statuses() -> None:
    base = merge_runs([load_run(BASELINE)])
    assert {r.status for r in compare(base, base).rows} == {PASS}
    assert coefficient_of_variation([1.0]) is None
    assert coefficient_of_variation([0.0, 0.0]) == 0.0
    assert coefficient_of_variation([100.0, 100.0, 100.0]) == 0.0
    assert FAIL != WARN
