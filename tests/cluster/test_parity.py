"""Cluster behaviour from issue 10: msgpack room emits across nodes, the frozen node asked once
per send, reConnectAndUpdates delivering the inbox once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.adapter.sio import Socket, SocketIOServer

from tests.adapter.conftest import StartServer

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

APPS = {"c": {"key": "c-key", "rate": 1000, "burst": 1000}}


def room_setup(io: SocketIOServer) -> None:
    nsp = io.of("/room")

    @nsp.on("join")
    def join(socket: Socket, room: str) -> None:
        socket.join(room)

    @nsp.on("shout")
    def shout(socket: Socket, room: str, data: Any) -> None:
        socket.to(room).emit("heard", data, b"\x00\xff")


async def test_msgpack_room_emit_across_nodes(
    start_server: StartServer, redis_prefix: str
) -> None:
    nodes = [
        await start_server(
            apps=APPS,
            socketio={"parser": "msgpack"},
            setup=room_setup,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"m{i}"),
        )
        for i in range(2)
    ]
    clients = []
    heard: asyncio.Queue[Any] = asyncio.Queue()
    for node in nodes:
        client = socketio.AsyncClient(reconnection=False, serializer="msgpack")
        client.on("heard", lambda *args: heard.put_nowait(list(args)), namespace="/room")
        await client.connect(node.url, namespaces=["/room"], wait_timeout=5)
        clients.append(client)
    try:
        await clients[1].call("join", "r", namespace="/room", timeout=5)
        await clients[0].emit("shout", ("r", {"n": 1}), namespace="/room")
        assert await asyncio.wait_for(heard.get(), 5) == [{"n": 1}, b"\x00\xff"]
    finally:
        for client in clients:
            await client.disconnect()
