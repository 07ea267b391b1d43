"""The lab's processes: the shop, its readiness, a distributed Locust run against it, and the leak hunter beside it.

Each helper starts what it needs and stops it before it returns (or when its ``with`` block ends), so a lab run
leaves no process behind, whatever its outcome.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..gate import BadInput
from ..gate import leak as leak_mod
from ..gate import ready as ready_mod
from ..gate.sla import SlaSpec, load_sla

SHOP_START_TIMEOUT = 15.0  # seconds for the shop to print its address
LOCUST_GRACE = 60.0  # seconds a Locust run may take beyond its duration before it counts as hung


class LabError(Exception):
    """A lab run that could not be carried out (the shop did not start, Locust failed): no verdict, exit code 2."""


@dataclass
class Lab:
    """Where the lab's files are and how its runs are made: the options of ``locust-c lab``."""

    shop_dir: Path  # holds service.py (the shop) and locustfile.py (its workload)
    sla_file: Path
    out: Path  # results files are written here
    workers: int = 2  # Locust --processes; 0 runs users in the master's process
    ready_timeout: float = 30.0
    shop_args: list[str] = field(default_factory=list)  # misbehaviour switches for every shop the lab starts

    @property
    def service(self) -> Path:
        """The shop's program."""
        return self.shop_dir / "service.py"

    @property
    def locustfile(self) -> Path:
        """The shop's workload."""
        return self.shop_dir / "locustfile.py"

    @cached_property
    def sla(self) -> SlaSpec:
        """The SLA budgets, read once."""
        return load_sla(str(self.sla_file))

    def check(self) -> None:
        """Raise :class:`BadInput` when a file the lab needs is not there, or the SLA file is malformed: before
        any process starts."""
        for path, what in ((self.service, "the shop"), (self.locustfile, "its locustfile"),
                           (self.sla_file, "its SLA file")):
            if not path.is_file():
                raise BadInput(f"no such file ({what}); run from a locust-c checkout or give --shop DIR", str(path))
        if self.workers < 0:
            raise BadInput(f"{self.workers} workers, expected 0 or more", "--workers")
        _ = self.sla  # read now: a malformed file stops the lab before any process starts


@dataclass
class Shop:
    """A running shop."""

    url: str
    pid: int


@contextmanager
def shop_process(service: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start the shop program ``service`` on a free loopback port with ``args``; yields its URL and process, and
    stops it afterwards."""
    cmd = [sys.executable, str(service), "--host", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)  # its errors go to our stderr
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], SHOP_START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            raise LabError(f"the shop did not start: {' '.join(cmd[1:])}")
        yield match.group(0), proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class NotReady(Exception):
    """The shop did not become ready: the readiness gate failed and no load was sent."""


@contextmanager
def shop(lab: Lab, *switches: str) -> Iterator[Shop]:
    """Start the lab's shop with the lab's and these switches and wait until it is ready (:class:`NotReady` when
    it is not within the lab's readiness timeout); stop it afterwards."""
    with shop_process(lab.service, *lab.shop_args, *switches) as (url, proc):
        ready_url = url + "/health/ready"
        ready, answer, waited = ready_mod.wait_ready(ready_url, lab.ready_timeout, interval=0.25)
        if not ready:
            raise NotReady(f"{ready_url} is not ready after {lab.ready_timeout:g} s; last answer: {answer}")
        print(f"lab: {ready_url} is ready after {waited:.1f} s", flush=True)
        yield Shop(url, proc.pid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocustRun:
    """One Locust run's description: the users (or a shape from :mod:`locust_c.shapes`) and for how long."""

    label: str  # names its results file, LABEL.json
    users: int
    duration: float  # seconds
    shape: str | None = None  # LOAD_SHAPE
    shape_numbers: dict[str, float] = field(default_factory=dict)  # LOAD_SHAPE_<NUMBER>
    windows: float | None = None  # --results-every, seconds


def run_locust(lab: Lab, target: Shop, run: LocustRun) -> Path:
    """Run Locust headless against the shop; returns its results file. Locust's own exit code for failed
    requests is turned off (``--exit-code-on-error 0``): the lab's gates judge the run."""
    results = lab.out / f"{run.label}.json"
    results.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "locust", "-f", str(lab.locustfile), "--headless", "--only-summary",
           "-H", target.url, "--results-json", str(results), "--exit-code-on-error", "0", "--stop-timeout", "5",
           "--loglevel", "WARNING"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOAD_SHAPE")}
    if run.shape:
        env["LOAD_SHAPE"] = run.shape
        env.update({f"LOAD_SHAPE_{name.upper()}": f"{value:g}" for name, value in run.shape_numbers.items()})
    else:
        cmd += ["-u", str(run.users), "-r", str(run.users), "-t", f"{run.duration:g}s"]
    if run.windows:
        cmd += ["--results-every", f"{run.windows:g}s"]
    if lab.workers:
        port = _free_port()  # two labs side by side must not meet on Locust's default port
        cmd += ["--processes", str(lab.workers), "--master-bind-port", str(port), "--master-port", str(port)]
    where = f"{lab.workers} workers" if lab.workers else "one process"
    users = f"LOAD_SHAPE={run.shape}" if run.shape else f"{run.users} users"
    print(f"lab: {run.label}: {users} for {run.duration:g} s, {where}, against {target.url}", flush=True)
    try:
        code = subprocess.run(cmd, env=env, timeout=run.duration + LOCUST_GRACE).returncode
    except subprocess.TimeoutExpired:
        raise LabError(f"{run.label}: Locust did not end within {run.duration + LOCUST_GRACE:g} s") from None
    if code != 0 or not results.is_file():
        raise LabError(f"{run.label}: Locust exited with code {code}" + ("" if results.is_file() else
                                                                          ", without writing its results"))
    return results


class LeakWatch:
    """The leak hunter on a process, sampling in a thread while a run goes on."""

    def __init__(self, pid: int, interval: float) -> None:
        self.source = leak_mod.PidMemory(pid)
        self.interval = interval
        self.samples: list[leak_mod.Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="lab-leak-watch", daemon=True)

    def _sample(self) -> None:
        self.samples = leak_mod.sample_memory(self.source, self.interval, should_stop=self._stop.is_set)

    def __enter__(self) -> LeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def verdict(self, budget: leak_mod.LeakBudget | None = None) -> leak_mod.LeakFit:
        """The fit over the samples taken (raises :class:`BadInput` when there are too few)."""
        return leak_mod.fit_leak(self.samples, budget)


def leak_interval(duration: float) -> float:
    """About 30 samples over a run, no more often than 5 a second and no less often than one."""
    return min(1.0, max(0.2, duration / 30))
