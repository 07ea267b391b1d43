"""Starting, watching and always stopping the load generators of the benchmark.

Every generator (a ``locust`` or ``wrk`` process) runs in its own session, so that stopping it kills its whole
process group, whatever it left behind. Its output goes to files, never to pipes, so that nothing blocks.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psutil

STATUS_FIELD = re.compile(r"^(Vm\w+):\s+(\d+) kB$", re.MULTILINE)


class GeneratorError(RuntimeError):
    """A generator did not do what the benchmark expected (exited early, never got ready, ...)."""


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """``cmd`` prefixed with ``taskset -c CPU`` (unchanged when ``cpu`` is None or taskset is missing)."""
    taskset = shutil.which("taskset")
    if cpu is None or taskset is None:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of a running process and of the children it has reaped."""
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def cpu_busy_seconds(cpu: int | None) -> float:
    """Seconds the given CPU (all CPUs when None) spent doing anything but idling since boot, steal included."""
    times = psutil.cpu_times(percpu=True)[cpu] if cpu is not None else psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "guest", 0.0) \
        - getattr(times, "guest_nice", 0.0)


def memory_status_kib(pid: int) -> dict[str, int]:
    """The ``Vm*`` fields of ``/proc/PID/status`` in KiB (VmRSS, VmHWM, ...)."""
    text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    return {name: int(value) for name, value in STATUS_FIELD.findall(text)}


def sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline`` (at once when it has passed)."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


class Generator:
    """One generator process, as a context manager that always stops it and its process group.

    The whole-run CPU time is measured as the growth of ``RUSAGE_CHILDREN`` across the run: the benchmark runs
    one generator at a time and reaps nothing else meanwhile (the test server is reaped only at the very end).
    """

    def __init__(self, cmd: list[str], env: dict[str, str], log_dir: Path, label: str) -> None:
        self.cmd = cmd
        self.label = label
        self.stdout_path = log_dir / f"{label}.out"
        self.stderr_path = log_dir / f"{label}.err"
        self._cpu_before = children_cpu_seconds()
        self.total_cpu: float | None = None
        """The generator's user + system CPU seconds over its whole life, once it has been reaped."""
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # cwd: ``python -m`` puts the working directory first on sys.path; the log directory holds nothing
            # importable but the benchmark's own copy of locust_c.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                         cwd=log_dir, start_new_session=True)
        self.started = time.monotonic()
        self.process = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        """The generator's process id (``taskset`` executes the command in place: it is the generator's)."""
        return self.proc.pid

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the running process."""
        return process_cpu_seconds(self.process)

    def stdout(self) -> str:
        """Everything the process printed on stdout so far."""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, lines: int = 15) -> str:
        """The last lines of the process's stderr, for error messages."""
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_output(self, text: str, timeout: float) -> float:
        """Wait until ``text`` appears in stderr; returns the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr_path.read_text(encoding="utf-8", errors="replace"):
                return time.monotonic()
            if not self.running():
                raise GeneratorError(f"{self.label} exited with code {self.proc.returncode} before printing "
                                     f"{text!r}:\n{self.stderr_tail()}")
            time.sleep(0.05)
        raise GeneratorError(f"{self.label} did not print {text!r} within {timeout:.0f} s:\n{self.stderr_tail()}")

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; returns its exit code, kills it after ``timeout`` seconds."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GeneratorError(f"{self.label} still running {timeout:.0f} s after its end; killed") from None
        self._reaped()
        return code

    def terminate(self, timeout: float) -> int:
        """SIGTERM (Locust then shuts down cleanly), SIGKILL to the group if it has not exited in ``timeout``."""
        self._signal_group(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GeneratorError(f"{self.label} still running {timeout:.0f} s after SIGTERM; killed") from None
        self._reaped()
        return code

    def kill(self) -> None:
        """SIGKILL the process group and reap the process."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self._reaped()

    def _reaped(self) -> None:
        if self.total_cpu is None:
            self.total_cpu = children_cpu_seconds() - self._cpu_before
        # Anything the generator left in its group goes too.
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.running():
            self.kill()
        else:
            self._reaped()
