"""The dashboard of a cluster node lists every node from Redis and says that inbox sizes live
there."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.adapter.config import ServerConfig

from tests.adapter.conftest import StartServer

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}


async def test_stats_list_the_cluster_nodes(start_server: StartServer, redis_prefix: str) -> None:
    config = ServerConfig(dashboard=True, dashboard_user="ops", dashboard_password="pw")
    nodes = [
        await start_server(
            apps={"c": {"key": "c-key"}},
            config=config,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"n{i}"),
        )
        for i in range(2)
    ]
    async with (
        aiohttp.ClientSession() as session,
        session.get(nodes[1].url + "/dashboard/stats", headers=AUTH) as res,
    ):
        stats = await res.json()
    assert stats["node"] == "n1"
    assert stats["cluster"]["kind"] == "redis"
    assert stats["cluster"]["nodes"] == [
        {"id": "n0", "self": False, "alive": True},
        {"id": "n1", "self": True, "alive": True},
    ]
    assert stats["inbox"]["available"] is False
