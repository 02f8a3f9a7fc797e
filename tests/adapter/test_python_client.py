"""python-socketio's AsyncClient against wxio: the Python peer, every transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from .conftest import RunningServer, StartServer

TRANSPORTS = [["polling"], ["websocket"], None]  # None: polling, then upgrade


async def _client(
    server: RunningServer, transports: list[str] | None, **kw: Any
) -> tuple[socketio.AsyncClient, asyncio.Queue[Any]]:
    client = socketio.AsyncClient(reconnection=False)
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    @client.on("*")
    async def any_event(event: str, *args: Any) -> None:
        await inbox.put((event, *args))

    await client.connect(server.url, transports=transports, wait_timeout=5, **kw)
    return client, inbox


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["polling", "websocket", "upgrade"])
async def test_event_ack_and_binary_both_ways(
    conformance: RunningServer, transports: list[str] | None
) -> None:
    client, inbox = await _client(conformance, transports, auth={"token": "abc"})
    try:
        assert await asyncio.wait_for(inbox.get(), 5) == ("auth", {"token": "abc"})
        await client.emit("message", [1, b"\x01\x02", {"x": "y"}])
        assert await asyncio.wait_for(inbox.get(), 5) == (
            "message-back",
            [1, b"\x01\x02", {"x": "y"}],
        )
        reply = await client.call("message-with-ack", ({"a": 1}, b"\x03"), timeout=5)
        assert reply == ({"a": 1}, b"\x03")
        if transports is None:
            for _ in range(50):
                if client.transport() == "websocket":
                    break
                await asyncio.sleep(0.05)
            assert client.transport() == "websocket"
        # Heartbeats keep the session up across several ping intervals (300 ms).
        await asyncio.sleep(1.0)
        assert client.connected
    finally:
        await client.disconnect()


async def test_custom_namespace_and_unknown_namespace(conformance: RunningServer) -> None:
    client = socketio.AsyncClient(reconnection=False)
    got: asyncio.Queue[Any] = asyncio.Queue()

    @client.on("auth", namespace="/custom")
    async def auth(data: Any) -> None:
        await got.put(data)

    await client.connect(conformance.url, namespaces=["/custom"], auth={"k": 1}, wait_timeout=5)
    try:
        assert await asyncio.wait_for(got.get(), 5) == {"k": 1}
        assert client.get_sid("/custom") is not None
    finally:
        await client.disconnect()

    bad = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []

    @bad.on("connect_error", namespace="/random")
    def refused(data: Any) -> None:
        refusals.append(data)

    with pytest.raises(socketio.exceptions.ConnectionError):
        await bad.connect(conformance.url, namespaces=["/random"], wait_timeout=5)
    assert refusals == [{"message": "Invalid namespace"}]
    await bad.disconnect()


async def test_server_emit_with_ack_and_rooms(start_server: StartServer) -> None:
    answers: asyncio.Queue[Any] = asyncio.Queue()

    def setup(io: Any) -> None:
        @io.on("join")
        async def join(socket: Any, room: str) -> str:
            socket.join(room)
            return "joined"

        @io.on("ask")
        async def ask(socket: Any) -> None:
            await answers.put(await socket.call("question", 41, timeout=5))

        @io.on("shout")
        def shout(socket: Any, room: str, text: str) -> None:
            socket.to(room).emit("heard", text)

    server = await start_server(setup=setup)
    a = socketio.AsyncClient(reconnection=False)
    b = socketio.AsyncClient(reconnection=False)
    heard: asyncio.Queue[Any] = asyncio.Queue()

    @a.on("question")
    def question(n: int) -> int:
        return n + 1

    @b.on("heard")
    async def on_heard(text: str) -> None:
        await heard.put(text)

    await a.connect(server.url, transports=["websocket"], wait_timeout=5)
    await b.connect(server.url, transports=["polling"], wait_timeout=5)
    try:
        assert await a.call("join", "r1", timeout=5) == "joined"
        assert await b.call("join", "r1", timeout=5) == "joined"
        await a.emit("ask")
        assert await asyncio.wait_for(answers.get(), 5) == [42]
        await a.emit("shout", ("r1", "hi"))
        assert await asyncio.wait_for(heard.get(), 5) == "hi"
    finally:
        await a.disconnect()
        await b.disconnect()


async def test_connection_middleware_refuses_and_runs_after_disconnect(
    start_server: StartServer,
) -> None:
    events: list[str] = []
    left = asyncio.Event()

    def setup(io: Any) -> None:
        async def auth(ctx: Any, next: Any) -> None:
            from wxio.adapter.sio import ConnectionRefused

            if ctx.auth.get("token") != "good":
                raise ConnectionRefused("Not authorized", {"code": 401})
            events.append("before")
            await next()
            events.append("after")
            left.set()

        io.use(auth)

    server = await start_server(setup=setup)
    bad = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    bad.on("connect_error", refusals.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await bad.connect(server.url, auth={"token": "bad"}, wait_timeout=5)
    assert refusals == [{"message": "Not authorized", "data": {"code": 401}}]
    await bad.disconnect()

    good = socketio.AsyncClient(reconnection=False)
    await good.connect(server.url, auth={"token": "good"}, wait_timeout=5)
    assert events == ["before"]
    await good.disconnect()
    await asyncio.wait_for(left.wait(), 5)
    assert events == ["before", "after"]
