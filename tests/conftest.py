"""Fixtures shared by the whole test suite: the C test server (locust_c/testserver.py) in a subprocess.

This file must not import Locust: Locust monkey-patches the standard library with gevent when it is imported,
and that has to happen in the test modules that use it, not as a side effect of collecting the suite. Even
``import locust_c.testserver`` would do it (the package's ``__init__`` imports Locust), so the module is
loaded from its file instead; it needs nothing but the standard library.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TESTSERVER_PY = Path(__file__).resolve().parent.parent / "locust_c" / "testserver.py"


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
