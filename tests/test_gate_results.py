"""Loading result files: the --results-json format and Locust's CSV, and every way they can be bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gate_helpers import DATA, recorded, write_json

from locust_c.gate import BadInput
from locust_c.gate.results import FORMAT, load_csv, load_json, load_run, save_json


def test_json_recorded_from_a_real_run_loads() -> None:
    run = load_run(str(DATA / "shop.json"))
    assert run.source == "locust"
    assert run.user_count == 10
    keys = [e.key for e in run.endpoints]
    assert keys == ["POST /api/orders", "GET /api/products", "GET /api/products/[id]", "GET /api/search"]
    assert run.total.key == "Aggregated"
    orders = run.by_key()["POST /api/orders"]
    assert orders.num_failures >= 1 and orders.error_rate == pytest.approx(orders.num_failures / orders.num_requests)
    assert orders.metric("min_rps") == orders.rps
    assert not run.missing_metrics


def test_csv_prefix_and_stats_file_load_the_same() -> None:
    by_prefix = load_run(str(DATA / "shop"))
    by_file = load_run(str(DATA / "shop_stats.csv"))
    assert by_prefix == by_file
    search = by_prefix.by_key()["GET /api/search"]
    assert search.p95_ms == 300 and search.p50_ms == 1
    assert by_prefix.total.num_requests == sum(e.num_requests for e in by_prefix.endpoints)
    assert by_prefix.source == "locust-csv"


def test_csv_with_fewer_percentile_columns_lists_them_missing(tmp_path: Path) -> None:
    text = (
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
        "Max Response Time,Average Content Size,Requests/s,Failures/s,95%\n"
        "GET,/a,10,0,5,5.5,1,9,10,2.0,0,9\n"
        ",Aggregated,0,0,0,0,0,0,0,0,0,N/A\n"
    )
    (tmp_path / "r_stats.csv").write_text(text)
    run = load_csv(str(tmp_path / "r_stats.csv"))
    assert run.missing_metrics == {"p90_ms", "p99_ms", "p999_ms"}
    assert run.endpoints[0].p50_ms == 5  # from Median Response Time
    assert run.total.p95_ms is None  # Locust writes N/A when there were no requests


def test_save_json_round_trips(tmp_path: Path) -> None:
    run = load_run(str(DATA / "shop.json"))
    save_json(run, str(tmp_path / "sub" / "copy.json"))
    again = load_json(str(tmp_path / "sub" / "copy.json"))
    assert again.endpoints == run.endpoints and again.total == run.total
    assert json.loads((tmp_path / "sub" / "copy.json").read_text())["format"] == FORMAT


def _bad_format(tmp_path: Path) -> str:
    data = recorded()
    data["format"] = "something-else/2"
    return write_json(tmp_path / "r.json", data)


def _missing_key(tmp_path: Path) -> str:
    data = recorded()
    del data["endpoints"][1]["num_requests"]
    return write_json(tmp_path / "r.json", data)


def _wrong_type(tmp_path: Path) -> str:
    data = recorded()
    data["endpoints"][0]["p95_ms"] = "fast"
    return write_json(tmp_path / "r.json", data)


def _not_json(tmp_path: Path) -> str:
    (tmp_path / "r.json").write_text('{\n  "format": "locust-c-results/1",\n  oops\n}\n')
    return str(tmp_path / "r.json")


def _csv_not_locust(tmp_path: Path) -> str:
    (tmp_path / "r_stats.csv").write_text("a,b,c\n1,2,3\n")
    return str(tmp_path / "r")


def _csv_bad_number(tmp_path: Path) -> str:
    lines = (DATA / "shop_stats.csv").read_text().splitlines()
    cells = lines[2].split(",")  # the second data row, line 3 of the file
    cells[2] = "many"
    lines[2] = ",".join(cells)
    (tmp_path / "r_stats.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "r")


def _csv_no_total(tmp_path: Path) -> str:
    lines = (DATA / "shop_stats.csv").read_text().splitlines()
    (tmp_path / "r_stats.csv").write_text("\n".join(line for line in lines if "Aggregated" not in line) + "\n")
    return str(tmp_path / "r")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: str(p / "absent.json"), "absent.json: no such results file"),
        (lambda p: str(p / "absent"), "neither a results JSON file nor a Locust CSV prefix"),
        (_bad_format, "format is 'something-else/2', expected 'locust-c-results/1'"),
        (_missing_key, "endpoints[1] has no 'num_requests'"),
        (_wrong_type, "endpoints[0].p95_ms is 'fast', expected a number"),
        (_not_json, "r.json:3: not valid JSON"),
        (_csv_not_locust, "r_stats.csv:1: not a Locust stats CSV"),
        (_csv_bad_number, "r_stats.csv:3: column 'Request Count' is 'many', expected a number"),
        (_csv_no_total, "no Aggregated row"),
    ],
    ids=[
        "no-json",
        "no-prefix",
        "format",
        "missing-key",
        "wrong-type",
        "not-json",
        "not-csv",
        "csv-number",
        "no-total",
    ],
)
def test_bad_results_name_the_file_and_the_problem(tmp_path: Path, make, expected: str) -> None:
    with pytest.raises(BadInput) as caught:
        load_run(make(tmp_path))
    assert expected in str(caught.value)
