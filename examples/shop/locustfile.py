"""The demo shop's workload (examples/shop/service.py), gated by examples/slas.yml: 75 % browsers, 25 % buyers.

Buyers run the funnel login → browse → cart → checkout, in that order, again and again; a checkout answered 200
without an ``order_id`` is a failure, which only reading the answer shows. ``locust-c lab`` runs it (see the
README's "Performance lab"); by hand::

    python examples/shop/service.py --port 8080 &
    locust-c wait-ready http://127.0.0.1:8080/health/ready --timeout 60
    locust -f examples/shop/locustfile.py --headless -u 8 -r 8 -t 30s -H http://127.0.0.1:8080 \\
        --sla-file examples/slas.yml --results-json results.json

``LOAD_SHAPE=step`` (or stress, spike, soak) replaces -u/-r with a load shape.
"""

import itertools
import random

from locust import SequentialTaskSet, between, task

from locust_c import FastCUser  # the one line that differs from a FastHttpUser locustfile
from locust_c.shapes import shape_from_env

Shape = shape_from_env(step={"step_users": 5, "step_duration": 10, "steps": 3})

_buyer_numbers = itertools.count(1)


def visit_catalogue(client) -> None:
    """The catalogue, a search, two products: a buyer looks around before choosing."""
    client.get("/api/products")
    client.get("/api/search?q=tea", name="/api/search")
    for _ in range(2):
        client.get(f"/api/products/{random.randint(1, 20)}", name="/api/products/[id]")


class Browser(FastCUser):
    """Looks around and never buys."""

    weight = 3
    wait_time = between(0.02, 0.1)

    @task(10)
    def products(self) -> None:
        self.client.get("/api/products")

    @task(5)
    def product(self) -> None:
        self.client.get(f"/api/products/{random.randint(1, 20)}", name="/api/products/[id]")

    @task(3)
    def search(self) -> None:
        self.client.get("/api/search?q=tea", name="/api/search")


class Funnel(SequentialTaskSet):
    """Login → browse → cart → checkout; the session cookie from the login carries the cart."""

    def on_start(self) -> None:
        self.user_name = f"buyer-{next(_buyer_numbers)}"

    @task
    def login(self) -> None:
        self.client.post("/api/login", json={"user": self.user_name})

    @task
    def browse(self) -> None:
        visit_catalogue(self.client)

    @task
    def add_to_cart(self) -> None:
        self.client.post("/api/cart", json={"product": random.randint(1, 20), "quantity": 1})

    @task
    def checkout(self) -> None:
        with self.client.post("/api/orders", json={}, catch_response=True) as response:
            if response.status_code == 200:
                try:
                    order = response.json()
                except ValueError:
                    order = None
                if not isinstance(order, dict) or "order_id" not in order:
                    response.failure("checkout answered 200 without an order_id")


class Buyer(FastCUser):
    """Runs the funnel."""

    weight = 1
    wait_time = between(0.1, 0.3)  # a buyer takes longer over each step than a browser does
    tasks = [Funnel]
