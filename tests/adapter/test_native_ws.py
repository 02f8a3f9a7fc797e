"""WebSocket connections served below aiohttp (adapter/transports/frontdoor.py, wsconn.py):
which requests take that way, what a connection holds while idle, the WebSocket rules it
enforces with real clients and hand-made frames, and the same endpoints through aiohttp."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import socketio
import websockets
from websockets.frames import Frame, Opcode
from wxio.adapter.config import ServerConfig
from wxio.adapter.transports import wsconn
from wxio.adapter.transports.frontdoor import (
    Acceptance,
    FrontDoor,
    HandshakeRequest,
    HeaderDeadline,
)
from wxio.adapter.transports.wsconn import WebSocketConnection

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer
from .wire import engine, until

APPS = {"shop": {"key": "shop-key", "api_client_key": True}}
SHOP = Signer("shop", "shop-key")


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS, core={"raw_heartbeat": 0.4})


def client_frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


class Tcp:
    """A hand-driven WebSocket client: exact bytes out, frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def upgrade(cls, server: RunningServer | int, target: str) -> Tcp:
        port = server if isinstance(server, int) else server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(reader, writer)

    async def frame(self, timeout: float = 5) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; (-1, b"") at EOF."""
        try:
            b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        except asyncio.IncompleteReadError:
            return -1, b""
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def until_close(self) -> int:
        """Frames until the close frame: its code."""
        while True:
            opcode, payload = await self.frame()
            if opcode in (-1, 8):
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


async def test_direct_upgrades_are_served_below_aiohttp(core: RunningServer) -> None:
    """A socket.io client on WebSocket from the start and a raw client: their sessions' and
    connections' transport is a WebSocketConnection (no aiohttp request behind it)."""
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        core.url, transports=["websocket"], socketio_path="socket.io", auth=SHOP.auth("s")
    )
    raw = await RawClient.connect(core.ws_url, SHOP, user="u")
    try:
        sessions = engine(core, "/socket.io/").sessions.values()
        assert [type(s.ws) for s in sessions] == [WebSocketConnection]
        assert core.hub is not None
        (conn,) = [c for c in core.hub.connections.values() if c.kind == "raw"]
        assert isinstance(conn.ws, WebSocketConnection)  # type: ignore[attr-defined]
    finally:
        await sio.disconnect()
        await raw.close()


async def test_polling_upgrade_on_a_new_connection_is_served_below_aiohttp(
    core: RunningServer,
) -> None:
    """socket.io's default: polling, then a WebSocket with the sid (on a connection of its own
    in browsers): the probe and the upgraded session are served below aiohttp."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{core.url}/socket.io/?EIO=4&transport=polling") as response,
    ):
        body = await response.text()
    sid = json.loads(body[1:])["sid"]
    tcp = await Tcp.upgrade(core, f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
    tcp.send(client_frame(Opcode.TEXT, b"2probe"))
    assert await tcp.frame() == (1, b"3probe")
    tcp.send(client_frame(Opcode.TEXT, b"5"))
    sock = engine(core, "/socket.io/").sessions[sid]
    await until(lambda: sock.transport == "websocket", what="upgraded")
    assert isinstance(sock.ws, WebSocketConnection)
    # The session's own pings now come over this connection; answered, it stays open.
    tcp.send(client_frame(Opcode.TEXT, b"3"))
    assert not sock.closed
    tcp.send(client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
    assert await tcp.until_close() == 1000
    await until(lambda: sock.closed, what="session closed with its transport")
    tcp.close()


async def test_a_bad_probe_leaves_the_session_on_polling(core: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{core.url}/socket.io/?EIO=4&transport=polling") as response:
            sid = json.loads((await response.text())[1:])["sid"]
        tcp = await Tcp.upgrade(core, f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
        tcp.send(client_frame(Opcode.TEXT, b"4not a probe"))
        assert await tcp.until_close() == 1000
        tcp.close()
        sock = engine(core, "/socket.io/").sessions[sid]
        assert sock.transport == "polling" and not sock.closed
        # The session still serves polling: a Socket.IO CONNECT posted (without credentials) is
        # answered on the next GET, which would otherwise wait out the ping interval.
        url = f"{core.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data="40") as response:
            assert response.status == 200
        async with http.get(url) as response:
            assert response.status == 200
            assert (await response.text()).startswith('44{"message":"malformed"')


async def test_an_upgrade_on_a_kept_alive_connection_is_the_same_websocket(
    core: RunningServer,
) -> None:
    """aiohttp reads the head of a second request on a connection; the WebSocket it asks
    for is still a WebSocketConnection (raw endpoint and Engine.IO alike)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{core.url}/healthz") as response:
            assert response.status == 200
        query = urlencode(SHOP.auth("kept"))
        async with http.ws_connect(f"{core.url}/ws?{query}") as ws:
            hello = json.loads((await ws.receive(timeout=5)).data)
            assert hello["data"]["action"] == "connect"
            assert core.hub is not None
            (conn,) = [c for c in core.hub.connections.values() if c.kind == "raw"]
            assert isinstance(conn.ws, WebSocketConnection)  # type: ignore[attr-defined]
            await ws.send_str(json.dumps(SHOP.envelope("requestId")))
            reply = json.loads((await ws.receive(timeout=5)).data)
            assert reply["data"]["action"] == "saveId"
        async with http.get(f"{core.url}/healthz") as response:
            assert response.status == 200
        url = f"{core.url}/socket.io/?EIO=4&transport=websocket"
        async with http.ws_connect(url) as ws:
            opened = await ws.receive(timeout=5)
            assert opened.data.startswith("0{")
            sid = json.loads(opened.data[1:])["sid"]
            sock = engine(core, "/socket.io/").sessions[sid]
            assert isinstance(sock.ws, WebSocketConnection)
            await ws.send_str("3")  # a pong: the session stays open
            await ws.close()
            assert ws.close_code == 1000
        await until(lambda: sock.closed, what="session closed with its transport")


async def test_apps_with_admission_and_id_hooks_get_the_same_websocket(
    start_server: StartServer,
) -> None:
    """``allow_request`` (async here) and ``generate_id`` are asked through aiohttp's request;
    the WebSocket is still a WebSocketConnection, and a refusal is answered before the 101."""
    seen: list[str] = []

    async def allow(request: Any) -> bool:
        await asyncio.sleep(0)
        return bool(request.query.get("key") == "ok")

    def generate_id(request: Any) -> str:
        sid = f"app-{len(seen)}"
        seen.append(sid)
        return sid

    def setup(io: Any) -> None:
        io.allow_request = allow
        io.generate_id = generate_id

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket&key=no")
        assert refused.value.status == 400
        url = f"{server.url}/socket.io/?EIO=4&transport=websocket&key=ok"
        async with http.ws_connect(url) as ws:
            opened = await ws.receive(timeout=5)
            assert json.loads(opened.data[1:])["sid"] == "app-0"
            sock = engine(server, "/socket.io/").sessions["app-0"]
            assert isinstance(sock.ws, WebSocketConnection)
            await ws.send_str("40")  # the Socket.IO CONNECT, answered over the same connection
            assert (await ws.receive(timeout=5)).data.startswith("40{")


def deliveries() -> int:
    """WebSocket delivery tasks running in this loop."""
    return sum(
        1
        for t in asyncio.all_tasks()
        if t.get_coro().__qualname__ == "WebSocketConnection._deliver"  # type: ignore[union-attr]
    )


async def test_an_eager_pipeline_starts_no_task(core: RunningServer) -> None:
    """On one node without hooks the core's pipeline needs no task to start: messages are
    handled in the connection's read callback, and no delivery task is started at all."""
    assert core.hub is not None and core.hub.eager
    clients = [await RawClient.connect(core.ws_url, SHOP, user=f"eager{i}") for i in range(5)]
    try:
        for c in clients:
            reply = await c.request(SHOP.envelope("requestId"))
            assert reply["data"]["action"] == "saveId"
        assert deliveries() == 0
    finally:
        for c in clients:
            await c.close()


async def test_an_idle_connection_holds_no_task(core: RunningServer) -> None:
    """Where the pipeline needs a task (a cluster, hooks), a connection's delivery task runs
    while messages flow and ends soon after: idle connections cost no coroutine."""
    assert core.hub is not None
    core.hub.eager = False  # as in a cluster (read by each raw connection as it opens)
    clients = [await RawClient.connect(core.ws_url, SHOP, user=f"idle{i}") for i in range(20)]
    try:
        for c in clients:
            await c.send(SHOP.envelope("requestId"))
            await c.recv()
        assert deliveries() > 0  # (the last ones are still lingering)
        await until(lambda: deliveries() == 0, timeout=6, what="delivery tasks ended")
        # Still served after that: a new message starts a new delivery task.
        reply = await clients[0].request(SHOP.envelope("requestId"))
        assert reply["data"]["action"] == "saveId"
    finally:
        for c in clients:
            await c.close()


async def test_ping_answered_and_silent_client_dropped(core: RunningServer) -> None:
    """A client's ping gets a pong with its payload; the raw endpoint pings every
    ``raw_heartbeat`` seconds and drops a client that answers nothing."""
    tcp = await Tcp.upgrade(core, f"/ws?{urlencode(SHOP.auth('quiet'))}")
    opcode, hello = await tcp.frame()
    assert opcode == 1 and json.loads(hello)["data"]["action"] == "connect"
    tcp.send(client_frame(Opcode.PING, b"are you there"))
    frames = [await tcp.frame()]
    while frames[-1][0] == 9:  # the server's own heartbeat ping may come first
        frames.append(await tcp.frame())
    assert frames[-1] == (10, b"are you there")
    # Now silent: pinged, then the connection ends (no close frame: the peer is gone).
    seen = []
    while True:
        opcode, _ = await tcp.frame(timeout=5)
        seen.append(opcode)
        if opcode == -1:
            break
    assert 9 in seen
    tcp.close()


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (Frame(Opcode.TEXT, b"x").serialize(mask=False, extensions=[]), 1002),
        (client_frame(Opcode.TEXT, b"\xff"), 1007),
        (client_frame(Opcode.CONT, b"x"), 1002),
    ],
)
async def test_protocol_errors_close_with_their_code(
    core: RunningServer, wire: bytes, code: int
) -> None:
    tcp = await Tcp.upgrade(core, "/socket.io/?EIO=4&transport=websocket")
    opcode, open_packet = await tcp.frame()
    assert opcode == 1 and open_packet.startswith(b"0{")
    tcp.send(wire)
    assert await tcp.until_close() == code
    tcp.close()
    # The server goes on serving everyone else.
    other = await RawClient.connect(core.ws_url, SHOP, user="after")
    await other.close()


async def test_oversized_engine_message_is_1009_and_raw_frame_is_deny_then_4009(
    start_server: StartServer,
) -> None:
    server = await start_server(
        apps=APPS, engine={"max_payload": 100}, core={"max_frame_bytes": 300}
    )
    tcp = await Tcp.upgrade(server, "/socket.io/?EIO=4&transport=websocket")
    await tcp.frame()
    tcp.send(client_frame(Opcode.TEXT, b"4" + b"x" * 99))  # exactly max_payload: fine
    tcp.send(client_frame(Opcode.TEXT, b"4" + b"x" * 100))
    assert await tcp.until_close() == 1009
    tcp.close()
    raw = await RawClient.connect(server.ws_url, SHOP, user="big")
    await raw.send("x" * 301)
    deny = await raw.recv()
    assert deny["data"]["payload"]["reason"] == "too_large"
    with pytest.raises(websockets.ConnectionClosed) as info:
        await raw.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 4009


async def test_frames_split_anywhere_and_pipelined_with_the_handshake(
    core: RunningServer,
) -> None:
    """Bytes that arrive with the upgrade request, and frames cut at every byte, are read in
    order: a raw client's requests are answered in the order sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", core.port)
    key = base64.b64encode(os.urandom(16)).decode()
    envelopes = [SHOP.envelope("requestId") for _ in range(3)]
    for i, e in enumerate(envelopes):
        e["meta"]["n"] = i  # echoed nowhere; the replies come in order anyway
    wire = b"".join(client_frame(Opcode.TEXT, json.dumps(e).encode()) for e in envelopes)
    request = (
        f"GET /ws?{urlencode(SHOP.auth('pipelined'))} HTTP/1.1\r\nHost: x\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    writer.write(request + wire[:7])
    for i in range(7, len(wire)):
        writer.write(wire[i : i + 1])
        await writer.drain()
    tcp = Tcp(reader, writer)
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    actions = []
    for _ in range(4):
        opcode, payload = await tcp.frame()
        actions.append(json.loads(payload)["data"]["action"])
    assert actions == ["connect", "saveId", "saveId", "saveId"]
    tcp.send(client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
    assert await tcp.until_close() == 1000
    tcp.close()


async def test_the_same_websockets_when_aiohttp_reads_every_head(
    start_server: StartServer,
) -> None:
    """``native_websocket = false``: no front door, aiohttp reads every request head, and the
    WebSockets it upgrades are the same connections (one WebSocket stack)."""
    server = await start_server(apps=APPS, config=ServerConfig(native_websocket=False))
    assert server.runner.router is None
    raw = await RawClient.connect(server.ws_url, SHOP, user="a")
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        server.url, transports=["websocket"], socketio_path="socket.io", auth=SHOP.auth("s")
    )
    try:
        assert server.hub is not None
        conns: list[Any] = [c for c in server.hub.connections.values() if c.kind == "raw"]
        sessions = list(engine(server, "/socket.io/").sessions.values())
        assert [type(c.ws) for c in conns] == [WebSocketConnection]
        assert [type(s.ws) for s in sessions] == [WebSocketConnection]
        reply = await raw.request(SHOP.envelope("requestId"))
        assert reply["data"]["action"] == "saveId"
    finally:
        await sio.disconnect()
        await raw.close()


async def test_shutdown_closes_native_connections_with_1001(start_server: StartServer) -> None:
    server = await start_server(apps=APPS)
    raw = await RawClient.connect(server.ws_url, SHOP, user="leaving")
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        server.url, transports=["websocket"], socketio_path="socket.io", auth=SHOP.auth("s2")
    )
    gone = asyncio.Event()
    sio.on("disconnect", lambda *args: gone.set())
    await server.runner.stop()
    with pytest.raises(websockets.ConnectionClosed) as info:
        await raw.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    await asyncio.wait_for(gone.wait(), 5)  # the socket.io client was told too (a close packet)


async def test_asyncio_timeout_in_a_handler_cancels_the_handler_only(
    start_server: StartServer,
) -> None:
    """A coroutine handler runs in its socket's own task from its first step: when its
    ``asyncio.timeout`` expires, the handler gets TimeoutError, and the connection goes on
    delivering (a handler started in one task and carried on in another would have the
    timeout cancel the connection's delivery instead)."""

    def setup(io: Any) -> None:
        async def slow(socket: Any, data: Any) -> str:
            try:
                async with asyncio.timeout(0.2):
                    await asyncio.sleep(10)
            except TimeoutError:
                return "timed out"
            return "slept"

        def quick(socket: Any, data: Any) -> str:
            return f"quick {data}"

        io.on("slow", namespace="/t")(slow)
        io.on("quick", namespace="/t")(quick)

    server = await start_server(setup=setup)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(server.url, namespaces=["/t"], transports=["websocket"])
    try:
        assert isinstance(
            next(iter(engine(server, "/socket.io/").sessions.values())).ws, WebSocketConnection
        )
        slow, quick = await asyncio.gather(
            client.call("slow", 1, namespace="/t", timeout=5),
            client.call("quick", 2, namespace="/t", timeout=5),
        )
        assert (slow, quick) == ("timed out", "quick 2")
        assert await client.call("quick", 3, namespace="/t", timeout=5) == "quick 3"
    finally:
        await client.disconnect()


# -- the closing handshake while the server is busy ------------------------------------------
# A front door of its own, with an application written here: its handlers wait until the test
# lets them go (a slow application), or write a burst the client does not read yet.


class Held:
    """A listener whose text handlers wait for ``release``; ``log`` is what it was told."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.closed = asyncio.Event()
        self.log: list[str] = []

    def on_text(self, text: str) -> Coroutine[Any, Any, None]:
        async def handle() -> None:
            self.log.append(text)
            await self.release.wait()
            self.log.append(f"handled {text}")

        return handle()

    def on_binary(self, data: bytes) -> None:
        self.log.append("binary")

    def on_closed(self) -> None:
        self.log.append("closed")
        self.closed.set()


@pytest.fixture
async def native() -> AsyncIterator[Callable[..., Coroutine[Any, Any, tuple[int, list[Any]]]]]:
    """``await native(start, max_buffered=...)``: a front door that accepts every upgrade and
    runs ``start(conn)``; its port and the connections it accepted."""
    servers: list[asyncio.Server] = []

    async def serve(
        start: Callable[[WebSocketConnection], None], max_buffered: int = 1 << 20
    ) -> tuple[int, list[WebSocketConnection]]:
        conns: list[WebSocketConnection] = []

        def begin(conn: WebSocketConnection) -> None:
            conns.append(conn)
            start(conn)

        def router(request: HandshakeRequest) -> Acceptance:
            return Acceptance(
                start=begin, max_message=1 << 20, max_buffered=max_buffered, slow_grace=60
            )

        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: FrontDoor(router, lambda: HeaderDeadline(5), 5), "127.0.0.1", 0
        )
        servers.append(server)
        return int(server.sockets[0].getsockname()[1]), conns

    yield serve
    for server in servers:
        server.close()


CLOSE_1000 = client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big"))


async def test_a_close_is_answered_while_earlier_messages_are_handled(native: Any) -> None:
    """The client's close frame is answered when it is read, not after the handlers of the
    messages before it (which may wait on anything); they still run, in order, and the
    listener hears of the close after them."""
    app = Held()
    port, _ = await native(lambda conn: conn.attach(app))
    tcp = await Tcp.upgrade(port, "/held")
    tcp.send(
        client_frame(Opcode.TEXT, b"first") + client_frame(Opcode.TEXT, b"second") + CLOSE_1000
    )
    assert await tcp.until_close() == 1000
    assert await tcp.frame() == (-1, b"")  # and the server ended the TCP connection
    assert app.log == ["first"]  # its handler still waits
    app.release.set()
    await asyncio.wait_for(app.closed.wait(), 5)
    assert app.log == ["first", "handled first", "second", "handled second", "closed"]
    tcp.close()


class EagerHeld(Held):
    """:class:`Held`, eager: messages are handled in the read callback until one waits."""

    eager = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[Any] | None] = []

    def on_text(self, text: str) -> Coroutine[Any, Any, None]:
        async def handle() -> None:
            self.log.append(text)
            self.tasks.append(asyncio.current_task())
            if text.startswith("wait"):
                await self.release.wait()
                self.log.append(f"handled {text}")

        return handle()


async def test_an_eager_listener_is_handled_without_a_task_until_it_waits(native: Any) -> None:
    """An eager listener's messages are handled in the read callback (no task); the first
    that waits goes on in the delivery task, and every message read after it waits its turn,
    in order, even when the connection had nothing in hand when it was read."""
    app = EagerHeld()
    port, _ = await native(lambda conn: conn.attach(app))
    tcp = await Tcp.upgrade(port, "/eager")
    tcp.send(client_frame(Opcode.TEXT, b"a") + client_frame(Opcode.TEXT, b"b"))
    await until(lambda: app.log == ["a", "b"], what="handled in the read callback")
    assert app.tasks == [None, None]  # no task: the read callback ran them
    tcp.send(client_frame(Opcode.TEXT, b"wait1") + client_frame(Opcode.TEXT, b"c"))
    await until(lambda: "wait1" in app.log, what="the waiting message started")
    tcp.send(client_frame(Opcode.TEXT, b"d"))  # read while wait1 still waits
    tcp.send(client_frame(Opcode.PING, b"p"))
    assert await tcp.frame() == (10, b"p")  # (read and answered: d was read by now)
    assert app.log == ["a", "b", "wait1"]  # c and d wait behind wait1
    app.release.set()
    await until(lambda: app.log[-1:] == ["d"], what="the rest, in order")
    assert app.log == ["a", "b", "wait1", "handled wait1", "c", "d"]
    assert app.tasks[2] is None  # wait1 started in the read callback...
    assert app.tasks[3] is not None  # ...and what came behind it ran in the delivery task
    tcp.send(client_frame(Opcode.TEXT, b"e"))  # nothing in hand again: the read callback
    await until(lambda: app.log[-1:] == ["e"], what="e handled")
    assert app.tasks[-1] is None
    tcp.close()


async def test_a_close_is_answered_while_reading_is_paused_for_a_slow_reader(
    native: Any,
) -> None:
    """The server holds back reading from a client that does not read its output; a close the
    client sent meanwhile is answered once the client reads again, after everything queued
    before it (frames are never reordered)."""
    burst = 4000
    chunk = "x" * 2000

    class Burst:
        def __init__(self, conn: WebSocketConnection) -> None:
            self.conn = conn

        def on_text(self, text: str) -> None:
            if text == "burst":
                for _ in range(burst):
                    self.conn.writer.write_text(chunk)

        def on_binary(self, data: bytes) -> None:
            pass

        def on_closed(self) -> None:
            pass

    port, conns = await native(lambda conn: conn.attach(Burst(conn)), max_buffered=16 * 1024)
    tcp = await Tcp.upgrade(port, "/burst")
    tcp.send(client_frame(Opcode.TEXT, b"burst"))
    await until(lambda: bool(conns) and conns[0].writer.behind, what="the client behind")
    tcp.send(client_frame(Opcode.TEXT, b"more"))
    await until(lambda: not conns[0].transport.is_reading(), what="reading paused")
    tcp.send(CLOSE_1000)
    frames = 0
    while True:
        opcode, payload = await tcp.frame()
        if opcode != 1:
            break
        frames += 1
    assert (opcode, payload) == (8, (1000).to_bytes(2, "big"))
    assert frames == burst
    tcp.close()


async def test_a_close_from_the_client_before_the_listener_is_ready(native: Any) -> None:
    """Bytes that come before the layer above attaches wait in the kernel; a close among them
    is answered once it attaches (and the listener is told at once)."""
    app = Held()
    ready = asyncio.Event()
    port, conns = await native(lambda conn: ready.set())
    tcp = await Tcp.upgrade(port, "/late")
    tcp.send(CLOSE_1000)
    await asyncio.wait_for(ready.wait(), 5)
    conns[0].attach(app)
    assert await tcp.until_close() == 1000
    await asyncio.wait_for(app.closed.wait(), 5)
    assert app.log == ["closed"]
    tcp.close()


async def test_a_client_that_closes_and_stops_reading_is_not_kept(
    native: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply to a client's close goes after everything queued; a client that never reads
    it would keep the TCP connection (and its buffer) forever: it is dropped after the close
    timeout."""
    monkeypatch.setattr(wsconn, "CLOSE_TIMEOUT", 0.2)

    class Burst:
        def __init__(self, conn: WebSocketConnection) -> None:
            self.conn = conn

        def on_text(self, text: str) -> None:
            for _ in range(4000):
                self.conn.writer.write_text("x" * 2000)

        def on_binary(self, data: bytes) -> None:
            pass

        def on_closed(self) -> None:
            pass

    port, conns = await native(lambda conn: conn.attach(Burst(conn)), max_buffered=1 << 30)
    tcp = await Tcp.upgrade(port, "/burst")
    tcp.send(client_frame(Opcode.TEXT, b"burst"))
    await until(
        lambda: bool(conns) and conns[0].transport.get_write_buffer_size() > 0,
        what="output the client does not read",
    )
    tcp.send(CLOSE_1000)
    await asyncio.wait_for(conns[0].wait_closed(), 5)
    tcp.close()


async def test_a_failing_handler_closes_with_1011(native: Any) -> None:
    class Failing:
        def __init__(self) -> None:
            self.closed = asyncio.Event()

        def on_text(self, text: str) -> None:
            raise RuntimeError("bug")

        def on_binary(self, data: bytes) -> None:
            pass

        def on_closed(self) -> None:
            self.closed.set()

    app = Failing()
    port, _ = await native(lambda conn: conn.attach(app))
    tcp = await Tcp.upgrade(port, "/failing")
    tcp.send(client_frame(Opcode.TEXT, b"boom") + client_frame(Opcode.TEXT, b"never handled"))
    assert await tcp.until_close() == 1011
    assert await tcp.frame() == (-1, b"")
    await asyncio.wait_for(app.closed.wait(), 5)
    tcp.close()
