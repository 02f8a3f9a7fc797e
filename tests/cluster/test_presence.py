"""Presence and readiness on the Redis backplane: the online-users index across nodes, its
pruning, and /readyz following Redis."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import redis.asyncio as aioredis
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.client import ApiClient, Credentials, WxioClient

from tests.adapter.conftest import StartServer, free_port

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

APPS = {
    "c": {"key": "c-key", "server_key": "c-server", "rate": 1000, "burst": 1000},
    "d": {"key": "d-key"},
}


async def test_directory_lists_online_users_by_page(redis_prefix: str) -> None:
    bp = RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id="n1", node_ttl=3.0)
    try:
        await bp.nodes.heartbeat_once()
        directory = bp.directory
        for i, user in enumerate(["b", "a", "c", "d", "e"]):
            await directory.online("app", f"c{i}", user, "n1", 60)
        await directory.online("app", "second-b", "b", "n1", 60)
        await directory.online("app", "anon", None, "n1", 60)
        await directory.online("app:x", "o", "zz", "n1", 60)  # an app whose name extends "app"
        assert await directory.app_users("app", limit=3) == (["a", "b", "c"], "c")
        assert await directory.app_users("app", after="c", limit=3) == (["d", "e"], None)
        assert await directory.app_users("app:x") == (["zz"], None)

        # b stays online while one of its two clients is; then it is gone from the index.
        await directory.offline("app", "c0", "b", "n1", 60)
        assert "b" in (await directory.app_users("app"))[0]
        await directory.offline("app", "second-b", "b", "n1", 60)
        assert await directory.app_users("app") == (["a", "c", "d", "e"], None)
        assert not await bp.redis.zscore(bp.key("ou", "app"), "b")

        # A user whose clients vanished without an offline (a swept node) is pruned when listed.
        await bp.redis.delete(bp.key("u", "app", "e"))
        assert await directory.app_users("app") == (["a", "c", "d"], None)
        assert not await bp.redis.zscore(bp.key("ou", "app"), "e")
        # A user only on a dead node is not listed (and kept until the sweep).
        await directory.online("app", "ghost", "g", "dead-node", 60)
        assert await directory.app_users("app") == (["a", "c", "d"], None)
    finally:
        await bp.close()


async def test_presence_across_nodes(start_server: StartServer, redis_prefix: str) -> None:
    a, b = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"n{i}", node_ttl=3),
        )
        for i in range(2)
    ]
    on_a = await WxioClient.connect(a.url, Credentials("c", "c-key", user_id="u1"))
    on_b = await WxioClient.connect(b.url, Credentials("c", "c-key", user_id="u1"))
    other = await WxioClient.connect(b.url, Credentials("c", "c-key", user_id="u2"))
    tenant = await WxioClient.connect(b.url, Credentials("d", "d-key", user_id="x"))
    try:
        async with ApiClient(a.url, Credentials("c", "c-server")) as api:
            presence = await api.presence("u1")
            assert presence.online and set(presence.clients) == {on_a.client_id, on_b.client_id}
            assert await api.online_users() == (["u1", "u2"], None)
            await on_b.close()
            await other.close()
            # The server notices the closes a moment later.
            for _ in range(50):
                if await api.online_users() == (["u1"], None):
                    break
                await asyncio.sleep(0.05)
            assert await api.online_users() == (["u1"], None)
            assert (await api.presence("u1")).clients == (on_a.client_id,)
    finally:
        for client in (on_a, on_b, other, tenant):
            await client.close()


async def test_readyz_follows_redis(start_server: StartServer, redis_prefix: str) -> None:
    up = await start_server(apps=APPS, backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix))
    down = await start_server(
        apps=APPS,
        backplane=RedisBackplane(f"redis://127.0.0.1:{free_port()}/0", prefix=redis_prefix),
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # ready once subscribed to its channels, a moment after start
            async with session.get(f"{up.url}/readyz") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        async with session.get(f"{up.url}/readyz") as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "status": "ok",
                "checks": {"serving": "ok", "cluster": "ok"},
            }
        async with session.get(f"{down.url}/readyz") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["failed"] == ["cluster"] and body["checks"]["cluster"] == "unreachable"
        async with session.get(f"{down.url}/healthz") as resp:
            assert resp.status == 200  # alive, just not ready


async def test_cleanup_leaves_no_presence_keys(redis_prefix: str) -> None:
    bp = RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id="n1")
    try:
        await bp.directory.online("app", "c1", "u", "n1", 60)
        await bp.directory.offline("app", "c1", "u", "n1", 60)
        client = aioredis.from_url(REDIS_URL)
        assert not await client.exists(bp.key("ou", "app"))
        await client.aclose()
    finally:
        await bp.close()
