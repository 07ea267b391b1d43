"""locust-c: a C engine for Locust.

Change ``from locust import FastHttpUser`` to ``from locust_c import FastCUser`` and the requests of a locustfile
run in libcurl + libuv, in a native thread outside the GIL.

The user and session classes are loaded on first use, so that ``python -m locust_c.testserver`` and the
``locust-c`` gate commands start without Locust (which monkey-patches the standard library with gevent).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["FastCUser", "FastCSession", "FastCResponse", "FastCRequest", "ResponseContextManager", "ClientPool",
           "arrival_rate", "__version__"]

_LAZY = {
    "FastCUser": "user",
    "FastCSession": "session",
    "FastCResponse": "session",
    "FastCRequest": "session",
    "ResponseContextManager": "session",
    "ClientPool": "session",
    "arrival_rate": "arrival",
}

if TYPE_CHECKING:
    from .arrival import arrival_rate
    from .session import ClientPool, FastCRequest, FastCResponse, FastCSession, ResponseContextManager
    from .user import FastCUser


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'locust_c' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


# Inside Locust (a locustfile importing locust_c), add locust-c's options (--results-json, --sla-file, ...) and
# its event listeners. Locust has always been imported by then; elsewhere it is not needed.
if "locust" in sys.modules:
    from . import plugin  # noqa: F401
