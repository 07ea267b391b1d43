"""The gate's model of a finished run, and its loaders.

Two inputs are understood:

* the ``--results-json`` file that locust-c writes at test stop (format ``locust-c-results/1``), and
* Locust's own CSV, given by the ``--csv`` prefix (``PREFIX`` → ``PREFIX_stats.csv``), so that runs made with plain
  ``HttpUser``/``FastHttpUser`` and no locust-c at all can be gated too.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import BadInput

FORMAT = "locust-c-results/1"
TOTAL_NAME = "Aggregated"

# Percentile fields and the column Locust's CSV gives them.
PERCENTILE_COLUMNS = {"p50_ms": "50%", "p90_ms": "90%", "p95_ms": "95%", "p99_ms": "99%", "p999_ms": "99.9%"}


@dataclass
class Endpoint:
    """One row of results: an endpoint as Locust names it (method + name), or the Aggregated total.

    Times are in milliseconds, ``error_rate`` is a fraction of requests and ``rps`` requests per second over the
    run. A percentile is ``None`` when it is unknown (no requests, or a CSV without that column).
    """

    method: str
    name: str
    num_requests: int = 0
    num_failures: int = 0
    error_rate: float = 0.0
    rps: float = 0.0
    mean_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    # The corrected latencies of an open-model run (locust_c.arrival): from when each request's iteration was
    # due to its last byte. None in a closed-model run, which has no due times.
    p50_corrected_ms: float | None = None
    p90_corrected_ms: float | None = None
    p95_corrected_ms: float | None = None
    p99_corrected_ms: float | None = None
    p999_corrected_ms: float | None = None
    max_corrected_ms: float | None = None

    @property
    def key(self) -> str:
        """The name budgets use: ``"METHOD name"``, or ``"Aggregated"`` for the total."""
        return f"{self.method} {self.name}" if self.method else self.name

    def metric(self, metric: str) -> float | None:
        """The measured value of an SLA metric (``p95_ms``, ``error_rate``, ``min_rps`` …)."""
        if metric == "min_rps":
            return self.rps
        return getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        """The endpoint as it appears in the results JSON (a closed-model run's without the corrected keys)."""
        return {k: v for k, v in asdict(self).items() if v is not None or "_corrected_" not in k}


@dataclass
class Run:
    """A finished run: its endpoints, the Aggregated total and where it came from."""

    endpoints: list[Endpoint]
    total: Endpoint
    path: str = ""
    source: str = "locust"
    host: str | None = None
    user_count: int | None = None
    start_time: str | None = None
    run_time_s: float | None = None
    locust_c_version: str | None = None
    locust_version: str | None = None
    missing_metrics: set[str] = field(default_factory=set)

    def by_key(self) -> dict[str, Endpoint]:
        """Endpoints by their ``"METHOD name"`` key (the total is not included)."""
        return {e.key: e for e in self.endpoints}

    def to_dict(self) -> dict[str, Any]:
        """The run in the ``locust-c-results/1`` format."""
        return {
            "format": FORMAT,
            "locust_c_version": self.locust_c_version,
            "locust_version": self.locust_version,
            "host": self.host,
            "user_count": self.user_count,
            "start_time": self.start_time,
            "run_time_s": self.run_time_s,
            "source": self.source,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "total": self.total.to_dict(),
        }


def save_json(run: Run, path: str) -> None:
    """Write ``run`` to ``path`` in the results JSON format."""
    write_results_dict(run.to_dict(), path)


def write_results_dict(data: dict[str, Any], path: str) -> None:
    """Write a results dict as indented JSON, creating the directory when needed."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")


def load_run(arg: str) -> Run:
    """Load a run from a results JSON file or a Locust CSV prefix.

    ``arg`` may be ``results.json``, a prefix ``results`` whose ``results_stats.csv`` exists, or the
    ``..._stats.csv`` file itself. Anything else raises :class:`BadInput`.
    """
    if arg.endswith(".json") or (os.path.isfile(arg) and not arg.endswith(".csv")):
        if not os.path.isfile(arg):
            raise BadInput("no such results file (expected a --results-json file or a Locust --csv prefix)", arg)
        return load_json(arg)
    if arg.endswith("_stats.csv") and os.path.isfile(arg):
        return load_csv(arg)
    if os.path.isfile(arg + "_stats.csv"):
        return load_csv(arg + "_stats.csv")
    raise BadInput(
        f"neither a results JSON file nor a Locust CSV prefix ({arg}_stats.csv does not exist); "
        "expected a --results-json FILE.json or the PREFIX given to locust --csv",
        arg,
    )


def _number(value: Any, what: str, path: str, line: int | None = None, allow_none: bool = False) -> float | None:
    """``value`` as a finite float, or :class:`BadInput` naming ``what``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInput(f"{what} is {value!r}, expected a number", path, line)
    return float(value)


def _endpoint_from_dict(data: Any, where: str, path: str) -> Endpoint:
    if not isinstance(data, dict):
        raise BadInput(f"{where} is {type(data).__name__}, expected an object", path)
    known = {f.name for f in fields(Endpoint)}
    for required in ("method", "name", "num_requests", "num_failures"):
        if required not in data:
            raise BadInput(f"{where} has no {required!r}", path)
    if not isinstance(data["method"], str) or not isinstance(data["name"], str):
        raise BadInput(f"{where}: method and name must be strings", path)
    values: dict[str, Any] = {"method": data["method"], "name": data["name"]}
    for key in known - {"method", "name"}:
        if key in data:
            nullable = (key.startswith("p") and key.endswith("_ms")) or key == "max_corrected_ms"
            values[key] = _number(data[key], f"{where}.{key}", path, allow_none=nullable)
    values["num_requests"] = int(values["num_requests"])
    values["num_failures"] = int(values["num_failures"])
    if "error_rate" not in data:
        values["error_rate"] = values["num_failures"] / values["num_requests"] if values["num_requests"] else 0.0
    return Endpoint(**values)


def load_json(path: str) -> Run:
    """Load a ``locust-c-results/1`` JSON file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise BadInput(f"cannot read: {e.strerror}", path) from None
    except UnicodeDecodeError:
        raise BadInput("not a text file (expected results JSON)", path) from None
    except json.JSONDecodeError as e:
        raise BadInput(f"not valid JSON ({e.msg}); expected a --results-json file", path, e.lineno) from None
    return run_from_dict(data, path)


def run_from_dict(data: Any, path: str = "<results>") -> Run:
    """Build a :class:`Run` from a ``locust-c-results/1`` dict (as written by :func:`locust_c.results.collect`)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise BadInput(f"format is {found!r}, expected {FORMAT!r} (a file written by --results-json)", path)
    if not isinstance(data.get("endpoints"), list):
        raise BadInput("'endpoints' is missing or not a list", path)
    if "total" not in data:
        raise BadInput("'total' is missing", path)
    endpoints = [_endpoint_from_dict(e, f"endpoints[{i}]", path) for i, e in enumerate(data["endpoints"])]
    total = _endpoint_from_dict(data["total"], "total", path)
    run_time = data.get("run_time_s")
    users = data.get("user_count")
    return Run(
        endpoints=endpoints,
        total=total,
        path=path,
        source=str(data.get("source") or "locust"),
        host=data.get("host"),
        user_count=int(users) if isinstance(users, int | float) else None,
        start_time=data.get("start_time"),
        run_time_s=float(run_time) if isinstance(run_time, int | float) else None,
        locust_c_version=data.get("locust_c_version"),
        locust_version=data.get("locust_version"),
    )


CSV_REQUIRED = (
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Requests/s",
)


def _csv_number(row: dict[str, str], column: str, path: str, line: int) -> float | None:
    text = (row.get(column) or "").strip()
    if text in ("", "N/A"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"column {column!r} is {text!r}, expected a number", path, line) from None
    if not math.isfinite(value):
        raise BadInput(f"column {column!r} is {text!r}, expected a finite number", path, line)
    return value


def load_csv(path: str) -> Run:
    """Load Locust's ``PREFIX_stats.csv`` (written by ``locust --csv PREFIX``).

    Percentiles come from the ``50%``, ``90%``, ``95%``, ``99%`` and ``99.9%`` columns; those missing (Locust's
    percentiles to report can be changed) are listed in :attr:`Run.missing_metrics`.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in CSV_REQUIRED if c not in header]
            if missing:
                raise BadInput(
                    f"not a Locust stats CSV: no column {', '.join(repr(c) for c in missing)} "
                    "(expected the PREFIX_stats.csv written by locust --csv PREFIX)",
                    path,
                    1,
                )
            rows = [(reader.line_num, row) for row in reader]
    except OSError as e:
        raise BadInput(f"cannot read: {e.strerror}", path) from None
    except UnicodeDecodeError:
        raise BadInput("not a text file (expected a Locust stats CSV)", path) from None
    except csv.Error as e:
        raise BadInput(f"not valid CSV ({e})", path) from None
    absent = {metric for metric, column in PERCENTILE_COLUMNS.items() if column not in header}
    if "p50_ms" in absent and "Median Response Time" in header:
        absent.discard("p50_ms")
    endpoints: list[Endpoint] = []
    total: Endpoint | None = None
    for line, row in rows:

        def num(column: str, line: int = line, row: dict[str, str] = row) -> float | None:
            return _csv_number(row, column, path, line)

        count = int(num("Request Count") or 0)
        failures = int(num("Failure Count") or 0)
        endpoint = Endpoint(
            method=(row.get("Type") or "").strip(),
            name=row.get("Name") or "",
            num_requests=count,
            num_failures=failures,
            error_rate=failures / count if count else 0.0,
            rps=num("Requests/s") or 0.0,
            mean_ms=num("Average Response Time") or 0.0,
            min_ms=num("Min Response Time") or 0.0,
            max_ms=num("Max Response Time") or 0.0,
        )
        for metric, column in PERCENTILE_COLUMNS.items():
            if column in header:
                setattr(endpoint, metric, num(column))
        if endpoint.p50_ms is None and "50%" not in header:
            endpoint.p50_ms = num("Median Response Time")
        if not endpoint.method and endpoint.name == TOTAL_NAME:
            total = endpoint
        else:
            endpoints.append(endpoint)
    if total is None:
        raise BadInput("no Aggregated row (expected the PREFIX_stats.csv written by locust --csv PREFIX)", path)
    return Run(endpoints=endpoints, total=total, path=path, source="locust-csv", missing_metrics=absent)
