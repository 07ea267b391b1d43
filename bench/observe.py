"""The benchmark's observe section: what live metrics cost FastCUser, measured side by side.

A 3 % difference is far below what this machine's speed drifts from one minute to the next (the same generator
measures 10-15 % apart in runs a minute apart). So the three generators, FastCUser alone, with ``--prometheus-port``
scraped every second and with ``--otel``, run *at the same time*, pinned to the same CPU, each against a test
server of its own (all three servers pinned to the other CPU): whatever slows that CPU down slows all three alike,
and requests per CPU-second, counted by each one's own server over the same window, compare like with like.

Sharing one CPU, each generator runs at about a third of its speed alone. The live metrics' work is per second
(a scrape, a collection), so it is done once per *three* seconds here, once per second of the generator's own
CPU as when it runs alone: otherwise the same work would weigh three times as much. Three rounds, the order of
the generators rotated each round; the report takes the median of the ratios within each round.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from contextlib import ExitStack
from typing import TYPE_CHECKING

from measures import Measurement
from procs import Generator, GeneratorError, sleep_until

if TYPE_CHECKING:
    from run import Context, GeneratorKind

ROUNDS = 3
INTERVAL = 1.0
"""Seconds of a generator's own CPU between two scrapes or collections: Prometheus' and OpenTelemetry's common
setting for a load test."""


class Scraper:
    """Reads a generator's /metrics once a second, as Prometheus with a 1 s scrape interval would."""

    def __init__(self, port: int, interval: float) -> None:
        self.port = port
        self.interval = interval
        self.scrapes = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
                    response.read()
                self.scrapes += 1
            except OSError:
                self.failed += 1


def free_port() -> int:
    """A loopback TCP port nothing listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counters(gens: list[Generator], servers: list) -> list[tuple[float, int]]:
    """(CPU seconds, requests its server has answered) of each generator, now."""
    return [(g.cpu_seconds(), int(server.stats()["requests"])) for g, server in zip(gens, servers, strict=True)]


def observe_round(ctx: Context, kinds: list[GeneratorKind], round_no: int) -> list[Measurement]:
    """One round: every generator of ``kinds`` at once, each against its own server, over one window."""
    from run import END_MARGIN_SECONDS, SPAWNED, WARMUP_SECONDS, TestServer, locust_command, shown

    s = ctx.settings
    kinds = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]
    interval = INTERVAL * len(kinds)  # see the module's docstring
    results = [Measurement(section="observe", generator=k.name, users=s.users, round_no=round_no) for k in kinds]
    with ExitStack() as stack:
        servers = [stack.enter_context(TestServer(cpu=s.server_cpu)) for _ in kinds]
        gens, scrapers = [], []
        for kind, server, m in zip(kinds, servers, results, strict=True):
            label = f"observe-{round_no}-{kind.slug}"
            cmd = locust_command(ctx, kind, "Busy", s.users, s.users, s.duration, ctx.log_dir / label,
                                 host=server.url)
            if kind.scraped:
                scraper = Scraper(free_port(), interval)
                cmd += ["--prometheus-port", str(scraper.port), "--prometheus-host", "127.0.0.1"]
                scrapers.append((m, scraper))
            m.command = shown(ctx, cmd).replace(server.url, "HOST")
            env = {**ctx.env, **dict(kind.env), "BENCH_PATH": "/"}
            if "OTEL_METRIC_EXPORT_INTERVAL" in env:
                env["OTEL_METRIC_EXPORT_INTERVAL"] = str(round(interval * 1000))
            gens.append(stack.enter_context(Generator(cmd, env, ctx.log_dir, label)))
        try:
            ready = max(g.wait_for_output(SPAWNED, timeout=120) for g in gens)
            for _, scraper in scrapers:
                scraper.start()
            sleep_until(ready + WARMUP_SECONDS)
            opened = time.monotonic()
            first = counters(gens, servers)
            sleep_until(min(g.started for g in gens) + s.duration - END_MARGIN_SECONDS)
            last = counters(gens, servers)
            window = time.monotonic() - opened
            for m, (cpu0, req0), (cpu1, req1) in zip(results, first, last, strict=True):
                m.window_seconds, m.window_cpu, m.window_requests = window, cpu1 - cpu0, req1 - req0
            for m, scraper in scrapers:
                scraper.stop()
                if scraper.failed or not scraper.scrapes:
                    m.notes.append(f"round {round_no}: /metrics scraped {scraper.scrapes} times, "
                                   f"{scraper.failed} scrapes failed")
            for g, m in zip(gens, results, strict=True):
                m.exit_code = g.wait(timeout=s.duration + 120)
                if m.exit_code not in (0, 1):
                    m.error = f"exit code {m.exit_code}"
        except (GeneratorError, OSError, ValueError) as exc:
            for m in results:
                m.error = str(exc)
    return results


def run_observe(ctx: Context, kinds: list[GeneratorKind]) -> list[Measurement]:
    """Every round; one progress line per generator and round."""
    out = []
    for round_no in range(1, ROUNDS + 1):
        for m in observe_round(ctx, kinds, round_no):
            state = f"ERROR: {m.error.splitlines()[0]}" if m.error else \
                f"{m.requests_per_cpu_second:9.0f} req/CPU-s  {m.rps:8.0f} req/s"
            print(f"  round {round_no}  {m.generator:<24} {state}", flush=True)
            out.append(m)
    return out
