"""The native transport and libcurl, side by side: the same randomized request sequences (methods, headers, bodies,
query strings, redirects, cookies, chunked and compressed responses, faults) through a user on each, compared
response by response.

What must be equal: the status, the response headers and body, the redirects followed, the final URL, the
exception class of a failure, what the server saw of each request (the test server's /echo), and the user's cookies
at the end. Error messages may be worded apart; Date and connection numbers differ by nature.
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from typing import Any

import brotli
import pytest
from helpers import session
from rawserver import KEEP, RawServer

BODY = b"the quick brown fox jumps over the lazy dog " * 40


def raw_scripts() -> dict[str, list[Any]]:
    """Responses the C test server does not send: compressed bodies, in every framing, and faults."""
    def framed(coding: str, packed: bytes, chunked: bool) -> bytes:
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nSet-Cookie: seen_{coding}=1; Path=/\r\n"
        if not chunked:
            return f"{head}Content-Length: {len(packed)}\r\n\r\n".encode() + packed
        pieces = [packed[i:i + 100] for i in range(0, len(packed), 100)]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
        return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"

    packed = {"gzip": gzip.compress(BODY), "deflate": zlib.compress(BODY), "br": brotli.compress(BODY)}
    scripts: dict[str, list[Any]] = {}
    for coding, data in packed.items():
        scripts[f"{coding}"] = [framed(coding, data, False), KEEP]
        scripts[f"{coding}-chunked"] = [framed(coding, data, True), KEEP]
    scripts["corrupt"] = [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\nnot-gzip-at!", KEEP]
    scripts["cut"] = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"]
    scripts["empty"] = []
    scripts["garbage"] = [b"\x00\x01 not http at all\r\n\r\n"]
    scripts["bad-length"] = [b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\nxyz"]
    scripts["to-close"] = [b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes"]
    scripts["login"] = [b"HTTP/1.1 303 See Other\r\nSet-Cookie: sid=abc; Path=/; HttpOnly\r\nLocation: /landing\r\n"
                        b"Content-Length: 0\r\n\r\n", KEEP]
    scripts["landing"] = [b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nwelcome", KEEP]
    scripts["no-content"] = [b"HTTP/1.1 204 No Content\r\n\r\n", KEEP]
    return scripts


def sequence(rng: random.Random, local: str, raw: str, length: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url, keyword arguments) of a randomized user session."""
    out = []
    raw_names = sorted(raw_scripts())
    for _ in range(length):
        method = rng.choice(["GET", "GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        kind = rng.random()
        if kind < 0.35:
            url = f"{local}/echo/{rng.randrange(100)}?q={rng.randrange(1000)}&x=%20y"
        elif kind < 0.45:
            url = f"{local}/{rng.choice(['redirect', 'absolute-redirect'])}/{rng.randrange(1, 4)}"
        elif kind < 0.55:
            url = f"{local}/cookies/set?k{rng.randrange(5)}=v{rng.randrange(100)}"
        elif kind < 0.62:
            url = f"{local}/cookies"
        elif kind < 0.70:
            url = f"{local}/{rng.choice(['bytes', 'chunked'])}/{rng.choice([0, 1, 7, 1000, 70000])}"
        elif kind < 0.76:
            url = f"{local}/status/{rng.choice([200, 201, 204, 301, 304, 404, 500])}"
        else:
            url = f"{raw}/{rng.choice(raw_names)}"
        kwargs: dict[str, Any] = {}
        if rng.random() < 0.4:
            kwargs["headers"] = {rng.choice(["X-Trace", "Accept", "X-Empty", "Content-Type"]): rng.choice(
                ["1", "text/html", "application/json; charset=utf-8", "a, b"])}
        if method in ("POST", "PUT", "PATCH", "DELETE") and rng.random() < 0.7:
            choice = rng.random()
            if choice < 0.3:
                kwargs["json"] = {"n": rng.randrange(10), "s": "é"}
            elif choice < 0.6:
                kwargs["data"] = {"a": str(rng.randrange(10)), "b": "x y"}
            else:
                kwargs["data"] = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 100, 5000])))
        if rng.random() < 0.1:
            kwargs["allow_redirects"] = False
        if rng.random() < 0.1:
            kwargs["cookies"] = {"extra": str(rng.randrange(9))}
        out.append((method, url, kwargs))
    return out


def view(r: Any) -> Any:
    """What a user sees of a response, without what differs by nature (Date, connection numbers)."""
    if r.error is not None and r.status_code == 0:
        return ("failure", type(r.error).__name__)
    headers = {k.lower(): v for k, v in r.headers.items() if k.lower() not in ("date", "x-connection-id")}
    body: Any = r.content
    if headers.get("content-type", "").startswith("application/json") and body:
        body = json.loads(body)
        if isinstance(body, dict):
            body.pop("connection_id", None)
    return (r.status_code, headers, body, [h.status_code for h in r.history], r.url,
            type(r.error).__name__ if r.error else None)


def run_sequence(monkeypatch: pytest.MonkeyPatch, transport: str, steps: list[Any], base: str) -> tuple[list, dict]:
    monkeypatch.setenv("LOCUST_C_TRANSPORT", transport)
    s, _ = session(base, network_timeout=5)
    try:
        views = [view(s.request(method, url, **kwargs)) for method, url, kwargs in steps]
        return views, {(c.name, c.domain, c.path): c.value for c in s.cookies}
    finally:
        s.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_transports_give_the_same_results(testserver, monkeypatch, seed):
    with RawServer(raw_scripts()) as raw:
        steps = sequence(random.Random(seed), testserver.url, raw.url, 80)
        native, native_jar = run_sequence(monkeypatch, "auto", steps, testserver.url)
        curl, curl_jar = run_sequence(monkeypatch, "curl", steps, testserver.url)
    for i, (a, b) in enumerate(zip(native, curl, strict=True)):
        assert a == b, (i, steps[i], a, b)
    assert native_jar == curl_jar and native_jar  # the sequences do set cookies
