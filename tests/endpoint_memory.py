"""Memory per Locust stats row: RSS growth of this process when one user's requests spread over N names.

Run as ``python tests/endpoint_memory.py URL fastc|fasthttp N REQUESTS``; prints the growth in KiB from
the same requests under one name to the same number under N names, divided by N. The requests run under a
Locust LocalRunner, as in a real run, so both users record into Locust's own stats table.
"""

from __future__ import annotations

import gc
import sys

from locust import FastHttpUser, constant
from locust.env import Environment

from locust_c import FastCUser


def rss_kib() -> int:
    gc.collect()
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def main() -> None:
    url, kind, names, requests = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    base = FastCUser if kind == "fastc" else FastHttpUser

    class Probe(base):  # type: ignore[misc, valid-type]
        host = url
        wait_time = constant(0)

    env = Environment(user_classes=[Probe])
    env.create_local_runner()
    user = Probe(env)
    for i in range(requests * names):  # the same requests under one name: warms up everything but the rows
        user.client.get(f"/echo?i={i}", name="/one")
    before = rss_kib()
    for i in range(requests * names):
        user.client.get(f"/echo?i={i}", name=f"/item/{i % names}")
    after = rss_kib()
    assert len(env.runner.stats.entries) == names + 1
    print((after - before) / names)


if __name__ == "__main__":
    main()
