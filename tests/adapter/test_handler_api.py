"""The handler API as a new Python user meets it: what a refused connection tells the
client, handlers put on the routing core's namespace, egg's ``ctx.packet``, acks with a timeout,
data JSON cannot carry, a bad ``--app``, and a typed app under ``mypy --strict``."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from wxio.adapter.config import ConfigError
from wxio.adapter.server import load_user_app
from wxio.adapter.sio import AckTimeout, EventPacket, Socket, SocketIOServer
from wxio.protocol.errors import LocalProtocolError
from wxio.protocol.socketio import Packet, PacketType

from . import typed_app
from .conftest import StartServer, free_port
from .core_clients import Signer

ROOT = Path(__file__).resolve().parents[2]
DEMO = {"demo": {"key": "demo-key"}}


async def _raw(server: Any, http: aiohttp.ClientSession, nsp: str, auth: str) -> Any:
    """A raw EIO=4 WebSocket joined to ``nsp``: it answers no ack unless told to."""
    ws = await http.ws_connect(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str()).startswith("0")
    await ws.send_str(f"40{nsp},{auth}")
    assert (await ws.receive_str()).startswith(f"40{nsp},")
    return ws


async def _next_event(ws: Any) -> str:
    """The next Socket.IO packet, answering the server's pings on the way."""
    while True:
        text = await asyncio.wait_for(ws.receive_str(), 5)
        if text == "2":
            await ws.send_str("3")
            continue
        return str(text)


# -- a connection check that fails -------------------------------------------------------------


@pytest.mark.parametrize("where", ["middleware", "authorize"])
async def test_a_failing_connection_check_refuses_without_its_details(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """Anything but ConnectionRefused from a check is a bug or an outage: the client gets a
    generic refusal, the log gets the details (before, str(exc) was sent to the client)."""
    secret = "db postgres://wxio:hunter2@10.0.0.7/chat down"

    def setup(io: SocketIOServer) -> None:
        async def middleware(ctx: Any, next: Any) -> None:
            raise RuntimeError(secret)

        async def check(socket: Socket) -> None:
            raise RuntimeError(secret)

        if where == "middleware":
            io.use(middleware, namespace="/chat")
        else:
            io.of("/chat").authorize(check)

    server = await start_server(setup=setup)
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append, namespace="/chat")
    with (
        caplog.at_level(logging.ERROR, logger="wxio.socketio"),
        pytest.raises(socketio.exceptions.ConnectionError),
    ):
        await client.connect(server.url, namespaces=["/chat"], wait_timeout=5)
    await client.disconnect()
    assert errors == [{"message": "Server error"}]
    (record,) = [r for r in caplog.records if "connection check failed" in r.getMessage()]
    assert record.exc_info is not None and secret in caplog.text


# -- handlers on the routing core's namespace --------------------------------------------------


def _core_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "the routing core's" in r.getMessage()]


async def test_handlers_on_the_core_namespace_are_warned_about_once_at_start(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    def setup(io: SocketIOServer) -> None:
        io.on("hello", lambda socket, name: f"hello {name}")  # namespace "/" by default

        async def middleware(ctx: Any, next: Any) -> None:
            await next()

        io.use(middleware)
        io.on("mine", lambda socket: "mine", namespace="/chat")

    with caplog.at_level(logging.WARNING, logger="wxio.socketio"):
        server = await start_server(setup=setup, apps=DEMO)
    (warning,) = _core_warnings(caplog)
    assert "event 'hello'" in warning and "connection middleware (use)" in warning
    assert "mine" not in warning and "[core] namespace" in warning
    assert server.io.of("/").reserved_by == "the routing core"
    # Warned, not refused: the core's clients reach them; other clients are refused.
    signed = socketio.AsyncClient(reconnection=False)
    await signed.connect(server.url, auth=Signer("demo", "demo-key").auth(), wait_timeout=5)
    try:
        assert await signed.call("hello", "wx", timeout=5) == "hello wx"
    finally:
        await signed.disconnect()
    stranger = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await stranger.connect(server.url, wait_timeout=5)
    await stranger.disconnect()


async def test_no_warning_without_handlers_there_or_with_the_core_elsewhere(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    def setup(io: SocketIOServer) -> None:
        io.on("hello", lambda socket: "hi")

    with caplog.at_level(logging.WARNING, logger="wxio.socketio"):
        await start_server(apps=DEMO)
        await start_server(setup=setup, apps=DEMO, core={"namespace": "/core"})
    assert _core_warnings(caplog) == []


def test_wxio_serve_keeps_the_warning_for_after_its_banner(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from wxio.adapter.config import ServerConfig
    from wxio.adapter.server import make_app

    monkeypatch.setenv("WXIO_STORE", "memory")
    warnings: list[str] = []
    with caplog.at_level(logging.WARNING, logger="wxio.socketio"):
        make_app(ServerConfig(), "default", "tests.adapter.user_app:setup", warnings)
    assert _core_warnings(caplog) == []  # not logged yet: serve logs them after the banner
    (warning,) = warnings
    assert "application handlers on namespace '/'" in warning and "event 'hello'" in warning


# -- egg-socket.io's ctx.packet ----------------------------------------------------------------


async def test_ctx_packet_is_egg_shaped(start_server: StartServer) -> None:
    server = await start_server(setup=typed_app.setup)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(server.url, namespaces=["/chat"], auth={"name": "ann"}, wait_timeout=5)
    try:
        answer = await client.call("whoami", (1, {"x": 2}), namespace="/chat", timeout=5)
        assert answer == ["whoami", [1, {"x": 2}], True, "ann"]
    finally:
        await client.disconnect()


def test_the_egg_packet_keeps_the_socketio_packet_fields() -> None:
    packet = EventPacket(Packet(PacketType.EVENT, "/chat", ["say", "hi", 2], 7))
    assert packet == ["say", "hi", 2] and packet[0] == "say"
    assert (packet.type, packet.nsp, packet.id) == (PacketType.EVENT, "/chat", 7)
    assert packet.data is packet


# -- acks with a timeout, as in Node -----------------------------------------------------------


async def test_emit_with_a_timeout_calls_back_with_the_error_first(
    start_server: StartServer,
) -> None:
    """Node's ``socket.timeout(ms).emit(ev, (err, answer) => ...)``: the callback gets
    ``(None, *args)`` on the ack, ``(AckTimeout,)`` when none came in time (before, it was
    dropped silently)."""
    server = await start_server(setup=typed_app.setup)
    async with aiohttp.ClientSession() as http:
        ws = await _raw(server, http, "/chat", '{"name":"bo"}')
        await ws.send_str('42/chat,["nudge",0.2]')
        assert await _next_event(ws) == '42/chat,0["nudge"]'  # not acknowledged...
        assert await _next_event(ws) == '42/chat,["nudged","no answer"]'
        await ws.send_str('42/chat,["nudge",5]')
        assert await _next_event(ws) == '42/chat,1["nudge"]'
        await ws.send_str('43/chat,1["pong"]')
        assert await _next_event(ws) == '42/chat,["nudged","pong"]'
        await ws.close()


async def test_acks_that_can_no_longer_come_fail_at_disconnect(start_server: StartServer) -> None:
    """``socket.call`` raises and ``emit(callback=, timeout=)`` is called with AckTimeout when
    the socket disconnects first (``call`` used to wait forever); without a timeout the callback
    gets the ack's arguments alone."""
    outcomes: asyncio.Queue[Any] = asyncio.Queue()
    held: list[Socket] = []

    def setup(io: SocketIOServer) -> None:
        @io.on("plain", namespace="/n")
        def plain(socket: Socket) -> None:
            socket.emit("q", callback=lambda *args: outcomes.put_nowait(("plain", args)))

        @io.on("wait", namespace="/n")
        async def wait(socket: Socket) -> None:
            held.append(socket)
            socket.emit("q", callback=lambda *a: outcomes.put_nowait(("emit", a)), timeout=30)
            try:
                await socket.call("q", timeout=30)
            except AckTimeout as exc:
                outcomes.put_nowait(("call", exc))

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http:
        ws = await _raw(server, http, "/n", "{}")
        await ws.send_str('42/n,["plain"]')
        assert await _next_event(ws) == '42/n,0["q"]'
        await ws.send_str('43/n,0["a",1]')
        assert await asyncio.wait_for(outcomes.get(), 5) == ("plain", ("a", 1))
        await ws.send_str('42/n,["wait"]')
        assert await _next_event(ws) == '42/n,1["q"]'
        assert await _next_event(ws) == '42/n,2["q"]'
        await ws.send_str("41/n,")  # leaves the namespace without answering
        got = dict([await asyncio.wait_for(outcomes.get(), 5) for _ in range(2)])
        await ws.close()
    (error,) = got["emit"]
    assert isinstance(error, AckTimeout) and "disconnected" in str(error)
    assert isinstance(got["call"], AckTimeout) and "disconnected" in str(got["call"])
    # Emitting to a socket that has gone: the callback with a timeout still hears about it.
    later: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    held[0].emit("q", callback=lambda *a: later.set_result(a), timeout=30)
    (error,) = await asyncio.wait_for(later, 5)
    assert isinstance(error, AckTimeout) and "not connected" in str(error)


# -- data JSON cannot carry --------------------------------------------------------------------


async def test_emitting_data_json_cannot_carry_names_the_event_and_the_type(
    start_server: StartServer,
) -> None:
    raised: asyncio.Queue[BaseException] = asyncio.Queue()
    sockets: list[Socket] = []

    def setup(io: SocketIOServer) -> None:
        @io.on("go", namespace="/n")
        def go(socket: Socket) -> None:
            sockets.append(socket)
            for emit in (
                lambda: socket.emit("chat", "hi", {"tags": {"a"}}, callback=print, timeout=9),
                lambda: io.of("/n").emit("news", object()),
            ):
                try:
                    emit()
                except LocalProtocolError as exc:
                    raised.put_nowait(exc)

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http:
        ws = await _raw(server, http, "/n", "{}")
        await ws.send_str('42/n,["go"]')
        first = await asyncio.wait_for(raised.get(), 5)
        second = await asyncio.wait_for(raised.get(), 5)
        await ws.close()
    assert str(first) == (
        "event 'chat': argument 2['tags'] cannot be encoded as JSON "
        "(Type is not JSON serializable: set)"
    )
    assert str(second).startswith("event 'news': argument 1 cannot be encoded as JSON")
    assert "object" in str(second)
    assert sockets[0]._acks == {}  # the ack of the packet that never went is not kept


# -- a bad --app -------------------------------------------------------------------------------


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> str:
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.adapter.user_app", "give module:attribute"),
        ("no_such_module_xyz:setup", "no module named 'no_such_module_xyz'"),
        ("tests.nope.user_app:setup", "no module named 'tests.nope'"),
        ("tests.adapter.user_app:nope", "tests.adapter.user_app has no attribute 'nope'"),
        ("tests.adapter.user_app:__doc__", "a str, neither a SocketIOServer nor a callable"),
        ("tests.adapter.test_handler_api:_raw", "must take one argument"),
    ],
)
def test_a_bad_app_target_is_a_config_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_user_app(spec, SocketIOServer())
    assert str(caught.value).startswith(f"--app {spec}: ") and message in str(caught.value)


def test_an_error_inside_the_app_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module the app imports that is missing, or its setup failing, is the app's bug: the
    exception propagates (with its traceback), it is not turned into a one-line config error."""
    broken = _module(tmp_path, monkeypatch, "wxio_app_needs_dep", "import no_such_dep_xyz\n")
    with pytest.raises(ModuleNotFoundError):
        load_user_app(f"{broken}:setup", SocketIOServer())
    failing = _module(
        tmp_path, monkeypatch, "wxio_app_fails", "def setup(io):\n    raise KeyError('x')\n"
    )
    with pytest.raises(KeyError):
        load_user_app(f"{failing}:setup", SocketIOServer())
    theirs = _module(
        tmp_path,
        monkeypatch,
        "wxio_app_own_server",
        "from wxio.adapter.sio import SocketIOServer\nio = SocketIOServer()\n"
        "def make(io):\n    return SOCKETIO\nSOCKETIO = SocketIOServer()\n",
    )
    mine = SocketIOServer()
    assert load_user_app(f"{theirs}:io", mine) is not mine
    assert load_user_app(f"{theirs}:make", mine) is sys.modules[theirs].SOCKETIO


@pytest.mark.slow
def test_wxio_serve_with_a_bad_app_prints_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "WXIO_LOOP": "asyncio", "WXIO_STORE": "memory"}
    done = subprocess.run(
        [sys.executable, "-m", "wxio.adapter", "serve", "--port", str(free_port())]
        + ["--app", "no_such_module_xyz:setup"],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("wxio: --app no_such_module_xyz:setup: no module named")


# -- a typed app under mypy --strict -----------------------------------------------------------

#: Mistakes the types must catch (each line marked ``# E`` must be an error, and no other).
MISTAKES = """\
from wxio.adapter.sio import ConnectContext, EventContext, Next, Socket, SocketIOServer
from wxio.client import SendResult


def setup(io: SocketIOServer) -> None:
    @io.on("add", namespace="/calc")
    def add(socket: Socket, a: int, b: int) -> int:
        return a + b

    add(1, 2, 3)  # E: a decorated handler keeps its signature

    async def packet_mw(ctx: EventContext, next: Next) -> None:
        await next()

    io.use(packet_mw, namespace="/calc")  # E: connection middleware takes a ConnectContext
    io.use_packet(packet_mw, namespace="/calc")

    async def connect_mw(ctx: ConnectContext) -> None: ...

    io.use(connect_mw)  # E: middleware takes (ctx, next)

    @io.of("/calc").route("sum")  # E: a route handler takes the context only
    def total(socket: Socket, *args: int) -> int:
        return sum(args)


async def use(socket: Socket, result: SendResult) -> None:
    first: int = (await socket.call("q"))[0]  # E: an ack's values must be narrowed
    if result.status == "sent":  # E: not a status
        print(first)
"""


def _mypy(tmp_path: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``target`` against the package laid out as installed (the
    Makefile's .typecheck/: wxio.protocol, wxio.adapter, wxio.client)."""
    path = tmp_path / "typecheck" / "wxio"
    if not path.exists():
        path.mkdir(parents=True)
        for package in ("protocol", "adapter", "client"):
            (path / package).symlink_to(ROOT / package)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--namespace-packages"]
        + ["--explicit-package-bases", "--cache-dir", str(tmp_path / "cache"), str(target)],
        cwd=str(tmp_path),
        env={**os.environ, "MYPYPATH": str(path.parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_users_typed_app_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    app = tmp_path / "app" / "typed_app.py"
    app.parent.mkdir()
    shutil.copy(Path(typed_app.__file__), app)
    checked = _mypy(tmp_path, app)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    mistakes = tmp_path / "app" / "mistakes.py"
    mistakes.write_text(MISTAKES)
    checked = _mypy(tmp_path, mistakes)
    expected = {n for n, line in enumerate(MISTAKES.splitlines(), 1) if "# E" in line}
    found = {
        int(line.split(":")[1])
        for line in checked.stdout.splitlines()
        if line.startswith("app/mistakes.py:") and ": error:" in line
    }
    assert found == expected, checked.stdout
