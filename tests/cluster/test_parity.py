"""Cluster behaviour: msgpack room emits across nodes, a frozen node sent one message per
send, reConnectAndUpdates delivering the inbox once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.adapter.sio import Socket, SocketIOServer

from tests.adapter.conftest import StartServer
from tests.adapter.wire import until

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


async def test_frozen_node_is_sent_one_message_per_send(
    start_server: StartServer, redis_prefix: str
) -> None:
    """A node whose sockets are open but that handles nothing (SIGSTOP): a send to its client is
    answered ``forwarded`` without waiting on that node (no answer travels back between nodes),
    kept in the user's inbox first (``until_acked``: the node may never deliver it); once the
    node handles its messages again, the target gets each once and its user's other client
    none."""
    from tests.adapter.core_clients import RawClient, Signer

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
    assert a.hub is not None and b.hub is not None
    # Both welcomed (their inbox read, which a loaded machine may finish late: the tablet would
    # then be handed what is kept below, as any client of the user connecting then would be).
    conns = b.hub.connections
    await until(
        lambda: all(conns[("c", c.client_id)].welcomed for c in (target, tablet)),
        what="target and tablet welcomed",
    )
    backplane = b.hub.backplane
    handler = backplane.bus.handler
    questions: list[dict[str, Any]] = []

    async def frozen_handler(message: dict[str, Any]) -> Any:
        questions.append(message)
        await frozen.wait()  # never set: the node reads its messages and handles none
        return await handler(message)

    backplane.bus.handler = frozen_handler
    try:
        ids = []
        for n in range(2):
            result = await sender.request(
                signer.envelope("sendToOthers", {"n": n}, target=target.client_id)
            )
            answer = result["data"]["payload"]
            assert answer["status"] == "forwarded" and answer["guarantee"] == "until_acked", result
            ids.append(answer["msgId"])
        # The frozen node has read the first message (it is stuck handling it, so the second
        # waits behind it); polled: its subscription reads on its own time.
        await until(lambda: len(questions) >= 1, what="the frozen node got the message")
        assert [q["env"]["meta"]["msgId"] for q in questions] == ids[:1]
        assert questions[0]["t"] == "deliver" and questions[0]["kept"] is True
        assert "id" not in questions[0]  # one-way: no answer is waited for
        # Both are in the user's inbox: a client of the user elsewhere gets them.
        pending = await a.hub.inbox.pending("c", "t", now=a.hub.clock())
        assert [e.msg_id for e in pending] == ids
        frozen.set()
        assert [(await target.recv())["meta"]["msgId"] for _ in ids] == ids
        # The other client of the user got neither: its next message is a later one.
        result = await sender.request(
            signer.envelope("sendToOthers", "marker", target=tablet.client_id)
        )
        assert result["data"]["payload"]["status"] == "forwarded", result
        assert (await tablet.recv())["data"]["payload"] == "marker"
    finally:
        backplane.bus.handler = handler
        frozen.set()
        await sender.close()
        await target.close()
        await tablet.close()


@pytest.mark.slow
async def test_sigstopped_node_gets_the_message_when_it_resumes(
    procs: Any, redis_prefix: str
) -> None:
    """The same with real processes: the target's node is SIGSTOPped (its sockets stay open), a
    send to its client is answered ``forwarded`` (kept until acked) without waiting on it, and
    the client gets the message once the node resumes."""
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
        # Answered, not left hanging; the number of messages per send (one, whatever the user's
        # clients on that node) is counted in the in-process test above.
        result = await asyncio.wait_for(
            sender.request(signer.envelope("sendToOthers", {"n": 1}, target=target.client_id)),
            10,
        )
        answer = result["data"]["payload"]
        assert answer["status"] == "forwarded" and answer["guarantee"] == "until_acked", result
        n1.popen.send_signal(signal.SIGCONT)
        got = await target.recv()
        assert got["meta"]["msgId"] == answer["msgId"] and got["data"]["payload"] == {"n": 1}
    finally:
        n1.popen.send_signal(signal.SIGCONT)
        await sender.close()
        for client in (target, tablet):
            try:
                await asyncio.wait_for(client.close(), 3)
            except Exception:
                pass
