"""Network faults are recorded failures, bad input is an exception at the call site, nothing hangs."""

from __future__ import annotations

import socket
import ssl

import gevent
import pytest
from helpers import free_port, session

from locust_c import _engine
from locust_c.exceptions import BadResponse, ConnectionClosed, error_for

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")


def test_connection_refused():
    s, rec = session(f"http://127.0.0.1:{free_port()}")
    try:
        r = s.get("/")
        assert r.status_code == 0 and r.content is None
        assert r.ok  # FastHttpUser's ok is "status below 400", and so True for status 0: the same here
        assert isinstance(r.error, ConnectionRefusedError)
        assert isinstance(rec.last["exception"], ConnectionRefusedError)
        assert rec.last["response_length"] == 0
        with pytest.raises(ConnectionRefusedError):
            r.raise_for_status()
    finally:
        s.close()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/fault/reset", ConnectionResetError),
        ("/fault/close-mid-body", ConnectionClosed),
        ("/fault/garbage", BadResponse),
        ("/fault/empty", ConnectionClosed),
    ],
)
def test_server_faults_are_failures(testserver, path, expected):
    s, rec = session(testserver.url)
    try:
        r = s.get(path)
        assert r.status_code == 0
        assert isinstance(r.error, expected), repr(r.error)
        assert rec.last["exception"] is r.error
        # The session goes on working after the fault.
        assert s.get("/").status_code == 200
    finally:
        s.close()


def test_read_timeout(testserver):
    s, rec = session(testserver.url, network_timeout=0.3)
    try:
        r = s.get("/fault/never")
        assert r.status_code == 0 and isinstance(r.error, TimeoutError)
        assert str(r.error) == "timed out"
        assert rec.last["response_time"] >= 250
    finally:
        s.close()



def test_a_server_that_stops_reading_an_upload_times_it_out():
    # Connected (the kernel completes the handshake into the listen queue) but never read: once the buffers are
    # full the write cannot go on, and that wait for the server counts against network_timeout as any other.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        s, rec = session(f"http://127.0.0.1:{listener.getsockname()[1]}", network_timeout=0.5)
        try:
            r = s.post("/upload", data=b"x" * (32 << 20))
            assert r.status_code == 0 and isinstance(r.error, TimeoutError), repr(r.error)
            assert len(rec.failures()) == 1
        finally:
            s.close()
    finally:
        listener.close()

@pytest.mark.parametrize("message", ["Connection timed out after 1000 milliseconds",
                                     "Connection timeout after 1001 ms", "Connection time-out"])
def test_connect_timeout_maps_to_timeout_error(message):
    error = error_for(28, 0, message)  # libcurl 7.88 words it one of three ways, by the timer that fired
    assert isinstance(error, TimeoutError) and str(error) == "connect timed out"


def test_error_mapping_of_other_curl_codes():
    assert isinstance(error_for(6, 0, "Could not resolve host: nowhere"), socket.gaierror)
    assert isinstance(error_for(60, 0, "SSL certificate problem"), ssl.SSLCertVerificationError)
    assert isinstance(error_for(35, 0, "handshake failed"), ssl.SSLError)
    assert isinstance(error_for(56, 0, "Recv failure: Connection reset by peer"), ConnectionResetError)
    assert isinstance(error_for(56, 0, "OpenSSL SSL_read: error:0A00045C:SSL routines::tlsv13 alert certificate "
                                       "required, errno 0"), ssl.SSLError)
    # A pooled handle's errno is a leftover of its last failed socket call: a parser's refusal is not a reset.
    bad_chunk = error_for(56, 104, "Illegal or missing hexadecimal sequence in chunked-encoding")
    assert isinstance(bad_chunk, BadResponse) and not isinstance(bad_chunk, ConnectionResetError)


def test_retries_resend_after_connection_errors(testserver):
    s, rec = session(testserver.url, max_retries=2)
    try:
        testserver.reset_stats()
        r = s.get("/fault/reset")
        assert isinstance(r.error, ConnectionResetError)
        assert testserver.stats()["requests"] == 3
        assert len(rec.calls) == 1  # one logical request in the stats
    finally:
        s.close()


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda s: s.get("http://"), ValueError, "no host"),
        (lambda s: s.get("ftp://example.com/"), ValueError, "scheme"),
        (lambda s: s.request("GE T", "/"), ValueError, "method"),
        (lambda s: s.request("", "/"), ValueError, "method"),
        (lambda s: s.get("/a\r\nX-Injected: 1"), ValueError, "control"),
        (lambda s: s.get("/", headers={"X-A": "1\r\nX-B: 2"}), ValueError, "CR, LF"),
        (lambda s: s.get("/", headers={"Bad Name": "1"}), ValueError, "token"),
        (lambda s: s.post("/", json={"s": {1, 2}}), TypeError, "JSON"),
        (lambda s: s.post("/", data=object()), TypeError, "data"),
        (lambda s: s.get("/", headers=[("a", "b")]), TypeError, "dict"),
        (lambda s: s.get("/", timeout=float("nan")), ValueError, "timeout must be"),
        (lambda s: s.get("/", timeout=(1, 2, 3)), ValueError, "timeout must be"),
        (lambda s: s.get("/", timeout=0), ValueError, "timeout must be"),
        (lambda s: s.get("/", cookies=[("a", "b")]), TypeError, "cookies must be"),
        (lambda s: s.get("/", cookies={"a": "b\r\nX: 1"}), ValueError, "CR, LF"),
        (lambda s: s.get("/", bogus=False), TypeError, "unexpected keyword"),
        (lambda s: s.get("/", verify=3), TypeError, "verify must be a file name"),
        (lambda s: s.get("/", verify="/nonexistent/ca.pem"), FileNotFoundError, "verify: no such file"),
        (lambda s: s.get("/", cert=("a",)), ValueError, "cert must be"),
        (lambda s: s.get(b"/"), TypeError, "url"),
        (lambda s: s.get("http://[::1/"), ValueError, "IPv6"),
        (lambda s: s.get("http://[::1]x/"), ValueError, "after the IPv6"),
        (lambda s: s.get("http://127.0.0.1:99999/"), ValueError, "port"),
        (lambda s: s.get("http://127.0.0.1:0/"), ValueError, "port"),
        (lambda s: s.get("http://127.0.0.1:8o/"), ValueError, "port"),
        (lambda s: s.get("http://user:pa:ss@127.0.0.1:x/"), ValueError, "port"),
        (lambda s: s.get("/", headers={1: "x"}), TypeError, "header names must be str"),
        (lambda s: s.get("/", headers={b"X-A": "x"}), TypeError, "header names must be str"),
    ],
)
def test_bad_input_raises_and_sends_nothing(testserver, call, exc, words):
    s, rec = session(testserver.url)
    try:
        s.get("/")  # open the connection first, so a stray request would be counted
        testserver.reset_stats()
        with pytest.raises(exc, match=words):
            call(s)
        assert rec.calls[1:] == []
        assert testserver.stats()["requests"] == 0
    finally:
        s.close()


@pytest.mark.parametrize(("option", "value"), [
    ("network_timeout", 0), ("network_timeout", float("nan")), ("network_timeout", float("inf")),
    ("network_timeout", 1e30), ("network_timeout", 1e-9), ("network_timeout", -1), ("network_timeout", "5"),
    ("connection_timeout", float("nan")), ("connection_timeout", True),
    ("concurrency", 0), ("concurrency", 2**40), ("concurrency", 1.5),
    ("max_redirects", -1), ("max_redirects", 2**40), ("max_retries", 10**6), ("max_retries", None),
    ("max_response_bytes", -1), ("max_response_bytes", 2**64), ("proxy_port", 99999),
])
def test_bad_session_options_raise_at_set_up_naming_the_option(option, value):
    options = {option: value, **({"proxy_host": "127.0.0.1"} if option == "proxy_port" else {})}
    with pytest.raises(ValueError, match=f"^{option} must be"):
        session("http://127.0.0.1:1", **options)


def test_bad_user_attributes_raise_when_the_user_is_set_up():
    from locust.env import Environment

    from locust_c import FastCUser

    class Impatient(FastCUser):
        host = "http://127.0.0.1:1"
        network_timeout = float("nan")

    with pytest.raises(ValueError, match="network_timeout must be a number of seconds from 0.001 to 86400"):
        Impatient(Environment())


def test_unknown_session_options_raise():
    with pytest.raises(TypeError, match="unexpected"):
        session("http://127.0.0.1:1", bogus=1)


def test_the_engine_checks_its_options_too():
    from locust_c import engine

    handle = engine.acquire()
    for bad in ({"timeout": float("nan")}, {"connect_timeout": 0.0}, {"max_connections": 0},
                {"max_response_bytes": -1}):
        with pytest.raises(ValueError):
            _engine.Client(handle.engine, **bad)


def test_killing_a_waiting_greenlet_cancels_its_request(testserver):
    s, rec = session(testserver.url)
    try:
        s.get("/")
        g = gevent.spawn(s.get, "/fault/never")
        gevent.sleep(0.2)
        assert testserver.stats()["open_requests"] == 1
        g.kill()
        assert g.dead
        for _ in range(100):
            if testserver.stats()["open_requests"] == 0:
                break
            gevent.sleep(0.02)
        assert testserver.stats()["open_requests"] == 0  # the connection was closed under it
        assert s.get("/").status_code == 200
        assert len(rec.calls) == 2
    finally:
        s.close()


def test_concurrency_limits_connections_per_user(testserver):
    s, _ = session(testserver.url, concurrency=2)
    try:
        testserver.reset_stats()
        greenlets = [gevent.spawn(s.get, "/delay/200") for _ in range(6)]
        gevent.joinall(greenlets, raise_error=True)
        assert all(g.value.status_code == 200 for g in greenlets)
        stats = testserver.stats()
        assert stats["peak_open_requests"] == 2
        assert len({g.value.headers["x-connection-id"] for g in greenlets}) == 2
    finally:
        s.close()


def test_engine_counters_settle():
    s, _ = session(f"http://127.0.0.1:{free_port()}")
    try:
        s.get("/")
        from locust_c import engine

        counters = engine.handles()[0].engine.counters()
        assert counters["in_flight"] == 0 and counters["completed"] >= 1
    finally:
        s.close()


def test_an_idle_connection_the_server_closes_is_replaced_without_a_failure():
    """Between requests the engine keeps watching a keep-alive connection; when the server closes it, the
    engine stops watching (rather than spinning on a socket that stays readable) and the next request opens
    a new connection and succeeds."""
    from gevent.event import Event
    from gevent.server import StreamServer

    closed = Event()
    peers = []

    def one_response_then_close(sock, peer):
        peers.append(peer)
        with sock, sock.makefile("rb") as rfile:
            while rfile.readline() not in (b"\r\n", b""):
                pass
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            gevent.sleep(0.05)  # the client has parked the connection by now
        closed.set()

    server = StreamServer(("127.0.0.1", 0), one_response_then_close)
    server.start()
    s, rec = session(f"http://127.0.0.1:{server.server_port}")
    try:
        assert s.get("/").status_code == 200
        assert closed.wait(10)
        engine = s._handle.engine
        gevent.sleep(0.1)  # the engine sees the close
        before = engine.counters()["socket_events"]
        gevent.sleep(0.2)
        assert engine.counters()["socket_events"] - before < 5
        assert s.get("/").text == "ok"
        assert not rec.failures() and len(peers) == 2
    finally:
        s.close()
        server.stop()


def test_histogram_percentiles_have_three_significant_digits():
    values = list(range(1, 100_001))
    p50, p99, p100 = _engine.hist_percentiles(values, [50, 99, 100])
    assert abs(p50 - 50_000) <= 50 and abs(p99 - 99_000) <= 99 and p100 == 100_000


def test_engine_shutdown_resumes_waiting_users_with_a_cancellation(testserver):
    from locust_c import engine
    from locust_c.exceptions import RequestCancelled

    sessions = [session(testserver.url)[0] for _ in range(5)]
    try:
        greenlets = [gevent.spawn(s.get, path) for s in sessions for path in ("/fault/never", "/delay/3000")]
        gevent.sleep(0.3)
        engine.shutdown()
        gevent.joinall(greenlets, timeout=10)
        assert all(g.successful() for g in greenlets)
        assert all(isinstance(g.value.error, RequestCancelled) for g in greenlets)
        # The same sessions go on with a new engine.
        assert sessions[0].get("/").status_code == 200
    finally:
        for s in sessions:
            s.close()


def test_a_forked_child_uses_its_own_engine(testserver):
    import os

    s, _ = session(testserver.url)
    try:
        assert s.get("/").status_code == 200
        pid = os.fork()
        if pid == 0:  # the child: the parent's session must work here too, on a new engine
            code = 1
            try:
                with gevent.Timeout(10):
                    code = 0 if s.get("/echo").status_code == 200 else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert s.get("/").status_code == 200  # and the parent's engine is untouched
    finally:
        s.close()
