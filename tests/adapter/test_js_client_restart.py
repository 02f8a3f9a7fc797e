"""The bug report, as its user saw it: the wxio JS client (clients/js/dist/wxio.js, loaded as a
mini program under the wx shim by tests/js/sdk_peer.js) against a real ``wxio serve`` in demo
mode (no [apps]; the demo app's key from WXIO_DEMO_KEY), on the embedded store.

1. B (userId "u-b") goes to the background; A sends to B's id: ``queued``, ``until_acked``;
2. the server is stopped (SIGTERM, or SIGKILL) and started again on the same data directory;
3. B comes back to the foreground.

What must happen: the queued message reaches B once, B's reconnect re-binds its old id
(``replaced`` names it), and A's next send to B's old id is delivered to B.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wxio.protocol.signing import md5_sign

from .jspeer import JsPeer, requires_node
from .singlenode import SingleNode

pytestmark = [requires_node, pytest.mark.node, pytest.mark.slow]

DEMO_KEY = "restart-demo-key"
CREDS_A = {"app": "demo", "key": DEMO_KEY, "userId": "u-a"}
CREDS_B = {"app": "demo", "key": DEMO_KEY, "userId": "u-b"}
# Quick retries for A while the server is down (the default starts at 500 ms, +-50 %).
FAST_RETRY = {"minDelay": 50, "maxDelay": 200, "jitter": 0}


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SingleNode]:
    made = SingleNode(tmp_path, request.param, env={"WXIO_DEMO_KEY": DEMO_KEY})
    yield made
    if made.proc is not None:
        made.stop("kill")
    assert "Traceback" not in made.output()


async def new_client(
    peer: JsPeer, name: str, url: str, creds: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """Create client ``name`` in ``peer``; returns its first ``connect`` event's data."""
    cid = await peer.command("client", name=name, url=url, creds=creds, options=options)
    await peer.expect("done", id=cid)
    return dict((await peer.expect("client", name=name, type="connect", timeout=15))["data"])


async def send(peer: JsPeer, name: str, target: str, payload: Any) -> dict[str, Any]:
    cid = await peer.command("send", name=name, target=target, payload=payload)
    return await peer.expect(("sent", "rejected"), id=cid)


async def until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not in {timeout}s"
        await asyncio.sleep(0.02)


async def online(url: str, user: str) -> bool:
    """GET /api/presence, signed with the demo app's client key (the demo app allows it)."""
    ts = int(time.time() * 1000)
    query = {"app": "demo", "timestamp": str(ts), "sign": md5_sign("demo", DEMO_KEY, ts)}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/api/presence", params={**query, "userId": user}) as response,
    ):
        assert response.status == 200, await response.text()
        return bool((await response.json())["online"])


@pytest.mark.parametrize(
    ("how", "node"),
    [("term", "group"), ("kill", "strict"), ("kill", "group")],
    indirect=["node"],
    ids=["sigterm-group", "sigkill-strict", "sigkill-group-after-commit"],
)
async def test_queued_message_and_old_id_survive_a_restart(how: str, node: SingleNode) -> None:
    await node.start()
    # One peer (one wx shim) each: only B's mini program goes to the background.
    sender = await JsPeer.start("wxio", "sdk_peer.js")
    phone = await JsPeer.start("wxio", "sdk_peer.js")
    try:
        a = await new_client(sender, "a", node.url, CREDS_A, **FAST_RETRY)
        b = await new_client(phone, "b", node.url, CREDS_B)
        assert a["userId"] == "u-a" and b["userId"] == "u-b" and a["id"] != b["id"]
        b_old = b["id"]

        # 1. B goes to the background (the client closes its socket on wx.onAppHide).
        await phone.command("background", cutMs=100)
        gone = await phone.expect("client", name="b", type="disconnect")
        assert gone["data"]["reason"] == "background" and gone["data"]["willReconnect"] is False

        async def b_offline() -> bool:
            return not await online(node.url, "u-b")

        await until(b_offline, "the server never saw B go")
        first = await send(sender, "a", b_old, {"text": "while you were away"})
        assert first["ev"] == "sent", first
        assert first["result"]["status"] == "queued", first
        assert first["result"]["guarantee"] == "until_acked", first
        queued_id = first["result"]["msgId"]

        # 2. The server stops and starts again on the same data directory.
        if how == "kill" and not node.strict:
            # Group mode: what is committed survives SIGKILL; wait until it is in the file.
            async def committed() -> bool:
                return node.kept_rows() >= 1

            await until(committed, "the queued message never reached the file")
        code = node.stop(how)
        assert code == (0 if how == "term" else -signal.SIGKILL)
        dropped = await sender.expect("client", name="a", type="disconnect", timeout=10)
        assert dropped["data"]["willReconnect"] is True
        await node.start()
        back_a = await sender.expect("client", name="a", type="connect", timeout=15)
        assert back_a["data"]["reconnected"] is True
        assert back_a["data"]["replaced"] == [a["id"]]

        # 3. B comes back: its old id is re-bound and the queued message arrives.
        await phone.command("foreground")
        back = await phone.expect("client", name="b", type="connect", timeout=15)
        assert back["data"]["reconnected"] is True and back["data"]["userId"] == "u-b"
        assert back["data"]["replaced"] == [b_old]
        got = await phone.expect("client", name="b", type="exchange", timeout=10)
        assert got["data"]["payload"] == {"text": "while you were away"}
        assert got["data"]["msgId"] == queued_id
        assert got["data"]["from"] == a["id"] and got["data"]["userId"] == "u-a"

        # A's next send to B's old id reaches B's new connection.
        second = await send(sender, "a", b_old, {"text": "welcome back"})
        assert second["ev"] == "sent", second
        assert second["result"]["status"] == "delivered", second
        assert second["result"]["guarantee"] == "until_acked", second
        after = await phone.expect("client", name="b", type="exchange", timeout=10)
        # Delivered in order on one socket: had the queued message come a second time (to the
        # app, not just on the wire), it would be here, before this one.
        assert after["data"]["payload"] == {"text": "welcome back"}, after
        assert after["data"]["msgId"] == second["result"]["msgId"]
        cid = await phone.command("stats", name="b")
        stats = (await phone.expect("stats", id=cid))["stats"]
        assert stats["received"] - stats["duplicates"] == 2, stats  # the app saw two
        assert stats["reconnects"] == 1, stats

        # Both were acknowledged: the inbox empties (nothing comes again at a later restart).
        async def acked() -> bool:
            return node.kept_rows() == 0

        await until(acked, "B's acks never emptied the inbox")
    finally:
        await sender.close()
        await phone.close()
    assert node.stop("term") == 0
