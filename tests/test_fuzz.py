"""A short libFuzzer run of the content decoder (tests/fuzz/fuzz_decode.c, ASan + UBSan); `make fuzz` runs longer.

The seed corpus is written here from real compressed bodies (gzip, zlib, raw deflate, brotli, a gzip bomb), so
the fuzzer starts from inputs that reach deep into each decoder.
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
FUZZER = ROOT / "build" / "fuzz_decode"

pytestmark = pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang (make test installs it)")


@pytest.fixture(scope="module")
def fuzzer() -> Path:
    proc = subprocess.run(["make", "-s", "--no-print-directory", "build/fuzz_decode"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return FUZZER


def test_the_decoder_survives_a_short_fuzzing_run(fuzzer, tmp_path):
    body = b"GET /api/products HTTP/1.1 " * 300
    # The first byte picks the coding (0 gzip, 1 deflate, 2 br, 3 identity; bit 2: no limit), the second the limit.
    seeds = {"gzip": b"\x00\x10" + gzip.compress(body), "zlib": b"\x01\x10" + zlib.compress(body),
             "raw": b"\x01\x10" + zlib.compress(body)[2:-4], "br": b"\x02\x10" + brotli.compress(body),
             "identity": b"\x03\x01" + body, "bomb": b"\x04\x00" + gzip.compress(b"\0" * 2_000_000),
             "one-byte-gzip": b"\x20\x00\x05"}  # a gzip body whose first chunk is one byte: read past it once
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)
    proc = subprocess.run([str(fuzzer), "-max_total_time=8", "-max_len=65536", f"-artifact_prefix={tmp_path}/",
                           str(corpus)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
