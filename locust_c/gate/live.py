"""``--sla-abort``: the SLA budgets checked while the run goes, over a sliding window, to stop a lost run early.

Once a second the gate takes a snapshot of every endpoint: its latency histogram (locust-c's exact one for
FastCUser, Locust's rounded buckets otherwise) and its request and failure counts. The difference between the
newest snapshot and the one a window ago is the window's distribution, judged against the budgets of the
``--sla-file`` once the grace period (``--sla-abort-after``) is over; no window reaches back into it. A reset of
the statistics (``--reset-stats``, the web UI) starts the window again.

A budget the window breaches stops the run only when the breach is *beyond doubt*: when a service that met the
budget would show what the window shows with a probability below :data:`ALPHA`. For a percentile budget (p95 ≤ B)
and an error-rate budget (rate ≤ r) the window's requests are Bernoulli trials (above B or not, failed or not),
and the Chernoff bound ``P(X ≥ k) ≤ exp(-n·KL(k/n ‖ p))`` bounds that probability without any approximation, so a
dozen slow requests are enough when every request is slow, and a run close to its budget is never stopped on
chance. A ``max_ms`` budget is breached for certain by one slower request; a ``mean_ms`` budget is judged by the
window mean's z-score. Throughput floors (``min_rps``) are judged at the end only: a window under a ramp or a
shape says nothing about the run's throughput.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .results import PERCENTILE_COLUMNS, TOTAL_NAME, Endpoint, Run
from .sla import CORRECTED_METRICS, FAIL, GateResult, SlaSpec, Verdict, evaluate

if TYPE_CHECKING:
    from locust.env import Environment

ALPHA = 1e-6
"""The chance that a window of a run which meets its budgets looks like a breach and stops it (per budget, per
check): about one check in a million, so a day of checks every second stays below a 10 % chance in the worst case
of a service exactly at its budget, and far below for one inside it."""
CHECK_INTERVAL = 1.0
MEAN_Z = 4.753  # the one-sided normal quantile of 1 - ALPHA
PERCENTILE_OF = {metric: float(column.rstrip("%")) for metric, column in PERCENTILE_COLUMNS.items()}
"""The percentile of each percentile metric ("p95_ms": 95.0), from the gate's own table of them."""
CORRECTED_OF = {metric.replace("_ms", "_corrected_ms"): p for metric, p in PERCENTILE_OF.items()}


def kl_bernoulli(q: float, p: float) -> float:
    """The Kullback-Leibler divergence between Bernoulli(q) and Bernoulli(p), in nats."""
    def term(a: float, b: float) -> float:
        return 0.0 if a == 0 else a * math.log(a / b)

    if p <= 0:
        return math.inf if q > 0 else 0.0
    if p >= 1:
        return 0.0
    return term(q, p) + term(1 - q, 1 - p)


def beyond_doubt(k: int, n: int, p: float, alpha: float = ALPHA) -> bool:
    """Whether k "bad" of n trials reject "the bad fraction is at most p" at level alpha (Chernoff bound)."""
    if n <= 0 or k <= p * n:
        return False
    return n * kl_bernoulli(k / n, p) > math.log(1 / alpha)


@dataclass
class _Series:
    """One endpoint's state at a snapshot."""

    hist: Any  # an _engine.Histogram
    requests: int
    failures: int
    corrected: Any = None  # the corrected latencies' Histogram, None for an endpoint without due times


@dataclass
class _Snapshot:
    t: float
    generation: int  # the statistics' resets so far (StatsBridge.generation)
    endpoints: dict[tuple[str, str], _Series]


@dataclass
class Window:
    """The window between two snapshots: per endpoint, its histogram and counts, and the span in seconds."""

    span_s: float
    endpoints: dict[tuple[str, str], _Series] = field(default_factory=dict)

    def total(self) -> _Series:
        from .. import _engine

        hist, corrected = _engine.Histogram(), _engine.Histogram()
        requests = failures = 0
        for series in self.endpoints.values():
            hist.merge(series.hist)
            if series.corrected is not None:
                corrected.merge(series.corrected)
            requests += series.requests
            failures += series.failures
        return _Series(hist, requests, failures, corrected if corrected.count else None)

    def run(self) -> Run:
        """The window as a :class:`Run` that the end-of-run gate can evaluate."""
        rows = [_endpoint(method, name, s, self.span_s) for (method, name), s in sorted(self.endpoints.items())]
        return Run(endpoints=rows, total=_endpoint("", TOTAL_NAME, self.total(), self.span_s), path="window")


def _endpoint(method: str, name: str, series: _Series, span_s: float) -> Endpoint:
    hist, n = series.hist, series.requests
    e = Endpoint(method, name, num_requests=n, num_failures=series.failures,
                 error_rate=series.failures / n if n else 0.0, rps=n / span_s if span_s > 0 else 0.0)
    if hist.count:
        e.mean_ms, e.min_ms, e.max_ms = hist.sum / hist.count / 1000, hist.min / 1000, hist.max / 1000
        for metric, percent in PERCENTILE_OF.items():
            setattr(e, metric, hist.percentile(percent) / 1000)
    corrected = series.corrected
    if corrected is not None and corrected.count:
        for metric, percent in CORRECTED_OF.items():
            setattr(e, metric, corrected.percentile(percent) / 1000)
        e.max_corrected_ms = corrected.max / 1000
    return e


def _rounded_from(ms: float) -> float:
    """The smallest response time that Locust rounds to ``ms`` (locust.stats.bucket_response_time: whole ms
    below 100, tens below 1000, hundreds above): judged by it, a breach is one whatever the true value was."""
    if ms < 100:
        return ms
    return ms - 5 if ms < 1000 else ms - 50


def doubtless(verdict: Verdict, series: _Series) -> bool:
    """Whether a breached budget's breach in this window is beyond doubt (see the module's docstring)."""
    metric, limit, hist = verdict.metric, verdict.budget, series.hist
    if metric in CORRECTED_METRICS:  # the same tests on the corrected latencies
        if series.corrected is None:
            return False
        metric, hist = metric.replace("_corrected", ""), series.corrected
    if metric == "error_rate":
        return beyond_doubt(series.failures, series.requests, limit)
    if metric in PERCENTILE_OF:
        above = hist.count - hist.cumulative([int(limit * 1000)])[0]
        return beyond_doubt(above, hist.count, 1 - PERCENTILE_OF[metric] / 100)
    if metric == "max_ms":  # one value above the limit, to the histogram's precision, and on the safe side of it
        return hist.count - hist.cumulative([int(limit * 1000)])[0] > 0
    if metric == "mean_ms" and hist.count >= 30:
        sd = hist.stddev() / 1000
        mean = hist.sum / hist.count / 1000
        return sd > 0 and (mean - limit) / (sd / math.sqrt(hist.count)) > MEAN_Z
    return False


def take_snapshot(environment: Environment) -> _Snapshot:
    """Every endpoint's latency histogram (a copy) and counts, now."""
    from .. import _engine
    from ..stats import StatsBridge, locust_stats

    stats = locust_stats(environment)
    bridge = StatsBridge.of(stats)
    endpoints: dict[tuple[str, str], _Series] = {}
    for (name, method), entry in stats.entries.items():
        key = (method or "", name)
        ep = bridge.endpoints.get(key)
        corrected = None
        if ep is not None and ep.hist.count:
            hist = ep.hist.copy()
            corrected = ep.corrected.copy() if ep.corrected.count else None
        else:
            hist = _engine.Histogram()
            for ms, count in entry.response_times.items():
                hist.record(int(_rounded_from(ms) * 1000), count)
        endpoints[key] = _Series(hist, entry.num_requests, entry.num_failures, corrected)
    return _Snapshot(time.monotonic(), bridge.generation, endpoints)


def window_between(then: _Snapshot, now: _Snapshot) -> Window | None:
    """What happened from one snapshot to a later one; None when the statistics were reset between them."""
    if then.generation != now.generation:
        return None  # the statistics were reset: start the window again
    window = Window(now.t - then.t)
    for key, series in now.endpoints.items():
        old = then.endpoints.get(key)
        hist = series.hist.copy()
        corrected = series.corrected.copy() if series.corrected is not None else None
        requests, failures = series.requests, series.failures
        if old is not None:
            try:
                hist.subtract(old.hist)
                if corrected is not None and old.corrected is not None:
                    corrected.subtract(old.corrected)
            except ValueError:  # not contained: the statistics were reset in a way the count did not show
                return None
            if old.requests > requests:
                return None
            requests -= old.requests
            failures -= old.failures
        if requests:
            window.endpoints[key] = _Series(hist, requests, failures,
                                            corrected if corrected is not None and corrected.count else None)
    return window


class LiveGate:
    """Snapshots an environment's statistics once a second and judges the last window against the budgets."""

    def __init__(self, environment: Environment, spec: SlaSpec, after_s: float, window_s: float) -> None:
        self.environment = environment
        self.spec = spec
        self.after_s = after_s
        self.window_s = window_s
        self.snapshots: deque[_Snapshot] = deque()
        self.started = 0.0
        self.verdicts: GateResult | None = None  # the window's verdicts when the run was stopped
        self.judged = 0  # windows judged in this test

    def start(self) -> None:
        self.snapshots.clear()
        self.started = time.monotonic()
        self.verdicts = None
        self.judged = 0

    def elapsed(self) -> float:
        """Seconds since the test started."""
        return time.monotonic() - self.started

    def snapshot(self) -> _Snapshot:
        return take_snapshot(self.environment)

    def window(self, now: _Snapshot) -> Window | None:
        """The window from the oldest kept snapshot to ``now`` (None before there are two)."""
        while len(self.snapshots) > 1 and now.t - self.snapshots[1].t >= self.window_s:
            self.snapshots.popleft()
        if not self.snapshots:
            return None
        return window_between(self.snapshots[0], now)

    def check(self) -> GateResult | None:
        """Take a snapshot and judge the window; the verdicts when a breach is beyond doubt, else None."""
        now = self.snapshot()
        if self.elapsed() < self.after_s:  # the grace period is never judged, nor part of a judged window
            self.snapshots = deque([now])
            return None
        window = self.window(now)
        self.snapshots.append(now)
        if window is None:
            self.snapshots = deque([now])
            return None
        if not window.endpoints:
            return None
        self.judged += 1
        result = evaluate(self.spec, window.run())
        result.verdicts = [v for v in result.verdicts if v.metric != "min_rps"]
        result.warnings = []
        series = {f"{m} {n}" if m else n: s for (m, n), s in window.endpoints.items()}
        series[TOTAL_NAME] = window.total()
        decisive = False
        for verdict in result.verdicts:
            if verdict.status == FAIL and verdict.measured is not None and doubtless(verdict, series[verdict.endpoint]):
                verdict.note = "beyond doubt"
                decisive = True
        return result if decisive else None
