"""The benchmark's report: tables on stdout, results.md and results.png."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

from measures import Measurement

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from run import Settings

BASELINE = "FastHttpUser"
"""The generator every ratio is taken to."""

CANDIDATE = "FastCUser"
"""The generator the targets are about."""

COLORS = {"wrk": "#7f7f7f", "HttpUser": "#9ecae1", "FastHttpUser": "#3182bd", "FastCUser (libcurl)": "#fdae6b",
          "FastCUser": "#e6550d"}

# ---- formatting ------------------------------------------------------------------------------------------


def num(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or an en dash when there is none."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    """Milliseconds: two decimals below 100 ms, whole numbers above."""
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def ratio(value: float | None, base: float | None) -> str:
    """``value / base`` as ``3.42×``."""
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def deviation(value: float | None, reference: float | None) -> str:
    """How far ``value`` is from ``reference``, signed, in percent."""
    if value is None or not reference:
        return "–"
    return f"{(value / reference - 1) * 100:+.0f} %"


@dataclass
class Table:
    """A titled table, rendered as aligned text or as Markdown."""

    title: str
    caption: str
    headers: list[str]
    rows: list[list[str]]

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(self.headers)]
        lines = [self.title, "  ".join(h.rjust(w) for h, w in zip(self.headers, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in self.rows]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.caption, "", "| " + " | ".join(self.headers) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(self.headers) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def of(results: Sequence[Measurement], section: str) -> list[Measurement]:
    return [m for m in results if m.section == section]


def find(results: Sequence[Measurement], section: str, generator: str) -> Measurement | None:
    """The successful run of ``generator`` in ``section``, if any."""
    return next((m for m in of(results, section) if m.generator == generator and m.ok), None)


def error_row(m: Measurement, width: int) -> list[str]:
    return [m.generator, "failed: see below"] + [""] * (width - 2)


# ---- the sections ---------------------------------------------------------------------------------------


def throughput_table(results: Sequence[Measurement], s: Settings, section: str = "throughput") -> Table:
    base = find(results, section, BASELINE)
    headers = ["generator", "req/s", "generator CPU", "req per CPU-s", f"ratio to {BASELINE}", "server CPU",
               "other load: gen. / server CPU", "whole run: req/s", "whole run: req per CPU-s", "failures"]
    rows = []
    for m in of(results, section):
        if not m.ok:
            rows.append(error_row(m, len(headers)))
            continue
        rows.append([m.generator, num(m.rps), f"{m.cpu_share * 100:.0f} %", num(m.requests_per_cpu_second),
                     ratio(m.requests_per_cpu_second, base and base.requests_per_cpu_second),
                     f"{m.server_cpu_share * 100:.0f} %", other_load(m), num(m.reported_rps),
                     num(m.whole_run_requests_per_cpu_second), num(m.total_failures)])
    caption = (f"`GET /` (2-byte body, keep-alive), {s.users} users (wrk: connections), {s.duration} s per run, "
               "no wait time. *req/s*, *generator CPU* (cores) and *req per CPU-s* cover the steady state only: "
               "from 1 s after every user is spawned to 1.5 s before the end, requests counted by the test "
               "server. The *whole run* columns are the generator's own figures over its whole life, start-up "
               "and ramp-up included (Locust's total req/s; requests ÷ CPU time from rusage). *Other load* is "
               "the share of the generator's and of the server's CPU that went to anything else (other processes, "
               "interrupts, the hypervisor); a run where it passed 15 % was repeated.")
    if section == "checkout":
        caption = (f"A realistic task: `POST /echo` with three headers and a JSON body, its answer parsed and checked "
                   f"in a `catch_response` block; {s.users} users, {s.duration} s per run, no wait time. Columns as "
                   "in section 1.")
        return Table("1b. Throughput and efficiency: a checkout task", caption, headers, rows)
    return Table("1. Throughput and efficiency", caption, headers, rows)


def latency_table(results: Sequence[Measurement], s: Settings) -> Table:
    ref = find(results, "latency", "wrk")
    base = find(results, "latency", BASELINE)
    headers = ["generator", "req/s", "generator CPU", "other load: gen. / server CPU", "p50 reported", "p99 reported",
               "p50 exact", "p99 exact", "p50 vs wrk", "p99 vs wrk", f"p99 ratio to {BASELINE}", "failures"]
    rows = []
    for m in of(results, "latency"):
        if not m.ok:
            rows.append(error_row(m, len(headers)))
            continue
        p50, p99 = exact(m)
        rows.append([m.generator, num(m.rps), f"{m.cpu_share * 100:.0f} %", other_load(m),
                     ms(m.p50), ms(m.p99), ms(p50), ms(p99),
                     deviation(p50, ref and ref.p50), deviation(p99, ref and ref.p99),
                     ratio(p99, base and exact(base)[1]), num(m.total_failures)])
    caption = (f"`GET {s.latency_path}` ({s.latency_users} users, {s.latency_duration} s, no wait time): the server "
               "answers after 5 ms, so the true latency is a little over 5 ms. Times in ms. *Reported* is what "
               "the generator shows its user (Locust rounds times under 100 ms to whole milliseconds); *exact* "
               "is the same responses' times unrounded: recorded by a request listener in Locust's users, read from "
               "the engine's own histograms (`--results-json`) for FastCUser, whose batched statistics a listener "
               "would switch off. *vs wrk* compares the exact "
               "figures with wrk's. A generator that cannot keep up adds its own queueing to every time it reports.")
    return Table(f"2. Latency under load: {s.latency_users} users on {s.latency_path}", caption, headers, rows)


def other_load(m: Measurement) -> str:
    return f"{m.other_cpu_share * 100:.0f} % / {m.other_server_cpu_share * 100:.0f} %"


def exact(m: Measurement) -> tuple[float | None, float | None]:
    """The unrounded p50/p99 when recorded (wrk's own figures are already unrounded)."""
    if m.exact_p50 is not None:
        return m.exact_p50, m.exact_p99
    return m.p50, m.p99


def memory_table(results: Sequence[Measurement], s: Settings) -> Table:
    base = find(results, "memory", BASELINE)
    headers = ["generator", "RSS, 1 user", f"RSS, {s.idle_users:,} users", "peak RSS (VmHWM)", "per user",
               "per user (peak)", f"ratio to {BASELINE}", "connections open at server"]
    rows = []
    for m in of(results, "memory"):
        if not m.ok:
            rows.append(error_row(m, len(headers)))
            continue
        rows.append([m.generator, mib(m.base_rss_kib), mib(m.rss_kib), mib(m.hwm_kib),
                     f"{num(m.rss_per_user_kib, 1)} KiB", f"{num(m.hwm_per_user_kib, 1)} KiB",
                     ratio(m.rss_per_user_kib, base and base.rss_per_user_kib), num(m.server_connections)])
    caption = (f"{s.idle_users:,} users spawned at {s.idle_rate}/s; each makes one request in `on_start` (its "
               f"keep-alive connection stays open) and then waits. RSS (VmRSS) is read from /proc {s.settle:.0f} s "
               "after the last user is spawned. *Per user* = (RSS with all users − RSS of the same locustfile "
               f"with 1 user) ÷ {s.idle_users - 1:,}; *peak* uses VmHWM, which includes the spawning burst.")
    return Table(f"3. Memory: {s.idle_users:,} idle users", caption, headers, rows)


OBSERVED = ("FastCUser + Prometheus", "FastCUser + OTel")
OBSERVE_TOLERANCE = 0.03
"""Live metrics may cost FastCUser at most this share of its requests per CPU-second."""


def observe_medians(results: Sequence[Measurement]) -> dict[str, float]:
    """The median requests per CPU-second of each generator's successful observe runs."""
    runs: dict[str, list[float]] = {}
    for m in of(results, "observe"):
        if m.ok:
            runs.setdefault(m.generator, []).append(m.requests_per_cpu_second)
    return {name: median(values) for name, values in runs.items()}


def observe_ratios(results: Sequence[Measurement]) -> dict[str, float]:
    """Per observed generator, the median over the rounds of its requests per CPU-second divided by FastCUser's
    in the same round (the rounds differ by far more than the generators within one)."""
    runs = [m for m in of(results, "observe") if m.ok and m.requests_per_cpu_second]
    base = {m.round_no: m.requests_per_cpu_second for m in runs if m.generator == CANDIDATE}
    out: dict[str, list[float]] = {}
    for m in runs:
        if m.generator != CANDIDATE and m.round_no in base:
            out.setdefault(m.generator, []).append(m.requests_per_cpu_second / base[m.round_no])
    return {name: median(values) for name, values in out.items()}


def observe_table(results: Sequence[Measurement], s: Settings) -> Table:
    medians = observe_medians(results)
    headers = ["generator", "req per CPU-s (median)", "each round", f"ratio to {CANDIDATE} (median of rounds)",
               "req/s (median)"]
    ratios = observe_ratios(results)
    rows = []
    for name in (CANDIDATE, *OBSERVED):
        good = [m for m in of(results, "observe") if m.generator == name and m.ok]
        if not good:
            rows.append([name, "failed: see below", "", "", ""])
            continue
        rows.append([name, num(medians[name]), " / ".join(num(m.requests_per_cpu_second) for m in good),
                     "1.00×" if name == CANDIDATE else (f"{ratios[name]:.3f}×" if name in ratios else "–"),
                     num(median(m.rps for m in good))])
    caption = (f"`GET /` as in section 1 ({s.users} users each, {s.duration} s per round): FastCUser alone and with "
               "live metrics, `--prometheus-port` with /metrics scraped every second and Locust's `--otel` with "
               "the SDK's console exporter collecting every second. The three run at the same time, pinned to the "
               "same CPU, each against a test server of its own, so that the machine's drift touches all three "
               "alike (bench/observe.py). Each generator gets about a third of the CPU, so the scrapes and collections "
               "come every 3 s: once per second of its own CPU, as when it runs alone. Three rounds, the order "
               "rotated each round; the ratio is taken within each round.")
    return Table("5. The cost of live metrics", caption, headers, rows)


def observe_target(results: Sequence[Measurement]) -> Target:
    goal = (f"{CANDIDATE}'s requests per CPU-second with --prometheus-port (scraped every second) and with --otel "
            f"within {OBSERVE_TOLERANCE * 100:.0f} % of without")
    ratios = observe_ratios(results)
    if any(name not in ratios for name in OBSERVED):
        return Target(goal, None, "not measured")
    offs = {name: ratios[name] - 1 for name in OBSERVED}
    shown = ", ".join(f"{name.split(' + ')[1]} {off * 100:+.1f} %" for name, off in offs.items())
    return Target(goal, all(off >= -OBSERVE_TOLERANCE for off in offs.values()), shown)


def mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:,.1f} MiB"


# ---- targets ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One of the targets the project tracks, and whether this run met it (None: not measured)."""

    goal: str
    met: bool | None
    measured: str

    @property
    def mark(self) -> str:
        return {True: "✔", False: "✘", None: "–"}[self.met]


def targets(results: Sequence[Measurement], s: Settings) -> list[Target]:
    return [efficiency_target(results, "throughput", 8.0, "the small GET"),
            efficiency_target(results, "checkout", 5.0, "the checkout task"), *latency_targets(results, s),
            memory_target(results), observe_target(results)]


def efficiency_target(results: Sequence[Measurement], section: str, aim: float, what: str) -> Target:
    goal = f"requests per generator CPU-second, {what}: {CANDIDATE} ≥ {aim:g} × {BASELINE}"
    c, b = find(results, section, CANDIDATE), find(results, section, BASELINE)
    if c is None or b is None or not b.requests_per_cpu_second:
        return Target(goal, None, "not measured")
    r = c.requests_per_cpu_second / b.requests_per_cpu_second
    return Target(goal, r >= aim, f"{r:.2f}× ({num(c.requests_per_cpu_second)} vs {num(b.requests_per_cpu_second)})")


def latency_targets(results: Sequence[Measurement], s: Settings) -> list[Target]:
    c, w = find(results, "latency", CANDIDATE), find(results, "latency", "wrk")
    out = []
    for label, index, tolerance in (("p50", 0, 0.10), ("p99", 1, 0.15)):
        goal = f"{label} at {s.latency_users} users on {s.latency_path} within {tolerance * 100:.0f} % of wrk's"
        mine, ref = (exact(c)[index], (w.p50, w.p99)[index]) if c and w else (None, None)
        if mine is None or not ref:
            out.append(Target(goal, None, "not measured"))
            continue
        off = mine / ref - 1
        out.append(Target(goal, abs(off) <= tolerance, f"{ms(mine)} ms vs {ms(ref)} ms ({off * 100:+.0f} %)"))
    return out


IDLE_USER_KIB = 11.0
"""The most an idle user may cost: about Python's and gevent's own share of one (10.5 KiB measured)."""


def memory_target(results: Sequence[Measurement]) -> Target:
    goal = f"RSS per idle user at most {IDLE_USER_KIB:g} KiB"
    c, b = find(results, "memory", CANDIDATE), find(results, "memory", BASELINE)
    if c is None or c.rss_per_user_kib is None:
        return Target(goal, None, "not measured")
    versus = f" vs {BASELINE}'s {b.rss_per_user_kib:.1f} KiB" if b is not None and b.rss_per_user_kib else ""
    return Target(goal, c.rss_per_user_kib <= IDLE_USER_KIB, f"{c.rss_per_user_kib:.1f} KiB{versus}")


# ---- output ----------------------------------------------------------------------------------------------


def split_table(splits: Sequence[dict]) -> Table:
    headers = ["task", "transport", "µs per request", "req per CPU-s", "Python thread", "of it in the kernel",
               "engine thread", "of it in the kernel"]
    rows = []
    for r in splits:
        if "error" in r:
            rows.append([r["task"], r["transport"], "failed: " + r["error"]] + [""] * (len(headers) - 3))
            continue
        engine = r["engine_us"] > 0
        rows.append([r["task"], r["transport"] if engine else "–", f"{r['us']:.1f}", num(r["per_cpu_second"]),
                     f"{r['python_us']:.1f}", f"{r['python_kernel_us']:.1f}",
                     f"{r['engine_us']:.1f}" if engine else "–", f"{r['engine_kernel_us']:.1f}" if engine else "–"])
    caption = ("FastCUser alone in one process (`bench/per_thread.py`), its users looping without a wait against "
               "the test server, the process pinned to one CPU and the server to the other: CPU time per request "
               "of the Python thread (users, gevent, Locust) and of the engine thread, from /proc. *Locust's task "
               "loop alone* is users whose task does nothing but yield: what every user class pays per task.")
    return Table("4. CPU per request, by thread", caption, headers, rows)


def tables(results: Sequence[Measurement], s: Settings, splits: Sequence[dict] = ()) -> list[Table]:
    builders: dict[str, Callable[[Sequence[Measurement], Settings], Table]] = {
        "throughput": throughput_table, "checkout": lambda r, st: throughput_table(r, st, "checkout"),
        "latency": latency_table, "memory": memory_table, "observe": observe_table}
    out = [builders[name](results, s) for name in ("throughput", "checkout", "latency", "memory", "observe")
           if of(results, name)]
    return out + ([split_table(splits)] if splits else [])


def problems(results: Sequence[Measurement]) -> list[str]:
    """One line per failed run, run with failed requests or run that other work disturbed."""
    lines = []
    for m in results:
        if m.error:
            lines.append(f"{m.section} / {m.generator}: {m.error}")
        lines += [f"{m.section} / {m.generator}: {note}" for note in m.notes]
    return lines


def print_report(results: Sequence[Measurement], s: Settings, splits: Sequence[dict] = ()) -> None:
    print()
    for table in tables(results, s, splits):
        print(table.text(), end="\n\n")
    print("Targets")
    for t in targets(results, s):
        print(f"  {t.mark} {t.goal}: {t.measured}")
    for line in problems(results):
        print(f"  ! {line.splitlines()[0]}")
    print()


def write_markdown(path: Path, results: Sequence[Measurement], s: Settings, info: dict[str, str],
                   splits: Sequence[dict] = ()) -> Path:
    """results.md: targets, one table per section, problems, commands and the machine."""
    out = ["# locust-c benchmark results", "",
           f"Generated by `{info['command']}` on {info['date']} in {info['elapsed']}. "
           "How to read it: [README.md](README.md).", "", "## Targets", "",
           "| | target | this run |", "|---|---|---|"]
    out += [f"| {t.mark} | {t.goal} | {t.measured} |" for t in targets(results, s)]
    for table in tables(results, s, splits):
        out += ["", table.markdown()]
    if lines := problems(results):
        out += ["", "## Problems", ""] + [f"- {' '.join(line.split())}" for line in lines]
    out += ["", "## Commands", "", "Each generator ran alone, pinned with `taskset`, against the same test server "
            "(`python -m locust_c.testserver`, pinned to the other CPU). HOST is the server's URL.", "", "```"]
    out += [f"{m.section:<10} {m.command}" for m in results if m.command]
    out += [f"split      LOCUST_C_TRANSPORT={'auto' if r['transport'] == 'native' else 'curl'} {r['command']}"
            for r in splits]
    out += ["```", "", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in info.items() if key not in ("command", "date", "elapsed")]
    text = "\n".join(out) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def write_png(path: Path, results: Sequence[Measurement], s: Settings) -> Path | None:
    """results.png: requests/s, requests per CPU-second, p50/p99 next to wrk's, RSS per idle user."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed: no results.png")
        return None
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    busy = [m for m in of(results, "throughput") if m.ok]
    bars(axes[0][0], busy, [m.rps for m in busy], "requests/s (steady state)")
    bars(axes[0][1], busy, [m.requests_per_cpu_second for m in busy], "requests per generator CPU-second")
    latency_bars(axes[1][0], [m for m in of(results, "latency") if m.ok],
                 f"latency, {s.latency_users} users on {s.latency_path} (ms; p50 solid, p99 light)")
    idle = [m for m in of(results, "memory") if m.ok and m.rss_per_user_kib is not None]
    bars(axes[1][1], idle, [m.rss_per_user_kib or 0.0 for m in idle], "RSS per idle user (KiB)")
    fig.suptitle("locust-c benchmark: one run, same server, generator pinned to one CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bars(ax: Axes, runs: Sequence[Measurement], values: Sequence[float], title: str) -> None:
    """One bar per generator, labelled with its value."""
    names = [m.generator for m in runs]
    drawn = ax.bar(names, values, color=[COLORS.get(n, "#999999") for n in names])
    ax.bar_label(drawn, labels=[num(v, 1 if v < 100 else 0) for v in values], fontsize=8)
    ax.set_title(title)
    ax.margins(y=0.15)
    ax.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")


def latency_bars(ax: Axes, runs: Sequence[Measurement], title: str) -> None:
    """p50 and p99 side by side per generator."""
    width = 0.38
    xs = range(len(runs))
    for offset, index, label, alpha in ((-width / 2, 0, "p50", 1.0), (width / 2, 1, "p99", 0.55)):
        values = [exact(m)[index] or 0.0 for m in runs]
        drawn = ax.bar([x + offset for x in xs], values, width, label=label, alpha=alpha,
                       color=[COLORS.get(m.generator, "#999999") for m in runs])
        ax.bar_label(drawn, labels=[ms(v) for v in values], fontsize=8)
    ax.set_xticks(list(xs), [m.generator for m in runs])
    ax.set_title(title)
    ax.margins(y=0.15)
