"""Connection state recovery on one node, with socket.io-client 4 and its own recovery: the
client keeps ``pid`` and the last offset and sends them when it reconnects; it gets its id, its
rooms and the room emits it missed, in order. Off by default; a clean disconnect keeps nothing;
a session expires after ``max_disconnection_duration``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from wxio.adapter.config import ConfigError
from wxio.adapter.sio import ConnectionRefused, SocketIOServer
from wxio.adapter.sio.recovery import (
    MemoryRecovery,
    RecoveryOptions,
    parse_log_entry,
    recovery_options,
    with_offset,
)
from wxio.protocol.socketio import Packet, PacketType

from .conftest import StartServer
from .jspeer import JsPeer, requires_node

NSP = "/chat"


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


class App:
    """``/chat``: every socket joins ``room1``; ``join`` joins more; what the server saw."""

    def __init__(self, *, missed_on_disconnect: bool = True) -> None:
        self.connects: list[tuple[str, bool, list[str], dict[str, Any]]] = []
        self.sockets: dict[str, Any] = {}
        self.middleware_calls = 0
        self.reasons: list[str] = []
        self.missed_on_disconnect = missed_on_disconnect

    def setup(self, io: SocketIOServer) -> None:
        nsp = io.of(NSP)

        async def middleware(ctx: Any, next: Any) -> None:
            self.middleware_calls += 1
            if ctx.auth.get("deny"):
                raise ConnectionRefused("denied")
            await next()

        nsp.use(middleware)

        @nsp.on("connect")
        def connect(socket: Any) -> None:
            if not socket.recovered:
                socket.join("room1")
                socket.data["first_seen"] = socket.id
            self.connects.append(
                (socket.id, socket.recovered, sorted(socket.rooms), dict(socket.data))
            )
            self.sockets[socket.id] = socket

        @nsp.on("join")
        def join(socket: Any, room: str) -> None:
            socket.join(room)

        @nsp.on("disconnect")
        def disconnect(socket: Any, reason: str) -> None:
            self.sockets.pop(socket.id, None)
            self.reasons.append(reason)
            if self.missed_on_disconnect and reason == "transport close":
                # The session is kept by now, and the client cannot be back yet: all of these
                # are missed, and must come back in this order (the "other" one must not).
                nsp.to("room1").emit("tick", 1)
                nsp.to("other").emit("tick", "not for you")
                nsp.emit("all", {"n": 2})
                nsp.to("room2").except_("nobody").emit("tick", 3)
                nsp.to(socket.id).emit("direct", 4)


async def first_event(peer: JsPeer, name: str) -> list[Any]:
    return list((await peer.expect("event", name=name))["args"])


@requires_node
@pytest.mark.node
@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"], ["polling"]])
async def test_recovers_id_rooms_data_and_missed_packets(
    start_server: StartServer, transports: list[str]
) -> None:
    app = App()
    server = await start_server(
        socketio={"connection_state_recovery": {"max_disconnection_duration": 30}},
        setup=app.setup,
    )
    io = server.io
    peer = await JsPeer.start("sio4")
    try:
        first = await peer.connect(
            server.url,
            nsp=NSP,
            transports=transports,
            reconnectionDelay=300,
            randomizationFactor=0,
        )
        assert first["recovered"] is False
        sid = first["sid"]
        await eventually(lambda: sid in app.sockets, "the server's connect handler")
        socket = app.sockets[sid]
        assert isinstance(socket.pid, str) and socket.pid
        await peer.emit("join", "room2")
        await eventually(lambda: "room2" in socket.rooms, "joined room2")
        io.of(NSP).to("room1").emit("tick", 0)
        args = await first_event(peer, "tick")
        assert args[0] == 0 and isinstance(args[1], str)  # the offset, last

        await peer.command("dropTransport")
        # (the client's reason for its own engine.close(); the server sees "transport close")
        assert (await peer.expect("disconnect"))["reason"] == "forced close"
        again = await peer.expect("connect", timeout=10)
        assert again["sid"] == sid and again["recovered"] is True

        got = [
            (e["name"], e["args"][0], isinstance(e["args"][-1], str))
            for e in [await peer.expect("event") for _ in range(4)]
        ]
        assert got == [
            ("tick", 1, True),
            ("all", {"n": 2}, True),
            ("tick", 3, True),
            ("direct", 4, True),
        ]

        assert app.reasons == ["transport close"]
        assert app.connects[-1][0] == sid and app.connects[-1][1] is True
        assert app.connects[-1][2] == sorted({sid, "room1", "room2"})
        assert app.connects[-1][3] == {"first_seen": sid}
        assert app.middleware_calls == 1  # skip_middlewares (the default)

        # Live room emits reach it: its rooms are back.
        io.of(NSP).to("room2").emit("live", 5)
        assert (await peer.expect("event", name="live"))["args"][0] == 5
        with pytest.raises(AssertionError):
            await peer.expect("event", name="tick", timeout=0.3)  # "not for you" never came
    finally:
        await peer.close()


@requires_node
@pytest.mark.node
async def test_middlewares_run_again_when_not_skipped(start_server: StartServer) -> None:
    app = App(missed_on_disconnect=False)
    in_middleware = asyncio.Event()

    def setup(io: SocketIOServer) -> None:
        async def slow(ctx: Any, next: Any) -> None:
            if app.middleware_calls == 2:  # the reconnection: take a while
                in_middleware.set()
                await asyncio.sleep(0.3)
            await next()

        app.setup(io)
        io.of(NSP).use(slow)

    server = await start_server(
        socketio={"connection_state_recovery": {"skip_middlewares": False}}, setup=setup
    )
    nsp = server.io.of(NSP)
    peer = await JsPeer.start("sio4")
    try:
        first = await peer.connect(
            server.url,
            nsp=NSP,
            transports=["websocket"],
            reconnectionDelay=200,
            randomizationFactor=0,
        )
        nsp.emit("hello", 0)
        await peer.expect("event", name="hello")
        await peer.command("dropTransport")
        await peer.expect("disconnect")
        nsp.to("room1").emit("hello", 1)  # missed while away
        await asyncio.wait_for(in_middleware.wait(), 10)
        nsp.to("room1").emit("hello", 2)  # while its checks run: not lost, not doubled
        again = await peer.expect("connect", timeout=10)
        assert again["sid"] == first["sid"] and again["recovered"] is True
        assert app.middleware_calls == 2
        nsp.to("room1").emit("hello", 3)
        got = [(await peer.expect("event", name="hello"))["args"][0] for _ in range(3)]
        assert got == [1, 2, 3]
        with pytest.raises(AssertionError):
            await peer.expect("event", name="hello", timeout=0.3)
    finally:
        await peer.close()


@requires_node
@pytest.mark.node
async def test_session_expires(start_server: StartServer) -> None:
    app = App(missed_on_disconnect=False)
    server = await start_server(
        socketio={"connection_state_recovery": {"max_disconnection_duration": 0.5}},
        setup=app.setup,
    )
    recovery = server.io.recovery
    assert isinstance(recovery, MemoryRecovery)
    peer = await JsPeer.start("sio4")
    try:
        first = await peer.connect(
            server.url, nsp=NSP, transports=["websocket"], reconnection=False
        )
        await eventually(lambda: first["sid"] in app.sockets, "connected")
        pid = app.sockets[first["sid"]].pid
        server.io.of(NSP).emit("hello")
        await peer.expect("event", name="hello")
        await peer.command("dropTransport")
        await peer.expect("disconnect")
        await eventually(lambda: recovery.has_session(NSP, pid), "the session kept")
        await eventually(lambda: not recovery.has_session(NSP, pid), "the session expired")
        await peer.command("reconnect")
        again = await peer.expect("connect", timeout=10)
        assert again["sid"] != first["sid"] and again["recovered"] is False
    finally:
        await peer.close()


@requires_node
@pytest.mark.node
async def test_clean_disconnects_keep_nothing(start_server: StartServer) -> None:
    app = App(missed_on_disconnect=False)
    server = await start_server(socketio={"connection_state_recovery": True}, setup=app.setup)
    recovery = server.io.recovery
    assert isinstance(recovery, MemoryRecovery)
    peer = await JsPeer.start("sio4")
    try:
        for how in ("server", "server-close", "client"):
            first = await peer.connect(
                server.url, nsp=NSP, transports=["websocket"], reconnection=False, sock=how
            )
            sid = first["sid"]
            await eventually(lambda sid=sid: sid in app.sockets, "connected")
            socket = app.sockets[sid]
            server.io.of(NSP).emit("hello")
            await peer.expect("event", name="hello", sock=how)
            if how == "server":
                socket.disconnect()
            elif how == "server-close":
                socket.disconnect(close=True)
            else:
                await peer.command("disconnect", sock=how)
            await peer.expect("disconnect", sock=how)
            await eventually(lambda sid=sid: sid not in app.sockets, "gone on the server")
            assert not recovery.has_session(NSP, socket.pid), how
            await peer.command("reconnect", sock=how)
            again = await peer.expect("connect", sock=how, timeout=10)
            assert again["sid"] != first["sid"] and again["recovered"] is False, how
    finally:
        await peer.close()


@requires_node
@pytest.mark.node
async def test_off_by_default(start_server: StartServer) -> None:
    app = App(missed_on_disconnect=False)
    server = await start_server(setup=app.setup)
    assert server.io.recovery is None
    peer = await JsPeer.start("sio4")
    try:
        first = await peer.connect(server.url, nsp=NSP, transports=["websocket"])
        await eventually(lambda: first["sid"] in app.sockets, "connected")
        assert app.sockets[first["sid"]].pid is None
        server.io.of(NSP).to("room1").emit("tick", 1)
        assert (await peer.expect("event", name="tick"))["args"] == [1]  # no offset
    finally:
        await peer.close()


def test_offsets_and_log_entries() -> None:
    io = SocketIOServer()
    assert with_offset(io, '42/chat,["x",1]', "5-1") == '42/chat,["x",1,"5-1"]'
    assert with_offset(io, '451-["x",{"_placeholder":true,"num":0}]', "5-2").endswith(',"5-2"]')
    packed = SocketIOServer(parser="msgpack")
    first, _ = packed.encode(Packet(PacketType.EVENT, "/", ["x", b"\x01"]))
    decoded = packed.new_decoder().feed_binary(with_offset(packed, first, "5-3"))
    assert decoded.data == ["x", b"\x01", "5-3"]
    # What comes from Redis is checked before use.
    good = {"nsp": "/", "text": '42["x"]', "atts": [], "rooms": ["r"], "except": []}
    assert parse_log_entry(good) == ("/", '42["x"]', [], ["r"], [])
    for bad in (
        {**good, "text": 3},
        {**good, "text": '42["x"'},
        {**good, "atts": ["!!"]},
        {**good, "rooms": "r"},
        {**good, "bin": True},
        [good],
    ):
        assert parse_log_entry(bad) is None, bad


def test_options() -> None:
    assert recovery_options(None) is None and recovery_options(False) is None
    assert recovery_options(True) == RecoveryOptions(120.0, True)
    assert recovery_options({"max_disconnection_duration": 5}) == RecoveryOptions(5.0, True)
    for bad in ({"max_disconnection_duration": 0}, {"skip_middlewares": 1}, {"nope": 1}, 3):
        with pytest.raises(ConfigError):
            recovery_options(bad)
