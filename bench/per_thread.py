"""CPU per request of FastCUser's two threads: the Python thread (users, gevent) and the engine thread.

``make bench`` measures whole generators side by side; this splits FastCUser's own cost, to see which side a
change moves. It runs USERS looping users (``wait_time = constant(0)``, ``GET /``, or with ``--task checkout``
the benchmark's checkout: a POST with headers and a JSON body checked in ``catch_response``) in this process
against the C test server, the server pinned to CPU 0 and this process to CPU 1 when there are two, and prints
requests per CPU-second and the CPU time per request of each thread over a steady window::

    .venv/bin/python bench/per_thread.py --users 50 --seconds 6
    LOCUST_C_TRANSPORT=curl .venv/bin/python bench/per_thread.py --task checkout
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="looping users (default 50)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the measured window (default 6)")
    parser.add_argument("--task", choices=("get", "checkout"), default="get", help="what each user does")
    args = parser.parse_args()
    two_cpus = (os.cpu_count() or 1) >= 2
    if two_cpus:
        os.sched_setaffinity(0, {1})
    with TestServer(cpu=0 if two_cpus else None) as server:

        class Looping(FastCUser):
            host = server.url
            wait_time = constant(0)

            if args.task == "get":
                @task
                def index(self) -> None:
                    self.client.get("/")
            else:
                @task
                def order(self) -> None:
                    with self.client.post("/echo", json=ORDER, headers=ORDER_HEADERS, name="/order",
                                          catch_response=True) as r:
                        check_order(r)

        runner = Environment(user_classes=[Looping], events=events).create_local_runner()
        runner.start(args.users, spawn_rate=args.users)
        gevent.sleep(1.5)  # every user spawned and connected
        requests0, cpu0, at0 = server.stats()["requests"], thread_cpu_seconds(), time.monotonic()
        gevent.sleep(args.seconds)
        requests1, cpu1, at1 = server.stats()["requests"], thread_cpu_seconds(), time.monotonic()
        runner.quit()
    n = requests1 - requests0
    main_tid = os.getpid()
    total = sum(cpu1[t][0] - cpu0[t][0] for t in cpu1 if t in cpu0)
    print(f"{n / (at1 - at0):,.0f} req/s, {n / total:,.0f} req per CPU-second, {total / n * 1e6:.1f} µs per request")
    for tid in sorted(t for t in cpu1 if t in cpu0):
        spent, system = cpu1[tid][0] - cpu0[tid][0], cpu1[tid][1] - cpu0[tid][1]
        if spent > 0:
            name = "python" if tid == main_tid else "engine"
            print(f"  {name:7s} {spent / n * 1e6:5.1f} µs per request ({system / n * 1e6:.1f} in the kernel)")


if __name__ == "__main__":
    main()
