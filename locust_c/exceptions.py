"""The errors a FastCUser request can record, and how libcurl's outcomes map onto them.

Network faults become the exception classes a Locust user already knows from FastHttpUser
(``ConnectionRefusedError``, ``ConnectionResetError``, ``TimeoutError``, ``socket.gaierror``, ``ssl.SSLError``), each
also an instance of requests' class for the same fault, so that HttpUser code that catches
``requests.exceptions.RequestException`` keeps working. Messages are stable: Locust groups failures by their text,
so a message never carries a timing.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from http import HTTPStatus

# Locust first: importing it patches the standard library for gevent, which must happen before requests loads.
from locust.exception import LocustError  # isort: skip
import requests.exceptions  # isort: skip

from . import _engine


class BadStatusCode(requests.exceptions.HTTPError):
    """The server answered with a status that is not in the session's ``valid_response_codes``.

    It is a ``requests.exceptions.HTTPError`` (and so a ``RequestException``), for HttpUser code that catches
    those. Its text is requests' own, with the request's ``name`` as its URL, and FastHttpUser's ``code=`` ("404
    Client Error: Not Found for url: /items/[id] (code=404)"). Its repr, which Locust groups failures by, leaves the
    URL out, as FastHttpUser's does: calls to one ``name=`` with different query strings make one row of Locust's
    failures table, not one each. ``url`` is the full URL.
    """

    def __init__(self, url: str, code: int, name: str | None = None) -> None:
        super().__init__(url, code)
        self.url = url
        self.code = code
        self.name = name or url

    def __repr__(self) -> str:
        return f"BadStatusCode(code={self.code})"

    def __str__(self) -> str:
        kind = "Client" if self.code < 500 else "Server"
        try:
            reason = HTTPStatus(self.code).phrase
        except ValueError:
            reason = "Unknown"
        return f"{self.code} {kind} Error: {reason} for url: {self.name} (code={self.code})"


class _ShownAsBuiltin:
    """An error that is both the built-in class FastHttpUser records and requests' class HttpUser code catches.

    Its repr names the built-in class, as FastHttpUser's error reads in Locust's failures table (grouped by repr).
    """

    _shown = ""

    def __repr__(self) -> str:
        return self._shown + BaseException.__repr__(self)[len(type(self).__name__):]  # type: ignore[arg-type]


class ConnectionRefused(_ShownAsBuiltin, ConnectionRefusedError, requests.exceptions.ConnectionError):
    """The server refused the connection: a ``ConnectionRefusedError`` and a requests ``ConnectionError``."""

    _shown = "ConnectionRefusedError"


class ConnectionReset(_ShownAsBuiltin, ConnectionResetError, requests.exceptions.ConnectionError):
    """The server reset the connection: a ``ConnectionResetError`` and a requests ``ConnectionError``."""

    _shown = "ConnectionResetError"


class BrokenPipe(_ShownAsBuiltin, BrokenPipeError, requests.exceptions.ConnectionError):
    """The server closed the connection while the request was being sent."""

    _shown = "BrokenPipeError"


class NetworkError(_ShownAsBuiltin, ConnectionError, requests.exceptions.ConnectionError):
    """Another network fault: a built-in ``ConnectionError`` and a requests ``ConnectionError``."""

    _shown = "ConnectionError"


class ConnectTimeout(_ShownAsBuiltin, TimeoutError, requests.exceptions.ConnectTimeout):
    """No connection within ``connection_timeout``: a ``TimeoutError`` and requests' ``ConnectTimeout``."""

    _shown = "TimeoutError"

    @property
    def original(self) -> BaseException:
        """FastHttpUser wraps a timeout in ``RetriesExceeded(original=...)``; this error is that timeout itself."""
        return self


class ReadTimeout(_ShownAsBuiltin, TimeoutError, requests.exceptions.ReadTimeout):
    """The server sent nothing for ``network_timeout`` (or a request's read timeout), or the request went past
    ``request_timeout``: a ``TimeoutError`` (``socket.timeout``) and requests' ``ReadTimeout``."""

    _shown = "TimeoutError"

    @property
    def original(self) -> BaseException:
        """FastHttpUser wraps a timeout in ``RetriesExceeded(original=...)``; this error is that timeout itself."""
        return self


class NameNotResolved(_ShownAsBuiltin, socket.gaierror, requests.exceptions.ConnectionError):
    """The host name did not resolve: a ``socket.gaierror`` and a requests ``ConnectionError``."""

    _shown = "gaierror"


class TLSError(_ShownAsBuiltin, ssl.SSLError, requests.exceptions.SSLError):
    """The TLS handshake failed: an ``ssl.SSLError`` and requests' ``SSLError``."""

    _shown = "SSLError"


class CertificateError(_ShownAsBuiltin, ssl.SSLCertVerificationError, requests.exceptions.SSLError):
    """The server's certificate did not verify: an ``ssl.SSLCertVerificationError`` and requests' ``SSLError``."""

    _shown = "SSLCertVerificationError"


class ConnectionClosed(ConnectionError, requests.exceptions.ConnectionError):
    """The server closed the connection before a complete response arrived."""


class BadResponse(ConnectionError, requests.exceptions.ConnectionError):
    """The server's answer was not valid HTTP."""


class ResponseTooLarge(ConnectionError, requests.exceptions.ConnectionError):
    """The response went past a limit: ``max_response_bytes`` for the body, 300 KB for the header block."""


class TooManyRedirects(requests.exceptions.TooManyRedirects):
    """More redirects than ``max_redirects`` allows (requests' ``TooManyRedirects``)."""


class RequestCancelled(LocustError):
    """The request was cancelled because its user stopped or the engine shut down."""


# libcurl's CURLcode values this module distinguishes (curl/curl.h).
CURLE_UNSUPPORTED_PROTOCOL = 1
CURLE_URL_MALFORMAT = 3
CURLE_COULDNT_RESOLVE_PROXY = 5
CURLE_COULDNT_RESOLVE_HOST = 6
CURLE_COULDNT_CONNECT = 7
CURLE_WEIRD_SERVER_REPLY = 8
CURLE_PARTIAL_FILE = 18
CURLE_OPERATION_TIMEDOUT = 28
CURLE_SSL_CONNECT_ERROR = 35
CURLE_TOO_MANY_REDIRECTS = 47
CURLE_GOT_NOTHING = 52
CURLE_SEND_ERROR = 55
CURLE_RECV_ERROR = 56
CURLE_SSL_CERTPROBLEM = 58
CURLE_SSL_CIPHER = 59
CURLE_PEER_FAILED_VERIFICATION = 60
CURLE_BAD_CONTENT_ENCODING = 61
CURLE_SSL_CACERT_BADFILE = 77
CURLE_SSL_ISSUER_ERROR = 83
CURLE_HTTP2 = 16
CURLE_HTTP2_STREAM = 92
CURLE_OUT_OF_MEMORY = 27
CURLE_BAD_FUNCTION_ARGUMENT = 43

_SSL_CODES = frozenset({CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE,
                        CURLE_SSL_ISSUER_ERROR})


def _os_error(cls: type[OSError], code: int) -> OSError:
    return cls(code, os.strerror(code))


_BY_ERRNO: dict[int, type[OSError]] = {errno.ECONNREFUSED: ConnectionRefused, errno.ECONNRESET: ConnectionReset,
                                       errno.EPIPE: BrokenPipe}


# How libcurl 7.88 words a connect timeout, by the timer that fired first.
_CONNECT_TIMEOUTS = ("Connection timed out", "Connection timeout", "Connection time-out", "Failed to connect")

# How libcurl words a failed socket call: "Recv failure: Connection reset by peer", "Send failure: Broken pipe".
_SOCKET_FAILURES = {"Connection reset by peer": (ConnectionReset, errno.ECONNRESET),
                    "Broken pipe": (BrokenPipe, errno.EPIPE)}


def _engine_error(result: int, message: str) -> BaseException | None:
    """The exception for a fault the engine found itself (libcurl saw nothing wrong), None for libcurl's codes."""
    if result == _engine.CANCELLED:
        return RequestCancelled(message)
    if result == _engine.HEAD_CUT:
        return ConnectionClosed(message)
    if result in (_engine.BODY_TOO_LARGE, _engine.HEAD_TOO_LARGE):
        return ResponseTooLarge(message)
    if result in (_engine.BAD_LENGTH, _engine.BAD_ENCODING):
        return BadResponse(message)
    if result == _engine.NO_MEMORY:
        return MemoryError(message)
    return None


def error_for(result: int, os_errno: int, message: str | None) -> BaseException:
    """The exception recorded for a transfer that ended with libcurl code ``result`` (or one of the engine's).

    ``os_errno`` counts only for a failed connect: a pooled handle keeps the errno of its last failed socket call,
    which may be another request's. Every other class follows libcurl's message for this transfer.
    """
    message = message or f"libcurl error {result}"
    if result < 0:
        return _engine_error(result, message) or NetworkError(message)
    if result == CURLE_COULDNT_CONNECT:
        if os_errno == errno.ETIMEDOUT:
            return ConnectTimeout("connect timed out")
        if os_errno:
            return _os_error(_BY_ERRNO.get(os_errno, NetworkError), os_errno)
        return NetworkError(message)
    if result == CURLE_OPERATION_TIMEDOUT:
        if message.startswith(_CONNECT_TIMEOUTS):
            return ConnectTimeout("connect timed out")
        return ReadTimeout("timed out")
    if result in (CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY):
        return NameNotResolved(socket.EAI_NONAME, "Name or service not known")
    if result in (CURLE_RECV_ERROR, CURLE_SEND_ERROR):
        if message.startswith(("Recv failure", "Send failure")):  # a socket call failed
            for words, (cls, code) in _SOCKET_FAILURES.items():
                if words in message:
                    return _os_error(cls, code)
            return NetworkError("connection failed while " + ("receiving" if result == CURLE_RECV_ERROR
                                                                 else "sending"))
        if message.startswith(("OpenSSL SSL_read", "OpenSSL SSL_write")):  # a TLS alert: a refused certificate...
            return TLSError(message)
        # Anything else is libcurl's parser refusing what arrived: "Illegal or missing hexadecimal sequence in
        # chunked-encoding", "Received HTTP/0.9 when not allowed", "Invalid Content-Length"...
        return BadResponse(f"invalid HTTP response from server: {message}")
    if result == CURLE_GOT_NOTHING:
        return ConnectionClosed("server closed the connection without sending a response")
    if result == CURLE_PARTIAL_FILE:
        return ConnectionClosed("server closed the connection before the whole body arrived")
    if result == CURLE_WEIRD_SERVER_REPLY or (result == CURLE_UNSUPPORTED_PROTOCOL and "HTTP/0.9" in message):
        return BadResponse("invalid HTTP response from server")
    if result == CURLE_BAD_CONTENT_ENCODING:
        return BadResponse(f"cannot decode the response body: {message}")
    if result == CURLE_TOO_MANY_REDIRECTS:
        return TooManyRedirects("too many redirects")
    if result == CURLE_PEER_FAILED_VERIFICATION:
        return CertificateError(message)
    if result in _SSL_CODES:
        return TLSError(message)
    if result in (CURLE_HTTP2, CURLE_HTTP2_STREAM):
        return NetworkError(f"HTTP/2 error: {message}")
    return NetworkError(message)
