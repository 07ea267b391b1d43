"""The history of runs: where each endpoint's numbers shifted, found by change-point detection.

A fixed percentage against one baseline misses a slowdown that grows by 3 % a night, and cries wolf on a noisy
metric. Over a history of ``--results-json`` files, E-divisive with a significance test (Apache Otava's
implementation, the Hunter paper's, as MongoDB's performance CI uses it) finds the runs where a metric's
distribution changed, adapting to each metric's own noise. :func:`find_shifts` reports each change point with the
run where it began and the size of the shift; :func:`regressions` keeps the shifts that began the latest segment
of a series and made it worse by more than a threshold.

Apache Otava's package pins numpy and brings its BigQuery, Postgres and Slack clients; locust-c uses only its
analysis module (numpy and scipy), so ``make`` installs it with ``pip install --no-deps apache-otava``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import BadInput
from .results import run_from_dict

METRICS = ("p50_ms", "p95_ms", "p99_ms", "error_rate", "rps")
"""The metrics followed per endpoint; all but ``rps`` get worse as they grow."""
MAX_PVALUE = 0.0001
"""The significance a change point needs. E-divisive tests the best split of a series, whose p-value is
optimistic: on 20 synthetic histories of 30 runs at 3 % noise, 0.001 marked 2 % of the pure-noise series and
0.0001 marked 0.4 %, while both found a 12 % step in every history, at its run or next to it."""
WINDOW = 30


@dataclass
class HistoryRun:
    """One run of the history: its results and where it came from."""

    data: dict[str, Any]
    path: str

    @property
    def label(self) -> str:
        """How the report names the run: its commit (short) or file, and its time."""
        commit = self.data.get("commit")
        name = commit[:12] if isinstance(commit, str) and commit else Path(self.path).name
        when = self.data.get("start_time") or ""
        return f"{name} {when}".strip()

    def value(self, endpoint: str, metric: str) -> float | None:
        row = self.data["total"] if endpoint == "Aggregated" else next(
            (e for e in self.data["endpoints"] if f"{e['method']} {e['name']}" == endpoint), None)
        if row is None or not row.get("num_requests"):
            return None
        value = row.get(metric)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass
class Shift:
    """A change point: the series of ``metric`` for ``endpoint`` shifted at run ``index``."""

    endpoint: str
    metric: str
    index: int  # the first run of the new segment, in the history's order
    run: str  # its label
    before: float  # the segments' means
    after: float
    pvalue: float
    latest: bool  # it began the series' latest segment

    @property
    def change(self) -> float:
        """The relative shift (+0.12: 12 % higher)."""
        if self.before == 0:
            return math.inf if self.after > 0 else 0.0
        return self.after / self.before - 1

    @property
    def worse(self) -> bool:
        return self.change < 0 if self.metric == "rps" else self.change > 0


def _load_file(path: Path) -> list[HistoryRun]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInput(f"cannot read: {e.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise BadInput("not a text file (expected results JSON)", str(path)) from None
    docs: list[tuple[Any, int | None]] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append((json.loads(line), n))
                except json.JSONDecodeError as e:
                    raise BadInput(f"not valid JSON ({e.msg})", str(path), n) from None
    else:
        try:
            docs.append((json.loads(text), None))
        except json.JSONDecodeError as e:
            raise BadInput(f"not valid JSON ({e.msg}); expected a --results-json file", str(path), e.lineno) from None
    runs = []
    for data, line in docs:
        where = f"{path}:{line}" if line else str(path)
        run_from_dict(data, where)  # checks the format, naming the file (and line) that breaks it
        runs.append(HistoryRun(data, where))
    return runs


def load_history(path: str) -> list[HistoryRun]:
    """The runs of a directory of ``--results-json`` files, or of a JSON-lines file, oldest first (by start
    time, then name)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".json", ".jsonl") and f.is_file())
        if not files:
            raise BadInput("holds no .json or .jsonl results files", path)
        runs = [run for f in files for run in _load_file(f)]
    elif p.exists():
        runs = _load_file(p)
    else:
        raise BadInput("no such directory or file (expected --results-json files)", path)
    return sorted(runs, key=lambda r: (str(r.data.get("start_time") or ""), r.path))


def endpoints(runs: list[HistoryRun]) -> list[str]:
    """Every endpoint of the history, and the Aggregated total last."""
    names = {f"{e['method']} {e['name']}" for run in runs for e in run.data["endpoints"]}
    return [*sorted(names), "Aggregated"]


def series(runs: list[HistoryRun], endpoint: str, metric: str) -> tuple[list[int], list[float]]:
    """The runs that measured ``metric`` for ``endpoint`` (their indices) and the values."""
    indices, values = [], []
    for i, run in enumerate(runs):
        value = run.value(endpoint, metric)
        if value is not None:
            indices.append(i)
            values.append(value)
    return indices, values


def find_shifts(runs: list[HistoryRun], max_pvalue: float = MAX_PVALUE) -> list[Shift]:
    """Every change point of every endpoint's metrics over the history."""
    try:
        from otava.analysis import compute_change_points
    except ImportError:
        raise BadInput("needs Apache Otava's change-point analysis: pip install --no-deps apache-otava scipy",
                       "locust-c history") from None
    shifts = []
    for endpoint in endpoints(runs):
        for metric in METRICS:
            indices, values = series(runs, endpoint, metric)
            if len(values) < 4 or max(values) == min(values):
                continue
            points, _ = compute_change_points(values, window_len=WINDOW, max_pvalue=max_pvalue)
            # The size of a shift: the mean of the segment it begins against the mean of the one before.
            bounds = [0, *(cp.index for cp in points), len(values)]
            means = [sum(values[a:b]) / (b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
            for n, cp in enumerate(points):
                start = indices[cp.index]
                shifts.append(Shift(endpoint, metric, start, runs[start].label, means[n], means[n + 1],
                                    float(cp.stats.pvalue), n == len(points) - 1))
    return shifts


def regressions(shifts: list[Shift], threshold: float) -> list[Shift]:
    """The shifts that began a series' latest segment and made it worse by more than ``threshold`` (0.05: 5 %)."""
    return [s for s in shifts if s.latest and s.worse and abs(s.change) > threshold]


def describe(runs: list[HistoryRun], shifts: list[Shift], threshold: float) -> str:
    """The report: the history, each change point, and the verdict on the latest segments."""
    lines = [f"{len(runs)} runs, from {runs[0].label} to {runs[-1].label}" if runs else "no runs"]
    if len(runs) < 4:
        lines.append("too few runs to find change points (at least 4)")
    for s in shifts:
        unit = " ms" if s.metric.endswith("_ms") else ""
        lines.append(f"  {s.endpoint}  {s.metric}: {s.before:.4g}{unit} -> {s.after:.4g}{unit} ({s.change:+.1%}) "
                     f"from run {s.index + 1} ({s.run}), p={s.pvalue:.1g}")
    if runs and not shifts and len(runs) >= 4:
        lines.append("  no change point in any series")
    bad = regressions(shifts, threshold)
    if bad:
        lines.append(f"FAIL: {len(bad)} series regressed by more than {threshold:.0%} in their latest segment")
    else:
        lines.append(f"PASS: no latest segment regressed by more than {threshold:.0%}")
    return "\n".join(lines)


def plot(runs: list[HistoryRun], shifts: list[Shift], directory: str) -> list[str]:
    """One PNG per metric: each endpoint's values over the runs, the change points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in METRICS:
        fig, ax = plt.subplots(figsize=(10, 4))
        drawn = False
        for endpoint in endpoints(runs):
            indices, values = series(runs, endpoint, metric)
            if not values:
                continue
            line, = ax.plot([i + 1 for i in indices], values, marker=".", label=endpoint)
            drawn = True
            for s in shifts:
                if s.endpoint == endpoint and s.metric == metric:
                    ax.axvline(s.index + 0.5, color=line.get_color(), linestyle="--", alpha=0.7)
        if drawn:
            ax.set_title(f"{metric} over {len(runs)} runs (dashed: change points)")
            ax.set_xlabel("run")
            ax.set_ylabel(metric)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="best")
            fig.tight_layout()
            path = out / f"{metric}.png"
            fig.savefig(path, dpi=100)
            written.append(str(path))
        plt.close(fig)
    return written
