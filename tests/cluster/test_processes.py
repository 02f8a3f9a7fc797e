"""Real ``wxio serve`` processes sharing one Redis: routing in every direction across three
nodes, a node killed with SIGKILL, and Redis stopping and coming back (with and without
persistence).

The nodes run with ``node_ttl = 3``. Every wait is bounded, so a hang fails the test quickly.
The shared Redis (127.0.0.1:6379 or WXIO_TEST_REDIS_URL) is only used under a key prefix unique
to the test; the Redis restart tests run their own ``redis-server`` on a free port.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.adapter.core_clients import RawClient, Signer, SioClient, api_post, now_ms

from .conftest import REDIS_URL
from .procs import Node, Processes, wait_registered, wait_subscribed

pytestmark = [pytest.mark.redis, pytest.mark.slow]

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
NODE_TTL = 3
#: A request to a node that does not answer waits NODE_TIMEOUT (2 s) at most, and a send asks
#: such a node once (tests/cluster/test_parity.py): a send must answer within this, with margin.
SEND_BOUND = 5.0

Client = RawClient | SioClient


def payload(message: dict[str, Any]) -> Any:
    return message["data"]["payload"]


def action(message: dict[str, Any]) -> Any:
    return message["data"]["action"]


async def start_nodes(procs: Processes, n: int, redis_url: str, prefix: str) -> list[Node]:
    return list(
        await asyncio.gather(
            *(
                procs.start_node(
                    f"n{i}", redis_url=redis_url, prefix=prefix, apps=APPS, node_ttl=NODE_TTL
                )
                for i in range(n)
            )
        )
    )


async def close_all(*clients: Client) -> None:
    for client in clients:
        try:
            await asyncio.wait_for(client.close(), 3)
        except Exception:
            pass


async def timed_request(client: Client, envelope: dict[str, Any]) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    reply = await asyncio.wait_for(client.request(envelope), SEND_BOUND + 2)
    return reply, time.monotonic() - start


async def send(sender: Client, target: str, data: Any) -> dict[str, Any]:
    """sendToOthers; returns the ``result`` (or ``deny``) and checks it came in time."""
    reply, elapsed = await timed_request(sender, C.envelope("sendToOthers", data, target=target))
    assert elapsed < SEND_BOUND, f"sendToOthers took {elapsed:.1f}s: {reply}"
    return reply


async def api_send(node: Node, target: str, message: Any) -> tuple[int, dict[str, Any]]:
    ts = now_ms()
    body = {
        "timestamp": ts,
        "app": "c",
        "target": target,
        "userId": "web",
        "sign": C.md5(ts),
        "message": message,
    }
    return await asyncio.wait_for(api_post(node.url, "transportMessage", body), SEND_BOUND + 2)


async def api_broadcast(node: Node, message: Any) -> tuple[int, dict[str, Any]]:
    ts = now_ms()
    body = {"timestamp": ts, "app": "c", "sign": C.md5(ts), "message": message}
    return await asyncio.wait_for(api_post(node.url, "broadcast", body), SEND_BOUND + 2)


async def nothing_more(client: Client, wait: float = 0.4) -> None:
    with pytest.raises(asyncio.TimeoutError):
        extra = await client.recv(timeout=wait)
        print("unexpected:", extra)


async def once(client: Client, data: Any, sender: str | None) -> None:
    """``client`` gets the broadcast ``data`` from ``sender``, and nothing more."""
    got = await client.recv()
    assert action(got) == "broadcast" and payload(got) == data
    assert got["meta"].get("client") == sender
    await nothing_more(client)


async def eventually(
    check: Any,
    timeout: float,
    what: str,
    step: float = 0.1,
    expected: tuple[type[BaseException], ...] = (),
) -> float:
    """Poll the async ``check()`` until it is true; returns the seconds it took. An exception of
    an ``expected`` type counts as "not yet" (say, Redis still coming back); any other one is a
    failure and propagates at once."""
    start = time.monotonic()
    last: BaseException | None = None
    while True:
        try:
            if await check():
                return time.monotonic() - start
        except expected as exc:
            last = exc
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout}s (last expected error: {last!r})")
        await asyncio.sleep(step)


# -- 1. three nodes, every direction -------------------------------------------------------------


async def test_three_nodes_every_direction_and_broadcast(
    procs: Processes, redis_prefix: str
) -> None:
    nodes = await start_nodes(procs, 3, REDIS_URL, redis_prefix)
    clients: list[tuple[str, Client, int]] = []
    try:
        for i, node in enumerate(nodes):
            clients.append((f"raw@n{i}", await RawClient.connect(node.ws_url, C, user=f"r{i}"), i))
            clients.append((f"sio@n{i}", await SioClient.connect(node.url, C, user=f"s{i}"), i))
        users = {c.client_id: name for name, c, _ in clients}
        await wait_registered(
            REDIS_URL, redis_prefix, "c", {c.client_id: f"n{i}" for _, c, i in clients}
        )

        # sendToOthers between every pair of clients on different nodes, each kind to each kind.
        for s_name, sender, s_node in clients:
            for t_name, target, t_node in clients:
                if s_node == t_node:
                    continue
                data = {"from": s_name, "to": t_name}
                result = await send(sender, target.client_id, data)
                assert action(result) == "result", (s_name, t_name, result)
                # Handed to the target's node (no answer awaited from it), then it arrives.
                assert (
                    payload(result)["status"] == "forwarded" and payload(result)["forwarded"] == 1
                )
                got = await target.recv()
                assert action(got) == "exchange" and payload(got) == data
                # The sender's identity is written by its node, not by what it sent.
                assert got["meta"]["client"] == sender.client_id
                assert users[got["meta"]["client"]] == s_name
                assert got["meta"]["msgId"] == payload(result)["msgId"]

        # The HTTP API on a node that does not hold the target.
        for t_name, target, t_node in clients:
            api_node = nodes[(t_node + 1) % 3]
            status, body = await api_send(api_node, target.client_id, {"api": t_name})
            assert status == 200 and body["forwarded"] is True and body["queued"] is False, body
            assert body["status"] == "forwarded" and body["delivered"] is False, body
            got = await target.recv()
            assert payload(got) == {"api": t_name} and got["meta"]["userId"] == "web"

        # A client's broadcast reaches every other client once, on every node, not the sender.
        for s_index in (2, 5):  # raw@n1, sio@n2
            s_name, sender, _ = clients[s_index]
            result, _ = await timed_request(sender, C.envelope("broadcast", {"b": s_name}))
            assert (
                action(result) == "result" and payload(result)["delivered"] == len(clients) - 1
            ), result
            others = [c for n, c, _ in clients if n != s_name]
            await asyncio.gather(
                *(once(c, {"b": s_name}, sender.client_id) for c in others), nothing_more(sender)
            )

        # The API's broadcast reaches every client once.
        status, body = await api_broadcast(nodes[1], "to-all")
        assert status == 200 and body["delivered"] == len(clients), body

        await asyncio.gather(*(once(c, "to-all", None) for _, c, _ in clients))
    finally:
        await close_all(*(c for _, c, _ in clients))


# -- 2. a node is killed -------------------------------------------------------------------------


async def test_node_killed_clients_move_and_get_their_inbox(
    procs: Processes, redis_prefix: str
) -> None:
    n0, n1, n2 = await start_nodes(procs, 3, REDIS_URL, redis_prefix)
    r = aioredis.from_url(REDIS_URL)
    sender = await SioClient.connect(n0.url, C, user="sender")
    mini = await RawClient.connect(n2.ws_url, C, user="mini")
    phone = await SioClient.connect(n2.url, C, user="phone")
    moved: list[Client] = []
    try:
        old_mini, old_phone = mini.client_id, phone.client_id
        await wait_registered(
            REDIS_URL, redis_prefix, "c", {sender.client_id: "n0", old_mini: "n2", old_phone: "n2"}
        )
        before = payload(await send(sender, old_mini, "before"))
        assert before["status"] == "forwarded" and before["guarantee"] == "until_acked"
        assert payload(await mini.recv()) == "before"  # written, never acknowledged

        n2.kill()
        killed_at = time.monotonic()

        # Right away (well within node_ttl) a send to the dead node's client answers `queued`,
        # or `forwarded` while Redis has not yet seen the dead node's subscription close: kept
        # in the inbox either way (until_acked), no hang, and never `delivered`.
        mini_ids = []
        for n in range(3):
            result = await send(sender, old_mini, {"n": n})
            assert action(result) == "result", result
            assert payload(result)["status"] in ("queued", "forwarded"), result
            assert payload(result)["guarantee"] == "until_acked", result
            mini_ids.append(payload(result)["msgId"])
        phone_ids = []
        for n in range(2):
            status, body = await api_send(n1, old_phone, {"p": n})
            assert status == 200 and body["delivered"] is False, body
            assert body["status"] in ("queued", "forwarded"), body
            assert body["queued"] is (body["status"] == "queued"), body
            assert body["guarantee"] == "until_acked", body
            phone_ids.append(body["msgId"])

        # Within the TTL (plus a heartbeat and a margin) the node is gone from the cluster and
        # its clients are swept: nobody routes to it any more.
        async def swept() -> bool:
            gone = not await r.exists(f"{redis_prefix}:node:n2")
            members = {m.decode() for m in await r.smembers(f"{redis_prefix}:nodes")}
            node_field = await r.hget(f"{redis_prefix}:c:c:{old_mini}", "n")
            return gone and "n2" not in members and {"n0", "n1"} <= members and node_field is None

        await eventually(swept, NODE_TTL + 3, "dead node swept")
        assert time.monotonic() - killed_at < NODE_TTL + 3
        result = await send(sender, old_mini, {"n": 3})
        assert payload(result)["status"] == "queued"
        mini_ids.append(payload(result)["msgId"])

        # The mini program comes back on another node with its userId: the inbox, in order.
        mini2 = await RawClient.connect(n1.ws_url, C, user="mini")
        moved.append(mini2)
        await wait_registered(REDIS_URL, redis_prefix, "c", {mini2.client_id: "n1"})
        # "before" died with its node unacknowledged: it comes again, first.
        mini_ids.insert(0, before["msgId"])
        got = [await mini2.recv() for _ in mini_ids]
        assert [m["meta"]["msgId"] for m in got] == mini_ids
        assert [payload(m) for m in got] == ["before", *({"n": n} for n in range(4))]
        assert all(m["meta"]["client"] == sender.client_id for m in got)
        for msg_id in mini_ids:
            await mini2.send(C.envelope("ack", msgId=msg_id))
        await eventually(
            lambda: _inbox_empty(r, redis_prefix, "mini"), 3, "mini's acks reach the inbox"
        )
        updated = await mini2.request(C.envelope("reConnectAndUpdates", client=old_mini))
        assert action(updated) == "reConnectUpdated" and payload(updated) == {
            "replaced": [old_mini]
        }
        await nothing_more(mini2, 0.3)  # acked: not delivered again
        # Later messages to the old id arrive live, from any node.
        result = await send(sender, old_mini, {"live": 1})
        assert payload(result)["status"] == "forwarded", result
        assert payload(await mini2.recv()) == {"live": 1}

        # The socket.io client comes back on the third node; python-socketio acks the inbox.
        phone2 = await SioClient.connect(n0.url, C, user="phone")
        moved.append(phone2)
        await wait_registered(REDIS_URL, redis_prefix, "c", {phone2.client_id: "n0"})
        got = [await phone2.recv() for _ in phone_ids]
        assert [m["meta"]["msgId"] for m in got] == phone_ids
        assert [payload(m) for m in got] == [{"p": 0}, {"p": 1}]
        await eventually(
            lambda: _inbox_empty(r, redis_prefix, "phone"), 3, "phone's acks reach the inbox"
        )
        updated = await phone2.request(
            C.envelope("reConnectAndUpdates", payload={"clients": [old_phone]})
        )
        assert payload(updated) == {"replaced": [old_phone]}
        status, body = await api_send(n1, old_phone, "live")
        assert status == 200 and body["forwarded"] is True, body
        assert payload(await phone2.recv()) == "live"
        await nothing_more(phone2, 0.3)
    finally:
        await close_all(sender, *moved)
        # The dead node's sockets: the client side only (the server is gone).
        await close_all(mini, phone)
        await r.aclose()


async def _inbox_empty(r: aioredis.Redis, prefix: str, user: str) -> bool:
    return await r.llen(f"{prefix}:il:c:{user}") == 0


# -- 3. Redis stops and comes back ---------------------------------------------------------------


@pytest.mark.parametrize("persist", [False, True], ids=["no-persistence", "aof-always"])
async def test_redis_restart(procs: Processes, redis_prefix: str, persist: bool) -> None:
    redis = await procs.start_redis(persist=persist)
    url = f"redis://127.0.0.1:{redis.port}/0"
    n0, n1 = await start_nodes(procs, 2, url, redis_prefix)
    r = aioredis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
    a = await RawClient.connect(n0.ws_url, C, user="a")
    a2 = await RawClient.connect(n0.ws_url, C, user="a2")
    b = await SioClient.connect(n1.url, C, user="b")
    clients: list[Client] = [a, a2, b]
    try:
        await wait_registered(
            url, redis_prefix, "c", {a.client_id: "n0", a2.client_id: "n0", b.client_id: "n1"}
        )
        assert payload(await send(a, b.client_id, "hello"))["status"] == "forwarded"
        assert payload(await b.recv()) == "hello"

        queued_id = None
        if persist:
            # A message queued for a user who is away: acknowledged as queued, so it must
            # survive Redis being killed (AOF, fsync on every write).
            p = await RawClient.connect(n1.ws_url, C, user="p")
            old_p = p.client_id
            await wait_registered(url, redis_prefix, "c", {old_p: "n1"})
            await p.close()
            await eventually(
                lambda: _offline(r, redis_prefix, old_p), 3, "p's disconnect reaches Redis"
            )
            result = await send(a, old_p, {"kept": True})
            assert payload(result)["status"] == "queued", result
            queued_id = payload(result)["msgId"]
            redis.kill()
        else:
            redis.terminate()
        down_at = time.monotonic()

        # Redis is down. Clients on one node still reach each other.
        result = await send(a, a2.client_id, "local")
        assert payload(result)["status"] == "delivered", result
        assert payload(await a2.recv()) == "local"
        # Across nodes: a clear deny, in bounded time, both ways and through the API.
        for sender, target in ((a, b), (b, a)):
            result = await send(sender, target.client_id, "across")
            assert action(result) == "deny", result
            assert payload(result)["reason"] == "unavailable", result
        status, body = await api_send(n0, b.client_id, "api-across")
        assert status >= 400 and body["error"] == "unavailable", (status, body)
        await nothing_more(b, 0.2)
        await nothing_more(a, 0.1)
        if persist:
            # Stay down longer than node_ttl: the heartbeat keys come back from the AOF already
            # expired, so each node sees the other as dead (and may sweep it) while both
            # re-register: the sweep must not undo a node that is back.
            await asyncio.sleep(max(0.0, NODE_TTL + 0.5 - (time.monotonic() - down_at)))
            result = await send(a, a2.client_id, "still-local")
            assert payload(result)["status"] == "delivered", result
            assert payload(await a2.recv()) == "still-local"

        # Redis comes back on the same port (empty, or from its AOF).
        redis = await procs.start_redis(redis.port, persist=persist)
        back_at = time.monotonic()
        # The nodes reconnect and resubscribe, and register their clients again ...
        await wait_subscribed(url, redis_prefix, ["n0", "n1"], timeout=10)

        async def registered() -> bool:
            alive = await r.exists(f"{redis_prefix}:node:n0", f"{redis_prefix}:node:n1")
            where = [await r.hget(f"{redis_prefix}:c:c:{c.client_id}", "n") for c in clients]
            return alive == 2 and where == [b"n0", b"n0", b"n1"]

        await eventually(
            registered,
            10,
            "clients registered again",
            expected=(RedisConnectionError, RedisTimeoutError),
        )
        recovered = time.monotonic() - back_at
        print(f"recovered {recovered:.2f}s after Redis came back")
        assert recovered < NODE_TTL + 6, f"recovery took {recovered:.1f}s"
        # Past a heartbeat and a sweep, the registrations still hold (nothing swept them).
        await asyncio.sleep(NODE_TTL / 3 + 0.3)
        assert await registered()
        # ... so cross-node sends work again, both ways.
        result = await send(a, b.client_id, "again")
        assert payload(result)["status"] == "forwarded", result
        assert payload(await b.recv()) == "again"
        result = await send(b, a.client_id, "again-back")
        assert payload(result)["status"] == "forwarded", result
        assert payload(await a.recv()) == "again-back"
        status, body = await api_send(n0, b.client_id, "api-again")
        assert status == 200 and body["forwarded"] is True, body
        assert payload(await b.recv()) == "api-again"

        if persist:
            # The queued message was not lost: the user gets it on return, on the other node.
            p2 = await RawClient.connect(n0.ws_url, C, user="p")
            clients.append(p2)
            got = await p2.recv()
            assert action(got) == "exchange" and got["meta"]["msgId"] == queued_id
            assert payload(got) == {"kept": True} and got["meta"]["client"] == a.client_id
    finally:
        await close_all(*clients)
        await r.aclose()


async def _offline(r: aioredis.Redis, prefix: str, client: str) -> bool:
    key = f"{prefix}:c:c:{client}"
    return await r.hget(key, "n") is None and await r.hget(key, "u") == b"p"


async def test_stalled_redis_gives_bounded_answers(procs: Processes, redis_prefix: str) -> None:
    """A Redis that stops answering (SIGSTOP: connections stay open, nothing comes back) must not
    hang senders or pile up work: cross-node sends are denied `unavailable` within the Redis
    client's command timeout, same-node sends still deliver, and all is well after SIGCONT."""
    import signal

    redis = await procs.start_redis()
    url = f"redis://127.0.0.1:{redis.port}/0"
    n0, n1 = await start_nodes(procs, 2, url, redis_prefix)
    a = await RawClient.connect(n0.ws_url, C, user="a")
    a2 = await RawClient.connect(n0.ws_url, C, user="a2")
    b = await SioClient.connect(n1.url, C, user="b")
    clients: list[Client] = [a, a2, b]
    try:
        await wait_registered(
            url, redis_prefix, "c", {a.client_id: "n0", a2.client_id: "n0", b.client_id: "n1"}
        )
        assert payload(await send(a, b.client_id, "before"))["status"] == "forwarded"
        assert payload(await b.recv()) == "before"
        redis.popen.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            result = await asyncio.wait_for(send(a, b.client_id, "stalled"), 10)
            assert payload(result)["reason"] == "unavailable", result
            # One Redis command timeout (3 s) for the whole send, not a sum of waits (4.0 s
            # here before the shared deadline; test_frozen_redis.py has the 5-6 s cases).
            assert time.monotonic() - started < 4.5
            result = await send(a, a2.client_id, "local")
            assert payload(result)["status"] == "delivered", result
            assert payload(await a2.recv()) == "local"
        finally:
            redis.popen.send_signal(signal.SIGCONT)

        async def works_again() -> bool:
            result = await send(a, b.client_id, "after")
            return bool(payload(result).get("status") == "forwarded")

        await eventually(works_again, NODE_TTL + 6, "cross-node sends work after SIGCONT")
        # The stalled PUBLISH had already been written to Redis when the sender's command timed
        # out: Redis delivers it when it resumes. `unavailable` means "not known to be
        # delivered", not "not delivered" (docs/cluster.md says so).
        got = payload(await b.recv())
        if got == "stalled":
            got = payload(await b.recv())
        assert got == "after"
        await nothing_more(b, 0.2)
    finally:
        for client in clients:
            await client.close()
