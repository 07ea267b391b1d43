"""FastCSession against the C test server: the FastHttpSession API, request by request, on real sockets."""

from __future__ import annotations

import json

import pytest
from helpers import session
from locust.exception import CatchResponseError, InterruptTaskSet, LocustError, ResponseError

from locust_c import FastCResponse, ResponseContextManager
from locust_c.exceptions import BadStatusCode, TooManyRedirects

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")


@pytest.fixture
def client(testserver):
    s, rec = session(testserver.url)
    yield s, rec
    s.close()


def test_get_response_fields(client, testserver):
    s, rec = client
    r = s.get("/json")
    assert isinstance(r, FastCResponse)
    assert r.status_code == 200 and r.ok and r.error is None
    assert r.json() == {"ok": True, "items": [1, 2, 3]}
    assert r.text == r.content.decode()
    assert r.headers["Content-Type"] == r.headers["content-type"] == "application/json"
    assert r.reason == "OK"
    assert r.url == testserver.url + "/json"
    assert r.request.method == "GET" and r.request.url == testserver.url + "/json"
    r.raise_for_status()
    call = rec.last
    assert call["request_type"] == "GET" and call["name"] == "/json"
    assert call["response_length"] == len(r.content)
    assert call["exception"] is None and call["response"] is r
    assert call["url"] == testserver.url + "/json" and call["context"] == {}
    assert call["response_time"] > 0 and call["start_time"] > 1e9


def test_response_time_is_measured_in_the_engine(client):
    s, rec = client
    s.get("/delay/150")
    assert 150 <= rec.last["response_time"] < 1500


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_each_method_reaches_the_server(client, method):
    s, _ = client
    r = s.request(method, "/echo")
    assert r.status_code == 200
    assert r.json()["method"] == method


def test_verb_helpers_and_head(client):
    s, _ = client
    assert s.get("/echo").json()["method"] == "GET"
    assert s.post("/echo", data=b"x").json()["method"] == "POST"
    assert s.put("/echo", data=b"x").json()["method"] == "PUT"
    assert s.patch("/echo", data=b"x").json()["method"] == "PATCH"
    assert s.delete("/echo").json()["method"] == "DELETE"
    assert s.options("/echo").json()["method"] == "OPTIONS"
    r = s.head("/bytes/100")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "100"


def test_bodies_bytes_str_form_and_json(client):
    s, _ = client
    echo = s.post("/echo", data=b"\x00raw\xff").json()
    assert echo["body_length"] == 5 and "content-type" not in echo["headers"]
    assert s.post("/echo", data="h\u00e9llo").json()["body"] == "h\u00e9llo"
    form = s.post("/echo", data={"a": "1", "b": ["x", "y"]}).json()
    assert form["body"] == "a=1&b=x&b=y"
    assert form["headers"]["content-type"] == "application/x-www-form-urlencoded"
    js = s.post("/echo", json={"k": [1, 2]}).json()
    assert json.loads(js["body"]) == {"k": [1, 2]}
    assert js["headers"]["content-type"] == "application/json"
    assert js["headers"]["accept"] == "application/json"
    big = s.put("/echo", data=b"z" * 300_000).json()
    assert big["body_length"] == 300_000 and "expect" not in big["headers"]


def test_params_headers_auth_and_defaults(testserver):
    s, _ = session(testserver.url, headers={"X-Default": "d", "X-Over": "default"})
    try:
        echo = s.get("/echo", params={"q": "a b", "n": 2}, headers={"x-over": "mine"}, auth=("al", "pw")).json()
        assert echo["query"] == "q=a+b&n=2"
        assert echo["headers"]["x-default"] == "d"
        assert echo["headers"]["x-over"] == "mine"
        assert echo["headers"]["authorization"] == "Basic YWw6cHc="
        assert echo["headers"]["user-agent"].startswith("locust-c/")
        assert s.get("/basic-auth/al/pw", auth=("al", "pw")).status_code == 200
        assert s.get("/basic-auth/al/pw").status_code == 401
    finally:
        s.close()


def test_credentials_in_host_become_basic_auth(testserver):
    s, _ = session(testserver.url.replace("http://", "http://al:pw@"))
    try:
        assert s.get("/basic-auth/al/pw").status_code == 200
    finally:
        s.close()


def test_absolute_url_and_name(client, testserver):
    s, rec = client
    r = s.get(testserver.url + "/status/204", name="grouped")
    assert r.status_code == 204 and rec.last["name"] == "grouped"
    with s.rename_request("renamed"):
        s.get("/")
    assert rec.last["name"] == "renamed"
    s.get("/", context={"tenant": 7})
    assert rec.last["context"] == {"tenant": 7}


def test_http_error_is_a_recorded_failure(client, testserver):
    s, rec = client
    r = s.get("/status/503")
    assert r.status_code == 503 and not r.ok
    assert isinstance(r.error, BadStatusCode) and r.error.code == 503
    assert isinstance(rec.last["exception"], BadStatusCode)
    with pytest.raises(BadStatusCode):
        r.raise_for_status()


def test_redirects(client, testserver):
    s, rec = client
    r = s.get("/redirect/3")
    assert r.status_code == 200 and r.text == "redirected"
    assert r.url == testserver.url + "/redirect/0"
    assert rec.last["name"] == "/redirect/3"
    r = s.get("/redirect/3", allow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/redirect/2"
    assert s.get("/absolute-redirect/2").status_code == 200


def test_too_many_redirects(testserver):
    s, rec = session(testserver.url, max_redirects=2)
    try:
        r = s.get("/redirect/5")
        assert r.status_code == 0 and isinstance(r.error, TooManyRedirects)
        assert isinstance(rec.last["exception"], TooManyRedirects)
    finally:
        s.close()


def test_post_redirect_becomes_get(client):
    s, _ = client
    r = s.post("/redirect/1", data=b"x")
    assert r.status_code == 200


def test_chunked_and_large_bodies(client):
    s, rec = client
    r = s.get("/chunked/5")
    assert r.text == "".join(f"chunk{i}\n" for i in range(5))
    r = s.get("/bytes/3000000")
    assert len(r.content) == 3_000_000
    assert rec.last["response_length"] == 3_000_000


def test_catch_response_success_overrides_status(client):
    s, rec = client
    with s.get("/status/404", catch_response=True) as r:
        assert isinstance(r, ResponseContextManager)
        assert not rec.calls  # reported when the block exits
        r.success()
    assert rec.last["exception"] is None


def test_catch_response_failure_on_ok_status(client):
    s, rec = client
    with s.get("/", catch_response=True) as r:
        r.failure("wrong body")
    assert isinstance(rec.last["exception"], CatchResponseError)
    assert str(rec.last["exception"]) == "wrong body"


def test_catch_response_default_uses_status(client):
    s, rec = client
    with s.get("/status/500", catch_response=True):
        pass
    assert isinstance(rec.last["exception"], BadStatusCode)
    with s.get("/", catch_response=True):
        pass
    assert rec.last["exception"] is None and len(rec.calls) == 2


def test_catch_response_exceptions_in_block(client):
    s, rec = client
    with pytest.raises(ZeroDivisionError):
        with s.get("/", catch_response=True):
            1 / 0  # noqa: B018
    assert rec.calls == []  # an unexpected error propagates and the request is not reported
    with pytest.raises(InterruptTaskSet):
        with s.get("/", catch_response=True):
            raise InterruptTaskSet()
    assert rec.calls == []
    with s.get("/", catch_response=True):
        raise ResponseError("bad payload")
    assert isinstance(rec.last["exception"], ResponseError)


def test_catch_response_without_with(client):
    s, rec = client
    r = s.get("/", catch_response=True)
    with pytest.raises(LocustError):
        r.success()
    with pytest.raises(LocustError):
        s.get("/").failure("x")
    assert len(rec.calls) == 1  # only the plain request was reported


def test_cookies_are_kept_per_session(testserver):
    a, _ = session(testserver.url)
    b, _ = session(testserver.url)
    try:
        a.get("/cookies/set?flavour=oat")
        assert a.get("/cookies").json() == {"flavour": "oat"}
        assert b.get("/cookies").json() == {}
    finally:
        a.close()
        b.close()


def test_connections_are_kept_alive_and_owned_per_session(testserver):
    a, _ = session(testserver.url)
    b, _ = session(testserver.url)
    try:
        ids_a = {a.get("/").headers["x-connection-id"] for _ in range(5)}
        ids_b = {b.get("/").headers["x-connection-id"] for _ in range(5)}
        assert len(ids_a) == 1 and len(ids_b) == 1
        assert ids_a != ids_b
        before = testserver.stats()["connections_open"]
        a.close()
        b.close()
        for _ in range(100):
            if testserver.stats()["connections_open"] <= before - 2:
                break
            import gevent

            gevent.sleep(0.02)
        assert testserver.stats()["connections_open"] <= before - 2
    finally:
        a.close()
        b.close()


def test_closed_session_refuses_requests(testserver):
    s, _ = session(testserver.url)
    s.get("/")
    s.close()
    with pytest.raises(LocustError):
        s.get("/")


def test_iter_content_and_text_encoding(client):
    s, _ = client
    r = s.get("/bytes/2500")
    chunks = list(r.iter_content(chunk_size=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    r.encoding = "latin1"
    assert r.text == "x" * 2500


def test_requests_go_through_the_proxy(testserver):
    import subprocess
    import sys
    from pathlib import Path

    proxy = subprocess.Popen([sys.executable, str(Path(__file__).parent / "servers" / "proxy.py")],
                             stdout=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline())
        s, _ = session(testserver.url, proxy_host="127.0.0.1", proxy_port=port)
        try:
            r = s.post("/echo", json={"via": "proxy"})
            assert r.status_code == 200 and r.headers["x-proxied-by"] == "test-proxy"
            assert json.loads(r.json()["body"]) == {"via": "proxy"}
        finally:
            s.close()
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def test_iter_lines(client):
    s, rec = client
    assert list(s.iter_lines("/chunked/3")) == ["chunk0", "chunk1", "chunk2"]
    assert rec.last["name"] == "/chunked/3"
    with pytest.raises(BadStatusCode):
        list(s.iter_lines("/status/500"))
