"""The cluster-wide Socket.IO server API across three nodes on the real Redis: fetch_sockets()
with RemoteSocket join/leave/emit/disconnect, sockets_join/leave, disconnect_sockets,
server_side_emit with and without acks. In one process, then as three real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import socketio
from wxio.adapter.cluster.redis import RedisBackplane

from tests.adapter.conftest import StartServer

from .cluster_api_app import setup
from .conftest import REDIS_URL
from .procs import Processes, wait_subscribed

pytestmark = pytest.mark.redis

APPS = {"c": {"key": "c-key"}}


class Client:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue()
        self.gone = asyncio.Event()
        for event in ("hello", "noted"):
            self.sio.on(event, self._catch(event), namespace="/api")
        self.sio.on("disconnect", lambda *a: self.gone.set(), namespace="/api")
        self.sio.on("q", self._answer, namespace="/api")

    async def _answer(self, arg: Any) -> str:
        if arg == "slow" and self.name == "carol":
            await asyncio.sleep(1.5)
        return f"{self.name}:{arg}"

    def _catch(self, event: str) -> Callable[..., None]:
        return lambda *args: self.events.put_nowait((event, list(args)))

    async def connect(self, url: str) -> Client:
        await self.sio.connect(url, namespaces=["/api"], auth={"name": self.name}, wait_timeout=5)
        return self

    async def call(self, event: str, *args: Any) -> Any:
        return await self.sio.call(event, args, namespace="/api", timeout=10)

    async def next_event(self, timeout: float = 5) -> tuple[str, list[Any]]:
        return await asyncio.wait_for(self.events.get(), timeout)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def names(client: Client, room: str | None = None) -> list[str]:
    return [s["name"] for s in await client.call("fetch", *([room] if room else []))]


async def exercise(urls: list[str], node_ids: list[str]) -> None:
    alice, bob, carol = [
        await Client(name).connect(url)
        for name, url in zip(("alice", "bob", "carol"), urls, strict=True)
    ]
    try:
        await alice.call("join", "r1")
        await bob.call("join", "r1")
        await carol.call("join", "r2")

        everyone = await alice.call("fetch")
        assert [s["name"] for s in everyone] == ["alice", "bob", "carol"]
        assert [s["node"] for s in everyone] == node_ids
        assert [s["remote"] for s in everyone] == [False, True, True]
        assert [s["auth"] for s in everyone] == [{"name": n} for n in ("alice", "bob", "carol")]
        by_name = {s["name"]: s for s in everyone}
        assert by_name["carol"]["rooms"] == sorted([by_name["carol"]["id"], "r2"])
        assert await names(alice, "r1") == ["alice", "bob"]
        assert await names(carol, "r2") == ["carol"]

        # RemoteSocket methods, from alice's node.
        assert await alice.call("remote", "carol", "emit", "hello", "from alice", [1, 2]) is True
        assert await carol.next_event() == ("hello", ["from alice", [1, 2]])
        await alice.call("remote", "carol", "join", "r1")
        await eventually(lambda: _is(names(bob, "r1"), ["alice", "bob", "carol"]), "carol joins r1")
        await alice.call("remote", "bob", "leave", "r1")
        await eventually(lambda: _is(names(bob, "r1"), ["alice", "carol"]), "bob leaves r1")

        # sockets_join / sockets_leave over a room spread over two nodes, asked from a third.
        assert await bob.call("sockets_join", "r1", "r3") == 0  # bob's node has none of r1
        await eventually(lambda: _is(names(bob, "r3"), ["alice", "carol"]), "r1 joins r3")
        await bob.call("sockets_leave", "r2", "r3")
        await eventually(lambda: _is(names(alice, "r3"), ["alice"]), "r2 leaves r3")

        # Server-side emits: every other node answers, this node does not hear itself.
        replies = await bob.call("sse", 5)
        assert replies == [{"node": n, "x": 5} for n in sorted(node_ids) if n != node_ids[1]]
        await bob.call("sse_nowait", "n")
        for client, node in ((alice, node_ids[0]), (carol, node_ids[2])):
            assert await client.next_event() == ("noted", [node, "n"])
        with pytest.raises(asyncio.TimeoutError):
            await bob.next_event(timeout=0.3)

        # Room emits with acks, collected from every node (Node's io.timeout().emitWithAck).
        assert await bob.call("broadcast_ack", "r1", "x", 3) == ["alice:x", "carol:x"]
        assert await bob.call("broadcast_ack", None, "y", 3) == ["alice:y", "bob:y", "carol:y"]
        late = await alice.call("broadcast_ack", None, "slow", 0.5)
        assert late == {"timeout": True, "responses": ["alice:slow", "bob:slow"]}
        await asyncio.sleep(1.2)  # carol's late ack finds nothing waiting for it
        assert await alice.call("remote_ack", "carol", "direct") == "carol:direct"

        # Disconnects: one remote socket, then a room across nodes.
        await alice.call("remote", "carol", "disconnect")
        await asyncio.wait_for(carol.gone.wait(), 5)
        await eventually(lambda: _is(names(bob), ["alice", "bob"]), "carol is gone")
        await bob.call("join", "r4")
        await alice.call("join", "r4")
        await carol.sio.disconnect()
        await carol.connect(urls[2])
        await carol.call("disconnect_room", "r4")
        await asyncio.wait_for(alice.gone.wait(), 5)
        await asyncio.wait_for(bob.gone.wait(), 5)
        assert await names(carol) == ["carol"]
    finally:
        for client in (alice, bob, carol):
            await client.sio.disconnect()


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_cluster_api_in_process(
    start_server: StartServer, redis_prefix: str, redis_url: str
) -> None:
    ids = ["a0", "a1", "a2"]
    nodes = [
        await start_server(
            apps=APPS,
            setup=setup,
            backplane=RedisBackplane(redis_url, prefix=redis_prefix, node_id=node_id),
        )
        for node_id in ids
    ]
    await wait_subscribed(redis_url, redis_prefix, ids)
    await exercise([n.url for n in nodes], ids)


async def test_cluster_api_single_node(start_server: StartServer) -> None:
    """No cluster: the same API on this node only."""
    server = await start_server(setup=setup)
    alice, bob = [await Client(n).connect(server.url) for n in ("alice", "bob")]
    try:
        await alice.call("join", "r")
        assert [s["remote"] for s in await alice.call("fetch")] == [False, False]
        assert await bob.call("sockets_join", "r", "r2") == 1
        assert await names(bob, "r2") == ["alice"]
        assert await bob.call("sse", 1) == []
        assert await bob.call("broadcast_ack", "r", "z", 2) == ["alice:z"]
        assert await bob.call("remote", "alice", "emit", "hello", 1) is True
        assert await alice.next_event() == ("hello", [1])
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()


@pytest.mark.slow
async def test_cluster_api_three_processes(procs: Processes, redis_prefix: str) -> None:
    ids = ["p0", "p1", "p2"]
    nodes = await asyncio.gather(
        *(
            procs.start_node(
                node_id,
                redis_url=REDIS_URL,
                prefix=redis_prefix,
                apps=APPS,
                app="tests.cluster.cluster_api_app:setup",
            )
            for node_id in ids
        )
    )
    await exercise([n.url for n in nodes], ids)


async def test_emit_with_ack_counts_a_silent_node(
    start_server: StartServer, redis_prefix: str
) -> None:
    """A node that does not answer (frozen) makes a room emit with acks time out, with the acks
    of the other nodes' clients, as Node does."""
    ids = ["q0", "q1"]
    nodes = [
        await start_server(
            apps=APPS,
            setup=setup,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=node_id),
        )
        for node_id in ids
    ]
    alice, bob = [
        await Client(name).connect(node.url)
        for name, node in zip(("alice", "bob"), nodes, strict=True)
    ]
    assert nodes[1].hub is not None
    backplane = nodes[1].hub.backplane
    handler = backplane.bus.handler
    release = asyncio.Event()

    async def frozen(message: dict[str, Any]) -> Any:
        await release.wait()
        return await handler(message)

    try:
        assert await alice.call("broadcast_ack", None, "a", 2) == ["alice:a", "bob:a"]
        backplane.bus.handler = frozen
        late = await alice.call("broadcast_ack", None, "b", 0.5)
        assert late == {"timeout": True, "responses": ["alice:b"]}
    finally:
        backplane.bus.handler = handler
        release.set()
        await alice.sio.disconnect()
        await bob.sio.disconnect()
