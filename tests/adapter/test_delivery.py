"""Nothing accepted is lost: a burst at a target that leaves in the middle of it (close
handshake, or the TCP connection cut) is all received once the target's user comes back,
because a message to a user is kept until acknowledged, not until written to a socket.

Clients that close while messages still arrive close as browsers and mini programs do: they go
on reading (and dropping) what comes until the server's close frame (:func:`close_reading`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import websockets

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer

N = 2000
APPS = {
    "d": {
        "key": "d-key",
        "rate": 1_000_000,
        "burst": 1_000_000,
        "inbox_size": N + 100,
        "verify_message_sign": False,
    },
    "legacy": {
        "key": "legacy-key",
        "rate": 1_000_000,
        "burst": 1_000_000,
        "inbox_size": N + 100,
        "verify_message_sign": False,
        "keep_until_ack": False,
    },
}
D = Signer("d", "d-key")
LEGACY = Signer("legacy", "legacy-key")


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


def meta(msg: dict[str, Any]) -> dict[str, Any]:
    return dict(msg["meta"])


async def close_reading(client: RawClient) -> int | None:
    """Close, reading what still arrives until the server's close frame; its code (None if it
    never came). The ``websockets`` client stops reading while 16 messages wait unread
    (``max_queue``), closing or not (by design, python-websockets/websockets#1555): its own
    ``close()`` with unread messages never sees the server's reply and gives up after its 10 s
    ``close_timeout``."""
    ws = client.ws

    async def drop() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await ws.recv()

    reader = asyncio.ensure_future(drop())
    await asyncio.wait_for(ws.close(), 5)
    await asyncio.wait_for(reader, 5)
    rcvd = ws.protocol.close_rcvd
    return None if rcvd is None else int(rcvd.code)


async def _burst(sender: RawClient, signer: Signer, target: str) -> dict[str, str]:
    """Send N messages without waiting, then read N results: msgId -> status accepted."""
    for n in range(N):
        await sender.send(signer.envelope("sendToOthers", {"n": n}, target=target))
    accepted: dict[str, str] = {}
    for _ in range(N):
        reply = await sender.recv(timeout=10)
        if reply["data"]["action"] == "result":
            accepted[reply["data"]["payload"]["msgId"]] = reply["data"]["payload"]["status"]
    return accepted


@pytest.mark.parametrize("leave", ["close_handshake", "abort"])
async def test_a_burst_at_a_leaving_target_is_all_received(core: RunningServer, leave: str) -> None:
    sender = await RawClient.connect(core.ws_url, D, user="s")
    target = await RawClient.connect(core.ws_url, D, user="t")
    old_id = target.client_id
    burst = asyncio.ensure_future(_burst(sender, D, old_id))
    received: dict[str, int] = {}
    try:
        # Take (and acknowledge) some of the burst, then leave in the middle of it.
        while len(received) < 200:
            msg = await target.recv()
            received[meta(msg)["msgId"]] = msg["data"]["payload"]["n"]
            await target.send(D.envelope("ack", msgId=meta(msg)["msgId"]))
        if leave == "abort":
            target.ws.transport.abort()
        else:
            # More of the burst keeps coming: the server answers the close all the same.
            assert await close_reading(target) == 1000
        accepted = await burst
        assert len(accepted) == N  # every message was accepted, as delivered or queued
        assert set(accepted.values()) <= {"delivered", "queued"}

        back = await RawClient.connect(core.ws_url, D, user="t")
        try:
            while not set(accepted) <= set(received):
                msg = await back.recv()
                assert msg["data"]["action"] == "exchange", msg
                received[meta(msg)["msgId"]] = msg["data"]["payload"]["n"]
        finally:
            await back.close()
        # In order: what comes again comes in the order it was sent.
        assert list(received.values()) == sorted(received.values())
    finally:
        burst.cancel()
        await close_reading(sender)


async def test_without_keep_until_ack_a_closing_target_is_never_reported_delivered(
    core: RunningServer,
) -> None:
    """The predecessor's mode: a message to a connected client is written once. Once the target
    is leaving, a send is no longer `delivered`: it is queued for the user's return."""
    sender = await RawClient.connect(core.ws_url, LEGACY, user="s")
    target = await RawClient.connect(core.ws_url, LEGACY, user="t")
    try:
        first = await sender.request(
            LEGACY.envelope("sendToOthers", "while here", target=target.client_id)
        )
        assert first["data"]["payload"]["status"] == "delivered"
        assert first["data"]["payload"]["guarantee"] == "sent"
        assert (await target.recv())["data"]["payload"] == "while here"
        await target.close()
        reply = await sender.request(
            LEGACY.envelope("sendToOthers", "after", target=target.client_id)
        )
        assert reply["data"]["payload"]["status"] == "queued"
        back = await RawClient.connect(core.ws_url, LEGACY, user="t")
        assert (await back.recv())["data"][
            "payload"
        ] == "after"  # the first frame: not "while here"
        await back.close()
    finally:
        await sender.close()


async def test_a_socketio_client_that_never_acks_holds_bounded_ack_state(
    start_server: StartServer,
) -> None:
    """Kept messages ask a socket.io client for an ack; one that never answers (wxapp-socket-io
    cannot) must not make the server hold an ack registration per message forever."""
    import json

    import aiohttp

    server = await start_server(apps={"d": {**APPS["d"], "inbox_size": 10}})
    sender = await RawClient.connect(server.ws_url, D, user="s")
    async with aiohttp.ClientSession() as http:
        url = f"{server.ws_url}/socket.io/?EIO=4&transport=websocket"
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_str()).startswith("0")
            await ws.send_str("40" + json.dumps(D.auth("quiet")))
            sid = json.loads((await ws.receive_str())[2:])["sid"]
            for n in range(50):
                await sender.send(D.envelope("sendToOthers", n, target=sid))
            got = 0
            while got < 50:
                text = await ws.receive_str()
                if text.startswith("42"):  # 42<ack id>["responseMessage",...]: never answered
                    got += 1
            assert server.hub is not None
            conn = server.hub.connections[("d", sid)]
            assert len(conn.unacked) == 10
            assert conn.socket.pending_acks == 10
    assert await close_reading(sender) == 1000  # 50 results it never read: answered anyway
