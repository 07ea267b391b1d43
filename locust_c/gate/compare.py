"""Run-over-run regression: a current run against a baseline, endpoint by endpoint.

Three checks per endpoint (and the Aggregated total): p95 growth, throughput drop and error-rate increase. Several
runs on either side are merged by median first; their spread (coefficient of variation of p95) says whether the
environment is quiet enough for a verdict. When it is not, a regression is reported as a warning, not a failure.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields

from . import EXIT_FAIL, EXIT_PASS
from .report import format_value, markdown_table, text_table
from .results import TOTAL_NAME, Endpoint, Run

PASS, FAIL, WARN = "PASS", "FAIL", "WARN"
EPSILON = 1e-9


@dataclass
class Thresholds:
    """Regression limits, as fractions: 0.20 is +20 % p95, 0.10 is −10 % throughput, 0.01 is +1 point of errors."""

    p95_growth: float = 0.20
    rps_drop: float = 0.10
    error_increase: float = 0.01
    max_cv: float = 0.15


@dataclass
class MergedRuns:
    """Several runs merged by median, with the coefficient of variation of each endpoint's p95 across them."""

    run: Run
    count: int
    p95_cv: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    """One comparison: ``metric`` of ``endpoint`` in the baseline and in the current run."""

    endpoint: str
    metric: str
    baseline: float | None
    current: float | None
    change: float | None
    limit: float
    status: str
    note: str = ""


@dataclass
class CompareResult:
    """All rows, the endpoints new in or missing from the current run, and the noise verdict."""

    rows: list[Row]
    new: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    environment_noisy: bool = False

    @property
    def status(self) -> str:
        """FAIL on any regression in a quiet environment, WARN on a regression drowned in noise, else PASS."""
        statuses = {r.status for r in self.rows}
        return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS

    @property
    def exit_code(self) -> int:
        """1 on FAIL; a WARN passes (exit code 0)."""
        return EXIT_FAIL if self.status == FAIL else EXIT_PASS


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def coefficient_of_variation(values: list[float]) -> float | None:
    """Sample standard deviation over mean; ``None`` for fewer than two values, 0 when all are 0."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if mean == 0:
        return 0.0 if all(v == 0 for v in values) else float("inf")
    return statistics.stdev(values) / mean


def _merge_endpoints(rows: list[Endpoint]) -> Endpoint:
    merged = Endpoint(method=rows[0].method, name=rows[0].name)
    for f in fields(Endpoint):
        if f.name in ("method", "name"):
            continue
        value = _median([getattr(r, f.name) for r in rows])
        if f.name in ("num_requests", "num_failures"):
            value = int(round(value or 0))
        setattr(merged, f.name, value)
    return merged


def merge_runs(runs: list[Run]) -> MergedRuns:
    """Merge runs by median, field by field; endpoints seen in only some runs are merged over those."""
    if len(runs) == 1:
        return MergedRuns(run=runs[0], count=1)
    order: list[str] = []
    per_key: dict[str, list[Endpoint]] = {}
    for run in runs:
        for endpoint in run.endpoints:
            if endpoint.key not in per_key:
                order.append(endpoint.key)
                per_key[endpoint.key] = []
            per_key[endpoint.key].append(endpoint)
    per_key[TOTAL_NAME] = [run.total for run in runs]
    cv = {}
    for key, rows in per_key.items():
        values = [r.p95_ms for r in rows if r.p95_ms is not None]
        spread = coefficient_of_variation(values)
        if spread is not None:
            cv[key] = spread
    first = runs[0]
    sources = {run.source for run in runs}
    merged = Run(
        endpoints=[_merge_endpoints(per_key[k]) for k in order],
        total=_merge_endpoints(per_key[TOTAL_NAME]),
        path=f"median of {len(runs)} runs ({', '.join(run.path for run in runs)})",
        source=sources.pop() if len(sources) == 1 else "mixed",
        host=first.host,
        user_count=first.user_count,
        start_time=first.start_time,
        run_time_s=_median([run.run_time_s for run in runs]),
        locust_c_version=first.locust_c_version,
        locust_version=first.locust_version,
        missing_metrics=set().union(*(run.missing_metrics for run in runs)),
    )
    return MergedRuns(run=merged, count=len(runs), p95_cv=cv)


def _compare_endpoint(key: str, base: Endpoint, cur: Endpoint, limits: Thresholds) -> list[Row]:
    rows = []
    # p95 growth, relative.
    if base.p95_ms is None or cur.p95_ms is None:
        rows.append(Row(key, "p95_ms", base.p95_ms, cur.p95_ms, None, limits.p95_growth, PASS, "no data"))
    else:
        if base.p95_ms > 0:
            growth = cur.p95_ms / base.p95_ms - 1
        else:
            growth = float("inf") if cur.p95_ms > 0 else 0.0
        status = FAIL if growth > limits.p95_growth + EPSILON else PASS
        rows.append(Row(key, "p95_ms", base.p95_ms, cur.p95_ms, growth, limits.p95_growth, status))
    # Throughput drop, relative.
    change = cur.rps / base.rps - 1 if base.rps > 0 else 0.0
    status = FAIL if -change > limits.rps_drop + EPSILON else PASS
    rows.append(Row(key, "rps", base.rps, cur.rps, change, limits.rps_drop, status))
    # Error rate increase, in points (a difference of fractions).
    increase = cur.error_rate - base.error_rate
    status = FAIL if increase > limits.error_increase + EPSILON else PASS
    rows.append(Row(key, "error_rate", base.error_rate, cur.error_rate, increase, limits.error_increase, status))
    return rows


def compare(baseline: MergedRuns, current: MergedRuns, limits: Thresholds | None = None) -> CompareResult:
    """Compare endpoint by endpoint (and the Aggregated total).

    A regression is a FAIL, unless the environment was too noisy to tell: the p95 coefficient of variation of
    the Aggregated row (on either side) or of that endpoint is above ``limits.max_cv``; then it is a WARN.
    """
    limits = limits or Thresholds()
    result = CompareResult(rows=[])
    for side, merged in (("baseline", baseline), ("current", current)):
        for key, cv in merged.p95_cv.items():
            if cv > limits.max_cv + EPSILON:
                result.noise.append(
                    f"{side}: p95 of {key} varies {cv * 100:.0f} % across {merged.count} runs "
                    f"(limit {limits.max_cv * 100:.0f} %)"
                )
                if key == TOTAL_NAME:
                    result.environment_noisy = True
    noisy_keys = {k for m in (baseline, current) for k, cv in m.p95_cv.items() if cv > limits.max_cv + EPSILON}
    base_by_key, cur_by_key = baseline.run.by_key(), current.run.by_key()
    pairs = [(k, base_by_key[k], e) for k, e in cur_by_key.items() if k in base_by_key]
    pairs.append((TOTAL_NAME, baseline.run.total, current.run.total))
    for key, base, cur in pairs:
        for row in _compare_endpoint(key, base, cur, limits):
            if row.status == FAIL and (result.environment_noisy or key in noisy_keys):
                row.status = WARN
                row.note = "environment too noisy to tell" if result.environment_noisy else "this endpoint is noisy"
            result.rows.append(row)
    result.new = [k for k in cur_by_key if k not in base_by_key]
    result.missing = [k for k in base_by_key if k not in cur_by_key]
    return result


# ---------------------------------------------------------------------------------------------------- reporting

COMPARE_HEADER = ("endpoint", "metric", "baseline", "current", "change", "limit", "verdict", "note")


def _change(row: Row) -> str:
    if row.change is None:
        return "n/a"
    if row.metric == "error_rate":
        return f"{row.change * 100:+.2f} pt"
    if row.change == float("inf"):
        return "+inf %"
    return f"{row.change * 100:+.1f} %"


def _limit(row: Row) -> str:
    if row.metric == "error_rate":
        return f"<= +{row.limit * 100:.2f} pt"
    if row.metric == "rps":
        return f">= -{row.limit * 100:.0f} %"
    return f"<= +{row.limit * 100:.0f} %"


def compare_rows(result: CompareResult) -> list[tuple[str, ...]]:
    """The comparison table's rows."""
    return [
        (
            r.endpoint,
            r.metric,
            format_value(r.metric, r.baseline),
            format_value(r.metric, r.current),
            _change(r),
            _limit(r),
            r.status,
            r.note,
        )
        for r in result.rows
    ]


def summary_line(result: CompareResult) -> str:
    """One line: the verdict and how many regressions."""
    failed = sum(r.status == FAIL for r in result.rows)
    warned = sum(r.status == WARN for r in result.rows)
    if result.status == FAIL:
        return f"Regression gate: FAIL ({failed} regressions)"
    if result.status == WARN:
        return f"Regression gate: WARN ({warned} regressions in a noisy environment, not failing)"
    return "Regression gate: PASS"


def _notes(result: CompareResult) -> list[str]:
    notes = [f"new in current: {k}" for k in result.new]
    notes += [f"missing from current: {k}" for k in result.missing]
    notes += [f"noise: {n}" for n in result.noise]
    return notes


def compare_text(result: CompareResult, baseline: str, current: str) -> str:
    """The comparison as plain text."""
    parts = [f"baseline: {baseline}", f"current:  {current}", text_table(COMPARE_HEADER, compare_rows(result))]
    parts += _notes(result)
    parts.append(summary_line(result))
    return "\n".join(parts)


def compare_markdown(result: CompareResult) -> str:
    """The comparison as Markdown for a step summary."""
    rows = [tuple(f"**{c}**" if i == 6 and c != PASS else c for i, c in enumerate(r)) for r in compare_rows(result)]
    parts = ["### " + summary_line(result), "", markdown_table(COMPARE_HEADER, rows)]
    notes = _notes(result)
    if notes:
        parts += ["", *[f"- {n}" for n in notes]]
    return "\n".join(parts) + "\n"
