"""HTTPS through libcurl/OpenSSL, certificate verification, and HTTP/2 with multiplexing (hypercorn on loopback)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest
import trustme
from helpers import free_port, session

HERE = Path(__file__).resolve().parent



def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hypercorn exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("hypercorn did not start")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("certs")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return ca_file, cert_file, key_file


def _hypercorn(port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", *extra, "h2app:app"],
        cwd=HERE / "servers", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def tls_server(certs):
    _, cert_file, key_file = certs
    port = free_port()
    proc = _hypercorn(port, "--certfile", str(cert_file), "--keyfile", str(key_file))
    try:
        _wait_port(port, proc)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def h2c_server():
    port = free_port()
    proc = _hypercorn(port)
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_https_insecure_by_default(tls_server):
    s, rec = session(tls_server)
    try:
        r = s.get("/x")
        assert r.status_code == 200 and r.json()["http_version"] == "1.1"
        assert rec.last["exception"] is None
    finally:
        s.close()


def test_https_verification_rejects_an_unknown_ca(tls_server, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    s, rec = session(tls_server, insecure=False)
    try:
        r = s.get("/x")
        assert r.status_code == 0 and isinstance(r.error, ssl.SSLError)
        assert isinstance(rec.last["exception"], ssl.SSLError)
    finally:
        s.close()


def test_https_verification_accepts_the_ca_in_ssl_cert_file(tls_server, certs, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))
    s, _ = session(tls_server, insecure=False)
    try:
        assert s.get("/x").status_code == 200
    finally:
        s.close()


def test_http2_over_tls_multiplexes_on_one_connection(tls_server):
    s, _ = session(tls_server, http2=True, concurrency=8)
    try:
        s.get("/warm")  # the first request opens the connection and learns it speaks h2
        greenlets = [gevent.spawn(s.get, "/slow") for _ in range(8)]
        gevent.joinall(greenlets, raise_error=True)
        answers = [g.value.json() for g in greenlets]
        assert {a["http_version"] for a in answers} == {"2"}
        assert len({a["client_port"] for a in answers}) == 1  # one connection carried all eight
        assert greenlets[0].value.reason == ""  # HTTP/2 has no reason phrase
    finally:
        s.close()


def test_http2_prior_knowledge_over_plain_http(h2c_server):
    s, _ = session(h2c_server, http2=True)
    try:
        assert s.get("/x").json()["http_version"] == "2"
    finally:
        s.close()


def test_without_http2_the_same_server_speaks_http1(h2c_server):
    s, _ = session(h2c_server)
    try:
        assert s.get("/x").json()["http_version"] == "1.1"
    finally:
        s.close()


def test_ssl_cert_file_is_ignored_when_insecure(tls_server, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    s, _ = session(tls_server)
    try:
        assert s.get("/x").status_code == 200
    finally:
        s.close()


def test_a_new_user_does_not_resume_another_users_tls_session(tls_server):
    """Each user does its own TLS handshake, as a real new client would (libcurl's trace says when it resumes)."""
    script = (
        "import gevent.monkey; gevent.monkey.patch_all()\n"
        "from locust.event import EventHook\n"
        "from locust_c import FastCSession\n"
        f"for _ in range(3):\n"
        f"    s = FastCSession({tls_server!r}, EventHook(), None)\n"
        "    assert s.get('/x').status_code == 200\n"
        "    s.close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent), "LOCUST_C_CURL_VERBOSE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("SSL connection using") == 3  # three handshakes...
    assert "re-using session" not in proc.stderr  # ...none of them resumed from another user


def test_a_user_with_a_tls_connection_is_never_set_aside(tls_server, testserver, set_aside_quickly):
    # A plain-HTTP user that also holds an https connection: TLS state cannot be rebuilt from a socket.
    s, rec = session(testserver.url)
    try:
        assert s.get("/").status_code == 200
        assert s.get(f"{tls_server}/x").status_code == 200
        engine = s._handle.engine
        swept = engine.counters()["set_aside"]
        gevent.sleep(0.6)  # three sweeps
        assert engine.counters()["set_aside"] == swept
        assert s.get(f"{tls_server}/x").status_code == 200 and not rec.failures()
    finally:
        s.close()
