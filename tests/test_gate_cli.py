"""The `locust-c` command itself: --help on every subcommand and usage errors."""

from __future__ import annotations

import pytest
from test_gate_helpers import cli

from locust_c.__main__ import build_parser, main

SUBCOMMANDS = ("gate", "compare", "leak", "wait-ready")


def test_top_level_help_lists_every_subcommand() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout
    assert "exit codes: 0 pass, 1 budget breached, 2 bad input" in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: locust-c {name}")
    assert "exit codes:" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["deploy"], "invalid choice: 'deploy'"),
        (["gate", "results.json"], "the following arguments are required: --sla-file"),
        (["gate", "--sla-file", "s.yml", "r.json", "--today", "tomorrow"], "'tomorrow' is not a date"),
        (["compare", "base.json"], "the following arguments are required: CURRENT"),
        (["compare", "a.json", "b.json", "--max-p95-growth", "lots"], "'lots' is not a number"),
        (["leak", "--pid", "1", "--cgroup", "/x"], "not allowed with argument"),
        (["leak", "--pid", "1", "--interval", "0"], "'0' must be > 0"),
    ],
)
def test_usage_errors_exit_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_the_parser_is_named_locust_c() -> None:
    assert build_parser().prog == "locust-c"
