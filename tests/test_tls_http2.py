"""HTTPS through libcurl/OpenSSL, certificate verification, and HTTP/2 with multiplexing (hypercorn on loopback)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
import trustme
from helpers import free_port, session

from locust_c.exceptions import ConnectionClosed

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


# Made when the module loads, before any greenlet has run: under ASan, cryptography's key generation on a greenlet's
# stack trips the sanitizer's own stack checks (make sanitize).
_CLIENT_CA = trustme.CA()
_CLIENT_PKI = (_CLIENT_CA, _CLIENT_CA.issue_cert("load-test-client@example.com"))


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


@contextlib.contextmanager
def _serving(scheme: str, *extra: str) -> Iterator[str]:
    """hypercorn on a free loopback port while the block runs; yields its URL."""
    port = free_port()
    proc = _hypercorn(port, *extra)
    try:
        _wait_port(port, proc)
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_server(certs):
    _, cert_file, key_file = certs
    with _serving("https", "--certfile", str(cert_file), "--keyfile", str(key_file)) as url:
        yield url


@pytest.fixture(scope="module")
def h2c_server():
    with _serving("http") as url:
        yield url


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


# A TLS 1.3 server refuses a client after the handshake: the client sees its alert, a reset or a close, whichever
# the server sends.
REFUSED = (ssl.SSLError, ConnectionResetError, ConnectionClosed)


@pytest.fixture(scope="module")
def client_certs(tmp_path_factory, certs):
    """A CA that the mutual-TLS server trusts for its clients, and a client certificate it issued."""
    ca, client = _CLIENT_PKI
    folder = tmp_path_factory.mktemp("client")
    ca_file, both, cert_file, key_file = (folder / n for n in ("ca.pem", "both.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    client.private_key_and_cert_chain_pem.write_to_path(str(both))
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    return ca_file, both, cert_file, key_file


@pytest.fixture(scope="module")
def mtls_server(certs, client_certs):
    _, cert_file, key_file = certs
    with _serving("https", "--certfile", str(cert_file), "--keyfile", str(key_file), "--ca-certs",
                  str(client_certs[0]), "--verify-mode", "CERT_REQUIRED") as url:
        yield url


def test_mutual_tls_with_a_client_certificate(mtls_server, client_certs):
    _, both, cert_file, key_file = client_certs
    s, rec = session(mtls_server)
    try:
        r = s.get("/x")  # no certificate: the server refuses it (an alert, or a reset if that is what arrives first)
        assert r.status_code == 0 and isinstance(r.error, REFUSED), repr(r.error)
        assert s.get("/x", cert=(str(cert_file), str(key_file))).status_code == 200  # requests' cert= pair
        assert s.get("/x", cert=str(both)).status_code == 200  # one file with both
        assert s.get("/x").status_code == 0  # cert= was for those requests only
    finally:
        s.close()
    s, _ = session(mtls_server, client_cert=(str(cert_file), str(key_file)))  # FastCUser.client_cert
    try:
        assert s.get("/x").status_code == 200
    finally:
        s.close()


def test_ssl_context_factory_carries_verification_client_certificate_and_versions(mtls_server, certs,
                                                                                  client_certs, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    ca_file = certs[0]
    _, _, cert_file, key_file = client_certs

    def context(trusted: bool, client: bool, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2):
        def factory() -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=str(ca_file) if trusted else None)
            if client:
                ctx.load_cert_chain(str(cert_file), str(key_file))
            ctx.minimum_version = minimum
            return ctx
        return factory

    cases = [(context(True, True), None), (context(False, True), ssl.SSLCertVerificationError),
             (context(True, False), REFUSED)]
    for factory, error in cases:
        s, _ = session(mtls_server, ssl_context_factory=factory)
        try:
            r = s.get("/x")
            assert (r.status_code == 200) if error is None else isinstance(r.error, error), (error, repr(r.error))
        finally:
            s.close()


def test_ssl_context_factory_carries_tls_versions_and_ciphers(certs):
    """A server that says which TLS version and cipher it negotiated: the context's limits decide them."""
    from gevent.server import StreamServer

    ca_file, cert_file, key_file = certs
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(cert_file), str(key_file))

    def answer(sock, _peer):
        try:
            sock.recv(65536)
            body = f"{sock.version()} {sock.cipher()[0]}".encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            sock.close()

    def factory(**settings):
        def make() -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=str(ca_file))
            for name, value in settings.items():
                if name == "ciphers":
                    ctx.set_ciphers(value)
                else:
                    setattr(ctx, name, value)
            return ctx
        return make

    server = StreamServer(("127.0.0.1", 0), answer, ssl_context=server_context)
    server.start()
    try:
        url = f"https://127.0.0.1:{server.server_port}"
        for settings, expected in [({}, "TLSv1.3"), ({"maximum_version": ssl.TLSVersion.TLSv1_2}, "TLSv1.2"),
                                   ({"maximum_version": ssl.TLSVersion.TLSv1_2, "ciphers": "ECDHE+CHACHA20"},
                                    "TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305")]:  # trustme keys are ECDSA
            s, _ = session(url, ssl_context_factory=factory(**settings))
            try:
                r = s.get("/")
                assert r.status_code == 200 and r.text.startswith(expected), (settings, r.text, repr(r.error))
            finally:
                s.close()
    finally:
        server.stop()


def test_an_inconsistent_ssl_context_raises_pythons_error_at_the_first_request(tls_server):
    def factory() -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_NONE  # Python's ssl refuses this itself
        return ctx

    s, rec = session(tls_server, ssl_context_factory=factory)
    with pytest.raises(ValueError, match="check_hostname"):
        s.get("/x")
    assert rec.calls == []

    def keylog() -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.keylog_filename = os.devnull
        return ctx

    s, _ = session(tls_server, ssl_context_factory=keylog)
    with pytest.raises(ValueError, match="keylog_filename"):
        s.get("/x")


def test_a_user_logged_in_over_https_keeps_its_session_over_http(tls_server, testserver):
    # One jar for both transports: the https login's cookie goes with plain-http requests to the same host, but
    # not its Secure one.
    s, rec = session(tls_server)
    try:
        assert s.get("/login").status_code == 200
        assert {c.name for c in s.cookies} == {"session", "token"}
        r = s.get(f"{testserver.url}/cookies")
        assert r.json() == {"session": "abc"} and not rec.failures()
    finally:
        s.close()
