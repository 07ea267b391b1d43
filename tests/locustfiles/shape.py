"""A FastCUser driven by a LoadTestShape that ends the run by itself."""

from locust import LoadTestShape, constant, task

from locust_c import FastCUser


class Quick(FastCUser):
    wait_time = constant(0.05)

    @task
    def hit(self):
        self.client.get("/")


class TwoSteps(LoadTestShape):
    def tick(self):
        t = self.get_run_time()
        if t < 1.5:
            return (2, 10)
        if t < 3:
            return (6, 10)
        return None
