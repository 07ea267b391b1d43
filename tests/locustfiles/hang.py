"""Users whose requests never get an answer: stopping them must cancel the requests, not wait for them."""

from locust import LoadTestShape, constant, task

from locust_c import FastCUser


class Stuck(FastCUser):
    wait_time = constant(0)

    @task(3)
    def never(self):
        self.client.get("/fault/never")

    @task(1)
    def fine(self):
        self.client.get("/")


class UpThenDown(LoadTestShape):
    """Ten users, then two (eight stopped mid-request), then the end."""

    def tick(self):
        t = self.get_run_time()
        if t < 1.5:
            return (10, 100)
        if t < 3:
            return (2, 100)
        return None
