"""CPU per request of FastCUser's two threads: the Python thread (users, gevent) and the engine thread.

``make bench`` measures whole generators side by side; this splits FastCUser's own cost, to see which side a
change moves. It runs USERS looping users (``wait_time = constant(0)``, ``GET /``, or with ``--task checkout``
the benchmark's checkout: a POST with headers and a JSON body checked in ``catch_response``) in this process
against the C test server, the server pinned to CPU 0 and this process to CPU 1 when there are two, and prints
requests per CPU-second and the CPU time per request of each thread over a steady window (``--task noop``: users
whose task does nothing, the cost of Locust's own task loop, which no user class avoids)::

    .venv/bin/python bench/per_thread.py --users 50 --seconds 6
    LOCUST_C_TRANSPORT=curl .venv/bin/python bench/per_thread.py --task checkout
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "locustfiles"))

import gevent  # noqa: E402
from bench_common import ORDER, ORDER_HEADERS, check_order  # noqa: E402
from locust import constant, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from locust_c import FastCUser  # noqa: E402
from locust_c.testserver import TestServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds() -> dict[int, tuple[float, float]]:
    """(user + system, system) CPU seconds of each thread of this process, by thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user, system = int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS
        out[int(tid)] = (user + system, system)
    return out


def measure(users: int, seconds: float, what: str) -> dict[str, float]:
    """Run ``users`` looping users doing ``what`` and return the rate and the CPU per iteration of each thread."""
    two_cpus = (os.cpu_count() or 1) >= 2
    if two_cpus:
        os.sched_setaffinity(0, {1})
    done = [0]  # noop: iterations counted here, there are no requests
    with TestServer(cpu=0 if two_cpus else None) as server:

        class Looping(FastCUser):
            host = server.url
            wait_time = constant(0)

            if what == "get":
                @task
                def index(self) -> None:
                    self.client.get("/")
            elif what == "checkout":
                @task
                def order(self) -> None:
                    with self.client.post("/echo", json=ORDER, headers=ORDER_HEADERS, name="/order",
                                          catch_response=True) as r:
                        check_order(r)
            else:
                @task
                def nothing(self) -> None:
                    done[0] += 1
                    gevent.sleep(0)  # a task that yields, as one waiting for its response does

        def count() -> int:
            return done[0] if what == "noop" else server.stats()["requests"]

        runner = Environment(user_classes=[Looping], events=events).create_local_runner()
        runner.start(users, spawn_rate=users)
        gevent.sleep(1.5)  # every user spawned and connected
        n0, cpu0, at0 = count(), thread_cpu_seconds(), time.monotonic()
        gevent.sleep(seconds)
        n1, cpu1, at1 = count(), thread_cpu_seconds(), time.monotonic()
        runner.quit()
    n = n1 - n0
    main_tid = os.getpid()
    total = sum(cpu1[t][0] - cpu0[t][0] for t in cpu1 if t in cpu0)
    out = {"rate": n / (at1 - at0), "per_cpu_second": n / total, "us": total / n * 1e6, "python_us": 0.0,
           "python_kernel_us": 0.0, "engine_us": 0.0, "engine_kernel_us": 0.0}
    for tid in (t for t in cpu1 if t in cpu0):
        spent, system = cpu1[tid][0] - cpu0[tid][0], cpu1[tid][1] - cpu0[tid][1]
        name = "python" if tid == main_tid else "engine"
        out[f"{name}_us"] += spent / n * 1e6
        out[f"{name}_kernel_us"] += system / n * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="looping users (default 50)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the measured window (default 6)")
    parser.add_argument("--task", choices=("get", "checkout", "noop"), default="get",
                        help="what each user does (noop: nothing but Locust's own task loop)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    r = measure(args.users, args.seconds, args.task)
    if args.json:
        print(json.dumps(r))
        return
    unit = "task" if args.task == "noop" else "request"
    print(f"{r['rate']:,.0f} {unit}s/s, {r['per_cpu_second']:,.0f} per CPU-second, {r['us']:.1f} µs per {unit}")
    for name in ("python", "engine"):
        if r[f"{name}_us"] > 0:
            print(f"  {name:7s} {r[f'{name}_us']:5.1f} µs per {unit} ({r[f'{name}_kernel_us']:.1f} in the kernel)")


if __name__ == "__main__":
    main()
