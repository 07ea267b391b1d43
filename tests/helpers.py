"""Shared helpers for the tests: a free loopback port, and a session wired to an event recorder."""

from __future__ import annotations

import socket
from typing import Any

from locust.event import EventHook

from locust_c import FastCSession


def free_port() -> int:
    """A loopback TCP port nothing listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
