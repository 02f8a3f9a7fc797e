"""Two nodes in one process sharing a real Redis: routing across nodes, outcomes, broadcast,
inbox in Redis, reconnect onto the other node."""

from __future__ import annotations

import asyncio
import time

import pytest
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.protocol import jsonutil

from tests.adapter.conftest import RunningServer, StartServer
from tests.adapter.core_clients import RawClient, Signer, SioClient, api_post, now_ms
from tests.adapter.wire import until

from .conftest import REDIS_URL
from .procs import wait_subscribed

pytestmark = pytest.mark.redis

APPS = {
    "c": {
        "key": "c-key",
        "api_client_key": True,
        "client_broadcast": True,
        "rate": 1000,
        "burst": 1000,
    }
}
C = Signer("c", "c-key")


async def _nodes(
    start_server: StartServer, prefix: str, n: int = 2, url: str = REDIS_URL
) -> list[RunningServer]:
    nodes = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(url, prefix=prefix, node_id=f"n{i}", node_ttl=3.0),
        )
        for i in range(n)
    ]
    await wait_subscribed(url, prefix, [f"n{i}" for i in range(n)])
    return nodes


def payload(message: dict) -> object:
    return message["data"]["payload"]


async def test_send_across_nodes_for_each_client_kind(
    start_server: StartServer, redis_prefix: str, redis_url: str
) -> None:
    a, b = await _nodes(start_server, redis_prefix, url=redis_url)
    raw_a = await RawClient.connect(a.ws_url, C, user="ra")
    sio_b = await SioClient.connect(b.url, C, user="sb")
    raw_b = await RawClient.connect(b.ws_url, C, user="rb")
    try:
        # Across nodes a send is answered "forwarded" (handed to the node that holds the target,
        # no answer awaited from it), and arrives.
        result = await raw_a.request(C.envelope("sendToOthers", {"x": 1}, target=sio_b.client_id))
        assert payload(result)["status"] == "forwarded"
        # sio_b has a user id: kept in its inbox (in the forward's round trip) until acked.
        assert payload(result)["forwarded"] == 1 and payload(result)["guarantee"] == "until_acked"
        got = await sio_b.recv()
        assert payload(got) == {"x": 1} and got["meta"]["client"] == raw_a.client_id

        result = await sio_b.request(C.envelope("sendToOthers", {"y": 2}, target=raw_a.client_id))
        assert payload(result)["status"] == "forwarded"
        assert payload(await raw_a.recv()) == {"y": 2}

        # The HTTP API on the node that does not hold the target.
        ts = now_ms()
        status, body = await api_post(
            a.url,
            "transportMessage",
            {
                "timestamp": ts,
                "app": "c",
                "target": raw_b.client_id,
                "userId": "web",
                "sign": C.md5(ts),
                "message": "via-a",
            },
        )
        assert status == 200 and body["status"] == "forwarded" and body["forwarded"] is True
        assert body["delivered"] is False and body["queued"] is False
        assert payload(await raw_b.recv()) == "via-a"

        # Broadcast reaches every client once, on every node.
        ts = now_ms()
        status, body = await api_post(
            b.url, "broadcast", {"timestamp": ts, "app": "c", "sign": C.md5(ts), "message": "all"}
        )
        assert status == 200 and body["delivered"] == 3
        assert payload(await raw_a.recv()) == "all"
        assert payload(await raw_b.recv()) == "all"
        assert payload(await sio_b.recv()) == "all"
        # Once: the next message each client gets is the next broadcast, not a second "all".
        ts = now_ms()
        status, body = await api_post(
            a.url, "broadcast", {"timestamp": ts, "app": "c", "sign": C.md5(ts), "message": "next"}
        )
        assert status == 200 and body["delivered"] == 3
        for client in (raw_a, raw_b, sio_b):
            assert payload(await client.recv()) == "next"
    finally:
        await raw_a.close()
        await raw_b.close()
        await sio_b.close()


async def test_inbox_in_redis_and_reconnect_onto_another_node(
    start_server: StartServer, redis_prefix: str, redis_url: str
) -> None:
    a, b = await _nodes(start_server, redis_prefix, url=redis_url)
    sender = await SioClient.connect(a.url, C, user="s")
    mini = await RawClient.connect(a.ws_url, C, user="mini")
    old = mini.client_id
    await mini.close()
    # Polled, not slept: node a has let the client go (it is offline in the shared directory).
    assert a.hub is not None
    await until(lambda: ("c", old) not in a.hub.connections, what="mini detached")
    for _ in range(250):
        where = await a.hub.directory.locate("c", old)
        if where is not None and where.node is None:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("mini still online in the directory")
    try:
        ids = []
        for n in range(3):
            result = await sender.request(C.envelope("sendToOthers", {"n": n}, target=old))
            assert payload(result)["status"] == "queued"
            ids.append(payload(result)["msgId"])
        back = await RawClient.connect(b.ws_url, C, user="mini")  # the other node
        got = [await back.recv() for _ in range(3)]
        assert [m["meta"]["msgId"] for m in got] == ids
        for msg_id in ids:
            await back.send(C.envelope("ack", msgId=msg_id))
        updated = await back.request(C.envelope("reConnectAndUpdates", client=old))
        assert payload(updated) == {"replaced": [old]}
        # A message to the old id, sent on node a, reaches the new connection on node b.
        result = await sender.request(C.envelope("sendToOthers", {"live": 1}, target=old))
        assert payload(result)["status"] == "forwarded"
        assert payload(await back.recv()) == {"live": 1}
        await back.close()
    finally:
        await sender.close()


async def test_rooms_across_nodes(
    start_server: StartServer, redis_prefix: str, redis_url: str
) -> None:
    import socketio

    def setup(io: object) -> None:
        @io.on("join")  # type: ignore[attr-defined]
        def join(socket: object, room: str) -> str:
            socket.join(room)  # type: ignore[attr-defined]
            return "ok"

        @io.on("shout")  # type: ignore[attr-defined]
        def shout(socket: object, room: str, data: object) -> None:
            socket.to(room).emit("heard", data)  # type: ignore[attr-defined]

    nodes = [
        await start_server(
            apps=APPS,
            setup=setup,
            backplane=RedisBackplane(redis_url, prefix=redis_prefix, node_id=f"r{i}", node_ttl=3.0),
        )
        for i in range(2)
    ]
    await wait_subscribed(redis_url, redis_prefix, ["r0", "r1"])
    clients = []
    heard: asyncio.Queue = asyncio.Queue()
    try:
        for i, node in enumerate(nodes * 2):
            client = socketio.AsyncClient(reconnection=False)
            client.on("heard", lambda data, i=i: heard.put_nowait((i, data)))
            await client.connect(
                node.url, auth=C.auth(f"u{i}"), transports=["websocket"], wait_timeout=5
            )
            clients.append(client)
        # clients 0 (node 0), 1 (node 1), 2 (node 0) join "r"; client 3 (node 1) does not
        for client in clients[:3]:
            assert await client.call("join", "r", timeout=5) == "ok"
        for client in clients:
            assert await client.call("join", "all", timeout=5) == "ok"
        await clients[0].emit("shout", ("r", {"bin": b"\x01\x02"}))
        got = sorted([await asyncio.wait_for(heard.get(), 5) for _ in range(2)])
        assert got == [(1, {"bin": b"\x01\x02"}), (2, {"bin": b"\x01\x02"})]
        # Not the sender, not client 3: client 1 (who got the shout, so both nodes have sent
        # it to every local target) shouts a marker to everyone else. Frames on a connection
        # arrive in order, so a stray shout would come before that client's marker.
        await clients[1].emit("shout", ("all", "marker"))
        after = [await asyncio.wait_for(heard.get(), 5) for _ in range(3)]
        assert sorted(after) == [(0, "marker"), (2, "marker"), (3, "marker")]
    finally:
        for client in clients:
            await client.disconnect()


async def test_answers_come_in_the_order_asked_while_forwards_settle(
    start_server: StartServer, redis_prefix: str, redis_url: str
) -> None:
    """A forward's answer settles when Redis took it, and the pipeline goes on to the client's
    next message meanwhile: the answers still come in the order the client asked, whether the
    target was on the other node (forwarded), on this one (delivered) or nowhere (denied)."""
    a, b = await _nodes(start_server, redis_prefix, url=redis_url)
    sender = await RawClient.connect(a.ws_url, C)
    here = await RawClient.connect(a.ws_url, C)
    there = await RawClient.connect(b.ws_url, C)
    try:
        # Once, the long way: node a locates the target and remembers its node.
        first = await sender.request(C.envelope("sendToOthers", {"n": -1}, target=there.client_id))
        assert payload(first)["status"] == "forwarded"  # type: ignore[index]
        await there.recv()
        targets = [there.client_id, here.client_id, there.client_id, "nobody", there.client_id]
        expected = ["forwarded", "delivered", "forwarded", "target_offline", "forwarded"]
        for _ in range(4):
            for n, target in enumerate(targets):  # all in flight together
                await sender.send(C.envelope("sendToOthers", {"n": n}, target=target))
            answers = [await sender.recv() for _ in targets]
            seen = [
                m["data"]["payload"]["status"]
                if m["data"]["action"] == "result"
                else m["data"]["payload"]["reason"]
                for m in answers
            ]
            assert seen == expected, (seen, [m["meta"].get("target") for m in answers])
            # Each result names its own target, in the order sent.
            named = [m["meta"].get("target") for m in answers if m["data"]["action"] == "result"]
            assert named == [t for t in targets if t != "nobody"]
        got = [payload(await there.recv())["n"] for _ in range(12)]  # type: ignore[index]
        assert got == [0, 2, 4] * 4  # in the order sent
    finally:
        for c in (sender, here, there):
            await c.close()


async def test_a_forward_nobody_took_goes_the_long_way_in_its_place(
    start_server: StartServer, redis_prefix: str, redis_url: str
) -> None:
    """A forward that settles later and that nobody took (no subscriber on the node's channel:
    the node was replaced, say, while this node still had its route cached) falls back to the
    long way, without that node: the target is located again and reached where it is, and the
    answer comes in its place among the sender's."""
    a, b = await _nodes(start_server, redis_prefix, url=redis_url)
    sender = await RawClient.connect(a.ws_url, C, user="sa")
    here = await RawClient.connect(a.ws_url, C)
    there = await RawClient.connect(b.ws_url, C, user="tb")
    try:
        first = await sender.request(C.envelope("sendToOthers", {"n": -1}, target=there.client_id))
        assert payload(first)["status"] == "forwarded"  # type: ignore[index]
        await there.recv()
        # Node a's cached route now names a node that nobody listens for, and a knows it "alive".
        assert a.hub is not None
        routes = a.hub.router._routes  # noqa: SLF001 - the state this test stages
        key = ("c", there.client_id)
        client, _, user, until_ = routes[key]
        routes[key] = (client, "ghost", user, until_)
        nodes = a.hub.backplane.nodes  # type: ignore[attr-defined]
        nodes._alive_cache["ghost"] = (True, time.monotonic() + 30)  # noqa: SLF001
        targets = [there.client_id, here.client_id, there.client_id]
        for n, target in enumerate(targets):
            await sender.send(C.envelope("sendToOthers", {"n": n}, target=target))
        answers = [await sender.recv() for _ in targets]
        assert [m["data"]["payload"]["status"] for m in answers] == [
            "forwarded",
            "delivered",
            "forwarded",
        ], answers
        assert [m["meta"]["target"] for m in answers] == targets
        got = sorted([payload(await there.recv())["n"] for _ in range(2)])  # type: ignore[index]
        assert got == [0, 2]
        assert payload(await here.recv())["n"] == 1  # type: ignore[index]
    finally:
        for c in (sender, here, there):
            await c.close()


async def test_a_kept_message_as_deep_as_a_client_may_send_comes_back_from_redis(
    start_server: StartServer, redis_prefix: str
) -> None:
    """The inbox entry in Redis wraps the envelope one level deeper than the client's frame;
    read back, it is the server's own JSON, not a client's: no depth limit drops it."""
    (a,) = await _nodes(start_server, redis_prefix, n=1)
    assert a.hub is not None
    sender = await RawClient.connect(a.ws_url, C, user="s")
    mini = await RawClient.connect(a.ws_url, C, user="deep")
    old = mini.client_id
    await mini.close()
    await until(lambda: ("c", old) not in a.hub.connections, what="deep detached")
    deep: object = "x"
    for _ in range(jsonutil.MAX_DEPTH - 2):  # the frame itself: exactly MAX_DEPTH deep
        deep = [deep]
    for _ in range(250):  # polled: offline in the shared directory
        where = await a.hub.directory.locate("c", old)
        if where is not None and where.node is None:
            break
        await asyncio.sleep(0.02)
    try:
        result = await sender.request(C.envelope("sendToOthers", deep, target=old))
        assert payload(result)["status"] == "queued", result
        back = await RawClient.connect(a.ws_url, C, user="deep")
        got = await back.recv()
        assert got["meta"]["msgId"] == payload(result)["msgId"]
        assert payload(got) == deep
        await back.close()
    finally:
        await sender.close()
