"""Tokens in a cluster: a jti used on one node is refused on another (the replay store is
Redis), and a token user's info crosses nodes with its messages."""

from __future__ import annotations

import pytest
from wxio.adapter.cluster.redis import RedisBackplane

from tests.adapter.conftest import RunningServer, StartServer
from tests.adapter.test_auth import JTI_SECRET, SECRET, mint, raw_refused, raw_token

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

APPS = {
    "tok": {"key": "tok-key", "token_secret": SECRET},
    "jti": {"key": "jti-key", "token_secret": JTI_SECRET, "token_jti": True},
}


async def _nodes(start_server: StartServer, prefix: str) -> list[RunningServer]:
    return [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(REDIS_URL, prefix=prefix, node_id=f"n{i}", node_ttl=3.0),
        )
        for i in range(2)
    ]


async def test_jti_is_accepted_once_across_nodes(
    start_server: StartServer, redis_prefix: str
) -> None:
    a, b = await _nodes(start_server, redis_prefix)
    token = mint("alice", secret=JTI_SECRET, jti="cluster-once")
    first = await raw_token(a, token, app="jti")
    try:
        assert await raw_refused(b, {"app": "jti", "token": token}) == ("bad_signature", 4001)
    finally:
        await first.close()


async def test_token_identity_crosses_nodes(start_server: StartServer, redis_prefix: str) -> None:
    a, b = await _nodes(start_server, redis_prefix)
    alice = await raw_token(a, mint("alice", info={"name": "A"}))
    bob = await raw_token(b, mint("bob"))
    try:
        await alice.request(
            {"meta": {"target": bob.client_id}, "data": {"action": "sendToOthers", "payload": 1}}
        )
        got = await bob.recv()
        assert got["meta"]["userId"] == "alice" and got["meta"]["info"] == {"name": "A"}
    finally:
        await alice.close()
        await bob.close()
