"""Headless Chromium (Debian's ``chromium``, driven by Playwright for Python; no browser is
ever downloaded): the JS client in a page, and the dashboard's two-tab "try it" panel.

``.ci/run`` installs chromium when it is missing. ``WXIO_UPDATE_SCREENSHOT=1`` writes the
dashboard screenshot to docs/img/dashboard.png (otherwise to the test's temporary folder)."""

from __future__ import annotations

import asyncio
import os
import shutil
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
from .jspeer import JsPeer, requires_node

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


@pytest.fixture
async def demo_server() -> AsyncIterator[str]:
    """``wxio serve`` with no apps: the demo app, and the dashboard on."""
    hub = Hub(AppRegistry.demo(environ={"WXIO_DEMO_KEY": KEY}))
    app = build_app(ServerConfig(), SocketIOServer(ServerConfig().socketio), hub=hub)
    http = HttpServer(app, header_timeout=10, shutdown_timeout=1.0)
    port = await http.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
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
    await one.wait_for_timeout(1500)  # a couple of refreshes for the rate line
    target = (
        ROOT / "docs" / "img" / "dashboard.png"
        if os.environ.get("WXIO_UPDATE_SCREENSHOT") == "1"
        else tmp_path / "dashboard.png"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    await one.screenshot(path=str(target), full_page=True)
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
