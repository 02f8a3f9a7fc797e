"""Delivery receipts across nodes (two nodes in this process sharing a real Redis): the receipt
reaches the sender whichever nodes the two are on, for a kept message (the request travels in
the Redis inbox entry) and an unkept one (remembered by the target's connection on its node),
for a sender that reconnected on the other node meanwhile, and for a message that waited in the
inbox while its target was away."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wxio.adapter.cluster.redis import RedisBackplane

from tests.adapter.conftest import RunningServer, StartServer
from tests.adapter.core_clients import RawClient, Signer, SioClient
from tests.adapter.test_receipts import check_receipt
from tests.adapter.wire import until

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

APPS = {"c": {"key": "c-key", "rate": 1000, "burst": 1000}}
C = Signer("c", "c-key")


async def _nodes(start_server: StartServer, prefix: str) -> list[RunningServer]:
    return [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(REDIS_URL, prefix=prefix, node_id=f"n{i}", node_ttl=3.0),
        )
        for i in range(2)
    ]


def payload(message: dict[str, Any]) -> Any:
    return message["data"]["payload"]


async def send(client: RawClient | SioClient, target: str, data: Any, **meta: Any) -> Any:
    result = await client.request(C.envelope("sendToOthers", data, target=target, **meta))
    assert result["data"]["action"] == "result", result
    return payload(result)


async def offline(node: RunningServer, client: str) -> None:
    """Polled, not slept: ``client`` is gone from ``node`` and offline in the directory."""
    assert node.hub is not None
    await until(lambda: ("c", client) not in node.hub.connections, what="detached")  # type: ignore[union-attr]
    for _ in range(250):
        where = await node.hub.directory.locate("c", client)
        if where is None or where.node is None:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{client} still online in the directory")


async def test_receipt_across_nodes_kept_and_unkept(
    start_server: StartServer, redis_prefix: str
) -> None:
    a, b = await _nodes(start_server, redis_prefix)
    sender = await RawClient.connect(a.ws_url, C, user="s")
    kept = await RawClient.connect(b.ws_url, C, user="t")  # a user id: kept in Redis
    plain = await SioClient.connect(b.url, C)  # none: remembered by its connection on b
    try:
        sent = await send(sender, kept.client_id, "to a user", receipt=True)
        assert sent["status"] == "forwarded" and sent["guarantee"] == "until_acked"
        got = await kept.recv()
        assert got["meta"]["receipt"] is True
        await kept.send(C.envelope("ack", msgId=sent["msgId"]))
        receipt = await sender.recv()
        check_receipt(receipt, sent["msgId"], sender.client_id, kept.client_id)
        await sender.send(C.envelope("ack", msgId=receipt["meta"]["msgId"]))

        sent = await send(sender, plain.client_id, "to no user", receipt=True)
        assert sent["status"] == "forwarded" and sent["guarantee"] == "sent"
        assert (await plain.recv())["meta"]["receipt"] is True  # python-socketio acks it
        check_receipt(await sender.recv(), sent["msgId"], sender.client_id, plain.client_id)

        # The other way: a socket.io sender on b, a raw target on a.
        sent = await send(plain, sender.client_id, "back", receipt=True)
        assert (await sender.recv())["meta"]["msgId"] == sent["msgId"]
        await sender.send(C.envelope("ack", msgId=sent["msgId"]))
        check_receipt(await plain.recv(), sent["msgId"], plain.client_id, sender.client_id)
    finally:
        await sender.close()
        await kept.close()
        await plain.close()


async def test_receipt_for_a_sender_that_moved_to_the_other_node(
    start_server: StartServer, redis_prefix: str
) -> None:
    a, b = await _nodes(start_server, redis_prefix)
    sender = await RawClient.connect(a.ws_url, C, user="s")
    target = await RawClient.connect(b.ws_url, C, user="t")
    old = sender.client_id
    moved = None
    try:
        sent = await send(sender, target.client_id, "hi", receipt=True)
        assert (await target.recv())["meta"]["msgId"] == sent["msgId"]
        await sender.close()
        await offline(a, old)
        await target.send(C.envelope("ack", msgId=sent["msgId"]))
        # Kept for the sender's user (its client is gone): delivered when it connects again.
        assert a.hub is not None
        for _ in range(250):
            if await a.hub.inbox.pending("c", "s", now=a.hub.clock()):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the receipt is not in the sender's inbox")
        moved = await RawClient.connect(b.ws_url, C, user="s")
        check_receipt(await moved.recv(), sent["msgId"], old, target.client_id)
    finally:
        await target.close()
        if moved is not None:
            await moved.close()


async def test_receipt_for_a_message_that_waited_in_the_inbox(
    start_server: StartServer, redis_prefix: str
) -> None:
    a, b = await _nodes(start_server, redis_prefix)
    sender = await SioClient.connect(a.url, C, user="s")
    away = await RawClient.connect(b.ws_url, C, user="t")
    old = away.client_id
    await away.close()
    await offline(b, old)
    back = None
    try:
        sent = await send(sender, old, "while away", receipt=True)
        assert sent["status"] == "queued"
        back = await RawClient.connect(b.ws_url, C, user="t")
        got = await back.recv()
        assert got["meta"]["msgId"] == sent["msgId"] and got["meta"]["receipt"] is True
        await back.send(C.envelope("ack", msgId=sent["msgId"]))
        check_receipt(await sender.recv(), sent["msgId"], sender.client_id, old)
    finally:
        await sender.close()
        if back is not None:
            await back.close()
