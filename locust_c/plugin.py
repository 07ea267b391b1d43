"""The in-run gate: command-line options locust-c adds to Locust, and the listeners that act on them.

Importing :mod:`locust_c` registers this plugin, so a locustfile with plain ``HttpUser``/``FastHttpUser`` gets it
too with a bare ``import locust_c``. Options:

``--results-json FILE``
    write the run's per-endpoint results at test stop (see :mod:`locust_c.results`).
``--sla-file FILE``
    check the run against SLA budgets at test stop: a verdict table on stdout and in ``$GITHUB_STEP_SUMMARY``,
    exit code 1 on any breach. A missing or malformed file stops Locust before any load, with exit code 2.
``--leak-pid PID`` / ``--leak-cgroup PATH``
    hunt a memory leak in the system under test while the load runs; exit code 1 on a leak.

In distributed mode only the master writes results and gates (once workers have sent their last statistics).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
import locust
from locust.runners import MasterRunner, WorkerRunner

from . import results as results_mod
from .gate import EXIT_BAD_INPUT, EXIT_FAIL, BadInput
from .gate import leak as leak_mod
from .gate import live as live_mod
from .gate.report import append_step_summary, sla_markdown, sla_summary_line, sla_text
from .gate.results import run_from_dict
from .gate.sla import SlaSpec, evaluate, load_sla

if TYPE_CHECKING:
    from locust.env import Environment

PREFIX = "locust-c"
logger = logging.getLogger(__name__)


@dataclass
class _LeakWatch:
    """A memory sampler running in a greenlet for the length of a test."""

    source: leak_mod.MemorySource
    interval: float
    budget: leak_mod.LeakBudget
    plot: str | None
    stop_requested: bool = False
    samples: list[leak_mod.Sample] = field(default_factory=list)
    greenlet: Any = None

    def start(self) -> None:
        self.stop_requested = False
        self.samples = []
        self.greenlet = gevent.spawn(
            leak_mod.sample_memory,
            self.source,
            self.interval,
            None,
            lambda: self.stop_requested,
            self.samples.append,
        )

    @property
    def running(self) -> bool:
        return self.greenlet is not None

    def fit(self) -> leak_mod.LeakFit | None:
        """The trend fitted to the samples so far, or None while there are too few."""
        try:
            return leak_mod.fit_leak(list(self.samples), self.budget)
        except BadInput:
            return None

    def stop(self) -> list[leak_mod.Sample]:
        self.stop_requested = True
        if self.greenlet is not None:
            self.greenlet.join(timeout=self.interval + 2)
            self.greenlet.kill(block=False)
            self.greenlet = None
        return self.samples


@dataclass
class GateState:
    """What the plugin keeps per environment (``environment.locust_c_gate``)."""

    results_json: str | None = None
    results_every: float = 0.0  # seconds per window file, 0 for none
    windows_greenlet: gevent.Greenlet | None = None
    spec: SlaSpec | None = None
    leak: _LeakWatch | None = None
    live: live_mod.LiveGate | None = None
    live_greenlet: Any = None
    pending: bool = False
    peak_users: int = 0
    summary: list[str] = field(default_factory=list)


def _fail(environment: Environment, code: int = EXIT_FAIL) -> None:
    """Raise the process exit code to ``code`` (never lower one that is already set)."""
    current = environment.process_exit_code
    if current is None or current < code:
        environment.process_exit_code = code


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------- options


@locust.events.init_command_line_parser.add_listener
def add_options(parser: Any, **_kwargs: Any) -> None:
    """Add locust-c's options to Locust's command line (and ``LOCUST_*`` environment variables)."""
    group = parser.add_argument_group(
        "locust-c gate", "Write results, check SLA budgets and hunt memory leaks (exit code 1 on a breach)."
    )
    options = [
        (
            "--results-json",
            {"metavar": "FILE", "help": "write per-endpoint results as JSON at test stop (locust-c-results/1)"},
        ),
        (
            "--results-every",
            {
                "metavar": "SPAN",
                "help": "with --results-json FILE: also write one results file per window of SPAN (e.g. 5m) into "
                "FILE's name + '-windows/', for locust-c history over a long run",
            },
        ),
        (
            "--sla-file",
            {
                "metavar": "FILE",
                "help": "YAML file of SLA budgets checked at test stop; exit code 1 on any breach, "
                "2 (before any load) when the file is missing or malformed",
            },
        ),
        ("--sla-abort", {"action": "store_true", "default": False,
                         "help": "check the --sla-file budgets during the run and stop it (exit code 1) as soon as "
                         "a budget is breached beyond doubt over the sliding window"}),
        ("--sla-abort-after", {"metavar": "TIME", "default": "30s",
                               "help": "grace period before --sla-abort judges (e.g. 30s, 2m; default 30s)"}),
        ("--sla-abort-window", {"metavar": "TIME", "default": "10s",
                                "help": "the sliding window --sla-abort judges (default 10s)"}),
        ("--leak-pid", {"metavar": "PID", "type": int, "help": "hunt a memory leak in this process during the run"}),
        ("--leak-cgroup", {"metavar": "PATH", "help": "hunt a memory leak in this cgroup (memory.current)"}),
        ("--leak-interval", {"metavar": "S", "type": float, "default": 1.0, "help": "seconds between memory samples"}),
        ("--leak-warmup", {"metavar": "FRACTION", "type": float, "default": 0.2, "help": "fraction discarded first"}),
        ("--leak-max-slope-kb-s", {"metavar": "KB", "type": float, "default": 50.0, "help": "slope budget, KB/s"}),
        ("--leak-max-growth-mb", {"metavar": "MB", "type": float, "default": 10.0, "help": "growth budget, MB"}),
        ("--leak-plot", {"metavar": "FILE", "help": "write a PNG of the memory samples and trend"}),
    ]
    _add(group, options)
    observe = parser.add_argument_group(
        "locust-c observability", "Live metrics from locust-c's exact histograms, read when they are collected.")
    _add(observe, [
        (
            "--prometheus-port",
            {"metavar": "PORT", "type": int, "help": "serve /metrics in the Prometheus text format on this port "
             "(a master serves the totals of its workers; a worker given the option serves its own)"},
        ),
        ("--prometheus-host", {"metavar": "HOST", "default": "", "help": "interface for /metrics (default: all)"}),
        (
            "--otel-propagate",
            {"action": "store_true", "default": False, "help": "send a W3C traceparent header with every FastCUser "
             "request (in the current span's trace, if any), so the service's traces name the request"},
        ),
        (
            "--prometheus-linger",
            {"metavar": "S", "type": float, "default": 0.0, "help": "after the run, keep /metrics up until it is "
             "scraped once more (the final numbers), for at most S seconds (default 0)"},
        ),
    ])


def _add(group: Any, options: list[tuple[str, dict[str, Any]]]) -> None:
    for flag, kwargs in options:
        env_var = "LOCUST_" + flag[2:].upper().replace("-", "_")
        action = group.add_argument(flag, env_var=env_var, **kwargs)
        action.include_in_web_ui = False


# ---------------------------------------------------------------------------------------------------- init


def _setup(environment: Environment) -> GateState:
    """Validate the options (raises :class:`BadInput`) and build the state."""
    options = environment.parsed_options
    state = GateState(results_json=getattr(options, "results_json", None))
    sla_file = getattr(options, "sla_file", None)
    if sla_file:
        state.spec = load_sla(sla_file)
    if getattr(options, "sla_abort", False):
        if state.spec is None:
            raise BadInput("needs --sla-file, the budgets it checks", "--sla-abort")
        after = _seconds(options.sla_abort_after, "--sla-abort-after", allow_zero=True)
        window = _seconds(options.sla_abort_window, "--sla-abort-window", allow_zero=False)
        state.live = live_mod.LiveGate(environment, state.spec, after, window)
    every = getattr(options, "results_every", None)
    if every:
        if not state.results_json:
            raise BadInput("needs --results-json, the file whose windows it writes", "--results-every")
        state.results_every = _seconds(every, "--results-every", allow_zero=False)
    pid, cgroup = getattr(options, "leak_pid", None), getattr(options, "leak_cgroup", None)
    if pid is not None and cgroup:
        raise BadInput("give --leak-pid or --leak-cgroup, not both", "--leak-pid")
    if pid is not None or cgroup:
        budget = leak_mod.LeakBudget(options.leak_max_slope_kb_s, options.leak_max_growth_mb, options.leak_warmup)
        budget.validate()
        if not options.leak_interval > 0:
            raise BadInput(f"{options.leak_interval} is not a number of seconds > 0", "--leak-interval")
        source = leak_mod.PidMemory(pid, "--leak-pid") if pid is not None else leak_mod.CgroupMemory(cgroup)
        state.leak = _LeakWatch(source, options.leak_interval, budget, options.leak_plot)
    return state


def _seconds(text: Any, option: str, allow_zero: bool) -> float:
    """A time span given as Locust gives them (``30``, ``30s``, ``2m``, ``1h30m``), in seconds."""
    from locust.util.timespan import parse_timespan

    try:
        seconds = float(text)  # plain seconds, as Locust's --stop-timeout takes them
    except ValueError:
        try:
            seconds = float(parse_timespan(str(text)))
        except ValueError:
            seconds = -1.0
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise BadInput(f"{text!r} is not a time span{'' if allow_zero else ' > 0'} (e.g. 30s, 2m)", option)
    return seconds


@locust.events.init.add_listener
def on_init_histograms(environment: Environment, **_kwargs: Any) -> None:
    """Workers send their exact histograms with each report; the master merges them without loss."""
    from . import stats

    environment.events.report_to_master.add_listener(
        lambda client_id, data, **kw: data.__setitem__("locust_c_hist", stats.worker_payload(environment)))
    environment.events.worker_report.add_listener(
        lambda client_id, data, **kw: stats.merge_worker_payload(environment, data.get("locust_c_hist") or ()))


@locust.events.init.add_listener
def on_init_arrival(environment: Environment, **_kwargs: Any) -> None:
    """The open model's schedules: a new test starts them again, a worker runs its share of each class's rate
    (its users of the class over all of them, as the master tells it) and reports its tallies; the end of the run
    says what they were."""
    from . import arrival
    from .stats import StatsBridge

    runner, events = environment.runner, environment.events
    if isinstance(runner, MasterRunner):
        tallies: dict[str, dict[str, dict[str, float]]] = {}
        sharing: list[gevent.Greenlet] = []

        def master_start(**_kw: Any) -> None:
            tallies.clear()
            if environment.parsed_options is not None:  # sent to the workers with every spawn message
                environment.parsed_options.locust_c_arrival_workers = max(1, runner.worker_count)
            if not sharing:
                sharing.append(gevent.spawn(_share_rates, runner))

        def master_stop(**_kw: Any) -> None:
            while sharing:
                sharing.pop().kill(block=False)

        def worker_report(client_id: str, data: dict, **_kw: Any) -> None:
            if "locust_c_arrival" in data:
                tallies[client_id] = data["locust_c_arrival"]

        def master_totals() -> dict[str, dict[str, float]]:
            out: dict[str, arrival.ArrivalTally] = {}
            for per_class in tallies.values():
                for user_class, tally in per_class.items():
                    out.setdefault(user_class, arrival.ArrivalTally()).add(tally)
            return {user_class: tally.to_dict() for user_class, tally in out.items()}

        events.test_start.add_listener(master_start)
        events.test_stop.add_listener(master_stop)
        events.worker_report.add_listener(worker_report)
        environment.locust_c_arrival = master_totals  # type: ignore[attr-defined]
    else:
        def start(**_kw: Any) -> None:
            workers, index = 1, 0
            if isinstance(runner, WorkerRunner):
                workers = getattr(environment.parsed_options, "locust_c_arrival_workers", 1) or 1
                index = max(0, runner.worker_index)
            arrival.REGISTRY.reset(int(workers), index)

        events.test_start.add_listener(start)
        # The schedules end when the users are told to stop: a user asleep until a later due time is killed then.
        stopping: list[float] = []
        events.test_stopping.add_listener(lambda **_kw: stopping.append(time.time()))
        events.test_stop.add_listener(
            lambda **_kw: arrival.REGISTRY.finish(stopping.pop() if stopping else time.time()))
        if runner is not None:
            StatsBridge.of(runner.stats)  # its resets restart the tallies too (StatsBridge.forget)
        if isinstance(runner, WorkerRunner):
            events.report_to_master.add_listener(
                lambda client_id, data, **_kw: data.__setitem__("locust_c_arrival", arrival.REGISTRY.totals()))
            runner.register_message(SHARE_MESSAGE, lambda msg, **_kw: arrival.REGISTRY.set_shares(msg.data))
        environment.locust_c_arrival = arrival.REGISTRY.totals  # type: ignore[attr-defined]
    if not isinstance(runner, WorkerRunner):
        events.quitting.add_listener(
            lambda **_kw: [_print(f"{PREFIX}: {line}") for line in arrival.describe(environment.locust_c_arrival())])


SHARE_MESSAGE = "locust_c_arrival_share"
SHARE_INTERVAL = 0.25  # seconds: a worker runs a wrong share for at most about this long after a spawn


def _share_rates(runner: MasterRunner) -> None:
    """Tell each worker its share of each user class's rate: its users of the class over all of them, whenever
    that changes (a ramp, a worker that joins or leaves); a worker with none of a class gets 0."""
    sent: dict[str, dict[str, float]] = {}
    while True:
        workers = {node.id: dict(node.user_classes_count or {}) for node in list(runner.clients.values())}
        totals: dict[str, int] = {}
        for counts in workers.values():
            for user_class, n in counts.items():
                totals[user_class] = totals.get(user_class, 0) + n
        for client_id, counts in workers.items():
            shares = {c: counts.get(c, 0) / n for c, n in totals.items() if n > 0}
            if shares and sent.get(client_id) != shares:
                runner.send_message(SHARE_MESSAGE, shares, client_id=client_id)
                sent[client_id] = shares
        gevent.sleep(SHARE_INTERVAL)


@locust.events.init.add_listener
def on_init_otel(environment: Environment, **_kwargs: Any) -> None:
    """With Locust's ``--otel``: FastCUser's request durations from the C histograms (see :mod:`locust_c.otel`)."""
    if getattr(environment.parsed_options, "otel", False):
        from . import otel

        otel.install(environment)


@locust.events.init.add_listener
def on_init_prometheus(environment: Environment, **_kwargs: Any) -> None:
    """Serve /metrics when ``--prometheus-port`` is given: on a master or a local run, and on a worker started
    on its own (the workers that ``--processes`` forks share the option but not the port: their master serves)."""
    from . import engine

    runner = environment.runner
    if isinstance(runner, WorkerRunner):  # for its master's /metrics
        environment.events.report_to_master.add_listener(
            lambda client_id, data, **kw: data.__setitem__("locust_c_engine", engine.counters()))
    options = environment.parsed_options
    port = getattr(options, "prometheus_port", None)
    if port is None or runner is None:
        return
    if isinstance(runner, WorkerRunner) and getattr(options, "processes", None):
        logger.info("--prometheus-port: the workers --processes starts leave /metrics to their master")
        return
    if not 0 < port < 65536:
        _exit_bad_input(f"--prometheus-port: {port} is not a port number (1 to 65535)")
    linger = getattr(options, "prometheus_linger", 0.0) or 0.0
    if linger < 0:
        _exit_bad_input(f"--prometheus-linger: {linger} is not a number of seconds >= 0")
    from . import prometheus  # prometheus_client only when it serves
    server = prometheus.PrometheusServer(environment, options.prometheus_host, port)
    try:
        server.start()
    except OSError as e:
        _exit_bad_input(f"--prometheus-port {port}: cannot listen: {e.strerror or e}")
    environment.locust_c_prometheus = server  # type: ignore[attr-defined]
    if isinstance(runner, WorkerRunner):
        from .stats import StatsBridge

        bridge = StatsBridge.of(runner.stats)  # its reset generation tells a new test from the old one
        reported = server.collector.reported = prometheus.WorkerTotals()
        environment.events.report_to_master.add_listener(
            lambda client_id, data, **kw: reported.add(data, bridge.generation))
    if isinstance(runner, MasterRunner):
        engines = server.collector.worker_engines
        environment.events.worker_report.add_listener(
            lambda client_id, data, **kw: engines.__setitem__(client_id, data.get("locust_c_engine") or {}))
    if linger > 0:
        environment.events.quitting.add_listener(lambda **kw: server.linger(linger))
    environment.events.quit.add_listener(lambda **kw: server.stop())


def _exit_bad_input(message: str) -> None:
    sys.stderr.write(f"{PREFIX}: error: {message}\n")
    sys.stderr.flush()
    # SystemExit is not an Exception, so it passes through Locust's event dispatch and ends the process
    # with this code before the test starts.
    sys.exit(EXIT_BAD_INPUT)


@locust.events.init.add_listener
def on_init(environment: Environment, **_kwargs: Any) -> None:
    """Check the options before any load is sent; a bad one ends Locust with exit code 2."""
    if environment.parsed_options is None or isinstance(environment.runner, WorkerRunner):
        return
    try:
        state = _setup(environment)
    except BadInput as e:
        _exit_bad_input(str(e))
    if state.results_json is None and state.spec is None and state.leak is None:
        return
    environment.locust_c_gate = state  # type: ignore[attr-defined]
    events = environment.events
    events.test_start.add_listener(lambda **kw: _on_test_start(environment))
    events.spawning_complete.add_listener(lambda user_count, **kw: _on_spawned(environment, user_count))
    events.test_stop.add_listener(lambda **kw: _on_test_stop(environment))
    events.quitting.add_listener(lambda **kw: _finish(environment))
    events.quit.add_listener(lambda **kw: _on_quit(environment))


def _state(environment: Environment) -> GateState:
    return environment.locust_c_gate  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------- the run


def _on_test_start(environment: Environment) -> None:
    state = _state(environment)
    state.pending = True
    state.peak_users = 0
    if state.leak is not None and not state.leak.running:
        state.leak.start()
    if state.results_every and state.windows_greenlet is None:
        state.windows_greenlet = gevent.spawn(_write_windows, environment, state)
    if state.live is not None and state.live_greenlet is None:
        state.live.start()
        state.live_greenlet = gevent.spawn(_watch_live, environment, state, state.live)


def _watch_live(environment: Environment, state: GateState, gate: live_mod.LiveGate) -> None:
    """Judge the sliding window once a second; on a breach beyond doubt, stop the run with exit code 1."""
    while True:
        gevent.sleep(live_mod.CHECK_INTERVAL)
        try:
            result = gate.check()
        except Exception:  # a bug of the gate must not end it silently for the rest of the run, nor the run
            logger.exception("locust-c: --sla-abort: cannot judge this window")
            continue
        if result is not None:
            break
    state.live_greenlet = None
    gate.verdicts = result
    _print(f"{PREFIX}: --sla-abort: stopping the run after {gate.elapsed():.0f} s: "
           f"budgets breached beyond doubt over the last {gate.window_s:g} s")
    _print(sla_text(result, f"the last {gate.window_s:g} s"))
    append_step_summary(sla_markdown(result, f"stopped early, the last {gate.window_s:g} s"))
    _fail(environment)
    options = environment.parsed_options
    if options is not None and options.headless:
        environment.runner.quit()
    else:
        environment.runner.stop()


def _write_windows(environment: Environment, state: GateState) -> None:
    """Every ``--results-every``, the window since the last one as a results file of its own."""
    import datetime as dt
    from pathlib import Path

    assert state.results_json is not None
    directory = Path(state.results_json).with_name(Path(state.results_json).stem + "-windows")
    commit, branch = results_mod.run_identity()  # one test, one commit
    then, then_wall = live_mod.take_snapshot(environment), time.time()
    while True:
        gevent.sleep(state.results_every)
        now, now_wall = live_mod.take_snapshot(environment), time.time()
        window = live_mod.window_between(then, now)
        if window is not None and window.endpoints:
            data = window.run().to_dict()
            start = dt.datetime.fromtimestamp(then_wall, tz=dt.UTC)
            runner = environment.runner
            data.update(commit=commit, branch=branch, source="locust-c",
                        start_time=start.isoformat(timespec="seconds"), run_time_s=round(now_wall - then_wall, 3),
                        locust_c_version=results_mod.locust_c_version(), host=environment.host,
                        user_count=runner.user_count if runner is not None else None)
            try:
                directory.mkdir(parents=True, exist_ok=True)
                results_mod.write_results_dict(data, str(directory / f"{start:%Y%m%dT%H%M%SZ}.json"))
            except OSError as e:
                sys.stderr.write(f"{PREFIX}: error: {directory}: cannot write a window's results: {e.strerror}\n")
        then, then_wall = now, now_wall


def _on_spawned(environment: Environment, user_count: int) -> None:
    state = _state(environment)
    state.peak_users = max(state.peak_users, user_count)


def _on_test_stop(environment: Environment) -> None:
    state = _state(environment)
    if state.windows_greenlet is not None:
        state.windows_greenlet.kill(block=False)
        state.windows_greenlet = None
    if state.live_greenlet is not None and state.live_greenlet is not gevent.getcurrent():
        state.live_greenlet.kill(block=False)
        state.live_greenlet = None
    # A master's statistics are complete only once the workers have sent their last report, at quitting.
    if not isinstance(environment.runner, MasterRunner):
        _finish(environment)


def _finish(environment: Environment) -> None:
    """Judge the leak and the SLA of the test that just ended (once per test)."""
    state = _state(environment)
    if state.leak is not None and state.leak.running:
        _judge_leak(environment, state)
    if not state.pending:
        return
    state.pending = False
    runner = environment.runner
    users = max(state.peak_users, runner.user_count if runner is not None else 0)
    data = results_mod.collect(environment, user_count=users)
    if state.results_json:
        try:
            results_mod.write_results_dict(data, state.results_json)
        except OSError as e:
            sys.stderr.write(f"{PREFIX}: error: {state.results_json}: cannot write results: {e.strerror}\n")
            _fail(environment, EXIT_BAD_INPUT)
    if state.live is not None and state.live.verdicts is None:
        _print(f"{PREFIX}: --sla-abort: {state.live.judged} windows judged, no budget breached beyond doubt")
    if state.live is not None and state.live.verdicts is not None:
        live = state.live.verdicts
        n = sum(v.note == "beyond doubt" for v in live.verdicts)
        state.summary.append(f"SLA gate: FAIL (stopped early: {n} budget{'s' if n != 1 else ''} breached beyond doubt)")
        _fail(environment)
    elif state.spec is not None:
        result = evaluate(state.spec, run_from_dict(data, "this run"))
        _print(sla_text(result))
        append_step_summary(sla_markdown(result, environment.host or ""))
        state.summary.append(sla_summary_line(result))
        if not result.passed:
            _fail(environment)


def _judge_leak(environment: Environment, state: GateState) -> None:
    watch = state.leak
    assert watch is not None
    samples = watch.stop()
    try:
        fit = leak_mod.fit_leak(samples, watch.budget)
    except BadInput as e:
        sys.stderr.write(f"{PREFIX}: error: leak hunter: {e.detail}\n")
        state.summary.append("Leak hunter: no verdict (too few samples)")
        _fail(environment, EXIT_BAD_INPUT)
        return
    _print(leak_mod.describe(fit, watch.source.description))
    append_step_summary(leak_mod.describe_markdown(fit, watch.source.description))
    state.summary.append(f"Leak hunter: {'FAIL: memory is leaking' if fit.leaking else 'PASS: no leak'}")
    if watch.plot:
        try:
            leak_mod.plot(samples, fit, watch.plot, watch.source.description)
        except BadInput as e:
            sys.stderr.write(f"{PREFIX}: error: {e}\n")
    if fit.leaking:
        _fail(environment)


def _on_quit(environment: Environment) -> None:
    """Repeat the verdicts after Locust's final statistics, so that they are the last lines of the log."""
    for line in _state(environment).summary:
        _print(line)
