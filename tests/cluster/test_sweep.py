"""The dead-node sweep against a node that comes back while it runs (real Redis, no servers).

After a Redis restart from its AOF (or a node paused past node_ttl), the heartbeat keys are gone
and every node may sweep the others while they re-register their clients. A sweep that checked
the node was dead, then forgot its clients after the node had re-registered them, left connected
clients marked offline for good (their messages went to inboxes). The sweep is now conditional,
per client, on the node still being dead.
"""

from __future__ import annotations

import pytest
from wxio.adapter.cluster.redis import RedisBackplane

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("comes_back", [True, False], ids=["node-returns-mid-sweep", "node-dead"])
async def test_sweep_spares_a_node_that_came_back(redis_prefix: str, comes_back: bool) -> None:
    a = RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id="A", node_ttl=3)
    b = RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id="B", node_ttl=3)
    try:
        await a.nodes.heartbeat_once()
        await b.nodes.heartbeat_once()
        await a.nodes.check_epoch()  # (as start() does: else every miss is `unavailable`)
        await b.directory.online("c", "X", "u", "B", 60)
        await b.directory.online("c", "Y", None, "B", 60)
        await b.redis.delete(f"{redis_prefix}:node:B")  # B's heartbeat key expired

        forget = a.nodes._sweep_forget

        def forget_after_b_returns(*args: object, **kwargs: object) -> object:
            async def run() -> object:
                if comes_back:  # B's heartbeat and resync land inside A's sweep
                    await b.nodes.heartbeat_once()
                    await b.directory.online("c", "X", "u", "B", 60)
                    await b.directory.online("c", "Y", None, "B", 60)
                return await forget(*args, **kwargs)

            return run()

        a.nodes._sweep_forget = forget_after_b_returns  # type: ignore[method-assign]
        await a.nodes.sweep()
        a.nodes._alive_cache.clear()
        x = await a.directory.locate("c", "X")
        y = await a.directory.locate("c", "Y")
        members = await a.redis.smembers(f"{redis_prefix}:nc:B")
        if comes_back:
            assert x is not None and x.node == "B" and x.user == "u"
            assert y is not None and y.node == "B"
            assert await a.directory.user_clients("c", "u") == [("X", "B")]
            assert members == {b"c\0X", b"c\0Y"}  # B's clients stay sweepable later
        else:
            assert x is not None and x.node is None and x.user == "u"  # the inbox binding stays
            assert y is None
            assert await a.directory.user_clients("c", "u") == []
            assert members == set()
    finally:
        await a.redis.aclose()
        await b.redis.aclose()
