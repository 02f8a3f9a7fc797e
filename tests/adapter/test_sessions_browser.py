"""Sessions at the handshake in headless Chromium (Debian's ``chromium``, driven by Playwright;
no browser is downloaded): a web app signs the user in with a form (aiohttp-session's encrypted
cookie, HttpOnly), its page opens a socket.io connection, and a handler reads the user from
``socket.session``; another browser, without the cookie, is refused by the connection
middleware and its page shows the reason.

The web app and wxio share one origin: the app's routes are a sub-application of the aiohttp
application wxio serves, with its own aiohttp-session middleware and the same secret."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp_session import get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet
from wxio.adapter.app import build_app
from wxio.adapter.config import ServerConfig, SessionOptions
from wxio.adapter.http import HttpServer
from wxio.adapter.sio import ConnectContext, ConnectionRefused, EventContext, Next, SocketIOServer

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is in the test extras: make install-test"
)

pytestmark = [
    pytest.mark.slow,
    # aiohttp-session's own request keys are plain strings.
    pytest.mark.filterwarnings("ignore:It is recommended to use web.RequestKey"),
]

ROOT = Path(__file__).resolve().parents[2]
SIO_BUNDLE = ROOT / "tests" / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECRET = Fernet.generate_key().decode()

SIGN_IN_PAGE = """<!doctype html><title>Sign in</title>
<form method="post" action="/site/login">
  <input name="user" autocomplete="off"> <button type="submit">Sign in</button>
</form>"""

CHAT_PAGE = """<!doctype html><title>Chat</title>
<p>user: <span id="me"></span></p><p>error: <span id="error"></span></p>
<script src="/site/socket.io.js"></script>
<script>
  const socket = io('/app', {reconnection: false});
  socket.on('connect', () => socket.emit('hello'));
  socket.on('welcome', (who) => { document.querySelector('#me').textContent = who.user; });
  socket.on('connect_error', (err) => {
    document.querySelector('#error').textContent =
      err.message + (err.data ? ' (' + err.data.reason + ')' : '');
  });
</script>"""


def web_app() -> web.Application:
    """The web backend: a sign-in form that starts the session, and the chat page."""

    async def form(request: web.Request) -> web.Response:
        return web.Response(text=SIGN_IN_PAGE, content_type="text/html")

    async def login(request: web.Request) -> web.Response:
        user = str((await request.post()).get("user", "")).strip()
        if not user:
            raise web.HTTPFound("/site/")
        session = await new_session(request)
        session["user"] = user
        raise web.HTTPFound("/site/chat")

    async def chat(request: web.Request) -> web.Response:
        await get_session(request)  # (a page of the signed-in site; it only reads)
        return web.Response(text=CHAT_PAGE, content_type="text/html")

    async def bundle(request: web.Request) -> web.FileResponse:
        return web.FileResponse(SIO_BUNDLE)

    # The web app's own storage: configured as wxio's [sessions] (the same secret and name).
    site = web.Application(middlewares=[session_middleware(EncryptedCookieStorage(SECRET))])
    site.router.add_get("/", form)
    site.router.add_post("/login", login)
    site.router.add_get("/chat", chat)
    site.router.add_get("/socket.io.js", bundle)
    return site


def handlers(io: SocketIOServer) -> None:
    async def signed_in(ctx: ConnectContext, next: Next) -> None:
        if "user" not in ctx.session:
            raise ConnectionRefused("sign in first", {"reason": "no_session"})
        await next()

    async def hello(ctx: EventContext) -> None:
        ctx.socket.emit("welcome", {"user": ctx.socket.session["user"]})

    io.use(signed_in, namespace="/app")
    io.route("hello", hello, namespace="/app")


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setenv("WXIO_SESSION_SECRET", SECRET)
    config = ServerConfig(sessions=SessionOptions(storage="cookie"))
    io = SocketIOServer(config.socketio)
    handlers(io)
    app = build_app(config, io)
    app.add_subapp("/site", web_app())
    http = HttpServer(app, header_timeout=10, shutdown_timeout=1.0)
    port = await http.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await http.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "chromium is not installed (apt-get install chromium; .ci/run does it): "
            "the browser tests must run"
        )
    if not SIO_BUNDLE.exists():
        pytest.fail("tests/js/node_modules is missing: npm ci --prefix tests/js")
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield chromium
        await chromium.close()


async def text_of(page: Any, selector: str) -> str:
    """The element's text once it has some (never hangs: 10 s at most)."""
    await page.wait_for_function(
        f"document.querySelector('{selector}').textContent !== ''", timeout=10_000
    )
    return str(await page.inner_text(selector))


async def test_a_signed_in_browser_has_its_session_on_the_socket(browser: Any, server: str) -> None:
    signed = await browser.new_context()
    page = await signed.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server + "/site/")
    await page.fill("input[name=user]", "alice")
    await page.click("button[type=submit]")
    await page.wait_for_url(server + "/site/chat")
    assert await asyncio.wait_for(text_of(page, "#me"), 15) == "alice"
    assert await page.inner_text("#error") == ""
    # The identity came from the HttpOnly cookie the form set, not from the page's script.
    assert await page.evaluate("document.cookie") == ""
    (cookie,) = await signed.cookies()
    assert cookie["name"] == "AIOHTTP_SESSION" and cookie["httpOnly"] is True

    stranger = await browser.new_context()
    other = await stranger.new_page()
    other.on("pageerror", lambda exc: errors.append(str(exc)))
    await other.goto(server + "/site/chat")
    assert await asyncio.wait_for(text_of(other, "#error"), 15) == "sign in first (no_session)"
    assert await other.inner_text("#me") == ""
    assert errors == []
    await signed.close()
    await stranger.close()
