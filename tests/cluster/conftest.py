"""Cluster fixtures: a real Redis (127.0.0.1:6379, or WXIO_TEST_REDIS_URL), one key prefix per
test so tests never see each other's state; and ``redis_url``, which runs a test on that Redis
and again on a Redis Cluster (three masters, a replica each) started once per session (per
pytest-xdist worker)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.adapter.conftest import RunningServer, StartServer, free_port, start_server  # noqa: F401
from tests.cluster.procs import (  # noqa: F401  (real wxio/redis processes)
    Processes,
    RedisClusterGroup,
    procs,
)

REDIS_URL = os.environ.get("WXIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterGroup]:
    """A Redis Cluster of three masters with a replica each, for the session. Tests share it as
    they share the one Redis, by key prefix; none may stop or fail over its nodes (a test that
    does starts a cluster of its own)."""
    group = Processes(tmp_path_factory.mktemp("redis-cluster"))
    loop = asyncio.new_event_loop()  # (its own: no test's loop runs while a fixture is set up)
    try:
        yield loop.run_until_complete(group.start_redis_cluster(replicas=1))
    finally:
        loop.close()
        group.stop_all()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisClusterGroup) -> str:
    """The session's Redis Cluster as a ``redis+cluster://`` URL."""
    return redis_cluster.url


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.slow)])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis a test's nodes share: the one Redis, then a Redis Cluster (marked slow)."""
    if request.param == "redis":
        return REDIS_URL
    return str(request.getfixturevalue("redis_cluster_url"))


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
