"""Connecting with a userId delivers the inbox; a reConnectAndUpdates right after must not deliver
it a second time on the same connection (every message once came twice, with the same msgId)."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import StartServer
from .core_clients import RawClient, Signer
from .jspeer import JsPeer, requires_node
from .wire import until

APPS = {"shop": {"key": "shop-key", "rate": 1000, "burst": 1000}}
SHOP = Signer("shop", "shop-key")


@pytest.mark.parametrize(
    "kind", [pytest.param("sio", marks=[requires_node, pytest.mark.node]), "raw"]
)
async def test_reconnect_and_updates_after_connect_delivers_once(
    start_server: StartServer, kind: str
) -> None:
    server = await start_server(apps=APPS)
    sender = await RawClient.connect(server.ws_url, SHOP, user="sender")
    first = await RawClient.connect(server.ws_url, SHOP, user="u1")
    old_id = first.client_id
    await first.close()
    hub = server.hub
    assert hub is not None
    await until(lambda: ("shop", old_id) not in hub.connections, what="first client gone")
    ids = []
    for n in range(3):
        result = await sender.request(SHOP.envelope("sendToOthers", {"n": n}, target=old_id))
        assert result["data"]["payload"]["status"] == "queued"
        ids.append(result["data"]["payload"]["msgId"])
    if kind == "sio":
        # socket.io-client 4 that leaves the inbox acks pending (python-socketio always acks).
        peer = await JsPeer.start("sio4")
        try:
            await peer.connect(server.url, auth=SHOP.auth("u1"), transports=["websocket"])
            got = [await peer.expect("event", name="responseMessage") for _ in range(3)]
            assert [m["args"][0]["meta"]["msgId"] for m in got] == ids
            assert all(m["hasAck"] for m in got)
            [updated] = await peer.call(
                "requestMessage", SHOP.envelope("reConnectAndUpdates", client=old_id)
            )
            assert updated["data"]["action"] == "reConnectUpdated"
            with pytest.raises(AssertionError):
                await peer.expect("event", name="responseMessage", timeout=0.5)
        finally:
            await peer.close()
            await sender.close()
        return
    raw = await RawClient.connect(server.ws_url, SHOP, user="u1")
    try:
        got = [await raw.recv() for _ in range(3)]
        assert [m["meta"]["msgId"] for m in got] == ids
        updated = await raw.request(SHOP.envelope("reConnectAndUpdates", client=old_id))
        assert updated["data"]["action"] == "reConnectUpdated"
        with pytest.raises(asyncio.TimeoutError):
            await raw.recv(timeout=0.5)
    finally:
        await raw.close()
        await sender.close()
