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


def arrival_rate(rate: float, *, per_user: bool = False, poisson: bool = False,
                 max_lag: float = DEFAULT_MAX_LAG, seed: int | None = None) -> Callable[[Any], float]:
    """A ``wait_time`` that runs the user class's iterations at ``rate`` per second, across all its users (or per
    user with ``per_user=True``); ``poisson=True`` for Poisson arrivals; iterations more than ``max_lag`` seconds
    late are dropped and counted (see the module's docstring). ``seed`` makes the Poisson arrivals repeatable."""
    template = ArrivalSchedule(rate, poisson, max_lag)  # checks the arguments at the call site
    # Per user class, or per user (weakly: a stopped user's schedule goes with it).
    schedules: Any = weakref.WeakKeyDictionary() if per_user else {}

    def schedule_of(user: Any) -> ArrivalSchedule:
        key = user if per_user else type(user)
        schedule = schedules.get(key)
        if schedule is None:
            rng = random.Random(None if seed is None else f"{seed}:{len(schedules)}")
            schedule = schedules[key] = ArrivalSchedule(template.rate, template.poisson, template.max_lag, rng)
        return schedule

    def wait_time(self: Any) -> float:
        user = getattr(self, "user", self)  # a TaskSet waits for its user
        now = time.time()
        due = schedule_of(user).take(now)
        user.locust_c_due = due
        return max(0.0, due - now)

    wait_time.schedules = schedules  # type: ignore[attr-defined]
    return wait_time
