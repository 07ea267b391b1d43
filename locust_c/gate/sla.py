"""SLA budgets: loading ``slas.yml`` (with line numbers in every error) and checking a run against it.

The file::

    defaults:                 # for every endpoint without an entry of its own
      p95_ms: 500
      error_rate: 0.01        # a fraction of requests
    endpoints:
      "GET /api/products":    # "METHOD name", as Locust names the endpoint
        p95_ms: 200
      "POST /api/orders":
        p95_ms: 800
        skip_until: 2027-01-31            # the budget is knowingly broken until then (inclusive)
        skip_reason: "search migration, #1234"
    total:                    # the Aggregated row
      error_rate: 0.01
      min_rps: 50
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from dataclasses import dataclass, field

import yaml

from . import EXIT_FAIL, EXIT_PASS, BadInput
from .results import PERCENTILE_COLUMNS, TOTAL_NAME, Endpoint, Run

METRICS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "error_rate", "min_rps",
           "p50_corrected_ms", "p90_corrected_ms", "p95_corrected_ms", "p99_corrected_ms", "max_corrected_ms")
CORRECTED_METRICS = tuple(m for m in METRICS if "_corrected_" in m)
"""Budgets on the latency from when an open-model iteration was due (locust_c.arrival_rate); a run without due
times has no data for them."""
"""The metrics a budget can set. ``min_rps`` is a floor, every other one a ceiling."""
SKIP_KEYS = ("skip_until", "skip_reason")
TOP_KEYS = ("defaults", "endpoints", "total")

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class Budget:
    """The limits of one block of the file (``defaults``, one endpoint, or ``total``)."""

    where: str
    limits: dict[str, float]
    skip_until: dt.date | None = None
    skip_reason: str | None = None
    line: int | None = None

    def skipped(self, today: dt.date) -> bool:
        """Whether the budget is knowingly broken on ``today`` (``skip_until`` is inclusive)."""
        return self.skip_until is not None and today <= self.skip_until


@dataclass
class SlaSpec:
    """A parsed ``slas.yml``."""

    path: str
    defaults: Budget | None = None
    endpoints: dict[str, Budget] = field(default_factory=dict)
    total: Budget | None = None


@dataclass
class Verdict:
    """One checked budget: the measured value of ``metric`` on ``endpoint`` against ``budget``."""

    endpoint: str
    metric: str
    budget: float
    measured: float | None
    status: str
    note: str = ""


@dataclass
class GateResult:
    """Every verdict of a gate, plus warnings (budgets that matched nothing, skips that expired)."""

    verdicts: list[Verdict]
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Verdict]:
        """The breached budgets."""
        return [v for v in self.verdicts if v.status == FAIL]

    @property
    def passed(self) -> bool:
        """True when no budget is breached (skipped ones do not count)."""
        return not self.failures

    @property
    def exit_code(self) -> int:
        """0 when passed, 1 on any breach."""
        return EXIT_PASS if self.passed else EXIT_FAIL


# ---------------------------------------------------------------------------------------------------- loading


class _Reader:
    """Walks the composed YAML node tree, so that every error can name its line."""

    def __init__(self, path: str, loader: yaml.SafeLoader) -> None:
        self.path = path
        self.loader = loader

    def error(self, node: yaml.Node | None, message: str) -> BadInput:
        line = node.start_mark.line + 1 if node is not None and node.start_mark is not None else None
        return BadInput(message, self.path, line)

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) items of a mapping node; keys must be unique strings."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} is {self.describe(node)}, expected a mapping")
        self.loader.flatten_mapping(node)
        items: list[tuple[str, yaml.Node, yaml.Node]] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise self.error(key_node, f"{what} has the key {key!r}, expected a string")
            if key in seen:
                raise self.error(key_node, f"{what} has the key {key!r} twice")
            seen.add(key)
            items.append((key, key_node, value_node))
        return items

    def value(self, node: yaml.Node) -> object:
        return self.loader.construct_object(node, deep=True)

    def describe(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        value = self.value(node)
        return "empty" if value is None else repr(value)

    def budget(self, node: yaml.Node, where: str) -> Budget:
        """Parse one budget block."""
        if isinstance(node, yaml.ScalarNode) and self.value(node) is None:
            raise self.error(node, f"{where} is empty, expected a mapping of metrics ({', '.join(METRICS)})")
        budget = Budget(where=where, limits={}, line=node.start_mark.line + 1)
        reason_node: yaml.Node | None = None
        for key, key_node, value_node in self.mapping(node, where):
            value = self.value(value_node)
            if key in METRICS:
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise self.error(value_node, f"{where}: {key} is {self.describe(value_node)}, expected a number")
                if value < 0:
                    raise self.error(value_node, f"{where}: {key} is {value}, expected a number >= 0")
                if key == "error_rate" and value > 1:
                    raise self.error(
                        value_node, f"{where}: error_rate is {value}, expected a fraction of requests (0.01 is 1 %)"
                    )
                budget.limits[key] = float(value)
            elif key == "skip_until":
                budget.skip_until = self.date(value, value_node, where)
            elif key == "skip_reason":
                if not isinstance(value, str):
                    raise self.error(value_node, f"{where}: skip_reason is {self.describe(value_node)}, expected text")
                budget.skip_reason, reason_node = value, value_node
            else:
                hint = difflib.get_close_matches(key, METRICS + SKIP_KEYS, n=1)
                did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
                raise self.error(
                    key_node,
                    f"{where}: unknown key {key!r} (expected one of: {', '.join(METRICS + SKIP_KEYS)}){did_you_mean}",
                )
        if not budget.limits:
            raise self.error(node, f"{where} sets no budget, expected at least one of: {', '.join(METRICS)}")
        if budget.skip_reason is not None and budget.skip_until is None:
            raise self.error(reason_node, f"{where}: skip_reason without skip_until (expected a date YYYY-MM-DD)")
        return budget

    def date(self, value: object, node: yaml.Node, where: str) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.error(node, f"{where}: skip_until is {self.describe(node)}, expected a date YYYY-MM-DD")


def parse_sla(text: str, path: str = "<slas>") -> SlaSpec:
    """Parse the text of an SLA file; errors raise :class:`BadInput` naming ``path`` and the line."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else None
            raise BadInput(f"not valid YAML: {e.problem or e.context}", path, line) from None
        except yaml.YAMLError as e:
            raise BadInput(f"not valid YAML: {e}", path) from None
        reader = _Reader(path, loader)
        if root is None or (isinstance(root, yaml.ScalarNode) and reader.value(root) is None):
            raise BadInput(f"the file is empty, expected a mapping with {', '.join(TOP_KEYS)}", path)
        spec = SlaSpec(path=path)
        for key, key_node, value_node in reader.mapping(root, "the file"):
            if key == "defaults":
                spec.defaults = reader.budget(value_node, "defaults")
            elif key == "total":
                spec.total = reader.budget(value_node, "total")
            elif key == "endpoints":
                if isinstance(value_node, yaml.ScalarNode) and reader.value(value_node) is None:
                    continue
                for name, name_node, budget_node in reader.mapping(value_node, "endpoints"):
                    method, _, rest = name.strip().partition(" ")
                    if name.strip() == TOTAL_NAME:
                        raise reader.error(name_node, "endpoints: 'Aggregated' is budgeted under 'total:'")
                    if not method or not rest.strip():
                        raise reader.error(
                            name_node,
                            f"endpoints: {name!r} is not an endpoint name, expected 'METHOD name' as Locust names it, "
                            "e.g. 'GET /api/products'",
                        )
                    key_name = f"{method} {rest.strip()}"
                    spec.endpoints[key_name] = reader.budget(budget_node, f"endpoints: {key_name!r}")
            else:
                hint = difflib.get_close_matches(key, TOP_KEYS, n=1)
                did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
                raise reader.error(
                    key_node, f"unknown key {key!r} (expected one of: {', '.join(TOP_KEYS)}){did_you_mean}"
                )
        if spec.defaults is None and not spec.endpoints and spec.total is None:
            raise BadInput(f"no budgets, expected at least one of: {', '.join(TOP_KEYS)}", path)
        return spec
    finally:
        loader.dispose()


def load_sla(path: str) -> SlaSpec:
    """Read and parse an SLA file; a missing, unreadable or malformed file raises :class:`BadInput`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise BadInput("no such SLA file (expected a YAML file of budgets)", path) from None
    except IsADirectoryError:
        raise BadInput("is a directory, expected a YAML file of budgets", path) from None
    except OSError as e:
        raise BadInput(f"cannot read: {e.strerror}", path) from None
    except UnicodeDecodeError:
        raise BadInput("not a text file (expected a YAML file of budgets)", path) from None
    return parse_sla(text, path)


# ---------------------------------------------------------------------------------------------------- checking


def _check(endpoint: Endpoint, budget: Budget, run: Run, today: dt.date) -> list[Verdict]:
    verdicts = []
    skipped = budget.skipped(today)
    for metric in METRICS:
        if metric not in budget.limits:
            continue
        if metric in run.missing_metrics:
            column = PERCENTILE_COLUMNS.get(metric, metric)
            raise BadInput(f"has no {column!r} column, so {metric} ({budget.where}) cannot be checked", run.path)
        limit = budget.limits[metric]
        measured = endpoint.metric(metric)
        if skipped:
            until = budget.skip_until.isoformat() if budget.skip_until else ""
            note = f"until {until}" + (f": {budget.skip_reason}" if budget.skip_reason else "")
            verdicts.append(Verdict(endpoint.key, metric, limit, measured, SKIP, note))
            continue
        if measured is None:
            note = "no data: no arrival_rate users, so no due times" if metric in CORRECTED_METRICS else "no data"
            verdicts.append(Verdict(endpoint.key, metric, limit, None, FAIL, note))
            continue
        breached = measured < limit if metric == "min_rps" else measured > limit
        note = f"skip_until {budget.skip_until.isoformat()} has passed" if budget.skip_until else ""
        verdicts.append(Verdict(endpoint.key, metric, limit, measured, FAIL if breached else PASS, note))
    return verdicts


def evaluate(spec: SlaSpec, run: Run, today: dt.date | None = None) -> GateResult:
    """Check every endpoint of ``run`` (and its total) against ``spec``.

    An endpoint uses its own entry when it has one, else ``defaults``. Budgets whose ``skip_until`` is today or
    later give SKIP verdicts. An entry that matches no endpoint of the run is a warning, not a failure.
    """
    today = today or dt.date.today()
    result = GateResult(verdicts=[])
    seen: set[str] = set()
    for endpoint in run.endpoints:
        if endpoint.num_requests <= 0:
            continue
        budget = spec.endpoints.get(endpoint.key)
        if budget is not None:
            seen.add(endpoint.key)
        else:
            budget = spec.defaults
        if budget is not None:
            result.verdicts += _check(endpoint, budget, run, today)
    if spec.total is not None:
        result.verdicts += _check(run.total, spec.total, run, today)
    names = [e.key for e in run.endpoints if e.num_requests > 0]
    for key in spec.endpoints:
        if key not in seen:
            hint = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
            result.warnings.append(f"{spec.path}: {key!r} matches no endpoint of the run, not checked{did_you_mean}")
    budgets = [*spec.endpoints.values(), spec.defaults, spec.total]
    for budget in budgets:
        if budget is not None and budget.skip_until is not None and not budget.skipped(today):
            result.warnings.append(
                f"{spec.path}:{budget.line}: skip_until {budget.skip_until.isoformat()} of {budget.where} has passed; "
                "the budget is checked again"
            )
    return result
