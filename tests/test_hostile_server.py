"""A service that answers badly is measured, not trusted: every fault is one recorded failure, never a crash,
a hang, a success or unbounded memory.

The server is tests/rawserver.py: each request names a script of raw bytes, pauses and resets.
"""

from __future__ import annotations

import gzip
import os
import random
import zlib
from collections import Counter
from typing import Any

import gevent
import gevent.pool
import pytest
from helpers import session
from rawserver import FOREVER, KEEP, RESET, RawServer

from locust_c.exceptions import BadResponse, ConnectionClosed, ResponseTooLarge

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")

OK_CL = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world"
OK_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
GZ_BODY = gzip.compress(b"hello world " * 20)
OK_GZIP = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(GZ_BODY), GZ_BODY)


# AddressSanitizer (make sanitize) keeps freed memory in quarantine and pads every block: RSS says nothing there.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def rss_growth_kib(call: Any) -> tuple[Any, int]:
    """call()'s result and how far this process's RSS rose above its start while the call ran (sampled)."""
    start = peak = rss_kib()
    done = False

    def sample() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, rss_kib())
            gevent.sleep(0.005)

    sampler = gevent.spawn(sample)
    try:
        result = call()
    finally:
        done = True
        sampler.join()
    return result, max(peak, rss_kib()) - start


@pytest.mark.parametrize(("full", "complete_from"), [(OK_CL, len(OK_CL)), (OK_GZIP, len(OK_GZIP)),
                                                     # libcurl 7.88 ends a chunked body at the CR of its
                                                     # final empty line, without waiting for the LF.
                                                     (OK_CHUNKED, len(OK_CHUNKED) - 1)],
                         ids=["content-length", "gzip", "chunked"])
def test_a_response_cut_anywhere_before_its_end_is_a_failure(full, complete_from, transport):
    if transport == "native":  # the native parser waits for the LF that ends a chunked body
        complete_from = len(full)
    scripts = {f"cut{i}": [full[:i]] for i in range(len(full) + 1)}
    with RawServer(scripts) as server:
        s, rec = session(server.url, network_timeout=5)
        try:
            for i in range(len(full) + 1):
                r = s.get(f"/cut{i}")
                if i < complete_from:
                    assert r.status_code == 0 and isinstance(r.error, ConnectionClosed), (i, full[:i], r.error)
                else:
                    assert r.error is None and r.status_code == 200, (i, r.error)
                    assert r.content in (b"hello world", b"hello world " * 20)
            assert len(rec.calls) == len(full) + 1 and len(rec.failures()) == complete_from
        finally:
            s.close()


# ---- a seeded generator of malformed responses ------------------------------------------------------------------

def status_lines(rng: random.Random) -> list[bytes]:
    return [b"HTTP/1.1 abc OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 -200 OK", b"HTTP/1.1 20 OK", b"FOO 200 OK",
            b"HTTP/1.1200 OK", b"HTTP/x.y 200 OK", b"\x00\x01\x02", b"HTTP/1.1 " + bytes(rng.randrange(256) for _ in
                                                                                      range(rng.randrange(1, 9)))]


def cases(seed: int) -> dict[str, tuple[list[Any], set[bytes]]]:
    """name -> (script, the bodies a success may carry; empty: the request must fail)."""
    rng = random.Random(seed)
    out: dict[str, tuple[list[Any], set[bytes]]] = {}

    def add(kind: str, script: list[Any], ok: set[bytes] | None = None) -> None:
        out[f"{kind}-{len(out)}"] = (script, ok or set())

    for _ in range(80):  # random bytes: never valid HTTP
        add("random", [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))])
    for _ in range(40):  # random bytes after a valid status line and headers, in place of a chunked body
        add("badchunk", [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         bytes(rng.choice(b"0123456789abcdefxyz;\r\n -") for _ in range(rng.randrange(1, 40)))])
    for line in status_lines(rng):
        add("status", [line + b"\r\nContent-Length: 2\r\n\r\nok"], {b"ok"})
    for value in (b"5\r\nContent-Length: 6", b"99999999999999999999999", b"-1", b"1e3", b"0x10", b"5, 6", b""):
        add("length", [b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nhello!"])
    for value in (b"fffffffffffffffffffff", b"-5", b"5;\x00", b"g", b"4"):
        # A chunk extension (after ";") is skipped, whatever it holds: then "hello" is the correct body.
        add("chunksize", [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + value + b"\r\nhello\r\n0\r\n\r\n"],
            {b"hello"} if value.startswith(b"5;") else set())
    for n in (1, 50, 2000):  # 1xx floods, then an answer
        add("1xx", [b"HTTP/1.1 100 Continue\r\n\r\n" * n + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], {b"ok"})
    add("1xx-forever", [FOREVER(b"HTTP/1.1 100 Continue\r\n\r\n")])
    for _ in range(10):  # a valid answer trickled out, quicker than the timeout: a correct success
        full = OK_CL
        script: list[Any] = []
        for i in range(0, len(full), 7):
            script += [full[i:i + 7], 0.01]
        add("trickle", script, {b"hello world"})
    add("stall-in-head", [OK_CL[:30], 30.0])  # then nothing: fails by network_timeout
    add("stall-in-body", [OK_CL[:-3], 30.0])
    corrupt = bytearray(GZ_BODY)
    for _ in range(20):  # corrupt gzip: flipped bytes, or cut
        broken = bytearray(corrupt)
        for _ in range(rng.randrange(1, 5)):
            broken[rng.randrange(10, len(broken))] ^= 0xFF
        body = bytes(broken) if rng.random() < 0.7 else GZ_BODY[: rng.randrange(1, len(GZ_BODY) - 8)]
        add("gzip", [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)],
            {b"hello world " * 20})  # a flip inside the stored CRC or size can go unseen by zlib: content decides
    add("reset-in-head", [OK_CL[:20], RESET])
    add("reset-in-body", [OK_CL[:-4], RESET])
    add("reset-first", [RESET])
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_hostile_responses_are_one_failure_or_a_correct_success_each(seed):
    table = cases(seed)
    with RawServer({name: script for name, (script, _) in table.items()}) as server:
        users = [session(server.url, network_timeout=1.0) for _ in range(20)]
        outcomes: dict[str, Any] = {}

        def run(name: str, s: Any) -> None:
            outcomes[name] = s.get(f"/{name}", name=name)

        pool = gevent.pool.Pool(len(users))
        try:
            with gevent.Timeout(120):  # a hang guard: nothing here waits longer than network_timeout
                for i, name in enumerate(table):
                    pool.spawn(run, name, users[i % len(users)][0])
                pool.join(raise_error=True)
            recorded = Counter(call["name"] for _, rec in users for call in rec.calls)
            for name, (_, ok) in table.items():
                r = outcomes[name]
                assert recorded[name] == 1, name
                if r.error is None:
                    assert r.content in ok, (name, r.status_code, r.content[:80])
                else:
                    assert r.status_code == 0 and isinstance(r.error, (ConnectionError, TimeoutError)), (name, r.error)
            trickled = {n: outcomes[n].error for n in table if n.startswith("trickle")}
            assert not any(trickled.values()), trickled
            assert all(outcomes[n].error is not None for n in table if n.startswith(("random", "stall", "reset")))
            assert isinstance(outcomes[next(n for n in table if n.startswith("stall-in-body"))].error, TimeoutError)
        finally:
            for s, _ in users:
                s.close()


# ---- limits ------------------------------------------------------------------------------------------------------

def test_an_endless_body_fails_at_max_response_bytes_with_bounded_memory():
    cap = 8 * 1024 * 1024
    scripts = {"endless": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FOREVER(b"4000\r\n" + b"x" * 0x4000
                                                                                         + b"\r\n")],
               "ok": [OK_CL, KEEP]}
    with RawServer(scripts) as server:
        s, rec = session(server.url, network_timeout=20, max_response_bytes=cap)
        try:
            for _ in range(3):
                r, growth = rss_growth_kib(lambda: s.get("/endless"))
                assert isinstance(r.error, ResponseTooLarge), repr(r.error)
                assert "max_response_bytes (8388608 bytes)" in str(r.error)
                assert UNDER_ASAN or growth < 3 * cap // 1024  # a body and its buffer's doubling, not the stream
            assert s.get("/ok").content == b"hello world"
            assert len(rec.failures()) == 3
        finally:
            s.close()


def test_a_gzip_bomb_fails_at_the_limit_after_decompression():
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(512)) + compressor.flush()  # 512 MiB inflated
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    with RawServer({"bomb": [head + bomb]}) as server:
        s, rec = session(server.url, network_timeout=30)  # the default limit: 64 MiB
        try:
            r, growth = rss_growth_kib(lambda: s.get("/bomb"))
            assert isinstance(r.error, ResponseTooLarge), repr(r.error)
            assert UNDER_ASAN or growth < 3 * 64 * 1024  # 512 MiB inflated would be far past this
        finally:
            s.close()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_large_compressed_body_is_decoded_exactly_across_pauses(coding):
    """The engine decodes about 1 MiB per loop iteration and pauses the transfer past that, so that one body
    that expands a thousandfold cannot hold every other request's clock; what it delivers is still exact."""
    import brotli

    rng = random.Random(7)
    words = [bytes(rng.choice(b"abcdefghij") for _ in range(rng.randrange(3, 9))) for _ in range(500)]
    body = b" ".join(rng.choice(words) for _ in range(2_000_000)) + bytes(8 << 20)  # ~20 MiB, some of it zeros
    packed = {"gzip": lambda b: gzip.compress(b, 6), "deflate": lambda b: zlib.compress(b, 6),
              "br": lambda b: brotli.compress(b, quality=4)}[coding](body)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (coding.encode(), len(packed))
    with RawServer({"big": [head + packed, KEEP]}) as server:
        s, _ = session(server.url, network_timeout=60)
        try:
            before = s.get("/big") and s._handle.engine.counters()["decode_pauses"]
            r = s.get("/big")
            assert r.error is None and r.content == body
            assert s._handle.engine.counters()["decode_pauses"] - before >= len(body) // (2 << 20)
        finally:
            s.close()


def test_a_content_length_over_the_limit_fails_before_the_body():
    scripts = {"big": [b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", 30.0]}
    with RawServer(scripts) as server:
        s, _ = session(server.url, network_timeout=20, max_response_bytes=1000)
        try:
            r = s.get("/big")  # fails at once: it does not wait 20 s for a body it would refuse
            assert isinstance(r.error, ResponseTooLarge) and "1000 bytes" in str(r.error)
        finally:
            s.close()


@pytest.mark.parametrize(("head", "words"), [
    (b"".join(b"X-Header-%06d: %s\r\n" % (i, b"v" * 100) for i in range(3000)), "headers larger than 300 KB"),
    (b"X-Huge: " + b"v" * 200_000 + b"\r\n", "header line longer than 100 KB"),
    (b"Location: /" + b"a" * 200_000 + b"\r\n", "header line longer than 100 KB"),
], ids=["header-block", "header-line", "location"])
def test_oversized_headers_fail_with_a_message_that_says_so(head, words):
    scripts = {"big": [b"HTTP/1.1 302 Found\r\n" + head + b"Content-Length: 0\r\n\r\n"]}
    with RawServer(scripts) as server:
        s, rec = session(server.url)
        try:
            r = s.get("/big")
            assert isinstance(r.error, ResponseTooLarge) and words in str(r.error), repr(r.error)
            assert len(rec.failures()) == 1
        finally:
            s.close()


def test_a_long_reason_phrase_is_kept():
    reason = b"R" * 5000
    with RawServer({"r": [b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\nok"]}) as server:
        s, _ = session(server.url)
        try:
            r = s.get("/r")
            assert r.error is None and r.reason == reason.decode()
        finally:
            s.close()


# ---- errors follow the fault, retries follow the method ----------------------------------------------------------

def test_a_reset_does_not_colour_later_errors_on_the_same_handle():
    scripts = {"reset": [OK_CL[:10], RESET],
               "badchunk": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]}
    with RawServer(scripts) as server:
        first, _ = session(server.url)
        second, _ = session(server.url)  # another user: the engine's pooled handle goes from one to the other
        try:
            assert isinstance(first.get("/reset").error, ConnectionResetError)
            for s in (first, second):
                error = s.get("/badchunk").error
                assert isinstance(error, BadResponse) and not isinstance(error, ConnectionResetError), repr(error)
        finally:
            first.close()
            second.close()


def test_a_post_is_not_sent_again_once_its_answer_began():
    with RawServer({"cut": [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", RESET]}) as server:
        s, rec = session(server.url, max_retries=3)
        try:
            assert isinstance(s.post("/cut", data=b"order=1").error, ConnectionResetError)
            assert isinstance(s.get("/cut").error, ConnectionResetError)
            assert server.requests["cut"] == 2  # neither was sent again: an answer had begun
            assert len(rec.calls) == 2
        finally:
            s.close()


def test_retries_resend_only_what_may_be_sent_twice():
    """A request the server read and dropped unanswered: GET is sent again, POST is not (it may have been applied)."""
    with RawServer({"drop": []}) as server:
        s, _ = session(server.url, max_retries=2)
        try:
            assert isinstance(s.get("/drop").error, ConnectionClosed)
            assert server.requests["drop"] == 3
            assert isinstance(s.post("/drop", data=b"x").error, ConnectionClosed)
            assert server.requests["drop"] == 4
        finally:
            s.close()


# ---- found in review: each failed before its fix ---------------------------------------------------------------

def test_a_body_going_over_the_limit_while_resumed_fails_at_once_and_the_user_goes_on():
    """The limit is crossed while a paused body is handed back: libcurl 7.88 reports that only to the caller of
    curl_easy_pause, and the transfer would wait for network_timeout (60 s here) on a kept-alive connection."""
    packed = gzip.compress(bytes(8 << 20))
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with RawServer({"zeros": [head + packed, KEEP], "ok": [OK_CL, KEEP]}) as server:
        s, rec = session(server.url, network_timeout=60, max_response_bytes=4 << 20)
        try:
            assert s.get("/ok").status_code == 200  # the connection is open and kept
            with gevent.Timeout(15):  # a hang guard only: the failure comes as soon as the limit is crossed
                for _ in range(3):
                    r = s.get("/zeros")
                    assert isinstance(r.error, ResponseTooLarge), repr(r.error)
            assert s.get("/ok").content == b"hello world"
        finally:
            s.close()


def test_the_limit_counts_only_bodies_that_are_read():
    """A Content-Length over the limit is refused early only on a body that would be read: not on a HEAD's, nor
    on a redirect's that libcurl skips when it follows."""
    scripts = {"head": [b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", KEEP],
               "moved": [b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, KEEP],
               "ok": [OK_CL, KEEP]}
    with RawServer(scripts) as server:
        s, _ = session(server.url, max_response_bytes=1000)
        try:
            r = s.head("/head")
            assert r.error is None and r.headers["content-length"] == "100000000"
            r = s.get("/moved")
            assert r.error is None and r.content == b"hello world"
        finally:
            s.close()


@pytest.mark.parametrize("wrapped", [True, False], ids=["zlib", "raw"])
def test_a_deflate_body_whose_first_byte_comes_alone(wrapped):
    body = b"hello deflate " * 100
    packed = zlib.compress(body) if wrapped else zlib.compress(body)[2:-4]
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with RawServer({"split": [head + packed[:1], 0.1, packed[1:]]}) as server:
        s, _ = session(server.url)
        try:
            r = s.get("/split")
            assert r.error is None and r.content == body
        finally:
            s.close()


def test_header_lines_that_do_not_describe_the_body_are_not_trusted():
    cut = GZ_BODY[:-8]
    scripts = {
        # Two coding lines are two codings: one is understood, two are refused (not decoded once).
        "twice": [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(GZ_BODY), GZ_BODY)],
        # A trailer cannot undo the body's coding: the cut gzip stream still fails.
        "trailer": [b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n"
                    b"0\r\nContent-Encoding: identity\r\nContent-Length: 1\r\n\r\n" % (len(cut), cut)],
        # Nor can a trailer's Content-Length fail a complete body.
        "length": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nContent-Length: 7\r\n\r\n"],
    }
    with RawServer(scripts) as server:
        s, _ = session(server.url)
        try:
            assert isinstance(s.get("/twice").error, BadResponse)
            assert isinstance(s.get("/trailer").error, BadResponse)
            r = s.get("/length")
            assert r.error is None and r.content == b"ok"
        finally:
            s.close()
