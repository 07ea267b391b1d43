"""Where FastHttpUser's behaviour is visible in a user's report or a locustfile, FastCUser's is the same
(locust/contrib/fasthttp.py is the reference)."""

from __future__ import annotations

import json

import pytest
from helpers import local_user, session
from locust.exception import LocustError
from rawserver import KEEP, RawServer

from locust_c.exceptions import BadStatusCode

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")


def test_failures_of_one_name_make_one_row_whatever_the_query(testserver):
    user, env = local_user(testserver.url)
    for i in range(5):
        user.client.get("/status/500", params={"i": i}, name="/status")
    errors = env.runner.stats.errors
    assert len(errors) == 1
    (error,) = errors.values()
    assert error.occurrences == 5 and error.name == "/status" and repr(error.error) == "BadStatusCode(code=500)"


def test_bad_status_code_carries_the_url_and_fasthttpusers_code_text(testserver):
    s, _ = session(testserver.url)
    try:
        error = s.get("/status/503?x=1").error
        assert isinstance(error, BadStatusCode) and error.url == f"{testserver.url}/status/503?x=1"
        assert "code=503" in str(error) and "for url: /status/503?x=1" in str(error)
    finally:
        s.close()


@pytest.mark.parametrize(("status", "failed"), [(200, False), (226, False), (304, False), (299, True), (305, True),
                                                (400, True)])
def test_valid_response_codes_decide_a_failure(status, failed):
    """FastHttpUser fails every status outside its valid_response_codes, 2xx and 3xx ones included; so do batched
    statistics (the engine's own check)."""
    scripts = {"s": [b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status, KEEP]}
    with RawServer(scripts) as server:
        user, env = local_user(server.url)
        r = user.client.get("/s", allow_redirects=False)
        assert (r.error is not None) == failed
        assert env.runner.stats.get("/s", "GET").num_failures == (1 if failed else 0)
        user.client.close()


def test_a_session_can_widen_its_valid_response_codes():
    with RawServer({"s": [b"HTTP/1.1 299 X\r\nContent-Length: 0\r\n\r\n", KEEP]}) as server:
        s, rec = session(server.url)
        s.valid_response_codes = frozenset({299})
        try:
            assert s.get("/s").error is None and rec.last["exception"] is None
        finally:
            s.close()


def test_a_with_block_without_catch_response_says_how_to_fix_it(testserver):
    s, _ = session(testserver.url)
    try:
        with pytest.raises(LocustError, match="must also pass catch_response=True"):
            with s.get("/"):
                pass
    finally:
        s.close()


def test_an_empty_data_gives_way_to_json(testserver):
    s, _ = session(testserver.url)
    try:
        echoed = s.post("/echo", data="", json={"a": 1}).json()
        assert json.loads(echoed["body"]) == {"a": 1}
    finally:
        s.close()


def test_empty_header_values_are_sent(testserver):
    s, _ = session(testserver.url)
    try:
        headers = {k.lower(): v for k, v in s.get("/echo", headers={"X-Empty": ""}).json()["headers"].items()}
        assert headers["x-empty"] == ""
    finally:
        s.close()


def test_iter_lines_splits_on_line_feeds_only():
    body = b"one\r\ntwo\rstill two\xe2\x80\xa8three\n\nlast"
    with RawServer({"l": [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), KEEP]}) as server:
        s, _ = session(server.url)
        try:
            assert list(s.iter_lines("/l")) == ["one\r", "two\rstill two\u2028three", "", "last"]
        finally:
            s.close()


def test_request_body_is_what_the_locustfile_passed(testserver):
    """FastHttpSession's request.body is the payload as given: the JSON text for json=, a str for a str."""
    s, _ = session(testserver.url)
    try:
        assert s.post("/echo", json={"foo": "bar"}).request.body == '{"foo": "bar"}'
        assert s.post("/echo", data="a=1").request.body == "a=1"
        assert s.post("/echo", data=b"\x00\x01").request.body == b"\x00\x01"
        assert s.post("/echo", data={"k": "v w"}).request.body == "k=v+w"
        assert s.get("/echo").request.body is None
    finally:
        s.close()


def test_a_pool_users_login_cookie_goes_with_its_redirect_and_stays_its_own(testserver):
    from rawserver import KEEP, RawServer

    from locust_c import ClientPool

    login = [f"HTTP/1.1 302 Found\r\nSet-Cookie: sid=abc; Path=/\r\nLocation: {testserver.url}/cookies\r\n"
             "Content-Length: 0\r\n\r\n".encode(), KEEP]
    with RawServer({"login": login}) as raw:
        pool = ClientPool(concurrency=2)
        a, _ = local_user(raw.url, client_pool=pool)
        b, _ = local_user(raw.url, client_pool=pool)
        try:
            assert a.client.post("/login").json() == {"sid": "abc"}  # the next hop carried it
            assert a.client.cookies.get("sid") == "abc" and "sid" not in b.client.cookies
            assert b.client.get(f"{testserver.url}/cookies").json() == {}
        finally:
            a.client.close()
            b.client.close()


def test_a_client_pool_shares_connections_between_users_but_not_cookies(testserver):
    """FastHttpUser's client_pool: users of several classes share its connections; their cookies stay their own."""
    from geventhttpclient.client import HTTPClientPool

    from locust_c import ClientPool

    for pool in (ClientPool(concurrency=1), HTTPClientPool(concurrency=1)):
        a, _ = local_user(testserver.url, client_pool=pool)
        b, _ = local_user(testserver.url, client_pool=pool)
        try:
            a.client.get("/cookies/set?who=a")
            ids = {user.client.get("/echo").json()["connection_id"] for user in (a, b, b, a)}
            assert len(ids) == 1  # one connection carried both users' requests
            assert a.client.get("/cookies").json() == {"who": "a"} and b.client.get("/cookies").json() == {}
            assert a.client.cookies.get("who") == "a" and "who" not in b.client.cookies
            b.client.cookies.set("who", "b", domain="127.0.0.1")
            assert b.client.get("/cookies").json() == {"who": "b"} and a.client.get("/cookies").json() == {"who": "a"}
            a.client.close()  # a user that stops leaves the pool's connections to the others
            assert b.client.get("/echo").json()["connection_id"] in ids
        finally:
            b.client.close()
