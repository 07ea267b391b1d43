"""locust-c: a C engine for Locust.

Change ``from locust import FastHttpUser`` to ``from locust_c import FastCUser`` and the requests of a locustfile
run in libcurl + libuv, in a native thread outside the GIL.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .session import FastCRequest, FastCResponse, FastCSession, ResponseContextManager
from .user import FastCUser

__all__ = ["FastCUser", "FastCSession", "FastCResponse", "FastCRequest", "ResponseContextManager", "__version__"]

# Importing locust_c from a locustfile adds its command-line options (--results-json, --sla-file, ...) to Locust.
from . import plugin  # noqa: E402,F401
