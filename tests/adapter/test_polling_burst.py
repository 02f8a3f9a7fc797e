"""A burst of messages to a python-socketio client on polling only: python-engineio refuses a
payload of more than 16 packets ("Too many packets in payload") and drops the connection, so a
polling response carries at most ``max_polling_packets`` (16) and the rest go in the next poll."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import socketio
from wxio.adapter.sio import Socket, SocketIOServer
from wxio.protocol.engineio.packets import Packet, PacketType
from wxio.protocol.engineio.session import EngineConfig, EngineSession

from .conftest import StartServer


def test_take_outbox_limit() -> None:
    session = EngineSession("s", eio=4, transport="polling", config=EngineConfig(), now=0.0)
    session.take_outbox()  # the open packet
    for i in range(40):
        session.send_message(f"m{i}")
    first = session.take_outbox(16)
    assert [p.data for p in first] == [f"m{i}" for i in range(16)]
    assert session.outbox_len == 24 and session.queued_bytes == sum(
        len(f"m{i}") for i in range(16, 40)
    )
    assert len(session.take_outbox(16)) == 16
    assert len(session.take_outbox(16)) == 8 and session.queued_bytes == 0
    # A closed session hands over everything, its close packet last.
    for _ in range(20):
        session.send_message("x")
    session.close()
    last = session.take_outbox(16)
    assert len(last) == 21 and last[-1].type is PacketType.CLOSE
    assert Packet(PacketType.MESSAGE, "x") in last


def burst_setup(io: SocketIOServer) -> None:
    @io.of("/burst").on("go")
    def go(socket: Socket, n: int) -> str:
        for i in range(n):
            socket.emit("m", i)
        return "sent"


async def test_python_socketio_polling_client_survives_a_burst_of_40(
    start_server: StartServer,
) -> None:
    server = await start_server(setup=burst_setup)
    got: asyncio.Queue[Any] = asyncio.Queue()
    disconnects: list[Any] = []
    client = socketio.AsyncClient(reconnection=False)
    client.on("m", got.put_nowait, namespace="/burst")
    client.on("disconnect", lambda *a: disconnects.append(a), namespace="/burst")
    await client.connect(server.url, namespaces=["/burst"], transports=["polling"], wait_timeout=5)
    try:
        for _ in range(2):
            assert await client.call("go", 40, namespace="/burst", timeout=10) == "sent"
            assert [await asyncio.wait_for(got.get(), 5) for _ in range(40)] == list(range(40))
        assert client.connected and not disconnects
    finally:
        await client.disconnect()


async def test_polling_response_holds_at_most_16_packets(start_server: StartServer) -> None:
    server = await start_server(setup=burst_setup)
    url = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            sid = (await resp.text()).split('"sid":"')[1].split('"')[0]
        url += f"&sid={sid}"
        async with http.post(url, data="40/burst,") as resp:
            assert resp.status == 200
        async with http.get(url) as resp:
            assert (await resp.text()).startswith("40/burst,")
        async with http.post(url, data='42/burst,1["go",40]') as resp:
            assert resp.status == 200
        counts = []
        while sum(counts) < 41:
            async with http.get(url) as resp:
                counts.append(len((await resp.text()).split("\x1e")))
        assert counts == [16, 16, 9]
