"""The engine's own cookie jar (csrc/cookies.c): RFC 6265 matching of domain, path, expiry and Secure, cookies set
by a redirect sent with its next hop, one jar for a user's http and https requests.

A raw server (tests/rawserver.py) sets the cookies; the C test server's /cookies, on another port of the same
host (cookies do not tell ports apart), says which were sent.
"""

from __future__ import annotations

import pytest
from helpers import session
from rawserver import RawServer

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")


def set_cookie(*lines: str, status: str = "200 OK", extra: str = "") -> list[bytes]:
    head = "".join(f"Set-Cookie: {line}\r\n" for line in lines)
    return [f"HTTP/1.1 {status}\r\n{head}{extra}Content-Length: 0\r\n\r\n".encode()]


@pytest.fixture
def jar():
    """A session on a raw server whose scripts set the cookies; the test server says which were sent."""
    with RawServer() as raw:
        s, rec = session(raw.url)
        try:
            yield raw, s, rec
        finally:
            s.close()


def sent(s, url: str) -> dict[str, str]:
    """The cookies the session sent to ``url`` of the test server, by the /echo route."""
    headers = s.get(url).json()["headers"]
    value = next((v for k, v in headers.items() if k.lower() == "cookie"), "")
    return dict(pair.split("=", 1) for pair in value.split("; ") if pair)


def test_path_attribute_and_default_path(testserver, jar):
    raw, s, _ = jar
    raw.scripts["admin"] = set_cookie("a=1; Path=/echo/x", "p=1; Path=/ech")
    raw.scripts["echo/login"] = set_cookie("b=2")  # no Path: the directory of /echo/login, so /echo
    s.get("/admin")
    s.get("/echo/login")
    assert {c.name: c.path for c in s.cookies} == {"a": "/echo/x", "p": "/ech", "b": "/echo"}
    assert sent(s, f"{testserver.url}/echo/x/y") == {"a": "1", "b": "2"}
    # A path matches as whole segments: /ech is not a directory of /echo, /echo/x not one of /echo/xy.
    assert sent(s, f"{testserver.url}/echo/xy") == {"b": "2"}
    assert sent(s, f"{testserver.url}/echo") == {"b": "2"}


def test_max_age_and_expires_remove_and_max_age_wins(jar):
    raw, s, _ = jar
    raw.scripts["set"] = set_cookie("keep=1; Max-Age=3600", "gone=1; Max-Age=3600", "old=1; Path=/")
    raw.scripts["expire"] = set_cookie("gone=1; Max-Age=0", "old=; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Path=/",
                                       "keep=2; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=60")
    s.get("/set")
    assert {c.name for c in s.cookies} == {"keep", "gone", "old"}
    s.get("/expire")
    cookies = {c.name: c for c in s.cookies}
    assert set(cookies) == {"keep"} and cookies["keep"].value == "2" and cookies["keep"].expires


def test_domain_host_only_and_secure_rules(testserver, jar):
    raw, s, _ = jar
    raw.scripts["set"] = set_cookie("mine=1", "theirs=1; Domain=example.com", "sec=1; Secure", "ip=1; Domain=127.0.0.1")
    s.get("/set")
    # Another domain is refused, and so is a Secure cookie from a plain-http origin; the host's own are kept.
    assert {c.name for c in s.cookies} == {"mine", "ip"}
    assert sent(s, f"{testserver.url}/echo") == {"mine": "1", "ip": "1"}
    # A host-only cookie of 127.0.0.1 does not go to another host name of the same machine.
    assert sent(s, testserver.url.replace("127.0.0.1", "localhost") + "/echo") == {}


def test_a_cookie_set_by_a_redirect_goes_with_the_next_hop(testserver, jar):
    # The common login: POST /login answers 302 with the session cookie, the next page needs it.
    raw, s, rec = jar
    raw.scripts["login"] = set_cookie("session=s3cr3t; Path=/; HttpOnly", status="302 Found",
                                      extra=f"Location: {testserver.url}/cookies\r\n")
    r = s.post("/login", data={"user": "u"})
    assert r.status_code == 200 and r.json() == {"session": "s3cr3t"}
    assert [h.status_code for h in r.history] == [302] and r.url == f"{testserver.url}/cookies"
    assert not rec.failures()


def test_cookies_sent_longest_path_first_then_oldest(testserver, jar):
    raw, s, _ = jar
    raw.scripts["set"] = set_cookie("a=root; Path=/", "b=deep; Path=/echo", "c=later; Path=/")
    s.get("/set")
    assert list(sent(s, f"{testserver.url}/echo").items()) == [("b", "deep"), ("a", "root"), ("c", "later")]


def test_a_jar_holds_a_bounded_number_of_cookies(jar):
    raw, s, _ = jar
    raw.scripts["many"] = set_cookie(*(f"c{i}=v; Path=/" for i in range(400)))
    s.get("/many")
    names = {c.name for c in s.cookies}
    assert len(names) == 300 and "c399" in names  # the newest are kept, the oldest went
