"""Load for the demo shop (examples/shop/service.py), gated by examples/slas.yml.

    python examples/shop/service.py --port 8080 &
    locust-c wait-ready http://127.0.0.1:8080/health/ready --timeout 60
    locust -f examples/shop/locustfile.py --headless -u 10 -r 10 -t 30s -H http://127.0.0.1:8080 \\
        --sla-file examples/slas.yml --results-json results.json

``LOAD_SHAPE=step`` (or stress, spike, soak) replaces -u/-r with a load shape.
"""

import random

from locust import between, task

from locust_c import FastCUser  # the one line that differs from a FastHttpUser locustfile
from locust_c.shapes import shape_from_env

Shape = shape_from_env(step={"step_users": 5, "step_duration": 10, "steps": 3})


class ShopUser(FastCUser):
    """Browses, searches and now and then orders."""

    wait_time = between(0.05, 0.2)

    @task(10)
    def products(self) -> None:
        self.client.get("/api/products")

    @task(5)
    def product(self) -> None:
        self.client.get(f"/api/products/{random.randint(1, 20)}", name="/api/products/[id]")

    @task(3)
    def search(self) -> None:
        self.client.get("/api/search?q=tea", name="/api/search")

    @task(1)
    def order(self) -> None:
        self.client.post("/api/orders", json={"product": random.randint(1, 20), "quantity": 1})
