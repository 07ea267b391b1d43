"""stream=True: the response arrives at the end of its headers and its body is read as the server writes it, with
back-pressure on a reader that lags (real sockets: the raw script server and the C test server)."""

from __future__ import annotations

import time

import gevent
import pytest
from helpers import local_user, session
from rawserver import FOREVER, KEEP, RESET, RawServer

from locust_c.exceptions import ConnectionClosed, ReadTimeout


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
EVENTS = [CHUNKED, *[step for i in range(4) for step in (chunk(b"data: %d\n\n" % i), 0.3)], b"0\r\n\r\n", KEEP]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_an_event_stream_is_read_line_by_line_while_the_server_writes():
    with RawServer({"events": EVENTS}) as server:
        user, env = local_user(server.url)
        try:
            start = time.monotonic()
            seen = [(line, time.monotonic() - start) for line in user.client.iter_lines("/events") if line]
            assert [line for line, _ in seen] == [f"data: {i}" for i in range(4)]
            # The server writes the first and the last event 0.9 s apart: a reader that got the body at its end
            # would see them together; a late reader can bring them closer, never further apart.
            assert seen[-1][1] - seen[0][1] > 0.6
            entry = env.runner.stats.get("/events", "GET")
            assert entry.num_requests == 1 and entry.max_response_time < 250  # the time stops at the headers
        finally:
            user.client.close()


def test_stream_read_content_and_iter_content_give_the_body(testserver):
    s, rec = session(testserver.url)
    try:
        r = s.get("/bytes/300000", stream=True)
        assert r.status_code == 200 and rec.last["response_length"] == 300000  # its Content-Length, unread
        assert r.stream.read(10) == b"x" * 10
        assert len(r.content) == 300000 - 10  # the rest
        r = s.get("/bytes/100000", stream=True)
        chunks = list(r.iter_content(chunk_size=4096, decode_content=False))
        assert b"".join(chunks) == b"x" * 100000 and max(map(len, chunks)) <= 4096
        r = s.get("/chunked/3", stream=True)
        assert r.content == s.get("/chunked/3").content  # chunked, read through the stream or whole
        assert s.get("/bytes/10", stream=True, catch_response=True).__enter__().stream.read() == b"x" * 10
    finally:
        s.close()


def test_a_reader_that_lags_pauses_the_transfer_instead_of_buffering_it():
    """An endless body read slowly: the engine holds a bounded amount, and the transfer goes on when read."""
    with RawServer({"endless": [b"HTTP/1.1 200 OK\r\n\r\n", FOREVER(b"y" * 65536)]}) as server:
        s, _ = session(server.url)
        try:
            r = s.get("/endless", stream=True)
            assert len(r.stream.read(100_000)) == 100_000
            before = rss_kib()
            gevent.sleep(1.0)  # the server would write hundreds of MiB in this time on loopback
            assert rss_kib() - before < 16 * 1024
            pauses = s._handle.engine.counters()["stream_pauses"]
            assert pauses >= 1
            assert len(r.stream.read(5_000_000)) == 5_000_000  # reading resumes it, and it fills and pauses again
            assert s._handle.engine.counters()["stream_pauses"] > pauses
        finally:
            s.close()


def test_a_fault_after_the_headers_is_raised_by_the_read_that_reaches_it():
    scripts = {"cut": [CHUNKED, chunk(b"part one\n"), 0.1, RESET],
               "stall": [CHUNKED, chunk(b"part one\n"), 5.0, b"0\r\n\r\n", KEEP],
               "short": [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"]}
    with RawServer(scripts) as server:
        s, rec = session(server.url, network_timeout=0.4)
        try:
            r = s.get("/cut", stream=True)
            assert r.status_code == 200 and rec.last["exception"] is None  # a success when its headers came
            assert r.stream.read1() == b"part one\n"
            with pytest.raises(ConnectionResetError):
                r.stream.read()
            r = s.get("/stall", stream=True)
            assert r.stream.read1() == b"part one\n"
            with pytest.raises(ReadTimeout):  # the read timeout counts the server's silence, mid-stream too
                r.stream.read()
            with pytest.raises(ConnectionClosed):
                _ = s.get("/short", stream=True).content
        finally:
            s.close()


def test_a_stream_nobody_reads_is_closed_when_its_response_goes():
    with RawServer({"endless": [b"HTTP/1.1 200 OK\r\n\r\n", FOREVER(b"z" * 65536)]}) as server:
        s, rec = session(server.url, concurrency=1)
        try:
            for _ in range(3):  # with one connection, a stream left open would block the next request
                r = s.get("/endless", stream=True)
                assert r.stream.read(10) == b"z" * 10
                rec.calls.clear()  # the recorder keeps each request's response: let go of it
                del r
            assert s.get("/endless", stream=True).stream.read(3) == b"zzz"
        finally:
            s.close()


def test_a_stream_waiting_when_its_user_stops_ends_with_the_user():
    with RawServer({"slow": [CHUNKED, chunk(b"a"), 30.0, KEEP]}) as server:
        s, _ = session(server.url)
        r = s.get("/slow", stream=True)
        reader = gevent.spawn(r.stream.read)
        gevent.sleep(0.2)
        s.close()  # cancels what is in flight, the stream's transfer included
        reader.join(timeout=5)
        assert reader.dead and reader.exception is not None


def test_a_read_interrupted_by_a_timeout_can_be_taken_up_again():
    """gevent.Timeout around a read: the wait ends, and the next read gets the data; no wake-up is lost or doubled
    (the hub's count of what it waits for comes back to zero)."""
    script = [CHUNKED, *[step for i in range(3) for step in (0.3, chunk(b"%d" % i))], b"0\r\n\r\n", KEEP]
    with RawServer({"slow": script}) as server:
        s, _ = session(server.url)
        try:
            r = s.get("/slow", stream=True)
            got = b""
            for _ in range(40):
                with gevent.Timeout(0.05, False):
                    got += r.stream.read1()
                if got == b"012":
                    break
            assert got == b"012" and r.stream.read() == b""
            gevent.sleep(0.1)
            assert s._handle.pending == 0
        finally:
            s.close()


def test_a_reader_that_waits_longer_than_the_read_timeout_is_not_timed_out():
    """The read timeout counts the server's silence, not the reader's: a paused transfer is the reader's wait."""
    with RawServer({"endless": [b"HTTP/1.1 200 OK\r\n\r\n", FOREVER(b"w" * 65536)]}) as server:
        s, _ = session(server.url, network_timeout=0.3)
        try:
            r = s.get("/endless", stream=True)
            assert r.stream.read(10) == b"w" * 10
            gevent.sleep(1.0)  # the buffer is full, the transfer paused, for three times the read timeout
            assert len(r.stream.read(2_000_000)) == 2_000_000
        finally:
            s.close()


def test_a_redirect_libcurl_does_not_follow_is_read_as_a_stream_too():
    """An empty Location is not followed: the 3xx is the response, and its body is the stream's."""
    with RawServer({"r": [b"HTTP/1.1 302 Found\r\nLocation: \r\nContent-Length: 5\r\n\r\nhello", KEEP]}) as server:
        s, _ = session(server.url)
        try:
            r = s.get("/r", stream=True)
            assert r.status_code == 302 and r.content == b"hello"
        finally:
            s.close()
