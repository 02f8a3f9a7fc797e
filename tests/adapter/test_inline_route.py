"""The routing core's socket.io route runs in the WebSocket connection's delivery task
(``Namespace.inline``, ``WebSocketConnection.adopt``): no task per event on WebSocket, the
socket's worker task on polling; answers in order either way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import socketio

from .conftest import RunningServer, StartServer
from .core_clients import Signer, SioClient

SHOP = Signer("shop", "shop-key")
N = 20


@contextmanager
def tasks_started() -> Iterator[list[str]]:
    """The qualified names of the coroutines of every task started on this loop meanwhile."""
    loop = asyncio.get_running_loop()
    names: list[str] = []
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        names.append(getattr(coro, "__qualname__", type(coro).__name__))
        if previous is not None:
            return previous(loop, coro, **kwargs)  # type: ignore[no-any-return]
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)  # type: ignore[arg-type]
    try:
        yield names
    finally:
        loop.set_task_factory(previous)


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps={"shop": {"key": "shop-key", "rate": 1000, "burst": 1000}})


@pytest.mark.parametrize(
    ("transports", "worker_tasks"),
    [(["websocket"], False), (["polling"], True)],
    ids=["websocket", "polling"],
)
async def test_core_requests_start_no_task_per_event_on_websocket(
    core: RunningServer, transports: list[str], worker_tasks: bool
) -> None:
    client = await SioClient.connect(core.url, SHOP, transports=transports)
    try:
        with tasks_started() as names:
            sends = [
                client.sio.call("requestMessage", SHOP.envelope("requestId"), timeout=5)
                for _ in range(N)
            ]
            replies = await asyncio.gather(*sends)
        assert [r["data"]["action"] for r in replies] == ["saveId"] * N
        workers = [n for n in names if n.endswith("Socket._work")]
        # On polling the route runs in the socket's worker (the control: the count works).
        assert bool(workers) is worker_tasks, names
    finally:
        await client.close()


@pytest.mark.parametrize("middleware", [False, True], ids=["plain", "packet-middleware"])
async def test_a_direct_route_serves_events_that_ask_for_no_ack(
    start_server: StartServer, middleware: bool
) -> None:
    """``Namespace.direct``: an event the client emits without an ack goes to the direct
    handler (no context); one that asks for an ack, or any event once the namespace has packet
    middleware, goes to the route, which answers the ack."""
    calls: list[tuple[str, Any]] = []

    def setup(io: Any) -> None:
        nsp = io.of("/d")

        async def route(ctx: Any) -> Any:
            calls.append(("route", ctx.args[0]))
            ctx.socket.emit("done", ctx.args[0])
            return "routed"

        async def direct_work(socket: Any, value: Any) -> None:
            calls.append(("direct", value))
            socket.emit("done", value)

        nsp.route("ev", route)
        nsp.direct("ev", lambda socket, args: direct_work(socket, args[0]))
        nsp.inline("ev")
        if middleware:

            async def passing(ctx: Any, next: Any) -> None:
                await next()

            nsp.use_packet(passing)

    server = await start_server(setup=setup)
    client = socketio.AsyncClient(reconnection=False)
    done: asyncio.Queue[Any] = asyncio.Queue()
    client.on("done", done.put_nowait, namespace="/d")
    await client.connect(server.url, namespaces=["/d"], transports=["websocket"])
    try:
        await client.emit("ev", 1, namespace="/d")
        assert await asyncio.wait_for(done.get(), 5) == 1
        assert await client.call("ev", 2, namespace="/d", timeout=5) == "routed"
        assert await asyncio.wait_for(done.get(), 5) == 2
        first = "route" if middleware else "direct"
        assert calls == [(first, 1), ("route", 2)]
    finally:
        await client.disconnect()
