"""Cluster fixtures: a real Redis (127.0.0.1:6379, or WXIO_TEST_REDIS_URL), one key prefix per
test so tests never see each other's state."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.adapter.conftest import RunningServer, StartServer, free_port, start_server  # noqa: F401
from tests.cluster.procs import procs  # noqa: F401  (real wxio/redis processes)

REDIS_URL = os.environ.get("WXIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"wxiotest-{secrets.token_hex(4)}"
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - CI starts Redis; say so plainly if it is gone
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}")
    yield prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
