"""Readiness: poll a URL until the service under test is ready for load."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import BadInput

READY_STATUSES = frozenset({"ready", "ok", "up", "pass", "healthy"})
"""A JSON body's ``status`` (any case) that means ready; any other text (``starting``, ``down`` …) means not yet."""
BODY_PREVIEW = 200


@dataclass
class Answer:
    """What the endpoint last said: an HTTP status and body, or the connection error."""

    status: int | None
    body: str = ""
    error: str = ""

    def __str__(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        body = self.body if len(self.body) <= BODY_PREVIEW else self.body[:BODY_PREVIEW] + "…"
        return f"HTTP {self.status}" + (f": {body.strip()}" if body.strip() else "")


def is_ready(answer: Answer) -> bool:
    """200, and when the body is a JSON object with a textual ``status``, a status that means ready."""
    if answer.status != 200:
        return False
    try:
        body = json.loads(answer.body)
    except ValueError:
        return True
    status = body.get("status") if isinstance(body, dict) else None
    return not isinstance(status, str) or status.strip().lower() in READY_STATUSES


def check_url(url: str) -> None:
    """Raise :class:`BadInput` unless ``url`` is an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"{url!r} is not a URL, expected http://HOST[:PORT]/PATH", "wait-ready")


def probe(url: str, timeout: float) -> Answer:
    """One GET of ``url``."""
    request = urllib.request.Request(url, headers={"Accept": "application/json, */*", "User-Agent": "locust-c"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read(64 * 1024).decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        try:
            body = e.read(64 * 1024).decode("utf-8", "replace")
        except OSError:
            body = ""
        return Answer(e.code, body)
    except urllib.error.URLError as e:
        return Answer(None, error=f"cannot connect: {e.reason}")
    except (OSError, ValueError) as e:
        return Answer(None, error=f"cannot connect: {e}")


def wait_ready(url: str, timeout: float = 180.0, interval: float = 1.0) -> tuple[bool, Answer, float]:
    """Poll ``url`` every ``interval`` seconds until it is ready or ``timeout`` seconds have passed.

    Returns (ready, the last answer, seconds waited).
    """
    check_url(url)
    if timeout <= 0 or interval <= 0:
        raise BadInput("--timeout and --interval must be > 0 seconds", "wait-ready")
    start = time.monotonic()
    deadline = start + timeout
    while True:
        remaining = deadline - time.monotonic()
        answer = probe(url, timeout=max(0.1, min(5.0, remaining)))
        if is_ready(answer):
            return True, answer, time.monotonic() - start
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, answer, time.monotonic() - start
        time.sleep(min(interval, remaining))
