"""The memory-leak hunter: sample a process's (or a cgroup's) memory under constant load and fit a trend.

A leak is called only when both the fitted slope and the fitted growth over the kept window exceed their
budgets: a steep but short rise (a cache filling up) and a slow drift over a long soak are not leaks by
themselves. The first part of the samples (the warm-up) is discarded before fitting.

Units: 1 KB is 1024 bytes and 1 MB is 1024 KB.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import EXIT_FAIL, EXIT_PASS, BadInput

KB = 1024
MB = 1024 * 1024
MIN_FIT_SAMPLES = 3


class MemorySource:
    """Somewhere memory can be read from, in bytes."""

    description = "memory"

    def read(self) -> int | None:
        """Current memory in bytes, or ``None`` once the source is gone (the process has exited)."""
        raise NotImplementedError


class PidMemory(MemorySource):
    """The resident set size of a process, from ``/proc/PID/statm``."""

    def __init__(self, pid: int, option: str = "--pid") -> None:
        self.pid = pid
        self.path = f"/proc/{pid}/statm"
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.description = f"RSS of PID {pid}"
        if self.read() is None:
            raise BadInput(f"no process with PID {pid} (expected the PID of a running process)", f"{option} {pid}")

    def read(self) -> int | None:
        try:
            with open(self.path, encoding="ascii") as f:
                return int(f.read().split()[1]) * self.page_size
        except (OSError, IndexError, ValueError):
            return None


class CgroupMemory(MemorySource):
    """A cgroup's memory use: ``memory.current`` (cgroup v2) or ``memory.usage_in_bytes`` (v1).

    ``path`` is the cgroup's directory (for a container, e.g. ``/sys/fs/cgroup/system.slice/docker-ID.scope``)
    or the file itself.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.isdir(path):
            for name in ("memory.current", "memory.usage_in_bytes"):
                if os.path.isfile(os.path.join(path, name)):
                    self.path = os.path.join(path, name)
                    break
            else:
                raise BadInput("has no memory.current (expected a cgroup directory or its memory.current)", path)
        elif not os.path.isfile(path):
            raise BadInput("no such cgroup (expected a cgroup directory or its memory.current file)", path)
        self.description = f"memory of cgroup {self.path}"
        if self.read() is None:
            raise BadInput("does not hold a byte count (expected a cgroup's memory.current)", self.path)

    def read(self) -> int | None:
        try:
            with open(self.path, encoding="ascii") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None


@dataclass
class Sample:
    """Memory in bytes, ``t`` seconds after sampling started."""

    t: float
    bytes: int


@dataclass
class LeakBudget:
    """Both limits must be exceeded to call a leak; ``warmup`` is the fraction of samples discarded first."""

    max_slope_kb_s: float = 50.0
    max_growth_mb: float = 10.0
    warmup: float = 0.2

    def validate(self) -> None:
        """Raise :class:`BadInput` on a budget that makes no sense."""
        if not 0 <= self.warmup < 1:
            raise BadInput(f"warm-up is {self.warmup}, expected a fraction of the samples in [0, 1)", "--warmup")
        if self.max_slope_kb_s < 0 or self.max_growth_mb < 0:
            raise BadInput("leak budgets must be >= 0", "--max-slope-kb-s/--max-growth-mb")


@dataclass
class LeakFit:
    """A least-squares line through the kept samples, and the verdict."""

    samples: int
    discarded: int
    span_s: float
    slope_kb_s: float
    intercept_mb: float
    growth_mb: float
    r_squared: float
    first_mb: float
    last_mb: float
    budget: LeakBudget

    @property
    def slope_exceeded(self) -> bool:
        """The fitted slope is above its budget."""
        return self.slope_kb_s > self.budget.max_slope_kb_s

    @property
    def growth_exceeded(self) -> bool:
        """The fitted growth over the kept window is above its budget."""
        return self.growth_mb > self.budget.max_growth_mb

    @property
    def leaking(self) -> bool:
        """Both budgets exceeded."""
        return self.slope_exceeded and self.growth_exceeded

    @property
    def exit_code(self) -> int:
        """1 on a leak, else 0."""
        return EXIT_FAIL if self.leaking else EXIT_PASS


def fit_leak(samples: list[Sample], budget: LeakBudget | None = None) -> LeakFit:
    """Discard the warm-up, fit ``bytes = slope * t + intercept`` by least squares and judge it."""
    budget = budget or LeakBudget()
    budget.validate()
    discard = int(len(samples) * budget.warmup)
    if len(samples) - discard < MIN_FIT_SAMPLES:
        discard = max(0, len(samples) - MIN_FIT_SAMPLES)
    kept = samples[discard:]
    if len(kept) < MIN_FIT_SAMPLES:
        raise BadInput(
            f"only {len(samples)} memory samples, at least {MIN_FIT_SAMPLES} are needed "
            "(sample for longer, or more often with --interval)",
            "leak",
        )
    ts = [s.t for s in kept]
    ys = [float(s.bytes) for s in kept]
    mean_t, mean_y = statistics.fmean(ts), statistics.fmean(ys)
    var_t = sum((t - mean_t) ** 2 for t in ts)
    if var_t == 0:
        raise BadInput("all memory samples were taken at the same time", "leak")
    slope = sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys, strict=True)) / var_t
    intercept = mean_y - slope * mean_t
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - (slope * t + intercept)) ** 2 for t, y in zip(ts, ys, strict=True))
    span = ts[-1] - ts[0]
    return LeakFit(
        samples=len(samples),
        discarded=discard,
        span_s=span,
        slope_kb_s=slope / KB,
        intercept_mb=intercept / MB,
        growth_mb=slope * span / MB,
        r_squared=1 - ss_res / ss_tot if ss_tot > 0 else 0.0,
        first_mb=ys[0] / MB,
        last_mb=ys[-1] / MB,
        budget=budget,
    )


def sample_memory(
    source: MemorySource,
    interval: float = 1.0,
    duration: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_sample: Callable[[Sample], None] | None = None,
) -> list[Sample]:
    """Read ``source`` every ``interval`` seconds until ``duration`` has passed, ``should_stop()`` says so, or
    the source is gone (the process exited). Returns the samples taken."""
    if interval <= 0:
        raise BadInput(f"interval is {interval}, expected a number of seconds > 0", "--interval")
    samples: list[Sample] = []
    start = time.monotonic()
    next_at = start
    while True:
        value = source.read()
        if value is None:
            break
        sample = Sample(time.monotonic() - start, value)
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)
        next_at += interval
        if duration is not None and next_at - start > duration + 1e-6:
            break
        while True:  # sleep in short steps so that a stop request is seen promptly
            if should_stop is not None and should_stop():
                return samples
            remaining = next_at - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, 0.1))
    return samples


def describe(fit: LeakFit, source: str = "memory") -> str:
    """The fit and the verdict, as a few lines of text."""
    b = fit.budget
    mark = {True: "over", False: "within"}
    verdict = "FAIL: memory is leaking" if fit.leaking else "PASS: no leak"
    return "\n".join(
        [
            f"Leak hunter: {source}",
            f"  samples:  {fit.samples} ({fit.discarded} of warm-up discarded), fitted over {fit.span_s:.1f} s",
            f"  memory:   {fit.first_mb:.1f} MB -> {fit.last_mb:.1f} MB over the fitted window",
            f"  trend:    {fit.slope_kb_s:+.1f} KB/s, {mark[fit.slope_exceeded]} the budget of "
            f"{b.max_slope_kb_s:g} KB/s (r² {fit.r_squared:.2f})",
            f"  growth:   {fit.growth_mb:+.1f} MB, {mark[fit.growth_exceeded]} the budget of {b.max_growth_mb:g} MB",
            f"Leak hunter: {verdict}",
        ]
    )


def describe_markdown(fit: LeakFit, source: str = "memory") -> str:
    """The fit and the verdict as Markdown for a step summary."""
    b = fit.budget
    title = "FAIL: memory is leaking" if fit.leaking else "PASS: no leak"
    return (
        f"### Leak hunter: {title}\n\n{source}: {fit.first_mb:.1f} MB → {fit.last_mb:.1f} MB; "
        f"trend {fit.slope_kb_s:+.1f} KB/s (budget {b.max_slope_kb_s:g}), "
        f"growth {fit.growth_mb:+.1f} MB (budget {b.max_growth_mb:g}), {fit.samples} samples\n"
    )


def plot(samples: list[Sample], fit: LeakFit, path: str, title: str = "memory") -> None:
    """Write a PNG of the samples (warm-up in grey) and the fitted trend (matplotlib, Agg backend)."""
    try:
        import matplotlib
    except ImportError:
        raise BadInput("matplotlib is not installed (pip install 'locust-c[plot]')", "--plot") from None
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.subplots()
    warm, kept = samples[: fit.discarded], samples[fit.discarded :]
    if warm:
        axes.plot([s.t for s in warm], [s.bytes / MB for s in warm], ".", color="0.6", label="warm-up (discarded)")
    axes.plot([s.t for s in kept], [s.bytes / MB for s in kept], ".", color="tab:blue", label="samples")
    ends = [kept[0].t, kept[-1].t]
    axes.plot(
        ends,
        [fit.intercept_mb + fit.slope_kb_s / KB * t for t in ends],
        "-",
        color="tab:red" if fit.leaking else "tab:green",
        label=f"trend {fit.slope_kb_s:+.1f} KB/s",
    )
    axes.set_xlabel("seconds")
    axes.set_ylabel("MB")
    axes.set_title(f"{title}: {'LEAK' if fit.leaking else 'no leak'} (growth {fit.growth_mb:+.1f} MB)")
    axes.legend(loc="upper left")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as e:
        raise BadInput(f"cannot write the plot: {e.strerror}", path) from None
