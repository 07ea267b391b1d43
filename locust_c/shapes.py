"""Load shapes for CI: step, stress, spike and soak, each a small :class:`locust.LoadTestShape`.

Locust makes its shape itself, with no arguments, from a non-abstract ``LoadTestShape`` subclass it finds in the
locustfile. The shapes here are abstract (an import alone selects nothing); pick one in either of two ways:

* subclass it, with class-level numbers::

      from locust_c.shapes import StepShape

      class Shape(StepShape):
          step_users = 10
          step_duration = 30

* or let the environment choose: ``LOAD_SHAPE=spike locust -f locustfile.py`` with::

      from locust_c.shapes import shape_from_env

      Shape = shape_from_env()   # None when LOAD_SHAPE is unset: a plain -u/-r run

  Any number can be overridden with ``LOAD_SHAPE_<NUMBER>``, e.g. ``LOAD_SHAPE_SPIKE_FACTOR=5``.

The numbers are also constructor arguments (``SpikeShape(baseline_users=20)``), for code that builds shapes
itself. Durations are in seconds; every shape stops the test when it is over.
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from locust import LoadTestShape

__all__ = ["ParamShape", "StepShape", "StressShape", "SpikeShape", "SoakShape", "ArrivalRateShape", "SHAPES",
           "shape_from_env"]

Tick = tuple[int, float] | None


class ParamShape(LoadTestShape):
    """A shape whose numbers (listed in :attr:`params`) are class attributes, overridable as constructor keywords."""

    abstract = True
    params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **numbers: float) -> None:
        super().__init__()
        unknown = sorted(set(numbers) - set(self.params))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no number {', '.join(unknown)} (expected: {', '.join(self.params)})"
            )
        for name, value in numbers.items():
            setattr(self, name, value)
        for name in self.params:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ValueError(f"{type(self).__name__}.{name} is {value!r}, expected a number >= 0")

    @property
    def total_duration(self) -> float:
        """Seconds from start to the end of the shape."""
        raise NotImplementedError

    def numbers(self) -> dict[str, Any]:
        """The shape's numbers, by name."""
        return {name: getattr(self, name) for name in self.params}

    def tick(self) -> Tick:
        """Users and spawn rate for now, or ``None`` once the shape is over."""
        run_time = self.get_run_time()
        if run_time >= self.total_duration:
            return None
        return self.at(run_time)

    def at(self, run_time: float) -> tuple[int, float]:
        """Users and spawn rate ``run_time`` seconds into the shape."""
        raise NotImplementedError


class StepShape(ParamShape):
    """Add ``step_users`` users every ``step_duration`` seconds, ``steps`` times, then stop."""

    abstract = True
    params = ("step_users", "step_duration", "steps", "spawn_rate")
    step_users: int = 10
    step_duration: float = 30
    steps: int = 5
    spawn_rate: float = 10

    @property
    def total_duration(self) -> float:
        return self.steps * self.step_duration

    def at(self, run_time: float) -> tuple[int, float]:
        step = min(int(run_time // self.step_duration), self.steps - 1) if self.step_duration > 0 else 0
        return int((step + 1) * self.step_users), float(self.spawn_rate)


class StressShape(ParamShape):
    """Ramp linearly to ``peak_users`` (above the expected load) over ``ramp_up``, hold for ``hold``, ramp down over
    ``ramp_down`` to see whether the service recovers, then stop."""

    abstract = True
    params = ("peak_users", "ramp_up", "hold", "ramp_down", "spawn_rate")
    peak_users: int = 100
    ramp_up: float = 60
    hold: float = 120
    ramp_down: float = 30
    spawn_rate: float | None = None  # default: fast enough to follow the ramp

    @property
    def total_duration(self) -> float:
        return self.ramp_up + self.hold + self.ramp_down

    def at(self, run_time: float) -> tuple[int, float]:
        ramps = [r for r in (self.ramp_up, self.ramp_down) if r > 0]
        rate = self.spawn_rate or (max(1.0, self.peak_users / min(ramps)) if ramps else float(self.peak_users))
        if run_time < self.ramp_up:
            users = self.peak_users * run_time / self.ramp_up
        elif run_time < self.ramp_up + self.hold:
            users = self.peak_users
        else:
            users = self.peak_users * (self.total_duration - run_time) / self.ramp_down if self.ramp_down else 0
        return max(1, round(users)), float(rate)


class SpikeShape(ParamShape):
    """``baseline_users`` for ``baseline_duration``, a sudden ``spike_factor``× spike for ``spike_duration``, then back
    to the baseline for ``recovery_duration`` (does the service recover?), then stop."""

    abstract = True
    params = (
        "baseline_users",
        "spike_factor",
        "baseline_duration",
        "spike_duration",
        "recovery_duration",
        "spawn_rate",
    )
    baseline_users: int = 10
    spike_factor: float = 10
    baseline_duration: float = 60
    spike_duration: float = 30
    recovery_duration: float = 60
    spawn_rate: float | None = None  # default: the whole spike within a second

    @property
    def spike_users(self) -> int:
        """Users at the top of the spike."""
        return max(1, round(self.baseline_users * self.spike_factor))

    @property
    def total_duration(self) -> float:
        return self.baseline_duration + self.spike_duration + self.recovery_duration

    def at(self, run_time: float) -> tuple[int, float]:
        rate = float(self.spawn_rate or self.spike_users)
        in_spike = self.baseline_duration <= run_time < self.baseline_duration + self.spike_duration
        return (self.spike_users if in_spike else int(self.baseline_users)), rate


class SoakShape(ParamShape):
    """Ramp to ``users`` over ``ramp_up`` and hold them for ``duration`` (a long, steady run for leaks), then stop."""

    abstract = True
    params = ("users", "ramp_up", "duration", "spawn_rate")
    users: int = 50
    ramp_up: float = 60
    duration: float = 3600
    spawn_rate: float | None = None  # default: users / ramp_up

    @property
    def total_duration(self) -> float:
        return self.ramp_up + self.duration

    def at(self, run_time: float) -> tuple[int, float]:
        rate = self.spawn_rate or max(1.0, self.users / self.ramp_up if self.ramp_up else float(self.users))
        return int(self.users), float(rate)


class ArrivalRateShape(ParamShape):
    """Enough users for an open model (``wait_time = arrival_rate(rate)``), at most ``max_users``, for ``duration``
    seconds (0: until stopped), as k6 pre-allocates and adds virtual users.

    It starts ``start_users`` (default: one per 10 iterations a second), then sizes the users by Little's law:
    the iterations a second times how long one takes (measured over the last second, or the run so far), with
    ``headroom``. Users are never taken away mid-run (a stopped user may be in an iteration). When the iterations
    need more than ``max_users``, the end of the run says so, with the dropped iterations.
    """

    abstract = True
    params = ("rate", "max_users", "duration", "start_users", "headroom")
    rate: float = 10.0
    max_users: int = 100
    duration: float = 0
    start_users: int | None = None
    headroom: float = 1.5

    def __init__(self, rate: float | None = None, max_users: int | None = None, **numbers: float) -> None:
        if rate is not None:
            numbers["rate"] = rate
        if max_users is not None:
            numbers["max_users"] = max_users
        super().__init__(**numbers)
        if not self.rate > 0 or not self.max_users >= 1:
            raise ValueError(f"ArrivalRateShape needs rate > 0 and max_users >= 1, not {self.rate!r}, "
                             f"{self.max_users!r}")
        self.users = int(self.start_users or min(self.max_users, max(1, math.ceil(self.rate / 10))))
        self.needed = 0  # the most users the iterations needed so far
        self._last: tuple[float, int] = (0.0, 0)
        self._reporting = False

    @property
    def total_duration(self) -> float:
        return self.duration if self.duration > 0 else math.inf

    def _iteration_s(self) -> float | None:
        """How long one iteration takes: over the last tick when enough ended, else over the run so far."""
        environment = getattr(getattr(self, "runner", None), "environment", None)
        totals = getattr(environment, "locust_c_arrival", None)
        if totals is None:
            return None
        busy = sum(t["busy_s"] for t in totals().values())
        ended = int(sum(t["ended"] for t in totals().values()))
        last_busy, last_ended = self._last
        self._last = (busy, ended)
        if ended - last_ended >= 5:
            return (busy - last_busy) / (ended - last_ended)
        return busy / ended if ended else None

    def at(self, run_time: float) -> tuple[int, float]:
        if not self._reporting and getattr(self, "runner", None) is not None:
            self._reporting = True
            self.runner.environment.events.quitting.add_listener(lambda **_kw: self._report())
        iteration_s = self._iteration_s()
        if iteration_s is not None:
            self.needed = max(self.needed, math.ceil(self.rate * iteration_s * self.headroom))
            self.users = min(int(self.max_users), max(self.users, self.needed))
        return self.users, float(min(max(self.users, 1), 100))

    def _report(self) -> None:
        if self.needed <= self.max_users:
            return
        totals = self.runner.environment.locust_c_arrival()  # type: ignore[attr-defined]
        dropped = sum(t["dropped"] for t in totals.values())
        print(f"locust-c: ArrivalRateShape: max_users={self.max_users} was too few: {self.rate:g} iterations/s "
              f"needed about {self.needed} users; {dropped:.0f} iterations were dropped", flush=True)


SHAPES: dict[str, type[ParamShape]] = {
    "step": StepShape,
    "stress": StressShape,
    "spike": SpikeShape,
    "soak": SoakShape,
    "arrival": ArrivalRateShape,
}
"""The shapes ``LOAD_SHAPE`` can name."""


def _parse(text: str, name: str, whole: bool) -> float:
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not {'a whole number' if whole else 'a number'}") from None
    if value < 0:
        raise ValueError(f"{name}={text!r} must be >= 0")
    return value


def shape_from_env(
    env: Mapping[str, str] | None = None, variable: str = "LOAD_SHAPE", **defaults: Mapping[str, float]
) -> type[ParamShape] | None:
    """The shape class ``$LOAD_SHAPE`` names (step, stress, spike, soak), or ``None`` when it is unset or empty.

    Its numbers come from the class, then from ``defaults[name]`` (a locustfile's own, e.g.
    ``shape_from_env(spike={"baseline_users": 20})``), then from ``LOAD_SHAPE_<NUMBER>`` variables. Assign the
    result to a module-level name of the locustfile so that Locust finds it. An unknown name or a bad number raises
    ``ValueError``.
    """
    env = os.environ if env is None else env
    name = env.get(variable, "").strip().lower()
    unknown = sorted(set(defaults) - set(SHAPES))
    if unknown:
        raise ValueError(f"shape_from_env: no shape named {', '.join(unknown)} (expected: {', '.join(SHAPES)})")
    if not name:
        return None
    if name not in SHAPES:
        raise ValueError(f"{variable}={env[variable]!r} is not a load shape (expected one of: {', '.join(SHAPES)})")
    base = SHAPES[name]
    numbers: dict[str, Any] = dict(defaults.get(name, {}))
    bad = sorted(set(numbers) - set(base.params))
    if bad:
        raise ValueError(f"shape_from_env: {base.__name__} has no number {', '.join(bad)}")
    hints = typing.get_type_hints(base)
    for param in base.params:
        key = f"{variable}_{param.upper()}"
        if env.get(key, "").strip():
            # A number declared int (users) must be whole; one declared float (seconds, rates) need not be.
            whole = int in (typing.get_args(hints[param]) or (hints[param],))
            numbers[param] = _parse(env[key].strip(), key, whole)
    shape = type(base)(base.__name__, (base,), {"abstract": False, "__module__": base.__module__, **numbers})
    shape()  # validate the numbers now rather than when Locust makes the shape
    return shape
