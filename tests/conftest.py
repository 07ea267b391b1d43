"""Fixtures shared by the whole test suite: the C test server (locust_c/testserver.py) in a subprocess; and
``--shard I/N``, which ``make test`` uses to run the suite as two halves side by side.

This file must not import Locust: Locust monkey-patches the standard library with gevent when it is imported,
and that has to happen in the test modules that use it, not as a side effect of collecting the suite. Even
``import locust_c.testserver`` would do it (the package's ``__init__`` imports Locust), so the module is
loaded from its file instead; it needs nothing but the standard library.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TESTSERVER_PY = Path(__file__).resolve().parent.parent / "locust_c" / "testserver.py"

# Seconds each slower module takes in a whole run on 2 cores (two shards side by side). They only balance the
# shards: a module not listed counts a tenth of a second a test, and a stale figure makes one shard end a little
# later, never a test fail.
MODULE_SECONDS = {
    "test_lab.py": 116, "test_open_model.py": 75, "test_prometheus.py": 59, "test_locust_cli.py": 50,
    "test_gate_inrun.py": 36, "test_hostile_server.py": 29, "test_wheel.py": 28, "test_sla_abort.py": 25,
    "test_stats_exact.py": 24, "test_testserver.py": 19, "test_endpoint_memory.py": 17, "test_gate_leak.py": 16,
    "test_httpuser_api.py": 16, "test_engine_tsan.py": 16, "test_connect_faults.py": 13, "test_fuzz.py": 13,
    "test_history.py": 11, "test_otel.py": 9, "test_gate_ready.py": 6, "test_faults.py": 5, "test_tls_http2.py": 5,
    "test_streaming.py": 5, "test_recipes.py": 4, "test_idle_users.py": 3, "test_shapes.py": 3,
    "test_gate_helpers.py": 3, "test_threads.py": 2.5,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Distributed runs (--processes, --master/--worker) meet on Locust's master port, 5557 unless told otherwise: each
# session takes a free one (Locust reads it from these variables), so that two shards do not join each other's runs.
if "LOCUST_MASTER_BIND_PORT" not in os.environ:
    os.environ["LOCUST_MASTER_BIND_PORT"] = os.environ["LOCUST_MASTER_NODE_PORT"] = str(_free_port())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shard", metavar="I/N", help="run only the I-th of N shards of the test modules (1-based); "
                     "a module's tests stay together, the shards balanced by MODULE_SECONDS")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    spec = config.getoption("--shard")
    if not spec:
        return
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--shard {spec}: expected I/N, e.g. 1/2") from None
    if not 1 <= index <= count:
        raise pytest.UsageError(f"--shard {spec}: I must be between 1 and N")
    tests: dict[str, int] = {}
    for item in items:
        tests[item.path.name] = tests.get(item.path.name, 0) + 1
    loads, owner = [0.0] * count, {}
    # Longest first, each to the shard with the least so far: close to even, and the same split every time.
    def seconds(module: str) -> float:
        return MODULE_SECONDS.get(module, tests[module] / 10)

    for module in sorted(tests, key=lambda m: (-seconds(m), m)):
        shard = loads.index(min(loads))
        owner[module] = shard
        loads[shard] += seconds(module)
    kept = [item for item in items if owner[item.path.name] == index - 1]
    config.hook.pytest_deselected(items=[item for item in items if owner[item.path.name] != index - 1])
    items[:] = kept


def load_testserver_module() -> ModuleType:
    """locust_c.testserver, without importing the locust_c package (and so Locust)."""
    if "locust_c.testserver" in sys.modules:
        return sys.modules["locust_c.testserver"]
    name = "_locust_c_testserver"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTSERVER_PY)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def testserver() -> Iterator[Any]:
    """One TestServer for the whole session, on a free loopback port; stopped at the end."""
    with load_testserver_module().TestServer() as server:
        yield server


@pytest.fixture
def fresh_testserver() -> Iterator[Any]:
    """A TestServer of its own for one test, for tests that need untouched counters or stop the server."""
    with load_testserver_module().TestServer() as server:
        yield server


@pytest.fixture(params=["auto", "curl"], ids=["native", "curl"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each engine-facing test runs on both transports: "auto" sends plain http:// natively, "curl" through libcurl
    (LOCUST_C_TRANSPORT, read when a session is made). Modules ask for it with ``pytestmark``."""
    monkeypatch.setenv("LOCUST_C_TRANSPORT", request.param)
    return "native" if request.param == "auto" else "curl"


@pytest.fixture
def curl_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of what only libcurl's users have (setting idle users aside): every request through libcurl."""
    monkeypatch.setenv("LOCUST_C_TRANSPORT", "curl")


@pytest.fixture
def set_aside_quickly(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """Engines that set a user aside after 0.2 s without a request (LOCUST_C_IDLE_SECONDS) for one test."""
    from locust_c import engine  # imported here: the test modules have imported Locust by now

    engine.shutdown()
    monkeypatch.setenv("LOCUST_C_IDLE_SECONDS", "0.2")
    yield 0.2
    engine.shutdown()  # later tests get engines with the default again
