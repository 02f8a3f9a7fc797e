"""The dashboard (adapter/dashboard.py) over HTTP: on in demo mode, opt-in with basic auth in
production, demo credentials only in demo mode, the stats it computes, and the history its
charts draw (with an injected clock: time is the subject)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from wxio.adapter.app import build_app
from wxio.adapter.config import ConfigError, ServerConfig
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.hub import Hub
from wxio.adapter.http import HttpServer
from wxio.adapter.sio import SocketIOServer
from wxio.protocol.signing import md5_sign

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer, SioClient
from .wire import until

DEMO_KEY = "dashboard-demo-key"
APPS = {"shop": {"key": "shop-key"}}

Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(registry, **server_config)`` -> base URL of a running server."""
    runners: list[HttpServer] = []

    async def start(registry: AppRegistry, **server: Any) -> str:
        config = replace(ServerConfig(), **server)
        app = build_app(config, SocketIOServer(config.socketio), hub=Hub(registry))
        http = HttpServer(app, header_timeout=10, shutdown_timeout=1.0)
        runners.append(http)
        return f"http://127.0.0.1:{await http.start('127.0.0.1', 0)}"

    yield start
    for runner in runners:
        await runner.stop()


def demo_registry() -> AppRegistry:
    return AppRegistry.demo(environ={"WXIO_DEMO_KEY": DEMO_KEY})


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as res:
        body: Any = await res.json() if res.content_type == "application/json" else await res.text()
        return res.status, body, dict(res.headers)


async def test_demo_mode_serves_page_stats_client_and_demo_credentials(serve: Serve) -> None:
    url = await serve(demo_registry())
    status, page, headers = await get(url + "/")
    assert status == 200 and "/static/wxio.js" in page and "Try it" in page
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    status, script, _ = await get(url + "/static/wxio.js")
    assert status == 200 and "signMd5" in script
    assert (await get(url + "/static/index.html"))[0] == 404  # only listed files

    assert 'rel="icon" href="/static/favicon.svg"' in page
    for path in ("/favicon.ico", "/static/favicon.svg"):  # browsers ask for the first anyway
        status, icon, headers = await get(url + path)
        assert status == 200 and headers["Content-Type"] == "image/svg+xml" and "<svg" in icon

    status, creds, _ = await get(url + "/dashboard/demo-credentials?userId=u1")
    assert status == 200 and creds["app"] == "demo" and creds["userId"] == "u1"
    assert creds["sign"] == md5_sign("demo", DEMO_KEY, creds["timestamp"])
    assert abs(creds["timestamp"] - time.time() * 1000) < 5000

    status, stats, _ = await get(url + "/dashboard/stats")
    assert status == 200 and stats["demo"] is True
    assert stats["connections"] == {"total": 0, "by_app": {}}
    assert stats["cluster"]["nodes"][0]["self"] is True


async def test_production_has_no_dashboard_unless_asked(serve: Serve) -> None:
    url = await serve(AppRegistry.from_config(APPS, environ={}))
    assert (await get(url + "/"))[0] == 404
    assert (await get(url + "/dashboard/stats"))[0] == 404
    assert (await get(url + "/dashboard/demo-credentials"))[0] == 404


async def test_production_dashboard_needs_basic_auth_and_never_signs(serve: Serve) -> None:
    registry = AppRegistry.from_config(APPS, environ={})
    with pytest.raises(ConfigError, match="dashboard_user"):
        await serve(registry, dashboard=True)
    url = await serve(registry, dashboard=True, dashboard_user="ops", dashboard_password="pw")
    status, _, headers = await get(url + "/")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert (await get(url + "/dashboard/stats", basic("ops", "nope")))[0] == 401
    assert (await get(url + "/", basic("ops", "pw")))[0] == 200
    status, stats, _ = await get(url + "/dashboard/stats", basic("ops", "pw"))
    assert status == 200 and stats["demo"] is False
    # The demo-credentials route does not exist in production, authenticated or not.
    assert (await get(url + "/dashboard/demo-credentials", basic("ops", "pw")))[0] == 404


async def test_demo_dashboard_can_be_turned_off(serve: Serve) -> None:
    url = await serve(demo_registry(), dashboard=False)
    assert (await get(url + "/"))[0] == 404


async def test_stats_count_connections_messages_denials_and_inboxes(
    start_server: StartServer,
) -> None:
    """Numbers from the hub's state and counters, through a real raw client."""
    server = await start_server(
        apps={"demo": {"key": DEMO_KEY}},
        config=ServerConfig(dashboard=True, dashboard_user="u", dashboard_password="p"),
    )
    assert server.hub is not None
    ts = int(time.time() * 1000)
    sign = md5_sign("demo", DEMO_KEY, ts)
    query = f"app=demo&timestamp={ts}&sign={sign}"
    async with aiohttp.ClientSession() as session:
        away = await session.ws_connect(f"{server.ws_url}/ws?{query}&userId=away")
        away_id = (await away.receive_json())["meta"]["client"]
        await away.close()
        ws = await session.ws_connect(f"{server.ws_url}/ws?{query}&userId=me")
        await ws.receive_json()
        meta = {"app": "demo", "timestamp": ts, "sign": sign, "target": away_id}
        for _ in range(2):
            await ws.send_json({"meta": meta, "data": {"action": "sendToOthers", "payload": 1}})
            assert (await ws.receive_json())["data"]["payload"]["status"] == "queued"
        await ws.send_json({"meta": {**meta, "sign": "0" * 32}, "data": {"action": "requestId"}})
        assert (await ws.receive_json())["data"]["payload"]["reason"] == "bad_signature"
        async with session.get(server.url + "/dashboard/stats", headers=basic("u", "p")) as res:
            stats = await res.json()
        await ws.close()
    assert stats["connections"] == {"total": 1, "by_app": {"demo": {"ws": 1}}}
    assert stats["messages"]["by_action"] == {"sendToOthers": 2}
    assert stats["denials"] == {"total": 1, "by_reason": {"bad_signature": 1}}
    assert stats["sends"] == {"queued": 2}
    assert stats["inbox"]["messages"] == 2
    assert stats["inbox"]["largest"] == [{"app": "demo", "user": "away", "size": 2}]


class Clock:
    """The hub's clock, moved by the test: starts at the real time, so that signatures made
    with it are the ones a client would make."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)


async def start_clocked(start_server: StartServer, clock: Clock) -> RunningServer:
    return await start_server(
        apps={"demo": {"key": DEMO_KEY}},
        config=ServerConfig(dashboard=True, dashboard_user="u", dashboard_password="p"),
        clock=clock,
    )


async def history(server: RunningServer) -> dict[str, Any]:
    status, stats, _ = await get(server.url + "/dashboard/stats", basic("u", "p"))
    assert status == 200
    assert isinstance(stats["history"], dict)
    return stats["history"]


async def test_history_is_one_point_per_step_over_the_last_ten_minutes(
    start_server: StartServer,
) -> None:
    clock = Clock()
    server = await start_clocked(start_server, clock)
    start = clock.now
    assert await history(server) == {
        "step": 5.0,
        "span": 600.0,
        "t": [],
        "messages": {},
        "connections": {},
        "denials": {},
        "inbox": [],
    }
    clock.now = start + 4.0  # not a step yet
    assert (await history(server))["t"] == []
    clock.now = start + 5.0
    assert (await history(server))["t"] == [start + 5.0]
    assert (await history(server))["t"] == [start + 5.0]  # asking again adds nothing
    for i in range(2, 131):
        clock.now = start + 5.0 * i
        await history(server)
    points = await history(server)
    # 130 points were taken; the newest 120 (ten minutes) are kept.
    assert points["t"] == [start + 5.0 * i for i in range(11, 131)]
    assert points["connections"] == {} and points["inbox"] == [0] * 120
    # After a stop longer than the span, only what is recent is shown.
    clock.now += 900.0
    assert (await history(server))["t"] == [clock.now]


async def test_history_charts_messages_connections_denials_and_inboxes(
    start_server: StartServer,
) -> None:
    """Real clients: a raw WebSocket and a socket.io one, messages queued for an offline user,
    and a denied envelope; each point holds what happened in its step."""
    clock = Clock()
    server = await start_clocked(start_server, clock)
    hub = server.hub
    assert hub is not None
    start = clock.now
    signer = Signer("demo", DEMO_KEY)
    away = await RawClient.connect(server.ws_url, signer, "away", **signer.auth("away", clock.ms()))
    away_id = away.client_id
    await away.close()
    await until(lambda: not hub.connections, what="away offline")
    me = await RawClient.connect(server.ws_url, signer, "me", **signer.auth("me", clock.ms()))
    sio = await SioClient.connect(server.url, signer, "sio", transports=["websocket"])

    def queue_for_away() -> dict[str, Any]:
        return signer.envelope("sendToOthers", {"n": 1}, ts=clock.ms(), target=away_id)

    for _ in range(2):
        assert (await me.request(queue_for_away()))["data"]["payload"]["status"] == "queued"
    forged = signer.envelope("requestId", ts=clock.ms())
    forged["meta"]["sign"] = "0" * 32
    assert (await me.request(forged))["data"]["payload"]["reason"] == "bad_signature"
    clock.now = start + 5.0
    first = await history(server)

    await sio.close()
    await until(lambda: len(hub.connections) == 1, what="socket.io client gone")
    assert (await me.request(queue_for_away()))["data"]["payload"]["status"] == "queued"
    clock.now = start + 10.0
    second = await history(server)
    await me.close()

    assert first["t"] == [start + 5.0]
    assert second == {
        "step": 5.0,
        "span": 600.0,
        "t": [start + 5.0, start + 10.0],
        "messages": {"sendToOthers": [0.4, 0.2]},  # per second: 2, then 1, in 5 s
        "connections": {"socket.io/websocket": [1, 0], "ws": [1, 1]},
        "denials": {"bad_signature": [1, 0]},  # how many in each step
        "inbox": [2, 3],
    }
