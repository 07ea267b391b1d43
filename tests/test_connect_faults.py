"""Connections that never complete are recorded failures: the engine survives every socket libcurl gives up on.

libcurl 7.88 closes a socket that never finished connecting without telling the engine (see sock_alive in
csrc/sockets.c). Each test here crashed the process (libuv's abort on a closed descriptor) before that was handled.
"""

from __future__ import annotations

import socket
import threading

import gevent
import pytest
from helpers import session, unaccepting_port
from test_locust_cli import locust, stats_rows

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")


def test_connect_timeouts_are_failures_and_the_engine_goes_on(testserver):
    with unaccepting_port() as port:
        s, rec = session(f"http://127.0.0.1:{port}", connection_timeout=0.3)
        try:
            for _ in range(3):
                r = s.get("/")
                assert r.status_code == 0 and isinstance(r.error, TimeoutError), repr(r.error)
                assert str(r.error) == "connect timed out"
            assert len(rec.failures()) == 3
            # The same user, and so the same engine thread, still works against a healthy server.
            assert s.get(f"{testserver.url}/").status_code == 200
        finally:
            s.close()


def test_many_users_time_out_connecting_at_once(testserver):
    with unaccepting_port() as port:
        sessions = [session(f"http://127.0.0.1:{port}", connection_timeout=0.3)[0] for _ in range(20)]
        try:
            greenlets = [gevent.spawn(s.get, "/") for s in sessions for _ in range(2)]
            gevent.joinall(greenlets, timeout=30, raise_error=True)
            assert all(isinstance(g.value.error, TimeoutError) for g in greenlets)
            assert all(s.get(f"{testserver.url}/").status_code == 200 for s in sessions)
        finally:
            for s in sessions:
                s.close()


def test_a_user_stopped_while_connecting_leaves_the_engine_working(testserver):
    with unaccepting_port() as port:
        s, rec = session(f"http://127.0.0.1:{port}", connection_timeout=30)
        try:
            for _ in range(3):
                g = gevent.spawn(s.get, "/")
                gevent.sleep(0.1)  # the connect is under way
                g.kill()
            assert s.get(f"{testserver.url}/").status_code == 200
        finally:
            s.close()


def test_a_tls_handshake_that_never_answers_times_out(testserver):
    """A server that accepts and then says nothing: the socket is connected but never became libcurl's."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    s, _ = session(f"https://127.0.0.1:{listener.getsockname()[1]}", connection_timeout=0.3)
    try:
        for _ in range(3):
            r = s.get("/")
            assert isinstance(r.error, TimeoutError), repr(r.error)
        assert s.get(f"{testserver.url}/").status_code == 200
    finally:
        s.close()
        stop.set()
        thread.join()
        for c in accepted:
            c.close()
        listener.close()


@pytest.mark.timeout(60)
def test_locust_headless_against_a_service_that_never_accepts(tmp_path):
    locustfile = tmp_path / "overloaded.py"
    locustfile.write_text(
        "from locust import task, constant\nfrom locust_c import FastCUser\n\n"
        "class U(FastCUser):\n    wait_time = constant(0)\n    connection_timeout = 0.5\n\n"
        "    @task\n    def index(self):\n        self.client.get('/')\n"
    )
    prefix = tmp_path / "overloaded"
    with unaccepting_port() as port:
        proc = locust("-f", str(locustfile), "--headless", "-u", "3", "-r", "3", "-t", "3s",
                      "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix))
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])  # failures, not a crash (134)
    row = stats_rows(prefix)["GET /"]
    assert int(row["Failure Count"]) == int(row["Request Count"]) >= 3
    with open(f"{prefix}_failures.csv") as f:
        assert "connect timed out" in f.read()


