"""The wxio JS client (dist/wxio.js as a mini program, tests/js/sdk_peer.js) with delivery
receipts and the ``forwarded`` status: ``send(target, payload, {receipt: true})``, the
'receipt' event and ``receipt(msgId)``, on both transports, on one node and across two."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from wxio.adapter.cluster.redis import RedisBackplane

from tests.cluster.conftest import REDIS_URL, redis_prefix  # noqa: F401

from .conftest import StartServer
from .core_clients import RawClient, Signer
from .jspeer import requires_node
from .test_js_client import APPS, KEY, new_client, no_more, request, sdk_peer, until

pytestmark = [requires_node, pytest.mark.node]


async def receipt_of(peer: Any, name: str, msg_id: str) -> dict[str, Any]:
    """``client.receipt(msgId)`` in the peer; its outcome."""
    return await request(peer, "receipt", name, msgId=msg_id, timeout=5000)


@pytest.mark.parametrize("transport", ["ws", "socketio"])
@pytest.mark.parametrize("user", [None, "ub"], ids=["no-user", "user"])
async def test_receipt_event_and_awaitable(
    start_server: StartServer, transport: str, user: str | None
) -> None:
    server = await start_server(apps=APPS)
    peer = await sdk_peer()
    try:
        await new_client(peer, "a", server.url, user="ua", transport=transport)
        b = await new_client(peer, "b", server.url, user=user, transport=transport)

        sent = await request(
            peer, "send", "a", target=b["id"], payload="read?", options={"receipt": True}
        )
        assert sent["ev"] == "sent" and sent["result"]["status"] == "delivered", sent
        msg_id = sent["result"]["msgId"]
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["msgId"] == msg_id  # b acknowledges it (user id or not)
        event = await peer.expect("client", name="a", type="receipt")
        assert event["data"]["msgId"] == msg_id and event["data"]["status"] == "acked"
        assert event["data"]["target"] == b["id"] and event["data"]["ackedAt"] > 0
        # Awaited after it came: resolved from what the client remembers.
        waited = await receipt_of(peer, "a", msg_id)
        assert waited["ev"] == "sent" and waited["result"] == event["data"], waited

        # Without the option: no receipt (a later marker comes first).
        sent = await request(peer, "send", "a", target=b["id"], payload="plain")
        await peer.expect("client", name="b", type="exchange")
        missing = await request(peer, "receipt", "a", msgId=sent["result"]["msgId"], timeout=300)
        assert missing["ev"] == "rejected" and missing["reason"] == "timeout", missing
        await no_more(peer, 0.2, name="a", type="receipt")
    finally:
        await peer.close()


async def test_receipt_awaited_across_a_reconnect(start_server: StartServer) -> None:
    """The sender (a user) awaits the receipt, then its mini program goes to the background
    before the target acknowledges: the receipt waits in the sender's inbox, and when the app
    comes back the same client gets it and the awaiting promise resolves."""
    server = await start_server(apps=APPS)
    assert server.hub is not None
    phone = await sdk_peer()
    target = await RawClient.connect(server.ws_url, Signer("demo", KEY), user="tb")
    try:
        await new_client(phone, "a", server.url, user="ua")
        sent = await request(
            phone, "send", "a", target=target.client_id, payload="x", options={"receipt": True}
        )
        msg_id = sent["result"]["msgId"]
        assert (await target.recv())["meta"]["msgId"] == msg_id  # (this client does not ack yet)
        waiting = await phone.command("receipt", name="a", msgId=msg_id, timeout=20000)
        await phone.command("background", cutMs=300)
        gone = await phone.expect("client", name="a", type="disconnect")
        assert gone["data"]["reason"] == "background"
        await until(lambda: not server.hub.by_app.get("demo", {}).keys() - {target.client_id})  # type: ignore[union-attr]
        await target.send(Signer("demo", KEY).envelope("ack", msgId=msg_id))
        for _ in range(250):
            if await server.hub.inbox.pending("demo", "ua", now=time.time()):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the receipt is not kept for the sender")

        await asyncio.sleep(0.4)  # past the cut: the shim refuses sockets until foreground
        await phone.command("foreground")
        await phone.expect("client", name="a", type="connect", timeout=10)
        receipt = await phone.expect("client", name="a", type="receipt")
        assert receipt["data"]["msgId"] == msg_id and receipt["data"]["target"] == target.client_id
        answer = await phone.expect(("sent", "rejected"), id=waiting)
        assert answer["ev"] == "sent" and answer["result"]["msgId"] == msg_id, answer
        # Acknowledged by the client: the sender's inbox is empty again.
        for _ in range(250):
            if not await server.hub.inbox.pending("demo", "ua", now=time.time()):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the receipt was not acknowledged")
    finally:
        await phone.close()
        await target.close()


async def test_forwarded_across_two_nodes(
    start_server: StartServer,
    redis_prefix: str,  # noqa: F811
) -> None:
    a, b = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"j{i}", node_ttl=3),
        )
        for i in range(2)
    ]
    peer = await sdk_peer()
    try:
        await new_client(peer, "a", a.url, user="ua")
        there = await new_client(peer, "b", b.url, user="ub", transport="socketio")
        sent = await request(
            peer, "send", "a", target=there["id"], payload="far", options={"receipt": True}
        )
        assert sent["ev"] == "sent", sent
        assert sent["result"]["status"] == "forwarded" and sent["result"]["forwarded"] == 1
        assert sent["result"]["guarantee"] == "until_acked"
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["payload"] == "far"
        receipt = await receipt_of(peer, "a", sent["result"]["msgId"])
        assert receipt["ev"] == "sent" and receipt["result"]["target"] == there["id"], receipt
    finally:
        await peer.close()
