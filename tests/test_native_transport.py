"""What only the native transport does: which requests take it, and how it keeps its connections.

Everything a user can observe is tested on both transports elsewhere (conftest's transport fixture, and
test_transport_differential.py); here are the choice of transport and the life of a native connection.
"""

from __future__ import annotations

import gevent
from helpers import session
from rawserver import KEEP, RawServer


def native_count(s) -> int:
    return s._handle.engine.counters()["native"]


def test_plain_http_goes_native_and_streams_and_forced_curl_do_not(testserver, monkeypatch):
    monkeypatch.delenv("LOCUST_C_TRANSPORT", raising=False)
    s, rec = session(testserver.url)
    try:
        s.get("/")
        before = native_count(s)
        assert s.get("/echo").status_code == 200 and native_count(s) == before + 1
        assert s.get("/redirect/2").status_code == 200 and native_count(s) == before + 4  # each hop is one
        assert len(s.get("/bytes/10", stream=True).content) == 10  # streams are libcurl's
        assert native_count(s) == before + 4 and not rec.failures()
    finally:
        s.close()
    monkeypatch.setenv("LOCUST_C_TRANSPORT", "curl")
    s, _ = session(testserver.url)
    try:
        s.get("/")
        before = native_count(s)
        s.get("/echo")
        assert native_count(s) == before
    finally:
        s.close()


def test_a_bad_transport_name_is_refused_with_its_name(testserver, monkeypatch):
    import pytest

    monkeypatch.setenv("LOCUST_C_TRANSPORT", "fast")
    with pytest.raises(ValueError, match="LOCUST_C_TRANSPORT must be one of auto, curl, not 'fast'"):
        session(testserver.url)


def test_a_connection_is_kept_alive_and_one_the_server_closed_is_replaced(monkeypatch):
    monkeypatch.delenv("LOCUST_C_TRANSPORT", raising=False)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    # "keep" answers and keeps the connection; "last" answers and then the server closes it, without saying so.
    with RawServer({"keep": [ok, KEEP], "last": [ok]}) as server:
        s, rec = session(server.url)
        try:
            for _ in range(3):
                assert s.get("/keep").content == b"ok"
            counters = s._handle.engine.counters
            connects, open_before = counters()["native_connects"], counters()["native_open"]
            assert s.get("/last").content == b"ok"
            for _ in range(100):  # the close arrives while the connection is idle: it is dropped at once
                if counters()["native_open"] < open_before:
                    break
                gevent.sleep(0.02)
            assert counters()["native_open"] <= open_before - 1
            assert s.get("/keep").content == b"ok"
            assert s._handle.engine.counters()["native_connects"] == connects + 1
            assert s.get("/last").content == b"ok"
            assert s.get("/keep").content == b"ok"  # at once: closed or not yet, the request gets its answer
            assert not rec.failures() and server.requests["keep"] == 5
        finally:
            s.close()
