"""pytest plugin of locust-c: the ``csession`` fixture, a FastCSession on ``--host``, registered as Locust's own
plugin registers ``session`` (HttpSession) and ``fastsession`` (FastHttpSession). A pytest-style locustfile that
asks for ``csession`` runs its requests in the C engine, under ``pytest`` and under ``locust -f`` alike.

This module stays outside the ``locust_c`` package on purpose: importing that package imports Locust, and so
gevent's monkey-patching, which must not happen just because pytest loaded its plugins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from locust.user.users import User

    from locust_c.session import FastCSession


@pytest.fixture
def csession(user: User | None = None) -> Iterator[FastCSession]:
    """A FastCSession: on the running user's host under Locust, on ``--host`` under pytest."""
    from pytest_locust import plugin as locust_plugin  # Locust's: it owns --host and the no-op request event

    from locust_c.session import FastCSession

    event: Any = user.environment.events.request if user else locust_plugin.NoOpEvent()
    s = FastCSession(base_url=user.host if user else locust_plugin._config.getoption("--host"),
                     request_event=event, user=user)
    yield s
    s.close()
