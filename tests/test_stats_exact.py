"""The batched statistics are exact: Locust's own tables hold what per-request reporting would have put there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import gevent
import pytest
from helpers import free_port
from locust import constant, task
from locust.env import Environment
from locust.stats import bucket_response_time

from locust_c import FastCUser
from locust_c.stats import snapshot

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")

ROOT = Path(__file__).resolve().parent.parent


class Probe(FastCUser):
    wait_time = constant(0)

    @task
    def noop(self):
        pass


@pytest.fixture
def env(testserver):
    environment = Environment(user_classes=[Probe], host=testserver.url)
    environment.create_local_runner()
    yield environment
    environment.runner.quit()


def make_user(env):
    user_class = type("BoundProbe", (Probe,), {"host": env.host, "abstract": False})
    return user_class(env)


def test_batched_successes_match_locusts_own_accounting(env):
    user = make_user(env)
    handlers = list(env.events.request._handlers)
    assert len(handlers) == 1  # only Locust's recorder: the batched path is taken
    responses = []
    delays = [1, 5, 20, 60, 120] * 6

    def hit(ms):
        responses.append(user.client.get(f"/delay/{ms}", name="/delay"))

    gevent.joinall([gevent.spawn(hit, ms) for ms in delays], raise_error=True)
    assert all(r._result.recorded for r in responses)
    entry = env.stats.get("/delay", "GET")
    times = [r._result.response_time for r in responses]
    assert entry.num_requests == len(delays) and entry.num_failures == 0
    assert entry.response_times == Counter(bucket_response_time(t) for t in times)
    assert entry.total_response_time == pytest.approx(sum(times))
    assert entry.min_response_time == min(times) and entry.max_response_time == max(times)
    assert sum(entry.num_reqs_per_sec.values()) == len(delays)
    assert entry.total_content_length == sum(len(r.content) for r in responses)
    assert env.stats.total.num_requests == len(delays)
    user.client.close()


def test_a_request_is_in_the_stats_when_the_call_returns(env):
    user = make_user(env)
    for i in range(1, 6):
        user.client.get("/")
        assert env.stats.get("/", "GET").num_requests == i
    user.client.close()


def test_failures_and_catch_response_go_through_the_event(env):
    user = make_user(env)
    user.client.get("/status/500")
    with user.client.get("/", catch_response=True) as r:
        r.failure("no")
    entry = env.stats.get("/status/500", "GET")
    assert entry.num_requests == 1 and entry.num_failures == 1
    assert env.stats.get("/", "GET").num_failures == 1
    assert len(env.stats.errors) == 2
    user.client.close()


def test_a_listener_of_its_own_gets_every_request(env):
    user = make_user(env)
    seen = []
    env.events.request.add_listener(lambda **kw: seen.append(kw["name"]))
    for _ in range(7):
        user.client.get("/", name="seen")
    assert seen == ["seen"] * 7
    assert env.stats.get("seen", "GET").num_requests == 7
    user.client.close()


def test_snapshot_percentiles_agree_with_locust(env):
    user = make_user(env)
    delays = [2] * 50 + [40] * 40 + [150] * 9 + [400]
    gevent.joinall([gevent.spawn(user.client.get, f"/delay/{ms}", name="mix") for ms in delays], raise_error=True)
    user.client.get("/status/404", name="mix")
    snap = snapshot(env)
    row = next(r for r in snap["endpoints"] if r["name"] == "mix")
    entry = env.stats.get("mix", "GET")
    assert row["source"] == "locust-c"
    assert row["num_requests"] == entry.num_requests == 101 and row["num_failures"] == 1
    for key, p in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99)):
        locust_value = entry.get_response_time_percentile(p)
        # Locust rounds to ~2 significant digits; the histogram keeps 3.
        assert row[key] == pytest.approx(locust_value, rel=0.06, abs=1.0), key
    assert row["max_ms"] == pytest.approx(entry.max_response_time, rel=0.001)
    assert row["min_ms"] == pytest.approx(entry.min_response_time, rel=0.001)
    assert snap["total"]["source"] == "locust-c" and snap["total"]["num_requests"] == 101
    user.client.close()


def test_results_file_has_every_field_and_exact_source(testserver, tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "tests" / "locustfiles" / "simple.py"), "--headless",
         "-u", "3", "-r", "3", "-t", "2s", "--host", testserver.url, "--results-json", str(out), "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["source"] == "locust-c"
    for key in ("format", "locust_c_version", "locust_version", "host", "user_count", "start_time", "run_time_s",
                "endpoints", "total"):
        assert data[key] is not None, key
    assert data["host"] == testserver.url and data["user_count"] == 3
    final = {s["name"]: s["num_requests"] for s in json.loads(proc.stdout)}
    for row in data["endpoints"]:
        assert row["num_requests"] == final[row["name"]]
        for key in ("rps", "mean_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms",
                    "error_rate"):
            assert row[key] is not None, key
    assert data["total"]["num_requests"] == sum(final.values())
    assert data["endpoints"][0]["p99_ms"] >= data["endpoints"][0]["p50_ms"]


def test_master_with_two_workers_reports_their_sum(testserver, tmp_path):
    port = free_port()
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    locustfile = str(ROOT / "tests" / "locustfiles" / "simple.py")
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", locustfile, "--master", "--headless", "--expect-workers", "2",
         "--master-bind-port", str(port), "-u", "4", "-r", "4", "-t", "3s", "--host", testserver.url,
         "--results-json", str(out), "--json"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", locustfile, "--worker", "--master-port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        stdout, stderr = master.communicate(timeout=90)
        for w in workers:
            w.wait(timeout=30)
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert master.returncode == 0, stderr[-2000:]
    final = {s["name"]: s["num_requests"] for s in json.loads(stdout)}
    data = json.loads(out.read_text())
    assert data["source"] == "locust-c"  # the workers' histograms reached the master whole
    assert data["total"]["num_requests"] == sum(final.values()) > 0
    assert {r["name"]: r["num_requests"] for r in data["endpoints"]} == final


def test_histograms_reset_with_locusts_stats(env):
    user = make_user(env)
    for _ in range(5):
        user.client.get("/delay/30", name="r")
    env.stats.reset_all()  # what the web UI's reset and --reset-stats do
    for _ in range(3):
        user.client.get("/", name="r")
    row = next(r for r in snapshot(env)["endpoints"] if r["name"] == "r")
    assert row["num_requests"] == 3 and row["source"] == "locust-c"
    assert row["max_ms"] < 30  # the slow requests before the reset are gone from the histogram too
    user.client.close()



def test_histogram_counts_are_64_bit_and_merge_without_loss():
    """A soak merged from many workers puts more than 2**32 requests in one busy bucket."""
    from locust_c import _engine

    h = _engine.Histogram()
    h.record(5000)
    total, low, high, total_us, counts = h.sparse()
    busy = 3 * 2**32
    merged = _engine.Histogram()
    for _ in range(3):
        merged.add_sparse((2**32, low, high, total_us * 2**32, [counts[0], 2**32]))
    assert merged.count == busy and merged.sparse()[4] == [counts[0], busy]
    merged.record(9_000_000)  # one slow request lands in a part of the histogram not used before
    assert abs(merged.percentile(50) - 5000) <= 5
    assert merged.percentile(100) == 9_000_000


def test_an_endpoint_keeps_an_unsent_histogram_only_on_a_worker():
    from locust_c import _engine

    ep = _engine.Endpoint("GET", "/x")
    assert ep.unsent is None  # a local run or a master never reads it: no memory for it
    ep.track_unsent()
    assert ep.unsent is not None and ep.unsent.count == 0


def test_histogram_buckets_windows_and_spread_for_live_metrics():
    """What Prometheus, OpenTelemetry and the live gate read: cumulative counts at bucket bounds, the histogram
    of a time window (now minus then), and the standard deviation, all to the histogram's precision."""
    import random
    import statistics

    from locust_c import _engine

    rng = random.Random(7)
    values = [rng.randint(1, 400_000) for _ in range(20_000)]
    h, before = _engine.Histogram(), _engine.Histogram()
    for i, v in enumerate(values):
        h.record(v)
        if i < 8_000:
            before.record(v)
    bounds = [100, 1000, 2500, 25_000, 100_000, 300_000, 10**9]
    for bound, count in zip(bounds, h.cumulative(bounds), strict=True):
        exact = sum(v <= bound for v in values)
        assert abs(count - exact) <= 0.001 * len(values), (bound, count, exact)
    assert h.cumulative([10**9])[0] == len(values)
    with pytest.raises(ValueError, match="ascend"):
        h.cumulative([5, 4])

    window = h.copy()
    window.subtract(before)
    later = values[8_000:]
    assert window.count == len(later) and window.sum == sum(later)
    assert abs(window.percentile(95) - sorted(later)[int(0.95 * len(later)) - 1]) <= 0.001 * 400_000
    assert h.count == len(values)  # the copy is a copy
    with pytest.raises(ValueError, match="holds values"):
        before.subtract(h)
    assert abs(h.stddev() - statistics.stdev(values)) <= 0.001 * statistics.stdev(values)


@pytest.mark.parametrize("path", ["/", "/status/500"], ids=["success", "failure"])
def test_a_request_whose_user_was_stopped_is_not_counted(env, path):
    """A user stopped mid-request (Locust kills its greenlet) does not count that request, as with Locust's own
    users, even when the answer was already back and waiting to be dispatched: the statistics, Locust's and the
    exact histograms, must agree with each other (Prometheus and OpenTelemetry read both)."""
    from gevent.monkey import get_original

    blocking_sleep = get_original("time", "sleep")  # Locust made time.sleep gevent's
    user = make_user(env)
    user.client.get("/", name="/warm")  # connected: the next request takes the C path
    waiting = gevent.spawn(user.client.get, path, name="/cut")
    gevent.sleep(0)  # submitted; now waiting for its answer
    blocking_sleep(0.3)  # the hub does not run: the answer arrives and waits in the engine's queue
    waiting.kill()  # GreenletExit in the waiting user, before the hub dispatches the answer
    gevent.sleep(0.1)
    stats = env.runner.stats
    ep = stats._locust_c_bridge.endpoints.get(("GET", "/cut"))
    assert stats.entries.get(("/cut", "GET")) is None or stats.entries[("/cut", "GET")].num_requests == 0
    assert ep is None or ep.hist.count == 0
    user.client.get(path, name="/cut")  # the engine and the session go on as before
    assert ep is None or ep.hist.count == 1
    assert stats.entries[("/cut", "GET")].num_requests == 1
    user.client.close()
