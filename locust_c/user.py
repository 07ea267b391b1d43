"""FastCUser: a drop-in for Locust's FastHttpUser whose HTTP runs in the C engine."""

from __future__ import annotations

import time
from typing import Any

from locust.exception import StopTest, StopUser
from locust.user import User
from locust.user.users import RestMixin

from . import plugin  # noqa: F401  (locust-c options and listeners, wherever FastCUser is used)
from .session import DEFAULT_MAX_RESPONSE_BYTES, FastCSession


class FastCUser(User, RestMixin):
    """A Locust user with a :class:`FastCSession` as ``self.client``.

    The class attributes are FastHttpUser's, with the same defaults; set them in a subclass. Each user owns
    its keep-alive connections and cookie jar, which are closed when the user stops.
    """

    network_timeout: float = 60.0
    """Seconds the server may keep a request waiting for its next bytes (for the answer to begin, and between two
    reads of it) before it fails with a timeout, as FastHttpUser's socket timeout; a slow but steady body is not
    cut short."""

    connection_timeout: float = 60.0
    """Seconds to establish a connection (TLS handshake included)."""

    request_timeout: float | None = None
    """Seconds a whole request may take, redirects and body included; None (FastHttpUser's way): no limit."""

    client_cert: str | tuple[str, str] | None = None
    """A client certificate for mutual TLS: a PEM file with the certificate and its key, or a (cert, key) pair."""

    max_redirects: int = 30
    """Redirects followed at most; more fail the request."""

    max_retries: int = 0
    """Times a request is sent again when no answer came: only when its connection never opened, and for
    idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) also when it was sent and nothing came back."""

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """A body larger than this (after decompression) fails the request and closes its connection; 0: no limit."""

    insecure: bool = True
    """Default True: TLS certificates are not verified. Set False to verify them."""

    default_headers: dict | None = None
    """Headers added to every request."""

    concurrency: int = 10
    """Requests (and so connections) in flight at once for this user; more wait their turn."""

    proxy_host: str | None = None
    """HTTP proxy host."""

    proxy_port: int | None = None
    """HTTP proxy port."""

    http2: bool = False
    """Use HTTP/2 with multiplexing: ALPN over https, prior knowledge over http."""

    client_pool: Any = None
    """Connections shared with the users of other classes that name the same pool (a :class:`ClientPool` or
    geventhttpclient's ``HTTPClientPool``), as FastHttpUser shares them; each user keeps its own cookies."""

    ssl_context_factory: Any = None
    """A function returning an ``ssl.SSLContext``, as FastHttpUser takes it: its certificate and host name checks,
    client certificate, trusted CAs, TLS versions and ciphers apply to this user's connections (``insecure`` then
    counts no more)."""

    abstract = True

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        if self.host is None:
            raise StopTest(
                "You must specify the base host. Either in the host attribute in the User class, or on the "
                "command line using the --host option."
            )
        session_class = FastCSession
        if getattr(self.environment.parsed_options, "otel_propagate", False):
            from .otel import TracingSession

            session_class = TracingSession
        self.client: FastCSession = session_class(
            base_url=self.host,
            request_event=self.environment.events.request,
            user=self,
            network_timeout=self.network_timeout,
            connection_timeout=self.connection_timeout,
            max_redirects=self.max_redirects,
            max_retries=self.max_retries,
            insecure=self.insecure,
            concurrency=self.concurrency,
            headers=self.default_headers,
            proxy_host=self.proxy_host,
            proxy_port=self.proxy_port,
            http2=self.http2,
            max_response_bytes=self.max_response_bytes,
            request_timeout=self.request_timeout,
            client_cert=self.client_cert,
            client_pool=self.client_pool,
            ssl_context_factory=self.ssl_context_factory,
        )
        # A user about to wait at least LOCUST_C_IDLE_SECONDS is set aside as its wait begins, rather than once
        # the wait has lasted that long: thousands of users that wait long cost little memory from the start.
        # Users of the native transport hold nothing to set aside (the sweep still sees to any libcurl state).
        wait_time = self.wait_time
        if wait_time is not None and not self.client.native_host:
            client = self.client

            def wait_time_then_set_aside() -> float:
                seconds = wait_time()
                if seconds >= 1.0:
                    client._idle_for(seconds)
                return seconds

            self.wait_time = wait_time_then_set_aside

    def _wait_on_the_schedule(self, arrival: Any) -> None:
        """An open model's user (``wait_time = arrival_rate(...)``): Locust runs a user's first task before any
        wait, but the first iteration is due on the schedule like every other one, so it waits after on_start (a
        user's setup is not an iteration). on_stop's requests belong to no iteration: the due time is cleared for
        them, and the iteration the user was waiting for when it stopped is cancelled."""
        on_start, on_stop = self.on_start, self.on_stop

        def on_start_then_wait() -> None:
            on_start()
            try:
                self.wait()
            except StopUser:
                pass  # stopped during its setup: the task loop ends it as Locust would, without an error

        def on_stop_outside_iterations() -> None:
            self.client._due = 0.0
            arrival.stopped(self, time.time())
            on_stop()

        self.on_start = on_start_then_wait  # type: ignore[method-assign]
        self.on_stop = on_stop_outside_iterations  # type: ignore[method-assign]

    def run(self) -> None:
        arrival = type(self).wait_time
        if getattr(arrival, "locust_c_arrival", False):
            self._wait_on_the_schedule(arrival)
        # on_stop runs inside User.run and may still make requests: close the connections after it.
        try:
            super().run()
        finally:
            self.client.close()
