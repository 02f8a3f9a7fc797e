"""The Socket.IO Admin UI (``@socket.io/admin-ui`` 0.5.1, its built UI from npm) against wxio, in
headless Chromium: it is served at ``/admin/``, logs in with basic auth, shows the connected
sockets and their rooms, and an operator disconnects a socket from it. Also the ``/admin``
namespace as a socket.io-client sees it: refused credentials, ``config``, ``all_sockets``,
``server_stats``, the live events, and the operator commands."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import socketio
from wxio.adapter.config import ConfigError, SocketIOOptions
from wxio.adapter.sio import SocketIOServer
from wxio.adapter.sio.admin import admin_from_options

from .conftest import RunningServer, StartServer
from .jspeer import JS_DIR, JsPeer, requires_node

UI_DIR = JS_DIR / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD_ENV = "WXIO_TEST_ADMIN_PASSWORD"
PASSWORD = "correct horse battery staple"

requires_ui = pytest.mark.skipif(
    not (UI_DIR / "index.html").is_file(), reason="npm ci --prefix tests/js installs the admin UI"
)


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


def chat(io: SocketIOServer) -> None:
    nsp = io.of("/")

    @nsp.on("join")
    def join(socket: Any, room: str) -> None:
        socket.join(room)

    @nsp.on("ping_me")
    def ping_me(socket: Any) -> None:
        socket.emit("pong_you", 1)


async def admin_server(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> RunningServer:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    socketio_options = {
        "admin_ui": True,
        "admin_username": "admin",
        "admin_password_env": PASSWORD_ENV,
        "admin_ui_dir": str(UI_DIR),
        **options,
    }
    return await start_server(socketio=socketio_options, setup=chat)


async def admin_event(peer: JsPeer, name: str, *head: Any) -> list[Any]:
    """The next ``name`` event to the admin socket "ok" whose arguments start with ``head``."""
    while True:
        args = list((await peer.expect("event", sock="ok", name=name))["args"])
        if args[: len(head)] == list(head):
            return args


async def user(url: str, room: str | None = None) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, transports=["websocket"], wait_timeout=5)
    if room is not None:
        await sio.call("join", room, timeout=5)
    return sio


@requires_ui
async def test_the_real_ui_in_chromium(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    server = await admin_server(start_server, monkeypatch)
    alice = await user(server.url, room="lobby")
    bob = await user(server.url)
    nsp = server.io.of("/")
    origin = server.url
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            # Offline: the UI's web fonts and icon font come from CDNs; nothing else may leave.
            await page.route(
                "**/*",
                lambda route: (
                    route.continue_() if route.request.url.startswith(origin) else route.abort()
                ),
            )
            await page.goto(f"{origin}/admin/")
            await page.get_by_label("Server URL").fill(origin)
            await page.get_by_label("Username").fill("admin")
            await page.get_by_label("Password").fill("wrong")
            await page.get_by_role("button", name="Connect").click()
            await page.get_by_text("invalid credentials").wait_for(timeout=10_000)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Connect").click()
            await page.get_by_text(re.compile("^connected$", re.I)).first.wait_for(timeout=10_000)

            await page.goto(f"{origin}/admin/#/sockets/")
            for client in (alice, bob):
                await page.get_by_text(client.get_sid("/"), exact=True).wait_for(timeout=10_000)
            await page.goto(f"{origin}/admin/#/rooms/")
            await page.get_by_text("lobby", exact=True).wait_for(timeout=10_000)

            # The operator disconnects bob with the button of his row in the sockets list (an
            # icon button: the icon font is not loaded offline, the icon's class is there).
            bob_sid = bob.get_sid("/")
            await page.goto(f"{origin}/admin/#/sockets/")
            row = page.locator("tr", has_text=bob_sid)
            await row.locator("button:has(.mdi-logout)").click(timeout=10_000)
            await eventually(lambda: bob_sid not in nsp.sockets, "bob disconnected by the UI")
            await eventually(lambda: not bob.connected, "bob told so")
            assert alice.get_sid("/") in nsp.sockets
        finally:
            await browser.close()
            await alice.disconnect()
            await bob.disconnect()


@requires_node
@pytest.mark.node
async def test_the_admin_namespace(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await admin_server(start_server, monkeypatch, admin_ui_dir="")
    alice = await user(server.url, room="lobby")
    peer = await JsPeer.start("sio4")
    try:
        cid = await peer.command(
            "connect",
            url=server.url,
            nsp="/admin",
            opts={"auth": {"username": "admin", "password": "nope"}, "reconnection": False},
        )
        await peer.expect("done", id=cid)
        refused = await peer.expect("connect_error")
        assert refused["message"] == "invalid credentials"

        await peer.connect(
            server.url,
            nsp="/admin",
            sock="ok",
            auth={"username": "admin", "password": PASSWORD},
            transports=["websocket"],
        )
        session = (await peer.expect("event", sock="ok", name="session"))["args"][0]
        config = (await peer.expect("event", sock="ok", name="config"))["args"][0]
        assert {"JOIN", "LEAVE", "DISCONNECT", "MJOIN", "ALL_EVENTS"} <= set(
            config["supportedFeatures"]
        )
        sockets = (await peer.expect("event", sock="ok", name="all_sockets"))["args"][0]
        mine = next(s for s in sockets if s["id"] == alice.get_sid("/"))
        assert mine["nsp"] == "/" and "lobby" in mine["rooms"] and mine["transport"] == "websocket"
        assert set(mine["handshake"]) >= {"address", "headers", "query", "issued", "time", "url"}
        stats = await peer.expect("event", sock="ok", name="server_stats", timeout=5)
        stats = stats["args"][0]
        assert (
            stats["clientsCount"] >= 2 and {"name": "/", "socketsCount": 1} in stats["namespaces"]
        )

        # A reconnection with the session id needs no password.
        await peer.connect(
            server.url, nsp="/admin", sock="again", auth={"sessionId": session}, forceNew=True
        )

        # Live events, then the operator commands.
        await alice.call("join", "kitchen", timeout=5)
        joined = await admin_event(peer, "room_joined", "/")
        assert joined[:3] == ["/", "kitchen", alice.get_sid("/")]
        await alice.emit("ping_me")
        got = await admin_event(peer, "event_received", "/", alice.get_sid("/"), ["ping_me"])
        assert isinstance(got[3], str) and got[3].endswith("Z")  # a JSON Date
        await admin_event(peer, "event_sent", "/", alice.get_sid("/"), ["pong_you", 1])

        # A client that starts on polling and upgrades: socket_updated tells the new transport.
        carol = await peer.connect(server.url, sock="carol", transports=["polling", "websocket"])
        connected = await admin_event(peer, "socket_connected")
        while connected[0]["id"] != carol["sid"]:
            connected = await admin_event(peer, "socket_connected")
        assert connected[0]["transport"] == "polling"
        update = {"id": carol["sid"], "nsp": "/", "transport": "websocket"}
        await admin_event(peer, "socket_updated", update)

        sid = alice.get_sid("/")
        await peer.emit("join", "/", "garden", sid, sock="ok")
        await eventually(lambda: "garden" in server.io.of("/").sockets[sid].rooms, "joined")
        await peer.emit("leave", "/", "garden", sid, sock="ok")
        await eventually(lambda: "garden" not in server.io.of("/").sockets[sid].rooms, "left")
        await peer.emit("_disconnect", "/", False, sid, sock="ok")
        await admin_event(peer, "socket_disconnected", "/", sid, "server namespace disconnect")
    finally:
        await peer.close()
        await alice.disconnect()


async def test_a_bcrypt_hash_as_password(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    monkeypatch.setenv(PASSWORD_ENV, hashed)
    server = await start_server(
        socketio={
            "admin_ui": True,
            "admin_username": "admin",
            "admin_password_env": PASSWORD_ENV,
        }
    )
    for password, ok in (("nope", False), (hashed, False), (PASSWORD, True)):
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(
                server.url,
                namespaces=["/admin"],
                auth={"username": "admin", "password": password},
                wait_timeout=5,
            )
            assert ok, password
        except socketio.exceptions.ConnectionError:
            assert not ok, password
        finally:
            await client.disconnect()


def test_config_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match="admin_username"):
        SocketIOServer(SocketIOOptions(admin_ui=True))
    with pytest.raises(ConfigError, match="is not set"):
        SocketIOServer(
            SocketIOOptions(admin_ui=True, admin_username="a", admin_password_env=PASSWORD_ENV)
        )
    io = SocketIOServer(SocketIOOptions(admin_ui=True, admin_auth=False))
    assert io.admin is not None and io.admin.nsp.name == "/admin"
    assert admin_from_options(SocketIOServer(), SocketIOOptions()) is None
