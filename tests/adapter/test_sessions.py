"""Web sessions at the handshake (``socket.session``, ``ctx.session``): a real aiohttp web app
signs users in with aiohttp-session, a real wxio server reads the session of the request that
opened each connection, python-socketio and socket.io-client 2.x connect with the cookies.

Storages: the encrypted cookie, Redis (the real server), the embedded store, and koa-session's
signed cookie as the npm package writes it (egg-session's format). A missing, tampered or foreign
cookie, a storage that fails or hangs: the connection has no session, and is never refused for
it (only the application's middleware refuses)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import pickle
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from aiohttp_session import AbstractStorage, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from aiohttp_session.redis_storage import RedisStorage
from cryptography.fernet import Fernet
from wxio.adapter.app import build_app
from wxio.adapter.config import ConfigError, ServerConfig, SessionOptions, load
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.hub import Hub
from wxio.adapter.embedded.backplane import EmbeddedBackplane
from wxio.adapter.embedded.database import StoreOptions
from wxio.adapter.http import HttpServer
from wxio.adapter.sio import ConnectContext, ConnectionRefused, EventContext, Next, SocketIOServer
from wxio.adapter.websessions import (
    NO_SESSION,
    Cookies,
    KoaCookieStore,
    SessionReader,
    WebSession,
    parse_cookie_header,
    sessions_from_config,
)

from tests.cluster.conftest import redis_prefix  # noqa: F401  (the procs fixture needs it)
from tests.cluster.procs import procs  # noqa: F401, F811  (real redis-server processes)

from .jspeer import JS_DIR, JsPeer, requires_node

pytestmark = pytest.mark.filterwarnings(
    "ignore:It is recommended to use web.RequestKey"  # aiohttp-session's own request keys
)

SECRET = Fernet.generate_key().decode()
REDIS_URL = "redis://127.0.0.1:6379/0"


# -- the servers ---------------------------------------------------------------------------


def sign_in_app(storage: AbstractStorage) -> web.Application:
    """The web backend: ``POST /login`` (form field ``user``) starts a session."""

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        session = await new_session(request)
        session["user"] = str(form["user"])
        session["roles"] = ["reader"]
        return web.Response(text="signed in")

    app = web.Application(middlewares=[session_middleware(storage)])
    app.router.add_post("/login", login)
    return app


async def sign_in(url: str, user: str = "alice") -> str:
    """Sign in at the web app; the Cookie header a browser would send back (values as set)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/login", data={"user": user}) as resp,
    ):
        assert resp.status == 200
        return "; ".join(f"{name}={m.coded_value}" for name, m in resp.cookies.items())


class Servers:
    """wxio (``url``) and the web app (``site``), each a real server on its own port."""

    def __init__(self) -> None:
        self.url = ""
        self.site = ""
        self.io: SocketIOServer | None = None
        self.runners: list[Any] = []

    async def start(
        self,
        config: ServerConfig,
        setup: Callable[[SocketIOServer], None] | None = None,
        *,
        hub: Hub | None = None,
        site: web.Application | None = None,
        native: bool = True,
    ) -> SocketIOServer:
        io = SocketIOServer(config.socketio)
        install_handlers(io)
        if setup is not None:
            setup(io)
        app = build_app(config, io, hub=hub)
        http = HttpServer(app, header_timeout=10, shutdown_timeout=1.0, native=native)
        port = await http.start("127.0.0.1", 0)
        self.runners.append(http)
        self.url, self.io = f"http://127.0.0.1:{port}", io
        if site is not None:
            runner = web.AppRunner(site)
            await runner.setup()
            tcp = web.TCPSite(runner, "127.0.0.1", 0)
            await tcp.start()
            self.runners.append(runner)
            self.site = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return io

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await (runner.stop() if isinstance(runner, HttpServer) else runner.cleanup())


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    running = Servers()
    yield running
    await running.stop()


def sessions_config(**options: Any) -> ServerConfig:
    return ServerConfig(sessions=SessionOptions(**options))


def install_handlers(io: SocketIOServer) -> None:
    """``/app``: a middleware that notes what it saw; ``whoami`` answers the socket's session
    and what the middleware saw; ``write`` tries to change the session."""
    nsp = io.of("/app")

    async def note(ctx: ConnectContext, next: Next) -> None:
        ctx.socket.data["seen_by_middleware"] = ctx.session.get("user")
        await next()

    async def whoami(ctx: EventContext) -> dict[str, Any]:
        session = ctx.socket.session
        return {
            "session": session,  # (a dict: sent as it is)
            "new": session.new,
            "identity": session.identity,
            "middleware": ctx.socket.data["seen_by_middleware"],
            "same": ctx.session is session,
        }

    async def write(ctx: EventContext) -> str:
        try:
            ctx.session["user"] = "mallory"
        except TypeError as exc:
            return f"refused: {exc}"
        return "written"

    nsp.use(note)
    nsp.route("whoami", whoami)
    nsp.route("write", write)


async def whoami(
    url: str, cookie: str | None, transports: list[str] | None = None, namespace: str = "/app"
) -> dict[str, Any]:
    client = socketio.AsyncClient(reconnection=False)
    headers = {"Cookie": cookie} if cookie is not None else {}
    await client.connect(
        url,
        headers=headers,
        namespaces=[namespace],
        transports=transports or ["websocket"],
        wait_timeout=5,
    )
    try:
        answer: dict[str, Any] = await client.call("whoami", namespace=namespace, timeout=5)
        return answer
    finally:
        await client.disconnect()


# -- aiohttp-session's encrypted cookie ---------------------------------------------------------


@pytest.mark.parametrize(
    ("transports", "native"),
    [(["websocket"], True), (["websocket"], False), (["polling"], True)],
    ids=["websocket-native", "websocket-aiohttp", "polling"],
)
async def test_the_session_of_the_sign_in_reaches_middleware_and_handlers(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, transports: list[str], native: bool
) -> None:
    monkeypatch.setenv("WXIO_SESSION_SECRET", SECRET)
    site = sign_in_app(EncryptedCookieStorage(SECRET))  # the web app's own storage, alike
    await servers.start(sessions_config(storage="cookie"), site=site, native=native)
    cookie = await sign_in(servers.site, "alice")
    assert cookie.startswith("AIOHTTP_SESSION=")

    answer = await whoami(servers.url, cookie, transports)
    assert answer["session"] == {"user": "alice", "roles": ["reader"]}
    assert answer["new"] is False and answer["identity"] is None
    assert answer["middleware"] == "alice" and answer["same"] is True


async def test_a_socket_cannot_change_the_session(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WXIO_SESSION_SECRET", SECRET)
    site = sign_in_app(EncryptedCookieStorage(SECRET))
    await servers.start(sessions_config(storage="cookie"), site=site)
    cookie = await sign_in(servers.site)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        servers.url, headers={"Cookie": cookie}, namespaces=["/app"], wait_timeout=5
    )
    try:
        refused = await client.call("write", namespace="/app", timeout=5)
        assert refused.startswith("refused: socket.session is read-only")
        answer = await client.call("whoami", namespace="/app", timeout=5)
        assert answer["session"]["user"] == "alice"
    finally:
        await client.disconnect()


def tampered(cookie: str) -> str:
    """One character of the token changed (in the middle: not its padding)."""
    middle = len(cookie) // 2 + 8
    return cookie[:middle] + ("A" if cookie[middle] != "A" else "B") + cookie[middle + 1 :]


@pytest.mark.parametrize(
    "variant", ["missing", "tampered", "other-key", "garbage", "empty", "other-name"]
)
async def test_no_valid_cookie_means_no_session_and_the_connection_goes_on(
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variant: str,
) -> None:
    monkeypatch.setenv("WXIO_SESSION_SECRET", SECRET)
    other = Fernet.generate_key().decode()
    site = sign_in_app(EncryptedCookieStorage(other if variant == "other-key" else SECRET))
    await servers.start(sessions_config(storage="cookie"), site=site)
    good = await sign_in(servers.site)
    cookie = {
        "missing": None,
        "tampered": tampered(good),
        "other-key": good,
        "garbage": 'AIOHTTP_SESSION="%%%\\"; x',
        "empty": "AIOHTTP_SESSION=",
        "other-name": good.replace("AIOHTTP_SESSION=", "SESSION="),
    }[variant]
    with caplog.at_level(logging.DEBUG):
        answer = await whoami(servers.url, cookie)
    assert answer["session"] == {} and answer["new"] is True
    assert answer["middleware"] is None
    assert SECRET not in caplog.text and other not in caplog.text


async def test_a_middleware_refuses_a_connection_without_a_session(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WXIO_SESSION_SECRET", SECRET)

    def setup(io: SocketIOServer) -> None:
        async def signed_in(ctx: ConnectContext, next: Next) -> None:
            if "user" not in ctx.session:
                raise ConnectionRefused("sign in first", {"reason": "no_session"})
            await next()

        io.use(signed_in, namespace="/members")
        io.of("/members").route("me", lambda ctx: ctx.session["user"])

    await servers.start(
        sessions_config(storage="cookie"), setup, site=sign_in_app(EncryptedCookieStorage(SECRET))
    )
    stranger = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    stranger.on("connect_error", errors.append, namespace="/members")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await stranger.connect(servers.url, namespaces=["/members"], wait_timeout=5)
    await stranger.disconnect()
    assert errors == [{"message": "sign in first", "data": {"reason": "no_session"}}]

    member = socketio.AsyncClient(reconnection=False)
    cookie = await sign_in(servers.site, "bob")
    await member.connect(
        servers.url, headers={"Cookie": cookie}, namespaces=["/members"], wait_timeout=5
    )
    try:
        assert await member.call("me", namespace="/members", timeout=5) == "bob"
    finally:
        await member.disconnect()


# -- read once, never failing ------------------------------------------------------------------


class CountingStore:
    """A SessionStore that counts its reads, and fails or waits when told to."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.reads = 0
        self.release = asyncio.Event()

    async def load(self, cookies: Cookies) -> WebSession:
        self.reads += 1
        if self.behaviour == "raise":
            raise RuntimeError("the session database is down")
        if self.behaviour == "hang":
            await self.release.wait()
        return WebSession(dict(cookies))


async def test_the_session_is_read_once_per_connection_and_shared_by_its_namespaces(
    servers: Servers,
) -> None:
    store = CountingStore()

    def setup(io: SocketIOServer) -> None:
        io.sessions = SessionReader(store)
        io.of("/other").use(lambda ctx, next: next())
        io.of("/other").route("whoami", lambda ctx: dict(ctx.session))

    await servers.start(ServerConfig(), setup)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        servers.url,
        headers={"Cookie": "a=1; b=2", "X-Other": "x"},
        namespaces=["/app", "/other"],
        transports=["polling"],  # (later requests carry cookies too: they are not read)
        wait_timeout=5,
    )
    try:
        first = await client.call("whoami", namespace="/app", timeout=5)
        second = await client.call("whoami", namespace="/other", timeout=5)
    finally:
        await client.disconnect()
    assert first["session"] == second == {"a": "1", "b": "2"}
    assert store.reads == 1


@pytest.mark.parametrize("behaviour", ["raise", "hang"])
async def test_a_failing_or_slow_storage_never_fails_the_handshake(
    servers: Servers, caplog: pytest.LogCaptureFixture, behaviour: str
) -> None:
    store = CountingStore(behaviour)

    def setup(io: SocketIOServer) -> None:
        io.sessions = SessionReader(store, timeout=0.2)

    await servers.start(ServerConfig(), setup)
    with caplog.at_level(logging.WARNING, logger="wxio.sessions"):
        answer = await whoami(servers.url, "AIOHTTP_SESSION=secret-value")
    store.release.set()
    assert answer["session"] == {} and answer["new"] is True
    assert store.reads == 1
    why = "the session database is down" if behaviour == "raise" else "took over 0.2 s"
    assert why in caplog.text and "secret-value" not in caplog.text


async def test_without_sessions_configured_a_socket_has_an_empty_one(servers: Servers) -> None:
    await servers.start(ServerConfig())
    assert servers.io is not None and servers.io.sessions is None
    answer = await whoami(servers.url, "AIOHTTP_SESSION=x")
    assert answer["session"] == {} and answer["new"] is True


@requires_node
async def test_a_socket_io_2_client_gets_its_session_too(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO=3 clients join ``/`` in the handshake itself: the session is read first."""
    monkeypatch.setenv("WXIO_SESSION_SECRET", SECRET)

    def setup(io: SocketIOServer) -> None:
        io.route("whoami", lambda ctx: [dict(ctx.session), ctx.socket.data.get("seen")])

        async def seen(ctx: ConnectContext, next: Next) -> None:
            ctx.socket.data["seen"] = ctx.session.get("user")
            await next()

        io.use(seen)

    await servers.start(
        sessions_config(storage="cookie"), setup, site=sign_in_app(EncryptedCookieStorage(SECRET))
    )
    cookie = await sign_in(servers.site, "carol")
    peer = await JsPeer.start("sio2")
    try:
        await peer.connect(servers.url, transports=["polling"], extraHeaders={"Cookie": cookie})
        answer = await peer.call("whoami")
        assert answer == [[{"user": "carol", "roles": ["reader"]}, "carol"]]
    finally:
        await peer.close()


# -- Redis ---------------------------------------------------------------------------------


@pytest.fixture
async def redis_client() -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - the machine's Redis is part of the suite
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_redis_storage_shared_with_the_web_app(
    servers: Servers, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "WXIO_TEST_SESSION"
    monkeypatch.delenv("WXIO_REDIS_URL", raising=False)
    site = sign_in_app(RedisStorage(redis_client, cookie_name=name, max_age=600))
    config = sessions_config(storage="redis", redis_url=REDIS_URL, cookie_name=name, max_age=600)
    io = await servers.start(config, site=site)
    cookie = await sign_in(servers.site, "dave")
    key = cookie.split("=", 1)[1]
    try:
        answer = await whoami(servers.url, cookie)
        assert answer["session"] == {"user": "dave", "roles": ["reader"]}
        assert answer["identity"] == key and answer["new"] is False
        unknown = await whoami(servers.url, f"{name}=no-such-session")
        assert unknown["session"] == {} and unknown["new"] is True
    finally:
        await redis_client.delete(f"{name}_{key}")
    assert io.sessions is not None and io.sessions.on_close is not None


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_storage_through_sentinel(
    servers: Servers,
    procs: Any,  # noqa: F811  (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``redis+sentinel://`` URL (the cluster's, docs/cluster.md) works for sessions too: the
    master is found through the sentinels."""
    import redis.asyncio as aioredis

    group = await procs.start_sentinel_group()
    master = aioredis.from_url(f"redis://127.0.0.1:{group.master.port}/0")
    name = "WXIO_SENTINEL_SESSION"
    monkeypatch.delenv("WXIO_REDIS_URL", raising=False)
    try:
        site = sign_in_app(RedisStorage(master, cookie_name=name, max_age=600))
        config = sessions_config(storage="redis", redis_url=group.url, cookie_name=name)
        await servers.start(config, site=site)
        cookie = await sign_in(servers.site, "erin")
        answer = await whoami(servers.url, cookie)
        assert answer["session"] == {"user": "erin", "roles": ["reader"]}
    finally:
        await master.aclose()


async def test_redis_down_means_no_session(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from .conftest import free_port

    monkeypatch.delenv("WXIO_REDIS_URL", raising=False)
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    await servers.start(sessions_config(storage="redis", redis_url=down))
    with caplog.at_level(logging.WARNING, logger="wxio.sessions"):
        answer = await whoami(servers.url, "AIOHTTP_SESSION=abc")
    assert answer["session"] == {} and answer["new"] is True
    assert "reading a session failed" in caplog.text


# -- the embedded store --------------------------------------------------------------------


async def test_embedded_storage_for_a_web_app_in_the_same_process(
    servers: Servers, tmp_path: Path
) -> None:
    backplane = EmbeddedBackplane(StoreOptions(data_dir=str(tmp_path)))
    hub = Hub(AppRegistry.from_config({"shop": {"key": "k"}}, environ={}), backplane=backplane)
    io = SocketIOServer()
    install_handlers(io)
    app = build_app(sessions_config(storage="embedded", max_age=600), io, hub=hub)
    assert io.sessions is not None
    # The web app's routes in the same process, on the storage the server reads.
    app.add_subapp("/site", sign_in_app(io.sessions.storage))  # type: ignore[arg-type]
    http = HttpServer(app, header_timeout=10, shutdown_timeout=1.0)
    port = await http.start("127.0.0.1", 0)
    servers.runners.append(http)
    url = f"http://127.0.0.1:{port}"
    cookie = await sign_in(url + "/site", "erin")
    answer = await whoami(url, cookie)
    assert answer["session"] == {"user": "erin", "roles": ["reader"]}
    assert answer["identity"] == cookie.split("=", 1)[1]
    unknown = await whoami(url, "AIOHTTP_SESSION=forged")
    assert unknown["session"] == {}
    await backplane.database.committed()
    await http.stop()
    servers.runners.remove(http)

    # Kept across a restart: the next process reads the same sign-in from the file.
    again = EmbeddedBackplane(StoreOptions(data_dir=str(tmp_path)))
    try:
        config = sessions_config(storage="embedded", max_age=600)
        reader = sessions_from_config(config, database=again.database)
        assert reader is not None
        restored = await reader.read([("Cookie", cookie)])
        assert dict(restored) == {"user": "erin", "roles": ["reader"]}
    finally:
        again.database.close_now()


# -- koa-session / egg-session's signed cookie ---------------------------------------------


async def koa_cookies(**options: Any) -> dict[str, str]:
    """Sign in at a koa app with koa-session (Node): the cookies it set."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(JS_DIR / "koa_session_cookie.js"),
        json.dumps(options),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    cookies: dict[str, str] = json.loads(out)["cookies"]
    return cookies


def header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


@requires_node
@pytest.mark.parametrize(
    ("algorithm", "name"), [("sha256", "EGG_SESS"), ("sha1", "koa.sess")], ids=["egg", "koa"]
)
async def test_egg_storage_reads_the_cookie_koa_session_wrote(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, algorithm: str, name: str
) -> None:
    session = {"user": "frank", "roles": ["admin"], "nested": {"n": 1}}
    # Signed with the older of the two keys: rotation keeps it valid.
    cookies = await koa_cookies(keys=["old-key"], algorithm=algorithm, key=name, session=session)
    assert set(cookies) == {name, name + ".sig"}
    monkeypatch.setenv("EGG_KEYS", "new-key, old-key")
    cookie_name = "" if name == "EGG_SESS" else name
    config = sessions_config(
        storage="egg", secret_env="EGG_KEYS", algorithm=algorithm, cookie_name=cookie_name
    )
    await servers.start(config)
    answer = await whoami(servers.url, header(cookies))
    assert answer["session"] == session  # (koa-session's _expire and _maxAge left out)
    assert answer["new"] is False

    value = cookies[name]
    forged = base64.b64encode(
        json.dumps({**session, "user": "mallory", "_expire": 9e15}).encode()
    ).decode()
    variants = {
        "forged value": {name: forged, name + ".sig": cookies[name + ".sig"]},
        "no signature": {name: value},
        "bad signature": {name: value, name + ".sig": cookies[name + ".sig"][:-2] + "xx"},
        "other algorithm": await koa_cookies(
            keys=["old-key"], algorithm="sha1" if algorithm == "sha256" else "sha256", key=name
        ),
        "unknown key": await koa_cookies(keys=["stranger"], algorithm=algorithm, key=name),
    }
    for what, jar in variants.items():
        answer = await whoami(servers.url, header(jar))
        assert answer["session"] == {} and answer["new"] is True, what


async def test_egg_storage_checks_expiry_and_refuses_anything_but_json() -> None:
    now = 1_700_000_000.0
    store = KoaCookieStore(["k"], clock=lambda: now)

    def jar(body: bytes) -> Cookies:
        value = base64.b64encode(body).decode()
        return [("EGG_SESS", value), ("EGG_SESS.sig", store.sign(value))]

    fresh = json.dumps({"user": "g", "_expire": (now + 60) * 1000, "_maxAge": 60000}).encode()
    assert await store.load(jar(fresh)) == {"user": "g"}
    stale = json.dumps({"user": "g", "_expire": (now - 1) * 1000}).encode()
    assert await store.load(jar(stale)) is NO_SESSION
    no_expiry = json.dumps({"user": "g", "_session": True}).encode()  # maxAge "session"
    assert await store.load(jar(no_expiry)) == {"user": "g"}
    for body in (b"[1, 2]", b"\x80\x04K\x01.", b"not json", b'"text"', b"{}", b"\xff\xfe"):
        assert await store.load(jar(body)) is NO_SESSION, body
    # The first of a repeated cookie, as the cookies package reads them.
    good, other = jar(fresh), jar(stale)
    assert await store.load(good + other) == {"user": "g"}
    assert await store.load(other + good) is NO_SESSION


# -- the pieces ----------------------------------------------------------------------------


def test_cookie_header_parsing() -> None:
    assert parse_cookie_header('a=1; b="x=\\"y\\""; ; c; d=; =e; f = 2 ') == [
        ("a", "1"),
        ("b", 'x="y"'),
        ("d", ""),
        ("f", "2"),
    ]
    assert parse_cookie_header('q="\\073"') == [("q", ";")]


async def test_the_reader_joins_every_cookie_header() -> None:
    reader = SessionReader(CountingStore())
    session = await reader.read([("Cookie", "a=1"), ("Host", "x"), ("cookie", "b=2")])
    assert session == {"a": "1", "b": "2"}
    assert await reader.read([("Host", "x")]) is NO_SESSION


def test_a_web_session_is_read_only_and_serialisable() -> None:
    session = WebSession({"user": "h", "tags": ["a"]}, identity="id")
    for change in (
        lambda s: s.__setitem__("user", "x"),
        lambda s: s.__delitem__("user"),
        lambda s: s.update(user="x"),
        lambda s: s.pop("user"),
        lambda s: s.popitem(),
        lambda s: s.setdefault("x", 1),
        lambda s: s.clear(),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change(session)
    with pytest.raises(TypeError):
        session |= {"x": 1}
    assert session == {"user": "h", "tags": ["a"]}
    assert json.loads(json.dumps(session)) == {"user": "h", "tags": ["a"]}
    changed = dict(session)
    changed["user"] = "x"
    assert session["user"] == "h"
    for again in (
        copy.copy(session),
        copy.deepcopy(session),
        pickle.loads(pickle.dumps(session)),
    ):
        assert type(again) is WebSession and again == session
        assert (again.new, again.identity) == (False, "id")
    assert copy.deepcopy(session)["tags"] is not session["tags"]


def test_sessions_section_of_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "wxio.toml"
    path.write_text(
        '[sessions]\nstorage = "egg"\ncookie_name = "SID"\nsecret_env = "MY_KEYS"\n'
        'max_age = 3600\nalgorithm = "sha1"\ntimeout = 0.5\n'
    )
    config = load(path)
    assert config.sessions == SessionOptions(
        storage="egg", cookie_name="SID", secret_env="MY_KEYS", max_age=3600, algorithm="sha1",
        timeout=0.5,
    )  # fmt: skip
    assert "sessions" not in config.extra
    for body, message in (
        ('storage = "files"', "storage must be one of"),
        ('algorithm = "md5"', "algorithm must be"),
        ("secret = 'inline'", "unknown key(s) secret"),
    ):
        path.write_text(f"[sessions]\n{body}\n")
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load(path)


def test_sessions_from_config_never_shows_the_secret() -> None:
    assert sessions_from_config(ServerConfig()) is None
    cookie = sessions_config(storage="cookie")
    with pytest.raises(ConfigError, match="WXIO_SESSION_SECRET.*not set"):
        sessions_from_config(cookie, environ={})
    with pytest.raises(ConfigError, match="does not hold a Fernet key") as bad:
        sessions_from_config(cookie, environ={"WXIO_SESSION_SECRET": "not-a-fernet-key"})
    assert "not-a-fernet-key" not in str(bad.value)
    reader = sessions_from_config(cookie, environ={"WXIO_SESSION_SECRET": SECRET})
    assert reader is not None and isinstance(reader.storage, EncryptedCookieStorage)
    with pytest.raises(ConfigError, match="embedded store"):
        sessions_from_config(sessions_config(storage="embedded"), environ={})
    with pytest.raises(ConfigError, match="redis_url"):
        sessions_from_config(sessions_config(storage="redis"), environ={})
    cluster = replace(sessions_config(storage="redis"), extra={"cluster": {"redis_url": REDIS_URL}})
    assert sessions_from_config(cluster, environ={}) is not None
    with pytest.raises(ConfigError, match="empty key"):
        sessions_from_config(sessions_config(storage="egg"), environ={"WXIO_SESSION_SECRET": "a,"})
    with pytest.raises(ConfigError, match="max_age"):
        sessions_from_config(sessions_config(storage="egg", max_age=-1), environ={})


async def test_build_app_refuses_a_bad_sessions_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WXIO_SESSION_SECRET", raising=False)
    with pytest.raises(ConfigError, match="not set"):
        build_app(sessions_config(storage="cookie"), SocketIOServer())


def test_the_guides_sessions_section_loads(tmp_path: Path) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "guide.md").read_text()
    section = guide[guide.index("## Sessions at the handshake") :]
    start = section.index("```toml") + len("```toml")
    path = tmp_path / "wxio.toml"
    path.write_text(section[start : section.index("```", start)])
    assert load(path).sessions == SessionOptions(storage="cookie")
