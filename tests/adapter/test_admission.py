"""The admission hook, engine.io's ``allowRequest``: asked once per new session (polling
handshake or direct WebSocket), never for the requests of an existing session; a refusal is the
reference's answer (403 ``{"code":4,...}`` on polling, a 400 with the message before the 101 on
WebSocket), which socket.io-client 4 reports as a connect_error."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import socketio
from wxio.adapter.sio import RequestRefused, SocketIOServer

from .conftest import StartServer
from .jspeer import JsPeer, requires_node


def setup_hook(seen: list[str]) -> Any:
    async def allow(request: Any) -> bool:
        seen.append(request.query.get("transport", ""))
        await asyncio.sleep(0)
        key = request.headers.get("X-Key") or request.query.get("key")
        if key == "boom":
            raise RuntimeError("hook bug")
        if key == "banned":
            raise RequestRefused("You are banned")
        return key == "ok"

    def setup(io: SocketIOServer) -> None:
        io.allow_request = allow
        io.of("/").on("hi", lambda socket: "hello")

    return setup


async def test_polling_and_websocket_refusals(start_server: StartServer) -> None:
    seen: list[str] = []
    server = await start_server(setup=setup_hook(seen), engine={"cors_origins": "*"})
    url = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        for key, message in (
            ("no", "Forbidden"),
            ("banned", "You are banned"),
            ("boom", "Forbidden"),
        ):
            async with http.get(url, headers={"X-Key": key, "Origin": "http://x"}) as resp:
                assert resp.status == 403
                assert resp.headers["Content-Type"].startswith("application/json")
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
                assert await resp.json() == {"code": 4, "message": message}
        ws_url = f"{server.url}/socket.io/?EIO=4&transport=websocket"
        for key in ("no", "banned"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(ws_url, headers={"X-Key": key})
            assert info.value.status == 400
        async with http.get(
            ws_url,
            headers={
                "X-Key": "banned",
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        ) as resp:
            assert resp.status == 400
            assert await resp.text() == "You are banned"
        # Admitted: the hook is not asked again for the session's later requests.
        seen.clear()
        async with http.get(url, headers={"X-Key": "ok"}) as resp:
            assert resp.status == 200
            sid = (await resp.text()).split('"sid":"')[1].split('"')[0]
        async with http.post(f"{url}&sid={sid}", data="40") as resp:
            assert resp.status == 200
        async with http.get(f"{url}&sid={sid}") as resp:
            assert (await resp.text()).startswith("40")
        assert seen == ["polling"]


async def test_python_client_admitted_or_refused(start_server: StartServer) -> None:
    seen: list[str] = []
    server = await start_server(setup=setup_hook(seen))
    for transports in (["polling"], ["websocket"], ["polling", "websocket"]):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            server.url, headers={"X-Key": "ok"}, transports=transports, wait_timeout=5
        )
        try:
            assert await client.call("hi", timeout=5) == "hello"
        finally:
            await client.disconnect()
        refused = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(
                server.url, headers={"X-Key": "no"}, transports=transports, wait_timeout=5
            )
        await refused.disconnect()


@requires_node
@pytest.mark.node
@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
async def test_socketio_client_4_sees_a_connect_error(
    start_server: StartServer, transports: list[str]
) -> None:
    seen: list[str] = []
    server = await start_server(setup=setup_hook(seen))
    peer = await JsPeer.start("sio4")
    try:
        await peer.command(
            "connect",
            url=server.url,
            opts={"transports": transports, "query": {"key": "banned"}, "reconnection": False},
        )
        error = await peer.expect("connect_error")
        if transports == ["polling"]:
            # The polling transport reports the refused handshake as an xhr error.
            assert error["message"] == "xhr poll error"
        else:
            assert error["message"] == "websocket error"
        await peer.connect(
            server.url, sock="ok", transports=transports, query={"key": "ok"}, reconnection=False
        )
    finally:
        await peer.close()
