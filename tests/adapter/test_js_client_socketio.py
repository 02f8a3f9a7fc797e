"""The wxio JS client's ``transport: 'socketio'`` with Node's socket.io-client 4.8 and 2.5 (the
npm packages in tests/js), over each Engine.IO transport they offer: what clients/js/README.md
promises about socket.io-client versions and transports; and weapp.socket.io's background pause,
which needs `wx`. The rest of weapp.socket.io is covered by test_js_client.py, socket.io-client 4's
browser bundle by test_browser.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from wxio.adapter.app import ENGINES
from wxio.adapter.engine import EngineSocket

from .conftest import RunningServer, StartServer
from .jspeer import JsPeer, requires_node
from .test_js_client import APPS, new_client, no_more, request, sdk_peer

pytestmark = [requires_node, pytest.mark.node]

# (io library, socket.io-client's `transports` option; None: the client's own ['websocket'],
# which test_browser.py covers for socket.io-client 4)
CASES = [
    ("sio4", ["polling"]),
    ("sio4", ["polling", "websocket"]),
    ("sio2", None),
    ("sio2", ["polling"]),
    ("sio2", ["polling", "websocket"]),
]


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


def sessions(server: RunningServer) -> list[EngineSocket]:
    return list(server.app[ENGINES][0].sessions.values())


def io_options(io: str, transports: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {"transport": "socketio", "io": io}
    if transports is not None:
        options["ioOptions"] = {"transports": transports}
    return options


@pytest.mark.parametrize(("io", "transports"), CASES)
async def test_send_broadcast_and_inbox_ack(
    server: RunningServer, io: str, transports: list[str] | None
) -> None:
    """Two clients get their ids and user ids, a send is delivered and acknowledged (the
    receiver's inbox is empty afterwards), a broadcast arrives, a denial rejects its send."""
    assert server.hub is not None
    peer = await sdk_peer()
    try:
        options = io_options(io, transports)
        a = await new_client(peer, "a", server.url, user="ua", **options)
        b = await new_client(peer, "b", server.url, user="ub", **options)
        assert a["id"] != b["id"] and (a["userId"], b["userId"]) == ("ua", "ub")

        sent = await request(peer, "send", "a", target=b["id"], payload={"text": "hi"})
        assert sent["ev"] == "sent", sent
        assert sent["result"]["status"] == "delivered"
        assert sent["result"]["guarantee"] == "until_acked"
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["payload"] == {"text": "hi"} and got["data"]["from"] == a["id"]
        # The event's ack callback acknowledged it: nothing is left in ub's inbox.
        deadline = time.monotonic() + 5
        while await server.hub.inbox.pending("demo", "ub", now=time.time()):
            assert time.monotonic() < deadline, "the exchange was never acknowledged"
            await asyncio.sleep(0.02)  # polling the condition
        cid = await peer.command("stats", name="b")
        assert (await peer.expect("stats", id=cid))["stats"]["acks"] == 1

        # What the server saw: the library's Engine.IO version and the transport asked for
        # (an upgrade may finish a moment after the first messages).
        eio = {"sio4": 4, "sio2": 3}[io]
        final = (transports or ["websocket"])[-1]
        deadline = time.monotonic() + 5
        while [(s.eio, s.transport) for s in sessions(server)] != [(eio, final)] * 2:
            assert time.monotonic() < deadline, [(s.eio, s.transport) for s in sessions(server)]
            await asyncio.sleep(0.02)  # polling the condition

        cast = await request(peer, "broadcast", "b", payload={"all": 1})
        assert cast["ev"] == "sent" and cast["result"]["delivered"] == 1
        got = await peer.expect("client", name="a", type="broadcast")
        assert got["data"]["payload"] == {"all": 1} and got["data"]["from"] == b["id"]

        refused = await request(peer, "send", "a", target="nobody", payload=1)
        assert refused["ev"] == "rejected" and refused["reason"] == "target_offline"
    finally:
        await peer.close()


@pytest.mark.parametrize("transports", [["polling"], ["polling", "websocket"]])
async def test_bad_signature_is_refused_without_retry(
    server: RunningServer, transports: list[str]
) -> None:
    """socket.io-client 4 reports the refusal as `connect_error` with its reason: the client
    gives up (a bad signature does not get better by retrying)."""
    peer: JsPeer = await sdk_peer()
    try:
        creds = {"app": "demo", "timestamp": int(time.time() * 1000), "sign": "0" * 32}
        options = io_options("sio4", transports)
        await new_client(peer, "bad", server.url, creds=creds, wait=False, **options)
        deny = await peer.expect("client", name="bad", type="deny", timeout=10)
        assert deny["data"]["reason"] == "bad_signature"
        gone = await peer.expect("client", name="bad", type="disconnect")
        assert gone["data"]["code"] == 4001 and gone["data"]["willReconnect"] is False, gone
        await no_more(peer, 1.0, name="bad", type="reconnecting")
    finally:
        await peer.close()


async def test_socketio_client_2_refusal_looks_like_a_connect_timeout(
    server: RunningServer,
) -> None:
    """socket.io-client 2.x passes a refused CONNECT to the socket's `error` event, which the
    client does not read: no `deny`, the attempt ends at `connectTimeout` and the client
    retries with backoff (what clients/js/README.md says of 2.x)."""
    peer: JsPeer = await sdk_peer()
    try:
        creds = {"app": "demo", "timestamp": int(time.time() * 1000), "sign": "0" * 32}
        options = io_options("sio2", None)
        await new_client(
            peer, "bad", server.url, creds=creds, wait=False, connectTimeout=500, **options
        )
        gone = await peer.expect("client", name="bad", type="disconnect", timeout=10)
        assert gone["data"] == {"code": 1006, "reason": "connect timeout", "willReconnect": True}
        again = await peer.expect("client", name="bad", type="reconnecting")
        assert again["data"]["reason"] == "connect timeout"
        await no_more(peer, 0.5, name="bad", type="deny")
    finally:
        await peer.close()


@pytest.mark.parametrize("pass_wx", [True, False])
async def test_mini_program_background_needs_wx_with_socketio(
    server: RunningServer, pass_wx: bool
) -> None:
    """weapp.socket.io in a mini program: the client looks for the global `wx` only for its raw
    transport, so with 'socketio' the background pause works when `wx` is passed; without it
    WeChat's cut drops the socket under the client (clients/js/README.md says so)."""
    peer: JsPeer = await sdk_peer()
    try:
        options: dict[str, Any] = {"transport": "socketio"}  # weapp.socket.io's io
        if pass_wx:
            options["wx"] = True  # sdk_peer.js passes the shim's wx
        b = await new_client(peer, "b", server.url, user="ub", **options)
        await peer.command("background", cutMs=300)
        gone = await peer.expect("client", name="b", type="disconnect")
        if not pass_wx:
            assert gone["data"]["reason"] == "transport close", gone
            return
        assert gone["data"] == {"code": 1000, "reason": "background", "willReconnect": False}
        await no_more(peer, 0.5, name="b", type="reconnecting")  # past the cut
        await peer.command("foreground")
        back = await peer.expect("client", name="b", type="connect", timeout=10)
        assert back["data"]["reconnected"] is True and back["data"]["replaced"] == [b["id"]]
    finally:
        await peer.close()
