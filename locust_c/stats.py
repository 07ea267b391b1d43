"""How FastCUser requests reach Locust's statistics.

Every request is reported through ``events.request`` with Locust's standard keyword arguments, so Locust's own
stats, the web UI, CSV/HTML/JSON reports, worker reports and any user listener see exact figures. The response
time is the one the engine measured in C.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from locust.user import User

if TYPE_CHECKING:
    from locust.event import EventHook


class RequestReporter:
    """Builds the request event's arguments for one user's session and fires it."""

    __slots__ = ("event", "user", "_plain_context")

    def __init__(self, request_event: EventHook, user: User | None) -> None:
        self.event = request_event
        self.user = user
        # User.context() returns a fresh empty dict unless a user class overrides it: skip the call then.
        self._plain_context = user is None or type(user).context is User.context

    def _context(self, context: dict | None) -> dict:
        if self._plain_context:
            return dict(context) if context else {}
        return {**self.user.context(), **(context or {})}  # type: ignore[union-attr]

    def meta(self, method: str, name: str, result: Any, response: Any, error: BaseException | None,
             start_time: float, url: str, context: dict | None) -> dict[str, Any]:
        """The request event's keyword arguments."""
        return {
            "request_type": method,
            "name": name,
            "response_time": result.response_time,
            "response_length": response._content_length,
            "response": response,
            "exception": error,
            "context": self._context(context),
            "start_time": start_time,
            "url": url,
        }

    def report(self, method: str, name: str, result: Any, response: Any, error: BaseException | None,
               start_time: float, url: str, context: dict | None) -> None:
        """Report a finished request now."""
        self.event.fire(**self.meta(method, name, result, response, error, start_time, url, context))

    def report_meta(self, meta: dict[str, Any]) -> None:
        """Report a request whose outcome a ``catch_response`` block decided."""
        self.event.fire(**meta)
