"""The CI performance gate: SLA budgets, run-over-run regression, a memory-leak hunter and readiness polling.

Everything here is pure Python and independent of a running Locust, so the same code gates a run in process
(through :mod:`locust_c.plugin`) and after the fact (through the ``locust-c`` command).

Exit codes shared by every command: :data:`EXIT_PASS` (0), :data:`EXIT_FAIL` (1, a budget is breached) and
:data:`EXIT_BAD_INPUT` (2, an unreadable or malformed input).
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """An input the gate cannot use: a missing, unreadable or malformed file, or a bad option value.

    The message names the file, the line when one is known, and what was expected; commands print it and exit
    with :data:`EXIT_BAD_INPUT`.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.detail = message
        where = path if path is not None else ""
        if path is not None and line is not None:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
