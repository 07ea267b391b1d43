"""A locustfile that uses the Locust features a FastCUser must keep working; it logs what happened."""

import json
import os
from collections import Counter

from locust import SequentialTaskSet, TaskSet, between, constant, events, tag, task

from locust_c import FastCUser

LOG = os.environ["FEATURES_LOG"]
seen = Counter()


def log(**record):
    with open(LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


@events.init.add_listener
def on_init(environment, **_kw):
    log(event="init", runner=type(environment.runner).__name__)


@events.test_start.add_listener
def on_test_start(environment, **_kw):
    log(event="test_start")


@events.request.add_listener
def on_request(request_type, name, response_time, response_length, exception, context, **kw):
    seen[f"{request_type} {name} {'fail' if exception else 'ok'}"] += 1
    assert {"response", "start_time", "url"} <= kw.keys()


@events.test_stop.add_listener
def on_test_stop(environment, **_kw):
    log(event="test_stop", seen=dict(seen))


@events.quitting.add_listener
def on_quitting(environment, **_kw):
    log(event="quitting")


class Checkout(SequentialTaskSet):
    @task
    def cart(self):
        self.client.get("/echo/seq/1", name="seq1")

    @task
    def pay(self):
        self.client.post("/echo/seq/2", json={"pay": 1}, name="seq2")

    @task
    def done(self):
        self.interrupt()


class Browse(TaskSet):
    @task
    def nested(self):
        self.client.get("/echo/nested")

    @task
    def leave(self):
        self.interrupt()


class ShopUser(FastCUser):
    wait_time = between(0.01, 0.05)
    tasks = {Checkout: 1, Browse: 1}

    def on_start(self):
        self.client.get("/cookies/set?session=1", name="on_start")

    def on_stop(self):
        self.client.get("/echo/stop", name="on_stop")

    @tag("tagged")
    @task(3)
    def tagged(self):
        with self.client.get("/status/404", catch_response=True, name="expected404") as r:
            if r.status_code == 404:
                r.success()

    @task
    def rest_call(self):
        with self.rest("POST", "/echo/rest", json={"a": 1}) as r:
            assert r.js["method"] == "POST"


class IdleUser(FastCUser):
    weight = 1
    wait_time = constant(0.1)

    @tag("tagged")
    @task
    def idle(self):
        self.client.get("/delay/10", name="idle")
