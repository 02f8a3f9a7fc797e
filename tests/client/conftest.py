"""The client tests run a real server in the test's loop (tests/adapter/conftest.py) and, for the
cluster cases, a real Redis (tests/cluster/conftest.py)."""

from __future__ import annotations

from tests.adapter.conftest import RunningServer, StartServer, free_port, start_server  # noqa: F401
from tests.cluster.conftest import REDIS_URL, redis_prefix  # noqa: F401


async def gone(server: RunningServer, app: str, client_id: str) -> None:
    """Wait until the server has let go of a client that closed (it notices a moment later)."""
    import asyncio

    assert server.hub is not None
    for _ in range(100):
        if (app, client_id) not in server.hub.connections:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{client_id} still connected")
