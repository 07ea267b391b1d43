"""``locust-c history``: change points over a history of results files (Apache Otava's E-divisive)."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from pathlib import Path

import pytest
from test_gate_helpers import recorded

from locust_c.__main__ import main
from locust_c.gate import BadInput
from locust_c.gate.history import find_shifts, load_history

CV = 0.03  # run-to-run noise of a latency percentile on this machine (bench/results.md: a few percent)
START = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)


def write_history(directory: Path, p95_of_search: list[float], seed: int = 7, jsonl: bool = False) -> None:
    """One results file per night: the recorded shop run, its numbers wobbling by CV, GET /api/search's p95 as
    given (also wobbling)."""
    rng = random.Random(seed)
    directory.mkdir(exist_ok=True)
    lines = []
    for night, p95 in enumerate(p95_of_search):
        data = recorded()
        data["start_time"] = (START + dt.timedelta(days=night)).isoformat(timespec="seconds")
        data["commit"] = f"{night:02d}" + "c0ffee" * 6
        for row in [*data["endpoints"], data["total"]]:
            for key in ("p50_ms", "p95_ms", "p99_ms", "rps"):
                if row.get(key):
                    row[key] *= rng.gauss(1, CV)
            if row["name"] == "/api/search":
                row["p95_ms"] = p95 * rng.gauss(1, CV)
        if jsonl:
            lines.append(json.dumps(data))
        else:
            # Named so that the file order is not the time order: the history sorts by start time.
            (directory / f"run-{(night * 7) % 30:02d}-{night}.json").write_text(json.dumps(data))
    if jsonl:
        (directory / "history.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_step_is_found_at_the_run_where_it_began(tmp_path: Path, seed: int) -> None:
    write_history(tmp_path / "h", [100.0] * 20 + [112.0] * 10, seed=seed)
    runs = load_history(str(tmp_path / "h"))
    assert [r.data["start_time"][:10] for r in runs][:2] == ["2026-11-01", "2026-11-02"]
    shifts = find_shifts(runs)
    search = [s for s in shifts if s.endpoint == "GET /api/search" and s.metric == "p95_ms"]
    # At its run, or next to it when that night's noise already looked like the step (3 % noise, 12 % step).
    assert len(search) == 1 and abs(search[0].index - 20) <= 1, search
    # The segments' means: 12 %, give or take what 3 % noise leaves in means of 10 and 20 runs (1.2 % each way).
    assert search[0].change == pytest.approx(0.12, abs=0.04) and search[0].latest and search[0].worse
    assert [s for s in shifts if s.endpoint != "GET /api/search"] == []


def test_the_command_reports_the_run_and_fails_on_the_latest_regression(tmp_path: Path, capsys) -> None:
    write_history(tmp_path / "h", [100.0] * 20 + [112.0] * 10, seed=1)
    assert main(["history", str(tmp_path / "h"), "--plot", str(tmp_path / "plots")]) == 1
    out = capsys.readouterr().out
    assert "GET /api/search  p95_ms" in out and "from run 21 (20c0ffee" in out and "FAIL: 1 series" in out
    assert (tmp_path / "plots" / "p95_ms.png").read_bytes()[:4] == b"\x89PNG"
    # A threshold above the step passes it.
    assert main(["history", str(tmp_path / "h"), "--threshold", "0.2"]) == 0


def test_thirty_runs_of_noise_have_no_change_point(tmp_path: Path, capsys) -> None:
    for seed in (1, 2, 3):
        write_history(tmp_path / f"noise{seed}", [100.0] * 30, seed=seed)
        assert find_shifts(load_history(str(tmp_path / f"noise{seed}"))) == []
    assert main(["history", str(tmp_path / "noise1")]) == 0
    assert "no change point in any series" in capsys.readouterr().out


def test_an_improvement_is_a_change_point_but_not_a_failure(tmp_path: Path, capsys) -> None:
    write_history(tmp_path / "h", [100.0] * 15 + [80.0] * 15, jsonl=True)
    assert main(["history", str(tmp_path / "h" / "history.jsonl")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"GET /api/search  p95_ms: .*\(-(19|20|21)\.\d%\) from run 16 ", out), out
    assert "PASS" in out


def test_an_endpoint_missing_from_some_runs_is_followed_where_it_exists(tmp_path: Path) -> None:
    write_history(tmp_path / "h", [100.0] * 12 + [130.0] * 12)
    for i, path in enumerate(sorted((tmp_path / "h").iterdir())):
        if i % 3 == 0:  # an endpoint the locustfile did not reach that night
            data = json.loads(path.read_text())
            data["endpoints"] = [e for e in data["endpoints"] if e["name"] != "/api/search"]
            path.write_text(json.dumps(data))
    shifts = [s for s in find_shifts(load_history(str(tmp_path / "h"))) if s.endpoint == "GET /api/search"]
    assert [s.metric for s in shifts] == ["p95_ms"] and 11 <= shifts[0].index <= 13


def test_a_single_run_is_no_history_yet(tmp_path: Path, capsys) -> None:
    write_history(tmp_path / "h", [100.0])
    assert main(["history", str(tmp_path / "h")]) == 0
    assert "too few runs" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not valid JSON"),
    ('{"format": "other"}', "expected 'locust-c-results/1'"),
])
def test_a_malformed_file_is_bad_input_naming_it(tmp_path: Path, capsys, content: str, message: str) -> None:
    write_history(tmp_path / "h", [100.0] * 5)
    (tmp_path / "h" / "zz-broken.json").write_text(content)
    assert main(["history", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert "zz-broken.json" in err and message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(BadInput, match="no such directory"):
        load_history(str(tmp_path / "missing"))


def write_canary(tmp_path: Path) -> Path:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text("from locust import constant, task\nfrom locust_c import FastCUser\n\n\n"
                          "class Canary(FastCUser):\n    wait_time = constant(0.01)\n\n"
                          "    @task\n    def index(self):\n        self.client.get('/')\n")
    return locustfile


def test_a_long_run_writes_a_results_file_per_window_for_the_history(tmp_path: Path, testserver, capsys) -> None:
    from test_gate_helpers import locust as run_locust

    locustfile = write_canary(tmp_path)
    out = tmp_path / "canary.json"
    proc = run_locust(locustfile, "-H", testserver.url, "-u", "2", "-r", "2", "-t", "5s", "--results-json", str(out),
                      "--results-every", "1s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    windows = sorted((tmp_path / "canary-windows").iterdir())
    assert 3 <= len(windows) <= 5, windows
    runs = load_history(str(tmp_path / "canary-windows"))
    counts = [r.data["total"]["num_requests"] for r in runs]
    assert all(c > 0 for c in counts) and sum(counts) <= json.loads(out.read_text())["total"]["num_requests"]
    assert all(0.5 < r.data["run_time_s"] < 2.5 and r.data["source"] == "locust-c" for r in runs)
    assert main(["history", str(tmp_path / "canary-windows")]) == 0
    assert f"{len(runs)} runs, from " in capsys.readouterr().out


def test_results_every_needs_results_json(tmp_path: Path, testserver) -> None:
    from test_gate_helpers import locust as run_locust

    locustfile = write_canary(tmp_path)
    proc = run_locust(locustfile, "-H", testserver.url, "-t", "1s", "--results-every", "5m")
    assert proc.returncode == 2 and "--results-every: needs --results-json" in proc.stderr


def test_a_results_file_names_the_commit_and_branch_it_tested(monkeypatch, tmp_path: Path) -> None:
    import subprocess

    from locust_c.results import run_identity

    monkeypatch.setenv("GITHUB_SHA", "abc123")
    monkeypatch.setenv("GITHUB_REF_NAME", "feature/x")
    assert run_identity() == ("abc123", "feature/x")
    monkeypatch.delenv("GITHUB_SHA")
    monkeypatch.delenv("GITHUB_REF_NAME")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "nightly"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    assert run_identity() == (head, "nightly")
    monkeypatch.chdir(tmp_path)  # not a repository: no identity, no error
    assert run_identity() == (None, None)
