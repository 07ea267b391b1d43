"""Shared helpers for the tests: a free loopback port, a port that never accepts, a session wired to an event
recorder."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from locust.event import EventHook

from locust_c import FastCSession


def free_port() -> int:
    """A loopback TCP port nothing listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def unaccepting_port(fill: int = 8) -> Iterator[int]:
    """A loopback port whose accept queue is full, as an overloaded service's is: a connect there times out.

    The listener has a backlog of 0 and is never accepted from; a few non-blocking connects fill its queue,
    after which the kernel drops every new SYN.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(fill):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(c)
        yield port
    finally:
        for c in fillers:
            c.close()
        listener.close()


class Recorder:
    """Collects the keyword arguments of every request event."""

    def __init__(self) -> None:
        self.event = EventHook()
        self.calls: list[dict[str, Any]] = []
        self.event.add_listener(lambda **kw: self.calls.append(kw))

    @property
    def last(self) -> dict[str, Any]:
        return self.calls[-1]

    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["exception"] is not None]


def session(base_url: str, recorder: Recorder | None = None, **options: Any) -> tuple[FastCSession, Recorder]:
    recorder = recorder or Recorder()
    return FastCSession(base_url, recorder.event, None, **options), recorder


def local_user(host: str, **attributes: Any) -> tuple[Any, Any]:
    """A FastCUser (with ``attributes`` on its class) under a Locust LocalRunner, as in a real run, so that its
    requests reach Locust's own tables; not started: the test drives ``user.client``. Returns (user, env)."""
    from locust import constant, task
    from locust.env import Environment

    from locust_c import FastCUser

    cls = type("Probe", (FastCUser,), {"host": host, "wait_time": constant(0), "noop": task(lambda self: None),
                                       **attributes})
    env = Environment(user_classes=[cls])
    env.create_local_runner()
    return cls(env), env
