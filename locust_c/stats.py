"""How FastCUser requests reach Locust's statistics, and the exact percentiles locust-c adds to them.

Two paths, chosen per request:

* **Batched.** When the only listener on ``events.request`` is Locust's own stats recorder, a successful request
  is not announced one by one. The engine records it in C, in an :class:`~locust_c._engine.Endpoint` (exact
  histograms and a delta in Locust's own terms), and once per dispatched batch, before any waiting user resumes,
  :func:`flush` folds the deltas into Locust's ``StatsEntry`` objects: same counts, same per-second series, same
  rounded response-time buckets. So every request is in Locust's stats by the time its client call returns.
* **Per request.** Failures, ``catch_response`` requests, sessions without a Locust runner, and every request
  while anyone else listens to ``events.request`` are fired as the standard request event.

Every request of a FastCUser is also recorded in a 3-significant-digit histogram per endpoint, whatever the path;
:func:`snapshot` reads exact percentiles from them. In distributed runs the histograms travel with the worker
reports and merge on the master without loss (see :mod:`locust_c.plugin`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import locust.stats
from locust.runners import WorkerRunner
from locust.user import User

from . import _engine

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.event import EventHook
    from locust.stats import RequestStats, StatsEntry

_ORIGINAL_BUCKETING = locust.stats.bucket_response_time
COVERED: set[int] = set()
"""The ids of request listeners that do not need batched successes announced (they read the C histograms when
they report): locust-c's stand-in for Locust's ``--otel`` listener. Ids, so that the check per request runs no
listener's ``__eq__``/``__hash__``; whoever adds one keeps the listener alive."""
_RUNNER_LISTENER = "Runner.__init__.<locals>.on_request"
PERCENTILES = (("p50_ms", 50.0), ("p90_ms", 90.0), ("p95_ms", 95.0), ("p99_ms", 99.0), ("p999_ms", 99.9))
CORRECTED = tuple((key.replace("_ms", "_corrected_ms"), p) for key, p in PERCENTILES)
"""The corrected latencies' percentiles (``p99_corrected_ms``): from when each request's iteration was due to its
last byte, for the requests of ``arrival_rate`` users (see :mod:`locust_c.arrival`)."""
BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000, 10000, 30000,
)
"""The latency buckets live metrics export (Prometheus, OpenTelemetry), in ms: fine where loopback and LAN
services answer, coarser up to Locust's timeouts."""
BOUNDS_US = [round(b * 1000) for b in BUCKETS_MS]
"""The same bounds in the histograms' microseconds, for ``Histogram.cumulative``."""


# ---- the bridge between C endpoints and one Locust stats table ------------------------------------------------


class StatsBridge:
    """The C endpoints of one Locust ``RequestStats`` (one per environment)."""

    def __init__(self, stats: RequestStats) -> None:
        self.stats = stats
        self.endpoints: dict[tuple[str, str], Any] = {}
        self.worker = False  # a worker's endpoints also keep what they recorded since the last report
        self.generation = 0
        """Counts the resets: readers that keep state between two looks (the live gate, OpenTelemetry's delta
        readers) start again when it changes."""
        # Locust resets its tables in place (--reset-stats, the web UI's reset) and clears them when a new test
        # starts from the web UI: the histograms go at the same moment.
        original_reset, original_clear = stats.reset_all, stats.clear_all

        def reset_all() -> None:
            original_reset()
            self.forget()

        def clear_all() -> None:
            original_clear()
            self.forget()

        stats.reset_all = reset_all  # type: ignore[method-assign]
        stats.clear_all = clear_all  # type: ignore[method-assign]

    def forget(self) -> None:
        """Empty every endpoint's histograms, as Locust has just emptied its table."""
        from .arrival import REGISTRY

        self.generation += 1
        REGISTRY.restart_counts()  # the open model's tallies count from the same moment
        for ep in self.endpoints.values():
            for hist in (ep.hist, ep.unsent, ep.corrected, ep.corrected_unsent):
                if hist is not None:
                    hist.reset()

    @classmethod
    def of(cls, stats: RequestStats) -> StatsBridge:
        bridge = stats.__dict__.get("_locust_c_bridge")
        if bridge is None:
            bridge = stats.__dict__["_locust_c_bridge"] = cls(stats)
        return bridge

    def endpoint(self, method: str, name: str) -> Any:
        """The endpoint for (method, name), created on first use."""
        key = (method, name)
        ep = self.endpoints.get(key)
        if ep is None:
            ep = self.endpoints[key] = _engine.Endpoint(method, name, self)
            if self.worker:
                ep.track_unsent()
        return ep

    def report_to_master(self) -> None:
        """This table is a worker's: from now on its endpoints keep what they recorded since the last report."""
        if not self.worker:
            self.worker = True
            for ep in self.endpoints.values():
                ep.track_unsent()

    def fold(self, ep: Any, delta: tuple) -> None:
        """Add one endpoint's batch of successes to its Locust entry and to the total, as StatsEntry.log would."""
        count, sum_ms, min_ms, max_ms, content_length, last_time, seconds, buckets = delta
        entry = self.stats.get(ep.name, ep.method)
        first_second = min(seconds) if seconds else int(last_time)
        for target in (entry, self.stats.total):
            _fold_entry(target, count, sum_ms, min_ms, max_ms, content_length, last_time, seconds, buckets,
                        first_second)


def _fold_entry(e: StatsEntry, count: int, sum_ms: float, min_ms: float, max_ms: float, content_length: int,
                last_time: float, seconds: dict[int, int], buckets: dict[int, int], first_second: int) -> None:
    if e.use_response_times_cache and e.last_request_timestamp and first_second > int(e.last_request_timestamp):
        e._cache_response_times(first_second - 1)
    e.num_requests += count
    per_sec = e.num_reqs_per_sec
    for second, n in seconds.items():
        per_sec[second] += n
    if e.last_request_timestamp is None or last_time > e.last_request_timestamp:
        e.last_request_timestamp = last_time
    e.total_response_time += sum_ms
    e.min_response_time = min_ms if e.min_response_time is None else min(e.min_response_time, min_ms)
    e.max_response_time = max(e.max_response_time, max_ms)
    response_times = e.response_times
    for bucket, n in buckets.items():
        response_times[bucket] += n
    e.total_content_length += content_length


def flush(dirty: list) -> None:
    """Fold every waiting delta into Locust's statistics (the engine calls this once per batch)."""
    for ep in dirty:
        delta = ep.take()
        if delta is not None:
            ep.target.fold(ep, delta)


_engine.set_flush(flush)


# ---- per-session reporting -------------------------------------------------------------------------------------


class RequestReporter:
    """Decides, per request, which path reports it, and fires the request event when needed."""

    __slots__ = ("event", "user", "bridge", "_plain_context", "_endpoints", "_locust_listener")

    def __init__(self, request_event: EventHook, user: User | None) -> None:
        self.event = request_event
        self.user = user
        # User.context() returns a fresh empty dict unless a user class overrides it: skip the call then.
        self._plain_context = user is None or type(user).context is User.context
        self.bridge: StatsBridge | None = None
        self._locust_listener: Any = None
        runner = getattr(getattr(user, "environment", None), "runner", None)
        if runner is not None and request_event is user.environment.events.request:  # type: ignore[union-attr]
            self.bridge = StatsBridge.of(runner.stats)
            if isinstance(runner, WorkerRunner):
                self.bridge.report_to_master()
            for handler in request_event._handlers:
                if getattr(handler, "__qualname__", "") == _RUNNER_LISTENER:
                    self._locust_listener = handler
        self._endpoints: dict[tuple[str, str], Any] = self.bridge.endpoints if self.bridge else {}

    def endpoint(self, method: str, name: str) -> Any:
        """The C endpoint that records this request's statistics, or None outside a Locust run."""
        if self.bridge is None:
            return None
        ep = self._endpoints.get((method, name))
        return ep if ep is not None else self.bridge.endpoint(method, name)

    def batchable(self) -> bool:
        """True while Locust's own stats are the only listener of the request event (besides listeners that
        read the C histograms themselves, in :data:`COVERED`)."""
        if locust.stats.bucket_response_time is not _ORIGINAL_BUCKETING:
            return False
        handlers, ours = self.event._handlers, self._locust_listener
        if len(handlers) == 1:
            return handlers[0] is ours
        if len(handlers) == 2:  # Locust's and one that reads the C histograms (--otel): per request, keep it short
            first, second = handlers
            return (second is ours and id(first) in COVERED) or (first is ours and id(second) in COVERED)
        return any(h is ours for h in handlers) and all(h is ours or id(h) in COVERED for h in handlers)

    def _context(self, context: dict | None) -> dict:
        if self._plain_context:
            return dict(context) if context else {}
        return {**self.user.context(), **(context or {})}  # type: ignore[union-attr]

    def meta(self, method: str, name: str, result: Any, response: Any, error: BaseException | None,
             start_time: float, url: str, context: dict | None) -> dict[str, Any]:
        """The request event's keyword arguments."""
        return {
            "request_type": method,
            "name": name,
            "response_time": result.response_time,
            "response_length": response._content_length,
            "response": response,
            "exception": error,
            "context": self._context(context),
            "start_time": start_time,
            "url": url,
        }

    def report(self, method: str, name: str, result: Any, response: Any, error: BaseException | None,
               start_time: float, url: str, context: dict | None) -> None:
        """Report a finished request now."""
        self.event.fire(**self.meta(method, name, result, response, error, start_time, url, context))

    def report_meta(self, meta: dict[str, Any]) -> None:
        """Report a request whose outcome a ``catch_response`` block decided. A success goes straight into
        Locust's table while its recorder is the only listener: what the event would do, without the event."""
        if meta["exception"] is None and self.bridge is not None and self.batchable():
            self.bridge.stats.log_request(meta["request_type"], meta["name"], meta["response_time"],
                                          meta["response_length"])
            return
        self.event.fire(**meta)


def locust_stats(environment: Environment) -> RequestStats:
    """The stats table Locust reports from: the runner's, or the environment's when there is no runner."""
    return environment.runner.stats if environment.runner is not None else environment.stats


# ---- exact percentiles -----------------------------------------------------------------------------------------


def _row(method: str, name: str, entry: StatsEntry | None, hist: Any, duration: float,
         corrected: Any = None) -> dict[str, Any]:
    count = entry.num_requests if entry is not None else hist.count
    failures = entry.num_failures if entry is not None else 0
    row: dict[str, Any] = {
        "method": method,
        "name": name,
        "num_requests": count,
        "num_failures": failures,
        "error_rate": failures / count if count else 0.0,
        "rps": count / duration if duration > 0 else 0.0,
    }
    if hist is not None and hist.count:
        row.update(mean_ms=hist.sum / hist.count / 1000.0, min_ms=hist.min / 1000.0, max_ms=hist.max / 1000.0)
        row.update({key: hist.percentile(p) / 1000.0 for key, p in PERCENTILES})
        row["source"] = "locust-c"
    elif entry is not None and entry.num_requests:
        row.update(mean_ms=entry.avg_response_time, min_ms=entry.min_response_time or 0.0,
                   max_ms=entry.max_response_time)
        row.update({key: entry.get_response_time_percentile(p / 100.0) for key, p in PERCENTILES})
        row["source"] = "locust"
    else:
        row.update(mean_ms=None, min_ms=None, max_ms=None, **{key: None for key, _ in PERCENTILES})
        row["source"] = "locust"
    if corrected is not None and corrected.count:
        row.update({key: corrected.percentile(p) / 1000.0 for key, p in CORRECTED})
        row["max_corrected_ms"] = corrected.max / 1000.0
    return row


def snapshot(environment: Environment) -> dict[str, Any]:
    """Per-endpoint and total count, failures, rps, mean, min, max and p50/p90/p95/p99/p99.9 (ms).

    Percentiles come from the C histograms for FastCUser endpoints (exact to 3 significant digits) and from
    Locust's rounded buckets for anything else; each row says which in ``source``.
    """
    stats = locust_stats(environment)
    bridge = StatsBridge.of(stats)
    start = stats.total.start_time
    end = stats.total.last_request_timestamp or time.time()
    duration = max(end - start, 1e-9)
    rows = []
    keys = set(stats.entries) | {(name, method) for (method, name) in bridge.endpoints}
    for name, method in sorted(keys, key=lambda k: (k[0], k[1] or "")):
        ep = bridge.endpoints.get((method, name))
        rows.append(_row(method or "", name, stats.entries.get((name, method)), ep.hist if ep else None, duration,
                         ep.corrected if ep else None))
    total_hist, total_corrected = _engine.Histogram(), _engine.Histogram()
    covered = 0
    for ep in bridge.endpoints.values():
        total_hist.merge(ep.hist)
        total_corrected.merge(ep.corrected)
        covered += ep.hist.count
    exact_total = covered and covered == stats.total.num_requests
    total = _row("", "Aggregated", stats.total, total_hist if exact_total else None, duration, total_corrected)
    return {"endpoints": rows, "total": total, "start_time": start, "duration_s": duration}


def worker_payload(environment: Environment) -> list[tuple[str, str, tuple]]:
    """The histogram counts recorded since the last report, for a worker to send to its master: (method, name,
    service times, corrected latencies or None)."""
    stats = locust_stats(environment)
    out = []
    for (method, name), ep in StatsBridge.of(stats).endpoints.items():
        if ep.unsent is not None and ep.unsent.count:
            corrected = ep.corrected_unsent
            out.append((method, name, ep.unsent.sparse(), corrected.sparse() if corrected.count else None))
            ep.unsent.reset()
            corrected.reset()
    return out


def merge_worker_payload(environment: Environment, payload: list) -> None:
    """Add a worker's histogram counts to the master's."""
    stats = locust_stats(environment)
    bridge = StatsBridge.of(stats)
    for method, name, sparse, *corrected in payload:
        ep = bridge.endpoint(method, name)
        ep.hist.add_sparse(tuple(sparse))
        if corrected and corrected[0] is not None:
            ep.corrected.add_sparse(tuple(corrected[0]))
