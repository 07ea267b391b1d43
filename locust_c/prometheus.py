"""``--prometheus-port``: the run's statistics as Prometheus metrics, read from the C histograms at scrape time.

Nothing is done per request: a :class:`RunCollector` reads, when Prometheus scrapes, what the run already keeps:

* Locust's stats table for the counters (requests, failures, response bytes per ``method``/``name``), so they
  equal Locust's totals and ``--results-json``'s exactly;
* locust-c's exact histograms for the latency of FastCUser endpoints: a Prometheus histogram with buckets chosen
  for load testing (:data:`BUCKETS_MS`), and the whole run's exact p50/p90/p95/p99 as gauges. Endpoints measured
  by other user classes (``HttpUser``, ``FastHttpUser``) get the same metrics from Locust's rounded buckets;
* the users per user class, the runner's state, the number of workers (on a master), the engines' own counters,
  and the memory of the service the leak hunter watches (``--leak-pid``/``--leak-cgroup``) with its trend so far.

In distributed runs the master serves the totals of all workers (their stats and histograms reach it with every
worker report, and so do their engines' counters); a worker given the option serves its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .engine import sum_counters
from .stats import BOUNDS_US, BUCKETS_MS

if TYPE_CHECKING:
    from locust.env import Environment

logger = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.95, 0.99)
_LE = [f"{b / 1000:g}" for b in BUCKETS_MS]
STATES = ("ready", "spawning", "running", "cleanup", "stopping", "stopped", "missing")


class RunCollector(Collector):
    """Collects one Locust environment's metrics when the registry is scraped."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.worker_engines: dict[str, dict[str, int]] = {}  # a master's: the last counters each worker sent
        self.reported: WorkerTotals | None = None  # a worker's: what it has reported to its master
        self.scrapes = 0

    def describe(self) -> list[Metric]:
        # Without describe(), registering would call collect() once, before the runner exists.
        return []

    def collect(self) -> Iterator[Metric]:
        environment = self.environment
        runner = environment.runner
        if runner is None:
            return
        self.scrapes += 1
        yield from self._endpoints(environment)
        yield from self._runner(runner)
        yield from self._engines(runner)
        yield from self._memory(environment)

    # ---- per endpoint

    def _endpoints(self, environment: Environment) -> Iterator[Metric]:
        from .stats import StatsBridge, locust_stats

        stats = locust_stats(environment)
        bridge = StatsBridge.of(stats)
        labels = ["method", "name"]
        requests = CounterMetricFamily("locust_requests", "Requests per endpoint, as Locust counts them.",
                                       labels=labels)
        failures = CounterMetricFamily("locust_failures", "Failed requests per endpoint.", labels=labels)
        sizes = CounterMetricFamily("locust_response_bytes", "Response body bytes per endpoint.", labels=labels)
        duration = HistogramMetricFamily(
            "locust_request_duration_seconds", "Response time per endpoint (locust-c's exact histograms "
            "for FastCUser, Locust's rounded buckets otherwise).", labels=labels)
        quantiles = GaugeMetricFamily(
            "locust_request_duration_quantile_seconds", "The whole run's response-time percentiles per endpoint.",
            labels=[*labels, "quantile"])
        corrected = HistogramMetricFamily(
            "locust_request_corrected_duration_seconds", "Latency per endpoint from when each request's "
            "iteration was due to its last byte (arrival_rate users: the open model's latency).", labels=labels)
        corrected_quantiles = GaugeMetricFamily(
            "locust_request_corrected_duration_quantile_seconds", "The whole run's corrected-latency percentiles "
            "per endpoint.", labels=[*labels, "quantile"])
        if self.reported is not None:
            entries = self.reported.with_current(stats, bridge.generation)
        else:
            entries = {(method or "", name): entry for (name, method), entry in stats.entries.items()}
        for method, name in sorted(entries.keys() | bridge.endpoints.keys(), key=lambda k: (k[1], k[0])):
            entry = entries.get((method, name))
            ep = bridge.endpoints.get((method, name))
            values = [method, name]
            if entry is not None:
                requests.add_metric(values, entry.num_requests)
                failures.add_metric(values, entry.num_failures)
                sizes.add_metric(values, entry.total_content_length)
            hist = ep.hist if ep is not None and ep.hist.count else None
            if hist is not None:
                cumulative = hist.cumulative(BOUNDS_US)
                buckets = [*zip(_LE, cumulative, strict=True), ("+Inf", hist.count)]
                duration.add_metric(values, buckets, hist.sum / 1e6)
                for q in QUANTILES:
                    quantiles.add_metric([*values, f"{q:g}"], hist.percentile(q * 100) / 1e6)
            elif entry is not None and entry.num_requests - entry.num_none_requests > 0:
                duration.add_metric(values, _locust_buckets(entry.response_times), entry.total_response_time / 1000)
                for q in QUANTILES:
                    quantiles.add_metric([*values, f"{q:g}"], entry.get_response_time_percentile(q) / 1000)
            if ep is not None and ep.corrected.count:
                c = ep.corrected
                buckets = [*zip(_LE, c.cumulative(BOUNDS_US), strict=True), ("+Inf", c.count)]
                corrected.add_metric(values, buckets, c.sum / 1e6)
                for q in QUANTILES:
                    corrected_quantiles.add_metric([*values, f"{q:g}"], c.percentile(q * 100) / 1e6)
        yield from (requests, failures, sizes, duration, quantiles)
        if corrected.samples:
            yield from (corrected, corrected_quantiles)
        yield from self._arrivals(environment)

    def _arrivals(self, environment: Environment) -> Iterator[Metric]:
        totals = getattr(environment, "locust_c_arrival", None)
        totals = totals() if totals is not None else {}
        if not totals:
            return
        labels = ["user_class"]
        families = {
            "issued": CounterMetricFamily("locust_arrival_iterations", "Open-model iterations handed to a user "
                                          "per user class (arrival_rate).", labels=labels),
            "cancelled": CounterMetricFamily("locust_arrival_cancelled_iterations", "Of them, never run: their "
                                             "user was stopped while it waited for the due time.", labels=labels),
            "unstarted": CounterMetricFamily("locust_arrival_unstarted_iterations", "Due in the last max_lag "
                                             "before the test ended, when every user was busy.", labels=labels),
            "late": CounterMetricFamily("locust_arrival_late_iterations", "Of them, started after their due "
                                        "time.", labels=labels),
            "dropped": CounterMetricFamily("locust_arrival_dropped_iterations", "Iterations that could not start "
                                           "within max_lag of their due time: every user was busy.", labels=labels),
            "rate": GaugeMetricFamily("locust_arrival_rate", "The iterations per second asked for.", labels=labels),
        }
        for user_class, tally in sorted(totals.items()):
            for key, family in families.items():
                family.add_metric([user_class], tally.get(key, 0))
        yield from families.values()

    # ---- the run

    def _runner(self, runner: Any) -> Iterator[Metric]:
        from locust.runners import MasterRunner

        users = GaugeMetricFamily("locust_users", "Running users per user class.", labels=["user_class"])
        counts = runner.reported_user_classes_count if isinstance(runner, MasterRunner) else runner.user_classes_count
        for user_class, count in sorted(counts.items()):
            users.add_metric([user_class], count)
        yield users
        state = GaugeMetricFamily("locust_runner_state", "1 for the runner's current state.", labels=["state"])
        current = str(runner.state)
        for name in (*STATES, *(() if current in STATES else (current,))):
            state.add_metric([name], 1.0 if name == current else 0.0)
        yield state
        if isinstance(runner, MasterRunner):
            yield GaugeMetricFamily("locust_workers", "Connected workers.", value=runner.worker_count)

    def _engines(self, runner: Any) -> Iterator[Metric]:
        from locust.runners import MasterRunner

        from . import engine

        if isinstance(runner, MasterRunner):
            # A worker that has gone keeps its part of the request counter, not of the gauges.
            alive = runner.clients.keys()
            counters = sum_counters(c for client_id, c in self.worker_engines.items() if client_id in alive)
            submitted = sum_counters(self.worker_engines.values()).get("submitted", 0)
        else:
            counters = engine.counters()
            submitted = counters.get("submitted", 0)
        if not counters and not submitted:
            return
        yield GaugeMetricFamily("locust_c_engine_in_flight_requests", "Requests the engines are working on.",
                                value=counters.get("in_flight", 0))
        yield GaugeMetricFamily("locust_c_engine_connections", "Open connections of the native HTTP/1.1 transport.",
                                value=counters.get("native_open", 0))
        yield GaugeMetricFamily("locust_c_engine_users", "Simulated users (clients) the engines hold.",
                                value=counters.get("clients", 0))
        yield GaugeMetricFamily("locust_c_engine_set_aside_users", "Idle users whose per-user state is set aside.",
                                value=counters.get("set_aside", 0))
        yield CounterMetricFamily("locust_c_engine_requests", "Requests submitted to the engines.",
                                  value=submitted)

    def _memory(self, environment: Environment) -> Iterator[Metric]:
        gate = getattr(environment, "locust_c_gate", None)
        watch = getattr(gate, "leak", None)
        if watch is None or not watch.samples:
            return
        yield GaugeMetricFamily("locust_sut_memory_bytes", f"The service's memory ({watch.source.description}).",
                                value=watch.samples[-1].bytes)
        from .gate.leak import KB, MB

        yield GaugeMetricFamily("locust_sut_memory_slope_budget_bytes_per_second",
                                "The leak hunter's slope budget (--leak-max-slope-kb-s).",
                                value=watch.budget.max_slope_kb_s * KB)
        fit = watch.fit()
        if fit is not None:
            slope = fit.slope_kb_s * KB
            yield GaugeMetricFamily("locust_sut_memory_slope_bytes_per_second",
                                    "The slope of the leak hunter's trend so far (warm-up discarded).", value=slope)
            yield GaugeMetricFamily("locust_sut_memory_trend_bytes", "The leak hunter's trend line at the latest "
                                    "sample: drawn under the memory, it shows the fit.",
                                    value=fit.intercept_mb * MB + slope * watch.samples[-1].t)


class WorkerTotals:
    """What a worker has reported to its master so far. Locust empties a worker's stats table with every report
    (every 3 s), so a worker's own /metrics adds what it sent to what it has recorded since."""

    def __init__(self) -> None:
        from locust.stats import RequestStats

        self.stats = RequestStats()
        self.generation = 0

    def add(self, data: dict[str, Any], generation: int) -> None:
        """Keep a report's entries (``report_to_master``'s data, after Locust has filled it in)."""
        from locust.stats import StatsEntry

        self._check(generation)
        for entry_data in data.get("stats") or ():
            entry = StatsEntry.unserialize(entry_data, self.stats)
            key = (entry.name, entry.method)
            if key not in self.stats.entries:
                self.stats.entries[key] = StatsEntry(self.stats, entry.name, entry.method)
            self.stats.entries[key].extend(entry)

    def with_current(self, stats: Any, generation: int) -> dict[tuple[str, str], Any]:
        """(method, name) -> a StatsEntry of everything: reported, and recorded since the last report."""
        from locust.stats import StatsEntry

        self._check(generation)
        out: dict[tuple[str, str], Any] = {}
        for table in (self.stats, stats):
            for (name, method), entry in table.entries.items():
                key = (method or "", name)
                merged = out.get(key)
                if merged is None:
                    merged = out[key] = StatsEntry(self.stats, name, method)
                merged.extend(entry)
        return out

    def _check(self, generation: int) -> None:
        if generation != self.generation:  # the worker's statistics were reset or a new test began
            self.stats.clear_all()
            self.generation = generation


def _locust_buckets(response_times: dict[int, int]) -> list[tuple[str, float]]:
    """Locust's rounded response times (ms -> count) as cumulative Prometheus buckets."""
    counts = [0] * len(BUCKETS_MS)
    total = 0
    for ms, n in response_times.items():
        total += n
        for i, bound in enumerate(BUCKETS_MS):
            if ms <= bound:
                counts[i] += n
                break
    buckets, seen = [], 0
    for le, n in zip(_LE, counts, strict=True):
        seen += n
        buckets.append((le, seen))
    buckets.append(("+Inf", total))
    return buckets


class PrometheusServer:
    """``/metrics`` for one environment, served by gevent's WSGI server in Locust's own event loop, so that a
    scrape reads the statistics between two greenlet switches and never races the users."""

    def __init__(self, environment: Environment, host: str, port: int) -> None:
        from gevent import pywsgi

        self.collector = RunCollector(environment)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.registry.register(ProcessCollector(registry=None))
        app = make_wsgi_app(self.registry)
        self.server = pywsgi.WSGIServer((host, port), app, log=None, error_log=logger)

    def start(self) -> None:
        """Bind and serve (OSError when the port is taken)."""
        self.server.start()

    @property
    def port(self) -> int:
        return self.server.server_port

    def linger(self, seconds: float) -> None:
        """Keep serving until the next scrape (the run's final numbers) or for ``seconds``, whichever is first."""
        import gevent

        seen = self.collector.scrapes
        deadline = time.monotonic() + seconds
        while self.collector.scrapes == seen and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def stop(self) -> None:
        self.server.stop(timeout=1)
