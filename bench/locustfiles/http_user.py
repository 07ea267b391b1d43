"""The benchmark's HttpUser locustfile: Locust's HttpUser (requests).

``Busy`` requests ``BENCH_PATH`` in a loop without waiting (throughput and latency runs), ``Checkout`` posts an
order and checks the answer (the checkout runs); ``Idle`` opens its
keep-alive connection in ``on_start`` and then sleeps (memory runs). bench/run.py names the class to run.
"""

from bench_common import BENCH_PATH, IDLE_WAIT_SECONDS, ORDER, ORDER_HEADERS, check_order
from locust import HttpUser, constant, task


class Busy(HttpUser):
    """Requests the benchmark path as fast as it can."""

    wait_time = constant(0)

    @task
    def request(self) -> None:
        self.client.get(BENCH_PATH)


class Idle(HttpUser):
    """One request to open a keep-alive connection, then idle."""

    wait_time = constant(IDLE_WAIT_SECONDS)

    def on_start(self) -> None:
        self.client.get("/")

    @task
    def nothing(self) -> None:
        pass


class Checkout(HttpUser):
    """A realistic task: a POST with headers and a JSON body, validated in a ``catch_response`` block."""

    wait_time = constant(0)

    @task
    def order(self) -> None:
        with self.client.post("/echo", json=ORDER, headers=ORDER_HEADERS, name="/order", catch_response=True) as r:
            check_order(r)
