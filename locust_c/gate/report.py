"""Plain-text and Markdown tables for the gate's verdicts, and the GitHub step summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .sla import FAIL, GateResult


def format_value(metric: str, value: float | None) -> str:
    """A measured or budgeted value with its unit: ``212 ms``, ``1.25 %``, ``48.3/s``."""
    if value is None:
        return "n/a"
    if metric == "error_rate":
        return f"{value * 100:.2f} %"
    if metric in ("min_rps", "rps"):
        return f"{value:.1f}/s"
    return f"{value:.0f} ms" if abs(value) >= 100 else f"{value:.1f} ms"


def format_budget(metric: str, value: float) -> str:
    """A budget with its direction: ``<= 200 ms`` or ``>= 50.0/s``."""
    return (">= " if metric == "min_rps" else "<= ") + format_value(metric, value)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as a space-aligned plain-text table."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip() for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as a GitHub-flavoured Markdown table."""

    def cell(value: str) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


SLA_HEADER = ("endpoint", "metric", "budget", "measured", "verdict", "note")


def sla_rows(result: GateResult) -> list[tuple[str, str, str, str, str, str]]:
    """The verdict table's rows."""
    return [
        (v.endpoint, v.metric, format_budget(v.metric, v.budget), format_value(v.metric, v.measured), v.status, v.note)
        for v in result.verdicts
    ]


def sla_summary_line(result: GateResult) -> str:
    """One line: the verdict and how many budgets were breached."""
    checked = len(result.verdicts)
    if not checked:
        return "SLA gate: PASS (no budget applied to any endpoint of the run)"
    if result.passed:
        return f"SLA gate: PASS ({checked} budgets checked)"
    return f"SLA gate: FAIL ({len(result.failures)} of {checked} budgets breached)"


def sla_text(result: GateResult, source: str = "") -> str:
    """The verdict table as plain text, with warnings and a final verdict line."""
    parts = [f"SLA verdicts for {source}" if source else "SLA verdicts", text_table(SLA_HEADER, sla_rows(result))]
    parts += [f"warning: {w}" for w in result.warnings]
    parts.append(sla_summary_line(result))
    return "\n".join(parts)


def sla_markdown(result: GateResult, source: str = "") -> str:
    """The verdict table as Markdown, breaches in bold."""
    rows = [tuple(f"**{c}**" if r[4] == FAIL and i == 4 else c for i, c in enumerate(r)) for r in sla_rows(result)]
    title = "### " + sla_summary_line(result) + (f" — `{source}`" if source else "")
    parts = [title, "", markdown_table(SLA_HEADER, rows)]
    if result.warnings:
        parts += ["", *[f"- warning: {w}" for w in result.warnings]]
    return "\n".join(parts) + "\n"


def append_step_summary(markdown: str) -> None:
    """Append ``markdown`` to the file named by ``$GITHUB_STEP_SUMMARY`` when that is set (GitHub Actions)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(markdown if markdown.endswith("\n") else markdown + "\n")
            out.write("\n")
    except OSError as e:
        print(f"locust-c: warning: cannot append to GITHUB_STEP_SUMMARY {path}: {e.strerror}", file=sys.stderr)
