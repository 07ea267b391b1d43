"""FastCUser under the real `locust` command: tasks, TaskSets, tags, events, shapes, reports, processes, workers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILES = Path(__file__).resolve().parent / "locustfiles"


def locust(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "locust", *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=ROOT)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stats_rows(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_stats.csv") as f:
        return {f"{row['Type']} {row['Name']}".strip(): row for row in csv.DictReader(f)}


def test_headless_run_with_reports(testserver, tmp_path):
    log = tmp_path / "log.jsonl"
    prefix = tmp_path / "run"
    html = tmp_path / "report.html"
    proc = locust("-f", str(LOCUSTFILES / "features.py"), "--headless", "-u", "6", "-r", "6", "-t", "3s",
                  "--host", testserver.url, "--csv", str(prefix), "--html", str(html), "--json",
                  env={"FEATURES_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = read_log(log)
    names = [e["event"] for e in events]
    assert names[0] == "init" and "test_start" in names and "test_stop" in names and names[-1] == "quitting"
    seen = next(e for e in events if e["event"] == "test_stop")["seen"]
    for key in ("GET on_start ok", "GET seq1 ok", "POST seq2 ok", "GET /echo/nested ok", "GET expected404 ok",
                "POST /echo/rest ok", "GET idle ok"):
        assert seen.get(key, 0) > 0, (key, seen)
    assert "GET on_stop ok" in seen  # on_stop still makes requests when the run stops users

    # --json prints Locust's final stats: they hold exactly the requests the listener saw.
    final = {f"{s['method']} {s['name']}": s for s in json.loads(proc.stdout)}
    assert final["GET seq1"]["num_requests"] == seen["GET seq1 ok"]
    assert final["GET expected404"]["num_failures"] == 0
    assert sum(s["num_requests"] for s in final.values()) == sum(seen.values())
    # The CSV is rewritten once a second by Locust, so it may miss the last second, but it has every row.
    rows = stats_rows(prefix)
    assert {"GET seq1", "POST seq2", "GET /echo/nested", "Aggregated"} <= rows.keys()
    assert "seq1" in html.read_text()


def test_tags_select_tasks(testserver, tmp_path):
    log = tmp_path / "log.jsonl"
    proc = locust("-f", str(LOCUSTFILES / "features.py"), "--headless", "-u", "4", "-r", "4", "-t", "2s",
                  "--host", testserver.url, "--tags", "tagged", env={"FEATURES_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = next(e for e in read_log(log) if e["event"] == "test_stop")["seen"]
    task_keys = {k for k in seen if not k.startswith(("GET on_start", "GET on_stop"))}
    assert task_keys <= {"GET expected404 ok", "GET idle ok"} and task_keys


def test_failures_set_the_exit_code(testserver, tmp_path):
    locustfile = tmp_path / "failing.py"
    locustfile.write_text(
        "from locust import task, constant\nfrom locust_c import FastCUser\n\n"
        "class U(FastCUser):\n    wait_time = constant(0.05)\n\n"
        "    @task\n    def boom(self):\n        self.client.get('/status/500')\n"
    )
    prefix = tmp_path / "fail"
    # Long enough that both users run even when this machine is slow to start Locust (2 s once left no request).
    proc = locust("-f", str(locustfile), "--headless", "-u", "2", "-r", "2", "-t", "4s", "--host", testserver.url,
                  "--csv", str(prefix))
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = stats_rows(prefix)
    assert int(rows["GET /status/500"]["Failure Count"]) == int(rows["GET /status/500"]["Request Count"]) > 0
    with open(f"{prefix}_failures.csv") as f:
        assert "BadStatusCode" in f.read()


def test_load_shape_drives_and_ends_the_run(testserver, tmp_path):
    prefix = tmp_path / "shape"
    proc = locust("-f", str(LOCUSTFILES / "shape.py"), "--headless", "--host", testserver.url, "--csv", str(prefix))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(stats_rows(prefix)["GET /"]["Request Count"]) > 0
    assert "Shape test updating to 6 users" in proc.stderr or "6 users" in proc.stderr


def test_processes(testserver, tmp_path):
    prefix = tmp_path / "procs"
    proc = locust("-f", str(LOCUSTFILES / "simple.py"), "--headless", "--processes", "2", "-u", "4", "-r", "4",
                  "-t", "3s", "--host", testserver.url, "--csv", str(prefix))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["Aggregated"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0


def test_master_and_worker(testserver, tmp_path):
    prefix = tmp_path / "dist"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / "simple.py"), "--master", "--headless",
         "--expect-workers", "1", "--master-bind-port", str(port), "-u", "4", "-r", "4", "-t", "3s",
         "--host", testserver.url, "--csv", str(prefix)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / "simple.py"), "--worker",
         "--master-port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = master.communicate(timeout=60)
        worker.communicate(timeout=30)
    finally:
        for p in (master, worker):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert master.returncode == 0, err[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["Aggregated"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0


@pytest.mark.parametrize("users", [1000])
def test_many_users_wait_at_once_without_blocking_the_hub(testserver, users):
    """1,000 users each waiting on a 2 s response are all in flight at the same moment."""
    import gevent
    from helpers import Recorder, session

    rec = Recorder()
    sessions = [session(testserver.url, rec)[0] for _ in range(users)]
    try:
        testserver.reset_stats()
        greenlets = [gevent.spawn(s.get, "/delay/2000") for s in sessions]
        gevent.joinall(greenlets, timeout=60, raise_error=True)
        assert all(g.value.status_code == 200 for g in greenlets)
        assert testserver.stats()["peak_open_requests"] == users
        assert len(rec.calls) == users
    finally:
        for s in sessions:
            s.close()


def test_users_stopped_mid_request_by_a_shape_and_at_exit(testserver, tmp_path):
    """Requests that never answer are cancelled when users stop; Locust exits cleanly, without a traceback."""
    before = testserver.stats()["connections_open"]
    proc = locust("-f", str(LOCUSTFILES / "hang.py"), "--headless", "--host", testserver.url, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    import time

    for _ in range(100):  # the stopped users' connections were closed, not left hanging
        if testserver.stats()["connections_open"] <= before:
            break
        time.sleep(0.05)
    assert testserver.stats()["connections_open"] <= before


def test_web_ui_runs_and_stops_fastcusers(testserver):
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / "simple.py"), "--web-host", "127.0.0.1",
         "--web-port", str(port), "--autostart", "-u", "3", "-r", "3", "--host", testserver.url],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        stats: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/stats/requests", timeout=2) as r:
                    stats = json.loads(r.read())
                if stats.get("stats") and stats["stats"][-1]["num_requests"] > 20:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        total = stats["stats"][-1]
        assert total["name"] == "Aggregated" and total["num_requests"] > 20 and total["num_failures"] == 0
        with urllib.request.urlopen(urllib.request.Request(f"{base}/stop", data=b"", method="POST"), timeout=5) as r:
            assert json.loads(r.read())["success"]
        state = None
        for _ in range(100):
            with urllib.request.urlopen(f"{base}/stats/requests", timeout=5) as r:
                state = json.loads(r.read())["state"]
            if state == "stopped":
                break
            time.sleep(0.1)
        assert state == "stopped"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err[-3000:]


def test_a_pytest_style_locustfile_runs_on_the_c_engine_through_csession(testserver, tmp_path):
    """Locust's pytest plugin gives tests session and fastsession; locust-c's gives csession. The same file runs
    under `locust -f` (each test a user's task) and under pytest. (Copied out of the project, whose pytest settings
    turn warnings into errors, which Locust's own loading of the file does not expect.)"""
    import shutil

    locustfile = tmp_path / "test_shop.py"
    shutil.copy(LOCUSTFILES / "pytest_style.py", locustfile)  # a test_ name: Locust loads it as pytest-style
    prefix = tmp_path / "pytest_style"
    proc = locust("-f", str(locustfile), "--headless", "-u", "2", "-r", "2", "-t", "4s", "--host", testserver.url,
                  "--csv", str(prefix))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["GET /"]["Request Count"]) > 0 and int(rows["POST /echo"]["Failure Count"]) == 0
    under_pytest = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(locustfile),
                                   "--host", testserver.url], capture_output=True, text=True, timeout=60,
                                  cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert under_pytest.returncode == 0, under_pytest.stdout[-3000:]


def test_an_httpuser_locustfile_runs_with_only_its_import_changed(testserver, tmp_path):
    """client.headers in on_start, a login cookie read with response.cookies, a multipart upload, requests'
    HTTPError caught: an HttpUser locustfile under `locust --headless`, every check passing."""
    prefix = tmp_path / "run"
    proc = locust("-f", str(LOCUSTFILES / "httpuser_style.py"), "--headless", "-u", "4", "-r", "4", "-t", "3s",
                  "--host", testserver.url, "--csv", str(prefix))
    rows = stats_rows(prefix)
    for name in ("GET /login", "GET /cart", "POST /upload", "GET /whoami"):
        assert int(rows[name]["Request Count"]) > 0 and int(rows[name]["Failure Count"]) == 0, (name, rows[name])
    # The deliberate 503s are the only failures, in one row of the failures table whatever their URL.
    assert int(rows["GET /flaky"]["Failure Count"]) == int(rows["GET /flaky"]["Request Count"]) > 0
    with open(f"{prefix}_failures.csv") as f:
        failures = list(csv.DictReader(f))
    assert [(row["Name"], row["Error"]) for row in failures] == [("/flaky", "BadStatusCode(code=503)")]
    assert proc.returncode == 1  # Locust's exit code for a run with failures
