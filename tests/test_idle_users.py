"""Idle users are set aside: libcurl's per-user state is freed, their keep-alive connections and cookies stay.

The engine sets a user aside once its last request is LOCUST_C_IDLE_SECONDS old (0.2 s here, through the
``set_aside_quickly`` fixture). The server must not notice: the next request goes out on the same connection
with the same cookies. Connections the server closes meanwhile are replaced without a failure.
"""

from __future__ import annotations

from collections.abc import Callable

import gevent
import pytest
from gevent.event import Event
from gevent.server import StreamServer
from helpers import session

from locust_c import FastCSession, _engine
from locust_c import engine as engines

# Setting idle users aside is for libcurl's users: native connections cost too little to need it.
pytestmark = pytest.mark.usefixtures("curl_only")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def counters(s: FastCSession) -> dict[str, int]:
    return s._handle.engine.counters()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):  # a bound on waiting, not a timing assertion
        if condition():
            return
        gevent.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def read_request(rfile) -> bool:
    """Reads one request head; False when the client closed the connection instead."""
    line = rfile.readline()
    if not line:
        return False
    while line not in (b"\r\n", b""):
        line = rfile.readline()
    return True


def test_an_idle_user_keeps_its_connection_and_cookies(set_aside_quickly, fresh_testserver):
    s, rec = session(fresh_testserver.url)
    try:
        first = s.get("/cookies/set?flavour=oat")
        assert first.json() == {"flavour": "oat"}
        wait_for(lambda: counters(s)["set_aside"] == 1, "the user to be set aside")
        assert fresh_testserver.stats()["connections_open"] == 1
        again = s.get("/cookies")
        assert again.json() == {"flavour": "oat"}
        assert again.headers["x-connection-id"] == first.headers["x-connection-id"]
        assert counters(s)["resumed"] == 1 and not rec.failures()
    finally:
        s.close()


def test_a_user_set_aside_again_and_again_loses_no_request(set_aside_quickly, fresh_testserver):
    # libcurl before 8.0 calls connect() on a socket handed back as connected: Linux lets that pass once per
    # socket, so there a connection is closed at its second idle period and the next request opens a new one.
    hands_back_again = int(_engine.curl_version.split(".")[0]) >= 8
    s, rec = session(fresh_testserver.url)
    try:
        responses = []
        for cycle in range(1, 5):
            responses.append(s.get("/"))
            wait_for(lambda n=cycle: counters(s)["set_aside"] == n, f"set-aside number {cycle}")
        responses.append(s.get("/"))
        assert [r.error for r in responses] == [None] * 5
        ids = [r.headers["x-connection-id"] for r in responses]
        assert ids == ["1"] * 5 if hands_back_again else ids == ["1", "1", "2", "2", "3"]
        assert fresh_testserver.stats()["connections_open"] == 1
    finally:
        s.close()


def test_a_set_aside_connection_the_server_closes_is_not_reused(set_aside_quickly):
    aside, peers = Event(), []

    def close_once_set_aside(sock, peer):
        peers.append(peer)
        with sock, sock.makefile("rb") as rfile:
            read_request(rfile)
            sock.sendall(OK)
            if len(peers) == 1:
                aside.wait(10)  # the engine holds this connection without libcurl now: close it under it

    server = StreamServer(("127.0.0.1", 0), close_once_set_aside)
    server.start()
    s, rec = session(f"http://127.0.0.1:{server.server_port}", max_retries=0)
    try:
        assert s.get("/").text == "ok"
        wait_for(lambda: counters(s)["set_aside"] == 1, "the user to be set aside")
        aside.set()
        gevent.sleep(0.2)  # the engine sees the close and drops the connection
        assert s.get("/").text == "ok"
        assert len(peers) == 2 and counters(s)["resumed"] == 0 and not rec.failures()
    finally:
        s.close()
        server.stop()


def test_a_set_aside_connection_that_fails_when_handed_back_is_retried(set_aside_quickly):
    peers = []

    def close_instead_of_the_second_answer(sock, peer):
        peers.append(peer)
        first_connection = len(peers) == 1
        with sock, sock.makefile("rb") as rfile:
            answered = 0
            while read_request(rfile):
                if first_connection and answered:
                    return  # the race: the server gives up on the connection as the request arrives
                sock.sendall(OK)
                answered += 1

    server = StreamServer(("127.0.0.1", 0), close_instead_of_the_second_answer)
    server.start()
    s, rec = session(f"http://127.0.0.1:{server.server_port}", max_retries=0)
    try:
        assert s.get("/").text == "ok"
        wait_for(lambda: counters(s)["set_aside"] == 1, "the user to be set aside")
        assert s.get("/").text == "ok"
        assert len(peers) == 2 and counters(s)["resumed"] == 1 and not rec.failures()
    finally:
        s.close()
        server.stop()


def test_a_bad_idle_time_is_a_clear_error(monkeypatch, testserver):
    engines.shutdown()
    monkeypatch.setenv("LOCUST_C_IDLE_SECONDS", "soon")
    s, _ = session(testserver.url)
    try:
        with pytest.raises(ValueError, match="LOCUST_C_IDLE_SECONDS must be a number of seconds from 0 to 86400"):
            s.get("/")
    finally:
        s.close()
        monkeypatch.undo()
        engines.shutdown()


def test_a_user_about_to_wait_long_is_set_aside_at_once(monkeypatch, fresh_testserver):
    from locust import constant, events, task
    from locust.env import Environment

    from locust_c import FastCUser

    engines.shutdown()
    monkeypatch.setenv("LOCUST_C_IDLE_SECONDS", "60")  # the sweep alone would take a minute

    class Sleeper(FastCUser):
        host = fresh_testserver.url
        wait_time = constant(120)

        @task
        def one(self) -> None:
            self.client.get("/")

    class Busy(FastCUser):
        host = fresh_testserver.url
        wait_time = constant(0.01)

        @task
        def one(self) -> None:
            self.client.get("/")

    env = Environment(user_classes=[Sleeper, Busy], events=events)
    runner = env.create_local_runner()
    try:
        runner.start(2, spawn_rate=2)
        wait_for(lambda: engines.handles() and engines.handles()[0].engine.counters()["set_aside"] == 1,
                 "the sleeping user to be set aside")
        gevent.sleep(0.3)  # the busy user goes on without being set aside
        counters = engines.handles()[0].engine.counters()
        assert counters["set_aside"] == 1 and counters["completed"] > 5
        assert fresh_testserver.stats()["connections_open"] == 2
    finally:
        runner.quit()
        monkeypatch.undo()
        engines.shutdown()
