"""Delivery receipts on one node: a ``sendToOthers`` with ``meta.receipt = true`` gets its sender a
``receipt`` envelope once the target acknowledges the message, for raw and socket.io clients,
targets with and without a user id, a target that was offline at the send, a sender that
reconnected meanwhile, and across a restart on the embedded store. Real servers and clients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from wxio.adapter.embedded.backplane import EmbeddedBackplane
from wxio.adapter.embedded.database import StoreOptions

from tests.adapter.conftest import RunningServer, StartServer
from tests.adapter.core_clients import RawClient, Signer, SioClient
from tests.adapter.wire import until

APPS = {"r": {"key": "r-key", "rate": 1000, "burst": 1000}}
R = Signer("r", "r-key")


def payload(message: dict[str, Any]) -> Any:
    return message["data"]["payload"]


def action(message: dict[str, Any]) -> str:
    return str(message["data"]["action"])


async def send(client: RawClient | SioClient, target: str, data: Any, **meta: Any) -> Any:
    result = await client.request(R.envelope("sendToOthers", data, target=target, **meta))
    assert action(result) == "result", result
    return payload(result)


def check_receipt(got: dict[str, Any], msg_id: str, sender: str, target: str) -> None:
    """``got`` is the receipt of ``msg_id``, sent by ``sender`` to ``target``."""
    assert action(got) == "receipt", got
    body = payload(got)
    assert body["msgId"] == msg_id and body["status"] == "acked", got
    assert isinstance(body["ackedAt"], int) and body["ackedAt"] > 0, got
    meta = got["meta"]
    assert meta["client"] == sender and meta["target"] == target, got
    # The receipt is a message of its own (kept for a sender with a user id, acked by its id).
    assert isinstance(meta["msgId"], str) and meta["msgId"] != msg_id, got


async def nothing_but(client: RawClient, marker: Any) -> None:
    """The next frame ``client`` gets is ``marker`` (sent after what must not have come)."""
    got = await client.recv()
    assert payload(got) == marker, got


async def test_raw_receipt_for_a_kept_message(start_server: StartServer) -> None:
    server = await start_server(apps=APPS)
    sender = await RawClient.connect(server.ws_url, R, user="s")
    target = await RawClient.connect(server.ws_url, R, user="t")
    try:
        sent = await send(sender, target.client_id, {"hi": 1}, receipt=True)
        assert sent["status"] == "delivered" and sent["guarantee"] == "until_acked"
        got = await target.recv()
        assert got["meta"]["receipt"] is True and got["meta"]["msgId"] == sent["msgId"]
        await target.send(R.envelope("ack", msgId=sent["msgId"]))
        receipt = await sender.recv()
        check_receipt(receipt, sent["msgId"], sender.client_id, target.client_id)
        assert receipt["meta"]["userId"] == "s"
        # Kept for the sender's user until acknowledged, like any message to it.
        assert server.hub is not None
        pending = await server.hub.inbox.pending("r", "s", now=server.hub.clock())
        assert [e.msg_id for e in pending] == [receipt["meta"]["msgId"]]
        await sender.send(R.envelope("ack", msgId=receipt["meta"]["msgId"]))
        await until(lambda: not server.hub.inbox.sizes(now=server.hub.clock()), what="acked")  # type: ignore[union-attr, attr-defined]
        # Acknowledging again, or acknowledging the receipt, sends nothing more.
        await target.send(R.envelope("ack", msgId=sent["msgId"]))
        assert (await send(target, sender.client_id, "marker"))["status"] == "delivered"
        await nothing_but(sender, "marker")
    finally:
        await sender.close()
        await target.close()


async def test_no_receipt_unless_asked(start_server: StartServer) -> None:
    server = await start_server(apps=APPS)
    sender = await RawClient.connect(server.ws_url, R, user="s")
    target = await RawClient.connect(server.ws_url, R, user="t")
    try:
        sent = await send(sender, target.client_id, "plain")
        got = await target.recv()
        # The seed-compatible envelope: no receipt field for a sender that did not ask.
        assert "receipt" not in got["meta"], got
        assert sorted(got["meta"]) == ["app", "client", "msgId", "target", "timestamp", "userId"]
        await target.send(R.envelope("ack", msgId=sent["msgId"]))
        # `receipt: false` asks for none either.
        sent = await send(sender, target.client_id, "no", receipt=False)
        assert "receipt" not in (await target.recv())["meta"]
        await target.send(R.envelope("ack", msgId=sent["msgId"]))
        assert (await send(target, sender.client_id, "marker"))["status"] == "delivered"
        await nothing_but(sender, "marker")
        # Not a boolean: refused.
        refused = await sender.request(
            R.envelope("sendToOthers", "x", target=target.client_id, receipt="yes")
        )
        assert action(refused) == "deny" and payload(refused)["reason"] == "malformed"
    finally:
        await sender.close()
        await target.close()


async def test_receipt_for_a_target_without_a_user_id(start_server: StartServer) -> None:
    """Sent, not kept: the target's connection remembers the request until the ack."""
    server = await start_server(apps=APPS)
    sender = await RawClient.connect(server.ws_url, R)  # no user id either: only while connected
    target = await RawClient.connect(server.ws_url, R)
    try:
        sent = await send(sender, target.client_id, "hi", receipt=True)
        assert sent["status"] == "delivered" and sent["guarantee"] == "sent"
        got = await target.recv()
        assert got["meta"]["receipt"] is True
        # An ack of another id is no ack of this one.
        await target.send(R.envelope("ack", msgId="not-" + sent["msgId"]))
        assert (await send(target, sender.client_id, "marker"))["status"] == "delivered"
        await nothing_but(sender, "marker")
        await target.send(R.envelope("ack", msgId=sent["msgId"]))
        receipt = await sender.recv()
        check_receipt(receipt, sent["msgId"], sender.client_id, target.client_id)
        assert "userId" not in receipt["meta"]
    finally:
        await sender.close()
        await target.close()


@pytest.mark.parametrize("user", [None, "t"], ids=["no-user", "user"])
async def test_socketio_target_acks_by_callback(
    start_server: StartServer, user: str | None
) -> None:
    """A socket.io target is asked for an ack callback (python-socketio answers it), kept or
    not; a socket.io sender gets the receipt as a responseMessage."""
    server = await start_server(apps=APPS)
    sender = await SioClient.connect(server.url, R, user="s")
    target = await SioClient.connect(server.url, R, user=user)
    try:
        sent = await send(sender, target.client_id, "hi", receipt=True)
        assert sent["guarantee"] == ("sent" if user is None else "until_acked")
        got = await target.recv()
        assert got["meta"]["receipt"] is True
        receipt = await sender.recv()
        check_receipt(receipt, sent["msgId"], sender.client_id, target.client_id)
    finally:
        await sender.close()
        await target.close()


async def test_receipt_after_the_target_comes_back(start_server: StartServer) -> None:
    """The target was offline at the send: queued; the receipt comes when it is back and acks."""
    server = await start_server(apps=APPS)
    sender = await RawClient.connect(server.ws_url, R, user="s")
    away = await RawClient.connect(server.ws_url, R, user="t")
    old = away.client_id
    await away.close()
    assert server.hub is not None
    await until(lambda: ("r", old) not in server.hub.connections, what="target gone")  # type: ignore[union-attr]
    back = None
    try:
        sent = await send(sender, old, "while away", receipt=True)
        assert sent["status"] == "queued"
        back = await RawClient.connect(server.ws_url, R, user="t")
        got = await back.recv()
        assert got["meta"]["msgId"] == sent["msgId"] and got["meta"]["receipt"] is True
        await back.send(R.envelope("ack", msgId=sent["msgId"]))
        check_receipt(await sender.recv(), sent["msgId"], sender.client_id, old)
    finally:
        await sender.close()
        if back is not None:
            await back.close()


async def test_receipt_waits_for_a_sender_that_reconnects(start_server: StartServer) -> None:
    """The sender left before the ack: its receipt is kept in its user's inbox and delivered
    when it connects again (under a new client id)."""
    server = await start_server(apps=APPS)
    sender = await RawClient.connect(server.ws_url, R, user="s")
    target = await RawClient.connect(server.ws_url, R, user="t")
    old = sender.client_id
    again = None
    try:
        sent = await send(sender, target.client_id, "hi", receipt=True)
        await target.recv()
        await sender.close()
        assert server.hub is not None
        await until(lambda: ("r", old) not in server.hub.connections, what="sender gone")  # type: ignore[union-attr]
        await target.send(R.envelope("ack", msgId=sent["msgId"]))
        await until(
            lambda: bool(server.hub.inbox.sizes(now=server.hub.clock())),  # type: ignore[union-attr, attr-defined]
            what="the receipt kept",
        )
        again = await RawClient.connect(server.ws_url, R, user="s")
        check_receipt(await again.recv(), sent["msgId"], old, target.client_id)
    finally:
        await target.close()
        if again is not None:
            await again.close()


async def test_no_receipt_for_a_sender_without_a_user_id_that_left(
    start_server: StartServer,
) -> None:
    server = await start_server(apps=APPS)
    sender = await RawClient.connect(server.ws_url, R)
    target = await RawClient.connect(server.ws_url, R, user="t")
    try:
        sent = await send(sender, target.client_id, "hi", receipt=True)
        await target.recv()
        await sender.close()
        assert server.hub is not None
        await until(
            lambda: ("r", sender.client_id) not in server.hub.connections,  # type: ignore[union-attr]
            what="sender gone",
        )
        await target.send(R.envelope("ack", msgId=sent["msgId"]))
        # Nothing kept anywhere: the target's entry is gone, no receipt waits.
        await until(lambda: not server.hub.inbox.sizes(now=server.hub.clock()), what="acked")  # type: ignore[union-attr, attr-defined]
        await asyncio.sleep(0)  # (the receipt's routing, had it been kept, ran in this turn)
        assert not server.hub.inbox.sizes(now=server.hub.clock())  # type: ignore[attr-defined]
    finally:
        await target.close()


async def test_receipt_request_survives_a_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    """On the embedded store the request is in the kept envelope: a message queued before a
    restart is acknowledged after it, and the sender (back after the restart too) gets its
    receipt from its inbox."""
    first = await start_server(
        apps=APPS, backplane=EmbeddedBackplane(StoreOptions(data_dir=str(tmp_path)))
    )
    sender = await RawClient.connect(first.ws_url, R, user="s")
    away = await RawClient.connect(first.ws_url, R, user="t")
    old_target = away.client_id
    await away.close()
    assert first.hub is not None
    await until(lambda: ("r", old_target) not in first.hub.connections, what="target gone")  # type: ignore[union-attr]
    sent = await send(sender, old_target, "kept", receipt=True)
    assert sent["status"] == "queued"
    old_sender = sender.client_id
    await sender.close()
    await _stop(first)

    second = await start_server(
        apps=APPS, backplane=EmbeddedBackplane(StoreOptions(data_dir=str(tmp_path)))
    )
    back = await RawClient.connect(second.ws_url, R, user="t")
    sender2 = None
    try:
        got = await back.recv()
        assert got["meta"]["msgId"] == sent["msgId"] and got["meta"]["receipt"] is True
        await back.send(R.envelope("ack", msgId=sent["msgId"]))
        assert second.hub is not None
        await until(
            lambda: ("r", "s") in second.hub.inbox.sizes(now=second.hub.clock()),  # type: ignore[union-attr, attr-defined]
            what="the receipt kept for the sender",
        )
        sender2 = await RawClient.connect(second.ws_url, R, user="s")
        check_receipt(await sender2.recv(), sent["msgId"], old_sender, old_target)
    finally:
        await back.close()
        if sender2 is not None:
            await sender2.close()


async def _stop(server: RunningServer) -> None:
    """Stop a server as at shutdown (its store closes cleanly)."""
    await server.runner.stop()
