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
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _engine

DEFAULT_MAX_LAG = 1.0


@dataclass
class ArrivalSchedule:
    """The due times of one stream of iterations: ``rate`` per second, evenly spaced or Poisson."""

    rate: float
    poisson: bool = False
    max_lag: float = DEFAULT_MAX_LAG
    rng: random.Random = field(default_factory=random.Random)
    next: float | None = None  # the next due time (UNIX seconds), None before the first
    issued: int = 0  # iterations handed to a user
    late: int = 0  # of them, started after their due time (within max_lag)
    dropped: int = 0  # iterations more than max_lag late when a user was free: never run
    tally: Any = None  # the ArrivalTally of its user class

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"arrival_rate: the rate must be > 0 iterations per second, not {self.rate!r}")
        if not self.max_lag >= 0:
            raise ValueError(f"arrival_rate: max_lag must be >= 0 seconds, not {self.max_lag!r}")

    def gap(self) -> float:
        """Seconds from one due time to the next."""
        return self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate

    def take(self, now: float) -> float:
        """The due time of the iteration a user free at ``now`` runs next; drops the ones too late to run."""
        if self.next is None:
            self.next = now
        oldest = now - self.max_lag
        if self.next < oldest:
            if self.poisson:
                while self.next < oldest:
                    self.next += self.gap()
                    self.dropped += 1
            else:
                # The due times strictly before oldest (the float product is a hair off an exact multiple).
                missed = max(1, math.ceil((oldest - self.next) * self.rate - 1e-9))
                self.next += missed / self.rate
                self.dropped += missed
        due = self.next
        self.next += self.gap()
        self.issued += 1
        if due < now:
            self.late += 1
        return due


@dataclass
class ArrivalTally:
    """What the iterations of one user class did, in this process: the numbers the summary and the results
    report (k6's ``iterations`` and ``dropped_iterations``), and what :class:`~locust_c.shapes.ArrivalRateShape`
    sizes the users by."""

    rate: float = 0.0  # iterations per second this process is asked for (the class's share of it)
    issued: int = 0
    late: int = 0
    dropped: int = 0
    busy_s: float = 0.0  # the seconds users spent running the iterations that ended (from start to the next wait)
    ended: int = 0  # iterations that ended

    def add(self, other: dict[str, float]) -> None:
        for key in ("rate", "issued", "late", "dropped", "busy_s", "ended"):
            setattr(self, key, getattr(self, key) + other.get(key, 0))

    def to_dict(self) -> dict[str, float]:
        return {"rate": self.rate, "issued": self.issued, "late": self.late, "dropped": self.dropped,
                "busy_s": self.busy_s, "ended": self.ended}


class _Registry:
    """Every arrival_rate of this process: their schedules and tallies, which a new test starts again."""

    def __init__(self) -> None:
        self.waits: list[Any] = []
        self.tallies: dict[str, ArrivalTally] = {}
        self.workers = 1  # a worker's share of a class's rate is 1 / workers (the master tells it: plugin.py)

    def tally(self, user_class: str) -> ArrivalTally:
        tally = self.tallies.get(user_class)
        if tally is None:
            tally = self.tallies[user_class] = ArrivalTally()
        return tally

    def reset(self, workers: int = 1) -> None:
        """A new test: fresh schedules (the first iteration due when the first user is free) and tallies."""
        self.workers = max(1, workers)
        self.tallies.clear()
        for wait in self.waits:
            wait.schedules.clear()

    def totals(self) -> dict[str, dict[str, float]]:
        return {name: tally.to_dict() for name, tally in self.tallies.items()}


REGISTRY = _Registry()


def arrival_rate(rate: float, *, per_user: bool = False, poisson: bool = False,
                 max_lag: float = DEFAULT_MAX_LAG, seed: int | None = None) -> Callable[[Any], float]:
    """A ``wait_time`` that runs the user class's iterations at ``rate`` per second, across all its users (or per
    user with ``per_user=True``); ``poisson=True`` for Poisson arrivals; iterations more than ``max_lag`` seconds
    late are dropped and counted (see the module's docstring). ``seed`` makes the Poisson arrivals repeatable.

    In a distributed run each worker runs ``rate / workers`` of a class's rate (``per_user`` rates are each
    user's own). A FastCUser's first iteration waits for its due time too, and every request it makes records
    the latency from that time (``*_corrected_ms``)."""
    template = ArrivalSchedule(rate, poisson, max_lag)  # checks the arguments at the call site
    # Per user class, or per user (weakly: a stopped user's schedule goes with it).
    schedules: Any = weakref.WeakKeyDictionary() if per_user else {}

    def schedule_of(user: Any) -> ArrivalSchedule:
        key = user if per_user else type(user)
        schedule = schedules.get(key)
        if schedule is None:
            share = template.rate if per_user else template.rate / REGISTRY.workers
            rng = random.Random(None if seed is None else f"{seed}:{len(schedules)}")
            schedule = schedules[key] = ArrivalSchedule(share, template.poisson, template.max_lag, rng)
            schedule.tally = REGISTRY.tally(type(user).__name__)
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
        before = schedule.issued, schedule.late, schedule.dropped
        due = schedule.take(now)
        tally.issued += schedule.issued - before[0]
        tally.late += schedule.late - before[1]
        tally.dropped += schedule.dropped - before[2]
        user.locust_c_due = due
        user._locust_c_started = max(due, now)
        client = getattr(user, "client", None)
        if isinstance(client, _engine.Session):
            client._due = due
        return max(0.0, due - now)

    wait_time.schedules = schedules  # type: ignore[attr-defined]
    wait_time.locust_c_arrival = True  # type: ignore[attr-defined]
    REGISTRY.waits.append(wait_time)
    return wait_time
