"""`wxio serve --workers N`: N processes share one port (SO_REUSEPORT), each a cluster node."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from tests.adapter.core_clients import RawClient, Signer, SioClient

from .conftest import REDIS_URL
from .procs import Processes, wait_registered  # noqa: F401

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APPS = {"c": {"key": "c-key", "rate": 1000, "burst": 1000}}
C = Signer("c", "c-key")
MAX_RAWS = 40


async def test_workers_share_a_port_and_route_between_them(
    procs: Processes, redis_prefix: str
) -> None:
    node = await procs.start_node(
        "w", redis_url=REDIS_URL, prefix=redis_prefix, apps=APPS, workers=2
    )
    url = f"http://127.0.0.1:{node.port}"
    # Connect until both workers hold a client (the kernel spreads connections at random; with
    # MAX_RAWS tries, all of them landing on one worker has probability 2**-(MAX_RAWS - 1)).
    raws: list[RawClient] = []
    holders: set[str | None] = set()
    r = aioredis.from_url(REDIS_URL)
    try:
        while holders != {"w-0", "w-1"} and len(raws) < MAX_RAWS:
            raw = await RawClient.connect(url.replace("http", "ws"), C, user=f"r{len(raws)}")
            raws.append(raw)
            # The greeting comes a moment before the worker registers the client in Redis.
            key = f"{redis_prefix}:c:c:{raw.client_id}"
            for _ in range(250):
                holder = await r.hget(key, "n")
                if holder is not None:
                    break
                await asyncio.sleep(0.02)
            holders.add(holder.decode() if holder else None)
    finally:
        await r.aclose()
    polling = await SioClient.connect(url, C, user="p", transports=["polling"])
    try:
        assert holders == {"w-0", "w-1"}, holders  # the kernel spread the connections
        # Every raw client reaches the next one, wherever each landed, and the polling client
        # (whose requests land on either worker) reaches and is reached by all of them.
        for sender, receiver in zip(raws, raws[1:] + raws[:1], strict=True):
            result = await sender.request(
                C.envelope("sendToOthers", {"to": receiver.client_id}, target=receiver.client_id)
            )
            assert result["data"]["payload"]["status"] == "delivered"
            assert (await receiver.recv())["data"]["payload"] == {"to": receiver.client_id}
        for raw in raws:
            reply = await polling.request(C.envelope("sendToOthers", "poll", target=raw.client_id))
            assert reply["data"]["payload"]["status"] == "delivered"
            assert (await raw.recv())["data"]["payload"] == "poll"
            result = await raw.request(C.envelope("sendToOthers", "back", target=polling.client_id))
            assert result["data"]["payload"]["status"] == "delivered"
            assert (await polling.recv())["data"]["payload"] == "back"
    finally:
        for raw in raws:
            await raw.close()
        await polling.close()
