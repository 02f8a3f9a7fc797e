"""Acks as socket.io-client 4 relies on them: every event that asks for one is answered (None
gives an empty ack), unless the handler declines with NO_ACK or ctx.no_ack(); then the client's
``timeout()`` and ``retries`` see no ack, as against a Node handler that ignores its callback."""

from __future__ import annotations

from typing import Any

import pytest
from wxio.adapter.sio import NO_ACK, EventContext, SocketIOServer

from .conftest import StartServer
from .jspeer import JsPeer, requires_node

pytestmark = [requires_node, pytest.mark.node]


def setup_handlers(calls: dict[str, int]) -> Any:
    def setup(io: SocketIOServer) -> None:
        nsp = io.of("/acks")

        def count(name: str) -> None:
            calls[name] = calls.get(name, 0) + 1

        @nsp.on("answered")
        def answered(socket: Any, x: Any) -> Any:
            count("answered")
            return {"got": x}

        @nsp.on("silent")
        def silent(socket: Any) -> None:
            count("silent")

        @nsp.on("declined")
        async def declined(socket: Any) -> Any:
            count("declined")
            return NO_ACK

        def declined_ctx(ctx: EventContext) -> str:
            count("declined_ctx")
            ctx.no_ack()
            return "ignored"

        nsp.route("declined_ctx", declined_ctx)

    return setup


async def test_default_empty_ack_and_declined_acks_time_out(start_server: StartServer) -> None:
    calls: dict[str, int] = {}
    server = await start_server(setup=setup_handlers(calls))
    peer = await JsPeer.start("sio4")
    try:
        await peer.connect(server.url, nsp="/acks", transports=["websocket"])
        cid = await peer.command("emit", event="answered", args=[1], withAck=True, timeout=2000)
        assert (await peer.expect("ack", id=cid))["args"] == [{"got": 1}]
        # None from the handler: an empty ack, in time.
        cid = await peer.command("emit", event="silent", withAck=True, timeout=2000)
        reply = await peer.expect("ack", id=cid)
        assert reply["error"] is None and reply["args"] == [None]
        for event in ("declined", "declined_ctx"):
            cid = await peer.command("emit", event=event, withAck=True, timeout=300)
            reply = await peer.expect("ack", id=cid, timeout=5)
            assert reply["error"] == "operation has timed out", reply
            assert calls[event] == 1
    finally:
        await peer.close()


async def test_retries_resend_an_unacknowledged_event(start_server: StartServer) -> None:
    calls: dict[str, int] = {}
    server = await start_server(setup=setup_handlers(calls))
    peer = await JsPeer.start("sio4")
    try:
        await peer.connect(
            server.url, nsp="/acks", transports=["websocket"], retries=2, ackTimeout=250
        )
        # Acked at once: sent once.
        cid = await peer.command("emit", event="answered", args=["a"], withAck=True)
        assert (await peer.expect("ack", id=cid))["args"] == [{"got": "a"}]
        cid = await peer.command("emit", event="silent", withAck=True)
        assert (await peer.expect("ack", id=cid))["error"] is None
        # Declined: the client tries 1 + retries times, then gives up.
        cid = await peer.command("emit", event="declined", withAck=True)
        reply = await peer.expect("ack", id=cid, timeout=5)
        assert reply["error"] == "operation has timed out", reply
        assert calls == {"answered": 1, "silent": 1, "declined": 3}
    finally:
        await peer.close()


async def test_wire_forms_of_the_acks(start_server: StartServer) -> None:
    """On the wire: ``43/acks,<id>[]`` for None, nothing for NO_ACK or no handler."""
    import aiohttp

    calls: dict[str, int] = {}
    server = await start_server(setup=setup_handlers(calls))
    url = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            sid = (await resp.text()).split('"sid":"')[1].split('"')[0]
        url += f"&sid={sid}"
        async with http.post(url, data="40/acks,") as resp:
            assert resp.status == 200
        async with http.get(url) as resp:
            assert (await resp.text()).startswith("40/acks,")
        body = '42/acks,1["declined"]\x1e42/acks,2["nobody"]\x1e42/acks,3["silent"]'
        async with http.post(url, data=body) as resp:
            assert resp.status == 200
        async with http.get(url) as resp:
            assert await resp.text() == "43/acks,3[]"
