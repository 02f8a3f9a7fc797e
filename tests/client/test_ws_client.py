"""wxio.client.WxioClient against a real server: every action, answers matched in order,
inbox acks and de-dup, refusals, both signing schemes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wxio.client import ConnectionClosed, Credentials, Denied, Message, WxioClient

from tests.adapter.conftest import RunningServer, StartServer

from .conftest import gone

APPS: dict[str, dict[str, Any]] = {
    "shop": {"key": "shop-key", "client_broadcast": True, "rate": 1000, "burst": 1000},
    "mac": {"key": "mac-key", "scheme": "hmac", "rate": 1000, "burst": 1000},
    "quiet": {"key": "quiet-key"},
}


def shop(user: str | None = None) -> Credentials:
    return Credentials("shop", "shop-key", user_id=user)


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


async def test_send_and_receive_with_md5(core: RunningServer) -> None:
    async with (
        await WxioClient.connect(core.url, shop("alice")) as alice,
        await WxioClient.connect(core.ws_url, shop("bob")) as bob,
    ):
        assert alice.user_id == "alice" and alice.client_id != bob.client_id
        result = await alice.send(bob.client_id, {"text": "hi"})
        assert result.status == "delivered" and result.delivered == 1 and result.msg_id
        assert result.guarantee == "until_acked"  # bob has a user id
        got = await bob.receive(timeout=5)
        assert got.action == "exchange"
        assert got.payload == {"text": "hi"}
        assert got.sender == alice.client_id and got.user_id == "alice"
        assert got.msg_id == result.msg_id


async def test_hmac_scheme(core: RunningServer) -> None:
    creds = Credentials("mac", "mac-key", scheme="hmac", user_id="m1")
    async with (
        await WxioClient.connect(core.url, creds) as a,
        await WxioClient.connect(core.url, Credentials("mac", "mac-key", scheme="hmac")) as b,
    ):
        assert (await a.send(b.client_id, [1, 2])).status == "delivered"
        assert (await b.receive(timeout=5)).payload == [1, 2]
        assert await a.request_id() == a.client_id
        await a.ping()


async def test_request_id_broadcast_and_callbacks(core: RunningServer) -> None:
    seen: list[Message] = []
    got_async = asyncio.Event()

    async def on_async(message: Message) -> None:
        got_async.set()

    async with (
        await WxioClient.connect(core.url, shop("a")) as a,
        await WxioClient.connect(core.url, shop("b")) as b,
        await WxioClient.connect(core.url, shop()) as c,
    ):
        b.on("broadcast", seen.append)
        b.on(None, on_async)
        assert await a.request_id() == a.client_id
        assert await a.broadcast({"all": True}) == 2
        for other in (b, c):
            message = await other.receive(timeout=5)
            assert message.action == "broadcast" and message.payload == {"all": True}
            assert message.sender == a.client_id
        await asyncio.wait_for(got_async.wait(), 5)
        assert [m.payload for m in seen] == [{"all": True}]


async def test_denials_raise_and_do_not_shift_later_answers(core: RunningServer) -> None:
    async with await WxioClient.connect(core.url, shop("a")) as a:
        with pytest.raises(Denied) as info:
            await a.send("no-such-client", "x")
        assert info.value.reason == "target_offline"
        # Many requests in a row, some denied: each gets its own answer.
        outcomes = await asyncio.gather(
            a.request_id(),
            a.send("nobody", 1),
            a.ping(),
            a.send(a.client_id, "self"),
            return_exceptions=True,
        )
        assert outcomes[0] == a.client_id
        assert isinstance(outcomes[1], Denied) and outcomes[1].reason == "target_offline"
        assert outcomes[2] is None
        assert not isinstance(outcomes[3], BaseException) and outcomes[3].status == "delivered"
    async with await WxioClient.connect(core.url, Credentials("quiet", "quiet-key")) as q:
        with pytest.raises(Denied) as info:
            await q.broadcast("no")
        assert info.value.reason == "not_allowed"


async def test_refused_connect_says_why(core: RunningServer) -> None:
    with pytest.raises(Denied) as info:
        await WxioClient.connect(core.url, Credentials("shop", "wrong-key"))
    assert info.value.reason == "bad_signature" and info.value.status == 4001
    with pytest.raises(Denied) as info:
        await WxioClient.connect(core.url, Credentials("nope", "x"))
    assert info.value.reason == "bad_signature"


async def nothing_before_a_marker(sender: WxioClient, client: WxioClient) -> None:
    """Proves that nothing (more) reaches ``client``: a marker sent now is the next it gets."""
    assert (await sender.send(client.client_id, "marker")).status == "delivered"
    assert (await client.receive(timeout=5)).payload == "marker"


async def test_inbox_is_acked_and_deduplicated(core: RunningServer) -> None:
    async with await WxioClient.connect(core.url, shop("sender")) as sender:
        away = await WxioClient.connect(core.url, shop("u1"))
        old_id = away.client_id
        await away.close()
        assert away.closed
        await gone(core, "shop", old_id)
        queued = [await sender.send(old_id, {"n": i}) for i in range(3)]
        assert [r.status for r in queued] == ["queued"] * 3

        # Back without acking: delivered, but left in the inbox.
        lazy = await WxioClient.connect(core.url, shop("u1"), auto_ack=False)
        first = [await lazy.receive(timeout=5) for _ in range(3)]
        assert [m.payload for m in first] == [{"n": 0}, {"n": 1}, {"n": 2}]
        # reConnectAndUpdates on a connection that has the inbox: nothing is handed over twice.
        assert await lazy.reconnect_and_update(old_id) == [old_id]
        await nothing_before_a_marker(sender, lazy)
        await lazy.close()
        await gone(core, "shop", lazy.client_id)

        # Back again, remembering what was handed over: the inbox comes again (never acked) and
        # is acked now, but not handed over a second time.
        back = await WxioClient.connect(core.url, shop("u1"), seen=lazy.seen)
        await nothing_before_a_marker(sender, back)
        assert back.duplicates == 4  # the three, and the marker ``lazy`` got and did not ack
        await back.close()
        await gone(core, "shop", back.client_id)
        # Without that memory the same connect would hand them over again: but they were acked.
        back = await WxioClient.connect(core.url, shop("u1"))
        assert await back.reconnect_and_update([old_id]) == [old_id]
        # And on a connection whose inbox was acked: nothing comes.
        await nothing_before_a_marker(sender, back)
        # A message to the old id now reaches the new connection directly.
        assert (await sender.send(old_id, "direct")).status == "delivered"
        assert (await back.receive(timeout=5)).payload == "direct"
        await back.close()
        await gone(core, "shop", back.client_id)

        # Every message was acked: nothing is left for the next connection.
        last = await WxioClient.connect(core.url, shop("u1"))
        await nothing_before_a_marker(sender, last)
        await last.close()


async def test_iteration_ends_when_the_connection_closes(core: RunningServer) -> None:
    a = await WxioClient.connect(core.url, shop("a"))
    b = await WxioClient.connect(core.url, shop("b"))
    await a.send(b.client_id, "one")

    first = asyncio.Event()

    async def collect() -> list[Any]:
        got = []
        async for m in b:
            got.append(m.payload)
            first.set()
        return got

    task = asyncio.create_task(collect())
    await asyncio.wait_for(first.wait(), 5)
    await b.close()
    assert await asyncio.wait_for(task, 5) == ["one"]
    with pytest.raises(ConnectionClosed):
        await b.ping()
    await a.close()


async def test_pacing_keeps_a_burst_under_the_server_limit(start_server: StartServer) -> None:
    # The server allows 5 messages a second, 5 at once, per connection.
    server = await start_server(apps={"slow": {"key": "k", "rate": 5, "burst": 5}})
    creds = Credentials("slow", "k")
    # Unpaced, 8 pings in a row overrun it (the control: pacing is what makes the difference).
    async with await WxioClient.connect(server.url, creds) as fast:
        with pytest.raises(Denied) as info:
            for _ in range(8):
                await fast.ping()
        assert info.value.reason == "rate_limited"
    # Paced a little under the server's limit (arrival jitter only ever helps the server's
    # bucket), the same burst is never refused.
    async with await WxioClient.connect(server.url, creds, rate=4, burst=4) as paced:
        for _ in range(8):
            await paced.ping()


async def test_receipts(core: RunningServer) -> None:
    """``send(..., receipt=True)``: the receipt comes when the target (this client, which acks
    such a message also without a user id) acknowledges it; to the callbacks and
    ``wait_receipt``, before or after it came."""
    from wxio.client import Receipt

    async with (
        await WxioClient.connect(core.url, shop("alice")) as alice,
        await WxioClient.connect(core.url, shop()) as anon,
    ):
        heard: list[Message] = []
        alice.on("receipt", heard.append)
        sent = await alice.send(anon.client_id, "read?", receipt=True)
        assert sent.status == "delivered" and sent.guarantee == "sent"
        got = await anon.receive(timeout=5)
        assert got.envelope["meta"]["receipt"] is True
        receipt = await alice.wait_receipt(sent.msg_id, timeout=5)
        assert receipt == Receipt(sent.msg_id, "acked", receipt.acked_at, anon.client_id)
        assert receipt.acked_at > 0
        assert [m.receipt for m in heard] == [receipt]
        assert (await alice.receive(timeout=5)).receipt == receipt  # the iterator's too
        # Already there: answered at once.
        assert await alice.wait_receipt(sent.msg_id, timeout=0) == receipt
        # Not asked: none comes.
        plain = await alice.send(anon.client_id, "plain")
        await anon.receive(timeout=5)
        with pytest.raises(TimeoutError):
            await alice.wait_receipt(plain.msg_id, timeout=0.2)
        # To a user: the receipt is kept for alice until acked (she acks it, automatically).
        async with await WxioClient.connect(core.url, shop("bob")) as bob:
            sent = await alice.send(bob.client_id, "to bob", receipt=True)
            assert sent.guarantee == "until_acked"
            assert (await bob.receive(timeout=5)).payload == "to bob"
            receipt = await alice.wait_receipt(sent.msg_id, timeout=5)
            assert receipt.target == bob.client_id
        assert core.hub is not None
        for _ in range(100):
            if not core.hub.inbox.sizes(now=core.hub.clock()):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail(f"left in the inboxes: {core.hub.inbox.sizes(now=core.hub.clock())}")  # type: ignore[attr-defined]
