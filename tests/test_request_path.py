"""The request path in C (csrc/py_session.c) and the one in Python (FastCSession._request) are one behaviour:
the common request() / get() / post() runs in C, any other argument sends it through Python, and a user cannot
tell which one ran: same bytes on the wire, same response, same statistics, same errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import local_user

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")

ORDER = {"customer": 4711, "items": [{"sku": "A-1", "qty": 2}], "note": "caf\u00e9", "coupon": None}


def sent(response) -> tuple:
    """What the server received: method, path, headers in the order sent, body."""
    echo = response.json()
    return echo["method"], echo["path"], list(echo["headers"].items()), echo["body"]


@pytest.fixture
def probe(testserver) -> Iterator[tuple[Any, Any]]:
    """(user, env): a FastCUser under a Locust runner whose client is connected. The C path needs that: a user's
    first request is Python's, which connects. Closed at the end."""
    user, env = local_user(testserver.url)
    user.client.get("/")
    try:
        yield user, env
    finally:
        user.client.close()


def both_paths(client, method: str, url: str, **kwargs):
    """The same request through the C path and through the Python one (an empty params= is a no-op that only
    the Python path takes)."""
    return client.request(method, url, **kwargs), client.request(method, url, params={}, **kwargs)


@pytest.mark.parametrize("kwargs", [
    {},
    {"headers": {"X-Trace": "1", "Accept-Language": "en", "X-Bytes": b"\xe9t\xe9", "X-Int": 7, "X-None": None,
                 "X-Empty": ""}},
    {"json": ORDER},
    {"json": ORDER, "headers": {"Authorization": "Bearer t", "Content-Type": "application/vnd.api+json"}},
    {"json": [], "headers": {"accept": "text/plain", "expect": ""}},
    {"data": {"a": "1", "b": ["2", "3"]}},
    {"data": "plain text", "headers": {"X-A": "b"}},
    {"headers": {"User-Agent": "mine"}},  # replaces a session header
], ids=["plain", "headers", "json", "json-own-type", "json-own-accept", "form", "text", "replaces-session"])
def test_the_c_path_sends_what_the_python_path_sends(probe, kwargs):
    user, _ = probe
    user.client.headers["X-Session"] = "s"
    fast, slow = both_paths(user.client, "POST", "/echo", **kwargs)
    assert sent(fast) == sent(slow)
    assert (fast.request.headers, fast.request.body) == (slow.request.headers, slow.request.body)
    assert (fast.status_code, fast.url) == (200, slow.url)
    assert fast.headers["content-type"] == slow.headers["content-type"]


def test_both_paths_count_alike_in_locusts_statistics(probe):
    user, env = probe
    for _ in range(3):
        both_paths(user.client, "GET", "/", name="home")
        both_paths(user.client, "GET", "/status/503", name="down")
        with user.client.post("/echo", json=ORDER, name="order", catch_response=True) as r:
            if r.json()["body"]:
                r.failure("a failure the block decided")
        with user.client.post("/echo", json=ORDER, name="order", catch_response=True, params={}) as r:
            if r.json()["body"]:
                r.failure("a failure the block decided")
    stats = env.runner.stats
    assert (stats.get("home", "GET").num_requests, stats.get("home", "GET").num_failures) == (6, 0)
    assert (stats.get("down", "GET").num_requests, stats.get("down", "GET").num_failures) == (6, 6)
    assert (stats.get("order", "POST").num_requests, stats.get("order", "POST").num_failures) == (6, 6)


def test_get_and_post_take_their_positional_arguments_and_refuse_others(probe):
    user, _ = probe
    assert sent(user.client.post("/echo", b"raw"))[3] == "raw"
    assert sent(user.client.post("/echo", None, {"k": 1}))[3] == '{"k": 1}'
    with pytest.raises(TypeError, match="positional"):
        user.client.get("/echo", "name")
    with pytest.raises(TypeError, match="multiple values for argument 'data'"):
        user.client.post("/echo", b"a", data=b"b")
    with pytest.raises(TypeError, match="unexpected keyword argument.*colour"):
        user.client.get("/echo", colour="blue")
    with pytest.raises(TypeError, match="header names must be str"):
        user.client.post("/echo", json={}, headers={1: "x"})
    assert user.client.get("/echo", name="fine").status_code == 200  # nothing was left behind


def test_a_session_subclass_that_overrides_request_sees_get_and_post(testserver):
    from locust_c import FastCSession

    seen = []

    class Tracing(FastCSession):
        def request(self, method, url, **kwargs):
            seen.append((method, url))
            return super().request(method, url, **kwargs)

    user, env = local_user(testserver.url)
    s = Tracing(testserver.url, env.events.request, user)
    try:
        assert s.get("/").status_code == 200
        assert s.post("/echo", json={}).status_code == 200
        assert seen == [("GET", "/"), ("POST", "/echo")]
    finally:
        s.close()


def test_catch_response_gives_the_block_what_the_python_path_gives(probe):
    user, env = probe
    blocks = []
    for extra in ({}, {"params": {}}):
        with user.client.post("/echo", json=ORDER, name="order", catch_response=True, context={"k": 1},
                              **extra) as r:
            blocks.append(r)
            assert r.json()["method"] == "POST"
    fast, slow = blocks
    assert type(fast) is type(slow)
    varying = ("response", "start_time", "response_time")
    assert {k: v for k, v in fast.request_meta.items() if k not in varying} == \
        {k: v for k, v in slow.request_meta.items() if k not in varying}
    assert type(fast.request_meta["response"]) is type(slow.request_meta["response"])
    assert (fast.status_code, fast.error, fast.url) == (200, None, slow.url)
    entry = env.runner.stats.get("order", "POST")
    assert (entry.num_requests, entry.num_failures) == (2, 0)


def test_the_url_may_be_given_by_keyword(probe):
    user, _ = probe
    assert sent(user.client.get(url="/echo"))[:2] == ("GET", "/echo")
    assert sent(user.client.post(url="/echo", json={"k": 1}))[3] == '{"k": 1}'
    assert sent(user.client.request("PUT", url="/echo", data="x"))[::3] == ("PUT", "x")
    with pytest.raises(TypeError, match="url"):
        user.client.get()


def test_a_session_closed_while_its_request_waits_ends_that_request_as_cancelled(probe):
    import gevent

    from locust_c.exceptions import RequestCancelled

    user, _ = probe
    waiting = [gevent.spawn(user.client.get, "/delay/3000", name=f"slow {i}") for i in range(2)]
    gevent.sleep(0.2)
    user.client.request_name = "renamed meanwhile"
    user.client.close()  # drops the session's engine client while both requests wait on it
    waiting[1].kill(block=True)  # one of them is killed in its wait, after the close
    gevent.joinall(waiting, timeout=10)
    assert isinstance(waiting[0].value.error, RequestCancelled)
    assert waiting[0].value.request.url.endswith("/delay/3000")


@pytest.mark.parametrize("body", [
    ORDER, "just a string", 12.5, [1, [2, [3]]], {"nan": float("nan"), "big": 10**30, 3: "int key", None: True},
], ids=["dict", "str", "float", "nested", "odd-keys"])
def test_a_json_body_is_what_json_dumps_writes(probe, body):
    import json

    user, _ = probe
    fast, slow = both_paths(user.client, "POST", "/echo", json=body)
    assert sent(fast)[3] == sent(slow)[3] == json.dumps(body)


def test_a_json_body_json_cannot_write_raises_jsons_error_and_sends_nothing(testserver, probe):
    user, _ = probe
    before = testserver.stats()["requests"]
    with pytest.raises(TypeError, match="not JSON serializable"):
        user.client.post("/echo", json={"when": object()})
    circular: list = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        user.client.post("/echo", json={"loop": circular})
    assert testserver.stats()["requests"] == before
    shared = [1]
    assert sent(user.client.post("/echo", json=[shared, shared]))[3] == "[[1], [1]]"  # not circular: no error


def test_a_replaced_json_dumps_writes_the_body_on_both_paths(probe, monkeypatch):
    import json

    user, _ = probe
    monkeypatch.setattr(json, "dumps", lambda obj: '{"replaced": true}')
    fast, slow = both_paths(user.client, "POST", "/echo", json={"a": 1})
    assert sent(fast)[3] == sent(slow)[3] == '{"replaced": true}'
