"""`make bench`: Locust's HttpUser and FastHttpUser, locust-c's FastCUser and wrk, side by side.

One invocation measures every generator one after the other against the same C test server, pinned to one
CPU, with the generator pinned to another, so that ratios taken within a run mean something on a busy machine:

1. throughput and efficiency: a small keep-alive GET, requests/s and requests per generator CPU-second, and the
   same for a realistic task ("checkout": a POST with headers and a JSON body, checked in ``catch_response``);
2. latency: 200 users on ``/delay/5`` (5 ms of server time), p50/p99 as each generator reports them next to wrk's;
3. memory: the generator's RSS with 10,000 idle users that each hold a keep-alive connection;
4. split: FastCUser's CPU per request by thread (bench/per_thread.py), on each transport, and Locust's own task
   loop;
5. observe: what live metrics (``--prometheus-port`` scraped every second, ``--otel``) cost FastCUser, the three
   running side by side (bench/observe.py).

It prints a table per section and writes results.md and results.png to --out-dir. bench/README.md explains
how to read them. ``--quick`` is a smaller version that finishes in well under a minute.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LOCUSTFILES = BENCH_DIR / "locustfiles"
sys.path.insert(0, str(ROOT))

# The benchmark only starts processes: it must not run under gevent, which importing locust_c (and so Locust)
# would switch on. The generators it starts get the environment without this variable.
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
from locust_c.testserver import TestServer  # noqa: E402

del os.environ["LOCUST_SKIP_MONKEY_PATCH"]

from measures import Measurement, read_exact_latency, read_locust_json, read_wrk_output  # noqa: E402
from observe import run_observe  # noqa: E402
from procs import (  # noqa: E402
    Generator,
    GeneratorError,
    cpu_busy_seconds,
    memory_status_kib,
    pinned,
    process_cpu_seconds,
    sleep_until,
)
from report import print_report, write_markdown, write_png  # noqa: E402

SPAWNED = "All users spawned"
"""What Locust logs once every user has been started."""

WARMUP_SECONDS = 1.0
"""Skipped after the generator is ready (Locust: every user spawned) before the steady-state window opens."""

END_MARGIN_SECONDS = 1.5
"""The window closes this long before the generator's own end."""

DISTURBED_SHARE = 0.15
"""A run whose generator or server lost more of its CPU than this to other work is run again."""


@dataclass(frozen=True)
class GeneratorKind:
    """A load generator under test: a Locust user class (its locustfile) or wrk."""

    name: str
    locustfile: str | None = None
    exact_histograms: bool = False
    """It writes exact percentiles itself (``--results-json``): no recorder on ``events.request`` is added,
    which would also take it off its batched statistics path."""

    env: tuple[tuple[str, str], ...] = ()
    """Environment variables of its own, on top of the run's."""

    args: tuple[str, ...] = ()
    """Locust options of its own."""

    scraped: bool = False
    """It serves ``--prometheus-port``, which the benchmark scrapes every second as Prometheus would."""

    @property
    def slug(self) -> str:
        """The name as it goes into file names."""
        return "".join(ch if ch.isalnum() else "-" for ch in self.name).strip("-")

    @property
    def is_wrk(self) -> bool:
        return self.locustfile is None


WRK = GeneratorKind("wrk")
HTTP_USER = GeneratorKind("HttpUser", "http_user.py")
FAST_HTTP_USER = GeneratorKind("FastHttpUser", "fasthttp_user.py")
FAST_C_USER = GeneratorKind("FastCUser", "fastc_user.py", exact_histograms=True)
# The same user with every request through libcurl (LOCUST_C_TRANSPORT=curl): what the native transport changes.
FAST_C_USER_CURL = GeneratorKind("FastCUser (libcurl)", "fastc_user.py", exact_histograms=True,
                                 env=(("LOCUST_C_TRANSPORT", "curl"),))
# The same user with live metrics: /metrics scraped every second, and Locust's --otel exporting every second.
FAST_C_USER_PROMETHEUS = GeneratorKind("FastCUser + Prometheus", "fastc_user.py", exact_histograms=True,
                                       scraped=True)
FAST_C_USER_OTEL = GeneratorKind("FastCUser + OTel", "fastc_user.py", exact_histograms=True, args=("--otel",),
                                 env=(("OTEL_METRICS_EXPORTER", "console"), ("OTEL_TRACES_EXPORTER", "none"),
                                      ("OTEL_LOGS_EXPORTER", "none"), ("OTEL_METRIC_EXPORT_INTERVAL", "1000")))
OBSERVE_KINDS = [FAST_C_USER, FAST_C_USER_PROMETHEUS, FAST_C_USER_OTEL]


@dataclass
class Settings:
    """What to run, from the command line."""

    duration: int
    users: int
    latency_duration: int
    latency_users: int
    latency_path: str
    idle_users: int
    idle_rate: int
    settle: float
    server_cpu: int | None
    generator_cpu: int | None
    out_dir: Path
    work_dir: Path | None
    sections: list[str]
    retries: int
    throughput_kinds: list[GeneratorKind] = field(default_factory=list)
    checkout_kinds: list[GeneratorKind] = field(default_factory=list)
    latency_kinds: list[GeneratorKind] = field(default_factory=list)
    memory_kinds: list[GeneratorKind] = field(default_factory=list)


@dataclass
class Context:
    """What every run needs: the settings, the running server and where the generators' files go."""

    settings: Settings
    server: TestServer
    server_process: psutil.Process
    log_dir: Path
    env: dict[str, str]


# ---- command line ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Settings:
    """Settings from the command line; ``--quick`` overrides sizes for a short smoke run."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per throughput run (default 15)")
    parser.add_argument("--users", type=int, default=50, help="users (wrk: connections) for throughput (default 50)")
    parser.add_argument("--latency-duration", type=int, default=10, help="seconds per latency run (default 10)")
    parser.add_argument("--latency-users", type=int, default=200, help="users for the latency runs (default 200)")
    parser.add_argument("--latency-path", default="/delay/5", help="path of the latency runs (default /delay/5)")
    parser.add_argument("--idle-users", type=int, default=10000, help="idle users for memory (default 10000)")
    parser.add_argument("--idle-rate", type=int, default=2000, help="spawn rate of the idle users (default 2000)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle users settle before RSS is read")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU of the test server (default 0)")
    parser.add_argument("--generator-cpu", type=int, default=1, help="CPU of the load generator (default 1)")
    parser.add_argument("--sections", default="throughput,checkout,latency,memory,split,observe",
                        help="comma-separated sections to run (default: throughput,checkout,latency,memory,split,"
                             "observe)")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a run is repeated when other work took >15 %% of the generator's or the "
                             "server's CPU (default 2)")
    parser.add_argument("--skip-http-user", action="store_true", help="leave out Locust's HttpUser")
    parser.add_argument("--quick", action="store_true",
                        help="smoke version (< 60 s): 4 s runs, 500 idle users, no HttpUser, no repeats")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR, help="where results.md/.png go (default bench/)")
    parser.add_argument("--keep-work", type=Path, default=None,
                        help="keep the generators' logs and reports in this directory (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.quick:  # smaller sizes, except where the command line gives its own
        quick = {"duration": 4, "latency_duration": 4, "idle_users": 500, "settle": 2.0, "skip_http_user": True,
                 "retries": 0}
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if min(args.duration, args.latency_duration) < 4:
        parser.error("runs must last at least 4 s (1 s warm-up, 1.5 s end margin)")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"throughput", "checkout", "latency", "memory", "split", "observe"}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    cpus = os.cpu_count() or 1
    server_cpu, generator_cpu = args.server_cpu, args.generator_cpu
    if cpus < 2 or max(server_cpu, generator_cpu) >= cpus:
        print(f"bench: only {cpus} CPU(s): server and generator are not pinned", file=sys.stderr)
        server_cpu = generator_cpu = None
    wrk = [WRK] if shutil.which("wrk") else []
    http = [] if args.skip_http_user else [HTTP_USER]
    return Settings(
        duration=args.duration, users=args.users, latency_duration=args.latency_duration,
        latency_users=args.latency_users, latency_path=args.latency_path, idle_users=args.idle_users,
        idle_rate=args.idle_rate, settle=args.settle, server_cpu=server_cpu, generator_cpu=generator_cpu,
        out_dir=args.out_dir, work_dir=args.keep_work, sections=sections, retries=max(0, args.retries),
        throughput_kinds=[*wrk, *http, FAST_HTTP_USER, FAST_C_USER_CURL, FAST_C_USER],
        checkout_kinds=[*http, FAST_HTTP_USER, FAST_C_USER_CURL, FAST_C_USER],
        latency_kinds=[*wrk, *http, FAST_HTTP_USER, FAST_C_USER_CURL, FAST_C_USER],
        memory_kinds=[FAST_HTTP_USER, FAST_C_USER_CURL, FAST_C_USER],
    )


# ---- generator commands ----------------------------------------------------------------------------------


def locust_command(ctx: Context, kind: GeneratorKind, user_class: str, users: int, rate: int, seconds: int,
                   json_prefix: Path, host: str | None = None) -> list[str]:
    """``locust --headless`` for one user class of a benchmark locustfile, pinned to the generator CPU."""
    assert kind.locustfile is not None
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / kind.locustfile), user_class, "--headless",
           "-u", str(users), "-r", str(rate), "-t", f"{seconds}s", "--host", host or ctx.server.url, "--only-summary",
           "--json-file", str(json_prefix), "--loglevel", "INFO", *kind.args]
    return pinned(cmd, ctx.settings.generator_cpu)


def wrk_command(ctx: Context, connections: int, seconds: int, path: str, latency: bool) -> list[str]:
    """``wrk -t1`` with one connection per user, pinned to the generator CPU."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *(["--latency"] if latency else []),
           ctx.server.url + path]
    return pinned(cmd, ctx.settings.generator_cpu)


def shown(ctx: Context, cmd: list[str]) -> str:
    """A command line as the report shows it: the interpreter as ``python``, project paths relative, the
    server's URL as HOST and the scratch directory as WORK."""
    replacements = ((ctx.server.url, "HOST"), (str(ctx.log_dir), "WORK"), (str(ROOT) + "/", ""))
    parts = []
    for part in cmd:
        if part == sys.executable:
            part = "python"
        for old, new in replacements:
            part = part.replace(old, new)
        parts.append(part)
    return shlex.join(parts)


# ---- one busy run: throughput and latency sections -------------------------------------------------------


@dataclass
class Snapshot:
    """Counters read at one edge of the steady-state window."""

    at: float
    generator_cpu: float
    generator_core_busy: float
    server_core_busy: float
    server_cpu: float
    server_requests: int


def snapshot(ctx: Context, gen: Generator) -> Snapshot:
    """Read the generator's and the server's CPU time and the server's request count, now."""
    if not gen.running():
        raise GeneratorError(f"{gen.label} exited before the end of its measuring window:\n{gen.stderr_tail()}")
    s = ctx.settings
    return Snapshot(time.monotonic(), gen.cpu_seconds(), cpu_busy_seconds(s.generator_cpu),
                    cpu_busy_seconds(s.server_cpu), process_cpu_seconds(ctx.server_process),
                    int(ctx.server.stats()["requests"]))


def measure_window(ctx: Context, gen: Generator, ready: float, seconds: int, m: Measurement) -> None:
    """Fill in the steady-state window: from 1 s after ``ready`` to 1.5 s before the generator's end."""
    sleep_until(ready + WARMUP_SECONDS)
    first = snapshot(ctx, gen)
    sleep_until(ready + seconds - END_MARGIN_SECONDS)
    last = snapshot(ctx, gen)
    m.window_seconds = last.at - first.at
    m.window_requests = last.server_requests - first.server_requests  # /__stats itself is not counted
    m.window_cpu = last.generator_cpu - first.generator_cpu
    m.window_server_cpu = last.server_cpu - first.server_cpu
    # Whatever else ran on the generator's and the server's CPU meanwhile: other processes, interrupts, steal.
    # Without pinning there is no CPU of their own to look at.
    if ctx.settings.generator_cpu is None:
        return
    m.window_other_cpu = max(0.0, last.generator_core_busy - first.generator_core_busy - m.window_cpu)
    m.window_other_server_cpu = max(0.0, last.server_core_busy - first.server_core_busy - m.window_server_cpu)


def busy_run(ctx: Context, section: str, kind: GeneratorKind, users: int, seconds: int, path: str,
             user_class: str = "Busy") -> Measurement:
    """Run one generator flat out for ``seconds``; returns what it measured (``error`` set when it failed)."""
    m = Measurement(section=section, generator=kind.name, users=users)
    label = f"{section}-{kind.slug}"
    json_prefix = ctx.log_dir / label
    latency_file = ctx.log_dir / f"{label}.latency.json"
    if kind.is_wrk:
        cmd = wrk_command(ctx, users, seconds, path, latency=section == "latency")
        env = ctx.env
    else:
        cmd = locust_command(ctx, kind, user_class, users, users, seconds, json_prefix)
        env = {**ctx.env, **dict(kind.env), "BENCH_PATH": path}
        if section == "latency" and kind.exact_histograms:
            cmd += ["--results-json", str(latency_file)]
        elif section == "latency":
            env["BENCH_LATENCY_FILE"] = str(latency_file)
    m.command = shown(ctx, cmd)
    try:
        with Generator(cmd, env, ctx.log_dir, label) as gen:
            ready = gen.started if kind.is_wrk else gen.wait_for_output(SPAWNED, timeout=120)
            measure_window(ctx, gen, ready, seconds, m)
            m.exit_code = gen.wait(timeout=seconds + 120)
            m.total_cpu = gen.total_cpu or 0.0
            report = read_wrk_output(gen.stdout()) if kind.is_wrk else read_locust_json(Path(f"{json_prefix}.json"))
    except (GeneratorError, OSError, ValueError, psutil.Error) as exc:
        m.error = str(exc)
        return m
    m.total_requests, m.total_failures, m.reported_rps = report["requests"], report["failures"], report["rps"]
    m.p50, m.p99 = report["p50"], report["p99"]
    if (exact := read_exact_latency(latency_file)) is not None:
        m.exact_p50, m.exact_p99 = exact["p50"], exact["p99"]
    check_exit(m, kind)
    return m


def check_exit(m: Measurement, kind: GeneratorKind) -> None:
    """Flag an unexpected exit code (Locust exits 1 when requests failed: the failures column says so)."""
    allowed = {0} if kind.is_wrk else {0, 1}
    if m.exit_code not in allowed:
        m.error = f"exit code {m.exit_code}"
    elif m.total_failures:
        m.notes.append(f"{m.total_failures} failed requests")


# ---- one idle run: memory section ------------------------------------------------------------------------


def idle_rss(ctx: Context, kind: GeneratorKind, users: int, label: str) -> tuple[dict[str, int], int, str]:
    """Spawn ``users`` idle users, let them settle, read the generator's memory and the server's open
    connections, then stop the generator. Returns (Vm* fields in KiB, open connections, command)."""
    s = ctx.settings
    rate = min(users, s.idle_rate)
    spawn_seconds = users / rate
    bound = int(spawn_seconds + s.settle + 120)  # a bound only: the generator is stopped once measured
    cmd = locust_command(ctx, kind, "Idle", users, rate, bound, ctx.log_dir / label)
    with Generator(cmd, {**ctx.env, **dict(kind.env)}, ctx.log_dir, label) as gen:
        gen.wait_for_output(SPAWNED, timeout=spawn_seconds * 5 + 60)
        time.sleep(s.settle)
        if not gen.running():
            raise GeneratorError(f"{label} exited while its users settled:\n{gen.stderr_tail()}")
        status = memory_status_kib(gen.pid)
        connections = int(ctx.server.stats()["connections_open"])  # /__stats's own is not counted
        gen.terminate(timeout=120)
    return status, connections, shown(ctx, cmd)


def memory_run(ctx: Context, kind: GeneratorKind) -> Measurement:
    """RSS of the generator with one idle user, then with ``--idle-users`` of them."""
    users = ctx.settings.idle_users
    m = Measurement(section="memory", generator=kind.name, users=users)
    try:
        base, _, _ = idle_rss(ctx, kind, 1, f"memory-{kind.slug}-1")
        wait_server_idle(ctx)
        full, m.server_connections, m.command = idle_rss(ctx, kind, users, f"memory-{kind.slug}-{users}")
    except (GeneratorError, OSError, psutil.Error, KeyError) as exc:
        m.error = str(exc)
        return m
    finally:
        wait_server_idle(ctx)
    m.base_rss_kib, m.base_hwm_kib = base["VmRSS"], base["VmHWM"]
    m.rss_kib, m.hwm_kib = full["VmRSS"], full["VmHWM"]
    if m.server_connections < users:
        m.notes.append(f"only {m.server_connections} of {users} connections open at the server")
    return m


def wait_server_idle(ctx: Context, timeout: float = 30.0) -> None:
    """Wait until the previous generator's connections are closed at the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(ctx.server.stats()["connections_open"]) == 0:
            return
        time.sleep(0.2)


# ---- the CPU split: bench/per_thread.py -------------------------------------------------------------------

SPLIT_RUNS = (("GET /", "get", "auto"), ("GET /", "get", "curl"), ("checkout", "checkout", "auto"),
              ("checkout", "checkout", "curl"), ("Locust's task loop alone", "noop", "auto"))


def run_split(ctx: Context) -> list[dict]:
    """FastCUser's CPU per request, Python thread and engine thread apart, for each task and transport."""
    rows = []
    print("split:", flush=True)
    for label, task_name, transport in SPLIT_RUNS:
        cmd = [sys.executable, str(BENCH_DIR / "per_thread.py"), "--users", str(ctx.settings.users), "--seconds",
               str(max(4, ctx.settings.duration // 2)), "--task", task_name, "--json"]
        env = {**ctx.env, "LOCUST_C_TRANSPORT": transport}
        row = {"task": label, "transport": "native" if transport == "auto" else "libcurl", "command": shown(ctx, cmd)}
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
            row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {label:<26} {row['transport']:<8} {row['us']:6.1f} µs: python {row['python_us']:.1f}, "
                  f"engine {row['engine_us']:.1f}", flush=True)
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            row["error"] = str(exc).splitlines()[0]
            print(f"  {label:<26} {row['transport']:<8} ERROR: {row['error']}", flush=True)
        rows.append(row)
    return rows


# ---- the whole benchmark ---------------------------------------------------------------------------------


def announce(m: Measurement) -> None:
    """One progress line per finished run."""
    if m.error:
        print(f"  {m.generator:<13} ERROR: {m.error.splitlines()[0]}", flush=True)
    elif m.section == "memory":
        print(f"  {m.generator:<13} RSS {m.rss_kib} KiB with {m.users} users, {m.base_rss_kib} KiB with 1",
              flush=True)
    else:
        print(f"  {m.generator:<13} {m.rps:9.0f} req/s  {m.cpu_share * 100:5.1f} % CPU  "
              f"{m.requests_per_cpu_second:9.0f} req/CPU-s  p50 {m.p50}  p99 {m.p99}", flush=True)


def run_sections(ctx: Context) -> list[Measurement]:
    """Every selected section, generator after generator; a failed run is recorded and the others go on."""
    s = ctx.settings
    plan: list[tuple[str, list[GeneratorKind], Callable[[GeneratorKind], Measurement]]] = [
        ("throughput", s.throughput_kinds, lambda k: busy_run(ctx, "throughput", k, s.users, s.duration, "/")),
        ("checkout", s.checkout_kinds,
         lambda k: busy_run(ctx, "checkout", k, s.users, s.duration, "/echo", user_class="Checkout")),
        ("latency", s.latency_kinds,
         lambda k: busy_run(ctx, "latency", k, s.latency_users, s.latency_duration, s.latency_path)),
        ("memory", s.memory_kinds, lambda k: memory_run(ctx, k)),
    ]
    results = []
    for section, kinds, run in plan:
        if section not in s.sections:
            continue
        print(f"{section}:", flush=True)
        for kind in kinds:
            results.append(undisturbed(ctx, kind, run))
    return results


def undisturbed(ctx: Context, kind: GeneratorKind, run: Callable[[GeneratorKind], Measurement]) -> Measurement:
    """Run ``kind``, and again (up to --retries times) while other work took too much of the generator's CPU."""
    retries = ctx.settings.retries
    for attempt in range(retries + 1):
        wait_server_idle(ctx)
        m = run(kind)
        announce(m)
        if ctx.server.pid is None:
            raise RuntimeError("the test server died; see its stderr above")
        if not m.ok or not m.disturbed(DISTURBED_SHARE):
            break
        lost = (f"other work took {m.other_cpu_share * 100:.0f} % of the generator's CPU and "
                f"{m.other_server_cpu_share * 100:.0f} % of the server's")
        if attempt < retries:
            print(f"  {kind.name}: {lost}: running it again", flush=True)
        else:
            m.notes.append(f"disturbed: {lost} (kept after {retries} repeats)")
            return m
    if attempt:
        m.notes.append(f"repeated {attempt} time(s) until other work left the generator and the server alone")
    return m


@contextmanager
def work_dir(settings: Settings) -> Iterator[Path]:
    """Where the generators write logs and reports: --keep-work, or a temporary directory removed after."""
    if settings.work_dir is not None:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        yield settings.work_dir
        return
    with tempfile.TemporaryDirectory(prefix="locust-c-bench-") as tmp:
        yield Path(tmp)


def generator_env(package_dir: Path) -> dict[str, str]:
    """The generators' environment: the copy of locust_c importable first, Locust's usual gevent patching on."""
    env = {k: v for k, v in os.environ.items() if k != "LOCUST_SKIP_MONKEY_PATCH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_dir), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def copy_package(log_dir: Path) -> Path:
    """Copy locust_c (its Python files and built extensions) to ``log_dir/package``; returns that directory.

    Every generator of the run imports this copy, so the whole run measures one build even when the work tree
    is edited or rebuilt meanwhile.
    """
    package_dir = log_dir / "package"
    shutil.rmtree(package_dir, ignore_errors=True)
    shutil.copytree(ROOT / "locust_c", package_dir / "locust_c", ignore=shutil.ignore_patterns("__pycache__"))
    return package_dir


def machine_info(settings: Settings) -> dict[str, str]:
    """What the report says about the machine and the software versions."""
    from locust_c import _engine  # the extension only: Locust (and gevent's patching) stays out of this process

    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        wrk_version = (out.stdout or out.stderr).splitlines()[0].split("Copyright")[0].strip()
    return {
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "locust": metadata.version("locust"),
        "gevent": metadata.version("gevent"),
        "geventhttpclient": metadata.version("geventhttpclient"),
        "locust-c": project_revision(),
        "libcurl": _engine.curl_version,
        "wrk": wrk_version or "not installed",
        "open files": str(os.sysconf("SC_OPEN_MAX")),
        "pinning": (f"server on CPU {settings.server_cpu}, generator on CPU {settings.generator_cpu}"
                    if settings.server_cpu is not None else "none (fewer than 2 CPUs)"),
    }


def engine_build(package_dir: Path) -> str:
    """The C engine that a copy of locust_c holds: its file's modification time and the start of its SHA-256."""
    built = sorted((package_dir / "locust_c").glob("_engine*.so"))
    if not built:
        return "not built"
    path = built[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    when = datetime.fromtimestamp(path.stat().st_mtime).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{path.name} built {when}, sha256 {digest}; the generators imported a copy of locust_c taken at the start"


def project_revision() -> str:
    """The git commit of the work tree, and whether the engine's sources differ from it (read-only git)."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), *args], capture_output=True,
                             text=True, timeout=30)
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "not a git work tree"
    changed = git("status", "--porcelain", "--", "csrc", "locust_c", "setup.py")
    return f"commit {head}" + (" + uncommitted changes to csrc/ or locust_c/" if changed else "")


def busy_before() -> str:
    """How busy each CPU was over one second before the benchmark started (other work on a shared machine)."""
    per_cpu = psutil.cpu_percent(interval=1.0, percpu=True)
    return ", ".join(f"CPU {i}: {p:.0f} %" for i, p in enumerate(per_cpu))


def invocation() -> str:
    """The command line that started this benchmark."""
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else "python"
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return shlex.join([python, script, *sys.argv[1:]])


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM ends the benchmark like Ctrl-C does: through the cleanup that stops every process it started."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    settings = parse_args(argv)
    started = time.monotonic()
    info = machine_info(settings)
    info["CPU busy before the run"] = busy_before()
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    with work_dir(settings) as log_dir, TestServer(cpu=settings.server_cpu) as server:
        assert server.pid is not None
        print(f"bench: test server {server.url} (pid {server.pid}); generator logs in {log_dir}", flush=True)
        package_dir = copy_package(log_dir)
        info["C engine"] = engine_build(package_dir)
        ctx = Context(settings, server, psutil.Process(server.pid), log_dir, generator_env(package_dir))
        results = run_sections(ctx)
        if "observe" in settings.sections:
            print("observe:", flush=True)
            results += run_observe(ctx, OBSERVE_KINDS)
        splits = run_split(ctx) if "split" in settings.sections else []
    elapsed = time.monotonic() - started
    info["command"] = invocation()
    info["elapsed"] = f"{elapsed:.0f} s"
    print_report(results, settings, splits)
    md = write_markdown(settings.out_dir / "results.md", results, settings, info, splits)
    png = write_png(settings.out_dir / "results.png", results, settings)
    print(f"bench: wrote {md}" + (f" and {png}" if png else "") + f" in {elapsed:.0f} s", flush=True)
    if settings.work_dir is not None:
        print(f"bench: generator logs kept in {settings.work_dir}")
    return 1 if any(m.error for m in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
