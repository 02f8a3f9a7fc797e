"""``[engine] ws_compression``: permessage-deflate (RFC 7692) with real clients that offer it
(aiohttp, ``websockets``, socket.io-client in Node over ``ws``) and with hand-made frames, on
both ways into the one WebSocket stack (the front door, and aiohttp reading the head)."""

from __future__ import annotations

import asyncio
import base64
import os
import zlib
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from wxio.adapter.config import ServerConfig
from wxio.adapter.transports.wsconn import WebSocketConnection

from .conftest import RunningServer, StartServer
from .jspeer import JsPeer, requires_node
from .wire import engine, until

AGREED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
BIG = "compressible text, " * 200
ECHO = "/engine.io/?EIO=4&transport=websocket"


@pytest.fixture(params=[True, False], ids=["front-door", "aiohttp-head"])
async def compressed(request: pytest.FixtureRequest, start_server: StartServer) -> RunningServer:
    return await start_server(
        profile="conformance",
        engine={"ws_compression": True},
        config=ServerConfig(native_websocket=request.param),
    )


def connections(server: RunningServer, path: str) -> list[WebSocketConnection]:
    return [s.ws for s in engine(server, path).sessions.values() if s.ws is not None]


async def test_hand_made_compressed_frames_both_ways(compressed: RunningServer) -> None:
    """The wire itself: the 101 agrees, a compressed message is read, the echo comes back with
    RSV1 set and inflates on its own; a short message goes out uncompressed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", compressed.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {ECHO} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert f"\r\nSec-WebSocket-Extensions: {AGREED}\r\n".encode() in head

    async def message() -> tuple[bool, bytes]:
        """(RSV1, payload) of the next message that is not a ping (pings are answered)."""
        while True:
            b0, b1 = await asyncio.wait_for(reader.readexactly(2), 5)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(n)
            if b0 & 0x40:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            if payload == b"2":
                writer.write(Frame(Opcode.TEXT, b"3").serialize(mask=True, extensions=[]))
                continue
            return bool(b0 & 0x40), payload

    try:
        rsv1, opened = await message()
        assert opened.startswith(b"0{") and not rsv1  # short: uncompressed
        ext = PerMessageDeflate(True, True, 15, 15)
        out = Frame(Opcode.TEXT, ("4" + BIG).encode()).serialize(mask=True, extensions=[ext])
        assert out[0] & 0x40 and len(out) < len(BIG) / 10
        writer.write(out)
        assert await message() == (True, ("4" + BIG).encode())
        writer.write(Frame(Opcode.TEXT, b"4short").serialize(mask=True, extensions=[ext]))
        assert await message() == (False, b"4short")
    finally:
        writer.close()


async def test_aiohttp_client_compress_15(compressed: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(compressed.url + ECHO, compress=15) as ws,
    ):
        assert ws.compress == 15  # the 101 agreed
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        await ws.send_str("4" + BIG)
        await ws.send_bytes(b"\x07" * 3000)
        got: list[Any] = []
        while len(got) < 2:
            msg = await ws.receive(timeout=5)
            if msg.data != "2":
                got.append(msg.data)
            else:
                await ws.send_str("3")
        assert got == ["4" + BIG, b"\x07" * 3000]
        assert all(c.protocol.reader.deflate for c in connections(compressed, "/engine.io/"))


async def test_websockets_client_default_deflate(compressed: RunningServer) -> None:
    url = compressed.url.replace("http", "ws") + ECHO
    async with websockets.connect(url) as ws:  # compression="deflate" is its default
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Extensions"] == AGREED
        assert [type(e) for e in ws.protocol.extensions] == [PerMessageDeflate]
        assert str(await asyncio.wait_for(ws.recv(), 5)).startswith("0{")
        await ws.send("4" + BIG)
        await ws.send(bytes(range(256)) * 40)
        got: list[Any] = []
        while len(got) < 2:
            data = await asyncio.wait_for(ws.recv(), 5)
            if data == "2":
                await ws.send("3")
            else:
                got.append(data)
        assert got == ["4" + BIG, bytes(range(256)) * 40]


@requires_node
@pytest.mark.node
async def test_socket_io_client_in_node_with_per_message_deflate(
    compressed: RunningServer,
) -> None:
    peer = await JsPeer.start("sio4")
    try:
        await peer.connect(
            compressed.url,
            subscribe=("message-back",),
            transports=["websocket"],
            perMessageDeflate={"threshold": 0},  # ws compresses every message it sends
        )
        (conn,) = connections(compressed, "/socket.io/")
        assert conn.protocol.reader.deflate and conn.writer.deflate is not None
        big = {"text": BIG, "n": list(range(300))}
        await peer.emit("message", big, "small")
        back = await peer.expect("event", name="message-back")
        assert back["args"] == [big, "small"]
        await peer.emit("message", b"\x01" * 5000)
        back = await peer.expect("event", name="message-back")
        assert back["args"] == [b"\x01" * 5000]
    finally:
        await peer.close()


async def test_off_by_default_the_offer_is_declined(start_server: StartServer) -> None:
    server = await start_server(profile="conformance")
    url = server.url.replace("http", "ws") + ECHO
    async with websockets.connect(url) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        assert str(await asyncio.wait_for(ws.recv(), 5)).startswith("0{")
        await ws.send("4" + BIG)
        while (data := await asyncio.wait_for(ws.recv(), 5)) == "2":
            await ws.send("3")
        assert data == "4" + BIG
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url + ECHO, compress=15) as aws,
    ):
        assert aws.compress == 0
        await until(lambda: bool(connections(server, "/engine.io/")), what="a session")
        assert not any(c.protocol.reader.deflate for c in connections(server, "/engine.io/"))
