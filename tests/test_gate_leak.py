"""The memory-leak hunter: the fit on synthetic samples, and `locust-c leak` against real child processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_gate_helpers import child_env, cli, shop

from locust_c.gate import BadInput
from locust_c.gate.leak import MB, LeakBudget, Sample, fit_leak

# ---------------------------------------------------------------------------------------------------- the fit


def samples(rate_bytes_s: float, seconds: float, every: float = 1.0, noise_mb: float = 0.0, seed: int = 1) -> list:
    rng = random.Random(seed)
    base = 100 * MB
    n = int(seconds / every) + 1
    return [
        Sample(i * every, int(base + rate_bytes_s * i * every + rng.uniform(-noise_mb, noise_mb) * MB))
        for i in range(n)
    ]


def test_a_steady_leak_is_found() -> None:
    fit = fit_leak(samples(2 * MB, 30))
    assert fit.leaking and fit.exit_code == 1
    assert fit.slope_kb_s == pytest.approx(2048, rel=1e-6)
    assert fit.growth_mb == pytest.approx(2 * 24, rel=1e-6)  # over the 24 s left after the 20 % warm-up
    assert fit.discarded == 6 and fit.r_squared == pytest.approx(1.0)


def test_a_flat_process_with_gc_noise_is_not_a_leak() -> None:
    fit = fit_leak(samples(0, 60, noise_mb=8))
    assert not fit.leaking and fit.exit_code == 0
    assert abs(fit.growth_mb) < 10


def test_both_budgets_must_be_exceeded() -> None:
    steep_but_short = fit_leak(samples(500 * 1024, 10))  # 500 KB/s, but only 4 MB over the fitted 8 s
    assert steep_but_short.slope_exceeded and not steep_but_short.growth_exceeded and not steep_but_short.leaking
    slow_drift = fit_leak(samples(20 * 1024, 1000, every=10))  # 20 KB/s: 15.6 MB over 800 s, but a gentle slope
    assert slow_drift.growth_exceeded and not slow_drift.slope_exceeded and not slow_drift.leaking
    tight = fit_leak(samples(500 * 1024, 10), LeakBudget(max_slope_kb_s=100, max_growth_mb=1))
    assert tight.leaking


def test_the_warm_up_is_discarded() -> None:
    warm = [Sample(t, int((50 + 10 * t) * MB)) for t in range(5)]  # a 40 MB rise while caches fill
    flat = [Sample(t, int(90 * MB)) for t in range(5, 25)]
    assert not fit_leak(warm + flat).leaking
    assert fit_leak(warm + flat, LeakBudget(warmup=0.0)).leaking


@pytest.mark.parametrize(
    ("points", "budget", "expected"),
    [
        ([Sample(0, 1), Sample(1, 2)], LeakBudget(), "only 2 memory samples, at least 3 are needed"),
        ([Sample(0, 1)] * 5, LeakBudget(), "all memory samples were taken at the same time"),
        (samples(0, 10), LeakBudget(warmup=1.5), "warm-up is 1.5, expected a fraction"),
    ],
)
def test_unusable_samples_or_budgets_are_bad_input(points: list, budget: LeakBudget, expected: str) -> None:
    with pytest.raises(BadInput, match=expected):
        fit_leak(points, budget)


# ---------------------------------------------------------------------------------------------------- real processes

LOAD = """
import sys, urllib.request
url = sys.argv[1]
while True:
    try:
        urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        pass
"""

GC_NOISE = """
import gc, random, time

def churn(rows):
    blob = [[random.random() for _ in range(200)] for _ in range(rows)]
    for row in blob:
        row.append(blob)  # a cycle: only the collector frees it

for _ in range(20):  # reach the steady state before the hunter starts
    churn(400)
gc.collect()
print("churning", flush=True)
i = 0
while True:  # a flat process whose memory swings by several MB as garbage piles up and is collected
    churn(random.randint(50, 400))
    i += 1
    if i % 20 == 0:
        gc.collect()
    time.sleep(0.01)
"""

IDLE = """
import time
print("idle", flush=True)
time.sleep(60)
"""

FAST = ("--interval", "0.2", "--duration", "4")


@contextmanager
def child(code: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_leak_finds_the_shop_leaking_50_kb_per_request(tmp_path: Path) -> None:
    plot = tmp_path / "leak.png"
    with shop("--leak-kb-per-request", "50") as (url, service), child(LOAD, url + "/api/products"):
        result = cli("leak", "--pid", str(service.pid), *FAST, "--plot", str(plot))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Leak hunter: FAIL: memory is leaking" in result.stdout
    assert "KB/s, over the budget of 50 KB/s" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leak_passes_a_flat_process_with_gc_noise(tmp_path: Path) -> None:
    with child(GC_NOISE) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "churning"
        result = cli("leak", "--pid", str(proc.pid), *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Leak hunter: PASS: no leak" in result.stdout


def test_leak_stops_on_sigterm_and_still_judges() -> None:
    with child(IDLE) as target:
        hunter = subprocess.Popen(
            [sys.executable, "-m", "locust_c", "leak", "--pid", str(target.pid), "--interval", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert hunter.stdout is not None
        assert hunter.stdout.readline().startswith("Sampling RSS of PID")
        time.sleep(1.0)
        hunter.send_signal(signal.SIGTERM)
        out, err = hunter.communicate(timeout=30)
    assert hunter.returncode == 0, out + err
    assert "Leak hunter: PASS" in out


def test_leak_stops_when_the_process_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    try:
        result = cli("leak", "--pid", str(proc.pid), "--interval", "0.1", "--duration", "30")
    finally:
        proc.wait()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Leak hunter: PASS" in result.stdout


def test_leak_reads_a_cgroup(tmp_path: Path) -> None:
    group = tmp_path / "cgroup"
    group.mkdir()
    (group / "memory.current").write_text(f"{200 * MB}\n")
    result = cli("leak", "--cgroup", str(group), "--interval", "0.1", "--duration", "0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"memory of cgroup {group}/memory.current" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--pid", "99999999", "--duration", "1"], "--pid 99999999: no process with PID 99999999"),
        (["--cgroup", "{tmp}/none", "--duration", "1"], "none: no such cgroup"),
        (["--cgroup", "{tmp}", "--duration", "1"], "has no memory.current"),
        (["--cgroup", "{tmp}/text", "--duration", "1"], "does not hold a byte count"),
        (["--pid", "{self}", "--duration", "0.1", "--interval", "0.1"], "only 2 memory samples"),
        (["--pid", "{self}", "--duration", "1", "--warmup", "2"], "warm-up is 2.0, expected a fraction"),
    ],
    ids=["no-pid", "no-cgroup", "no-memory-current", "not-a-number", "too-few-samples", "bad-warmup"],
)
def test_leak_bad_input_exits_2(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "text").write_text("lots\n")
    result = cli("leak", *[a.format(tmp=tmp_path, self=os.getpid()) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "locust-c leak: error:" in result.stderr and expected in result.stderr


def test_leak_needs_a_target() -> None:
    result = cli("leak", "--duration", "1")
    assert result.returncode == 2
    assert "one of the arguments --pid --cgroup is required" in result.stderr
