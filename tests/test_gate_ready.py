"""Readiness: `locust-c wait-ready` against the demo shop on loopback."""

from __future__ import annotations

import pytest
from helpers import free_port
from test_gate_helpers import cli, shop

from locust_c.gate.ready import Answer, is_ready


@pytest.mark.parametrize(
    ("answer", "ready"),
    [
        (Answer(200, '{"status": "ready"}'), True),
        (Answer(200, '{"status": "UP"}'), True),
        (Answer(200, '{"status": "starting"}'), False),
        (Answer(200, '{"checks": []}'), True),
        (Answer(200, '{"status": 1}'), True),
        (Answer(200, "[1, 2]"), True),
        (Answer(200, "OK"), True),
        (Answer(503, '{"status": "ready"}'), False),
        (Answer(None, error="cannot connect: refused"), False),
    ],
)
def test_what_counts_as_ready(answer: Answer, ready: bool) -> None:
    assert is_ready(answer) is ready


def test_waits_until_the_body_says_ready() -> None:
    with shop("--warmup", "1.5") as (url, _):
        result = cli("wait-ready", url + "/health/ready", "--timeout", "30", "--interval", "0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is ready after" in result.stdout and '{"status": "ready"}' in result.stdout


def test_times_out_with_the_last_answer_while_starting() -> None:
    with shop("--warmup", "60") as (url, _):
        result = cli("wait-ready", url + "/health/ready", "--timeout", "1", "--interval", "0.2")
    assert result.returncode == 1
    assert 'is not ready after 1 s; last answer: HTTP 200: {"status": "starting"}' in result.stderr


def test_times_out_on_a_non_200_answer() -> None:
    with shop() as (url, _):
        result = cli("wait-ready", url + "/nowhere", "--timeout", "0.5", "--interval", "0.2")
    assert result.returncode == 1
    assert 'last answer: HTTP 404: {"error": "not found"}' in result.stderr


def test_times_out_when_nothing_listens() -> None:
    result = cli("wait-ready", f"http://127.0.0.1:{free_port()}/health", "--timeout", "0.5", "--interval", "0.2")
    assert result.returncode == 1
    assert "last answer: cannot connect:" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["localhost:8080/health"], "'localhost:8080/health' is not a URL, expected http://HOST[:PORT]/PATH"),
        (["ftp://127.0.0.1/x"], "is not a URL"),
        (["http://127.0.0.1/x", "--timeout", "0"], "argument --timeout: '0' must be > 0"),
    ],
)
def test_bad_input_exits_2(args: list[str], expected: str) -> None:
    result = cli("wait-ready", *args)
    assert result.returncode == 2
    assert expected in result.stderr
