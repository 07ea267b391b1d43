"""Tests of the C test server itself (csrc/testserver.c), over real loopback sockets.

Plain sockets are used throughout, rather than an HTTP library, so that the bytes on the wire are exactly the
ones under test (pipelining, requests in pieces, malformed input) and so that nothing here depends on Locust.
"""

from __future__ import annotations

import base64
import json
import os
import random
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent

# ---- a minimal HTTP/1.1 client ----


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def connection_id(self) -> int:
        value = self.header("x-connection-id")
        assert value is not None
        return int(value)

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """One TCP connection to the server, with a buffered reader that understands HTTP/1.1 framing."""

    def __init__(self, server: Any, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"{server.host}:{server.port}"
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
                version: str = "HTTP/1.1") -> None:
        head = [f"{method} {path} {version}", f"Host: {self.host}"]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}")
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in headers or {}):
            head.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buf += chunk
        return bool(chunk)

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; got {self.buf[:200]!r}")
        line, _, self.buf = self.buf.partition(sep)
        return line

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head: bool = False) -> Response:
        interim = []
        while True:
            status_line = self._read_until(b"\r\n").decode("latin-1")
            version, status, reason = status_line.split(" ", 2)
            assert version == "HTTP/1.1"
            headers = []
            while True:
                line = self._read_until(b"\r\n").decode("latin-1")
                if not line:
                    break
                name, _, value = line.partition(":")
                headers.append((name, value.strip()))
            if int(status) >= 200:
                break
            interim.append(int(status))
        response = Response(int(status), reason, headers, interim=interim)
        if head or response.status in (204, 304):
            return response
        if (response.header("transfer-encoding") or "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n"):
                        pass
                    break
                parts.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n"
            response.body = b"".join(parts)
        else:
            length = response.header("content-length")
            assert length is not None, response
            response.body = self._read_exact(int(length))
        return response

    def roundtrip(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
                  version: str = "HTTP/1.1") -> Response:
        self.request(method, path, headers, body, version)
        return self.read_response(head=method == "HEAD")

    def read_all(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def is_closed(self, wait: float = 2.0) -> bool:
        """True if the server closes the connection (EOF) within `wait` seconds, with nothing more sent."""
        self.sock.settimeout(wait)
        try:
            return not self._fill()
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def get(server: Any, path: str, **kwargs: Any) -> Response:
    with Conn(server) as conn:
        return conn.roundtrip("GET", path, **kwargs)


# ---- routes ----


def test_root(testserver):
    r = get(testserver, "/")
    assert (r.status, r.reason, r.body) == (200, "OK", b"ok")
    assert r.header("content-length") == "2"
    assert r.connection_id > 0
    assert testserver.url == f"http://127.0.0.1:{testserver.port}"


def test_keep_alive_several_requests_on_one_connection(testserver):
    with Conn(testserver) as a, Conn(testserver) as b:
        ids_a = {a.roundtrip("GET", "/").connection_id for _ in range(5)}
        ids_b = {b.roundtrip("GET", p).connection_id for p in ("/", "/json", "/echo", "/status/404", "/bytes/3")}
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b


def test_connection_close_from_client_is_honoured(testserver):
    with Conn(testserver) as conn:
        r = conn.roundtrip("GET", "/", {"Connection": "close"})
        assert r.status == 200 and r.header("connection") == "close"
        assert conn.is_closed()


def test_http_1_0(testserver):
    with Conn(testserver) as conn:
        r = conn.roundtrip("GET", "/", version="HTTP/1.0")
        assert r.status == 200 and r.header("connection") == "close"
        assert conn.is_closed()
    with Conn(testserver) as conn:
        first = conn.roundtrip("GET", "/", {"Connection": "keep-alive"}, version="HTTP/1.0")
        assert first.header("connection") == "keep-alive"
        # No chunked coding for HTTP/1.0: the same body comes with a Content-Length.
        r = conn.roundtrip("GET", "/chunked/2", {"Connection": "keep-alive"}, version="HTTP/1.0")
        assert r.body == b"chunk0\nchunk1\n" and r.header("content-length") == "14"
        assert r.connection_id == first.connection_id


def test_delay_waits_without_blocking_other_connections(testserver):
    with Conn(testserver) as slow, Conn(testserver) as fast:
        start = time.monotonic()
        slow.request("GET", "/delay/2000")
        assert fast.roundtrip("GET", "/").status == 200
        # The fast answer came while the slow one was still due: it did not wait behind it.
        assert select.select([slow.sock], [], [], 0)[0] == [] and time.monotonic() - start < 2.0
        r = slow.read_response()
        assert (r.status, r.body) == (200, b"ok")
        assert time.monotonic() - start >= 2.0
    assert get(testserver, "/delay/abc").status == 400


@pytest.mark.parametrize("code", [200, 201, 202, 204, 301, 304, 400, 404, 418, 429, 500, 503, 599])
def test_status(testserver, code):
    with Conn(testserver) as conn:
        r = conn.roundtrip("GET", f"/status/{code}")
        assert r.status == code
        if code in (204, 304):
            assert r.body == b"" and r.header("content-length") is None
        else:
            assert r.body and r.header("content-length") == str(len(r.body))
        # The connection is still usable: the body, or its absence, was framed correctly.
        assert conn.roundtrip("GET", "/").body == b"ok"


def test_status_reason_phrases(testserver):
    assert get(testserver, "/status/404").reason == "Not Found"
    assert get(testserver, "/status/503").reason == "Service Unavailable"
    assert get(testserver, "/status/299").reason == "Success"


@pytest.mark.parametrize("path", ["/status/100", "/status/199", "/status/600", "/status/abc", "/status/"])
def test_status_out_of_range(testserver, path):
    assert get(testserver, path).status == 400


@pytest.mark.parametrize("n", [0, 1, 100, 16384, 16385, 1 << 20, 3_000_001])
def test_bytes(testserver, n):
    with Conn(testserver) as conn:
        r = conn.roundtrip("GET", f"/bytes/{n}")
        assert r.status == 200 and r.header("content-type") == "application/octet-stream"
        assert r.body == b"x" * n
        assert conn.roundtrip("GET", "/").body == b"ok"


def test_bytes_limits_and_head(testserver):
    assert get(testserver, f"/bytes/{64 * 1024 * 1024 + 1}").status == 400
    assert get(testserver, "/bytes/-1").status == 400
    with Conn(testserver) as conn:
        r = conn.roundtrip("HEAD", "/bytes/1048576")
        assert r.header("content-length") == "1048576" and r.body == b""
        assert conn.roundtrip("GET", "/").body == b"ok"


def test_largest_bytes_body(testserver):
    with Conn(testserver, timeout=30) as conn:
        r = conn.roundtrip("GET", f"/bytes/{64 * 1024 * 1024}")
        assert len(r.body) == 64 * 1024 * 1024 and r.body.count(b"x") == len(r.body)


def test_echo(testserver):
    with Conn(testserver) as conn:
        r = conn.roundtrip("PATCH", "/echo/some/thing?a=1&b=%20x", {
            "X-Custom": "One",
            "x-custom": "Two",
            "X-Empty": "",
            "Cookie": "session=abc; theme=dark",
            "cookie": "extra=1; session=ignored",
            "Content-Type": "text/plain",
        }, body=b"hello")
    assert r.status == 200 and r.header("content-type") == "application/json"
    echo = r.json()
    assert echo["method"] == "PATCH"
    assert echo["path"] == "/echo/some/thing"
    assert echo["query"] == "a=1&b=%20x"
    assert echo["headers"]["x-custom"] == "One, Two"
    assert echo["headers"]["x-empty"] == ""
    assert echo["headers"]["host"] == f"127.0.0.1:{testserver.port}"
    assert echo["headers"]["content-length"] == "5"
    assert all(name == name.lower() for name in echo["headers"])
    assert echo["cookies"] == {"session": "abc", "theme": "dark", "extra": "1"}
    assert echo["body"] == "hello" and echo["body_length"] == 5
    assert echo["connection_id"] == r.connection_id


def test_echo_variants(testserver):
    assert get(testserver, "/echo").json()["path"] == "/echo"
    assert get(testserver, "/echo?x=1").json()["query"] == "x=1"
    assert get(testserver, "/echo/").json()["path"] == "/echo/"
    assert get(testserver, "/echoes").status == 404
    echo = get(testserver, "/echo").json()
    assert echo["query"] == "" and echo["body"] == "" and echo["body_length"] == 0 and echo["cookies"] == {}


BODIES = [
    b"plain ascii",
    "h\u00e9llo w\u00f6rld \u20ac \U0001f600".encode(),
    bytes(range(32)) + b'"\\/\x7f',
    b"\xff\xfe invalid \x80 lone continuation",
    b"\xe2\x82 truncated three-byte, \xf0\x9f\x98 truncated four-byte",
    b"\xed\xa0\x80 surrogate \xc0\xaf overlong \xf4\x90\x80\x80 above max",
    b"\xe0\x80\x80 \xf0\x80\x80\x80 more overlongs",
    b"ends mid-sequence \xf0\x9f",
    b"\x00nul inside\x00",
]


@pytest.mark.parametrize("body", BODIES)
def test_echo_body_decoding(testserver, body):
    with Conn(testserver) as conn:
        r = conn.roundtrip("POST", "/echo", body=body)
    # The server escapes everything outside printable ASCII, so the JSON is plain ASCII.
    assert max(r.body) < 0x80
    echo = r.json()
    assert echo["body"] == body.decode("utf-8", "replace")
    assert echo["body_length"] == len(body)


def test_echo_random_bytes_decoding(testserver):
    rng = random.Random(1234)
    with Conn(testserver) as conn:
        for _ in range(200):
            body = bytes(rng.choice(b"\x00\x7f\x80\xbf\xc2\xdf\xe0\xed\xef\xf0\xf4\xf5\xff a\"\\\n")
                         for _ in range(rng.randint(1, 40)))
            assert conn.roundtrip("POST", "/echo", body=body).json()["body"] == body.decode("utf-8", "replace")


def test_echo_header_values_with_non_ascii(testserver):
    with Conn(testserver) as conn:
        conn.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\nX-Tab: a\tb\r\n\r\n")
        headers = conn.read_response().json()["headers"]
    assert headers["x-latin"] == "caf\ufffd" and headers["x-utf8"] == "caf\u00e9" and headers["x-tab"] == "a\tb"


def test_post_body_of_one_mib_is_echoed(testserver):
    rng = random.Random(7)
    body = bytes(rng.randrange(32, 127) for _ in range(1 << 20))
    with Conn(testserver) as conn:
        echo = conn.roundtrip("POST", "/echo", body=body).json()
        assert echo["body_length"] == 1 << 20 and echo["body"] == body.decode()
        assert conn.roundtrip("GET", "/").body == b"ok"


def test_chunked_request_body(testserver):
    with Conn(testserver) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")
        echo = conn.read_response().json()
        assert echo["body"] == "hello 0123456789" and echo["body_length"] == 16
        assert echo["headers"]["transfer-encoding"] == "chunked"
        # A chunked body sent byte by byte.
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for byte in b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n":
            conn.send(bytes([byte]))
            time.sleep(0.001)
        assert conn.read_response().json()["body"] == "abcde"


def test_chunked_request_body_of_one_mib(testserver):
    body = os.urandom(1 << 20)
    pieces = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000]) for i in range(0, len(body), 1000))
    with Conn(testserver) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + pieces + b"0\r\n\r\n")
        echo = conn.read_response().json()
    assert echo["body_length"] == len(body) and echo["body"] == body.decode("utf-8", "replace")


def test_expect_100_continue(testserver):
    with Conn(testserver) as conn:
        conn.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        assert conn._read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue"
        conn.send(b"body")
        r = conn.read_response()
        assert r.json()["body"] == "body" and r.interim == []
        # When the body is too large the final answer comes instead, and the body is never sent.
        conn.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n")
        r = conn.read_response()
        assert r.status == 413 and r.interim == []


def test_redirect(testserver):
    with Conn(testserver) as conn:
        r = conn.roundtrip("GET", "/redirect/3")
        assert r.status == 302 and r.header("location") == "/redirect/2"
        r = conn.roundtrip("GET", "/redirect/0")
        assert (r.status, r.body) == (200, b"redirected")
        r = conn.roundtrip("POST", "/redirect/1", body=b"data")
        assert r.status == 302 and r.header("location") == "/redirect/0"
    assert get(testserver, "/redirect/x").status == 400


def test_absolute_redirect(testserver):
    r = get(testserver, "/absolute-redirect/2")
    assert r.status == 302 and r.header("location") == f"{testserver.url}/absolute-redirect/1"
    assert get(testserver, "/absolute-redirect/0").status == 200


def test_cookies(testserver):
    r = get(testserver, "/cookies/set?flavour=oat&size=big")
    assert r.status == 200
    assert r.all("set-cookie") == ["flavour=oat; Path=/", "size=big; Path=/"]
    assert r.json() == {"flavour": "oat", "size": "big"}
    r = get(testserver, "/cookies", headers={"Cookie": "flavour=oat; size=big"})
    assert r.json() == {"flavour": "oat", "size": "big"}
    assert get(testserver, "/cookies").json() == {}
    assert get(testserver, "/cookies", headers={"Cookie": "novalue; a=1;;b = 2 "}).json() == {"a": "1", "b": "2"}


@pytest.mark.parametrize(("credentials", "status"), [
    ("al:pw", 200), ("al:nope", 401), ("bob:pw", 401), (None, 401),
])
def test_basic_auth(testserver, credentials, status):
    headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()} if credentials else {}
    r = get(testserver, "/basic-auth/al/pw", headers=headers)
    assert r.status == status
    if status == 401:
        assert r.header("www-authenticate") == 'Basic realm="test"'
    else:
        assert r.json() == {"authenticated": True, "user": "al"}


def test_basic_auth_scheme_is_case_insensitive(testserver):
    r = get(testserver, "/basic-auth/u/p", headers={"Authorization": "basic " + base64.b64encode(b"u:p").decode()})
    assert r.status == 200
    assert get(testserver, "/basic-auth/u-without-password").status == 404


def test_chunked_response(testserver):
    with Conn(testserver) as conn:
        r = conn.roundtrip("GET", "/chunked/5")
        assert r.header("transfer-encoding") == "chunked" and r.header("content-length") is None
        assert r.body == b"".join(b"chunk%d\n" % i for i in range(5))
        assert conn.roundtrip("GET", "/chunked/0").body == b""
        assert len(conn.roundtrip("GET", "/chunked/10000").body.splitlines()) == 10000
        assert conn.roundtrip("GET", "/").body == b"ok"


def test_json(testserver):
    r = get(testserver, "/json")
    assert r.header("content-type") == "application/json"
    assert r.json() == {"ok": True, "items": [1, 2, 3]}


def test_response_header_route(testserver):
    r = get(testserver, "/headers/X-Custom-Thing/Hello%20World")
    assert r.status == 200 and r.header("X-CUSTOM-THING") == "Hello World"
    assert get(testserver, "/headers/Bad(Name/v").status == 400
    assert get(testserver, "/headers/X-Ctl/a%0d%0ab").status == 400
    assert get(testserver, "/headers/Content-Length/5").status == 400


@pytest.mark.parametrize("path", ["/nope", "/json/", "/fault/unknown", "/delay", "/__statsx"])
def test_not_found(testserver, path):
    assert get(testserver, path).status == 404


def test_head_request(testserver):
    with Conn(testserver) as conn:
        r = conn.roundtrip("HEAD", "/json")
        assert r.body == b"" and int(r.header("content-length") or 0) > 0
        r = conn.roundtrip("HEAD", "/chunked/3")
        assert r.header("transfer-encoding") == "chunked"
        assert conn.roundtrip("GET", "/").body == b"ok"


def test_absolute_form_target(testserver):
    r = get(testserver, f"http://127.0.0.1:{testserver.port}/echo?q=1")
    assert r.json()["path"] == "/echo" and r.json()["query"] == "q=1"


# ---- framing: pipelining, pieces ----


def test_pipelined_requests_are_answered_in_order(testserver):
    with Conn(testserver) as conn:
        conn.send(b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
                  + b"GET /delay/100 HTTP/1.1\r\nHost: x\r\n\r\n"
                  + b"POST /echo/4 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                  + b"GET /bytes/100000 HTTP/1.1\r\nHost: x\r\n\r\n"
                  + b"GET /echo/6 HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = [conn.read_response() for _ in range(7)]
    assert [r.json()["path"] for r in responses[:3]] == ["/echo/0", "/echo/1", "/echo/2"]
    assert responses[3].body == b"ok"
    assert responses[4].json()["body"] == "abc"
    assert len(responses[5].body) == 100000
    assert responses[6].json()["path"] == "/echo/6"
    assert len({r.connection_id for r in responses}) == 1


def test_many_pipelined_requests(testserver):
    with Conn(testserver) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 5000)
        assert all(conn.read_response().body == b"ok" for _ in range(5000))


def test_request_arriving_byte_by_byte(testserver):
    with Conn(testserver) as conn:
        for byte in b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello":
            conn.send(bytes([byte]))
            time.sleep(0.0005)
        assert conn.read_response().json()["body"] == "hello"


def test_bare_lf_line_ends_and_leading_blank_lines(testserver):
    with Conn(testserver) as conn:
        conn.send(b"\r\n\r\nGET /echo HTTP/1.1\nHost: x\nX-A: 1\n\n")
        assert conn.read_response().json()["headers"]["x-a"] == "1"


# ---- malformed requests ----


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\n\r\n", 400),
    (b"GET / FTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"G(T / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nName : v\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nA: nul\x00inside\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nA: cr\rinside\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 16777217\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000001\r\n", 413),
])
def test_malformed_request_gets_an_error_and_a_close(testserver, raw, status):
    with Conn(testserver) as conn:
        conn.send(raw)
        r = conn.read_response()
        assert r.status == status and r.header("connection") == "close"
        assert conn.is_closed()


def test_header_block_too_large(testserver):
    with Conn(testserver) as conn:
        conn.send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024))
        r = conn.read_response()
        assert r.status == 431 and conn.is_closed()


def test_too_many_headers(testserver):
    with Conn(testserver) as conn:
        conn.send(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(300)) + b"\r\n")
        assert conn.read_response().status == 431


def test_largest_allowed_body(testserver):
    body = b"b" * (16 * 1024 * 1024)
    with Conn(testserver, timeout=30) as conn:
        echo = conn.roundtrip("POST", "/echo", body=body).json()
        assert echo["body_length"] == len(body)


def test_random_junk_never_kills_the_server(testserver):
    rng = random.Random(99)
    for i in range(200):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        if i % 3 == 0:
            junk = b"GET /echo HTTP/1.1\r\n" + junk + b"\r\n\r\n"
        with Conn(testserver, timeout=5) as conn:
            conn.send(junk)
            conn.sock.shutdown(socket.SHUT_WR)
            try:
                conn.read_all()
            except ConnectionResetError:
                pass
    assert get(testserver, "/").body == b"ok"


# ---- faults ----


def test_fault_reset(testserver):
    with Conn(testserver) as conn:
        conn.request("GET", "/fault/reset")
        with pytest.raises(ConnectionResetError):
            conn.read_all()


def test_fault_close_mid_body(testserver):
    with Conn(testserver) as conn:
        conn.request("GET", "/fault/close-mid-body")
        raw = conn.read_all()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 1000\r\n" in head
    assert body == b"x" * 10


def test_fault_never_keeps_the_connection_open(testserver):
    with Conn(testserver) as conn:
        conn.request("GET", "/fault/never")
        assert not conn.is_closed(wait=0.5)
        # More input is read (the server must see the client's close) but never answered.
        conn.request("GET", "/")
        assert not conn.is_closed(wait=0.3)


def test_fault_garbage(testserver):
    with Conn(testserver) as conn:
        conn.request("GET", "/fault/garbage")
        assert conn.read_all() == b"GARBAGE NOT HTTP\r\n\r\n"


def test_fault_empty(testserver):
    with Conn(testserver) as conn:
        conn.request("GET", "/fault/empty")
        assert conn.read_all() == b""


# ---- stats ----


def test_stats_counters(fresh_testserver):
    server = fresh_testserver
    assert server.stats() == {"requests": 0, "open_requests": 0, "peak_open_requests": 0,
                              "connections_total": 0, "connections_open": 0, "peak_connections_open": 0}
    with Conn(server) as a, Conn(server) as b:
        for _ in range(3):
            a.roundtrip("GET", "/")
        b.roundtrip("GET", "/json")
        stats = server.stats()
        assert stats["requests"] == 4
        assert stats["connections_total"] == 2 and stats["connections_open"] == 2
        assert stats["peak_connections_open"] == 2
        assert stats["open_requests"] == 0 and stats["peak_open_requests"] == 1
    deadline = time.monotonic() + 5
    while server.stats()["connections_open"] and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = server.stats()
    assert stats["connections_open"] == 0 and stats["peak_connections_open"] == 2
    # The /__stats requests and their connections were never counted.
    assert stats["requests"] == 4 and stats["connections_total"] == 2


def test_stats_open_requests_count_waiting_requests(fresh_testserver):
    server = fresh_testserver
    conns = [Conn(server) for _ in range(5)]
    try:
        for i, conn in enumerate(conns):
            conn.request("GET", "/fault/never" if i == 0 else "/delay/500")
        time.sleep(0.2)
        stats = server.stats()
        assert stats["open_requests"] == 5 and stats["peak_open_requests"] == 5
        for conn in conns[1:]:
            assert conn.read_response().body == b"ok"
        assert server.stats()["open_requests"] == 1
    finally:
        for conn in conns:
            conn.close()
    deadline = time.monotonic() + 5
    while server.stats()["open_requests"] and time.monotonic() < deadline:
        time.sleep(0.01)
    # Closing the connection ended the request that was never answered.
    assert server.stats()["open_requests"] == 0 and server.stats()["peak_open_requests"] == 5


def test_stats_reset(fresh_testserver):
    server = fresh_testserver
    with Conn(server) as kept:
        kept.roundtrip("GET", "/")
        for _ in range(3):
            get(server, "/")
        kept.request("GET", "/delay/300")
        time.sleep(0.1)
        before = server.stats()
        assert before["requests"] == 5 and before["connections_total"] == 4 and before["open_requests"] == 1
        stats = server.reset_stats()
        # Counters are zeroed; gauges are not; peaks restart from the gauges.
        assert stats == {"requests": 0, "open_requests": 1, "peak_open_requests": 1,
                         "connections_total": 0, "connections_open": 1, "peak_connections_open": 1}
        assert kept.read_response().body == b"ok"
    get(server, "/")
    stats = server.stats()
    assert stats["requests"] == 1 and stats["connections_total"] == 1 and stats["peak_connections_open"] == 1


def test_stats_count_faults_and_errors(fresh_testserver):
    server = fresh_testserver
    for path in ("/fault/reset", "/fault/garbage", "/fault/empty", "/fault/close-mid-body"):
        with Conn(server) as conn:
            conn.request("GET", path)
            try:
                conn.read_all()
            except ConnectionResetError:
                pass
    with Conn(server) as conn:
        conn.send(b"BAD\r\n\r\n")
        conn.read_all()
    time.sleep(0.1)
    stats = server.stats()
    assert stats["requests"] == 5 and stats["open_requests"] == 0 and stats["connections_total"] == 5


def test_twelve_thousand_concurrent_connections(fresh_testserver):
    n = 12_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 200:
        pytest.skip(f"needs {n + 200} file descriptors, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 200, hard))
    server = fresh_testserver
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection((server.host, server.port), timeout=30))
        request = b"GET /delay/1000 HTTP/1.1\r\nHost: x\r\n\r\n"
        for sock in socks:
            sock.sendall(request)
        deadline = time.monotonic() + 30
        while server.stats()["open_requests"] < n and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = server.stats()
        assert stats["connections_open"] == n and stats["open_requests"] == n
        for sock in socks:
            data = b""
            while not data.endswith(b"\r\n\r\nok"):
                chunk = sock.recv(4096)
                assert chunk, "connection closed early"
                data += chunk
        stats = server.stats()
        assert stats["peak_connections_open"] == n and stats["peak_open_requests"] == n
        assert stats["requests"] == n and stats["open_requests"] == 0
    finally:
        for sock in socks:
            sock.close()


# ---- the process ----


def test_stop_is_clean_with_connections_open(fresh_testserver):
    server = fresh_testserver
    conns = [Conn(server) for _ in range(3)]
    try:
        conns[0].request("GET", "/fault/never")
        conns[1].request("GET", "/delay/60000")
        time.sleep(0.1)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 3
        assert server.returncode == 0
        assert all(conn.is_closed() for conn in conns)
    finally:
        for conn in conns:
            conn.close()
    server.stop()  # a second stop is harmless


def test_sigint_stops_the_server(fresh_testserver):
    server = fresh_testserver
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 5
    while server.pid is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.pid is None
    server.stop()
    assert server.returncode == 0


def test_command_line_reports_a_port_in_use(testserver):
    package_root = str(PACKAGE_ROOT)
    env = dict(os.environ, PYTHONPATH=package_root)
    proc = subprocess.run([sys.executable, "-m", "locust_c.testserver", "--port", str(testserver.port)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=package_root)
    assert proc.returncode == 1
    assert "cannot listen on 127.0.0.1" in proc.stderr and "in use" in proc.stderr
    assert proc.stdout == ""


def test_server_dies_with_a_killed_parent():
    """A test run killed outright (no stop(), no atexit) must not leave its server behind."""
    script = (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('ts', {str(PACKAGE_ROOT / 'locust_c' / 'testserver.py')!r})\n"
        "ts = importlib.util.module_from_spec(spec); spec.loader.exec_module(ts)\n"
        "server = ts.TestServer().start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        os.kill(server_pid, 0)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(server_pid, signal.SIGKILL)
            pytest.fail("the server outlived its killed parent")
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


# ---- --stall-every / --stall-for ----


def test_a_stalling_server_holds_every_request_that_arrives_during_a_stall():
    """Stall 300 ms at the end of every second: one request every 20 ms on a keep-alive connection sees each
    stall once, waiting for its end; the requests between stalls are not held."""
    from conftest import load_testserver_module

    with load_testserver_module().TestServer(stall_every=1.0, stall_for_ms=300) as server:
        waits, started = [], time.monotonic()
        with Conn(server) as conn:
            while time.monotonic() - started < 2.5:
                sent = time.monotonic()
                conn.request("GET", "/")
                assert conn.read_response().status == 200
                waits.append(time.monotonic() - sent)
                time.sleep(0.02)
    held = [w for w in waits if w >= 0.1]
    # 2.5 s from about the server's start cross the stalls that end at 1 s and 2 s: each holds one request
    # (the client sends the next one only after the answer), for at most the stall's 300 ms.
    assert len(held) == 2, waits
    assert all(w <= 0.3 + 0.1 for w in held), held
    assert len(waits) - len(held) > 20


@pytest.mark.parametrize("args", [["--stall-every", "1"], ["--stall-for", "100"],
                                  ["--stall-every", "1", "--stall-for", "2000"]])
def test_a_stall_needs_both_options_and_fits_its_period(args):
    run = subprocess.run([sys.executable, "-m", "locust_c.testserver", "--port", "0", *args], capture_output=True,
                         text=True, timeout=30, cwd=PACKAGE_ROOT)
    assert run.returncode == 2 and "--stall-every S and --stall-for MS go together" in run.stderr
