"""Short libFuzzer runs (ASan + UBSan) of the content decoder (tests/fuzz/fuzz_decode.c) and of the native
transport's response parser (tests/fuzz/fuzz_h1.c); `make fuzz` and `make fuzz-h1` run longer.

The seed corpora are written here from real compressed bodies (gzip, zlib, raw deflate, brotli, a gzip bomb) and
real responses (lengths, chunks with extensions and trailers, 1xx, bodies to the close), so that the fuzzers start
from inputs that reach deep into each.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import zlib
from pathlib import Path

import brotli
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang (make test installs it)")


def build(target: str) -> Path:
    proc = subprocess.run(["make", "-s", "--no-print-directory", f"build/{target}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ROOT / "build" / target


def run(fuzzer: Path, seeds: dict[str, bytes], tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)
    proc = subprocess.run([str(fuzzer), "-max_total_time=5", "-max_len=65536", f"-artifact_prefix={tmp_path}/",
                           str(corpus)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def fuzzer() -> Path:
    return build("fuzz_decode")


def test_the_decoder_survives_a_short_fuzzing_run(fuzzer, tmp_path):
    body = b"GET /api/products HTTP/1.1 " * 300
    # The first byte picks the coding (0 gzip, 1 deflate, 2 br, 3 identity; bit 2: no limit), the second the limit.
    seeds = {"gzip": b"\x00\x10" + gzip.compress(body), "zlib": b"\x01\x10" + zlib.compress(body),
             "raw": b"\x01\x10" + zlib.compress(body)[2:-4], "br": b"\x02\x10" + brotli.compress(body),
             "identity": b"\x03\x01" + body, "bomb": b"\x04\x00" + gzip.compress(b"\0" * 2_000_000),
             "one-byte-gzip": b"\x20\x00\x05"}  # a gzip body whose first chunk is one byte: read past it once
    run(fuzzer, seeds, tmp_path)


def test_the_response_parser_survives_a_short_fuzzing_run(tmp_path):
    # The first byte: bit 0 says the request was a HEAD. The rest is the server's bytes up to its close.
    ok = b"HTTP/1.1 200 OK\r\n"
    seeds = {"length": b"\0" + ok + b"Content-Length: 5\r\n\r\nhello",
             "chunked": b"\0" + ok + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
             "continue": b"\0HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nto the end",
             "head": b"\1HTTP/1.1 200 OK\nContent-Length: 5\n\n",
             "both": b"\0HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 3\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             "gzip": b"\0" + ok + b"Content-Encoding: gzip\r\nContent-Length: 21\r\n\r\n" + gzip.compress(b"x")}
    run(build("fuzz_h1"), seeds, tmp_path)
