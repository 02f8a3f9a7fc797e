"""The routing core end to end with real clients: raw WebSocket, python-socketio, the HTTP API."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import socketio
import websockets

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer, SioClient, api_post, now_ms
from .wire import until

APPS = {
    "shop": {"key": "shop-key", "api_client_key": True, "client_broadcast": True, "inbox_size": 3},
    "other": {"key": "other-key", "api_client_key": True},
    "strict": {"key": "strict-key", "scheme": "hmac", "api_client_key": True},
    "tiny": {
        "key": "tiny-key",
        "api_client_key": True,
        "max_message_bytes": 400,
        "rate": 5,
        "burst": 5,
    },
}
SHOP = Signer("shop", "shop-key")
OTHER = Signer("other", "other-key")


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


async def detached(core: RunningServer, client_id: str) -> None:
    """The hub has noticed that a client left (polled, not slept)."""
    assert core.hub is not None
    hub = core.hub
    await until(lambda: ("shop", client_id) not in hub.connections, what=f"{client_id} gone")


async def inbox_empty(core: RunningServer, user: str) -> None:
    """Every message in ``user``'s inbox was acknowledged."""
    assert core.hub is not None
    inbox = core.hub.inbox
    await until(
        lambda: not inbox.sizes(now=time.time()).get(("shop", user)),  # type: ignore[attr-defined]
        what=f"{user}'s inbox acknowledged",
    )


def payload(msg: dict[str, Any]) -> Any:
    return msg["data"]["payload"]


def action(msg: dict[str, Any]) -> str:
    return str(msg["data"]["action"])


async def test_request_id_and_exchange_between_raw_sio_and_api(core: RunningServer) -> None:
    raw = await RawClient.connect(core.ws_url, SHOP, user="alice")
    sio = await SioClient.connect(core.url, SHOP, user="bob")
    try:
        saved = await sio.request(SHOP.envelope("requestId"))
        assert action(saved) == "saveId" and saved["meta"]["client"] == sio.client_id
        assert saved["meta"]["userId"] == "bob"

        # socket.io -> raw; meta.client is the server's, whatever the sender wrote.
        result = await sio.request(
            SHOP.envelope(
                "sendToOthers", {"n": 1}, target=raw.client_id, client="forged", userId="mallory"
            )
        )
        assert payload(result)["status"] == "delivered"
        got = await raw.recv()
        assert action(got) == "exchange" and payload(got) == {"n": 1}
        assert got["meta"]["client"] == sio.client_id and got["meta"]["userId"] == "bob"
        assert got["meta"]["msgId"] == payload(result)["msgId"]

        # raw -> socket.io
        await raw.send(SHOP.envelope("sendToOthers", {"n": 2}, target=sio.client_id))
        assert payload(await raw.recv())["status"] == "delivered"
        got = await sio.recv()
        assert payload(got) == {"n": 2} and got["meta"]["client"] == raw.client_id

        # HTTP API -> both
        for target, receiver in ((raw.client_id, raw), (sio.client_id, sio)):
            ts = now_ms()
            status, body = await api_post(
                core.url,
                "transportMessage",
                {
                    "timestamp": ts,
                    "app": "shop",
                    "target": target,
                    "userId": "web",
                    "sign": SHOP.md5(ts),
                    "message": {"push": target},
                },
            )
            assert status == 200 and body["delivered"] is True and body["queued"] is False
            got = await receiver.recv()
            assert payload(got) == {"push": target} and got["meta"]["userId"] == "web"
            assert "client" not in got["meta"]
    finally:
        await raw.close()
        await sio.close()


async def test_broadcast_reaches_every_client_of_the_app_only(core: RunningServer) -> None:
    a = await RawClient.connect(core.ws_url, SHOP, user="a")
    b = await SioClient.connect(core.url, SHOP, user="b")
    c = await RawClient.connect(core.ws_url, SHOP)
    outsider = await RawClient.connect(core.ws_url, OTHER)
    try:
        reply = await a.request(SHOP.envelope("broadcast", {"all": 1}))
        assert payload(reply) == {
            "status": "delivered",
            "msgId": reply["meta"]["msgId"],
            "guarantee": "sent",
            "delivered": 2,
        }
        for client in (b, c):
            got = await client.recv()
            assert action(got) == "broadcast" and payload(got) == {"all": 1}
        ts = now_ms()
        status, body = await api_post(
            core.url,
            "broadcast",
            {"timestamp": ts, "app": "shop", "sign": SHOP.md5(ts), "message": "m"},
        )
        assert status == 200 and body["delivered"] == 3
        for client in (a, b, c):
            assert payload(await client.recv()) == "m"
        # Frames on one connection arrive in order: the outsider's next frame is the answer to
        # its own later request, so neither broadcast (both sent before it) reached it.
        denied = await outsider.request(OTHER.envelope("broadcast", {"x": 1}))
        assert action(denied) == "deny" and payload(denied)["reason"] == "not_allowed"
    finally:
        for client in (a, b, c, outsider):
            await client.close()


async def test_tenants_cannot_reach_each_other(core: RunningServer) -> None:
    shop = await RawClient.connect(core.ws_url, SHOP, user="s")
    other = await RawClient.connect(core.ws_url, OTHER, user="o")
    try:
        denied = await other.request(
            OTHER.envelope("sendToOthers", {"x": 1}, target=shop.client_id)
        )
        assert payload(denied)["reason"] == "target_offline"
        denied = await other.request(OTHER.envelope("requestId", app="shop"))
        assert payload(denied)["reason"] == "unknown_app"
        ts = now_ms()
        status, body = await api_post(
            core.url,
            "transportMessage",
            {
                "timestamp": ts,
                "app": "other",
                "target": shop.client_id,
                "sign": OTHER.md5(ts),
                "message": 1,
            },
        )
        assert status == 404 and body["error"] == "target_offline"
    finally:
        await shop.close()
        await other.close()


@pytest.mark.parametrize(
    "auth,reason",
    [
        ({"sign": "0" * 32}, "bad_signature"),
        ({"app": "nosuchapp"}, "bad_signature"),  # an unknown app is answered as a bad signature
        ({"timestamp": 1}, "bad_signature"),  # sign no longer matches the timestamp
        ({"timestamp": "abc"}, "malformed"),
    ],
)
async def test_raw_connect_refused_with_deny_then_close_code(
    core: RunningServer, auth: dict[str, Any], reason: str
) -> None:
    from urllib.parse import urlencode

    query = {**SHOP.auth("u"), **auth}
    async with websockets.connect(f"{core.ws_url}/ws?{urlencode(query)}") as ws:
        deny = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert action(deny) == "deny" and payload(deny)["reason"] == reason
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == {"bad_signature": 4001, "malformed": 4005}[reason]


async def test_expired_connect_and_expired_message(core: RunningServer) -> None:
    from urllib.parse import urlencode

    old = now_ms() - 301_000
    async with websockets.connect(f"{core.ws_url}/ws?{urlencode(SHOP.auth('u', ts=old))}") as ws:
        deny = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert payload(deny)["reason"] == "expired"
    raw = await RawClient.connect(core.ws_url, SHOP)
    try:
        denied = await raw.request(SHOP.envelope("requestId", ts=old))
        assert payload(denied)["reason"] == "expired"
        bad = SHOP.envelope("requestId")
        bad["meta"]["sign"] = "f" * 32
        assert payload(await raw.request(bad))["reason"] == "bad_signature"
        unsigned = SHOP.envelope("requestId")
        del unsigned["meta"]["sign"]
        assert payload(await raw.request(unsigned))["reason"] == "bad_signature"
        assert action(await raw.request(SHOP.envelope("requestId"))) == "saveId"
    finally:
        await raw.close()


async def test_socketio_connect_refused_with_reason(core: RunningServer) -> None:
    client = SioClient()
    auth = SHOP.auth("u")
    auth["sign"] = "0" * 32
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(core.url, auth=auth, wait_timeout=5)
    assert client.refusals == [
        {
            "message": "bad_signature",
            "data": {"reason": "bad_signature", "message": "bad signature"},
        }
    ]
    await client.sio.disconnect()


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda e: e.update(meta=[]), "meta"),
        (lambda e: e.pop("data"), "data"),
        (lambda e: e["data"].update(action=5), "data.action"),
        (lambda e: e["data"].update(action=""), "data.action"),
        (lambda e: e["meta"].update(timestamp="soon"), "meta.timestamp"),
        (lambda e: e["meta"].update(target={"x": 1}), "meta.target"),
        (lambda e: e["meta"].update(userId=["u"]), "meta.userId"),
        (lambda e: e["meta"].update(client="x" * 200), "meta.client"),
        (lambda e: e["meta"].update(msgId=1.5), "meta.msgId"),
        (lambda e: e["meta"].update(app=["shop"]), "meta.app"),
    ],
)
async def test_malformed_envelopes_are_denied_naming_the_field(
    core: RunningServer, mutate: Any, field: str
) -> None:
    raw = await RawClient.connect(core.ws_url, SHOP)
    try:
        message = SHOP.envelope("sendToOthers", {"x": 1}, target="t")
        mutate(message)
        denied = await raw.request(message)
        assert payload(denied)["reason"] == "malformed"
        assert payload(denied)["message"].startswith(field)
        for junk in ("[1,2", "[]", '"text"', "{" * 40 + "}" * 40):
            assert payload(await raw.request(junk))["reason"] == "malformed"
        assert payload(await raw.request(SHOP.envelope("fly")))["reason"] == "unknown_action"
        assert action(await raw.request(SHOP.envelope("requestId"))) == "saveId"
    finally:
        await raw.close()


async def test_flood_is_rate_limited_and_oversized_is_too_large(core: RunningServer) -> None:
    tiny = Signer("tiny", "tiny-key")
    raw = await RawClient.connect(core.ws_url, tiny)
    bystander = await RawClient.connect(core.ws_url, SHOP)
    try:
        big = tiny.envelope("sendToOthers", "x" * 500, target=raw.client_id)
        assert payload(await raw.request(big))["reason"] == "too_large"
        for _ in range(10):
            await raw.send(tiny.envelope("requestId"))
        replies = [await raw.recv() for _ in range(10)]
        reasons = [payload(r)["reason"] if action(r) == "deny" else action(r) for r in replies]
        assert "rate_limited" in reasons and reasons.count("saveId") <= 5
        # everyone else is still served
        assert action(await bystander.request(SHOP.envelope("requestId"))) == "saveId"
        await asyncio.sleep(0.5)  # tokens come back
        assert action(await raw.request(tiny.envelope("requestId"))) == "saveId"
    finally:
        await raw.close()
        await bystander.close()


async def test_offline_inbox_delivers_on_return_until_acked(core: RunningServer) -> None:
    sender = await SioClient.connect(core.url, SHOP, user="sender")
    mini = await RawClient.connect(core.ws_url, SHOP, user="mini")
    old_id = mini.client_id
    await mini.close()
    await detached(core, old_id)
    try:
        ids = []
        for n in range(4):  # the inbox keeps 3: the first is dropped and the sender told
            result = await sender.request(SHOP.envelope("sendToOthers", {"n": n}, target=old_id))
            assert payload(result)["status"] == "queued"
            ids.append(payload(result)["msgId"])
        assert payload(result)["dropped"] == [ids[0]]

        back = await RawClient.connect(core.ws_url, SHOP, user="mini")
        got = [await back.recv() for _ in range(3)]
        assert [payload(m) for m in got] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert [m["meta"]["msgId"] for m in got] == ids[1:]
        await back.send(SHOP.envelope("ack", msgId=ids[1]))
        # re-bind: the old id now routes to the new connection; what this connection already
        # has (unacknowledged) is not written to it a second time
        updated = await back.request(SHOP.envelope("reConnectAndUpdates", client=old_id))
        assert action(updated) == "reConnectUpdated" and payload(updated) == {"replaced": [old_id]}
        result = await sender.request(SHOP.envelope("sendToOthers", {"live": 1}, target=old_id))
        assert payload(result)["status"] == "delivered"
        assert payload(result)["guarantee"] == "until_acked"  # kept until acknowledged
        live = await back.recv()
        assert payload(live) == {"live": 1}  # the next frame: nothing came twice
        await back.close()  # ids[2:] and the live one are not acknowledged
        await detached(core, back.client_id)
        again = await RawClient.connect(core.ws_url, SHOP, user="mini")
        redelivered = [await again.recv() for _ in range(3)]  # unacked ones come again, in order
        assert [m["meta"]["msgId"] for m in redelivered] == [*ids[2:], live["meta"]["msgId"]]
        for m in redelivered:
            await again.send(SHOP.envelope("ack", msgId=m["meta"]["msgId"]))
        await inbox_empty(core, "mini")
        await again.close()
        await detached(core, again.client_id)
        last = await RawClient.connect(core.ws_url, SHOP, user="mini")
        result = await sender.request(SHOP.envelope("sendToOthers", "fresh", target=old_id))
        assert payload(await last.recv()) == "fresh"  # the first frame: everything was acked
        await last.close()
    finally:
        await sender.close()


async def test_socketio_client_gets_inbox_and_acks_with_callback(core: RunningServer) -> None:
    raw = await RawClient.connect(core.ws_url, SHOP, user="r")
    away = await SioClient.connect(core.url, SHOP, user="wx", transports=["websocket"])
    away_id = away.client_id
    await away.close()
    await detached(core, away_id)
    try:
        result = await raw.request(SHOP.envelope("sendToOthers", {"while": "away"}, target=away_id))
        assert payload(result)["status"] == "queued"
        back = await SioClient.connect(core.url, SHOP, user="wx")
        got = await back.recv()
        assert payload(got) == {"while": "away"}
        await inbox_empty(core, "wx")  # the ack callback reached the server
        back_id = back.client_id
        await back.close()
        await detached(core, back_id)
        again = await SioClient.connect(core.url, SHOP, user="wx")
        # Acked, so not delivered again: the first thing the new connection gets is a message
        # sent after it connected (the inbox, had it held anything, is drained before it).
        await raw.request(SHOP.envelope("sendToOthers", "after", target=again.client_id))
        assert payload(await again.recv()) == "after"
        await again.close()
    finally:
        await raw.close()


async def test_rebind_refuses_another_users_id(core: RunningServer) -> None:
    victim = await RawClient.connect(core.ws_url, SHOP, user="victim")
    victim_id = victim.client_id
    await victim.close()
    thief = await RawClient.connect(core.ws_url, SHOP, user="thief")
    try:
        updated = await thief.request(SHOP.envelope("reConnectAndUpdates", client=victim_id))
        assert payload(updated) == {"replaced": []}
        anon = await RawClient.connect(core.ws_url, SHOP)
        denied = await anon.request(SHOP.envelope("reConnectAndUpdates", client=victim_id))
        assert payload(denied)["reason"] == "not_allowed"
        await anon.close()
    finally:
        await thief.close()


async def test_hmac_app_signs_connect_and_messages_and_refuses_replays(core: RunningServer) -> None:
    strict = Signer("strict", "strict-key", scheme="hmac")
    raw = await RawClient.connect(core.ws_url, strict, user="h")
    try:
        message = strict.envelope("requestId")
        assert action(await raw.request(message)) == "saveId"
        replay = await raw.request(message)
        assert (
            payload(replay)["reason"] == "bad_signature" and "nonce" in payload(replay)["message"]
        )
        tampered = strict.envelope("sendToOthers", {"a": 1}, target="x")
        tampered["data"]["payload"] = {"a": 2}
        assert payload(await raw.request(tampered))["reason"] == "bad_signature"
        md5_style = SHOP.envelope("requestId")
        md5_style["meta"]["app"] = "strict"
        assert payload(await raw.request(md5_style))["reason"] == "bad_signature"
    finally:
        await raw.close()


async def test_http_api_errors(core: RunningServer) -> None:
    ts = now_ms()
    good = {"timestamp": ts, "app": "shop", "target": "nobody", "sign": SHOP.md5(ts), "message": 1}
    assert (await api_post(core.url, "transportMessage", good))[0] == 404
    assert (await api_post(core.url, "transportMessage", {**good, "sign": "x"}))[0] == 401
    assert (await api_post(core.url, "transportMessage", {**good, "app": "nope"}))[1][
        "error"
    ] == "bad_signature"
    assert (
        await api_post(
            core.url,
            "transportMessage",
            {**good, "timestamp": ts - 10**6, "sign": SHOP.md5(ts - 10**6)},
        )
    )[1]["error"] == "expired"
    assert (await api_post(core.url, "transportMessage", {"app": "shop"}))[0] == 400
    status, body = await api_post(core.url, "transportMessage", {**good, "message": "x" * 70_000})
    assert status == 413 and body["error"] == "too_large"
