"""HttpUser's requests-style session API on FastCSession: what a locustfile written for HttpUser does in on_start
and in its tasks works on FastCUser with the import changed (session headers, cookies, timeouts, errors)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import local_user, session, unaccepting_port

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")


def echoed_headers(response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.json()["headers"].items()}


def test_session_headers_set_in_on_start_go_with_every_request(testserver):
    def on_start(self):
        self.client.headers.update({"Authorization": "Bearer t0k3n"})
        self.client.headers["X-Tenant"] = "acme"

    user, _ = local_user(testserver.url, on_start=on_start)
    user.on_start()
    try:
        sent = echoed_headers(user.client.get("/echo"))
        assert sent["authorization"] == "Bearer t0k3n" and sent["x-tenant"] == "acme"
        sent = echoed_headers(user.client.get("/echo", headers={"x-tenant": "other"}))  # a request's own wins
        assert sent["x-tenant"] == "other" and sent["authorization"] == "Bearer t0k3n"
        del user.client.headers["X-TENANT"]  # case-insensitive, as requests' Session.headers
        assert "x-tenant" not in echoed_headers(user.client.get("/echo"))
        user.client.headers = {"X-Only": "1"}
        sent = echoed_headers(user.client.get("/echo"))
        assert sent["x-only"] == "1" and "authorization" not in sent
        # A new mapping whose count of changes equals the old one's (one item, as {"X-Only": "1"} had) still counts.
        user.client.headers = {"X-Other": "2"}
        sent = echoed_headers(user.client.get("/echo"))
        assert sent["x-other"] == "2" and "x-only" not in sent
    finally:
        user.client.close()


def test_a_login_cookie_is_read_back_and_sent_with_request_cookies(testserver):
    import requests.cookies  # after Locust's gevent patching (helpers imports Locust)

    s, _ = session(testserver.url)
    try:
        login = s.get("/cookies/set?session_id=abc", allow_redirects=False)
        assert login.cookies.get("session_id") == "abc"
        assert isinstance(login.cookies, requests.cookies.RequestsCookieJar)
        sent = echoed_headers(s.get("/echo", cookies={"extra": "1"}))
        assert sent["cookie"] == "session_id=abc; extra=1"  # one header: the jar's cookies and the request's
        assert "extra" not in echoed_headers(s.get("/echo"))["cookie"]  # cookies= is for that request only
    finally:
        s.close()


def test_a_request_timeout_overrides_the_sessions_for_that_request_only(testserver):
    s, _ = session(testserver.url, network_timeout=0.5)
    try:
        assert s.get("/delay/1000", timeout=3).status_code == 200
        assert s.get("/delay/1000", timeout=(None, 3)).status_code == 200
        r = s.get("/delay/1000")  # the session's own 0.5 s again, on the same pooled handle
        assert isinstance(r.error, TimeoutError)
        r = s.get("/fault/never", timeout=0.2)
        assert isinstance(r.error, TimeoutError)
    finally:
        s.close()


def test_responses_and_errors_speak_requests(testserver):
    import requests.exceptions

    s, _ = session(testserver.url)
    try:
        r = s.get("/")
        assert isinstance(r.elapsed, timedelta)
        assert abs(r.elapsed.total_seconds() * 1000 - r._result.response_time) < 0.001  # timedelta keeps whole µs
        bad = s.get("/status/404")
        try:
            bad.raise_for_status()
        except requests.exceptions.HTTPError as e:  # what HttpUser code catches
            assert isinstance(e, requests.exceptions.RequestException) and e.code == 404
        else:
            raise AssertionError("raise_for_status did not raise")
    finally:
        s.close()


def test_history_lists_the_redirects_followed(testserver):
    s, _ = session(testserver.url)
    try:
        r = s.get("/redirect/3")
        assert r.status_code == 200 and r.url == f"{testserver.url}/redirect/0"
        assert [(h.status_code, h.url) for h in r.history] == [
            (302, f"{testserver.url}/redirect/3"), (302, f"{testserver.url}/redirect/2"),
            (302, f"{testserver.url}/redirect/1")]
        assert all(h.is_redirect for h in r.history) and r.history[0].headers["location"] == "/redirect/2"
        assert s.get("/").history == [] and s.get("/redirect/1", allow_redirects=False).history == []
    finally:
        s.close()


def test_errors_are_requests_classes_and_fasthttpusers_too():
    """HttpUser code catches requests' classes; FastHttpUser's reports show the built-in ones. Both hold."""
    import requests.exceptions

    with unaccepting_port() as port:
        s, rec = session(f"http://127.0.0.1:{port}", connection_timeout=0.2)
        try:
            r = s.get("/")
            assert isinstance(r.error, TimeoutError) and isinstance(r.error, requests.exceptions.ConnectTimeout)
            assert repr(rec.last["exception"]) == "TimeoutError('connect timed out')"
            with pytest.raises(requests.exceptions.RequestException):
                r.raise_for_status()
        finally:
            s.close()
    s, rec = session("http://127.0.0.1:1")  # nothing listens on port 1
    try:
        r = s.get("/")
        assert isinstance(r.error, ConnectionRefusedError) and isinstance(r.error, requests.exceptions.ConnectionError)
        assert repr(r.error) == "ConnectionRefusedError(111, 'Connection refused')"
    finally:
        s.close()


def test_a_bad_status_names_the_request_by_its_name(testserver):
    """Locust groups failures by name; the text says which name failed, in requests' words and FastHttpUser's."""
    user, env = local_user(testserver.url)
    try:
        for i in range(3):
            user.client.get(f"/status/404?item={i}", name="/item")
        (error,) = env.runner.stats.errors.values()
        assert error.occurrences == 3
        assert str(user.client.get("/status/503", name="/s").error) == \
            "503 Server Error: Service Unavailable for url: /s (code=503)"
    finally:
        user.client.close()


@pytest.mark.parametrize(("base_url", "error"), [("http://\x94", "InvalidURL"), ("telnet://127.0.0.1", "InvalidSchema"),
                                                 ("127.0.0.1", "MissingSchema")])
def test_a_malformed_host_raises_requests_error_at_the_first_request(base_url, error):
    import requests.exceptions

    s, rec = session(base_url)
    with pytest.raises(getattr(requests.exceptions, error)):
        s.get("/")
    assert rec.calls == [] and s._client is None  # nothing was sent, and no engine client was made


def test_auth_as_a_pair_an_httpbasicauth_or_the_sessions(testserver):
    from requests.auth import HTTPBasicAuth

    s, _ = session(testserver.url)
    try:
        assert s.get("/basic-auth/u/p", auth=HTTPBasicAuth("u", "p")).status_code == 200
        assert s.get("/basic-auth/u/p", auth=("u", "p")).status_code == 200
        assert s.get("/basic-auth/u/p").status_code == 401
        s.auth = ("u", "p")  # requests' Session.auth
        assert s.get("/basic-auth/u/p").status_code == 200
        assert s.get("/basic-auth/u/p", auth=("u", "wrong")).status_code == 401  # a request's own replaces it
        sent = echoed_headers(s.get("/echo", auth=("a", "b")))
        assert sent["authorization"] == "Basic YTpi"  # one Authorization header, the request's
        s.auth = None
        assert s.get("/basic-auth/u/p").status_code == 401
        with pytest.raises(TypeError, match="HTTPBasicAuth"):
            s.get("/", auth=object())
    finally:
        s.close()


def test_a_multipart_upload_sends_every_part_as_requests_does(testserver, tmp_path):
    import email.parser

    upload = tmp_path / "report.csv"
    upload.write_bytes(b"a,b\n1,2\n")
    s, _ = session(testserver.url)
    try:
        with upload.open("rb") as f:
            r = s.post("/echo", data={"kind": "csv", "tags": ["x", "y"]},
                       files={"report": f, "raw": b"\x00\x01", "img": ("a.png", b"PNG", "image/png", {"X-Part": "1"})})
        echoed = r.json()
        content_type = echoed["headers"]["content-type"]
        assert content_type.startswith("multipart/form-data; boundary=")
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + echoed["body"].encode("latin1"))
        parts = [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_content_type(),
                  p.get_payload(decode=True), p.get("x-part")) for p in message.get_payload()]
        assert parts == [
            ("kind", None, "text/plain", b"csv", None), ("tags", None, "text/plain", b"x", None),
            ("tags", None, "text/plain", b"y", None),
            # requests gives a part a Content-Type only when the tuple names one (the reader's default is text/plain)
            ("report", "report.csv", "text/plain", b"a,b\n1,2\n", None),
            ("raw", "raw", "text/plain", b"\x00\x01", None),
            ("img", "a.png", "image/png", b"PNG", "1")]
        assert isinstance(r.request.body, bytes) and r.request.body.count(b"Content-Disposition: form-data") == 6
    finally:
        s.close()


def test_network_timeout_bounds_each_wait_not_the_whole_request():
    """FastHttpUser's network_timeout is a socket timeout: a body that stalls fails, a slow but steady one does not.
    request_timeout bounds the whole request."""
    import requests.exceptions
    from rawserver import KEEP, RawServer

    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    scripts = {"stall": [head, b"12345", 1.5, b"67890", KEEP],
               "steady": [head, *[step for byte in b"0123456789" for step in (bytes([byte]), 0.1)], KEEP],
               "late": [2.0, head, b"0123456789", KEEP]}
    with RawServer(scripts) as server:
        s, rec = session(server.url, network_timeout=0.4)
        try:
            r = s.get("/stall")
            assert r.status_code == 0 and isinstance(r.error, requests.exceptions.ReadTimeout), repr(r.error)
            assert isinstance(r.error, TimeoutError) and "no data from the server for 400 ms" not in repr(r.error)
            # It fired while the server stalled, not when it resumed. (libcurl's timer and the response time, taken
            # from the engine's clock less the loop's lag, may part by a fraction of a millisecond.)
            assert 390 <= rec.last["response_time"] < 1500
            r = s.get("/steady")  # about a second in all, no wait longer than 0.1 s
            assert r.error is None and r.content == b"0123456789"
            assert isinstance(s.get("/late").error, TimeoutError)  # the answer itself must begin in time
            assert s.get("/late", timeout=(None, 3)).content == b"0123456789"  # requests' (connect, read)
        finally:
            s.close()
        s, rec = session(server.url, network_timeout=0.4, request_timeout=0.5)
        try:
            r = s.get("/steady")
            assert isinstance(r.error, TimeoutError) and 500 <= rec.last["response_time"] < 900
        finally:
            s.close()


def test_a_users_session_headers_are_its_own(testserver):
    # Sessions with the same default headers share them until one changes them: the change is that user's alone.
    a, _ = session(testserver.url, headers={"X-Team": "red"})
    b, _ = session(testserver.url, headers={"X-Team": "red"})
    try:
        a.headers["X-Team"] = "blue"
        a.auth = ("u", "p")
        assert echoed_headers(a.get("/echo"))["x-team"] == "blue"
        sent = echoed_headers(b.get("/echo"))
        assert sent["x-team"] == "red" and "authorization" not in sent
        assert b.headers["X-Team"] == "red"
    finally:
        a.close()
        b.close()


def test_request_timeout_bounds_the_redirects_together():
    # Each hop answers within the limit, the three together do not: the engine follows them, and its clock is the
    # request's, not the hop's.
    from rawserver import KEEP, RawServer

    def hop(to: str) -> list:
        return [0.3, f"HTTP/1.1 302 Found\r\nLocation: /{to}\r\nContent-Length: 0\r\n\r\n".encode(), KEEP]

    scripts = {"a": hop("b"), "b": hop("c"), "c": [0.3, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", KEEP]}
    with RawServer(scripts) as server:
        s, _ = session(server.url, request_timeout=0.5)
        try:
            assert s.get("/c").content == b"ok"
            r = s.get("/a")
            assert r.status_code == 0 and isinstance(r.error, TimeoutError), repr(r.error)
        finally:
            s.close()


def test_client_cookies_show_what_the_server_set_and_send_what_python_sets(testserver):
    """HttpUser's client.cookies (requests' RequestsCookieJar) over the jar the engine keeps for the user."""
    import requests.cookies

    user, _ = local_user(testserver.url)
    client = user.client
    try:
        client.get("/cookies/set?session_id=abc&theme=light")
        jar = client.cookies
        assert isinstance(jar, requests.cookies.RequestsCookieJar)
        assert jar.get("session_id") == "abc" and jar.get_dict() == {"session_id": "abc", "theme": "light"}
        assert client.cookiejar.get("theme") == "light"  # FastHttpSession's name for the same jar
        client.cookies.set("theme", "dark")  # replaces the server's cookie of the same name, domain and path
        client.cookies.set("tenant", "acme", domain="127.0.0.1", path="/")
        assert client.get("/cookies").json() == {"session_id": "abc", "theme": "dark", "tenant": "acme"}
        del client.cookies["session_id"]
        assert client.get("/cookies").json() == {"theme": "dark", "tenant": "acme"}
        client.cookies = {"only": "1"}  # requests-style replacement of the whole jar
        assert client.get("/cookies").json() == {"only": "1"}
        client.cookies.clear()
        assert client.get("/cookies").json() == {} and len(client.cookies) == 0
        with pytest.raises(ValueError, match="CR, LF"):
            client.cookies.set("bad", "a\nb")
    finally:
        client.close()


def test_cookies_set_from_python_survive_an_idle_user_being_set_aside(testserver):
    user, _ = local_user(testserver.url)
    client = user.client
    try:
        client.get("/cookies/set?sid=1")
        client.cookies.set("extra", "2", domain="127.0.0.1")
        client._client.set_aside()
        assert client.cookies.get_dict() == {"sid": "1", "extra": "2"}
        assert client.get("/cookies").json() == {"sid": "1", "extra": "2"}
    finally:
        client.close()


def test_text_follows_the_charset_of_content_type_and_encoding_overrides_it():
    from rawserver import KEEP, RawServer

    scripts = {"latin": [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n"
                         b"Content-Length: 4\r\n\r\ncaf\xe9", KEEP],
               "json": [b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n'
                        b'{"a": "caf\xc3\xa9"}', KEEP]}
    with RawServer(scripts) as server:
        s, _ = session(server.url)
        try:
            assert s.get("/latin").text == "café"
            r = s.get("/latin")
            r.encoding = "utf-8"  # set before reading, as with requests
            assert r.text == "caf\ufffd"
            assert s.get("/json").json() == {"a": "café"}  # no charset: UTF-8
        finally:
            s.close()


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"a": [1, 2.5, null, true], "b": "\xc3\xa9"}', {"a": [1, 2.5, None, True], "b": "\u00e9"}),
    (b'[NaN, 123456789012345678901234567890]', None),  # orjson refuses both: json's answer, as with requests
    (b'"\xff not utf-8"', "\ufffd not utf-8"),         # invalid UTF-8: decoded with replacement, as text is
])
def test_response_json_is_what_json_loads_gives_for_the_text(body, expected):
    import json
    import math

    from rawserver import KEEP, RawServer

    def answer(data: bytes) -> list:
        return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(data), data), KEEP]

    with RawServer({"j": answer(body), "bad": answer(b"{oops")}) as server:
        s, _ = session(server.url)
        try:
            r = s.get("/j")
            parsed = r.json()
            assert type(parsed) is type(json.loads(r.text))
            if expected is None:
                assert math.isnan(parsed[0]) and parsed[1] == 123456789012345678901234567890
            else:
                assert parsed == expected
            with pytest.raises(json.JSONDecodeError):
                s.get("/bad").json()
        finally:
            s.close()
