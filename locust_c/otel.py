"""Locust's ``--otel`` for FastCUser: request durations read from the C histograms when the SDK collects.

Locust's own ``--otel`` records ``locust.client.duration`` with one ``Histogram.record()`` per request, from an
``events.request`` listener. That listener alone would switch FastCUser's batched statistics off and cost a Python
event per request. With FastCUser, locust-c puts its own listener in that one's place:

* requests of other user classes (``HttpUser``, ``FastHttpUser``) are handed to Locust's listener unchanged;
* a FastCUser request is in its endpoint's exact histogram already. Only a failed one is noted (its duration in a
  small histogram per name and error type): failures reach the listener anyway, as the request event;
* when a metric reader collects, :class:`DurationProducer` adds ``locust.client.duration`` data points made from
  those histograms: per request name a success series (the endpoint's histogram less its failures) and a series
  per ``error.type``, the attributes Locust's listener gives. The SDK has no public metric-producer hook in
  Python, so the producer wraps each reader's collect callback, the one place where the SDK assembles what a
  reader exports.

``locust.users.count`` is Locust's own observable gauge and needs nothing. As with Locust's listener, the
durations are exported by the processes that make the requests (the workers in a distributed run), not the
master.

``--otel-propagate`` adds a W3C ``traceparent`` header to every FastCUser request (see :class:`TracingSession`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _engine
from .session import FastCResponse, FastCSession
from .stats import BOUNDS_US, BUCKETS_MS

if TYPE_CHECKING:
    from locust.env import Environment

logger = logging.getLogger(__name__)

LOCUST_LISTENER = "setup_opentelemetry.<locals>.on_request"
TOO_MANY = "Too many unique request names"
BOUNDS_S = [b / 1000 for b in BUCKETS_MS]


class RequestListener:
    """Stands in for Locust's ``--otel`` request listener (see the module's docstring)."""

    def __init__(self, original: Any, generation: Callable[[], int] = lambda: 0) -> None:
        self.original = original
        self.failures: dict[tuple[str, str], Any] = {}  # (name, error type) -> _engine.Histogram
        self.generation = 0  # the statistics' generation the failures belong to (StatsBridge.generation)
        self.current_generation = generation

    def __call__(self, name: str, response_time: float | None, exception: BaseException | None,
                 response: Any = None, **kwargs: Any) -> None:
        if not isinstance(response, FastCResponse):
            self.original(name=name, response_time=response_time, exception=exception, response=response, **kwargs)
            return
        if exception is not None and response_time is not None:
            key = (name, exception.__class__.__name__)
            # A failure belongs to the statistics' current generation: a reset since the last one empties the
            # table before it goes in, not at the next collection (which would lose it).
            failures = self.failures_of(self.current_generation())
            hist = failures.get(key)
            if hist is None:
                hist = failures[key] = _engine.Histogram()
            # The engine recorded total_us / 1000 as the response time: this is the same microsecond value.
            hist.record(round(response_time * 1000))

    def failures_of(self, generation: int) -> dict[tuple[str, str], Any]:
        """The failures recorded since the statistics' last reset (older ones are forgotten)."""
        if generation != self.generation:
            self.failures.clear()
            self.generation = generation
        return self.failures


class DurationProducer:
    """Adds ``locust.client.duration`` points from the C histograms to what each metric reader collects.

    A cumulative reader gets the histograms since the statistics were last reset (the points' start time); a
    delta reader what was added since its previous collection. Both start again when the statistics are reset.
    """

    def __init__(self, environment: Environment, listener: RequestListener, resource: Any = None) -> None:
        self.environment = environment
        self.listener = listener
        self.resource = resource  # the MeterProvider's, for when the SDK collected nothing of its own
        self.generation = -1
        self.start_ns = time.time_ns()
        self.previous: dict[int, tuple[int, dict[tuple, Any]]] = {}  # per delta reader: (time, histograms)

    def attach(self, reader: Any) -> None:
        """Wrap ``reader``'s collect callback (set by the MeterProvider when the reader was registered)."""
        collect = reader._collect
        if collect is None or getattr(collect, "_locust_c", False):
            return

        def collect_with_durations(metric_reader: Any, timeout_millis: float = 10_000) -> Any:
            data = collect(metric_reader, timeout_millis=timeout_millis)
            try:
                return self.add_to(data, metric_reader)
            except Exception:
                logger.exception("locust-c: cannot add FastCUser's request durations to the OpenTelemetry metrics")
                return data

        collect_with_durations._locust_c = True  # type: ignore[attr-defined]
        reader._set_collect_callback(collect_with_durations)

    # ---- the points

    def series(self) -> dict[tuple, Any]:
        """Per attribute set, the histogram of the requests since the statistics' last reset."""
        from locust.runners import MasterRunner

        from .stats import StatsBridge, locust_stats

        environment = self.environment
        if environment.runner is None or isinstance(environment.runner, MasterRunner):
            return {}
        bridge = StatsBridge.of(locust_stats(environment))
        if bridge.generation != self.generation:  # reset: every series starts again, now
            self.generation = bridge.generation
            self.start_ns = time.time_ns()
            self.previous.clear()
        by_name: dict[str, Any] = {}
        for (_method, name), ep in bridge.endpoints.items():
            if ep.hist.count:
                by_name.setdefault(name, _engine.Histogram()).merge(ep.hist)
        out: dict[tuple, Any] = {}
        failures = self.listener.failures_of(bridge.generation)
        for name, hist in by_name.items():
            shown = _shown_name(name)  # names past Locust's cap share one attribute set: their series add up
            ok = hist.copy()
            for (failed_name, error_type), failed in failures.items():
                if failed_name == name and failed.count:
                    try:
                        ok.subtract(failed)  # every failure is in its endpoint's histogram too
                    except ValueError:  # a failure the endpoint did not record: count it as a failure only
                        pass
                    out.setdefault((("name", shown), ("error.type", error_type)), _engine.Histogram()).merge(failed)
            if ok.count:
                out.setdefault((("name", shown),), _engine.Histogram()).merge(ok)
        return out

    def add_to(self, data: Any, reader: Any) -> Any:
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram as _SdkHistogram
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            HistogramDataPoint,
            Metric,
            MetricsData,
            ResourceMetrics,
            ScopeMetrics,
        )
        from opentelemetry.sdk.metrics.export import Histogram as HistogramData
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        series = self.series()
        temporality = reader._instrument_class_temporality.get(_SdkHistogram, AggregationTemporality.CUMULATIVE)
        now = time.time_ns()
        start = self.start_ns
        if temporality == AggregationTemporality.DELTA:
            since, before = self.previous.get(id(reader), (self.start_ns, {}))
            self.previous[id(reader)] = (now, series)
            start, window = since, {}
            for attrs, hist in series.items():
                hist = hist.copy()
                if attrs in before:
                    try:
                        hist.subtract(before[attrs])
                    except ValueError:  # the series is not the one it was (names folded anew): all of it is new
                        pass
                if hist.count:
                    window[attrs] = hist
            series = window
        points = [_point(HistogramDataPoint, attrs, hist, start, now) for attrs, hist in series.items()]
        if not points:
            return data
        metric = Metric("locust.client.duration", "Time to last byte for requests", "s",
                        HistogramData(points, temporality))
        if data is None:
            from opentelemetry.sdk.resources import Resource

            resource = self.resource if self.resource is not None else Resource.get_empty()
            return MetricsData([ResourceMetrics(resource, [
                ScopeMetrics(InstrumentationScope("locust"), [metric], "")], "")])
        resource_metrics = list(data.resource_metrics)
        first = resource_metrics[0]
        scopes = list(first.scope_metrics)
        for i, scope in enumerate(scopes):
            if scope.scope.name == "locust":
                scopes[i] = ScopeMetrics(scope.scope, _merged(scope.metrics, metric), scope.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(InstrumentationScope("locust"), [metric], ""))
        resource_metrics[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
        return MetricsData(resource_metrics)


def _point(point_type: Any, attrs: tuple, hist: Any, start_ns: int, now_ns: int) -> Any:
    """One explicit-bucket histogram data point of ``hist`` (seconds), with the bounds of :data:`BOUNDS_S`."""
    cumulative = hist.cumulative(BOUNDS_US)
    buckets = [cumulative[0], *(b - a for a, b in zip(cumulative, cumulative[1:], strict=False))]
    buckets.append(hist.count - cumulative[-1])
    return point_type(dict(attrs), start_ns, now_ns, hist.count, hist.sum / 1e6, buckets, BOUNDS_S,
                      hist.min / 1e6, hist.max / 1e6)


def _merged(metrics: Any, metric: Any) -> list[Any]:
    """``metrics`` with ``metric``'s points added to the one of the same name (another user class's), or added."""
    from opentelemetry.sdk.metrics.export import Histogram as HistogramData
    from opentelemetry.sdk.metrics.export import Metric

    out = list(metrics)
    for i, existing in enumerate(out):
        if existing.name == metric.name and isinstance(existing.data, HistogramData):
            data = HistogramData([*existing.data.data_points, *metric.data.data_points],
                                 existing.data.aggregation_temporality)
            out[i] = Metric(existing.name, existing.description, existing.unit, data)
            return out
    out.append(metric)
    return out


def _shown_name(name: str) -> str:
    """The name attribute as Locust's listener gives it: at most 20 distinct names, the rest folded into one."""
    from locust import opentelemetry as locust_otel

    names = locust_otel.request_names
    if name in names:
        return name
    if len(names) < locust_otel.MAX_REQUEST_NAMES:
        names.add(name)
        return name
    return TOO_MANY


def install(environment: Environment) -> bool:
    """Put locust-c's listener in the place of Locust's ``--otel`` one and attach the producer to every metric
    reader. False when Locust's OpenTelemetry is not set up (``--otel`` not given, or its SDK missing)."""
    handlers = environment.events.request._handlers
    index = next((i for i, h in enumerate(handlers) if getattr(h, "__qualname__", "") == LOCUST_LISTENER), None)
    if index is None:
        return False
    from opentelemetry import metrics

    from . import stats

    listener = RequestListener(handlers[index],
                               lambda: stats.StatsBridge.of(stats.locust_stats(environment)).generation)
    handlers[index] = listener
    stats.COVERED.add(id(listener))  # the listener stays alive in the handlers and in the producer
    provider = metrics.get_meter_provider()
    producer = DurationProducer(environment, listener, getattr(getattr(provider, "_sdk_config", None), "resource",
                                                               None))
    for reader in getattr(provider, "_metric_readers", ()):
        producer.attach(reader)
    environment.locust_c_otel = producer  # type: ignore[attr-defined]
    return True


# ---- --otel-propagate -----------------------------------------------------------------------------------------


def traceparent() -> str:
    """A W3C ``traceparent`` for one request: the current span's trace (and its sampled flag) when there is one
    (a locustfile's own span around a task), a new sampled trace otherwise; a new span id each time."""
    trace_id, flags = None, "01"
    if _trace is not None:
        context = _trace.get_current_span().get_span_context()
        if context.is_valid:
            trace_id, flags = f"{context.trace_id:032x}", f"{int(context.trace_flags) & 1:02x}"
    return f"00-{trace_id or os.urandom(16).hex()}-{os.urandom(8).hex()}-{flags}"


def _has_traceparent(headers: Any) -> bool:
    return any(isinstance(k, str) and k.lower() == "traceparent" for k in headers)


try:
    from opentelemetry import trace as _trace
except ImportError:  # the API is optional: without it every request starts a trace of its own
    _trace = None


class TracingSession(FastCSession):
    """A :class:`FastCSession` whose every request carries a ``traceparent`` header (``--otel-propagate``), so
    that the service's traces show which load-test request caused them. The header is the request's: it is in
    ``response.request.headers``. A ``traceparent`` of the locustfile's own (in ``headers=`` or the session's
    ``headers``, whatever its case) wins."""

    def request(self, method: str, url: str, name: str | None = None, data: Any = None,
                catch_response: bool = False, stream: bool = False, headers: dict | None = None,
                **kwargs: Any) -> Any:
        if headers is None:
            if not _has_traceparent(self.headers):  # one the locustfile set on the session wins
                headers = {"traceparent": traceparent()}
        elif not _has_traceparent(headers) and not _has_traceparent(self.headers):
            headers = {**headers, "traceparent": traceparent()}
        return super().request(method, url, name=name, data=data, catch_response=catch_response, stream=stream,
                               headers=headers, **kwargs)
