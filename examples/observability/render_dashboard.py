"""Render the locust-c Grafana dashboard to a PNG from a Prometheus server's data, where no Grafana runs.

The script reads the dashboard JSON (grafana/dashboards/locust-c.json beside it unless --dashboard says otherwise),
runs each panel's PromQL through Prometheus' HTTP API (``/api/v1/query_range``, standard library only) and draws
the panels with matplotlib in the dashboard's grid, in a dark Grafana-like style::

    python examples/observability/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --start 1767225600 --end 1767226200 --out dashboard.png

Grafana's ``$__rate_interval`` becomes what Grafana makes of it for each panel (or ``--rate-interval``), and each
dashboard variable its ``allValue``
(``$endpoint`` -> ``.*``) unless ``--var NAME=VALUE`` gives another. Time series panels are drawn as lines over
the seconds since --start; stat panels show each series' last value (mapped to text as the panel's value mappings
say); a panel whose queries return nothing says "No data".

Exit codes: 0 drawn; 1 drawn, but Prometheus refused a panel's query (the panel says why); 2 nothing drawn:
Prometheus could not be reached or the arguments or the dashboard are wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.colors import is_color_like
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

PROG = "render_dashboard"
DEFAULT_DASHBOARD = Path(__file__).resolve().parent / "grafana" / "dashboards" / "locust-c.json"

# Grafana's dark theme and its classic palette.
FIGURE_BG, PANEL_BG, BORDER = "#111217", "#181b1f", "#2c3235"
TEXT, MUTED, GRID, ERROR = "#ccccdc", "#8e8e9e", "#262a2f", "#f2495c"
PALETTE = ("#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
           "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477")
NAMED_COLORS = {"green": "#73BF69", "red": "#F2495C", "yellow": "#FADE2A", "orange": "#FF9830",
                "blue": "#5794F2", "purple": "#B877D9", "text": TEXT, "transparent": PANEL_BG}

# The page: inches per grid column (24 across) and per grid row, and the room around a panel's plot.
WIDTH_IN, ROW_IN, HEADER_IN, GAP_IN = 20.0, 0.38, 0.55, 0.06
TITLE_IN, LEFT_IN, RIGHT_IN, BOTTOM_IN, LEGEND_ROW_IN = 0.32, 0.62, 0.15, 0.28, 0.17

VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


# ---------------------------------------------------------------------------------------------------- data


class Unreachable(Exception):
    """Prometheus cannot be asked at all: nothing is drawn (exit code 2)."""


class QueryError(Exception):
    """Prometheus refused one query: its panel says so (exit code 1)."""


@dataclass
class Series:
    """One line of a panel: its legend label, the query it came from, and its samples."""

    label: str
    ref_id: str
    times: list[float]
    values: list[float]

    def finite(self) -> list[float]:
        """The values that are numbers (not NaN, not infinite)."""
        return [v for v in self.values if math.isfinite(v)]


@dataclass
class PanelData:
    """What a panel's queries returned."""

    series: list[Series] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(s.finite() for s in self.series)


@dataclass
class Window:
    """The time range asked for, and how Grafana's interval variables are filled in."""

    start: float
    end: float
    step: float
    rate_interval: str  # a duration, or "auto": as Grafana computes it for each panel
    scrape_interval: float = 1.0

    def panel_rate_interval(self, panel: dict[str, Any]) -> str:
        """``$__rate_interval`` for ``panel``: Grafana's max($__interval + scrape interval, 4 × scrape interval),
        where $__interval is at least the panel's minimum interval ("interval", e.g. "10s")."""
        if self.rate_interval != "auto":
            return self.rate_interval
        interval = max(self.step, seconds(panel.get("interval") or "0s"))
        return f"{max(interval + self.scrape_interval, 4 * self.scrape_interval):g}s"


DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def seconds(duration: str) -> float:
    """A Grafana/Prometheus duration ("500ms", "10s", "1m", "2h") in seconds; 0 for anything else."""
    match = DURATION.match(duration.strip())
    if match is None:
        return 0.0
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]


def post_json(url: str, params: dict[str, str], timeout: float) -> dict[str, Any]:
    """POST form ``params`` to ``url`` and decode the JSON answer; an HTTP error with a JSON body is returned too."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        try:
            return json.load(e)  # Prometheus answers a bad query with 400/422 and {"status": "error", ...}
        except ValueError:
            raise Unreachable(f"{url} answered HTTP {e.code} without a Prometheus answer") from None
    except urllib.error.URLError as e:
        raise Unreachable(f"cannot reach Prometheus at {url}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise Unreachable(f"no Prometheus answer from {url}: {e}") from None


def query_range(base_url: str, expr: str, window: Window, timeout: float) -> list[dict[str, Any]]:
    """Run ``expr`` over the window; the ``matrix`` result, one entry per series."""
    params = {"query": expr, "start": f"{window.start:.3f}", "end": f"{window.end:.3f}", "step": f"{window.step:g}"}
    answer = post_json(f"{base_url.rstrip('/')}/api/v1/query_range", params, timeout)
    if answer.get("status") != "success":
        raise QueryError(str(answer.get("error") or answer))
    data = answer.get("data") or {}
    if data.get("resultType") != "matrix":
        raise QueryError(f"expected a matrix, got {data.get('resultType')!r}")
    return list(data.get("result") or [])


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace ``$name`` and ``${name}`` with ``values[name]``; unknown names are left as they are."""
    return VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), expr)


def legend_label(legend_format: str | None, metric: dict[str, str]) -> str:
    """A series' legend as Grafana writes it: the ``{{label}}`` template filled in, else the labels themselves."""
    if legend_format and legend_format != "__auto":
        return LEGEND_LABEL.sub(lambda m: metric.get(m.group(1), ""), legend_format).strip() or "value"
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    name = metric.get("__name__", "")
    return f"{name}{{{labels}}}" if labels else name or "value"


def to_series(result: dict[str, Any], target: dict[str, Any], start: float) -> Series:
    """One ``matrix`` entry as a :class:`Series`, its times in seconds since ``start``."""
    samples = result.get("values") or []
    return Series(
        label=legend_label(target.get("legendFormat"), result.get("metric") or {}),
        ref_id=str(target.get("refId", "")),
        times=[float(t) - start for t, _ in samples],
        values=[float(v) for _, v in samples],  # "NaN", "+Inf" and "-Inf" parse as floats
    )


def panel_data(panel: dict[str, Any], base_url: str, window: Window, values: dict[str, str],
               timeout: float) -> PanelData:
    """Run every visible query of ``panel``; a refused query becomes an error line of the panel."""
    data = PanelData()
    values = {**values, "__rate_interval": window.panel_rate_interval(panel)} if \
        values.get("__rate_interval") == "auto" else values
    for target in panel.get("targets") or []:
        if target.get("hide") or not target.get("expr"):
            continue
        try:
            results = query_range(base_url, substitute(target["expr"], values), window, timeout)
        except QueryError as e:
            data.errors.append(f"{target.get('refId', '?')}: {e}")
            continue
        data.series += [to_series(r, target, window.start) for r in results]
    return data


# ---------------------------------------------------------------------------------------------------- dashboard


def load_dashboard(path: Path) -> dict[str, Any]:
    """The dashboard JSON (a bare dashboard, or the ``{"dashboard": ...}`` that Grafana's API exports)."""
    with path.open(encoding="utf-8") as f:
        document = json.load(f)
    dashboard = document.get("dashboard", document) if isinstance(document, dict) else None
    if not isinstance(dashboard, dict) or not isinstance(dashboard.get("panels"), list):
        raise ValueError("not a Grafana dashboard (no panels list)")
    return dashboard


def flat_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels to draw: rows are left out, the panels folded into a collapsed row are taken out of it."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            panels += panel.get("panels") or []
        elif "gridPos" in panel:
            panels.append(panel)
    return panels


def variable_values(dashboard: dict[str, Any], window: Window, given: dict[str, str]) -> dict[str, str]:
    """Values for the variables the queries use: Grafana's interval ones, then each templating variable's
    ``allValue`` (``.*`` when it has none), unless ``given`` names it."""
    values = {"__rate_interval": window.rate_interval, "__interval": f"{window.step:g}s",
              "__range": f"{window.end - window.start:.0f}s"}
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        name = variable.get("name")
        if name:
            values[name] = variable.get("allValue") or ".*"
    return values | given


# ---------------------------------------------------------------------------------------------------- units


SI = ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k"), (1.0, ""))
IEC = ((2.0**40, " TiB"), (2.0**30, " GiB"), (2.0**20, " MiB"), (2.0**10, " KiB"), (1.0, " B"))
TIME = ((3600.0, " h"), (60.0, " min"), (1.0, " s"), (1e-3, " ms"), (1e-6, " µs"))


def scaled(value: float, steps: Sequence[tuple[float, str]], suffix: str = "") -> str:
    """``value`` divided by the largest step not above it, three significant digits, with the step's symbol."""
    if value == 0:
        return "0" + suffix
    factor, symbol = next(((f, s) for f, s in steps if abs(value) >= f), steps[-1])
    number = value / factor
    return f"{number:.3g}{symbol}{suffix}" if abs(number) < 1000 else f"{number:.0f}{symbol}{suffix}"


def format_value(value: float, unit: str | None, decimals: int | None = None) -> str:
    """``value`` written the way Grafana writes the unit (the few units the dashboard uses, and close kin)."""
    if not math.isfinite(value):
        return str(value)
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "percent":
        return f"{value:.{1 if decimals is None else decimals}f}%"
    writers: dict[str, Callable[[float], str]] = {
        "s": lambda v: scaled(v, TIME),
        "ms": lambda v: scaled(v / 1000, TIME),
        "bytes": lambda v: scaled(v, IEC),
        "binBps": lambda v: scaled(v, IEC, "/s"),
        "decbytes": lambda v: scaled(v, SI, "B"),
        "Bps": lambda v: scaled(v, SI, "B/s"),
        "reqps": lambda v: scaled(v, SI, " req/s"),
    }
    if unit in writers:
        return writers[unit](value)
    return f"{value:.{decimals}f}" if decimals is not None else scaled(value, SI)


# ---------------------------------------------------------------------------------------------------- field config


def overrides_for(panel: dict[str, Any], ref_id: str) -> dict[str, Any]:
    """The override properties (``id`` -> value) that apply to the series of query ``ref_id``."""
    properties: dict[str, Any] = {}
    for override in (panel.get("fieldConfig") or {}).get("overrides") or []:
        matcher = override.get("matcher") or {}
        if matcher.get("id") == "byFrameRefID" and matcher.get("options") == ref_id:
            properties.update({p["id"]: p.get("value") for p in override.get("properties") or [] if "id" in p})
    return properties


def field_option(panel: dict[str, Any], ref_id: str, key: str, default: Any = None) -> Any:
    """A field option for the series of ``ref_id``: its override, else the panel's default (``custom.x`` for
    the custom options), else ``default``."""
    properties = overrides_for(panel, ref_id)
    if key in properties:
        return properties[key]
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    if key.startswith("custom."):
        return (defaults.get("custom") or {}).get(key[len("custom."):], default)
    return defaults.get(key, default)


def color(name: str | None, fallback: str = MUTED) -> str:
    """A Grafana colour (a name of its theme, or anything matplotlib knows) for matplotlib."""
    if not name:
        return fallback
    name = NAMED_COLORS.get(name, name)
    return name if is_color_like(name) else fallback


def series_color(panel: dict[str, Any], series: Series, index: int) -> str:
    """The series' fixed colour when an override gives one, else the palette's ``index``-th."""
    setting = field_option(panel, series.ref_id, "color") or {}
    if setting.get("mode") == "fixed":
        return color(setting.get("fixedColor"))
    return PALETTE[index % len(PALETTE)]


def mapped(value: float, mappings: list[dict[str, Any]]) -> tuple[str, str | None] | None:
    """(text, colour) when one of the panel's value or range mappings matches ``value``."""
    key = str(int(value)) if value.is_integer() else repr(value)
    for mapping in mappings:
        options = mapping.get("options") or {}
        if mapping.get("type") == "value" and key in options:
            result = options[key]
        elif mapping.get("type") == "range" and _in_range(value, options):
            result = options.get("result") or {}
        else:
            continue
        return str(result.get("text", key)), result.get("color")
    return None


def _in_range(value: float, options: dict[str, Any]) -> bool:
    low, high = options.get("from"), options.get("to")
    return (low is None or value >= low) and (high is None or value <= high)


def threshold_color(panel: dict[str, Any], value: float) -> str:
    """The colour of the last threshold step at or below ``value`` (Grafana's absolute thresholds)."""
    steps = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds", {}).get("steps") or []
    chosen = NAMED_COLORS["blue"]
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            chosen = color(step.get("color"), chosen)
    return chosen


# ---------------------------------------------------------------------------------------------------- layout


@dataclass
class Box:
    """A rectangle on the page, in inches from the bottom left."""

    left: float
    bottom: float
    width: float
    height: float

    def fraction(self, page: tuple[float, float]) -> list[float]:
        """The rectangle as ``[left, bottom, width, height]`` fractions of a ``page`` (width, height) in inches."""
        w, h = page
        return [self.left / w, self.bottom / h, self.width / w, self.height / h]


def page_size(panels: list[dict[str, Any]]) -> tuple[float, float]:
    """The page (inches) that holds the dashboard's grid and the header."""
    rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=1)
    return WIDTH_IN, HEADER_IN + rows * ROW_IN


def panel_box(grid: dict[str, int], page: tuple[float, float]) -> Box:
    """Where a panel's ``gridPos`` lies on the page, with a small gap all round."""
    column = WIDTH_IN / 24
    top = page[1] - HEADER_IN - grid["y"] * ROW_IN
    return Box(grid["x"] * column + GAP_IN, top - grid["h"] * ROW_IN + GAP_IN,
               grid["w"] * column - 2 * GAP_IN, grid["h"] * ROW_IN - 2 * GAP_IN)


def legend_shape(labels: list[str], width: float, max_height: float) -> tuple[int, int]:
    """(columns, rows) for a legend of ``labels`` in ``width`` inches, rows limited to ``max_height`` inches."""
    longest = max((len(label) for label in labels), default=1)
    columns = max(1, min(len(labels), int(width // (0.055 * longest + 0.45))))
    rows = min(math.ceil(len(labels) / columns), max(1, int(max_height // LEGEND_ROW_IN)))
    return columns, rows


# ---------------------------------------------------------------------------------------------------- drawing


def draw_frame(fig: Figure, page: tuple[float, float], box: Box, title: str) -> None:
    """The panel's background, border and title."""
    fig.add_artist(Rectangle(box.fraction(page)[:2], box.width / page[0], box.height / page[1],
                             transform=fig.transFigure, facecolor=PANEL_BG, edgecolor=BORDER, linewidth=0.8,
                             zorder=-2))  # under the panel's axes (zorder 0)
    fig.text((box.left + 0.1) / page[0], (box.bottom + box.height - 0.08) / page[1], title,
             ha="left", va="top", color=TEXT, fontsize=9, fontweight="bold")


def draw_message(fig: Figure, page: tuple[float, float], box: Box, data: PanelData) -> None:
    """'No data' in the middle of the panel, with the refused queries under it."""
    x, y = (box.left + box.width / 2) / page[0], (box.bottom + box.height / 2) / page[1]
    fig.text(x, y, "No data", ha="center", va="center", color=MUTED, fontsize=12)
    if data.errors:
        width = max(20, int(box.width / 0.06))
        text = "\n".join(textwrap.shorten(e, width * 2, placeholder=" …") for e in data.errors)
        fig.text(x, y - 0.3 / page[1], textwrap.fill(text, width), ha="center", va="top", color=ERROR, fontsize=7)


def style_axes(ax: Axes, unit: str | None, label: str = "") -> None:
    """Dark axes with Grafana-like ticks, faint grid lines and unit-aware tick labels."""
    ax.set_facecolor(PANEL_BG)
    for side, spine in ax.spines.items():
        spine.set_visible(side == "bottom")
        spine.set_color(BORDER)
    ax.tick_params(colors=MUTED, labelsize=7, length=0)
    ax.grid(True, color=GRID, linewidth=0.7)
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_value(v, unit)))
    if label:
        ax.set_ylabel(label, color=MUTED, fontsize=7)


def plot_series(ax: Axes, panel: dict[str, Any], series: Series, line_color: str) -> Line2D:
    """One line, dashed and filled as the panel's field config says; returns the line for the legend."""
    values = [v if math.isfinite(v) else math.nan for v in series.values]
    dash = (field_option(panel, series.ref_id, "custom.lineStyle") or {}).get("fill") == "dash"
    width = float(field_option(panel, series.ref_id, "custom.lineWidth", 1) or 1)
    (line,) = ax.plot(series.times, values, color=line_color, linewidth=width,
                      linestyle=(0, (4, 3)) if dash else "-", label=series.label)
    fill = float(field_option(panel, series.ref_id, "custom.fillOpacity", 0) or 0)
    if fill > 0:  # down to the axis' min, or (as Grafana fills to the axis' bottom) to the series' lowest value
        floor = field_option(panel, series.ref_id, "min")
        floor = min(series.finite()) if floor is None else floor
        ax.fill_between(series.times, values, floor, color=line_color, alpha=fill / 100, linewidth=0)
    return line


def axis_limits(ax: Axes, panel: dict[str, Any], ref_ids: list[str], window: Window) -> None:
    """x over the whole window; y from the field's ``min`` (0 for the dashboard's panels) when it has one."""
    ax.set_xlim(0, window.end - window.start)
    low = field_option(panel, ref_ids[0], "min") if ref_ids else None
    if low is not None:
        ax.set_ylim(bottom=low)
    if ax.get_ylim()[1] <= (low or 0):
        ax.set_ylim(top=(low or 0) + 1)


def draw_legend(fig: Figure, page: tuple[float, float], box: Box, lines: list[Line2D]) -> None:
    """The series' labels under the plot, in as many columns as fit; the rest counted as '+N more'."""
    labels = [str(line.get_label()) for line in lines]
    columns, rows = legend_shape(labels, box.width, box.height)
    shown = columns * rows
    if len(lines) > shown:
        lines = [*lines[: shown - 1], Line2D([], [], color=PANEL_BG, label=f"+{len(labels) - shown + 1} more")]
    legend_ax = fig.add_axes(box.fraction(page))
    legend_ax.axis("off")
    legend_ax.legend(handles=lines, loc="upper left", ncol=columns, frameon=False, fontsize=7, labelcolor=TEXT,
                     borderaxespad=0.1, handlelength=1.6, columnspacing=1.4, handletextpad=0.5, labelspacing=0.35)


def draw_timeseries(fig: Figure, page: tuple[float, float], box: Box, panel: dict[str, Any], data: PanelData,
                    window: Window) -> None:
    """Lines per series over the seconds since --start, a right axis for the series an override puts there."""
    series = [s for s in data.series if s.finite()]
    colors = [series_color(panel, s, i) for i, s in enumerate(series)]
    on_right = [field_option(panel, s.ref_id, "custom.axisPlacement") == "right" for s in series]
    left = [(s, c) for s, c, r in zip(series, colors, on_right, strict=True) if not r]
    right = [(s, c) for s, c, r in zip(series, colors, on_right, strict=True) if r]
    labels = [s.label for s in series]
    columns, rows = legend_shape(labels, box.width - 0.2, 0.4 * box.height)
    legend_height = rows * LEGEND_ROW_IN + 0.05
    plot = Box(box.left + LEFT_IN, box.bottom + legend_height + BOTTOM_IN,
               box.width - LEFT_IN - (LEFT_IN if right else RIGHT_IN),
               box.height - TITLE_IN - legend_height - BOTTOM_IN)
    ax = fig.add_axes(plot.fraction(page))
    lines = _plot_side(ax, panel, left, window)
    if right:
        lines += _plot_side(ax.twinx(), panel, right, window)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}s"))
    if data.errors:
        ax.text(0.01, 0.98, "; ".join(data.errors)[:200], transform=ax.transAxes, color=ERROR, fontsize=6, va="top")
    legend = Box(box.left + 0.1, box.bottom + 0.04, box.width - 0.2, legend_height)
    draw_legend(fig, page, legend, lines)


def _plot_side(ax: Axes, panel: dict[str, Any], side: list[tuple[Series, str]], window: Window) -> list[Line2D]:
    """The (series, colour) pairs of one y axis, styled with the unit and label of the first of them."""
    ref_ids = [s.ref_id for s, _ in side]
    first = ref_ids[0] if ref_ids else ""
    style_axes(ax, field_option(panel, first, "unit"), field_option(panel, first, "custom.axisLabel") or "")
    lines = [plot_series(ax, panel, s, c) for s, c in side]
    axis_limits(ax, panel, ref_ids, window)
    return lines


def last_values(data: PanelData) -> list[tuple[str, float]]:
    """Each series' last number (Grafana's "last *"), for a stat panel."""
    return [(s.label, s.finite()[-1]) for s in data.series if s.finite()]


def draw_stat(fig: Figure, page: tuple[float, float], box: Box, panel: dict[str, Any], data: PanelData) -> None:
    """Each series' last value, big, on the colour its mapping or threshold gives (Grafana's background mode)."""
    values = last_values(data)
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    width = (box.width - 0.2) / len(values)
    for i, (label, value) in enumerate(values):
        hit = mapped(value, defaults.get("mappings") or [])
        text = hit[0] if hit else format_value(value, defaults.get("unit"), defaults.get("decimals"))
        fill = color(hit[1], threshold_color(panel, value)) if hit and hit[1] else threshold_color(panel, value)
        cell = Box(box.left + 0.1 + i * width, box.bottom + 0.1, width - 0.05, box.height - TITLE_IN - 0.1)
        fig.add_artist(Rectangle(cell.fraction(page)[:2], cell.width / page[0], cell.height / page[1],
                                 transform=fig.transFigure, facecolor=fill, edgecolor="none", alpha=0.85,
                                 zorder=-1))
        x, y = (cell.left + cell.width / 2) / page[0], (cell.bottom + cell.height / 2) / page[1]
        size = max(10.0, min(26.0, 15 * cell.height))
        fig.text(x, y, text, ha="center", va="center", color="white", fontsize=size, fontweight="bold")
        if len(values) > 1:
            fig.text(x, (cell.bottom + 0.08) / page[1], label, ha="center", va="bottom", color="white", fontsize=7)


def draw_panel(fig: Figure, page: tuple[float, float], panel: dict[str, Any], data: PanelData,
               window: Window) -> None:
    """One panel in its grid place: the frame, then its data, or 'No data'."""
    box = panel_box(panel["gridPos"], page)
    draw_frame(fig, page, box, str(panel.get("title", "")))
    if data.empty:
        draw_message(fig, page, box, data)
    elif panel.get("type") == "stat":
        draw_stat(fig, page, box, panel, data)
    else:
        draw_timeseries(fig, page, box, panel, data, window)


def draw_header(fig: Figure, page: tuple[float, float], dashboard: dict[str, Any], window: Window,
                values: dict[str, str]) -> None:
    """The dashboard's title, the time range and what the variables were."""
    def when(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

    y = 1 - 0.3 / page[1]
    fig.text(0.1 / page[0], y, str(dashboard.get("title", "dashboard")), color=TEXT, fontsize=14,
             fontweight="bold", va="center")
    names = sorted({m.group(1) or m.group(2) for m in VARIABLE.finditer(json.dumps(dashboard.get("panels")))})
    shown = ", ".join(f"${n} = {values[n]}" for n in names if n in values)
    info = (f"{when(window.start)} to {when(window.end)} UTC ({window.end - window.start:.0f} s; x: seconds since "
            f"the start), step {window.step:g}s, {shown}")
    fig.text(1 - 0.15 / page[0], y, info, color=MUTED, fontsize=8, ha="right", va="center")


def render(dashboard: dict[str, Any], datas: list[tuple[dict[str, Any], PanelData]], window: Window,
           values: dict[str, str], out: Path, dpi: int) -> None:
    """Draw every panel and save the page as a PNG."""
    page = page_size([panel for panel, _ in datas])
    with rc_context({"text.parse_math": False}):  # "$endpoint" and "$__rate_interval" are no TeX
        fig = Figure(figsize=page, facecolor=FIGURE_BG)
        draw_header(fig, page, dashboard, window, values)
        for panel, data in datas:
            draw_panel(fig, page, panel, data, window)
        fig.savefig(out, dpi=dpi, facecolor=FIGURE_BG)


# ---------------------------------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; argparse exits 2 on a bad one."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0],
        epilog="exit codes: 0 drawn, 1 drawn but a query was refused, 2 nothing drawn (Prometheus unreachable or "
        "bad input)")
    parser.add_argument("--prometheus", required=True, metavar="URL", help="e.g. http://127.0.0.1:9090")
    parser.add_argument("--start", required=True, type=float, metavar="UNIX", help="start of the range, UNIX seconds")
    parser.add_argument("--end", required=True, type=float, metavar="UNIX", help="end of the range, UNIX seconds")
    parser.add_argument("--out", required=True, type=Path, metavar="PNG", help="the picture to write")
    parser.add_argument("--step", type=float, default=1.0, metavar="S", help="seconds between points (default 1)")
    parser.add_argument("--rate-interval", default="auto", metavar="DURATION",
                        help="what $__rate_interval becomes (default auto: as Grafana computes it from each "
                        "panel's minimum interval and the scrape interval)")
    parser.add_argument("--scrape-interval", type=float, default=1.0, metavar="S",
                        help="Prometheus' scrape interval, for --rate-interval auto (default 1)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="a dashboard variable's value (default: its 'All' value, .* for $endpoint)")
    parser.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD, metavar="JSON",
                        help="the dashboard to draw (default: grafana/dashboards/locust-c.json beside this script)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds per query (default 10)")
    parser.add_argument("--dpi", type=int, default=100, help="dots per inch of the PNG (default 100)")
    args = parser.parse_args(argv)
    if not args.end > args.start:
        parser.error("--end must be after --start")
    if not args.step > 0 or (args.end - args.start) / args.step > 11000:
        parser.error("--step must be > 0 and give at most 11000 points (Prometheus' limit)")
    if any("=" not in v for v in args.var):
        parser.error("--var takes NAME=VALUE")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Query, draw, save; returns the exit code."""
    args = parse_args(argv)
    try:
        dashboard = load_dashboard(args.dashboard)
    except (OSError, ValueError) as e:
        print(f"{PROG}: error: {args.dashboard}: {e}", file=sys.stderr)
        return 2
    window = Window(args.start, args.end, args.step, args.rate_interval, args.scrape_interval)
    values = variable_values(dashboard, window, dict(v.split("=", 1) for v in args.var))
    try:
        datas = [(p, panel_data(p, args.prometheus, window, values, args.timeout)) for p in flat_panels(dashboard)]
    except Unreachable as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    render(dashboard, datas, window, values, args.out, args.dpi)
    refused = [f"{p.get('title')}: {error}" for p, data in datas for error in data.errors]
    for line in refused:
        print(f"{PROG}: query refused: {line}", file=sys.stderr)
    print(f"{PROG}: wrote {args.out} ({len(datas)} panels, {sum(not d.empty for _, d in datas)} with data)")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
