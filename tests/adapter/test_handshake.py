"""``socket.handshake`` as socket.io 4 gives it: a JSON-serialisable dict with headers, time,
address, xdomain, secure, issued, url, query (a plain dict) and auth."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import socketio
from wxio.adapter.sio import Socket, SocketIOServer
from wxio.protocol import jsonutil

from .conftest import StartServer


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_handshake_is_json_serialisable(start_server: StartServer, transport: str) -> None:
    """The same over polling (through aiohttp) and a WebSocket opened directly (served below
    it, see adapter/transports/frontdoor.py)."""
    seen: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()

    def setup(io: SocketIOServer) -> None:
        def on_connect(socket: Socket) -> None:
            hs = socket.handshake
            seen.put_nowait((json.dumps(hs), jsonutil.dumps(hs), hs))

        io.of("/h").on("connect", on_connect)

    server = await start_server(setup=setup)
    before = int(time.time() * 1000)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        f"{server.url}?room=a&tag=x&tag=y",
        namespaces=["/h"],
        headers={"X-Custom": "1", "Origin": "http://example.com"},
        auth={"token": "t"},
        transports=[transport],
        wait_timeout=5,
    )
    try:
        text, fast, hs = await asyncio.wait_for(seen.get(), 5)
    finally:
        await client.disconnect()
    data = json.loads(text)
    assert json.loads(fast) == data
    assert set(data) == {
        "headers",
        "time",
        "address",
        "xdomain",
        "secure",
        "issued",
        "url",
        "query",
        "auth",
    }
    assert data["headers"]["x-custom"] == "1"
    assert all(name == name.lower() for name in data["headers"])
    assert data["address"] == "127.0.0.1"
    assert data["xdomain"] is True and data["secure"] is False
    assert before - 1000 <= data["issued"] <= int(time.time() * 1000)
    assert data["time"].endswith("GMT+0000 (Coordinated Universal Time)")
    assert data["url"].startswith("/socket.io/?")
    assert data["query"]["room"] == "a" and data["query"]["tag"] == ["x", "y"]
    assert data["query"]["EIO"] == "4" and data["query"]["transport"] == transport
    assert data["auth"] == {"token": "t"}
    # Attributes, and header lookups that ignore case, as before.
    assert hs.query is hs["query"] and hs.auth == {"token": "t"} and hs.issued == data["issued"]
    assert hs.headers.get("Origin") == "http://example.com" and "X-CUSTOM" in hs.headers
    assert hs.headers["X-Custom"] == "1"
