"""The ``locust-c`` command: the CI performance gate.

Subcommands: ``gate`` (SLA budgets), ``compare`` (regression against a baseline), ``leak`` (memory-leak hunter),
``wait-ready`` (readiness polling), ``history`` (change points over many runs) and ``lab`` (the performance lab's
scenarios against the demo shop). Exit codes: 0 pass, 1 budget breached, 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .gate import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_PASS, BadInput
from .gate import compare as compare_mod
from .gate import history as history_mod
from .gate import leak as leak_mod
from .gate import ready as ready_mod
from .gate.report import append_step_summary, sla_markdown, sla_text
from .gate.results import load_run, save_json
from .gate.sla import evaluate, load_sla

PROG = "locust-c"
EXIT_CODES = "exit codes: 0 pass, 1 budget breached, 2 bad input (unreadable or malformed file, bad option)"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date, expected YYYY-MM-DD") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _write_markdown(path: str | None, markdown: str) -> None:
    append_step_summary(markdown)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as out:
                out.write(markdown + "\n")
        except OSError as e:
            raise BadInput(f"cannot write: {e.strerror}", path) from None


# ---------------------------------------------------------------------------------------------------- gate


def cmd_gate(args: argparse.Namespace) -> int:
    """Check a finished run against SLA budgets."""
    spec = load_sla(args.sla_file)
    run = load_run(args.results)
    result = evaluate(spec, run, today=args.today)
    print(sla_text(result, run.path))
    _write_markdown(args.markdown, sla_markdown(result, run.path))
    return result.exit_code


def add_gate(sub: argparse._SubParsersAction) -> None:
    """The ``gate`` subcommand."""
    p = sub.add_parser(
        "gate",
        help="check a finished run against SLA budgets",
        description="Check a finished run against the SLA budgets of a YAML file, endpoint by endpoint. "
        "Prints a verdict table (and appends it as Markdown to $GITHUB_STEP_SUMMARY when that is set).",
        epilog=EXIT_CODES + ". An SLA entry that matches no endpoint is a warning.",
    )
    p.add_argument("--sla-file", required=True, metavar="FILE", help="YAML file of budgets (see examples/slas.yml)")
    p.add_argument(
        "results",
        metavar="RESULTS",
        help="a --results-json FILE.json, or the PREFIX given to locust --csv (reads PREFIX_stats.csv)",
    )
    p.add_argument("--today", type=_date, metavar="YYYY-MM-DD", help="judge skip_until as of this date")
    p.add_argument("--markdown", metavar="FILE", help="also append the Markdown verdict table to FILE")
    p.set_defaults(func=cmd_gate)


# ---------------------------------------------------------------------------------------------------- compare


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare current run(s) against baseline run(s)."""
    limits = compare_mod.Thresholds(
        p95_growth=args.max_p95_growth / 100,
        rps_drop=args.max_rps_drop / 100,
        error_increase=args.max_error_increase / 100,
        max_cv=args.max_cv / 100,
    )
    baseline_paths = [args.baseline_file, *args.baseline]
    target = None
    if args.update_baseline is not None:
        target = args.update_baseline or args.baseline_file
        if not target.endswith(".json"):
            raise BadInput(
                "the baseline is not a .json file, so it cannot be replaced; give --update-baseline FILE.json",
                target,
            )
    current = compare_mod.merge_runs([load_run(p) for p in args.current])
    if target is not None and len(baseline_paths) == 1 and not os.path.exists(args.baseline_file):
        save_json(current.run, target)
        print(f"No baseline at {args.baseline_file} yet: wrote the current run there as the baseline.")
        return EXIT_PASS
    baseline = compare_mod.merge_runs([load_run(p) for p in baseline_paths])
    result = compare_mod.compare(baseline, current, limits)
    print(compare_mod.compare_text(result, baseline.run.path, current.run.path))
    _write_markdown(args.markdown, compare_mod.compare_markdown(result))
    if target is not None:
        save_json(current.run, target)
        print(f"Baseline updated: {target}")
    return result.exit_code


def add_compare(sub: argparse._SubParsersAction) -> None:
    """The ``compare`` subcommand."""
    p = sub.add_parser(
        "compare",
        help="fail on a regression against a baseline run",
        description="Compare CURRENT against BASELINE endpoint by endpoint: p95 growth, throughput drop and "
        "error-rate increase. Several runs on one side are merged by median; when their p95 varies more than "
        "--max-cv, the environment is too noisy and a regression is a warning, not a failure. Endpoints new in "
        "CURRENT or missing from it are reported.",
        epilog=EXIT_CODES + ". Each run is a --results-json FILE.json or a locust --csv PREFIX.",
    )
    p.add_argument("baseline_file", metavar="BASELINE", help="the baseline run")
    p.add_argument("current", metavar="CURRENT", nargs="+", help="the current run(s), merged by median")
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="RUN",
        help="another baseline run, merged by median with BASELINE (repeatable)",
    )
    p.add_argument(
        "--max-p95-growth", type=_non_negative, default=20.0, metavar="PCT", help="fail above +PCT %% p95 (default 20)"
    )
    p.add_argument(
        "--max-rps-drop",
        type=_non_negative,
        default=10.0,
        metavar="PCT",
        help="fail when throughput drops by more than PCT %% (default 10)",
    )
    p.add_argument(
        "--max-error-increase",
        type=_non_negative,
        default=1.0,
        metavar="POINTS",
        help="fail when the error rate grows by more than POINTS percentage points (default 1)",
    )
    p.add_argument(
        "--max-cv",
        type=_non_negative,
        default=15.0,
        metavar="PCT",
        help="call the environment too noisy above this coefficient of variation of p95 across runs (default 15)",
    )
    p.add_argument(
        "--update-baseline",
        nargs="?",
        const="",
        metavar="FILE",
        help="write the merged current run as the new baseline (to BASELINE, or to FILE), whatever the verdict; "
        "when BASELINE does not exist yet it is created and the command passes",
    )
    p.add_argument("--markdown", metavar="FILE", help="also append the Markdown table to FILE")
    p.set_defaults(func=cmd_compare)


# ---------------------------------------------------------------------------------------------------- leak


def cmd_leak(args: argparse.Namespace) -> int:
    """Sample memory, fit a trend and judge it."""
    budget = leak_mod.LeakBudget(args.max_slope_kb_s, args.max_growth_mb, args.warmup)
    budget.validate()
    source = leak_mod.PidMemory(args.pid) if args.pid is not None else leak_mod.CgroupMemory(args.cgroup)
    stop = {"requested": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["requested"] = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    until = f"for {args.duration:g} s" if args.duration else "until the process exits or SIGINT/SIGTERM"
    print(f"Sampling {source.description} every {args.interval:g} s {until}", flush=True)
    samples = leak_mod.sample_memory(source, args.interval, args.duration, should_stop=lambda: stop["requested"])
    fit = leak_mod.fit_leak(samples, budget)
    print(leak_mod.describe(fit, source.description))
    if args.plot:
        leak_mod.plot(samples, fit, args.plot, source.description)
        print(f"Plot written to {args.plot}")
    append_step_summary(leak_mod.describe_markdown(fit, source.description))
    return fit.exit_code


def add_leak_options(p: argparse.ArgumentParser) -> None:
    """The sampling and budget options of ``leak``."""
    p.add_argument("--interval", type=_positive, default=1.0, metavar="S", help="seconds between samples (default 1)")
    p.add_argument(
        "--warmup",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="fraction of the samples discarded as warm-up before fitting (default 0.2)",
    )
    p.add_argument(
        "--max-slope-kb-s",
        type=_non_negative,
        default=50.0,
        metavar="KB",
        help="slope budget in KB per second (default 50)",
    )
    p.add_argument(
        "--max-growth-mb",
        type=_non_negative,
        default=10.0,
        metavar="MB",
        help="growth budget over the fitted window in MB (default 10)",
    )
    p.add_argument("--plot", metavar="FILE", help="write a PNG of the samples and the trend")


def add_leak(sub: argparse._SubParsersAction) -> None:
    """The ``leak`` subcommand."""
    p = sub.add_parser(
        "leak",
        help="hunt a memory leak beside a constant load",
        description="Sample the memory of a process (RSS) or of a cgroup (memory.current) under a constant load, "
        "discard the warm-up, fit a least-squares line and fail only when both the slope and the total growth "
        "exceed their budgets.",
        epilog=EXIT_CODES + ". 1 KB = 1024 bytes.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--pid", type=int, metavar="PID", help="the process to watch")
    target.add_argument(
        "--cgroup", metavar="PATH", help="a cgroup directory (a container's) or its memory.current file"
    )
    p.add_argument(
        "--duration",
        type=_positive,
        metavar="S",
        help="seconds to sample (default: until the process exits or SIGINT/SIGTERM)",
    )
    add_leak_options(p)
    p.set_defaults(func=cmd_leak)


# ---------------------------------------------------------------------------------------------------- wait-ready


def cmd_wait_ready(args: argparse.Namespace) -> int:
    """Poll a URL until it is ready."""
    ready, answer, waited = ready_mod.wait_ready(args.url, args.timeout, args.interval)
    if ready:
        print(f"{args.url} is ready after {waited:.1f} s ({answer})")
        return EXIT_PASS
    print(f"{args.url} is not ready after {args.timeout:g} s; last answer: {answer}", file=sys.stderr)
    return EXIT_FAIL


def add_wait_ready(sub: argparse._SubParsersAction) -> None:
    """The ``wait-ready`` subcommand."""
    p = sub.add_parser(
        "wait-ready",
        help="wait until a service answers ready",
        description="Poll URL until it answers 200 and, when its body is a JSON object with a 'status', until "
        f"that status says ready ({', '.join(sorted(ready_mod.READY_STATUSES))}, any case). On timeout print the "
        "last answer and exit 1.",
        epilog="exit codes: 0 ready, 1 timed out, 2 bad input",
    )
    p.add_argument("url", metavar="URL", help="e.g. http://127.0.0.1:8080/health/ready")
    p.add_argument(
        "--timeout", type=_positive, default=180.0, metavar="S", help="give up after S seconds (default 180)"
    )
    p.add_argument("--interval", type=_positive, default=1.0, metavar="S", help="seconds between polls (default 1)")
    p.set_defaults(func=cmd_wait_ready)


# ---------------------------------------------------------------------------------------------------- history


def cmd_history(args: argparse.Namespace) -> int:
    """Find the change points of a history of runs; fail when a latest segment regressed."""
    runs = history_mod.load_history(args.history)
    shifts = history_mod.find_shifts(runs, args.max_pvalue) if len(runs) >= 4 else []
    report = history_mod.describe(runs, shifts, args.threshold)
    print(report)
    append_step_summary(f"### locust-c history\n\n```\n{report}\n```\n")
    if args.plot:
        for path in history_mod.plot(runs, shifts, args.plot):
            print(f"wrote {path}")
    return EXIT_FAIL if history_mod.regressions(shifts, args.threshold) else EXIT_PASS


def add_history(sub: argparse._SubParsersAction) -> None:
    """The ``history`` subcommand."""
    p = sub.add_parser(
        "history",
        help="find where a history of runs shifted (change points)",
        description="Read a directory of --results-json files (or a JSON-lines file of them), oldest first, and "
        "find per endpoint and metric (p50, p95, p99, error rate, rps) the runs where the numbers shifted, with "
        "E-divisive and a significance test (Apache Otava). Fail when a series' latest segment is worse than the "
        "one before by more than the threshold.",
        epilog=EXIT_CODES,
    )
    p.add_argument("history", metavar="DIR_OR_JSONL", help="a directory of results files, or a .jsonl file")
    p.add_argument("--threshold", type=float, default=0.05, metavar="F",
                   help="a latest shift worse than this fraction fails (default 0.05: 5 %%)")
    p.add_argument("--max-pvalue", type=float, default=history_mod.MAX_PVALUE, metavar="P",
                   help="the significance a change point needs (default %(default)g)")
    p.add_argument("--plot", metavar="DIR", help="write a PNG per metric with the change points marked")
    p.set_defaults(func=cmd_history)


# ---------------------------------------------------------------------------------------------------- lab


def _run_time(text: str) -> float:
    """A duration as Locust's --run-time takes it (30, 30s, 2m, 1h30m: whole seconds), since the lab hands it on
    to Locust: a value Locust would refuse is refused here, before any process starts."""
    match = re.fullmatch(r"(\d+)|(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    seconds = 0
    if match:
        plain, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        seconds = plain + 3600 * hours + 60 * minutes + secs
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration of whole seconds > 0 (e.g. 30s, 2m, 1h30m)")
    return float(seconds)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def cmd_lab(args: argparse.Namespace) -> int:
    """Run one of the lab's scenarios."""
    from .lab import Lab, LabError, run_scenario

    lab = Lab(shop_dir=Path(args.shop), sla_file=Path(args.sla_file), out=Path(args.out), workers=args.workers,
              ready_timeout=args.ready_timeout, shop_args=shlex.split(args.shop_args))
    try:
        outcome = run_scenario(lab, args.scenario, args.users or None, args.duration)
    except LabError as e:
        print(f"{PROG} lab {args.scenario}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    verdict = "PASS" if outcome.code == EXIT_PASS else "FAIL"
    print(f"\nlab {args.scenario}: {verdict} (exit code {outcome.code})")
    for line in outcome.account:
        print(f"  {line}")
    append_step_summary(f"### locust-c lab {args.scenario}: {verdict}\n\n"
                        + "".join(f"- {line.strip()}\n" for line in outcome.account))
    return outcome.code


def add_lab(sub: argparse._SubParsersAction) -> None:
    """The ``lab`` subcommand."""
    from .lab import SCENARIOS

    scenarios = "; ".join(f"{s.name}: {s.summary} ({s.users} users, {s.duration:g} s)" for s in SCENARIOS.values())
    p = sub.add_parser(
        "lab",
        help="run a performance-lab scenario against the demo shop",
        description="Start the demo shop, wait until it is ready, run its workload (75 %% browsers, 25 %% buyers "
        "in a login-browse-cart-checkout funnel) with a Locust master and --workers workers, gate the run with "
        f"the shop's SLA file and the scenario's gates, and print what it found. Scenarios: {scenarios}.",
        epilog="exit codes: 0 pass, 1 a gate failed (the readiness gate too), 2 bad input or the lab could not run",
    )
    p.add_argument("scenario", nargs="?", default="run", choices=list(SCENARIOS), metavar="SCENARIO",
                   help=f"one of {', '.join(SCENARIOS)} (default: run)")
    p.add_argument("--workers", type=_count, default=2, metavar="N",
                   help="Locust workers beside the master (default 2; 0: the users run in one process)")
    p.add_argument("--users", type=_count, default=0, metavar="N", help="users (default: the scenario's)")
    p.add_argument("--duration", type=_run_time, metavar="TIME",
                   help="how long each run lasts, e.g. 30s or 5m (default: the scenario's)")
    p.add_argument("--shop-args", default="", metavar="ARGS",
                   help="switches for the shop, e.g. '--search-tail-ratio 0.5' (see examples/shop/service.py)")
    p.add_argument("--shop", default="examples/shop", metavar="DIR",
                   help="the shop's directory: service.py and locustfile.py (default examples/shop)")
    p.add_argument("--sla-file", default="examples/slas.yml", metavar="FILE",
                   help="the SLA budgets (default examples/slas.yml)")
    p.add_argument("--out", default="lab-results", metavar="DIR",
                   help="where results and the baseline are written (default lab-results)")
    p.add_argument("--ready-timeout", type=_positive, default=30.0, metavar="S",
                   help="how long the shop may take to become ready (default 30)")
    p.set_defaults(func=cmd_lab)


# ---------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``locust-c`` argument parser with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The locust-c CI performance gate: SLA budgets, regression against a baseline, a memory-leak "
        "hunter, readiness polling, the history's change points and the performance lab. "
        "Run 'locust-c COMMAND --help' for each command.",
        epilog=EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_gate(sub)
    add_compare(sub)
    add_leak(sub)
    add_wait_ready(sub)
    add_history(sub)
    add_lab(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``locust-c`` command; returns its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BadInput as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
