"""The lab's scenarios: what each one runs against the shop, which gates judge it, and what its account says.

Every scenario returns an :class:`Outcome`: the exit code (0 pass, 1 a gate failed) and a few lines saying what it
found. A scenario's users and duration are defaults that ``--users`` and ``--duration`` replace; a shape's phases
keep their proportions of the duration.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..gate import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_PASS, BadInput
from ..gate import compare as compare_mod
from ..gate import leak as leak_mod
from ..gate.report import sla_text
from ..gate.results import Run, load_run, save_json
from ..gate.sla import Budget, GateResult, SlaSpec, evaluate
from .processes import Lab, LeakWatch, LocustRun, NotReady, Shop, leak_interval, run_locust, shop

LEAK_KB_PER_REQUEST = 100  # the leaky shop of leak-test: over the hunter's 10 MB within a few seconds
SPIKE_FACTOR = 5
STRESS_FACTOR = 4  # stress peaks at this many times the scenario's users
COMPARE_RUNS = 3
RECOVERY_SLACK = 1.5  # after a spike, p95 back within this factor of the p95 before it (plus 5 ms) is recovered
WORKER_REPORT_INTERVAL = 3.0  # Locust's workers send the master their numbers this often (locust.runners)


@dataclass
class Outcome:
    """A scenario's exit code and its account, a few lines."""

    code: int
    account: list[str] = field(default_factory=list)


@dataclass
class Scenario:
    """A named scenario, its default users and duration (seconds), and what it does."""

    name: str
    summary: str
    users: int
    duration: float
    run: Callable[[Lab, int, float], Outcome]


def _totals(run: Run) -> str:
    total = run.total
    p95 = f"{total.p95_ms:.1f} ms" if total.p95_ms is not None else "-"
    return (f"{total.num_requests} requests ({total.rps:.0f}/s), {total.num_failures} failed, p95 {p95}, "
            f"peak {run.user_count} users")


def _gate(lab: Lab, results: Path) -> tuple[Run, GateResult]:
    """The SLA verdicts of a results file, printed as the ``gate`` command prints them."""
    run = load_run(str(results))
    result = evaluate(lab.sla, run)
    print(sla_text(result, str(results)), flush=True)
    return run, result


def _breaches(result: GateResult) -> str:
    failed = result.failures
    if not failed:
        return f"all {len(result.verdicts)} budgets held"
    names = ", ".join(f"{v.endpoint} {v.metric}" for v in failed[:4]) + (" …" if len(failed) > 4 else "")
    return f"{len(failed)} of {len(result.verdicts)} budgets breached: {names}"


def _funnel(run: Run) -> str | None:
    """How many checkouts became orders."""
    orders = run.by_key().get("POST /api/orders")
    if orders is None:
        return None
    return f"checkout: {orders.num_requests - orders.num_failures} orders of {orders.num_requests} checkouts"


def _one_gated_run(lab: Lab, locust_run: LocustRun, leak: bool = False) -> tuple[Run, GateResult,
                                                                                  leak_mod.LeakFit | None]:
    """The shop, readiness, one Locust run and its SLA verdicts (and the leak hunter's, when asked)."""
    with shop(lab) as target:
        if leak:
            results, fit = _hunted_run(lab, target, locust_run, "the shop")
        else:
            results, fit = run_locust(lab, target, locust_run), None
    run, result = _gate(lab, results)
    return run, result, fit


def _hunted_run(lab: Lab, target: Shop, locust_run: LocustRun, who: str) -> tuple[Path, leak_mod.LeakFit]:
    """One Locust run with the leak hunter on the shop's memory; its results file and the hunter's fit."""
    with LeakWatch(target.pid, leak_interval(locust_run.duration)) as watch:
        results = run_locust(lab, target, locust_run)
    fit = watch.verdict()
    print(leak_mod.describe(fit, f"RSS of {who} (PID {target.pid})"), flush=True)
    return results, fit


def _windows(lab: Lab, label: str) -> list[Run]:
    """The per-window results a ``--results-every`` run wrote, oldest first (each with the users at its end)."""
    return [load_run(str(path)) for path in sorted((lab.out / f"{label}-windows").glob("*.json"))]


def _fresh_windows(lab: Lab, label: str) -> None:
    shutil.rmtree(lab.out / f"{label}-windows", ignore_errors=True)


def _window_seconds(lab: Lab, duration: float, parts: int) -> float:
    """About ``parts`` windows over the run. With workers a window spans at least three of their reports: the
    master's numbers grow a report at a time, and a shorter window's request rate jumps with how many it caught."""
    return max(3 * WORKER_REPORT_INTERVAL if lab.workers else 1.0, round(duration / parts))


def _latency_and_errors(spec: SlaSpec) -> SlaSpec:
    """The budgets a window is judged by: latencies and error rates. ``min_rps`` is a floor for a whole run."""
    def without_min_rps(budget: Budget) -> Budget:
        return replace(budget, limits={m: v for m, v in budget.limits.items() if m != "min_rps"})

    return replace(spec, defaults=spec.defaults and without_min_rps(spec.defaults),
                   total=spec.total and without_min_rps(spec.total),
                   endpoints={key: without_min_rps(budget) for key, budget in spec.endpoints.items()})


# ---------------------------------------------------------------------------------------------------- scenarios


def run_lab(lab: Lab, users: int, duration: float) -> Outcome:
    """The lab's own run: the realistic workload, gated by the SLA file."""
    run, result, _ = _one_gated_run(lab, LocustRun("run", users, duration))
    lines = [_totals(run), _funnel(run), f"SLA: {_breaches(result)}"]
    return Outcome(result.exit_code, [line for line in lines if line])


def smoke(lab: Lab, users: int, duration: float) -> Outcome:
    """A few users briefly: every endpoint of the SLA file answered, no request failed, the budgets held."""
    run, result, _ = _one_gated_run(lab, LocustRun("smoke", users, duration))
    seen = run.by_key()
    missing = [key for key in lab.sla.endpoints if key not in seen]
    lines = [_totals(run), f"SLA: {_breaches(result)}"]
    code = result.exit_code
    if missing:
        lines.append(f"not reached by the workload: {', '.join(missing)}")
        code = EXIT_FAIL
    if run.total.num_failures:
        lines.append(f"{run.total.num_failures} requests failed: a smoke test allows none")
        code = EXIT_FAIL
    return Outcome(code, lines)


def baseline(lab: Lab, users: int, duration: float) -> Outcome:
    """A run that meets its budgets becomes the baseline that ``compare`` judges later runs against."""
    run, result, _ = _one_gated_run(lab, LocustRun("baseline-run", users, duration))
    lines = [_totals(run), f"SLA: {_breaches(result)}"]
    target = lab.out / "baseline.json"
    if result.passed:
        save_json(run, str(target))
        lines.append(f"baseline written: {target}")
    else:
        lines.append(f"not written as the baseline: it breaches its budgets ({target} is unchanged)")
    return Outcome(result.exit_code, lines)


def stress(lab: Lab, users: int, duration: float) -> Outcome:
    """Ramp to STRESS_FACTOR times the users, hold, ramp down; the account finds the load where budgets broke."""
    peak = users * STRESS_FACTOR
    label = "stress"
    _fresh_windows(lab, label)
    shape = {"peak_users": peak, "ramp_up": duration * 0.5, "hold": duration * 0.3, "ramp_down": duration * 0.2}
    window = _window_seconds(lab, duration, 10)
    run, result, _ = _one_gated_run(lab, LocustRun(label, peak, duration, "stress", shape, window))
    spec = _latency_and_errors(lab.sla)
    held, broke = None, None
    rows = []
    for part in _windows(lab, label):
        part_users = part.user_count
        verdicts = evaluate(spec, part)
        rps = part.total.rps
        rows.append(f"  {part_users if part_users is not None else '?':>5} users  {rps:7.0f}/s  "
                    f"p95 {part.total.p95_ms or 0:7.1f} ms  {part.total.num_failures:5} failed  "
                    f"{'ok' if verdicts.passed else _breaches(verdicts)}")
        if broke is None and verdicts.passed:
            if held is None or (part_users or 0, rps) > (held[0] or 0, held[1]):
                held = (part_users, rps)  # the heaviest load that met the budgets before any window broke them
        elif broke is None:
            broke = (part_users, verdicts)
    lines = [_totals(run), f"SLA over the whole run: {_breaches(result)}",
             f"per window of {window:g} s (latency and error budgets):", *rows]
    if held is not None:
        lines.append(f"budgets held {'up to' if broke else 'at every load, up to'} {held[0]} users ({held[1]:.0f}/s)")
    if broke is not None:
        lines.append(f"first breached at {broke[0]} users: {_breaches(broke[1])}")
    return Outcome(result.exit_code, lines)


def spike(lab: Lab, users: int, duration: float) -> Outcome:
    """The users, a sudden SPIKE_FACTOR× spike, then the users again: does the service recover?"""
    label = "spike"
    _fresh_windows(lab, label)
    shape = {"baseline_users": users, "spike_factor": SPIKE_FACTOR, "baseline_duration": duration * 0.4,
             "spike_duration": duration * 0.2, "recovery_duration": duration * 0.4}
    window = _window_seconds(lab, duration, 10)
    run, result, _ = _one_gated_run(lab, LocustRun(label, users * SPIKE_FACTOR, duration, "spike", shape, window))
    phases: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    phase = "before"
    for part in _windows(lab, label):
        if part.user_count is not None and part.user_count > users:
            phase = "during"
        elif phase == "during":
            phase = "ending"  # the window in which the spike ended holds requests of both: it is judged in neither
            continue
        elif phase == "ending":
            phase = "after"
        if part.total.p95_ms is not None:
            phases[phase].append(part.total.p95_ms)
    lines = [_totals(run), f"SLA: {_breaches(result)}"]
    p95 = {name: max(values) if values else None for name, values in phases.items()}
    lines.append("worst p95 per window: " + ", ".join(
        f"{name} the spike {value:.1f} ms" if value is not None else f"{name} the spike -"
        for name, value in p95.items()))
    code = result.exit_code
    before, after = p95["before"], p95["after"]
    if before is None or after is None:
        lines.append("recovery not judged: the run had no window before or after the spike")
    elif after <= before * RECOVERY_SLACK + 5:
        lines.append("recovered: p95 after the spike is back near p95 before it")
    else:
        lines.append(f"did not recover: p95 after the spike is {after / before:.1f}× p95 before it")
        code = EXIT_FAIL
    return Outcome(code, lines)


def soak(lab: Lab, users: int, duration: float) -> Outcome:
    """A long steady run with the leak hunter on the shop."""
    shape = {"users": users, "ramp_up": duration * 0.1, "duration": duration * 0.9}
    run, result, fit = _one_gated_run(lab, LocustRun("soak", users, duration, "soak", shape), leak=True)
    assert fit is not None
    lines = [_totals(run), f"SLA: {_breaches(result)}",
             f"memory of the shop: {fit.first_mb:.1f} -> {fit.last_mb:.1f} MB, {fit.slope_kb_s:+.1f} KB/s: "
             + ("leaking" if fit.leaking else "no leak")]
    return Outcome(max(result.exit_code, fit.exit_code), lines)


def leak_test(lab: Lab, users: int, duration: float) -> Outcome:
    """The leak hunter against the shop with its leak on (it must fail) and off (it must pass)."""
    fits = {}
    for label, switches in (("leaky", ("--leak-kb-per-request", str(LEAK_KB_PER_REQUEST))), ("clean", ())):
        with shop(lab, *switches) as target:
            _, fits[label] = _hunted_run(lab, target, LocustRun(f"leak-{label}", users, duration), f"the {label} shop")
    lines = []
    for label, want in (("leaky", True), ("clean", False)):
        fit = fits[label]
        found = "leaking" if fit.leaking else "no leak"
        right = "as expected" if fit.leaking == want else "WRONG"
        lines.append(f"{label} shop: {fit.first_mb:.1f} -> {fit.last_mb:.1f} MB, {fit.slope_kb_s:+.1f} KB/s: "
                     f"{found}, {right}")
    caught = fits["leaky"].leaking and not fits["clean"].leaking
    return Outcome(EXIT_PASS if caught else EXIT_FAIL, lines)


def compare(lab: Lab, users: int, duration: float) -> Outcome:
    """Three runs, merged by median, against the baseline that ``baseline`` wrote."""
    target = lab.out / "baseline.json"
    if not target.is_file():
        raise BadInput("no baseline yet: run the baseline scenario first (make baseline)", str(target))
    base = compare_mod.merge_runs([load_run(str(target))])
    runs = []
    for n in range(1, COMPARE_RUNS + 1):
        with shop(lab) as target:
            runs.append(load_run(str(run_locust(lab, target, LocustRun(f"compare-{n}", users, duration)))))
    current = compare_mod.merge_runs(runs)
    result = compare_mod.compare(base, current)
    print(compare_mod.compare_text(result, str(target), f"median of {COMPARE_RUNS} runs"), flush=True)
    lines = [*(f"run {n}: {_totals(run)}" for n, run in enumerate(runs, 1)), compare_mod.summary_line(result)]
    return Outcome(result.exit_code, lines)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("run", "the realistic workload, gated by the SLA file", 20, 30, run_lab),
    Scenario("smoke", "a few users briefly: every endpoint answers, nothing fails", 4, 10, smoke),
    Scenario("baseline", "a run within its budgets, written as the baseline", 20, 30, baseline),
    Scenario("stress", f"ramp to {STRESS_FACTOR}x the users: where do the budgets break?", 20, 90, stress),
    Scenario("spike", f"a sudden {SPIKE_FACTOR}x spike: does the service recover?", 10, 90, spike),
    Scenario("soak", "a long steady run with the leak hunter on the shop", 20, 300, soak),
    Scenario("leak-test", "the leak hunter catches the leaky shop and passes the clean one", 10, 20, leak_test),
    Scenario("compare", f"{COMPARE_RUNS} runs, median, against the baseline", 20, 30, compare),
)}


def run_scenario(lab: Lab, name: str, users: int | None = None, duration: float | None = None) -> Outcome:
    """Run one scenario; a shop that never became ready is the readiness gate failing (exit code 1)."""
    scenario = SCENARIOS[name]
    lab.check()
    lab.out.mkdir(parents=True, exist_ok=True)
    try:
        return scenario.run(lab, users or scenario.users, duration or scenario.duration)
    except NotReady as e:
        return Outcome(EXIT_FAIL, [f"readiness: {e}", "no load was sent"])


__all__ = ["EXIT_BAD_INPUT", "Outcome", "SCENARIOS", "Scenario", "run_scenario"]
