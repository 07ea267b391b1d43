"""The Python side of the C engine: starting it lazily in each process and resuming waiting greenlets.

Each engine is a native thread (not Python's ``threading``, which Locust monkey-patches) running a libuv loop
that drives libcurl. Finished requests come back through an eventfd that the gevent hub watches; the
watcher's callback is the engine's own ``dispatch``, which resumes each waiting greenlet with its result.

``LOCUST_C_THREADS=N`` runs N engines in one process; users are spread over them round-robin.
``LOCUST_C_IDLE_SECONDS=S`` (default 5) sets a user aside once its last request is S seconds old: its
keep-alive connections stay open, but libcurl's per-user state is freed until its next request (0: never).
"""

from __future__ import annotations

import atexit
import itertools
import os
from collections.abc import Callable, Iterable

import gevent

from . import _engine


class EngineHandle:
    """One running engine and the hub watcher that delivers its results."""

    __slots__ = ("engine", "idle_seconds", "pid", "valid", "watcher", "__weakref__")

    def __init__(self, idle_seconds: float) -> None:
        self.engine = _engine.Engine(idle_seconds=idle_seconds)
        self.idle_seconds = idle_seconds
        self.pid = os.getpid()
        self.valid = True  # False once stopped, and in a forked child: sessions then connect to a new engine
        self.watcher = gevent.get_hub().loop.io(self.engine.fileno(), 1)
        # The watcher holds the hub's loop alive only while requests are in flight (``pending``, counted up by
        # FastCSession.request and down here), so that a script that waits for "everything" still ends once the
        # last response is in.
        self.watcher.ref = False
        self.watcher.start(self._ready)

    @property
    def pending(self) -> int:
        """Deliveries due; kept in the engine object, where the C request path counts its requests too."""
        return self.engine.pending

    @pending.setter
    def pending(self, value: int) -> None:
        self.engine.pending = value

    def expect(self) -> None:
        """One more delivery is due (a request's answer, a stream's wake-up): the hub waits for it."""
        engine = self.engine
        if not engine.pending:
            self.watcher.ref = True
        engine.pending += 1

    def _ready(self) -> None:
        if self.pid != os.getpid():  # a forked child inherited the watcher: the engine is not ours
            self.watcher.stop()
            return
        # dispatch() runs user greenlets, which submit more: read pending only after it returns.
        engine = self.engine
        delivered = engine.dispatch()
        engine.pending -= delivered
        if engine.pending <= 0:
            engine.pending = 0
            self.watcher.ref = False

    def stop(self) -> None:
        self.valid = False
        if self.pid != os.getpid():
            return
        self.watcher.stop()
        loop = gevent.get_hub().loop
        for token, result in self.engine.stop():  # cancelled in flight: resume the waiters from the hub
            loop.run_callback(token.switch, result)


_handles: list[EngineHandle] = []
_round_robin = itertools.count()


def _env_number(name: str, default: str, parse: Callable[[str], float], low: float, high: float,
                what: str) -> float:
    """The number in the environment variable ``name`` (``default`` when unset); ValueError naming it if bad."""
    raw = os.environ.get(name, default)
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValueError(f"{name} must be {what}, not {raw!r}")
    return value


def thread_count() -> int:
    """How many engine threads this process runs (``LOCUST_C_THREADS``, default 1)."""
    return int(_env_number("LOCUST_C_THREADS", "1", int, 1, 64, "a whole number from 1 to 64"))


def idle_seconds() -> float:
    """After how long without a request a user is set aside (``LOCUST_C_IDLE_SECONDS``, default 5; 0: never)."""
    return _env_number("LOCUST_C_IDLE_SECONDS", "5", float, 0, 86400, "a number of seconds from 0 to 86400")


TRANSPORTS = ("auto", "curl")


def native_transport() -> bool:
    """Whether plain http:// requests may take the native transport: ``LOCUST_C_TRANSPORT`` is ``auto`` (the
    default: http:// natively, the rest through libcurl) or ``curl`` (libcurl for everything)."""
    raw = os.environ.get("LOCUST_C_TRANSPORT", "auto")
    transport = raw.strip().lower()
    if transport not in TRANSPORTS:
        raise ValueError(f"LOCUST_C_TRANSPORT must be one of {', '.join(TRANSPORTS)}, not {raw!r}")
    return transport == "auto"


def acquire() -> EngineHandle:
    """The engine for the next new user, starting the engines of this process on first use."""
    if not _handles:
        threads, idle = thread_count(), idle_seconds()
        _handles.extend(EngineHandle(idle) for _ in range(threads))
    return _handles[next(_round_robin) % len(_handles)]


def handles() -> list[EngineHandle]:
    """The engines running in this process (none before the first request)."""
    return list(_handles)


COUNTERS = ("submitted", "completed", "in_flight", "clients", "set_aside", "native_open")
"""The engine counters that live metrics show."""


def counters() -> dict[str, int]:
    """The :data:`COUNTERS` of this process's running engines, added up (empty before the first request)."""
    return sum_counters({key: value for key, value in handle.engine.counters().items() if key in COUNTERS}
                        for handle in _handles if handle.valid and handle.pid == os.getpid() and handle.engine.running)


def sum_counters(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Counters of several engines (or of the workers' engines) added up."""
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total


def shutdown() -> None:
    """Stop every engine of this process; requests in flight are cancelled. Safe to call more than once."""
    while _handles:
        _handles.pop().stop()


def _forget_after_fork() -> None:
    # The child has no engine threads: the parent's engines are left untouched and new ones start on demand.
    for handle in _handles:
        handle.valid = False
    _handles.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(shutdown)
