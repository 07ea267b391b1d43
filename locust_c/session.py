"""FastCSession: FastHttpSession's API over the C engine, and the responses it returns.

Per request, Python builds the header lines, hands the request to the engine, waits on a gevent ``Waiter``
(the greenlet yields to the hub; thousands of users wait at once) and wraps the result. The body stays in C
memory until ``content``, ``text`` or ``json()`` asks for it; the response time is the one libcurl measured
in the engine thread, from the start of the transfer to its last byte.
"""

from __future__ import annotations

import email.message
import functools
import json as _json
import os
import re
import time
import weakref
from base64 import b64encode
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.cookiejar import Cookie, CookieJar
from http.cookies import CookieError, SimpleCookie
from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring_ascii as _encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urljoin, urlparse, urlunparse

from gevent._waiter import Waiter
from locust.exception import CatchResponseError, LocustError, ResponseError  # first: it patches ssl for gevent
from orjson import loads as _orjson_loads
from requests import Request
from requests.auth import HTTPBasicAuth
from requests.cookies import MockRequest, MockResponse, RequestsCookieJar, cookiejar_from_dict, create_cookie
from requests.exceptions import InvalidSchema, InvalidURL, MissingSchema
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from urllib3.fields import RequestField
from urllib3.filepost import encode_multipart_formdata

from . import __version__, _engine
from . import engine as _engines
from .exceptions import BadStatusCode, ResponseTooLarge, error_for
from .stats import RequestReporter

if TYPE_CHECKING:
    from locust.event import EventHook
    from locust.user import User

__all__ = ["ClientPool", "FastCSession", "FastCResponse", "FastCRequest", "FastCCookieJar", "FastCStream",
           "ResponseContextManager"]

_ABSOLUTE_URL = re.compile(r"^https?://", re.IGNORECASE)
_ANY_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_UTF8_NAMES = frozenset({"utf-8", "utf8", "utf_8"})
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)
_CHARSET_IN_HEAD = re.compile(rb"^content-type:[^\r\n]*?charset=[\"']?([\w.:-]+)", re.IGNORECASE | re.MULTILINE)
# FastHttpUser's successes (LocustUserAgent.valid_response_codes); the engine batches exactly these (py_engine.c).
VALID_RESPONSE_CODES = frozenset([200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 301, 302, 303, 304, 307, 308])
_FLAGS_BY_METHOD: dict[str, int] = _engine.METHOD_FLAGS  # the C path's table (csrc/py_session.c)
_FOLLOW = _engine.FOLLOW_REDIRECTS
_BATCH = _engine.BATCH_STATS
_STREAM = _engine.STREAM
_COOKIES = _engine.COOKIES


def _basic_auth(username: str | bytes, password: str | bytes) -> str:
    if isinstance(username, str):
        username = username.encode("latin1")
    if isinstance(password, str):
        password = password.encode("latin1")
    return "Basic " + b64encode(b":".join((username, password))).strip().decode("ascii")


# The ranges the engine accepts (csrc/locust_c.h): checked here, where the message can name the user's attribute.
_TIMEOUT_RANGE = (_engine.MIN_TIMEOUT_MS / 1000, _engine.MAX_TIMEOUT_MS / 1000)
_COUNT_RANGES = {"max_redirects": (0, _engine.MAX_REDIRECTS), "max_retries": (0, _engine.MAX_RETRIES),
                 "concurrency": (1, _engine.MAX_CONNECTIONS), "max_response_bytes": (0, 2**63 - 1)}
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def _check_options(**options: Any) -> None:
    """Raise ValueError naming the first option that is not a finite number in its range (NaN is in none)."""
    for label, value in options.items():
        if label.endswith("_timeout") or label == "timeout":
            low, high = _TIMEOUT_RANGE
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"{label} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
        else:
            low, high = _COUNT_RANGES[label]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{label} must be a whole number from {low} to {high}, not {value!r}")


def _header_lines(headers: dict[str, Any] | None) -> list[str]:
    lines = []
    if headers:
        for name, value in headers.items():
            if not isinstance(name, str):
                raise TypeError(f"header names must be str, not {type(name).__name__}: {name!r}")
            if isinstance(value, bytes):
                value = value.decode("latin1")
            elif not isinstance(value, str):
                if value is None:
                    continue
                value = str(value)
            # An empty value would tell libcurl to drop the header: "Name;" sends it empty, as asked.
            lines.append(f"{name}: {value}" if value else f"{name};")
    return lines


class SessionHeaders(CaseInsensitiveDict):
    """``client.headers``: the headers sent with every request of the session, case-insensitive, as requests'
    ``Session.headers``. A header given to one request replaces a session header of the same name."""

    version = 0  # counts changes: the session rebuilds its header lines only after one

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"header names must be str, not {type(key).__name__}: {key!r}")
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1


def _base_url_error(url: str) -> Exception | None:
    """The exception requests raises for a malformed base URL (``InvalidURL``, ``MissingSchema``, ``InvalidSchema``),
    None for a good one. HttpUser raises it at the first request, not when the user starts, and so does FastCUser."""
    try:
        PreparedRequest().prepare_url(url, None)
    except (InvalidURL, MissingSchema) as error:
        return error
    except Exception as error:  # noqa: BLE001 - requests may fail on its own input in other ways; name the URL
        return InvalidURL(f"Invalid URL {url!r}: {error}")
    if not _ABSOLUTE_URL.match(url):
        return InvalidSchema(f"No connection adapters were found for {url!r}: only http:// and https:// are supported")
    return None


def _auth_pair(auth: Any) -> tuple[Any, Any]:
    """auth= as requests takes it: a (username, password) pair or an ``HTTPBasicAuth``."""
    if isinstance(auth, HTTPBasicAuth):
        return auth.username, auth.password
    if isinstance(auth, (tuple, list)) and len(auth) == 2:
        return auth[0], auth[1]
    raise TypeError(f"auth must be a (username, password) pair or requests' HTTPBasicAuth, not {type(auth).__name__}"
                    " (other schemes need a challenge and answer: set the Authorization header yourself)")


def _multipart(files: Any, data: Any) -> tuple[bytes, str]:
    """files= (and data= beside it) as requests encodes them: a multipart/form-data body and its Content-Type.

    A file is given as requests takes it, in a dict or a list of pairs: a file object, str or bytes, or a tuple
    ``(filename, file[, content_type[, headers]])``. urllib3's encoder writes the body.
    """
    fields: list[RequestField] = []
    if data:
        if isinstance(data, (str, bytes)):
            raise ValueError("data= must be a dict or a list of pairs when files= is given, not a string")
        for name, values in (data.items() if isinstance(data, dict) else data):
            for value in values if isinstance(values, list) else [values]:
                if value is not None:
                    field = RequestField(name=name, data=value if isinstance(value, (str, bytes)) else str(value))
                    field.make_multipart()
                    fields.append(field)
    if not isinstance(files, (dict, list, tuple)):
        raise TypeError(f"files must be a dict or a list of (name, file) pairs, not {type(files).__name__}")
    for name, given in (files.items() if isinstance(files, dict) else files):
        content_type = headers = None
        if isinstance(given, (tuple, list)):
            if not 2 <= len(given) <= 4:
                raise ValueError(f"files[{name!r}]: a tuple is (filename, file[, content_type[, headers]])")
            filename, content, *rest = given
            content_type = rest[0] if rest else None
            headers = rest[1] if len(rest) > 1 else None
        else:
            content = given
            path = getattr(given, "name", None)  # a file's own name, as requests guesses it ("<stdin>" is none)
            usable = isinstance(path, str) and path and not (path.startswith("<") and path.endswith(">"))
            filename = os.path.basename(path) if usable else name
        if content is None:
            continue
        if hasattr(content, "read"):
            content = content.read()
        elif not isinstance(content, (str, bytes, bytearray)):
            raise TypeError(f"files[{name!r}]: a file object, str or bytes, not {type(content).__name__}")
        field = RequestField(name=name, data=bytes(content) if isinstance(content, bytearray) else content,
                             filename=filename, headers=headers)
        field.make_multipart(content_type=content_type)
        fields.append(field)
    return encode_multipart_formdata(fields)


def _cookie_from_line(line: str) -> Cookie | None:
    """A cookie of the engine's jar, from its Netscape cookie-file line (csrc/cookies.c)."""
    fields = line.split("\t")
    if len(fields) != 7:
        return None
    domain, _, path, secure, expires, name, value = fields
    rest = {}
    if domain.startswith("#HttpOnly_"):
        domain = domain[len("#HttpOnly_"):]
        rest["HttpOnly"] = None
    return create_cookie(name, value, domain=domain, path=path, secure=secure == "TRUE",
                         expires=int(expires) if expires.isdigit() and int(expires) else None, rest=rest)


def _cookie_line(cookie: Cookie, host: str) -> str:
    """A cookie as a Netscape cookie-file line for the engine's jar; a cookie without a domain is the host's."""
    fields = (cookie.name, cookie.value or "", cookie.domain, cookie.path)
    if any(ch in field for field in fields for ch in "\t\r\n\0"):
        raise ValueError(f"cookie {cookie.name!r}: tabs, CR, LF and NUL cannot be sent in a cookie")
    domain = cookie.domain or host
    prefix = "#HttpOnly_" if cookie.has_nonstandard_attr("HttpOnly") else ""
    return "\t".join((prefix + domain, "TRUE" if domain.startswith(".") else "FALSE", cookie.path or "/",
                      "TRUE" if cookie.secure else "FALSE", str(int(cookie.expires or 0)), cookie.name,
                      cookie.value or ""))


class FastCCookieJar(RequestsCookieJar):
    """``client.cookies``: the user's cookie jar as requests' ``RequestsCookieJar``.

    The jar itself lives in the engine, one per user for both transports. This is a copy of it taken when
    ``client.cookies`` was read; setting, deleting or clearing a cookie here changes the engine's jar too, so the
    next request sends it. Read ``client.cookies`` again to see what later responses set.
    """

    _session: FastCSession | None = None

    def set_cookie(self, cookie: Cookie, *args: Any, **kwargs: Any) -> None:
        super().set_cookie(cookie, *args, **kwargs)
        if self._session is not None:
            self._session._cookie_op([_cookie_line(cookie, self._session._host)])

    def clear(self, domain: str | None = None, path: str | None = None, name: str | None = None) -> None:
        super().clear(domain, path, name)
        if self._session is not None:  # the jar is set to what is left, in one operation
            self._session._cookie_op(["ALL", *(_cookie_line(c, self._session._host) for c in self)])

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_session", None)  # a pickled copy is a plain jar
        return state


def _cookie_value(cookies: Any) -> str | None:
    """A request's cookies= (a dict or a cookie jar) as a Cookie header value, sent with the jar's cookies."""
    if cookies is None:
        return None
    if isinstance(cookies, dict):
        pairs = cookies.items()
    elif isinstance(cookies, CookieJar):
        pairs = ((c.name, c.value) for c in cookies)
    else:
        raise TypeError(f"cookies must be a dict or a CookieJar, not {type(cookies).__name__}")
    text = "; ".join(f"{name}={'' if value is None else value}" for name, value in pairs)
    return text or None


def _timeouts(timeout: Any) -> tuple[float, float]:
    """timeout= as requests takes it (seconds, or a (connect, read) pair: the read timeout bounds each wait for the
    server, not the whole request) as the engine's (connect, read) timeouts, 0 where the session's own stands."""
    pair = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if len(pair) != 2:
        raise ValueError(f"timeout must be a number of seconds or a (connect, read) pair, not {timeout!r}")
    out = []
    for value in pair:
        if value is None:
            out.append(0.0)
            continue
        _check_options(timeout=value)
        out.append(float(value))
    return out[0], out[1]


@functools.cache
def _shares_openssl() -> bool:
    """True when Python's ssl module and the engine's libcurl run on one OpenSSL library: a context can cross."""
    import _ssl
    import ctypes

    try:
        library = ctypes.CDLL(getattr(_ssl, "__file__", None))
        return ctypes.cast(library.SSL_CTX_new, ctypes.c_void_p).value == _engine.openssl_marker
    except (OSError, AttributeError):
        return False


def _context_options(factory: Any) -> dict[str, Any]:
    """The engine's options for the SSLContext that ``ssl_context_factory`` makes (called as FastHttpUser calls it,
    when the first connection is due, so an inconsistent context raises Python's own error there). Its certificate
    check and host name check become libcurl's; its client certificate, trusted CAs, versions, ciphers and option
    bits are copied to each new connection (csrc/tls.c). What cannot be carried over is refused by name."""
    import ssl  # here, not at the top: this module is imported before Locust patches ssl for gevent (the pytest plugin)

    context = factory()
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"ssl_context_factory must return an ssl.SSLContext, not {type(context).__name__}")
    if getattr(context, "keylog_filename", None):
        raise ValueError("ssl_context_factory: keylog_filename cannot be carried over to libcurl; set the "
                         "SSLKEYLOGFILE environment variable instead")
    if context.sni_callback is not None:
        raise ValueError("ssl_context_factory: sni_callback is a server's setting and cannot be carried over")
    if not _shares_openssl():
        raise LocustError(f"ssl_context_factory needs Python's ssl module on libcurl's OpenSSL; Python has "
                          f"{ssl.OPENSSL_VERSION} in another copy")
    verify = context.verify_mode != ssl.CERT_NONE
    return {"ssl_context": context, "insecure": not verify, "verify_host": context.check_hostname, "ca_file": None}


def _tls_file(label: str, path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{label} must be a file name, not {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{label}: no such file: {path!r}")
    return path


def _cert_files(cert: Any) -> tuple[str | None, str | None]:
    """cert= as requests takes it: a PEM file holding the certificate and its key, or a (cert, key) pair."""
    if cert is None:
        return None, None
    if isinstance(cert, (tuple, list)):
        if len(cert) != 2:
            raise ValueError("cert must be a file name or a (certificate, key) pair of file names")
        return _tls_file("cert", cert[0]), _tls_file("cert key", cert[1])
    return _tls_file("cert", cert), None


def _extras(cookies: Any, timeout: Any, verify: Any, cert: Any) -> tuple[Any, ...]:
    """A request's cookies=, timeout=, verify= and cert= as the engine's submit takes them."""
    connect, read = _timeouts(timeout) if timeout is not None else (0.0, 0.0)
    if verify is None:
        check, ca_file = -1, None
    elif isinstance(verify, bool):
        check, ca_file = int(verify), None
    else:
        check, ca_file = 1, _tls_file("verify", verify)  # a CA bundle, as requests takes it
    return (_cookie_value(cookies), connect, read, check, ca_file, *_cert_files(cert))


def _set_cookies(head: bytes) -> list[str]:
    """The values of the Set-Cookie lines in raw header blocks, in order."""
    values = []
    for line in head.decode("latin1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "set-cookie":
            values.append(value.strip())
    return values


def _parse_head(head: bytes) -> tuple[int, str, CaseInsensitiveDict]:
    """Status, reason and case-insensitive headers (repeated ones joined with ', ') of a raw header block."""
    headers: CaseInsensitiveDict = CaseInsensitiveDict()
    lines = head.decode("latin1").split("\r\n")
    status = lines[0].split(" ", 2)
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    code = int(status[1]) if len(status) > 1 and status[1].isdigit() else 0
    return code, status[2] if len(status) > 2 else "", headers


class FastCRedirect:
    """One redirect a request followed, in ``response.history``: its ``status_code``, ``reason``, ``url`` (where it
    was asked) and ``headers`` (``Location`` says where it sent the request next)."""

    __slots__ = ("status_code", "reason", "url", "headers")

    def __init__(self, status_code: int, reason: str, url: str, headers: CaseInsensitiveDict) -> None:
        self.status_code = status_code
        self.reason = reason
        self.url = url
        self.headers = headers

    @property
    def is_redirect(self) -> bool:
        return "location" in self.headers

    def __repr__(self) -> str:
        return f"<FastCRedirect [{self.status_code}] {self.url}>"


class FastCRequest:
    """The request a response answers: ``method``, ``url``, ``headers`` (as sent by Python) and ``body``."""

    __slots__ = ("method", "url", "headers", "body")

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<FastCRequest {self.method} {self.url}>"


def _decoded(chunk: bytes) -> bytes | str:
    """iter_content's decode_content, as FastHttpUser's: text when the chunk is UTF-8, bytes when it is not."""
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk


class FastCStream:
    """``response.stream`` of a ``stream=True`` request: the body, read as the engine receives it.

    The engine keeps at most a few hundred KiB of it unread: a reader that lags pauses the transfer (the server
    waits on TCP), and reading resumes it. A fault after the headers (a reset, a read timeout) is raised by the
    read that reaches it, as a socket error is by FastHttpUser's stream.
    """

    def __init__(self, result: Any, handle: _engines.EngineHandle, max_bytes: int) -> None:
        self._result = result
        self._handle = handle
        self._max_bytes = max_bytes

    def readable(self) -> bool:
        return True

    def read1(self, amt: int = -1) -> bytes:
        """What has arrived (at most ``amt`` bytes, all of it for -1), waiting for something if nothing has;
        b"" at the end of the body."""
        result = self._result
        while True:
            chunk = result.stream_read(amt if amt is not None else -1)
            if chunk:
                return chunk
            end = result.stream_end()
            if end is not None:
                if end[0]:
                    raise error_for(end[0], 0, end[1])
                return b""
            self._wait()

    def read(self, amt: int | None = None) -> bytes:
        """``amt`` bytes, or fewer at the end; the whole rest of the body for None (``max_response_bytes`` at
        most)."""
        parts: list[bytes] = []
        got = 0
        while amt is None or amt < 0 or got < amt:
            chunk = self.read1(-1 if amt is None or amt < 0 else amt - got)
            if not chunk:
                break
            got += len(chunk)
            if (amt is None or amt < 0) and self._max_bytes and got > self._max_bytes:
                raise ResponseTooLarge(f"response body larger than max_response_bytes ({self._max_bytes} bytes)")
            parts.append(chunk)
        return b"".join(parts)

    def _wait(self) -> None:
        waiter = Waiter()
        armed = self._result.stream_wait(waiter)
        if not armed:
            return
        handle = self._handle
        counted = armed == 1  # 2: the wake-up an interrupted wait left serves this one, and is counted already
        if counted:
            handle.expect()
        try:
            waiter.get()
        except BaseException:
            if not self._result.stream_unwait() and counted:  # no wake-up will come to count this wait off
                handle.pending -= 1
            raise


class FastCResponse(_engine.Response):
    """A response, API-compatible with FastHttpUser's ``FastResponse``.

    ``status_code`` is 0 and ``content`` is None when no response arrived (``error`` then says why). Its fields
    are the C base's (``FastCResponse(result, method, url, lines, body, error)``), so that the C request path
    makes one without running Python.
    """

    encoding: str | None = None
    """Set it before reading ``text`` to override the charset the headers give."""

    # Parsed on first use; class-level defaults keep the per-request constructor short.
    _headers: CaseInsensitiveDict | None = None
    _reason: str | None = None
    _request: FastCRequest | None = None
    # stream=True: the engine that delivers the body, and the body once read whole.
    _handle: _engines.EngineHandle | None = None
    _stream: FastCStream | None = None
    _streamed_content: bytes | None = None
    _max_bytes = 0

    # ---- body ------------------------------------------------------------------------------------------

    @property
    def content(self) -> bytes | None:
        """The body as bytes, None when no response arrived. With ``stream=True`` it is read to its end first."""
        if self.status_code == 0:
            return None
        if self._handle is not None:
            if self._streamed_content is None:
                self._streamed_content = self.stream.read()
            return self._streamed_content
        return self._result.content

    @property
    def stream(self) -> FastCStream:
        """The body as a file-like object (``read()``), read as it arrives: what ``stream=True`` is for."""
        if self._stream is None:
            if self._handle is None or self.status_code == 0:
                raise LocustError("response.stream needs a response to a request made with stream=True")
            self._stream = FastCStream(self._result, self._handle, self._max_bytes)
        return self._stream

    def _charset(self) -> str:
        """The charset of ``Content-Type`` (UTF-8 when none is given), or what ``encoding`` was set to."""
        encoding = self.encoding
        if encoding is None:
            if self._headers is None and self._result is not None:  # no need to parse every header for one
                found = _CHARSET_IN_HEAD.search(self._result.head)
                encoding = found.group(1).decode("ascii") if found else "utf-8"
            else:
                match = _CHARSET.search(self.headers.get("content-type", ""))
                encoding = match.group(1) if match else "utf-8"
            self.encoding = encoding
        return encoding

    @property
    def text(self) -> str | None:
        """The body decoded with the charset of ``Content-Type`` (UTF-8 when none is given)."""
        content = self.content
        if content is None:
            return None
        encoding = self._charset()
        try:
            return str(content, encoding, errors="replace")
        except LookupError:
            return str(content, "utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON, as ``json.loads(response.text)`` parses it.

        A UTF-8 body is parsed by orjson, several times faster; whatever orjson refuses (NaN, integers past 64 bits,
        invalid UTF-8, any error) is parsed by ``json`` instead, so the result, or the error, is json's."""
        content = self.content
        if content and self._charset().lower() in _UTF8_NAMES:
            try:
                return _orjson_loads(content)
            except ValueError:  # orjson.JSONDecodeError is one
                pass
        return _json.loads(self.text)  # type: ignore[arg-type]

    def iter_content(self, chunk_size: int | None = 1024, decode_content: bool = True) -> Iterator[bytes | str]:
        """The body in chunks, as ``requests.Response.iter_content`` yields it; with ``stream=True`` each chunk as
        soon as it has arrived (at most ``chunk_size`` bytes, any size for None)."""
        if self._handle is not None and self._streamed_content is None and self.status_code:
            stream = self.stream
            while chunk := stream.read1(chunk_size or -1):
                yield _decoded(chunk) if decode_content else chunk
            return
        content = self.content or b""
        size = chunk_size or len(content) or 1
        for i in range(0, len(content), size):
            chunk: bytes | str = content[i : i + size]
            if decode_content:
                try:
                    chunk = chunk.decode("utf-8")  # type: ignore[union-attr]
                except UnicodeDecodeError:
                    pass
            yield chunk

    @property
    def _content_length(self) -> int:
        if self._handle is not None:  # streamed: what the headers announce, as FastHttpUser and HttpUser count it
            try:
                return int(self.headers.get("content-length") or 0)
            except ValueError:
                return 0
        return self._result.content_length if self._result is not None else 0

    # ---- head ------------------------------------------------------------------------------------------

    def _parse_head(self) -> None:
        if self._result is not None and self.status_code:
            _, self._reason, self._headers = _parse_head(self._result.head)
        else:
            self._reason, self._headers = "", CaseInsensitiveDict()

    @property
    def history(self) -> list[FastCRedirect]:
        """The redirects followed to get this response, oldest first, as requests' ``Response.history``."""
        if self._result is None or not self._result.redirects:
            return []
        hops, url = [], self._url
        for block in self._result.redirects_head.split(b"\r\n\r\n"):
            if not block:
                continue
            status, reason, headers = _parse_head(block)
            hops.append(FastCRedirect(status, reason, url, headers))
            url = urljoin(url, headers.get("location", ""))
        return hops

    @property
    def headers(self) -> CaseInsensitiveDict:
        """Response headers, case-insensitive (repeated headers joined with ', ')."""
        if self._headers is None:
            self._parse_head()
        return self._headers  # type: ignore[return-value]

    @property
    def reason(self) -> str:
        """The reason phrase of the status line (empty with HTTP/2)."""
        if self._reason is None:
            self._parse_head()
        return self._reason  # type: ignore[return-value]

    @property
    def ok(self) -> bool:
        """True when the status is below 400 (also when no response came, status 0), as FastHttpUser has it."""
        return self.status_code < 400

    @property
    def url(self) -> str:
        """The final URL, after any redirects."""
        if self._result is not None and self._result.redirects:
            return self._result.effective_url or self._url
        return self._url

    @property
    def elapsed(self) -> timedelta:
        """The response time as a ``timedelta``, as requests' ``Response.elapsed``."""
        return timedelta(milliseconds=self._result.response_time if self._result is not None else 0.0)

    @property
    def cookies(self) -> RequestsCookieJar:
        """The cookies this response set (its Set-Cookie headers), as requests' ``Response.cookies``."""
        jar = RequestsCookieJar()
        if self._result is None or not self.status_code:
            return jar
        host = urlparse(self.url).hostname or ""
        for value in _set_cookies(self._result.head):
            parsed: SimpleCookie = SimpleCookie()
            try:
                parsed.load(value)
            except CookieError:
                continue
            for morsel in parsed.values():
                jar.set(morsel.key, morsel.value, domain=morsel["domain"] or host, path=morsel["path"] or "/")
        return jar

    @property
    def request(self) -> FastCRequest:
        """The request that was sent: method, url, headers, body."""
        if self._request is None:
            headers: dict[str, str] = {}
            for line in self._lines or ():
                name, _, value = line.partition(":")
                headers[name.rstrip(";")] = value.strip()
            self._request = FastCRequest(self._method, self._url, headers, self._body)
        return self._request

    def raise_for_status(self) -> None:
        """Raise the error this request ended with, if any."""
        if self.error is not None:
            raise self.error

    def __enter__(self) -> FastCResponse:
        raise LocustError("In order to use a with-block for requests, you must also pass catch_response=True")

    def __exit__(self, *exc: Any) -> None:
        return None

    def success(self) -> None:
        raise LocustError(
            "If you want to change the state of the request, you must pass catch_response=True. See "
            "http://docs.locust.io/en/stable/writing-a-locustfile.html#validating-responses"
        )

    def failure(self, *_args: Any, **_kwargs: Any) -> None:
        self.success()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.status_code}] {self._method} {self._url}>"


class ResponseContextManager(FastCResponse):
    """A response that is also a context manager, to mark it as success or failure (``catch_response=True``).

    It is reported to Locust when the ``with`` block exits, with the same rules as Locust's own: an exception
    in the block that is not a ``ResponseError`` propagates and the request is not reported; ``success()`` and
    ``failure()`` override what the status code says.
    """

    _manual_result: bool | BaseException | None = None
    _entered = False

    def __init__(self, response: FastCResponse, reporter: RequestReporter, meta: dict[str, Any]) -> None:
        self._take(response)
        self.__dict__.update(response.__dict__)
        self._reporter = reporter
        self.request_meta = meta

    def __enter__(self) -> ResponseContextManager:
        self._entered = True
        return self

    def __exit__(self, exc_type: Any, value: BaseException | None, traceback: Any) -> bool:
        if self._manual_result is not None:
            if self._manual_result is True:
                self.request_meta["exception"] = None
            else:
                self.request_meta["exception"] = self._manual_result
            self._report()
            return exc_type is None
        if exc_type is not None:
            if isinstance(value, ResponseError):
                self.request_meta["exception"] = value
                self._report()
                return True
            return False
        self.request_meta["exception"] = self.error
        self._report()
        return True

    def _report(self) -> None:
        self._reporter.report_meta(self.request_meta)

    def success(self) -> None:
        """Report the response as successful, whatever its status code."""
        if not self._entered:
            raise LocustError(
                "Tried to set status on a request that has not yet been made. Make sure you use a with-block, "
                "like this:\n\nwith self.client.request(..., catch_response=True) as response:\n    response.success()"
            )
        self._manual_result = True

    def failure(self, exc: Any) -> None:  # type: ignore[override]
        """Report the response as a failure; a message that is not an exception becomes a CatchResponseError."""
        if not self._entered:
            raise LocustError(
                "Tried to set status on a request that has not yet been made. Make sure you use a with-block, "
                "like this:\n\nwith self.client.request(..., catch_response=True) as response:\n"
                "    response.failure(...)"
            )
        if not isinstance(exc, BaseException):
            exc = CatchResponseError(exc)
        self._manual_result = exc

    def raise_for_status(self) -> None:
        if not self._manual_result:
            super().raise_for_status()
        elif isinstance(self._manual_result, BaseException):
            raise self._manual_result


class ClientPool:
    """Connections shared by the users of several classes, as FastHttpUser's ``client_pool``: set
    ``client_pool = ClientPool(concurrency=N)`` on each class whose users share them. At most ``concurrency``
    requests of all those users are in flight at once, on as many connections. Each user keeps its own cookies.
    geventhttpclient's ``HTTPClientPool`` (what FastHttpUser locustfiles pass) is taken the same way.
    """

    def __init__(self, concurrency: int = 10) -> None:
        _check_options(concurrency=concurrency)
        self.client_args = {"concurrency": concurrency}


# What sessions with equal settings share rather than each hold (an idle user's memory): their engine options,
# read-only, and their default headers, until one of them changes its own (FastCSession.headers).
_SHARED_OPTIONS: dict[tuple, dict[str, Any]] = {}
_SHARED_HEADERS: dict[tuple, SessionHeaders] = {}


def _shared(table: dict[tuple, Any], items: dict[str, Any], make: Any) -> Any:
    """The one ``make(items)`` of ``table`` for these items, made on first use; None when a value is not hashable."""
    try:
        key = tuple(items.items())
        found = table.get(key)
    except TypeError:
        return None
    if found is None:
        found = table[key] = make(items)
    return found


# The engine client of each pool in use, with the engine it runs on: made by the pool's first user to connect.
_pool_clients: weakref.WeakKeyDictionary[Any, tuple[_engines.EngineHandle, Any]] = weakref.WeakKeyDictionary()


def _jar_header(jar: CookieJar, url: str) -> str | None:
    """The Cookie header a pooled user's own jar gives for ``url`` (http.cookiejar's rules, as requests applies)."""
    request = MockRequest(Request("GET", url))
    jar.add_cookie_header(request)
    return request.get_new_headers().get("Cookie")


def _jar_extract(jar: CookieJar, url: str, heads: bytes) -> None:
    """Keeps in a pooled user's jar the cookies the Set-Cookie headers of ``heads`` (header blocks) set."""
    message = email.message.Message()
    for value in _set_cookies(heads):
        message["Set-Cookie"] = value
    if message.get_all("Set-Cookie"):
        jar.extract_cookies(MockResponse(message), MockRequest(Request("GET", url)))


class FastCSession(_engine.Session):
    """An HTTP client for one user, API-compatible with ``FastHttpSession``, whose requests run in C.

    It owns the user's keep-alive connections (up to ``concurrency`` at once) and cookie jar; nothing is shared
    with other sessions. Call ``close()`` to release them (FastCUser does so when the user stops).

    ``request()``, ``get()`` and ``post()`` are the C base's (csrc/py_session.c): the common case runs there,
    and everything else here, in ``_request``, by the same steps (``_prepare``, ``_finish``).
    """

    valid_response_codes: frozenset[int] = VALID_RESPONSE_CODES
    """Statuses that are a success; any other fails the request with ``BadStatusCode`` (FastHttpUser's set)."""

    # What every session sets in __init__, beside the C base's fields, in slots: an idle user's session then has no
    # dict at all (about 0.3 KiB a user). "__dict__" keeps the attributes a locustfile adds of its own working.
    __slots__ = ("request_event", "user", "auth_header", "ssl_context_factory", "_base_error", "_headers_shared",
                 "_auth", "_options", "_pool", "_closed", "__dict__", "__weakref__")

    def __init__(
        self,
        base_url: str | None,
        request_event: EventHook,
        user: User | None,
        insecure: bool = True,
        network_timeout: float = 60.0,
        connection_timeout: float = 60.0,
        max_redirects: int = 30,
        max_retries: int = 0,
        concurrency: int = 10,
        headers: dict[str, str] | None = None,
        proxy_host: str | None = None,
        proxy_port: int | None = None,
        http2: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        request_timeout: float | None = None,
        client_cert: str | tuple[str, str] | None = None,
        client_pool: Any = None,
        ssl_context_factory: Any = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"FastCSession got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if request_timeout is not None:
            _check_options(request_timeout=request_timeout)
        _check_options(network_timeout=network_timeout, connection_timeout=connection_timeout,
                       max_redirects=max_redirects, max_retries=max_retries, concurrency=concurrency,
                       max_response_bytes=max_response_bytes)
        if (proxy_host is None) != (proxy_port is None):
            raise ValueError("proxy_host and proxy_port must be given together")
        if proxy_port is not None and (isinstance(proxy_port, bool) or not isinstance(proxy_port, int)
                                       or not 1 <= proxy_port <= 65535):
            raise ValueError(f"proxy_port must be a whole number from 1 to 65535, not {proxy_port!r}")
        if http2 and not _engine.http2_supported:
            raise LocustError("http2 = True needs a libcurl built with HTTP/2 (nghttp2)")

        self.base_url = base_url or ""
        self.request_event = request_event
        self.user = user
        self.request_name: str | None = None
        self.auth_header: str | None = None
        self._base_error = _base_url_error(self.base_url) if self.base_url else None
        if self.base_url and self._base_error is None:
            parsed = urlparse(self.base_url)
            if parsed.username and parsed.password:
                netloc = parsed.netloc.rpartition("@")[2]
                self.base_url = urlunparse((parsed.scheme, netloc, parsed.path, parsed.params, parsed.query,
                                            parsed.fragment))
                self.auth_header = _basic_auth(unquote(parsed.username), unquote(parsed.password))
        self.base_url = self.base_url.rstrip("/") if self.base_url.endswith("/") else self.base_url

        default_headers = dict(headers or {})
        default_headers.setdefault("User-Agent", f"locust-c/{__version__}")
        # FastHttpUser's, and what the engine decodes (csrc/decode.c); a request's own Accept-Encoding replaces it.
        if not any(k.lower() == "accept-encoding" for k in default_headers):
            default_headers["Accept-Encoding"] = "gzip, deflate, br"
        if self.auth_header:
            default_headers.setdefault("Authorization", self.auth_header)
        # Sessions with the same default headers share one mapping until one of them is changed (see headers).
        shared = _shared(_SHARED_HEADERS, default_headers, SessionHeaders)
        self._headers_shared = shared is not None
        self._headers = shared if shared is not None else SessionHeaders(default_headers)
        self._auth: Any = None
        self._lines: tuple[str, ...] = ()
        self._lines_version = -1
        self._names: frozenset[str] = frozenset()  # the session headers' names, lower-case
        self._options = {
            "connect_timeout": float(connection_timeout),
            "read_timeout": float(network_timeout),
            "timeout": float(request_timeout or 0),
            "max_redirects": max_redirects,
            "max_retries": max_retries,
            "max_connections": concurrency,
            "max_response_bytes": max_response_bytes,
            "insecure": bool(insecure),
            "http2": bool(http2),
            "proxy": f"http://{proxy_host}:{proxy_port}" if proxy_host else None,
            # Verification uses the system's CAs, or SSL_CERT_FILE as Python's ssl module (and so FastHttpUser) does.
            "ca_file": None if insecure else os.environ.get("SSL_CERT_FILE") or None,
            # A user of an http:// host rarely needs TLS session resumption; keeping none saves memory per user.
            "tls_sessions": self.base_url.lower().startswith("https://"),
            "native": _engines.native_transport(),
        }
        self._options["cert"], self._options["key"] = _cert_files(client_cert)
        # Users of one class have the same options: they share one read-only dict rather than each holding its own.
        self._options = _shared(_SHARED_OPTIONS, self._options, dict) or self._options
        self.ssl_context_factory = ssl_context_factory
        # A shared pool keeps no cookies in the engine: each of its users has a jar here (see ClientPool).
        self._pool = client_pool
        self._jar: RequestsCookieJar | None = RequestsCookieJar() if client_pool is not None else None
        self._client: Any = None
        self._handle: _engines.EngineHandle | None = None
        self._closed = False
        self._reporter = RequestReporter(request_event, user)

    @property
    def native_host(self) -> bool:
        """True when requests to the user's host take the native transport (plain http://, no proxy or HTTP/2)."""
        o = self._options
        return o["native"] and not o["proxy"] and not o["http2"] and self.base_url[:7].lower() == "http://"

    @property
    def auth(self) -> Any:
        """Basic credentials for every request, as requests' ``Session.auth``: a (username, password) pair or an
        ``HTTPBasicAuth``; None sends none. A request's own ``auth=`` or ``Authorization`` header replaces them."""
        return self._auth

    @auth.setter
    def auth(self, auth: Any) -> None:
        header = None if auth is None else _basic_auth(*_auth_pair(auth))
        self._auth = auth
        if header is None:
            self.headers.pop("Authorization", None)
        else:
            self.headers["Authorization"] = header

    @property
    def headers(self) -> SessionHeaders:
        """Headers sent with every request; change them at any time (``client.headers.update({...})``)."""
        if self._headers_shared:  # about to be changed, perhaps: this session's own copy from now on
            self._headers = SessionHeaders(self._headers)
            self._headers_shared = False
            self._lines_version = -1
        return self._headers

    @headers.setter
    def headers(self, headers: dict[str, Any]) -> None:
        self._headers = SessionHeaders(headers)
        self._headers_shared = False
        self._lines_version = -1  # versions count one mapping's changes: the new one's may equal the old one's

    def _session_lines(self) -> tuple[str, ...]:
        """The session headers as header lines, rebuilt after a change. They are kept on the headers mapping too,
        so that the sessions that share it (see _SHARED_HEADERS) share its lines."""
        headers = self._headers
        if headers.version != self._lines_version:
            built = headers.__dict__.get("_built")
            if built is None or built[0] != headers.version:
                built = headers._built = (headers.version, tuple(_header_lines(headers)),
                                          frozenset(name.lower() for name in headers))
            _, self._lines, self._names = built
            self._lines_version = headers.version
        return self._lines

    # ---- cookies ---------------------------------------------------------------------------------------

    @property
    def _host(self) -> str:
        return urlparse(self.base_url).hostname or "localhost"

    def _cookie_op(self, lines: list[str]) -> list[str]:
        """Changes the engine's jar by ``lines`` ("ALL", Netscape lines: see jar_load_line) and returns the
        jar's lines after the change. Waits for the engine as a request does; nothing is sent to the server."""
        client = self._client
        if client is None or not self._handle.valid:
            client = self._connect("http://localhost/")
        waiter = Waiter()
        body = "\n".join(lines).encode("utf-8") if lines else None
        client.submit(waiter, "GET", "http://localhost/", None, body, _COOKIES, None)
        self._handle.expect()
        result = waiter.get()
        if result.result:
            raise error_for(result.result, 0, result.error)
        return result.content.decode("utf-8", "replace").splitlines()

    @property
    def cookies(self) -> FastCCookieJar:
        """The user's cookies, as requests' ``Session.cookies``: what the server set, and what you set here (see
        :class:`FastCCookieJar`). Assign a jar or a dict to replace them all."""
        if self._jar is not None:
            return self._jar  # type: ignore[return-value]  (a pooled user's jar is here, a plain one)
        jar = FastCCookieJar()
        for line in self._cookie_op([]):
            cookie = _cookie_from_line(line)
            if cookie is not None:
                jar.set_cookie(cookie)
        jar._session = self
        return jar

    @cookies.setter
    def cookies(self, cookies: CookieJar | dict[str, str]) -> None:
        jar = cookiejar_from_dict(cookies) if isinstance(cookies, dict) else cookies
        if not isinstance(jar, CookieJar):
            raise TypeError(f"cookies must be a CookieJar or a dict, not {type(cookies).__name__}")
        if self._jar is not None:
            self._jar = RequestsCookieJar()
            self._jar.update(jar)
            return
        self._cookie_op(["ALL", *(_cookie_line(c, self._host) for c in jar)])

    cookiejar = cookies  # FastHttpSession's name for it

    # ---- life cycle ------------------------------------------------------------------------------------

    def _connect(self, url: str) -> Any:
        if self._closed:
            raise LocustError("this FastCSession has been closed")
        if self._base_error is not None and not _ABSOLUTE_URL.match(url):
            raise self._base_error
        options = self._options
        if self.ssl_context_factory is not None:
            options = {**options, **_context_options(self.ssl_context_factory)}
        if self._pool is not None:
            return self._connect_pool(options)
        self._handle = _engines.acquire()
        self._client = _engine.Client(self._handle.engine, **options)
        return self._client

    def _connect_pool(self, options: dict[str, Any]) -> Any:
        """The pool's engine client, made with this user's options if it is the first to connect."""
        pool = self._pool
        entry = _pool_clients.get(pool)
        if entry is None or not entry[0].valid or entry[1].closed:
            concurrency = getattr(pool, "client_args", {}).get("concurrency", options["max_connections"])
            _check_options(concurrency=concurrency)
            handle = _engines.acquire()
            entry = (handle, _engine.Client(handle.engine, **{**options, "max_connections": concurrency,
                                                               "cookies": False}))
            _pool_clients[pool] = entry
        self._handle, self._client = entry
        return self._client

    def close(self) -> None:
        """Close this user's connections; requests still in flight are cancelled."""
        self._closed = True
        if self._client is not None:
            if self._pool is None:  # a pool's connections are its other users' too: they close with the pool
                self._client.close()
            self._client = None

    @contextmanager
    def rename_request(self, name: str) -> Generator[None]:
        """Group the requests made inside the ``with`` block under ``name``."""
        self.request_name = name
        try:
            yield
        finally:
            self.request_name = None

    def _idle_for(self, seconds: float) -> None:
        """The user is about to wait ``seconds``: at least its engine's idle time means set it aside now."""
        handle = self._handle
        if self._client is not None and handle.valid and 0 < handle.idle_seconds <= seconds:
            self._client.set_aside()

    # ---- requests --------------------------------------------------------------------------------------

    def _build_url(self, path: str) -> str:
        if _ABSOLUTE_URL.match(path):
            return path
        if _ANY_SCHEME.match(path):
            raise InvalidSchema(f"unsupported URL scheme in {path!r}: only http:// and https:// are supported")
        if self._base_error is not None:
            raise self._base_error
        if not self.base_url:
            raise MissingSchema(f"relative URL {path!r} but no host: set the user's host or pass an absolute URL")
        return f"{self.base_url}{path}"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that overrides request() gets it called by get() and post() too, as in FastHttpSession.
        if "request" in cls.__dict__:
            for verb in ("get", "post"):
                if verb not in cls.__dict__:
                    setattr(cls, verb, getattr(_VerbsThroughRequest, verb))

    def _request(
        self,
        method: str,
        url: str,
        name: str | None = None,
        data: str | bytes | dict | None = None,
        catch_response: bool = False,
        stream: bool = False,
        headers: dict | None = None,
        auth: tuple[str | bytes, str | bytes] | None = None,
        json: Any = None,
        allow_redirects: bool = True,
        context: dict | None = None,
        params: dict | list | str | None = None,
        cookies: dict | CookieJar | None = None,
        timeout: float | tuple[float | None, float | None] | None = None,
        files: Any = None,
        verify: bool | str | None = None,
        cert: str | tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """``request()`` in Python: every case that the C base's ``request()`` does not take itself (see
        csrc/py_session.c), by the same steps. Same arguments, same result, same errors."""
        if kwargs:
            raise TypeError(f"request() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if not isinstance(url, str):
            raise TypeError(f"url must be str, not {type(url).__name__}")
        if not isinstance(method, str):
            raise TypeError(f"method must be str, not {type(method).__name__}")
        method = method.upper()
        client = self._client
        if client is None or not self._handle.valid:  # first request, engine stopped, or a forked child
            client = self._connect(url)
        full_url = f"{self.base_url}{url}" if url[:1] == "/" else self._build_url(url)
        if " " in full_url:
            full_url = full_url.replace(" ", "%20")
        if params:
            query = params if isinstance(params, str) else urlencode(params, doseq=True)
            full_url = f"{full_url}{'&' if '?' in full_url else '?'}{query}"

        if headers or auth or json is not None or data is not None or files:
            lines, body, shown = self._prepare(headers, auth, data, json, files)
        else:
            lines = self._lines if self._headers.version == self._lines_version else self._session_lines()
            body = shown = None
        extras = None
        if cookies is not None or timeout is not None or verify is not None or cert is not None or self._jar:
            extras = _extras(cookies, timeout, verify, cert)  # what most requests do not have costs them nothing
            if self._jar:  # a pooled user: its own cookies, from its jar
                own = _jar_header(self._jar, full_url)
                if own:
                    extras = (f"{own}; {extras[0]}" if extras[0] else own, *extras[1:])

        flags = _FLAGS_BY_METHOD.get(method, 0)
        if allow_redirects:
            flags |= _FOLLOW
        if stream:
            flags |= _STREAM
        stats_name = name or self.request_name or url
        reporter = self._reporter
        endpoint = reporter.endpoint(method, stats_name)
        if endpoint is not None and not catch_response and not stream and reporter.batchable() and \
                self.valid_response_codes is VALID_RESPONSE_CODES:
            flags |= _BATCH
        start_time = time.time()
        waiter = Waiter()
        client.due = self._due
        if extras is None:
            request_id = client.submit(waiter, method, full_url, lines, body, flags, endpoint)
        else:
            request_id = client.submit(waiter, method, full_url, lines, body, flags, endpoint, extras)
        self._handle.expect()
        try:
            result = waiter.get()
        except BaseException:
            # The user was stopped mid-request (GreenletExit) or the task was interrupted: free the connection.
            client.cancel(request_id)
            raise

        return self._finish(method, stats_name, full_url, lines, shown, result, start_time, catch_response, stream,
                            context)

    def _finish(self, method: str, stats_name: str, full_url: str, lines: tuple[str, ...] | None,
                shown: str | bytes | None, result: Any, start_time: float, catch_response: bool, stream: bool,
                context: dict | None) -> Any:
        """The response to a finished request, reported to Locust unless the engine has done so already; with
        ``catch_response`` the context manager that reports it when its block ends."""
        reporter = self._reporter
        if self._jar is not None and result.status:
            _jar_extract(self._jar, full_url, result.redirects_head + result.head)
        if result.result:
            # No complete response: status 0, as FastHttpUser reports it.
            error: BaseException | None = error_for(result.result, result.os_errno, result.error)
            response = FastCResponse(None, method, full_url, lines, shown, error)
        else:
            error = None
            if result.status not in self.valid_response_codes:
                error = BadStatusCode(full_url, result.status, stats_name)
            response = FastCResponse(result, method, full_url, lines, shown, error)
            if stream:
                response._handle = self._handle
                response._max_bytes = self._options["max_response_bytes"]

        if catch_response:
            meta = reporter.meta(method, stats_name, result, response, error, start_time, full_url, context)
            return ResponseContextManager(response, reporter, meta)
        if not result.recorded:  # a batched success is in Locust's stats already
            reporter.report(method, stats_name, result, response, error, start_time, full_url, context)
        return response

    def _prepare(self, headers: dict | None, auth: Any, data: Any, json: Any,
                 files: Any = None) -> tuple[tuple[str, ...], bytes | None, str | bytes | None]:
        """Header lines and body for a request with arguments beyond the URL.

        The session's header lines are built once per change of ``client.headers``; a request adds its own after
        them, and only a request header that replaces a session header (by name, whatever its case) makes the
        session's lines be built again for it.
        """
        base = self._lines if self._headers.version == self._lines_version else self._session_lines()
        present = set(self._names)
        merged: dict[str, Any] = {}
        if headers:
            if not isinstance(headers, dict):
                raise TypeError(f"headers must be a dict, not {type(headers).__name__}")
            lowered = set()
            for key in headers:
                if not isinstance(key, str):
                    raise TypeError(f"header names must be str, not {type(key).__name__}: {key!r}")
                lowered.add(key.lower())
            if not lowered.isdisjoint(present):
                base = tuple(_header_lines({k: v for k, v in self._headers.items() if k.lower() not in lowered}))
            merged.update(headers)
            present |= lowered
        if auth:
            if "authorization" in present:
                base = tuple(line for line in base if line[:14].lower() not in ("authorization:", "authorization;"))
                merged = {k: v for k, v in merged.items() if k.lower() != "authorization"}
            merged["Authorization"] = _basic_auth(*_auth_pair(auth))
            present.add("authorization")
        body: bytes | None = None
        shown: str | bytes | None = None  # request.body as FastHttpSession gives it: str for str, form and JSON
        if json is not None and not data:  # FastHttpUser's precedence: an empty data= gives way to json=
            data = None
        if files:
            body, content_type = _multipart(files, data)
            shown = body
            if "content-type" not in present:
                merged["Content-Type"] = content_type
                present.add("content-type")
        elif data is not None and data != {}:
            if isinstance(data, dict) or isinstance(data, list):
                shown = urlencode(data, doseq=True)
                body = shown.encode()
                if "content-type" not in present:
                    merged["Content-Type"] = "application/x-www-form-urlencoded"
                    present.add("content-type")
            elif isinstance(data, str):
                body = data.encode("utf-8")
                shown = data
            elif isinstance(data, (bytes, bytearray, memoryview)):
                body = shown = bytes(data)
            else:
                raise TypeError(f"data must be bytes, str or a dict, not {type(data).__name__}")
        elif json is not None:
            shown = _json.dumps(json)
            body = shown.encode("utf-8")
            if "content-type" not in present:
                merged["Content-Type"] = "application/json"
                present.add("content-type")
            if "accept" not in present:
                merged["Accept"] = "application/json"
        lines = [*base, *_header_lines(merged)]
        if body is not None:
            # libcurl would add a form content type and, for large bodies, "Expect: 100-continue": neither was asked.
            if "content-type" not in present:
                lines.append("Content-Type:")
            if "expect" not in present:
                lines.append("Expect:")
        return tuple(lines), body, shown

    # ---- verbs -----------------------------------------------------------------------------------------

    def iter_lines(self, url: str, method: str = "GET", **kwargs: Any) -> Iterator[str]:
        """Send a request and yield its body line by line, as FastHttpSession.iter_lines does."""
        response = self.request(method, url, stream=True, **kwargs)
        response.raise_for_status()
        pending = ""
        for chunk in response.iter_content(chunk_size=1024, decode_content=True):
            pending += chunk if isinstance(chunk, str) else chunk.decode("utf-8", errors="replace")
            *complete, pending = pending.split("\n")  # on LF only, as FastHttpUser splits: a CR stays in its line
            yield from complete
        if pending:
            yield pending

    def head(self, url: str, **kwargs: Any) -> Any:
        """Send a HEAD request."""
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Any:
        """Send an OPTIONS request."""
        return self.request("OPTIONS", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        """Send a DELETE request."""
        return self.request("DELETE", url, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> Any:
        """Send a PUT request."""
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url: str, data: Any = None, **kwargs: Any) -> Any:
        """Send a PATCH request."""
        return self.request("PATCH", url, data=data, **kwargs)


class _VerbsThroughRequest:
    """get() and post() through ``self.request``: for the subclasses of FastCSession that override request()."""

    def get(self, url: str, **kwargs: Any) -> Any:
        """Send a GET request."""
        return self.request("GET", url, **kwargs)  # type: ignore[attr-defined]

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        """Send a POST request."""
        return self.request("POST", url, data=data, json=json, **kwargs)  # type: ignore[attr-defined]


# json.dumps(obj) with its defaults is json's C encoder with these settings, made afresh per call by json's three
# Python frames: the C request path calls one made once (and json.dumps itself when that one fails).
_JSON_MARKERS: dict[int, Any] = {}
_JSON_ENCODER = None if _c_make_encoder is None else _c_make_encoder(
    _JSON_MARKERS, _json._default_encoder.default, _encode_basestring_ascii, None, ": ", ", ", False, False, True)
_engine.set_request_path(Waiter, FastCResponse, ResponseContextManager, VALID_RESPONSE_CODES, _json, _json.dumps,
                         _JSON_ENCODER, _JSON_MARKERS)
