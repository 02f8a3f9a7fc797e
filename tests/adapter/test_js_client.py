"""The wxio JS client (clients/js) as a mini program: dist/wxio.js loaded with
loadMiniprogramModule under the wx shim (tests/js/sdk_peer.js), against a real server."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from wxio.adapter.app import build_app
from wxio.adapter.config import ServerConfig
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.backplane import MemoryBackplane
from wxio.adapter.core.hub import Hub
from wxio.adapter.http import HttpServer
from wxio.adapter.sio import SocketIOServer

from .conftest import RunningServer, StartServer, free_port
from .jspeer import JsPeer, requires_node

pytestmark = [requires_node, pytest.mark.node]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "clients" / "js"
KEY = "sdk-test-key"
APPS = {"demo": {"key": KEY, "client_broadcast": True}}


def test_dist_is_built_from_src() -> None:
    """dist/wxio.js, dist/wxio.mjs and adapter/static/wxio.js are what src/ builds."""
    result = subprocess.run(
        ["node", str(CLIENT_DIR / "build.js"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_client_unit_tests() -> None:
    result = subprocess.run(
        ["node", "--test", str(CLIENT_DIR / "test")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


async def sdk_peer() -> JsPeer:
    return await JsPeer.start("wxio", script="sdk_peer.js")


async def new_client(
    peer: JsPeer,
    name: str,
    url: str,
    user: str | None = None,
    creds: dict[str, Any] | None = None,
    wait: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Create client ``name`` in ``peer``; returns its first ``connect`` event's data."""
    if creds is None:
        creds = {"app": "demo", "key": KEY}
        if user is not None:
            creds["userId"] = user
    cid = await peer.command("client", name=name, url=url, creds=creds, options=options)
    await peer.expect("done", id=cid)
    if not wait:
        return {}
    return dict((await peer.expect("client", name=name, type="connect", timeout=15))["data"])


async def request(peer: JsPeer, cmd: str, name: str, **fields: Any) -> dict[str, Any]:
    cid = await peer.command(cmd, name=name, **fields)
    return await peer.expect(("sent", "rejected"), id=cid)


async def no_more(peer: JsPeer, seconds: float, **match: Any) -> None:
    with pytest.raises(AssertionError):
        await peer.expect("client", timeout=seconds, **match)


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


@pytest.mark.parametrize("transport", ["ws", "socketio"])
async def test_connect_send_and_broadcast(server: RunningServer, transport: str) -> None:
    peer = await sdk_peer()
    try:
        a = await new_client(peer, "a", server.url, user="ua", transport=transport)
        b = await new_client(peer, "b", server.url, user="ub", transport=transport)
        assert a["id"] != b["id"] and a["userId"] == "ua" and a["reconnected"] is False

        sent = await request(peer, "send", "a", target=b["id"], payload={"text": "hi"})
        assert sent["ev"] == "sent", sent
        assert sent["result"]["status"] == "delivered" and sent["result"]["msgId"]
        assert sent["result"]["guarantee"] == "until_acked"  # b has a user id
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["payload"] == {"text": "hi"}
        assert got["data"]["from"] == a["id"] and got["data"]["userId"] == "ua"
        assert got["data"]["msgId"] == sent["result"]["msgId"]

        cast = await request(peer, "broadcast", "b", payload={"all": 1})
        assert cast["ev"] == "sent" and cast["result"]["delivered"] == 1
        got = await peer.expect("client", name="a", type="broadcast")
        assert got["data"]["payload"] == {"all": 1} and got["data"]["from"] == b["id"]

        refused = await request(peer, "send", "a", target="nobody", payload=1)
        assert refused["ev"] == "rejected" and refused["reason"] == "target_offline"
        deny = await peer.expect("client", name="a", type="deny")
        assert deny["data"]["reason"] == "target_offline"
    finally:
        await peer.close()


@pytest.mark.parametrize("transport", ["ws", "socketio"])
async def test_bad_signature_is_a_deny_with_its_reason_and_no_retry(
    server: RunningServer, transport: str
) -> None:
    peer = await sdk_peer()
    try:
        creds = {"app": "demo", "timestamp": int(time.time() * 1000), "sign": "0" * 32}
        await new_client(peer, "bad", server.url, creds=creds, wait=False, transport=transport)
        deny = await peer.expect("client", name="bad", type="deny", timeout=10)
        assert deny["data"]["reason"] == "bad_signature"
        gone = await peer.expect("client", name="bad", type="disconnect")
        assert gone["data"]["code"] == 4001 and gone["data"]["reason"] == "bad_signature"
        assert gone["data"]["willReconnect"] is False
        await no_more(peer, 1.0, name="bad", type="reconnecting")
        after = await request(peer, "send", "bad", target="x", payload=1)
        assert after["ev"] == "rejected" and after["reason"] == "closed"
    finally:
        await peer.close()


async def test_inbox_after_a_background_cut(server: RunningServer) -> None:
    """onAppHide closes the socket; messages for the old id are queued; onAppShow reconnects,
    claims the old id, gets the inbox once (duplicates dropped) and acknowledges it."""
    assert server.hub is not None
    sender, phone = await sdk_peer(), await sdk_peer()
    try:
        a = await new_client(sender, "a", server.url, user="ua")
        b = await new_client(phone, "b", server.url, user="ub")

        await phone.command("background", cutMs=300)
        gone = await phone.expect("client", name="b", type="disconnect")
        assert gone["data"]["reason"] == "background" and gone["data"]["willReconnect"] is False
        await until(lambda: ("demo", b["id"]) not in server.hub.connections)  # close frame read

        for n in (1, 2):
            sent = await request(sender, "send", "a", target=b["id"], payload={"n": n})
            assert sent["result"]["status"] == "queued", sent
        assert len(await server.hub.inbox.pending("demo", "ub", now=time.time())) == 2

        await asyncio.sleep(0.4)  # past the cut: the shim refuses sockets until foreground
        await phone.command("foreground")
        back = await phone.expect("client", name="b", type="connect", timeout=10)
        assert back["data"]["reconnected"] is True
        assert back["data"]["replaced"] == [b["id"]]
        got = [await phone.expect("client", name="b", type="exchange") for _ in range(2)]
        assert [g["data"]["payload"] for g in got] == [{"n": 1}, {"n": 2}]
        # The inbox is delivered at connect and again after reConnectAndUpdates, unless the
        # acks got there first: second copies are acknowledged and dropped (how many there are
        # depends on timing; clients/js/test covers the de-duplication itself).
        await no_more(phone, 1.0, name="b", type="exchange")
        assert await server.hub.inbox.pending("demo", "ub", now=time.time()) == []
        cid = await phone.command("stats", name="b")
        stats = (await phone.expect("stats", id=cid))["stats"]
        assert stats["received"] == 2 + stats["duplicates"] == stats["acks"]
        assert stats["reconnects"] == 1

        # The old id now routes to the new connection.
        sent = await request(sender, "send", "a", target=b["id"], payload={"n": 3})
        assert sent["result"]["status"] == "delivered"
        got3 = await phone.expect("client", name="b", type="exchange")
        assert got3["data"]["payload"] == {"n": 3} and got3["data"]["from"] == a["id"]
    finally:
        await sender.close()
        await phone.close()


async def test_server_restart_reconnects_with_backoff_and_rebinds() -> None:
    """The server goes away and comes back on the same port with the same shared state (as
    a cluster's Redis keeps it): the client retries with growing delays, then claims its old
    id, so a message sent to that id reaches it."""
    backplane = MemoryBackplane()
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def start() -> HttpServer:
        hub = Hub(AppRegistry.from_config(APPS, environ={}), backplane=backplane)
        app = build_app(ServerConfig(), SocketIOServer(ServerConfig().socketio), hub=hub)
        http = HttpServer(app, header_timeout=10, shutdown_timeout=1.0)
        await http.start("127.0.0.1", port)
        return http

    http = await start()
    peer = await sdk_peer()
    try:
        b = await new_client(
            peer, "b", url, user="ub", minDelay=200, maxDelay=800, jitter=0, pingInterval=0
        )
        await http.stop()
        gone = await peer.expect("client", name="b", type="disconnect", timeout=10)
        assert gone["data"]["willReconnect"] is True
        delays = [
            (await peer.expect("client", name="b", type="reconnecting", timeout=5))["data"]["delay"]
            for _ in range(4)
        ]
        assert delays == [200, 400, 800, 800]
        http = await start()
        back = await peer.expect("client", name="b", type="connect", timeout=10)
        assert back["data"]["reconnected"] is True and back["data"]["replaced"] == [b["id"]]

        a = await new_client(peer, "a", url, user="ua")
        sent = await request(peer, "send", "a", target=b["id"], payload="after restart")
        assert sent["result"]["status"] == "delivered"
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["payload"] == "after restart" and got["data"]["from"] == a["id"]
    finally:
        await peer.close()
        await http.stop()


async def test_connect_timeout_closes_the_socket_before_retrying() -> None:
    """A server that accepts TCP and never answers: every attempt times out (wx.connectSocket
    gets the same timeout, and the client closes the socket itself, for browsers), no socket is
    left dialing (a mini program has 5), and the retries go on."""
    held: list[asyncio.StreamWriter] = []  # kept referenced, so the connections stay open
    silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    peer = await sdk_peer()
    try:
        await new_client(
            peer,
            "c",
            f"http://127.0.0.1:{port}",
            wait=False,
            connectTimeout=150,
            minDelay=20,
            maxDelay=40,
            jitter=0,
        )
        for attempt in range(1, 8):
            event = await peer.expect("client", name="c", type="reconnecting", timeout=5)
            assert event["data"]["attempt"] == attempt
            assert event["data"]["reason"] == "connect timeout"
        cid = await peer.command("stats", name="c")
        assert (await peer.expect("stats", id=cid))["sockets"] <= 1
    finally:
        await peer.close()
        silent.close()


async def test_a_busy_receiver_is_not_cut_off_for_acknowledging(server: RunningServer) -> None:
    """Every message to a user waits for its ack, and the client acks each one: a receiver of
    a burst from several senders must not be rate limited (then closed) for acknowledging."""
    import aiohttp
    from wxio.protocol.signing import md5_sign

    ts = int(time.time() * 1000)
    sign = md5_sign("demo", KEY, ts)
    query = f"app=demo&timestamp={ts}&sign={sign}"
    async with aiohttp.ClientSession() as session:
        rx = await session.ws_connect(f"{server.ws_url}/ws?{query}&userId=rx")
        rx_id = (await rx.receive_json())["meta"]["client"]
        senders = [
            await session.ws_connect(f"{server.ws_url}/ws?{query}&userId=s{i}") for i in range(3)
        ]
        meta = {"app": "demo", "timestamp": ts, "sign": sign, "target": rx_id}
        for tx in senders:
            await tx.receive_json()
            for _ in range(40):  # each sender within its own burst
                await tx.send_json({"meta": meta, "data": {"action": "sendToOthers"}})
        received = 0
        while received < 120:
            msg = await asyncio.wait_for(rx.receive(), 5)
            assert msg.type == aiohttp.WSMsgType.TEXT, f"closed after {received}: {rx.close_code}"
            envelope = msg.json()
            if envelope["data"]["action"] == "exchange":
                received += 1
                ack = {"meta": {"msgId": envelope["meta"]["msgId"]}, "data": {"action": "ack"}}
                await rx.send_json(ack)


# -- backend-issued tokens ------------------------------------------------------------------------

TOKEN_SECRET = "sdk-token-secret-0123456789-0123456789"
TOKEN_GRACE = 2
TOKEN_APPS = {
    "tok": {
        "key": "tok-key",
        "token_secret": TOKEN_SECRET,
        "user_id": "token",
        "token_grace": TOKEN_GRACE,
    }
}


def token_creds(sub: str, ttl: int = 600, **extra: Any) -> dict[str, Any]:
    """Credentials that sdk_peer.js turns into a new HS256 token ``{app, token}`` at every call
    of the credentials callback (as the app's backend would issue it)."""
    return {"app": "tok", "secret": TOKEN_SECRET, "sub": sub, "ttl": ttl, **extra}


@pytest.fixture
async def token_server(start_server: StartServer) -> RunningServer:
    return await start_server(apps=TOKEN_APPS)


async def creds_calls(peer: JsPeer, name: str) -> int:
    """How often the credentials callback of ``name`` has been called so far."""
    calls = 0
    while True:
        try:
            calls = (await peer.expect("creds", name=name, timeout=0.05))["n"]
        except AssertionError:
            return calls


@pytest.mark.parametrize("transport", ["ws", "socketio"])
async def test_token_clients_take_their_user_from_the_server(
    token_server: RunningServer, transport: str
) -> None:
    """{app, token} from the callback: the user id is the token's sub as the server says it,
    the receiver acknowledges (its messages are kept until acked), and sends carry no
    signature the token app would refuse."""
    server = token_server
    assert server.hub is not None
    peer = await sdk_peer()
    try:
        a = await new_client(peer, "a", server.url, creds=token_creds("alice"), transport=transport)
        b = await new_client(peer, "b", server.url, creds=token_creds("bob"), transport=transport)
        assert a["userId"] == "alice" and b["userId"] == "bob" and a["id"] != b["id"]

        sent = await request(peer, "send", "a", target=b["id"], payload={"text": "hi"})
        assert sent["ev"] == "sent", sent
        assert sent["result"]["status"] == "delivered"
        assert sent["result"]["guarantee"] == "until_acked"
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["payload"] == {"text": "hi"}
        assert got["data"]["from"] == a["id"] and got["data"]["userId"] == "alice"
        # acknowledged: nothing of bob's is left waiting
        for _ in range(100):
            if await server.hub.inbox.pending("tok", "bob", now=time.time()) == []:
                break
            await asyncio.sleep(0.05)
        assert await server.hub.inbox.pending("tok", "bob", now=time.time()) == []
        cid = await peer.command("stats", name="b")
        assert (await peer.expect("stats", id=cid))["stats"]["acks"] == 1

        back = await request(peer, "send", "b", target=a["id"], payload="back")
        assert back["ev"] == "sent" and back["result"]["status"] == "delivered"
        got = await peer.expect("client", name="a", type="exchange")
        assert got["data"]["userId"] == "bob"
    finally:
        await peer.close()


async def test_token_inbox_after_a_background_cut_is_acked(token_server: RunningServer) -> None:
    """A token client cut in the background comes back, claims its old id (it knows its user
    from the server now), gets the inbox, acknowledges it; the connection after that gets
    nothing again."""
    server = token_server
    assert server.hub is not None
    sender, phone = await sdk_peer(), await sdk_peer()
    try:
        a = await new_client(sender, "a", server.url, creds=token_creds("alice"))
        b = await new_client(phone, "b", server.url, creds=token_creds("bob"))

        await phone.command("background", cutMs=300)
        gone = await phone.expect("client", name="b", type="disconnect")
        assert gone["data"]["reason"] == "background"
        await until(lambda: ("tok", b["id"]) not in server.hub.connections)
        for n in (1, 2):
            sent = await request(sender, "send", "a", target=b["id"], payload={"n": n})
            assert sent["result"]["status"] == "queued", sent
        assert len(await server.hub.inbox.pending("tok", "bob", now=time.time())) == 2

        await asyncio.sleep(0.4)  # past the cut
        await phone.command("foreground")
        back = await phone.expect("client", name="b", type="connect", timeout=10)
        assert back["data"]["reconnected"] is True and back["data"]["userId"] == "bob"
        assert back["data"]["replaced"] == [b["id"]]
        got = [await phone.expect("client", name="b", type="exchange") for _ in range(2)]
        assert [g["data"]["payload"] for g in got] == [{"n": 1}, {"n": 2}]
        await no_more(phone, 1.0, name="b", type="exchange")
        assert await server.hub.inbox.pending("tok", "bob", now=time.time()) == []

        # Once more to the background and back: the acknowledged inbox does not come again.
        await phone.command("background", cutMs=300)
        await phone.expect("client", name="b", type="disconnect")
        await asyncio.sleep(0.4)
        await phone.command("foreground")
        again = await phone.expect("client", name="b", type="connect", timeout=10)
        assert again["data"]["reconnected"] is True
        await no_more(phone, 1.0, name="b", type="exchange")

        sent = await request(sender, "send", "a", target=b["id"], payload={"n": 3})
        assert sent["result"]["status"] == "delivered"
        got3 = await phone.expect("client", name="b", type="exchange")
        assert got3["data"]["payload"] == {"n": 3} and got3["data"]["userId"] == "alice"
        assert got3["data"]["from"] == a["id"]
    finally:
        await sender.close()
        await phone.close()


@pytest.mark.parametrize("transport", ["ws", "socketio"])
async def test_token_refresh_keeps_the_connection_past_exp(
    token_server: RunningServer, transport: str
) -> None:
    """A 3 s token: the client fetches a new one and sends refresh before exp, again and again;
    the connection outlives the first token's exp and the server's grace, with no deny."""
    server = token_server
    peer = await sdk_peer()
    try:
        b = await new_client(peer, "b", server.url, creds=token_creds("bob"), transport=transport)
        earliest = int(time.time()) + 3  # the first token's exp is at least this...
        a = await new_client(
            peer, "a", server.url, creds=token_creds("alice", ttl=3), transport=transport
        )
        first_exp = int(time.time()) + 3  # ...and at most this
        refreshed = await peer.expect("client", name="a", type="refreshed", timeout=5)
        assert refreshed["data"]["exp"] > earliest  # a new token, minted a second or more later
        # Past the first token's exp and the grace (the sweep runs every second).
        await no_more(
            peer, first_exp + TOKEN_GRACE + 1.5 - time.time(), name="a", type="disconnect"
        )
        assert await creds_calls(peer, "a") >= 2
        sent = await request(peer, "send", "a", target=b["id"], payload="still here")
        assert sent["ev"] == "sent" and sent["result"]["status"] == "delivered", sent
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["userId"] == "alice" and got["data"]["from"] == a["id"]
        with pytest.raises(AssertionError):
            await peer.expect("client", timeout=0.1, name="a", type="deny")
    finally:
        await peer.close()


@pytest.mark.parametrize("transport", ["ws", "socketio"])
async def test_deny_expired_refreshes_at_once(token_server: RunningServer, transport: str) -> None:
    """The callback claims a later exp than the token has: the server's `deny expired` comes,
    and the client refreshes at once, within the grace, instead of reconnecting."""
    server = token_server
    peer = await sdk_peer()
    try:
        creds = token_creds("alice", ttl=2, expIn=600)
        a = await new_client(peer, "a", server.url, creds=creds, transport=transport)
        deny = await peer.expect("client", name="a", type="deny", timeout=6)
        assert deny["data"]["reason"] == "expired"
        await peer.expect("client", name="a", type="refreshed", timeout=TOKEN_GRACE)
        await no_more(peer, TOKEN_GRACE + 1.5, name="a", type="disconnect")
        b = await new_client(peer, "b", server.url, creds=token_creds("bob"), transport=transport)
        sent = await request(peer, "send", "a", target=b["id"], payload="after refresh")
        assert sent["ev"] == "sent", sent
        got = await peer.expect("client", name="b", type="exchange")
        assert got["data"]["from"] == a["id"]
    finally:
        await peer.close()


async def test_failed_refresh_reconnects_with_fresh_credentials(
    token_server: RunningServer,
) -> None:
    """A refresh the server refuses (here: the callback's token names another user) makes the
    client give the socket up and connect again with new credentials."""
    server = token_server
    peer = await sdk_peer()
    try:
        cid = await peer.command(
            "client",
            name="a",
            url=server.url,
            creds=token_creds("alice", ttl=3, subs=["alice", "mallory", "mallory"]),
            options={"minDelay": 50, "jitter": 0},
        )
        await peer.expect("done", id=cid)
        first = (await peer.expect("client", name="a", type="connect", timeout=10))["data"]
        assert first["userId"] == "alice"
        deny = await peer.expect("client", name="a", type="deny", timeout=6)
        assert deny["data"]["reason"] == "not_allowed"
        gone = await peer.expect("client", name="a", type="disconnect", timeout=5)
        assert gone["data"]["willReconnect"] is True
        back = (await peer.expect("client", name="a", type="connect", timeout=10))["data"]
        assert back["userId"] == "mallory" and back["reconnected"] is True
    finally:
        await peer.close()
