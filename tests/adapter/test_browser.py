"""Headless Chromium (Debian's ``chromium``, driven by Playwright for Python; no browser is
ever downloaded): the JS client in a page, and the dashboard's two-tab "try it" panel.

``.ci/run`` installs chromium when it is missing. ``WXIO_UPDATE_SCREENSHOT=1`` writes the
dashboard screenshots to docs/img/dashboard.png (two tabs talking) and dashboard-charts.png (a
minute of traffic charted), otherwise to the test's temporary folder."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from wxio.adapter.app import build_app
from wxio.adapter.config import ServerConfig
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.hub import Hub
from wxio.adapter.http import HttpServer
from wxio.adapter.sio import SocketIOServer

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer, SioClient
from .jspeer import JsPeer, requires_node
from .wire import until

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is in the test extras: make install-test"
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "clients" / "js" / "dist" / "wxio.js"
SIO_BUNDLE = ROOT / "tests" / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = "browser-test-key"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "chromium is not installed (apt-get install chromium; .ci/run does it): "
            "the browser tests must run"
        )
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield chromium
        await chromium.close()


class Clock:
    """The hub's clock, moved by the test (it starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)


async def serve_demo(hub: Hub) -> tuple[HttpServer, str]:
    """``wxio serve`` with no apps: the demo app, and the dashboard on."""
    app = build_app(ServerConfig(), SocketIOServer(ServerConfig().socketio), hub=hub)
    http = HttpServer(app, header_timeout=10, shutdown_timeout=1.0)
    port = await http.start("127.0.0.1", 0)
    return http, f"http://127.0.0.1:{port}"


@pytest.fixture
async def demo_server() -> AsyncIterator[str]:
    http, url = await serve_demo(Hub(AppRegistry.demo(environ={"WXIO_DEMO_KEY": KEY})))
    yield url
    await http.stop()


@pytest.fixture
async def clocked_demo() -> AsyncIterator[tuple[str, Hub, Clock]]:
    """The demo server on a clock the test moves, for the dashboard's history."""
    clock = Clock()
    hub = Hub(AppRegistry.demo(environ={"WXIO_DEMO_KEY": KEY}), clock=clock)
    http, url = await serve_demo(hub)
    yield url, hub, clock
    await http.stop()


# One async function evaluated in the page: two clients talk, a bad signature is denied, and a
# paused client gets what was queued for it once it resumes.
SCENARIO = """async ({url, key, transport}) => {
  const once = (client, event) => new Promise((resolve) => client.once(event, resolve));
  const creds = (userId) => () => Object.assign(wxio.signMd5('demo', key), {userId});
  const opts = transport === 'socketio' ? {transport, io: window.io} : {};
  const a = wxio.connect(url, Object.assign({credentials: creds('alice')}, opts));
  const b = wxio.connect(url, Object.assign({credentials: creds('bob')}, opts));
  const [ca, cb] = await Promise.all([once(a, 'connect'), once(b, 'connect')]);
  const got = once(b, 'exchange');
  const sent = await a.send(cb.id, {text: 'hello from alice'});
  const exchange = await got;
  const gotCast = once(a, 'broadcast');
  const cast = await b.broadcast({text: 'to everyone'});
  const broadcast = await gotCast;

  const bad = wxio.connect(url, Object.assign(
    {credentials: {app: 'demo', timestamp: Date.now(), sign: 'x'}}, opts));
  const [deny, badGone] = await Promise.all([once(bad, 'deny'), once(bad, 'disconnect')]);

  b.pause();
  await new Promise((r) => setTimeout(r, 300));
  const queued = await a.send(cb.id, {text: 'while you were away'});
  const back = once(b, 'connect');
  const later = once(b, 'exchange');
  b.resume();
  const resumed = await back;
  const delivered = await later;
  a.close(); b.close();
  return {
    ids: [ca.id, cb.id], sent: sent.status, exchange: [exchange.from, exchange.payload.text],
    cast: cast.delivered, broadcast: [broadcast.from, broadcast.payload.text],
    deny: deny.reason, badGone: [badGone.code, badGone.willReconnect],
    queued: queued.status, resumed: [resumed.reconnected, resumed.replaced],
    delivered: delivered.payload.text, stats: b.stats,
  };
}"""


@pytest.mark.parametrize("transport", ["ws", "socketio"])
async def test_js_client_in_chromium(
    browser: Any, start_server: StartServer, transport: str
) -> None:
    """The raw endpoint through the browser's WebSocket, and the core namespace through
    socket.io-client 4's browser bundle (``transport: 'socketio'``)."""
    server: RunningServer = await start_server(
        apps={"demo": {"key": KEY, "client_broadcast": True}}
    )
    page = await browser.new_page()
    await page.goto(server.url + "/api/none")  # any page of the server's origin
    await page.add_script_tag(path=str(DIST))
    if transport == "socketio":
        await page.add_script_tag(path=str(SIO_BUNDLE))
    assert await page.evaluate("typeof window.wxio.connect") == "function"
    args = {"url": server.url, "key": KEY, "transport": transport}
    result = await asyncio.wait_for(page.evaluate(SCENARIO, args), 60)  # fail, never hang
    a_id, b_id = result["ids"]
    assert result["sent"] == "delivered"
    assert result["exchange"] == [a_id, "hello from alice"]
    assert result["cast"] == 1 and result["broadcast"] == [b_id, "to everyone"]
    assert result["deny"] == "bad_signature" and result["badGone"] == [4001, False]
    assert result["queued"] == "queued"
    assert result["resumed"] == [True, [b_id]]
    assert result["delivered"] == "while you were away"
    assert result["stats"]["acks"] >= 1


async def test_dashboard_two_tabs_talk(browser: Any, demo_server: str, tmp_path: Path) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    one, two = await context.new_page(), await context.new_page()
    errors: list[str] = []
    for page in (one, two):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(demo_server + "/")
        await page.wait_for_selector("#status.open", timeout=10_000)
    assert await one.inner_text("#mode") == "DEMO MODE"
    two_id = await two.inner_text("#my-id")
    two_user = await two.input_value("#user")

    # The tabs found each other through their hello broadcasts.
    await one.wait_for_selector(f'#peer option[value="{two_id}"]', state="attached")
    await one.select_option("#peer", two_id)
    await one.fill("#text", "hello from tab one")
    await one.click("#send")
    line = two.locator("#log li.in").first
    await line.wait_for(timeout=10_000)
    assert "hello from tab one" in await line.inner_text()
    sent = one.locator("#log li.out").first
    await sent.wait_for()
    assert f"to {two_user}: hello from tab one (delivered)" == await sent.inner_text()

    await two.fill("#text", "hi all")
    await two.click("#broadcast")
    await one.locator("#log li.in", has_text="hi all").wait_for(timeout=10_000)

    # The stats on the page: two raw WebSocket clients of the demo app.
    await one.wait_for_function(
        "document.querySelector('#conn-total').textContent === '2'", timeout=10_000
    )
    cells = await one.locator("#conn-table tbody td").all_text_contents()
    assert cells == ["demo", "ws", "2"]
    await one.wait_for_function(
        "document.querySelector('#action-table tbody').textContent.includes('sendToOthers')"
    )
    assert errors == []
    target = (
        ROOT / "docs" / "img" / "dashboard.png"
        if os.environ.get("WXIO_UPDATE_SCREENSHOT") == "1"
        else tmp_path / "dashboard.png"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    await one.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    await context.close()


async def make_history(url: str, hub: Hub, clock: Clock) -> dict[str, Any]:
    """A minute of traffic from real clients, one history point every 5 s of the hub's clock:
    messages between two raw clients and to an offline user, a socket.io client, a third raw
    client, denials of three kinds. Returns the stats' history."""
    import aiohttp

    signer = Signer("demo", KEY)
    ws = url.replace("http", "ws", 1)

    async def raw(user: str) -> RawClient:
        return await RawClient.connect(ws, signer, user, **signer.auth(user, clock.ms()))

    def inbox_depth() -> int:
        return sum(hub.inbox.sizes(now=clock.now).values())  # type: ignore[attr-defined]

    zoe = await raw("zoe")
    zoe_id = zoe.client_id
    await zoe.close()
    await until(lambda: not hub.connections, what="zoe offline")
    alice, bob = await raw("alice"), await raw("bob")
    clients: list[RawClient | SioClient] = [alice, bob]
    async with aiohttp.ClientSession() as http:
        for step in range(12):
            if step == 3:
                clients.append(await SioClient.connect(url, signer, "carol", ["websocket"]))
            if step == 7:
                clients.append(await raw("dave"))
            for _ in range(step % 4 + 1):
                env = signer.envelope("sendToOthers", "hi", ts=clock.ms(), target=bob.client_id)
                assert (await alice.request(env))["data"]["payload"]["status"] == "delivered"
                got = await bob.recv()
                assert got["data"]["payload"] == "hi"
                await bob.send(signer.envelope("ack", ts=clock.ms(), msgId=got["meta"]["msgId"]))
            if step % 3 == 1:
                env = signer.envelope("sendToOthers", "later", ts=clock.ms(), target=zoe_id)
                assert (await alice.request(env))["data"]["payload"]["status"] == "queued"
            # Bob's acks have no answer: wait until only zoe's messages are left.
            queued = (step + 2) // 3
            await until(lambda q=queued: inbox_depth() == q, what=f"inbox of {queued}")
            denied: list[dict[str, Any]] = []
            if step in (2, 5, 6, 9):
                forged = signer.envelope("requestId", ts=clock.ms())
                forged["meta"]["sign"] = "0" * 32
                denied.append(forged)
            if step in (6, 10):
                denied.append(signer.envelope("requestId", ts=clock.ms() - 600_000))
            if step == 10:
                denied.append(signer.envelope("fly", ts=clock.ms()))
            for env in denied:
                assert (await bob.request(env))["data"]["action"] == "deny"
            clock.now += 5.0
            async with http.get(url + "/dashboard/stats") as res:
                history: dict[str, Any] = (await res.json())["history"]
    for client in clients:
        await client.close()
    return history


async def test_dashboard_charts_the_last_minutes(
    browser: Any, clocked_demo: tuple[str, Hub, Clock], tmp_path: Path
) -> None:
    """A page opened after a minute of traffic charts that minute at once, from the server's
    history: four charts with their series, legends and current values, and nothing failing
    on the page (console, requests, the favicon)."""
    url, hub, clock = clocked_demo
    history = await make_history(url, hub, clock)
    assert len(history["t"]) == 12
    assert history["connections"]["ws"][-1] == 3
    assert history["denials"]["expired"] == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]

    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    async with page.expect_response(lambda r: "favicon" in r.url) as icon:
        await page.goto(url + "/")
    assert (await icon.value).status == 200
    await page.wait_for_selector("#status.open", timeout=10_000)  # the "try it" panel, too
    await page.wait_for_function(
        "document.querySelector('#chart-inbox svg.plot').dataset.points === '12'"
    )

    drawn = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.chart')].map((c) => [c.id, {
          series: [...c.querySelectorAll('svg .series')].map((g) => ({
            name: g.dataset.series, last: Number(g.dataset.last),
            // bars drawn, or vertices of the line
            marks: g.querySelectorAll('rect').length
              || g.querySelector('path[fill="none"]').getAttribute('d').split(/[ML]/).length - 1,
          })),
          legend: [...c.querySelectorAll('.legend li')].map((li) => li.textContent),
          now: c.querySelector('.now').textContent,
          ticks: [...c.querySelectorAll('svg text.tick')].map((t) => t.textContent),
        }]))"""
    )

    def lines(series: dict[str, list[float]]) -> list[dict[str, Any]]:
        """What a line per series of the history looks like: 12 vertices, the last value."""
        return [{"name": k, "last": v[-1], "marks": 12} for k, v in series.items()]

    messages = drawn["chart-messages"]
    assert messages["series"] == lines(history["messages"])
    assert [s["name"] for s in messages["series"]] == ["ack", "sendToOthers"]
    assert messages["legend"] == ["ack0.8 /s", "sendToOthers0.8 /s"]  # 4 of each in 5 s
    assert messages["now"] == "1.6 /s"
    # The x axis spans the minute of history (not ten, where it would be a sliver).
    assert await page.inner_text("h2.section #span") == "minute"
    assert messages["ticks"][-7:] == ["now", "−10s", "−20s", "−30s", "−40s", "−50s", "−1m"]

    connections = drawn["chart-connections"]
    assert connections["series"] == lines(history["connections"])
    assert connections["legend"] == ["socket.io/websocket1", "ws3"]
    assert connections["now"] == "4 open"

    denials = drawn["chart-denials"]
    assert denials["series"] == [
        {"name": "bad_signature", "last": 0, "marks": 4},
        {"name": "expired", "last": 0, "marks": 2},
        {"name": "unknown_action", "last": 0, "marks": 1},
    ]
    assert denials["legend"] == [
        "bad_signature4 in 1 min",
        "expired2 in 1 min",
        "unknown_action1 in 1 min",
    ]
    assert denials["now"] == "7 in 1 min"

    inbox = drawn["chart-inbox"]
    assert inbox["series"] == [{"name": "waiting", "last": 4, "marks": 12}]
    assert history["inbox"] == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    assert inbox["legend"] == ["waiting4"] and inbox["now"] == "4 waiting"

    assert problems == []
    target = (
        ROOT / "docs" / "img" / "dashboard-charts.png"
        if os.environ.get("WXIO_UPDATE_SCREENSHOT") == "1"
        else tmp_path / "dashboard.png"
    )
    await page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    await context.close()


async def test_production_dashboard_behind_basic_auth(
    browser: Any, start_server: StartServer
) -> None:
    """No demo credentials in production: the panel asks for pasted ones, and they work."""
    server = await start_server(
        apps={"shop": {"key": KEY}},
        config=ServerConfig(dashboard=True, dashboard_user="ops", dashboard_password="pw"),
    )
    # (Without credentials the page is a 401: tests/adapter/test_dashboard.py.)
    context = await browser.new_context(http_credentials={"username": "ops", "password": "pw"})
    page = await context.new_page()
    await page.goto(server.url + "/")
    await page.wait_for_selector("#creds:not([hidden])")
    assert await page.inner_text("#mode") == "production"
    assert await page.inner_text("#status") == "disconnected"  # nothing connects by itself
    from wxio.protocol.signing import md5_sign

    ts = await page.evaluate("Date.now()")
    await page.fill("#c-app", "shop")
    await page.fill("#c-ts", str(ts))
    await page.fill("#c-sign", md5_sign("shop", KEY, ts))
    await page.fill("#user", "ops-user")
    await page.click("#connect")
    await page.wait_for_selector("#status.open", timeout=10_000)
    await page.fill("#c-sign", "0" * 32)
    await page.click("#connect")
    await page.locator("#log li.deny", has_text="bad_signature").wait_for(timeout=10_000)
    await context.close()


def tutorial_app_js() -> str:
    """The mini program's app.js from docs/tutorial.md, as a reader copies it."""
    text = (ROOT / "docs" / "tutorial.md").read_text()
    start = text.index("```js", text.index("In `app.js`:")) + len("```js")
    return text[start : text.index("```", start)]


@requires_node
async def test_tutorial_mini_program_talks_to_the_dashboard(
    browser: Any, demo_server: str, tmp_path: Path
) -> None:
    """docs/tutorial.md sections 4 and 5: its app.js, with the client copied next to it, runs
    as a mini program; a dashboard tab lists it, sends to it, and gets its answer."""
    (tmp_path / "utils").mkdir()
    shutil.copy(DIST, tmp_path / "utils" / "wxio.js")
    app_js = tutorial_app_js().replace("http://127.0.0.1:3000", demo_server)
    (tmp_path / "app.js").write_text(app_js)

    page = await browser.new_page()
    await page.goto(demo_server + "/")
    await page.wait_for_selector("#status.open", timeout=10_000)
    peer = await JsPeer.start("wxio", script="sdk_peer.js")
    try:
        cid = await peer.command("app", file=str(tmp_path / "app.js"))
        await peer.expect("done", id=cid)
        option = page.locator("#peer option", has_text="mini program")
        await option.wait_for(state="attached", timeout=10_000)
        await page.select_option("#peer", await option.get_attribute("value"))
        await page.fill("#text", "hello mini program")
        await page.click("#send")
        toast = await peer.expect("toast", timeout=10)
        assert toast["title"] == "hello mini program"
        reply = page.locator("#log li.in", has_text="got it: hello mini program")
        await reply.wait_for(timeout=10_000)
        assert (await reply.inner_text()).startswith("from mini program:")
    finally:
        await peer.close()
