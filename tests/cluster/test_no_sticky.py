"""Polling without sticky sessions: a round-robin proxy sends each request to the next node; the
node that does not own the session forwards it to the one that does."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from wxio.adapter.cluster.forward import pipe_websockets
from wxio.adapter.cluster.redis import RedisBackplane

from tests.adapter.conftest import StartServer, free_port
from tests.adapter.core_clients import Signer, SioClient

from .procs import wait_subscribed

pytestmark = pytest.mark.redis

APPS = {"c": {"key": "c-key", "rate": 1000, "burst": 1000}}
C = Signer("c", "c-key")


class RoundRobin:
    """An HTTP and WebSocket reverse proxy that picks the next backend for every request."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = itertools.cycle(backends)
        self.hits: dict[str, int] = {b: 0 for b in backends}
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        backend = next(self.backends)
        self.hits[backend] += 1
        assert self.session is not None
        url = backend + request.path_qs
        if request.headers.get("Upgrade", "").lower() == "websocket":
            upstream = await self.session.ws_connect(url)
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await pipe_websockets(ws, upstream)
            return ws
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k in ("Content-Type",)}
        async with self.session.request(
            request.method, url, data=body or None, headers=headers
        ) as resp:
            return web.Response(
                status=resp.status,
                body=await resp.read(),
                headers={"Content-Type": resp.headers.get("Content-Type", "text/plain")},
            )


@pytest.fixture
async def cluster(start_server: StartServer, redis_prefix: str, redis_url: str) -> Any:
    nodes = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(redis_url, prefix=redis_prefix, node_id=f"n{i}", node_ttl=3.0),
        )
        for i in range(2)
    ]
    await wait_subscribed(redis_url, redis_prefix, ["n0", "n1"])
    proxy = RoundRobin([n.url for n in nodes])
    proxy.session = aiohttp.ClientSession()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", proxy, nodes
    await proxy.session.close()
    await runner.cleanup()


@pytest.mark.parametrize("transports", [["polling"], None], ids=["polling", "upgrade"])
async def test_socketio_through_round_robin(cluster: Any, transports: list[str] | None) -> None:
    url, proxy, nodes = cluster
    a = SioClient()
    await a.sio.connect(url, auth=C.auth("ua"), transports=transports, wait_timeout=5)
    b = SioClient()
    await b.sio.connect(url, auth=C.auth("ub"), transports=transports, wait_timeout=5)
    try:
        for n in range(6):  # enough requests to land on both nodes many times
            reply = await a.request(C.envelope("sendToOthers", {"n": n}, target=b.client_id))
            # the same node, or handed to the other one
            assert reply["data"]["payload"]["status"] in ("delivered", "forwarded")
            got = await b.recv()
            assert got["data"]["payload"] == {"n": n}
        # Both nodes served requests of sessions they did not own.
        least = 3 if transports == ["polling"] else 1
        assert all(hits >= least for hits in proxy.hits.values()), proxy.hits
        if transports is None:
            assert a.sio.transport() == "websocket"
    finally:
        await a.close()
        await b.close()


async def test_python_socketio_plain_events_polling_only(cluster: Any) -> None:
    url, proxy, nodes = cluster
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth=C.auth("u"), transports=["polling"], wait_timeout=5)
    try:
        # One session, and every round trip is a POST and a GET that the proxy sends to the next
        # node each time: the session works from both nodes, whichever owns it.
        for _ in range(4):
            reply = await client.call("requestMessage", C.envelope("requestId"), timeout=5)
            assert reply["data"]["action"] == "saveId"
        assert all(hits >= 4 for hits in proxy.hits.values()), proxy.hits
    finally:
        await client.disconnect()
