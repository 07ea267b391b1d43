"""Open-model load: iterations that arrive at a rate, whoever is free to run them (``wait_time = arrival_rate(200)``).

Locust's users are a closed model: each waits for its answer before its next task, so a service that stalls slows
the load down with it, and the few requests that saw the stall hide among the many that did not (coordinated
omission). With ``arrival_rate`` the iterations of a user class are due on a schedule of their own, every
``1 / rate`` seconds (or as a Poisson process), shared by all the users of the class: a user that finishes its task
takes the next due time and waits for it, or starts at once when it is late. An iteration that could not start
within ``max_lag`` seconds of its due time, because every user was busy, is *dropped* and counted, as k6 counts
``dropped_iterations``; the schedule does not slow down for it.

Each user knows the due time of the iteration it runs (``user.locust_c_due``, UNIX seconds), so that the time from
when an iteration was due to its last byte can be measured, as wrk2 measures it.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _engine

DEFAULT_MAX_LAG = 1.0


@dataclass
class ArrivalSchedule:
    """The due times of one stream of iterations: ``rate`` per second, evenly spaced or Poisson.

    Every due time from the first to the end of the test is, in the end, one of: *issued* to a user (who ran it,
    *late* when after its due time, unless the user was stopped while it waited for it: *cancelled*), *dropped*
    (no user was free within ``max_lag`` of it) or *unstarted* (due within ``max_lag`` of the end, when no user
    was free before the test ended)."""

    rate: float
    poisson: bool = False
    max_lag: float = DEFAULT_MAX_LAG
    rng: random.Random = field(default_factory=random.Random)
    next: float | None = None  # the next due time (UNIX seconds), None before the first
    issued: int = 0  # iterations handed to a user
    late: int = 0  # of them, started after their due time (within max_lag)
    dropped: int = 0  # iterations more than max_lag late when a user was free: never run
    unstarted: int = 0  # due before the end of the test, but less than max_lag before it, and never run
    cancelled: int = 0  # issued to a user that was stopped before it was due
    tally: Any = None  # the ArrivalTally of its user class, which take() and finish() keep up to date
    user_class: str = ""
    base_rate: float = 0.0  # the class's whole rate, of which a worker runs its share; 0 for a per-user schedule
    waiting: deque[float] = field(default_factory=deque)  # the due times issued that are still ahead

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"arrival_rate: the rate must be > 0 iterations per second, not {self.rate!r}")
        if not self.max_lag >= 0:
            raise ValueError(f"arrival_rate: max_lag must be >= 0 seconds, not {self.max_lag!r}")

    def gap(self) -> float:
        """Seconds from one due time to the next."""
        return self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate

    def _skip(self, until: float) -> int:
        """Move the next due time past every one before ``until``; how many it passed."""
        assert self.next is not None
        if self.next >= until:
            return 0
        if self.poisson:
            passed = 0
            while self.next < until:
                self.next += self.gap()
                passed += 1
            return passed
        # The due times strictly before until (the float product is a hair off an exact multiple).
        passed = max(1, math.ceil((until - self.next) * self.rate - 1e-9))
        self.next += passed / self.rate
        return passed

    def take(self, now: float) -> float:
        """The due time of the iteration a user free at ``now`` runs next; drops the ones too late to run."""
        if self.next is None:
            self.next = now
        dropped = self._skip(now - self.max_lag)
        due = self.next
        self.next += self.gap()
        late = due < now
        self.issued += 1
        self.dropped += dropped
        self.late += late
        waiting = self.waiting
        while waiting and waiting[0] <= now:
            waiting.popleft()
        if not late:
            waiting.append(due)
        tally = self.tally  # as _count() would, without its loop: this runs once per iteration
        if tally is not None:
            tally.issued += 1
            tally.dropped += dropped
            tally.late += late
            if not tally.first_due or due < tally.first_due:
                tally.first_due = due
        return due

    def _count(self, **counts: int) -> None:
        """Add to this schedule's counts and to its class's tally."""
        for key, n in counts.items():
            setattr(self, key, getattr(self, key) + n)
            if self.tally is not None:
                setattr(self.tally, key, getattr(self.tally, key) + n)

    def finish(self, now: float) -> None:
        """The test ended at ``now``: the iterations issued for later never ran, and the due times before it that
        no user took are dropped (or unstarted, within ``max_lag`` of the end)."""
        if self.next is None:
            return
        ahead = sum(1 for due in self.waiting if due > now)
        self.waiting.clear()
        dropped = self._skip(now - self.max_lag)
        self._count(cancelled=ahead, dropped=dropped, unstarted=self._skip(now))

    def cancel(self, due: float, now: float) -> None:
        """A user stopped at ``now`` while it waited for ``due``: that iteration will not run."""
        if due > now and due in self.waiting:
            self.waiting.remove(due)
            self._count(cancelled=1)


@dataclass
class ArrivalTally:
    """What the iterations of one user class did, in this process: the numbers the summary and the results
    report (k6's ``iterations`` and ``dropped_iterations``), and what :class:`~locust_c.shapes.ArrivalRateShape`
    sizes the users by."""

    rate: float = 0.0  # iterations per second this process is asked for (the class's share of it)
    issued: int = 0
    late: int = 0
    dropped: int = 0
    unstarted: int = 0
    cancelled: int = 0
    busy_s: float = 0.0  # the seconds users spent running the iterations that ended (from start to the next wait)
    ended: int = 0  # iterations that ended
    first_due: float = 0.0  # the first iteration's due time (UNIX seconds), 0 before it
    end: float = 0.0  # when the test stopped (the schedule's end), 0 while it runs

    def add(self, other: dict[str, float]) -> None:
        """Add another process's tally (a worker's, as :meth:`to_dict` gives it)."""
        for key in ("rate", "issued", "late", "dropped", "unstarted", "cancelled", "busy_s", "ended"):
            setattr(self, key, getattr(self, key) + other.get(key, 0))
        first, end = other.get("first_due", 0.0), other.get("end", 0.0)
        if first and (not self.first_due or first < self.first_due):
            self.first_due = first
        self.end = max(self.end, end)

    def restart(self) -> None:
        """Count again from now (the statistics were reset), the schedule going on."""
        self.issued = self.late = self.dropped = self.unstarted = self.cancelled = self.ended = 0
        self.busy_s = self.first_due = self.end = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"rate": self.rate, "issued": self.issued, "late": self.late, "dropped": self.dropped,
                "unstarted": self.unstarted, "cancelled": self.cancelled, "busy_s": self.busy_s, "ended": self.ended,
                "first_due": self.first_due, "end": self.end}


class _Registry:
    """Every arrival_rate of this process: their schedules and tallies, which a new test starts again."""

    def __init__(self) -> None:
        self.waits: list[Any] = []
        self.tallies: dict[str, ArrivalTally] = {}
        # A worker's share of each class's rate: its users of the class over all of them, as the master tells it
        # (plugin.py); 1 / workers until it has.
        self.workers = 1
        self.shares: dict[str, float] = {}
        self.worker_index = 0

    def share(self, user_class: str) -> float:
        """The share a new schedule of the class starts with. A user of the class is here, so a share of 0 is
        the master's word from before it counted this worker's users: 1 / workers until its next word."""
        return self.shares.get(user_class) or 1.0 / self.workers

    def set_shares(self, shares: dict[str, float]) -> None:
        """The master's word on this worker's share of each class's rate; the schedules follow at once."""
        self.shares.update(shares)
        rates: dict[str, float] = {}
        for wait in self.waits:
            for schedule in wait.schedules.values():
                rate = schedule.rate
                if schedule.base_rate:
                    rate = schedule.base_rate * self.shares.get(schedule.user_class, 1.0 / self.workers)
                    if rate > 0:  # a share of 0: no user of the class is left here to take an iteration
                        schedule.rate = rate
                rates[schedule.user_class] = rates.get(schedule.user_class, 0.0) + rate
        for name, tally in self.tallies.items():
            tally.rate = rates.get(name, 0.0)

    def restart_counts(self) -> None:
        """The statistics were reset: the tallies count again from now, as the endpoints do."""
        for tally in self.tallies.values():
            tally.restart()
        for wait in self.waits:
            for schedule in wait.schedules.values():
                schedule.waiting.clear()  # issued before the reset: not this count's to cancel

    def tally(self, user_class: str) -> ArrivalTally:
        tally = self.tallies.get(user_class)
        if tally is None:
            tally = self.tallies[user_class] = ArrivalTally()
        return tally

    def reset(self, workers: int = 1, worker_index: int = 0) -> None:
        """A new test: fresh schedules (the first iteration due when the first user is free) and tallies."""
        self.workers = max(1, workers)
        self.worker_index = worker_index
        self.shares.clear()
        self.tallies.clear()
        for wait in self.waits:
            wait.schedules.clear()

    def finish(self, now: float) -> None:
        """The test stopped at ``now``: each schedule accounts for the due times no user ran (its finish())."""
        for wait in self.waits:
            for schedule in list(wait.schedules.values()):
                schedule.finish(now)
        for tally in self.tallies.values():
            tally.end = now

    def totals(self) -> dict[str, dict[str, float]]:
        return {name: tally.to_dict() for name, tally in self.tallies.items()}


REGISTRY = _Registry()


def started_and_span(t: dict[str, float]) -> tuple[float, float | None]:
    """Of a tally (:meth:`ArrivalTally.to_dict`): the iterations that ran (a user stopped while it waited ran none),
    and the seconds from the first due time to the end of the test (None before the end)."""
    span = t["end"] - t["first_due"] if t["end"] > t["first_due"] > 0 else None
    return t["issued"] - t.get("cancelled", 0), span


def describe(totals: dict[str, dict[str, float]]) -> list[str]:
    """The summary's lines: per user class, the rate asked for and sent, the iterations started, late, dropped."""
    lines = []
    for user_class, t in sorted(totals.items()):
        started, span = started_and_span(t)
        sent = f" ({started / span:.1f}/s sent)" if span else ""
        lines.append(f"arrival_rate {user_class}: {t['rate']:g}/s asked; {started:.0f} iterations started{sent}, "
                     f"{t['late']:.0f} late, {t['dropped']:.0f} dropped (every user busy)"
                     + (f", {t['unstarted']:.0f} not started by the end" if t.get("unstarted") else ""))
    return lines


def arrival_rate(rate: float, *, per_user: bool = False, poisson: bool = False,
                 max_lag: float = DEFAULT_MAX_LAG, seed: int | None = None) -> Callable[[Any], float]:
    """A ``wait_time`` that runs the user class's iterations at ``rate`` per second, across all its users (or per
    user with ``per_user=True``); ``poisson=True`` for Poisson arrivals; iterations more than ``max_lag`` seconds
    late are dropped and counted (see the module's docstring). ``seed`` makes the Poisson arrivals repeatable.

    In a distributed run each worker runs its share of a class's rate: its users of the class over all of them
    (``per_user`` rates are each user's own). A FastCUser's first iteration waits for its due time too, and every
    request of an iteration records the latency from that time (``*_corrected_ms``)."""
    template = ArrivalSchedule(rate, poisson, max_lag)  # checks the arguments at the call site
    # Per user class, or per user; a new test (REGISTRY.reset) forgets them.
    schedules: dict[Any, ArrivalSchedule] = {}

    def schedule_of(user: Any) -> ArrivalSchedule:
        key = user if per_user else type(user)
        schedule = schedules.get(key)
        if schedule is None:
            name = type(user).__name__
            share = template.rate if per_user else template.rate * REGISTRY.share(name)
            # Each worker draws its own Poisson gaps, repeatable with the seed.
            rng = random.Random(None if seed is None else f"{seed}:{REGISTRY.worker_index}:{len(schedules)}")
            schedule = schedules[key] = ArrivalSchedule(share, template.poisson, template.max_lag, rng)
            schedule.user_class, schedule.base_rate = name, 0.0 if per_user else template.rate
            schedule.tally = REGISTRY.tally(name)
            schedule.tally.rate += share
        return schedule

    def wait_time(self: Any) -> float:
        user = getattr(self, "user", self)  # a TaskSet waits for its user
        now = time.time()
        schedule = schedule_of(user)
        tally = schedule.tally
        started = user.__dict__.get("_locust_c_started")
        if started is not None:
            tally.busy_s += now - started
            tally.ended += 1
        due = schedule.take(now)
        user.locust_c_due = due
        user._locust_c_started = max(due, now)
        client = getattr(user, "client", None)
        if isinstance(client, _engine.Session):
            client._due = due
        return max(0.0, due - now)

    def stopped(user: Any, now: float) -> None:
        """The user stopped at ``now``: the iteration it waited for will not run; a per-user rate leaves."""
        key = user if per_user else type(user)
        schedule = schedules.get(key)
        if schedule is None:
            return
        due = user.__dict__.get("locust_c_due")
        if due is not None:
            schedule.cancel(due, now)
        if per_user:
            schedule.tally.rate -= schedule.rate
            schedule.finish(now)
            del schedules[key]

    wait_time.schedules = schedules  # type: ignore[attr-defined]
    wait_time.stopped = stopped  # type: ignore[attr-defined]
    wait_time.locust_c_arrival = True  # type: ignore[attr-defined]
    REGISTRY.waits.append(wait_time)
    return wait_time
