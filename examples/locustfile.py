"""An example FastCUser locustfile: the FastHttpUser version differs by one import.

    from locust import FastHttpUser      ->   from locust_c import FastCUser

Run it against the test server that ships with locust-c:

    python -m locust_c.testserver --port 8089 &
    locust -f examples/locustfile.py --headless -u 50 -r 50 -t 20s --host http://127.0.0.1:8089
"""

from locust import between, task

from locust_c import FastCUser


class ShopVisitor(FastCUser):
    wait_time = between(0.05, 0.15)

    def on_start(self):
        self.client.get("/cookies/set?session=visitor", name="/login")

    @task(5)
    def browse(self):
        self.client.get("/json", name="/api/products")

    @task(3)
    def product(self):
        self.client.get("/delay/5", name="/api/products/[id]")

    @task(1)
    def order(self):
        with self.client.post("/echo/orders", json={"product": 1, "qty": 2}, name="/api/orders",
                              catch_response=True) as response:
            if response.json()["method"] != "POST":
                response.failure("order was not accepted")

    @task(1)
    def missing(self):
        self.client.get("/status/404", name="/api/missing")
