"""FastCUser's class attributes reach its session, as FastHttpUser's do."""

from __future__ import annotations

import pytest
from locust import constant, task
from locust.env import Environment
from locust.exception import StopTest

from locust_c import FastCUser

# Every test runs on both transports (conftest.py's transport fixture).
pytestmark = pytest.mark.usefixtures("transport")


class Probe(FastCUser):
    wait_time = constant(0)

    @task
    def noop(self):
        pass


def test_user_class_attributes_reach_the_session(testserver):
    env = Environment(user_classes=[Probe], host=testserver.url)
    configured = type("Configured", (Probe,), {
        "host": testserver.url, "default_headers": {"X-Team": "perf"}, "network_timeout": 0.3, "concurrency": 3,
        "abstract": False})
    user = configured(env)
    try:
        assert user.client.get("/echo").json()["headers"]["x-team"] == "perf"
        assert isinstance(user.client.get("/fault/never").error, TimeoutError)
        assert user.client._options["max_connections"] == 3
    finally:
        user.client.close()


def test_a_user_without_host_stops_the_test():
    hostless = type("Hostless", (Probe,), {"host": None, "abstract": False})
    with pytest.raises(StopTest, match="host"):
        hostless(Environment(user_classes=[hostless]))


def test_ssl_context_factory_must_make_an_ssl_context(testserver):
    custom = type("Custom", (Probe,), {"host": testserver.url, "ssl_context_factory": object, "abstract": False})
    user = custom(Environment(user_classes=[custom]))
    with pytest.raises(TypeError, match="ssl_context_factory must return an ssl.SSLContext"):
        user.client.get("/")  # called as FastHttpUser calls it: when the first connection is due
