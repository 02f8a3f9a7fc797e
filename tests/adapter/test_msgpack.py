"""The msgpack parser: SocketIOServer(parser="msgpack") against socket.io-client 4 with the npm
socket.io-msgpack-parser, plus the sans-IO codec's checks."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from wxio.adapter.config import ConfigError, SocketIOOptions
from wxio.adapter.sio import Socket, SocketIOServer
from wxio.protocol.errors import RemoteProtocolError
from wxio.protocol.socketio import Packet, PacketType
from wxio.protocol.socketio import msgpack as mp

from .conftest import StartServer
from .jspeer import JsPeer, requires_node


def test_codec_round_trip_and_wire_form() -> None:
    wire, atts = mp.encode(Packet(PacketType.EVENT, "/chat", ["hi", 1, b"\x01\x02", None], 7))
    assert atts == []
    assert msgpack.unpackb(wire) == {
        "type": 2,
        "nsp": "/chat",
        "data": ["hi", 1, b"\x01\x02", None],
        "id": 7,
    }
    # No id, no data: the keys are left out (the npm decoder refuses "id": null).
    assert msgpack.unpackb(mp.encode(Packet(PacketType.CONNECT, "/"))[0]) == {"type": 0, "nsp": "/"}
    # BINARY_* types do not exist in this format.
    wire, _ = mp.encode(Packet(PacketType.BINARY_ACK, "/", [b"x"], 3))
    assert msgpack.unpackb(wire)["type"] == 3
    decoder = mp.Decoder()
    packet = decoder.feed_binary(
        msgpack.packb(
            {
                "type": 2,
                "nsp": "/",
                "data": ["ev", {"k": b"\x00"}],
                "id": 1,
                "options": {"compress": True},
            }
        )
    )
    assert packet == Packet(PacketType.EVENT, "/", ["ev", {"k": b"\x00"}], 1)
    # notepack's undefined (fixext 1, type 0) and ArrayBuffer (ext 8, type 0).
    undefined = b"\xd4\x00\x00"
    buf = b"\xc7\x03\x00abc"
    raw = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x93\xa2ev" + undefined + buf
    assert decoder.feed_binary(raw) == Packet(PacketType.EVENT, "/", ["ev", None, b"abc"])


DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]


@pytest.mark.parametrize(
    "body",
    [
        {"type": 7, "nsp": "/", "data": ["x"]},
        {"type": True, "nsp": "/", "data": ["x"]},
        {"type": 2, "nsp": 1, "data": ["x"]},
        {"type": 2, "nsp": "/", "data": {}},
        {"type": 2, "nsp": "/", "data": ["connect"]},
        {"type": 2, "nsp": "/", "data": ["x"], "id": -1},
        {"type": 2, "nsp": "/", "data": ["x"], "id": 2**60},
        {"type": 2, "nsp": "/", "data": ["x"], "id": "1"},
        {"type": 1, "nsp": "/", "data": []},
        {"type": 2, "nsp": "/", "data": ["x", DEEP]},
        [2, "/"],
    ],
)
def test_decoder_refuses(body: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        mp.Decoder().feed_binary(msgpack.packb(body, use_bin_type=True))


@pytest.mark.parametrize("raw", [b"", b"\xc1", b"\x81\x01\x02", b"\xd5\x05\x00\x00", b"\x80\x80"])
def test_decoder_refuses_bad_bytes(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        mp.Decoder().feed_binary(raw)
    with pytest.raises(RemoteProtocolError):
        mp.Decoder().feed_text('2["x"]')


def test_parser_option() -> None:
    assert SocketIOServer(parser="msgpack").json_parser is False
    assert SocketIOServer(SocketIOOptions(parser="msgpack")).parser == "msgpack"
    with pytest.raises(ConfigError):
        SocketIOServer(parser="protobuf")


def msgpack_setup(io: SocketIOServer) -> None:
    nsp = io.of("/")

    @nsp.on("echo")
    def echo(socket: Socket, *args: Any) -> Any:
        return args

    @nsp.on("join")
    def join(socket: Socket, room: str) -> None:
        socket.join(room)

    @nsp.on("shout")
    def shout(socket: Socket, room: str, data: Any) -> None:
        socket.to(room).emit("heard", data, b"\xff")

    @nsp.on("ask")
    async def ask(socket: Socket) -> Any:
        return tuple(await socket.call("question", "sure?", b"\x00\x01", timeout=5))

    io.of("/other").on("connect", lambda socket: socket.emit("welcome", socket.nsp.name))


@requires_node
@pytest.mark.node
@pytest.mark.parametrize("transports", [["polling"], ["websocket"], ["polling", "websocket"]])
async def test_socketio_client_with_msgpack_parser(
    start_server: StartServer, transports: list[str]
) -> None:
    server = await start_server(socketio={"parser": "msgpack"}, setup=msgpack_setup)
    a = await JsPeer.start("sio4")
    b = await JsPeer.start("sio4")
    try:
        opts = {"parser": "msgpack", "transports": transports}
        await a.connect(server.url, **opts)
        await b.connect(server.url, **opts)
        assert await a.call("echo", 1, 2.5, "€", None, True, {"x": [1, {"y": b"\x01\x02"}]}) == [
            1,
            2.5,
            "€",
            None,
            True,
            {"x": [1, {"y": b"\x01\x02"}]},
        ]
        await b.call("join", "r")
        await a.emit("shout", "r", {"n": 1})
        heard = await b.expect("event", name="heard")
        assert heard["args"] == [{"n": 1}, b"\xff"]
        await a.on("question", ack_with=["yes", {"$bin": "AAE="}])
        assert await a.call("ask") == ["yes", b"\x00\x01"]
        await a.connect(server.url, sock="other", nsp="/other", **opts)
        welcome = await a.expect("event", sock="other", name="welcome")
        assert welcome["args"] == ["/other"]
        await asyncio.sleep(0.1)
    finally:
        await a.close()
        await b.close()


@requires_node
@pytest.mark.node
async def test_routing_core_over_msgpack(start_server: StartServer) -> None:
    from .core_clients import Signer

    server = await start_server(
        socketio={"parser": "msgpack"}, apps={"shop": {"key": "k"}}, setup=lambda io: None
    )
    signer = Signer("shop", "k")
    a = await JsPeer.start("sio4")
    b = await JsPeer.start("sio4")
    try:
        ca = await a.connect(server.url, parser="msgpack", auth=signer.auth("ua"))
        cb = await b.connect(server.url, parser="msgpack", auth=signer.auth("ub"))
        envelope = signer.envelope("sendToOthers", {"hello": 1}, target=cb["sid"])
        [reply] = await a.call("requestMessage", envelope)
        assert reply["data"]["payload"]["status"] == "delivered"
        got = await b.expect("event", name="responseMessage")
        assert got["args"][0]["data"]["payload"] == {"hello": 1}
        assert got["args"][0]["meta"]["client"] == ca["sid"]
    finally:
        await a.close()
        await b.close()
