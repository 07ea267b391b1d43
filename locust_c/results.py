"""The ``--results-json`` file: a run's per-endpoint numbers in the ``locust-c-results/1`` format.

This first version reads Locust's own statistics, whose percentiles come from response times rounded to about
two significant digits (``"source": "locust"``); an engine with exact histograms reports ``"source": "locust-c"``.
The gate (:mod:`locust_c.gate`) reads the file back with :func:`locust_c.gate.results.load_json`.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any

from .arrival import started_and_span
from .gate.results import FORMAT, write_results_dict

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.stats import StatsEntry

PERCENTILES = {"p50_ms": 0.50, "p90_ms": 0.90, "p95_ms": 0.95, "p99_ms": 0.99, "p999_ms": 0.999}


def _version(package: str, fallback: str | None = None) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return fallback


def locust_c_version() -> str | None:
    package = sys.modules.get(__package__ or "locust_c")
    return _version("locust-c", getattr(package, "__version__", None))


def _git(*args: str) -> str | None:
    """What ``git ARGS`` prints in the working directory, or None (no git, no repository, a detached HEAD)."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip() if out.returncode == 0 else ""
    return value if value and value != "HEAD" else None


def run_identity() -> tuple[str | None, str | None]:
    """The commit and branch the run tested: GitHub Actions' (GITHUB_SHA, GITHUB_REF_NAME), else the git
    repository of the working directory's, else None."""
    commit = os.environ.get("GITHUB_SHA") or _git("rev-parse", "HEAD")
    branch = os.environ.get("GITHUB_REF_NAME") or _git("rev-parse", "--abbrev-ref", "HEAD")
    return commit, branch


def entry_dict(entry: StatsEntry) -> dict[str, Any]:
    """One Locust stats entry in the results format."""
    timed = entry.num_requests - entry.num_none_requests
    result: dict[str, Any] = {
        "method": entry.method or "",
        "name": entry.name,
        "num_requests": entry.num_requests,
        "num_failures": entry.num_failures,
        "error_rate": entry.fail_ratio,
        "rps": entry.total_rps,
        "mean_ms": entry.avg_response_time,
        "min_ms": entry.min_response_time or 0,
        "max_ms": entry.max_response_time,
    }
    for key, percent in PERCENTILES.items():
        result[key] = entry.get_response_time_percentile(percent) if timed > 0 else None
    return result


def collect(environment: Environment, *, user_count: int | None = None, source: str | None = None) -> dict[str, Any]:
    """The run's results as a ``locust-c-results/1`` dict.

    Counts come from Locust's statistics; percentiles, mean, min and max from locust-c's exact C histograms for
    every FastCUser endpoint (``"source": "locust-c"``), or from Locust's rounded buckets when any endpoint was
    measured by another user class (``"source": "locust"``). ``user_count`` is the peak number of users (by
    default the runner's current or target count).
    """
    import locust

    from .stats import locust_stats, snapshot

    stats = locust_stats(environment)
    runner = environment.runner
    if user_count is None and runner is not None:
        user_count = max(runner.user_count, getattr(runner, "target_user_count", 0) or 0)
    started = stats.start_time
    snap = snapshot(environment)
    rows = [row for row in snap["endpoints"] if row["num_requests"]]
    exact = all(row["source"] == "locust-c" for row in rows) and snap["total"]["source"] == "locust-c"
    if not exact:
        # Mixed sources would make the rows disagree with each other: use Locust's numbers throughout.
        entries = sorted(stats.entries.values(), key=lambda e: (e.name, e.method or ""))
        endpoints = [entry_dict(e) for e in entries]
        total = {**entry_dict(stats.total), "method": "", "name": "Aggregated"}
        # The corrected latencies exist only in the C histograms: they stay, whatever measured the rest.
        corrected = {(r["method"], r["name"]): {k: v for k, v in r.items() if "_corrected_" in k} for r in rows}
        for row in endpoints:
            row.update(corrected.get((row["method"], row["name"]), {}))
        total.update({k: v for k, v in snap["total"].items() if "_corrected_" in k})
    else:
        endpoints = [{k: v for k, v in row.items() if k != "source"} for row in rows]
        total = {k: v for k, v in snap["total"].items() if k != "source"}
    commit, branch = run_identity()
    data = {
        "format": FORMAT,
        "commit": commit,
        "branch": branch,
        "locust_c_version": locust_c_version(),
        "locust_version": locust.__version__,
        "host": environment.host,
        "user_count": user_count,
        "start_time": dt.datetime.fromtimestamp(started, tz=dt.UTC).isoformat(timespec="seconds") if started else None,
        "run_time_s": round(time.time() - started, 3) if started else None,
        "source": source or ("locust-c" if exact else "locust"),
        "endpoints": endpoints,
        "total": total,
    }
    arrivals = getattr(environment, "locust_c_arrival", None)
    totals = arrivals() if arrivals is not None else {}
    if totals:
        # The open model's iterations per user class (k6's iterations and dropped_iterations).
        data["arrival"] = {}
        for user_class, t in sorted(totals.items()):
            started, span = started_and_span(t)
            data["arrival"][user_class] = {
                "rate": t["rate"], "iterations": int(started), "late": int(t["late"]),
                "dropped": int(t["dropped"]), "unstarted": int(t.get("unstarted", 0)),
                "cancelled": int(t.get("cancelled", 0)), "span_s": span, "sent_rate": started / span if span else None,
            }
    return data


def write(environment: Environment, path: str, **options: Any) -> dict[str, Any]:
    """Write :func:`collect`'s dict to ``path`` as JSON and return it (``options`` go to :func:`collect`)."""
    data = collect(environment, **options)
    write_results_dict(data, path)
    return data
