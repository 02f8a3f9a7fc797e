"""Cluster behaviour: msgpack room emits across nodes, the frozen node asked once
per send, reConnectAndUpdates delivering the inbox once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.adapter.sio import Socket, SocketIOServer

from tests.adapter.conftest import StartServer

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

APPS = {"c": {"key": "c-key", "rate": 1000, "burst": 1000}}


def room_setup(io: SocketIOServer) -> None:
    nsp = io.of("/room")

    @nsp.on("join")
    def join(socket: Socket, room: str) -> None:
        socket.join(room)

    @nsp.on("shout")
    def shout(socket: Socket, room: str, data: Any) -> None:
        socket.to(room).emit("heard", data, b"\x00\xff")


async def test_msgpack_room_emit_across_nodes(start_server: StartServer, redis_prefix: str) -> None:
    nodes = [
        await start_server(
            apps=APPS,
            socketio={"parser": "msgpack"},
            setup=room_setup,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"m{i}"),
        )
        for i in range(2)
    ]
    clients = []
    heard: asyncio.Queue[Any] = asyncio.Queue()
    for node in nodes:
        client = socketio.AsyncClient(reconnection=False, serializer="msgpack")
        client.on("heard", lambda *args: heard.put_nowait(list(args)), namespace="/room")
        await client.connect(node.url, namespaces=["/room"], wait_timeout=5)
        clients.append(client)
    try:
        await clients[1].call("join", "r", namespace="/room", timeout=5)
        await clients[0].emit("shout", ("r", {"n": 1}), namespace="/room")
        assert await asyncio.wait_for(heard.get(), 5) == [{"n": 1}, b"\x00\xff"]
    finally:
        for client in clients:
            await client.disconnect()


async def test_frozen_node_is_asked_once_per_send(
    start_server: StartServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose sockets are open but that answers nothing (SIGSTOP): a send to its client
    waits one NODE_TIMEOUT, not one per question (the target, then each other client of its
    user on that node)."""
    from wxio.adapter.core import router as hub_module

    from tests.adapter.core_clients import RawClient, Signer

    monkeypatch.setattr(hub_module, "NODE_TIMEOUT", 0.6)
    signer = Signer("c", "c-key")
    a, b = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"f{i}", node_ttl=30),
        )
        for i in range(2)
    ]
    sender = await RawClient.connect(a.ws_url, signer, user="s")
    target = await RawClient.connect(b.ws_url, signer, user="t")
    tablet = await RawClient.connect(b.ws_url, signer, user="t")  # the same user, same node
    frozen = asyncio.Event()
    assert b.hub is not None
    backplane = b.hub.backplane
    handler = backplane.bus.handler
    questions: list[dict[str, Any]] = []

    async def frozen_handler(message: dict[str, Any]) -> Any:
        questions.append(message)
        await frozen.wait()  # never set: the node reads its messages and answers none
        return await handler(message)

    backplane.bus.handler = frozen_handler
    try:
        for n in range(2):
            result = await sender.request(
                signer.envelope("sendToOthers", {"n": n}, target=target.client_id)
            )
            assert result["data"]["payload"]["status"] == "queued", result
            # At most one question per send (before the fix: one for the target, then one for
            # its user's other client on that node, each waiting out the timeout; the second
            # send may not ask at all, the node being known to be silent).
            assert 1 <= len(questions) <= n + 1, questions
    finally:
        backplane.bus.handler = handler
        frozen.set()
        await sender.close()
        await target.close()
        await tablet.close()


@pytest.mark.slow
async def test_sigstopped_node_costs_a_send_one_timeout(procs: Any, redis_prefix: str) -> None:
    """The same with real processes: the target's node is SIGSTOPped (its sockets stay open),
    a send to its client is ``queued`` after one NODE_TIMEOUT (2 s), not one per client of the
    user on that node."""
    import signal

    from tests.adapter.core_clients import RawClient, Signer

    from .procs import wait_registered

    signer = Signer("c", "c-key")
    n0, n1 = await asyncio.gather(
        *(
            procs.start_node(
                f"s{i}", redis_url=REDIS_URL, prefix=redis_prefix, apps=APPS, node_ttl=15
            )
            for i in range(2)
        )
    )
    sender = await RawClient.connect(n0.ws_url, signer, user="s")
    target = await RawClient.connect(n1.ws_url, signer, user="t")
    tablet = await RawClient.connect(n1.ws_url, signer, user="t")  # the same user, same node
    await wait_registered(
        REDIS_URL, redis_prefix, "c", {target.client_id: "s1", tablet.client_id: "s1"}
    )
    n1.popen.send_signal(signal.SIGSTOP)
    try:
        # Answered (queued), not left hanging; the number of questions per send (one, whatever
        # the user's clients on that node) is counted in the in-process test above.
        result = await asyncio.wait_for(
            sender.request(signer.envelope("sendToOthers", {"n": 1}, target=target.client_id)),
            10,
        )
        assert result["data"]["payload"]["status"] == "queued", result
    finally:
        n1.popen.send_signal(signal.SIGCONT)
        await sender.close()
        for client in (target, tablet):
            try:
                await asyncio.wait_for(client.close(), 3)
            except Exception:
                pass
