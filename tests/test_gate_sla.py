"""SLA budgets: parsing slas.yml (every bad-input path), the verdicts, and `locust-c gate` on recorded runs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from test_gate_helpers import DATA, ROOT, child_env, cli, endpoint, recorded, write_json

from locust_c.__main__ import main
from locust_c.gate import BadInput
from locust_c.gate.results import load_run, run_from_dict
from locust_c.gate.sla import FAIL, PASS, SKIP, evaluate, load_sla, parse_sla

TODAY = dt.date(2026, 6, 1)

SLA = """\
defaults:
  p95_ms: 500
  error_rate: 0.01
endpoints:
  "GET /api/products":
    p95_ms: 200
    p99_ms: 400
  "GET /api/search":
    p95_ms: 100
  "POST /api/orders":
    p95_ms: 800
    skip_until: 2027-01-31
    skip_reason: "search migration, #1234"
total:
  error_rate: 0.01
  min_rps: 50
"""


def verdicts(sla: str, run_path: Path = DATA / "shop.json", today: dt.date = TODAY) -> dict[tuple[str, str], str]:
    result = evaluate(parse_sla(sla, "slas.yml"), load_run(str(run_path)), today=today)
    return {(v.endpoint, v.metric): v.status for v in result.verdicts}


def test_the_issue_example_parses() -> None:
    spec = parse_sla(SLA, "slas.yml")
    assert spec.defaults is not None and spec.defaults.limits == {"p95_ms": 500, "error_rate": 0.01}
    assert spec.endpoints["GET /api/products"].limits == {"p95_ms": 200, "p99_ms": 400}
    orders = spec.endpoints["POST /api/orders"]
    assert orders.skip_until == dt.date(2027, 1, 31) and orders.skip_reason == "search migration, #1234"
    assert spec.total is not None and spec.total.limits == {"error_rate": 0.01, "min_rps": 50}


def test_example_file_in_the_repo_parses() -> None:
    spec = load_sla(str(ROOT / "examples" / "slas.yml"))
    assert "GET /api/search" in spec.endpoints


def test_verdicts_pass_fail_skip_defaults_and_total() -> None:
    got = verdicts(SLA)
    assert got[("GET /api/products", "p95_ms")] == PASS
    assert got[("GET /api/products", "p99_ms")] == PASS
    assert ("GET /api/products", "error_rate") not in got  # an endpoint with an entry of its own skips defaults
    assert got[("GET /api/search", "p95_ms")] == FAIL  # 300 ms against 100
    assert got[("GET /api/products/[id]", "p95_ms")] == PASS  # defaults
    assert got[("GET /api/products/[id]", "error_rate")] == PASS
    assert got[("POST /api/orders", "p95_ms")] == SKIP
    assert got[("Aggregated", "error_rate")] == PASS
    assert got[("Aggregated", "min_rps")] == PASS  # about 70/s against a floor of 50


def test_min_rps_is_a_floor_and_error_rate_a_fraction() -> None:
    got = verdicts("total:\n  min_rps: 1000\n  error_rate: 0.001\n")
    assert got == {("Aggregated", "min_rps"): FAIL, ("Aggregated", "error_rate"): FAIL}


def test_a_skip_ends_after_its_date() -> None:
    sla = 'endpoints:\n  "POST /api/orders":\n    p95_ms: 10\n    skip_until: 2026-06-01\n'
    assert verdicts(sla, today=dt.date(2026, 6, 1)) == {("POST /api/orders", "p95_ms"): SKIP}
    result = evaluate(parse_sla(sla, "s.yml"), load_run(str(DATA / "shop.json")), today=dt.date(2026, 6, 2))
    assert [v.status for v in result.verdicts] == [FAIL]
    assert "has passed" in result.verdicts[0].note
    assert any("skip_until 2026-06-01" in w for w in result.warnings)


def test_an_entry_that_matches_nothing_is_a_warning_with_a_suggestion() -> None:
    sla = 'endpoints:\n  "GET /api/product":\n    p95_ms: 10\n'
    result = evaluate(parse_sla(sla, "s.yml"), load_run(str(DATA / "shop.json")), today=TODAY)
    assert result.passed and result.verdicts == []
    assert result.warnings == [
        "s.yml: 'GET /api/product' matches no endpoint of the run, not checked; did you mean 'GET /api/products'?"
    ]


def test_a_metric_the_csv_lacks_is_bad_input(tmp_path: Path) -> None:
    lines = (DATA / "shop_stats.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "99%"]
    (tmp_path / "r_stats.csv").write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines))
    run = load_run(str(tmp_path / "r"))
    with pytest.raises(BadInput, match="has no '99%' column, so p99_ms"):
        evaluate(parse_sla("total:\n  p99_ms: 5\n", "s.yml"), run)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "s.yml: the file is empty, expected a mapping with defaults, endpoints, total"),
        ("- 1\n- 2\n", "s.yml:1: the file is a list, expected a mapping"),
        ("defaults:\n  p95_ms: [1\n", "s.yml:3: not valid YAML"),
        ("defaults:\n  p95_ms: 5\ntotals:\n  min_rps: 1\n", "s.yml:3: unknown key 'totals'"),
        ("defaults:\n  p95: 5\n", "s.yml:2: defaults: unknown key 'p95' (expected one of: p50_ms"),
        ("defaults:\n  p95_ms: fast\n", "s.yml:2: defaults: p95_ms is 'fast', expected a number"),
        ("defaults:\n  p95_ms: true\n", "s.yml:2: defaults: p95_ms is True, expected a number"),
        ("defaults:\n  p95_ms: -1\n", "s.yml:2: defaults: p95_ms is -1, expected a number >= 0"),
        ("total:\n  error_rate: 5\n", "s.yml:2: total: error_rate is 5, expected a fraction of requests"),
        ("defaults:\n", "s.yml:1: defaults is empty, expected a mapping of metrics"),
        ("defaults: 5\n", "s.yml:1: defaults is 5, expected a mapping"),
        ("total:\n  skip_until: 2027-01-01\n", "s.yml:2: total sets no budget"),
        ('endpoints:\n  "/api/x":\n    p95_ms: 1\n', "s.yml:2: endpoints: '/api/x' is not an endpoint name"),
        ("endpoints:\n  Aggregated:\n    p95_ms: 1\n", "s.yml:2: endpoints: 'Aggregated' is budgeted under 'total:'"),
        (
            'endpoints:\n  "GET /a":\n    p95_ms: 1\n  "GET /a":\n    p95_ms: 2\n',
            "s.yml:4: endpoints has the key 'GET /a' twice",
        ),
        (
            'endpoints:\n  "GET /a":\n    p95_ms: 1\n    skip_until: soon\n',
            "s.yml:4: endpoints: 'GET /a': skip_until is 'soon', expected a date YYYY-MM-DD",
        ),
        (
            'endpoints:\n  "GET /a":\n    p95_ms: 1\n    skip_reason: later\n',
            "s.yml:4: endpoints: 'GET /a': skip_reason without skip_until",
        ),
        ("endpoints:\n", "s.yml: no budgets"),
        ("defaults:\n  p95_ms: 1\n---\ntotal:\n  p95_ms: 1\n", "s.yml:3: not valid YAML"),
    ],
)
def test_every_malformed_sla_names_file_line_and_expectation(text: str, expected: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_sla(text, "s.yml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = 'defaults: &d\n  p95_ms: 100\nendpoints:\n  "GET /a":\n    <<: *d\n    p99_ms: 300\n'
    spec = parse_sla(text, "s.yml")
    assert spec.endpoints["GET /a"].limits == {"p95_ms": 100, "p99_ms": 300}


# ---------------------------------------------------------------------------------------------------- the command


def write_sla(tmp_path: Path, text: str = SLA) -> str:
    (tmp_path / "slas.yml").write_text(text)
    return str(tmp_path / "slas.yml")


def test_gate_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sla = write_sla(tmp_path, 'endpoints:\n  "GET /api/products":\n    p95_ms: 200\n')
    assert main(["gate", "--sla-file", sla, str(DATA / "shop.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"GET /api/products +p95_ms +<= 200 ms +2.0 ms +PASS", out)
    assert out.rstrip().endswith("SLA gate: PASS (1 budgets checked)")


def test_gate_fails_on_json_and_on_csv_and_writes_the_step_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    sla = write_sla(tmp_path)
    for results in (str(DATA / "shop.json"), str(DATA / "shop")):
        assert main(["gate", "--sla-file", sla, results, "--today", "2026-06-01"]) == 1
        out = capsys.readouterr().out
        assert re.search(r"GET /api/search +p95_ms +<= 100 ms +300 ms +FAIL", out)
        assert re.search(r"POST /api/orders +p95_ms +<= 800 ms +130 ms +SKIP +until 2027-01-31: search migration", out)
        assert "SLA gate: FAIL (1 of" in out
    markdown = summary.read_text()
    assert markdown.count("### SLA gate: FAIL") == 2
    assert "| GET /api/search | p95_ms | <= 100 ms | 300 ms | **FAIL** |  |" in markdown


def test_gate_warns_but_passes_when_an_entry_matches_nothing(tmp_path: Path, capsys) -> None:
    sla = write_sla(tmp_path, 'endpoints:\n  "GET /nothing":\n    p95_ms: 1\n')
    assert main(["gate", "--sla-file", sla, str(DATA / "shop.json")]) == 0
    assert "warning:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("sla_text", "results", "expected"),
    [
        (None, "shop.json", "slas.yml: no such SLA file"),
        ("defaults:\n  p95: 1\n", "shop.json", "slas.yml:2: defaults: unknown key 'p95'"),
        (SLA, "nothing.json", "nothing.json: no such results file"),
        (SLA, "nothing", "neither a results JSON file nor a Locust CSV prefix"),
    ],
    ids=["missing-sla", "malformed-sla", "missing-json", "missing-prefix"],
)
def test_gate_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sla_text: str | None, results: str, expected: str
) -> None:
    sla = write_sla(tmp_path, sla_text) if sla_text is not None else str(tmp_path / "slas.yml")
    path = DATA / results if results.startswith("shop") else tmp_path / results
    assert main(["gate", "--sla-file", sla, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("locust-c gate: error: ") and expected in err


def test_gate_as_a_real_command(tmp_path: Path) -> None:
    """The console entry point end to end: a child process, its stdout, stderr and exit codes."""
    sla = write_sla(tmp_path)
    failing = cli("gate", "--sla-file", sla, str(DATA / "shop_stats.csv"))
    assert failing.returncode == 1, failing.stderr
    assert "SLA gate: FAIL" in failing.stdout
    data = recorded()
    endpoint(data, "GET /api/search")["p95_ms"] = 40
    passing = cli("gate", "--sla-file", sla, write_json(tmp_path / "fixed.json", data), env=child_env())
    assert passing.returncode == 0, passing.stdout + passing.stderr
    bad = cli("gate", "--sla-file", str(tmp_path / "absent.yml"), str(DATA / "shop.json"))
    assert bad.returncode == 2 and "absent.yml: no such SLA file" in bad.stderr


def test_a_corrected_budget_on_a_run_without_due_times_fails_and_says_why() -> None:
    # The recorded shop run is a closed-model one: it has no corrected latencies to judge.
    result = evaluate(parse_sla("total:\n  p99_corrected_ms: 1000\n  p99_ms: 1000\n", "slas.yml"),
                      run_from_dict(recorded()))
    got = {v.metric: v for v in result.verdicts}
    assert got["p99_ms"].status == PASS
    assert got["p99_corrected_ms"].status == FAIL and "no arrival_rate users" in got["p99_corrected_ms"].note
    data = recorded()
    data["total"]["p99_corrected_ms"] = 450.0  # an open-model run's
    got = {v.metric: v.status for v in evaluate(parse_sla("total:\n  p99_corrected_ms: 400\n", "slas.yml"),
                                                run_from_dict(data)).verdicts}
    assert got == {"p99_corrected_ms": FAIL}
