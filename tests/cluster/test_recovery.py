"""Connection state recovery across a cluster: sessions and the packet log in Redis. A
socket.io-client 4 that loses its connection to one ``wxio serve`` node and comes back through
the load balancer on another node gets its id, rooms and data, and the room emits it missed,
from both nodes, in the log's order; once ``max_disconnection_duration`` has passed it starts
afresh."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import socketio

from tests.adapter.conftest import free_port
from tests.adapter.jspeer import JsPeer, requires_node

from .procs import Processes, redis_client

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.node, requires_node]

APPS = {"c": {"key": "c-key"}}
DURATION = 2.0


class Balancer:
    """A TCP proxy standing for a load balancer: each new connection goes to ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> Balancer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            t = asyncio.ensure_future(task)
            self.pipes.add(t)
            t.add_done_callback(self.pipes.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.pipes):
            task.cancel()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


async def talker(url: str) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, namespaces=["/chat"], transports=["websocket"], wait_timeout=5)
    return sio


async def test_recovers_on_another_node_then_expires(
    procs: Processes, redis_prefix: str, redis_url: str
) -> None:
    tables = {"socketio.connection_state_recovery": {"max_disconnection_duration": DURATION}}
    a, b = [
        await procs.start_node(
            node_id,
            redis_url=redis_url,
            prefix=redis_prefix,
            apps=APPS,
            app="tests.cluster.recovery_app:setup",
            extra_tables=tables,
        )
        for node_id in ("ra", "rb")
    ]
    redis = redis_client(redis_url)
    # (On a Redis Cluster recovery's keys share the hash tag {P:sio}: one slot.)
    sio = f"{{{redis_prefix}:sio}}" if "+cluster" in redis_url else f"{redis_prefix}:sio"
    stream = f"{sio}:log"
    balancer = await Balancer(a.port).start()
    peer = await JsPeer.start("sio4")
    on_a, on_b = await talker(a.url), await talker(b.url)

    async def say(client: socketio.AsyncClient, room: str, text: Any) -> None:
        """Emit from that client's node; return once the packet is in the log."""
        before = await redis.xlen(stream)
        await client.call("say", (room, text), namespace="/chat", timeout=5)
        await eventually(lambda: _longer(redis, stream, before), f"{text!r} logged")

    async def sessions() -> list[bytes]:
        return [k async for k in redis.scan_iter(match=f"{sio}:s:*")]

    async def whoami() -> dict[str, Any]:
        cid = await peer.emit("whoami", ack=True)
        return dict((await peer.expect("ack", id=cid))["args"][0])

    try:
        first = await peer.connect(
            f"http://127.0.0.1:{balancer.port}",
            nsp="/chat",
            transports=["websocket"],
            reconnection=False,
        )
        assert first["recovered"] is False
        me = await whoami()
        assert me["node"] == "ra" and "room1" in me["rooms"]
        await say(on_b, "room1", "m0")  # from the other node: gives the client an offset
        assert (await peer.expect("event", name="msg"))["args"][0] == "m0"

        await peer.command("dropTransport")
        await peer.expect("disconnect")
        await eventually(lambda: _nonempty(sessions()), "the session saved in Redis")
        balancer.target = b.port  # the load balancer now sends it to the other node
        await say(on_b, "room1", "m1")
        await say(on_a, "room1", "m2")
        await say(on_b, "other", "not for you")
        await say(on_a, "room1", "m3")
        await say(on_b, "room1", "m4")

        await peer.command("reconnect")
        again = await peer.expect("connect", timeout=10)
        assert again["sid"] == first["sid"] and again["recovered"] is True
        got = [await peer.expect("event", name="msg") for _ in range(4)]
        assert [e["args"][0] for e in got] == ["m1", "m2", "m3", "m4"]
        assert all(isinstance(e["args"][-1], str) for e in got)  # their offsets
        me = await whoami()
        assert me["node"] == "rb" and me["recovered"] is True and me["id"] == first["sid"]
        assert "room1" in me["rooms"] and me["data"] == {"first_node": "ra"}
        assert await sessions() == []  # taken: a second reconnection cannot reuse it
        await say(on_a, "room1", "live")  # its rooms are back, across nodes too
        assert (await peer.expect("event", name="msg"))["args"][0] == "live"

        # Gone longer than max_disconnection_duration: a new session.
        await peer.command("dropTransport")
        await peer.expect("disconnect")
        await eventually(lambda: _nonempty(sessions()), "the session saved again")
        await eventually(lambda: _empty(sessions()), "the session expired", timeout=DURATION + 5)
        await peer.command("reconnect")
        fresh = await peer.expect("connect", timeout=10)
        assert fresh["sid"] != first["sid"] and fresh["recovered"] is False
    finally:
        await peer.close()
        await on_a.disconnect()
        await on_b.disconnect()
        await balancer.close()
        await redis.aclose()


async def _longer(redis: Any, stream: str, before: int) -> bool:
    return int(await redis.xlen(stream)) > before


async def _nonempty(found: Awaitable[list[bytes]]) -> bool:
    return bool(await found)


async def _empty(found: Awaitable[list[bytes]]) -> bool:
    return not await found
