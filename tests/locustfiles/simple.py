"""The smallest FastCUser locustfile: one endpoint, no waiting."""

from locust import constant, task

from locust_c import FastCUser


class Simple(FastCUser):
    wait_time = constant(0.01)

    @task
    def index(self):
        self.client.get("/")

    @task
    def slow(self):
        self.client.get("/delay/20", name="/delay")
