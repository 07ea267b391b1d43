"""The same visitors in the closed and in the open model, against a service that stalls now and then.

    MODEL=open   locust -f examples/open_model/locustfile.py -u 10 -r 10 -t 30s --headless -H http://...
    MODEL=closed locust -f examples/open_model/locustfile.py -u 10 -r 10 -t 30s --headless -H http://...

Closed (Locust's model): each of the users sends its next request 1/30 s after its last one began, when the
answer is back. Open: 300 iterations arrive each second whoever is free (``arrival_rate``), and the latency of each
request is also measured from when its iteration was due (``*_corrected_ms``). With ``SAMPLES=path`` every
request's finish time, service time and corrected latency go to ``path`` (for plot.py).
"""

from __future__ import annotations

import os
import time

from locust import constant_throughput, events, task

from locust_c import FastCUser, arrival_rate

RATE, USERS = 300, 10
OPEN = os.environ.get("MODEL", "open") == "open"
SAMPLES: list[tuple[float, float, float]] = []


class Visitor(FastCUser):
    wait_time = arrival_rate(RATE) if OPEN else constant_throughput(RATE / USERS)

    @task
    def index(self) -> None:
        start = time.time()
        self.client.get("/")
        done = time.time()
        due = getattr(self, "locust_c_due", start)
        SAMPLES.append((done, (done - start) * 1000, (done - due) * 1000))


@events.quitting.add_listener
def _write_samples(**_kwargs: object) -> None:
    path = os.environ.get("SAMPLES")
    if path:
        with open(path, "w") as f:
            f.writelines(f"{done:.6f} {service:.3f} {corrected:.3f}\n" for done, service, corrected in SAMPLES)
