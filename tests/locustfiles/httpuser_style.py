"""A locustfile written for HttpUser, with only the import changed: what HttpUser code does in its tasks."""

import io

import requests
from locust import SequentialTaskSet, between, task

from locust_c import FastCUser as HttpUser  # the one line that changed: it was `from locust import HttpUser`


class Checkout(SequentialTaskSet):
    @task
    def login(self):
        response = self.client.get("/cookies/set?session_id=s3cr3t", allow_redirects=False, name="/login")
        self.session_id = response.cookies.get("session_id")
        if self.session_id != "s3cr3t":
            raise RuntimeError(f"the login cookie did not come back: {self.session_id!r}")

    @task
    def cart(self):
        with self.client.get("/cookies", name="/cart", catch_response=True) as response:
            if response.json().get("session_id") != self.session_id:
                response.failure("the session cookie was not sent")

    @task
    def upload(self):
        receipt = io.BytesIO(b"total,12.50\n")
        with self.client.post("/echo", name="/upload", files={"receipt": ("r.csv", receipt, "text/csv")},
                              data={"order": "42"}, catch_response=True) as response:
            body = response.json()["body"]
            if "total,12.50" not in body or 'name="order"' not in body:
                response.failure("the upload lost a part")

    @task
    def status(self):
        try:
            self.client.get("/status/503", name="/flaky").raise_for_status()
        except requests.exceptions.HTTPError:  # what HttpUser code catches
            pass
        self.interrupt()


class Shopper(HttpUser):
    wait_time = between(0, 0.05)
    tasks = [Checkout]

    def on_start(self):
        self.client.headers.update({"Authorization": "Bearer t0k3n", "X-Tenant": "acme"})

    @task
    def whoami(self):
        with self.client.get("/echo", name="/whoami", catch_response=True, timeout=(5, 5)) as response:
            sent = response.json()["headers"]
            if sent.get("authorization") != "Bearer t0k3n" or sent.get("x-tenant") != "acme":
                response.failure(f"session headers missing: {sent}")
