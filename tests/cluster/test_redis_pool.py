"""The Redis connection pool of a node: sized by ``[cluster] max_connections``, and a burst larger
than the pool waits up to ``[cluster] pool_timeout`` for a connection instead of failing."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import BlockingConnectionPool
from wxio.adapter.cluster.redis import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT,
    RedisBackplane,
)
from wxio.adapter.config import ConfigError, ServerConfig
from wxio.adapter.server import make_backplane

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis


def cluster_config(**keys: object) -> ServerConfig:
    return ServerConfig(extra={"cluster": {"redis_url": REDIS_URL, "prefix": "unused", **keys}})


async def test_the_configured_size_and_timeout_reach_the_pool() -> None:
    backplane = make_backplane(cluster_config(max_connections=7, pool_timeout=0.5))
    assert isinstance(backplane, RedisBackplane)
    pool = backplane.redis.connection_pool
    try:
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == 7
        assert pool.timeout == 0.5
    finally:
        await backplane.redis.aclose()


async def test_defaults() -> None:
    backplane = make_backplane(cluster_config())
    assert isinstance(backplane, RedisBackplane)
    pool = backplane.redis.connection_pool
    try:
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == DEFAULT_MAX_CONNECTIONS
        assert pool.timeout == DEFAULT_POOL_TIMEOUT
    finally:
        await backplane.redis.aclose()


@pytest.mark.parametrize(
    "keys",
    [{"max_connections": 1}, {"max_connections": "10"}, {"pool_timeout": 0}],
    ids=["too-few", "not-an-integer", "no-timeout"],
)
def test_bad_values_are_configuration_errors(keys: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make_backplane(cluster_config(**keys))


async def test_a_burst_larger_than_the_pool_waits_for_a_connection(redis_prefix: str) -> None:
    """30 commands at once on a pool of 3, each holding its connection ~50 ms: they queue and all
    succeed (redis-py's default pool would raise MaxConnectionsError for the 4th)."""
    backplane = RedisBackplane(REDIS_URL, prefix=redis_prefix, max_connections=3, pool_timeout=5)
    r = backplane.redis
    try:
        results = await asyncio.gather(
            *(backplane.call(r.blpop([f"{redis_prefix}:nothing"], timeout=0.05)) for _ in range(30))
        )
        assert results == [None] * 30
        pool = r.connection_pool
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 3
    finally:
        await r.aclose()
