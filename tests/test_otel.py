"""Locust's ``--otel`` with FastCUser: every request counted in ``locust.client.duration``, from the C histograms.

A real ``locust --headless --otel`` run with the SDK's console exporter: the last export's data points must count
exactly the requests of Locust's own statistics, per name and error type, for FastCUser and for HttpUser in the
same run, while FastCUser's successes stay batched (no Python event per request). Then the producer's cumulative
and delta points on an SDK reader of the test's own, and ``--otel-propagate``'s ``traceparent``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import Recorder, local_user
from test_gate_helpers import child_env
from test_gate_helpers import locust as run_locust

LOCUSTFILE = """
from locust import HttpUser, constant, task

from locust_c import FastCUser


class Fast(FastCUser):
    wait_time = constant(0.005)

    @task(3)
    def fast(self):
        self.client.get("/", name="/fast")

    @task
    def missing(self):
        self.client.get("/status/404", name="/missing")

    def on_stop(self):
        print("BATCHABLE", self.client._reporter.batchable(), flush=True)


class Plain(HttpUser):
    wait_time = constant(0.02)

    @task
    def other(self):
        self.client.get("/json", name="/plain")
"""

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (the console exporter's and Locust's --json)."""
    decoder, i, docs = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i] != "{" and text[i] != "[":
            i += 1
        if i >= len(text):
            return docs
        try:
            doc, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        docs.append(doc)


def last_points(docs: list[Any], metric: str) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        for resource in doc.get("resource_metrics", ()):
            for scope in resource["scope_metrics"]:
                for m in scope["metrics"]:
                    if m["name"] == metric:
                        points = m["data"]["data_points"]
    return points


def test_otel_counts_every_request_of_the_run(tmp_path: Path, testserver) -> None:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    env = child_env(OTEL_METRICS_EXPORTER="console", OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
                    OTEL_METRIC_EXPORT_INTERVAL="1000")
    run = run_locust(locustfile, "-H", testserver.url, "-u", "4", "-r", "4", "-t", "3s", "--otel", "--json", env=env)
    assert run.returncode == 1, run.stderr[-3000:]  # the 404s are failures
    assert "OpenTelemetry enabled" in run.stderr
    docs = json_documents(run.stdout)
    stats = next(d for d in reversed(docs) if isinstance(d, list))
    by_name = {s["name"]: s for s in stats}
    points = {tuple(sorted(p["attributes"].items())): p for p in last_points(docs, "locust.client.duration")}

    fast = points[(("name", "/fast"),)]
    assert fast["count"] == by_name["/fast"]["num_requests"] > 50
    assert sum(fast["bucket_counts"]) == fast["count"]
    assert fast["sum"] * 1000 == pytest.approx(by_name["/fast"]["total_response_time"], rel=1e-3)
    failed = points[(("error.type", "BadStatusCode"), ("name", "/missing"))]
    assert failed["count"] == by_name["/missing"]["num_failures"] == by_name["/missing"]["num_requests"]
    assert (("name", "/missing"),) not in points  # every /missing failed: no success series
    plain = points[(("name", "/plain"),)]  # HttpUser: Locust's own listener, one record() per request
    assert plain["count"] == by_name["/plain"]["num_requests"] > 10

    users = {p["attributes"]["user_class"] for p in last_points(docs, "locust.users.count")}
    assert users == {"Fast", "Plain"}
    assert run.stdout.count("BATCHABLE True") == 2  # FastCUser's successes stayed batched under --otel


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_the_producer_gives_a_readers_temporality(testserver, temporality: str) -> None:
    """Successes and failures per name, cumulative or delta as the reader asks, starting again at a reset, with
    the provider's resource when the SDK collected nothing of its own."""
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    from locust_c import stats
    from locust_c.otel import DurationProducer, RequestListener

    wanted = AggregationTemporality.DELTA if temporality == "delta" else AggregationTemporality.CUMULATIVE
    reader = InMemoryMetricReader(preferred_temporality={Histogram: wanted})
    resource = Resource.create({"service.name": "producer-test"})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    user, env = local_user(testserver.url)
    listener = RequestListener(lambda **kw: None)
    env.events.request.add_listener(listener)
    stats.COVERED.add(id(listener))
    try:
        DurationProducer(env, listener, resource).attach(reader)

        def points() -> dict[tuple, Any]:
            data = reader.get_metrics_data()
            out = {}
            for rm in data.resource_metrics if data else ():
                assert rm.resource.attributes["service.name"] == "producer-test"
                for scope in rm.scope_metrics:
                    for metric in scope.metrics:
                        if metric.name == "locust.client.duration":
                            assert metric.data.aggregation_temporality == wanted
                            out.update({tuple(sorted(p.attributes.items())): p for p in metric.data.data_points})
            for p in out.values():
                assert sum(p.bucket_counts) == p.count and len(p.bucket_counts) == len(p.explicit_bounds) + 1
            return out

        ok, failed = (("name", "/p"),), (("error.type", "BadStatusCode"), ("name", "/p"))
        for _ in range(5):
            user.client.get("/", name="/p")
        for _ in range(2):
            user.client.get("/status/500", name="/p")
        first = points()
        assert first[ok].count == 5 and first[failed].count == 2
        for _ in range(3):
            user.client.get("/", name="/p")
        second = points()
        assert second[ok].count == (3 if temporality == "delta" else 8)
        assert failed not in second if temporality == "delta" else second[failed].count == 2

        env.runner.stats.reset_all()  # --reset-stats: every series starts again
        user.client.get("/", name="/p")
        third = points()
        assert third[ok].count == 1 and failed not in third
        assert third[ok].start_time_unix_nano > first[ok].start_time_unix_nano
    finally:
        stats.COVERED.discard(id(listener))
        user.client.close()
        env.runner.quit()
        provider.shutdown()


def test_names_past_locusts_cap_add_up_in_one_series(testserver) -> None:
    from locust import opentelemetry as locust_otel
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from locust_c.otel import TOO_MANY, DurationProducer, RequestListener

    names_before = set(locust_otel.request_names)
    locust_otel.request_names.clear()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    user, env = local_user(testserver.url)
    try:
        DurationProducer(env, RequestListener(lambda **kw: None)).attach(reader)
        for i in range(locust_otel.MAX_REQUEST_NAMES + 5):
            user.client.get("/", name=f"/n{i}")
        data = reader.get_metrics_data()
        points = [p for rm in data.resource_metrics for sc in rm.scope_metrics for m in sc.metrics
                  if m.name == "locust.client.duration" for p in m.data.data_points]
        by_name = {p.attributes["name"]: p.count for p in points}
        assert len(by_name) == locust_otel.MAX_REQUEST_NAMES + 1
        assert by_name[TOO_MANY] == 5 and sum(by_name.values()) == locust_otel.MAX_REQUEST_NAMES + 5
    finally:
        locust_otel.request_names.clear()
        locust_otel.request_names.update(names_before)
        user.client.close()
        env.runner.quit()
        provider.shutdown()


def test_otel_propagate_sends_a_traceparent_per_request(testserver) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from locust_c.otel import TracingSession

    recorder = Recorder()
    session = TracingSession(testserver.url, recorder.event, None)
    try:
        sent = [session.get("/echo").json()["headers"]["traceparent"] for _ in range(3)]
        matches = [TRACEPARENT.match(value) for value in sent]
        assert all(matches), sent
        assert len({m.group(2) for m in matches}) == 3  # a span id of its own for each request
        response = session.get("/echo")
        assert response.request.headers["traceparent"] == response.json()["headers"]["traceparent"]
        # A traceparent of the locustfile's own wins.
        own = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        assert session.get("/echo", headers={"Traceparent": own}).json()["headers"]["traceparent"] == own
        session.headers["TraceParent"] = own
        assert session.get("/echo").json()["headers"]["traceparent"] == own
        del session.headers["TraceParent"]

        tracer = TracerProvider().get_tracer("locustfile")
        with tracer.start_as_current_span("checkout") as span:
            inside = TRACEPARENT.match(session.get("/echo").json()["headers"]["traceparent"])
        assert inside is not None and inside.group(1) == f"{span.get_span_context().trace_id:032x}"
    finally:
        session.close()


PROPAGATE_LOCUSTFILE = """
import re

from locust import constant, task

from locust_c import FastCUser


class Traced(FastCUser):
    wait_time = constant(0.01)

    @task
    def echo(self):
        with self.client.get("/echo", catch_response=True) as response:
            if not re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", response.json()["headers"].get("traceparent", "")):
                response.failure("no traceparent")
"""


def test_the_otel_propagate_option_reaches_every_user(tmp_path: Path, testserver) -> None:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(PROPAGATE_LOCUSTFILE)
    run = run_locust(locustfile, "-H", testserver.url, "-u", "2", "-r", "2", "-t", "2s", "--otel-propagate", "--json")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    stats = next(d for d in reversed(json_documents(run.stdout)) if isinstance(d, list))
    assert stats[0]["num_requests"] > 10 and stats[0]["num_failures"] == 0
    plain = run_locust(locustfile, "-H", testserver.url, "-u", "1", "-r", "1", "-t", "1s", "--json")
    assert plain.returncode == 1  # without the option, no header: the check above is a real one
