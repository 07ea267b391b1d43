"""What the benchmark locustfiles share: the path to request and an optional exact-latency recorder.

The benchmark (bench/run.py) sets two environment variables for each Locust run:

``BENCH_PATH``
    the path every ``Busy`` user requests in a loop (default ``/``);
``BENCH_LATENCY_FILE``
    when set, every response time Locust receives is also kept unrounded, and at exit the p50/p99 of them are
    written to this file as JSON. Locust itself rounds response times under 100 ms to whole milliseconds, which
    at 5 ms is a 10 % step; the exact figures let the benchmark judge a 10 % target fairly.
"""

from __future__ import annotations

import json
import math
import os
from array import array
from typing import Any

from locust import events

BENCH_PATH: str = os.environ.get("BENCH_PATH", "/")
"""The path the busy users request."""

IDLE_WAIT_SECONDS: float = 600.0
"""How long an idle user waits between tasks: longer than any idle run lasts."""

ORDER_HEADERS: dict[str, str] = {"Authorization": "Bearer bench-token", "X-Request-Source": "bench",
                                 "Accept-Language": "en"}
"""The checkout task's headers: what a realistic locustfile sends besides the defaults."""

ORDER: dict[str, Any] = {"customer": 4711, "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
                         "coupon": None, "express": True}
"""The checkout task's JSON body."""


def check_order(response: Any) -> None:
    """The checkout task's validation, as a locustfile does it inside ``catch_response``: the echo must be the
    POST that was sent."""
    if response.status_code != 200 or response.json()["method"] != "POST":
        response.failure(f"unexpected answer {response.status_code}")


def percentile(sorted_values: array, fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _install_latency_recorder(path: str) -> None:
    """Record every response time and write count, p50, p99 and mean to ``path`` when Locust quits."""
    times = array("d")

    def on_request(response_time: float, exception: BaseException | None = None, **_: Any) -> None:
        if exception is None:
            times.append(response_time)

    def on_quit(**_: Any) -> None:
        values = array("d", sorted(times))
        summary = {
            "count": len(values),
            "p50": percentile(values, 0.50),
            "p99": percentile(values, 0.99),
            "mean": sum(values) / len(values) if values else 0.0,
        }
        with open(path, "w", encoding="utf-8") as out:
            json.dump(summary, out)

    events.request.add_listener(on_request)
    events.quit.add_listener(on_quit)


if os.environ.get("BENCH_LATENCY_FILE"):
    _install_latency_recorder(os.environ["BENCH_LATENCY_FILE"])
