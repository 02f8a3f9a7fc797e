"""Two nodes in one process on a real Redis Cluster (the session's: three masters, a replica
each, ``redis_cluster`` in conftest.py): sends across nodes, the inbox, broadcasts and Socket.IO
rooms, over sharded pub/sub; a user's keys in one hash slot. And the ``redis+cluster://`` URL's
parsing."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from wxio.adapter.cluster.bus import BROADCAST_LANES
from wxio.adapter.cluster.redis import ClusterTarget, RedisBackplane, parse_cluster_url
from wxio.adapter.config import ConfigError

from tests.adapter.conftest import RunningServer, StartServer
from tests.adapter.core_clients import RawClient, Signer, api_post, now_ms
from tests.adapter.wire import until

from .procs import RedisClusterGroup

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
#: A cross-node send is answered once Redis handed it to the target's node (docs/guide.md).
SENT = {"forwarded"}


def payload(message: dict[str, Any]) -> Any:
    return message["data"]["payload"]


async def _nodes(
    start_server: StartServer, group: RedisClusterGroup, prefix: str, setup: Any = None
) -> list[RunningServer]:
    nodes = []
    for i in range(2):
        backplane = RedisBackplane(group.url, prefix=prefix, node_id=f"n{i}", node_ttl=3.0)
        assert backplane.cluster
        extra = {"setup": setup} if setup is not None else {}
        nodes.append(await start_server(apps=APPS, backplane=backplane, **extra))
        await until(lambda bp=backplane: bp.listening, what=f"node n{i} subscribed")
    await _wait_shard_subscriptions(group, [n.hub.backplane for n in nodes])  # type: ignore[union-attr]
    return nodes


async def _wait_shard_subscriptions(group: RedisClusterGroup, backplanes: list[Any]) -> None:
    """Every node's channel and every broadcast lane has its subscribers on its shard."""
    channels = [bp.key("ch", bp.node_id) for bp in backplanes]
    lanes = [backplanes[0].key("ch", "all", str(lane)) for lane in range(BROADCAST_LANES)]
    clients = [group.client(m) for m in group.masters]
    try:

        async def counts() -> dict[str, int]:
            found: dict[str, int] = {}
            for client in clients:
                raw = await client.execute_command("PUBSUB", "SHARDNUMSUB", *channels, *lanes)
                for name, count in zip(raw[::2], raw[1::2], strict=True):
                    key = name.decode()
                    found[key] = found.get(key, 0) + int(count)
            return found

        for _ in range(250):
            found = await counts()
            if all(found.get(c, 0) >= 1 for c in channels) and all(
                found.get(lane, 0) >= len(backplanes) for lane in lanes
            ):
                return
            await asyncio.sleep(0.02)
        pytest.fail(f"sharded subscriptions missing: {await counts()}")
    finally:
        for client in clients:
            await client.aclose()


async def _keys_by_master(group: RedisClusterGroup) -> dict[str, list[str]]:
    """Every key of the cluster (SCAN on each master), with the master's port."""
    found: dict[str, list[str]] = {}
    for master in group.masters:
        client = group.client(master)
        try:
            found[str(master.port)] = [k.decode() async for k in client.scan_iter(count=1000)]
        finally:
            await client.aclose()
    return found


@pytest.mark.redis
@pytest.mark.slow
async def test_raw_clients_inbox_and_broadcast_on_a_redis_cluster(
    redis_cluster: RedisClusterGroup, start_server: StartServer, redis_prefix: str
) -> None:
    group = redis_cluster
    a, b = await _nodes(start_server, group, redis_prefix)
    bob_tag = f"{{{redis_prefix}:c:bob}}"
    assert a.hub is not None and b.hub is not None
    ra = await RawClient.connect(a.ws_url, C, user="alice")
    rb = await RawClient.connect(b.ws_url, C, user="bob")
    try:
        for _ in range(250):
            where = await a.hub.directory.locate("c", rb.client_id)
            if where is not None and where.node == "n1":
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("bob is not registered on n1")
        # Across nodes, both ways.
        result = await ra.request(C.envelope("sendToOthers", {"x": 1}, target=rb.client_id))
        assert payload(result)["status"] in SENT
        got = await rb.recv()
        assert payload(got) == {"x": 1} and got["meta"]["client"] == ra.client_id
        # Acked (else it waits in bob's inbox, and comes again when he reconnects below).
        await rb.send(C.envelope("ack", msgId=got["meta"]["msgId"]))
        inbox = a.hub.backplane.inbox  # type: ignore[attr-defined]
        for _ in range(250):
            if not await inbox.pending("c", "bob", now=time.time()):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the ack did not empty bob's inbox")
        result = await rb.request(C.envelope("sendToOthers", {"y": 2}, target=ra.client_id))
        assert payload(result)["status"] in SENT
        assert payload(await ra.recv()) == {"y": 2}

        # A broadcast from either node reaches both nodes' clients, once each.
        for sender, word in ((b, "all"), (a, "next")):
            ts = now_ms()
            status, body = await api_post(
                sender.url,
                "broadcast",
                {"timestamp": ts, "app": "c", "sign": C.md5(ts), "message": word},
            )
            assert status == 200 and body["delivered"] == 2
            assert payload(await ra.recv()) == word
            assert payload(await rb.recv()) == word

        # Bob goes offline: messages to him are queued, and delivered when he comes back (on
        # the other node).
        old = rb.client_id
        await rb.close()
        for _ in range(250):
            where = await a.hub.directory.locate("c", old)
            if where is not None and where.node is None:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("bob still online in the directory")
        ids = []
        for n in range(3):
            result = await ra.request(C.envelope("sendToOthers", {"n": n}, target=old))
            # (`forwarded` while n0 still remembers bob's node for a moment: kept all the same)
            assert payload(result)["status"] in ("queued", "forwarded"), result
            assert payload(result)["guarantee"] == "until_acked", result
            ids.append(payload(result)["msgId"])

        # The user's inbox list, inbox hash and directory entry are in one slot (all on one
        # master); the real keys, found by SCAN on every master.
        keys = await _keys_by_master(group)
        bob = {(port, k) for port, names in keys.items() for k in names if k.startswith(bob_tag)}
        assert {k.rpartition(":")[2] for _, k in bob} >= {"il", "ib"}
        client = group.client(group.masters[0])
        try:
            slots = {await client.execute_command("CLUSTER", "KEYSLOT", k) for _, k in bob}
        finally:
            await client.aclose()
        assert len(slots) == 1 and len({port for port, _ in bob}) == 1
        ((inbox_port, _), *_) = bob

        back = await RawClient.connect(a.ws_url, C, user="bob")
        got = [await back.recv() for _ in range(3)]
        assert [m["meta"]["msgId"] for m in got] == ids
        assert [payload(m) for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
        for msg_id in ids:
            await back.send(C.envelope("ack", msgId=msg_id))
        # Online again: bob's directory hash joins his inbox's slot.
        await until(
            lambda: ("c", back.client_id) in a.hub.connections,  # type: ignore[union-attr]
            what="bob back on n0",
        )
        for _ in range(250):
            keys = await _keys_by_master(group)
            bob = {(p, k) for p, names in keys.items() for k in names if k == f"{bob_tag}:u"}
            if bob:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("bob's directory hash is not in Redis")
        ((port_u, key_u),) = bob
        client = group.client(group.masters[0])
        try:
            assert {await client.execute_command("CLUSTER", "KEYSLOT", key_u)} == slots
        finally:
            await client.aclose()
        assert port_u == inbox_port
        await back.close()
    finally:
        await ra.close()


@pytest.mark.redis
@pytest.mark.slow
async def test_socketio_rooms_across_nodes_on_a_redis_cluster(
    redis_cluster: RedisClusterGroup, start_server: StartServer, redis_prefix: str
) -> None:
    import socketio

    def setup(io: Any) -> None:
        @io.on("join")  # type: ignore[untyped-decorator]
        def join(socket: Any, room: str) -> str:
            socket.join(room)
            return "ok"

        @io.on("shout")  # type: ignore[untyped-decorator]
        def shout(socket: Any, room: str, data: object) -> None:
            socket.to(room).emit("heard", data)

    nodes = await _nodes(start_server, redis_cluster, redis_prefix, setup)
    clients = []
    heard: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
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
        await clients[0].emit("shout", ("r", {"n": 1}))
        got = sorted([await asyncio.wait_for(heard.get(), 5) for _ in range(2)])
        assert got == [(1, {"n": 1}), (2, {"n": 1})]
        # From the other node, to everyone but the sender: a stray first shout would come
        # before the marker on its client's connection.
        for client in clients:
            assert await client.call("join", "all", timeout=5) == "ok"
        await clients[3].emit("shout", ("all", "marker"))
        after = sorted([await asyncio.wait_for(heard.get(), 5) for _ in range(3)])
        assert after == [(0, "marker"), (1, "marker"), (2, "marker")]
    finally:
        for client in clients:
            await client.disconnect()


def test_cluster_url() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002/") == (
        ClusterTarget((("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)))
    )
    target = parse_cluster_url("rediss+cluster://app:s%3Acret@h:7000/0")
    assert target == ClusterTarget((("h", 7000),), "app", "s:cret", tls=True)
    for bad, why in [
        ("redis+cluster://h:7000/1", "database other than 0"),
        ("redis+cluster://h:x/", "not a number"),
        ("redis+cluster://h:7000/?x=1", "no query string"),
        ("redis+cluster://:7000/", "has no host"),
        ("redis://h:7000/", "not a redis+cluster:// URL"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(why)):
            parse_cluster_url(bad)
    with pytest.raises(ConfigError, match="redis_url"):
        RedisBackplane("redis+cluster://h:99999/")


async def test_heartbeats_keep_their_redis_connections(
    start_server: StartServer, redis_cluster: RedisClusterGroup, redis_prefix: str
) -> None:
    """A beat reloads redis-py's slot map only when the masters changed: reloading it at every
    beat made redis-py reconnect every pooled connection each time (a new connection, and its
    handshake, for most commands under load)."""
    backplane = RedisBackplane(redis_cluster.url, prefix=redis_prefix, node_id="beat", node_ttl=0.6)
    await start_server(apps=APPS, backplane=backplane)
    await until(lambda: backplane.listening, what="subscribed")
    clients = [redis_cluster.client(m) for m in redis_cluster.masters]

    async def connections_received() -> int:
        return sum([int((await c.info("stats"))["total_connections_received"]) for c in clients])

    try:
        await until(lambda: backplane.nodes.beats >= 2, what="two beats")
        before, beats = await connections_received(), backplane.nodes.beats
        await until(lambda: backplane.nodes.beats >= beats + 6, what="six more beats")
        opened = await connections_received() - before
        # Each beat's commands (the slot map's master, EXISTS, the epoch, the heartbeat, the
        # sweep) found their connections pooled: none opened (a few for the counters' own).
        assert opened <= len(clients), opened
    finally:
        for c in clients:
            await c.aclose()
