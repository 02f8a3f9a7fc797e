"""The Admin UI's namespace on a cluster of two ``wxio serve`` processes: an admin connected to one
node sees the sockets of both (``all_sockets``), the ``server_stats`` of both, live events from the
other node, and its commands act on a socket of the other node; its login session is good on
either node (kept in Redis)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import socketio

from .conftest import REDIS_URL
from .procs import Processes

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APPS = {"c": {"key": "c-key"}}
ENV = "CSR_TEST_CLUSTER_ADMIN_PASSWORD"


async def user(url: str) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, namespaces=["/chat"], transports=["websocket"], wait_timeout=5)
    return sio


async def test_admin_sees_and_acts_on_every_node(
    procs: Processes, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "pw")
    tables = {"socketio": {"admin_ui": True, "admin_username": "root", "admin_password_env": ENV}}
    a, b = [
        await procs.start_node(
            node_id,
            redis_url=REDIS_URL,
            prefix=redis_prefix,
            apps=APPS,
            app="tests.cluster.recovery_app:setup",
            extra_tables=tables,
        )
        for node_id in ("adm-a", "adm-b")
    ]
    on_a, on_b = await user(a.url), await user(b.url)
    admin = socketio.AsyncClient(reconnection=False)
    events: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue()

    @admin.on("*", namespace="/admin")  # type: ignore[misc]
    async def any_event(event: str, *args: Any) -> None:
        await events.put((event, list(args)))

    async def next_event(
        name: str, check: Any = lambda args: True, timeout: float = 10
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {name} within {timeout}s")
            try:
                event, args = await asyncio.wait_for(events.get(), left)
            except TimeoutError:
                continue
            if event == name and check(args):
                return args

    try:
        await admin.connect(
            a.url,
            namespaces=["/admin"],
            auth={"username": "root", "password": "pw"},
            transports=["websocket"],
            wait_timeout=5,
        )
        admin_session = await next_event("session")
        sockets = await next_event("all_sockets")
        chat = {s["id"]: s for s in sockets[0] if s["nsp"] == "/chat"}
        sid_a, sid_b = on_a.get_sid("/chat"), on_b.get_sid("/chat")
        assert set(chat) == {sid_a, sid_b}
        assert chat[sid_b]["transport"] == "websocket" and "room1" in chat[sid_b]["rooms"]
        assert chat[sid_b]["clientId"] and "_admin" not in chat[sid_b]["data"]

        servers: set[str] = set()
        while servers != {"adm-a", "adm-b"}:
            servers.add((await next_event("server_stats"))[0]["serverId"])

        # A live event from the other node, then a command carried out there.
        await on_b.call("say", ("room1", "hi"), namespace="/chat", timeout=5)
        got = await next_event("event_received", lambda args: args[1] == sid_b)
        assert got[:3] == ["/chat", sid_b, ["say", "room1", "hi"]]
        await admin.emit("join", ("/chat", "vip", sid_b), namespace="/admin")
        await next_event("room_joined", lambda args: args[:3] == ["/chat", "vip", sid_b])
        await admin.emit("_disconnect", ("/chat", False, sid_b), namespace="/admin")
        gone = await next_event("socket_disconnected", lambda args: args[1] == sid_b)
        assert gone[:3] == ["/chat", sid_b, "server namespace disconnect"]
        deadline = time.monotonic() + 5
        while on_b.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not on_b.connected and on_a.connected

        # The login's session id is taken by the other node too (shared through Redis).
        session = admin_session[0]
        again = socketio.AsyncClient(reconnection=False)
        await again.connect(
            b.url, namespaces=["/admin"], auth={"sessionId": session}, wait_timeout=5
        )
        await again.disconnect()
        refused = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(
                b.url, namespaces=["/admin"], auth={"sessionId": "0" * 32}, wait_timeout=5
            )
    finally:
        for client in (admin, on_a, on_b):
            await client.disconnect()
