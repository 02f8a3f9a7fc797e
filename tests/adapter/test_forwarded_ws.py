"""An upgrade for another node's session, forwarded without sticky sessions
(adapter/cluster/forward.py): the client's side is the same WebSocket connection as any other
(its close handshake answered at once), frames are relayed both ways in order, and the owner's
close reaches the client. Two nodes in this process on a real Redis."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from websockets.frames import Opcode
from wxio.adapter.cluster.redis import RedisBackplane

from .conftest import RunningServer, StartServer
from .test_native_ws import Tcp, client_frame
from .wire import engine, until

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("WXIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=[False, True], ids=["plain", "deflate"])
async def nodes(
    start_server: StartServer, request: pytest.FixtureRequest
) -> AsyncIterator[list[RunningServer]]:
    """Two nodes; with ``[engine] ws_compression`` on in the "deflate" run."""
    prefix = f"wxiotest-{secrets.token_hex(4)}"
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - CI starts Redis; say so plainly if it is gone
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}")
    yield [
        await start_server(
            apps={"c": {"key": "c-key"}},
            backplane=RedisBackplane(REDIS_URL, prefix=prefix, node_id=f"n{i}", node_ttl=3.0),
            engine={"ws_compression": request.param},
        )
        for i in range(2)
    ]
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def polling_session(node: RunningServer) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{node.url}/socket.io/?EIO=4&transport=polling") as response,
    ):
        body = await response.text()
    sid: str = json.loads(body[1:])["sid"]
    return sid


async def upgraded_through(node: RunningServer, sid: str) -> Tcp:
    tcp = await Tcp.upgrade(node, f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
    tcp.send(client_frame(Opcode.TEXT, b"2probe"))
    assert await tcp.frame() == (1, b"3probe")
    tcp.send(client_frame(Opcode.TEXT, b"5"))
    return tcp


async def test_a_forwarded_upgrade_relays_both_ways_and_the_owners_close(
    nodes: list[RunningServer],
) -> None:
    owner, other = nodes
    sid = await polling_session(owner)
    assert sid.startswith("n0.")
    tcp = await upgraded_through(other, sid)
    sock = engine(owner, "/socket.io/").sessions[sid]
    await until(lambda: sock.transport == "websocket", what="upgraded on the owner")
    assert engine(other, "/socket.io/").sessions == {}
    # The owner's messages reach the client through the other node, in order.
    for n in range(3):
        sock.send(f"m{n}")
    assert [await tcp.frame() for _ in range(3)] == [(1, b"4m0"), (1, b"4m1"), (1, b"4m2")]
    # The owner closes the session: its close packet, then a close frame from the other node.
    sock.close()
    assert await tcp.frame() == (1, b"1")
    assert await tcp.until_close() == 1000
    tcp.close()


async def test_a_forwarded_client_close_is_answered_at_once(nodes: list[RunningServer]) -> None:
    owner, other = nodes
    sid = await polling_session(owner)
    tcp = await upgraded_through(other, sid)
    sock = engine(owner, "/socket.io/").sessions[sid]
    await until(lambda: sock.transport == "websocket", what="upgraded on the owner")
    tcp.send(client_frame(Opcode.CLOSE, (1000).to_bytes(2, "big")))
    opcode, payload = await tcp.frame(timeout=2)
    assert (opcode, payload[:2]) == (8, (1000).to_bytes(2, "big"))
    assert await tcp.frame(timeout=2) == (-1, b"")  # then the server ends TCP
    await until(lambda: sock.closed, what="the owner's session closed with the pipe")
    tcp.close()


async def test_an_upgrade_for_a_node_that_is_gone_is_refused(nodes: list[RunningServer]) -> None:
    _, other = nodes
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{other.url}/socket.io/?EIO=4&transport=websocket&sid=n9.unknown",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        ) as response,
    ):
        assert response.status == 400
        body: Any = await response.text()
    assert body == "Session ID unknown"


async def test_a_forwarded_upgrade_agrees_on_compression_as_the_owner_would(
    nodes: list[RunningServer],
) -> None:
    """The client's side of a forwarded upgrade is served with the node's own
    ``ws_compression``: permessage-deflate agreed (or not) and messages intact both ways."""
    owner, other = nodes
    compressing = engine(owner, "/socket.io/").options.ws_compression
    sid = await polling_session(owner)
    url = f"{other.url}/socket.io/?EIO=4&transport=websocket&sid={sid}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, compress=15) as ws:
        agreed = ws._response.headers.get("Sec-WebSocket-Extensions", "")  # noqa: SLF001
        assert ("permessage-deflate" in agreed) is compressing, agreed
        await ws.send_str("2probe")
        assert await ws.receive_str(timeout=5) == "3probe"
        await ws.send_str("5")
        sock = engine(owner, "/socket.io/").sessions[sid]
        await until(lambda: sock.transport == "websocket", what="upgraded on the owner")
        big = "x" * 4000  # over the compression threshold
        sock.send(big)
        assert await ws.receive_str(timeout=5) == "4" + big
        # And the client's (compressed) frames reach the owner: a Socket.IO CONNECT without
        # credentials is answered by the core's refusal.
        await ws.send_str("40" + json.dumps({"pad": big}))
        assert (await ws.receive_str(timeout=5)).startswith('44{"message":')
