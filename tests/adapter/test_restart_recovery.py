"""State that outlives a restart of one ``wxio serve`` node on the embedded store (SQLite in
``[store] data_dir``): connection state recovery and Admin UI logins.

After a clean stop (SIGTERM), a socket.io-client 4 that comes back to the next run gets its id,
rooms and data, and the packets it missed (emitted while it was away before the stop, and
while the server shut down), once each, in order, with offsets of the same ``<boot>.<n>``
series. After SIGKILL the file's boot id changes: the old offsets are refused and the client
starts a fresh session that works. An Admin UI session id from a login is accepted by the next
run without the password."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.cluster.procs import Proc, to_toml, wait_port

from .conftest import free_port
from .jspeer import JsPeer, requires_node

ROOT = Path(__file__).resolve().parents[2]
WXIO = Path(sys.executable).with_name("wxio")
APP = "tests.adapter.restart_app:setup"
NSP = "/chat"
PASSWORD_ENV = "RESTART_TEST_ADMIN_PASSWORD"
PASSWORD = "s3cret-restart"

pytestmark = [pytest.mark.slow]


class Node:
    """One ``wxio serve`` node, run again and again on the same port, config and data dir (one
    log file per run under the test's ``tmp_path``)."""

    def __init__(self, tmp_path: Path, tables: dict[str, dict[str, Any]]) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "data"
        self.config = tmp_path / "wxio.toml"
        tables = {
            "server": {"shutdown_grace": 1.0},
            "store": {"data_dir": str(self.data_dir)},
            **tables,
        }
        self.config.write_text(to_toml(tables))
        self.runs: list[Proc] = []

    @property
    def db(self) -> Path:
        return self.data_dir / "wxio.db"

    def _env(self) -> dict[str, str]:
        # The config file decides (no WXIO_DATA_DIR, WXIO_STORE, WXIO_REDIS_URL from outside);
        # the event loop of the test run is kept.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
        env["WXIO_LOOP"] = os.environ.get("WXIO_LOOP", "asyncio")
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env[PASSWORD_ENV] = PASSWORD
        return env

    async def start(self) -> Proc:
        name = f"wxio-run{len(self.runs) + 1}"
        log = self.tmp_path / f"{name}.log"
        argv = [str(WXIO), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--config", str(self.config), "--app", APP]
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                cwd=self.tmp_path,
                start_new_session=True,
            )
        proc = Proc(name, popen, log, self.port)
        self.runs.append(proc)
        await wait_port(proc)
        return proc

    async def stop(self, sig: signal.Signals, timeout: float = 10) -> int:
        """Send ``sig`` to the current run and wait for it to exit; its exit code."""
        proc = self.runs[-1]
        proc.popen.send_signal(sig)
        deadline = time.monotonic() + timeout
        while (rc := proc.popen.poll()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"{proc.name} did not exit within {timeout}s:\n{proc.log_tail()}")
            await asyncio.sleep(0.02)
        return rc

    def cleanup(self) -> None:
        for proc in self.runs:
            if proc.alive():
                proc.kill()
            print(f"----- {proc.name} (rc {proc.popen.returncode}) -----\n{proc.log_tail()}")


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(**tables: dict[str, Any]) -> Node:
        node = Node(tmp_path, tables)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.cleanup()


@pytest.fixture
async def peer() -> AsyncIterator[JsPeer]:
    p = await JsPeer.start("sio4")
    try:
        yield p
    finally:
        await p.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


def on_disk(db: Path, sql: str, *params: Any) -> int:
    """A count read from the node's file by another reader (what a SIGKILL cannot take back)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)) as conn:
            return int(conn.execute(sql, params).fetchone()[0])
    except sqlite3.Error:
        return 0


def offset_of(args: list[Any]) -> tuple[str, int]:
    """The ``<boot>.<n>`` offset a logged packet carries as its last argument."""
    boot, _, n = args[-1].partition(".")
    assert boot and n.isdigit(), args
    return boot, int(n)


async def expect(
    peer: JsPeer, ev: str, timeout: float = 5, *, absent: bool = False, **match: Any
) -> dict[str, Any] | None:
    """The next event ``ev`` matching ``match``, as :meth:`JsPeer.expect`, but the events it
    skips keep their place before those that came meanwhile (``JsPeer.expect`` puts them back
    behind them: a missed packet could then be read after a later one). ``absent``: None when
    none comes within ``timeout``."""
    queue = peer.events
    skipped: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if absent:
                    return None
                pytest.fail(f"no {ev} {match} within {timeout}s; saw {skipped}")
            try:
                event = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                continue
            if event.get("ev") == ev and all(event.get(k) == v for k, v in match.items()):
                return event
            if event.get("ev") == "error":
                pytest.fail(f"a peer command failed: {event}")
            skipped.append(event)
    finally:
        while not queue.empty():
            skipped.append(queue.get_nowait())
        for event in skipped:
            queue.put_nowait(event)


async def take(peer: JsPeer, ev: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
    event = await expect(peer, ev, timeout, **match)
    assert event is not None
    return event


async def call(peer: JsPeer, event: str, *args: Any, sock: str) -> Any:
    """Emit with an ack; the ack's first argument."""
    cid = await peer.emit(event, *args, sock=sock, ack=True)
    return (await take(peer, "ack", id=cid))["args"][0]


async def connect(peer: JsPeer, url: str, sock: str, **opts: Any) -> dict[str, Any]:
    cid = await peer.command("connect", sock=sock, url=url, nsp=NSP, opts=opts)
    await take(peer, "done", id=cid)
    return await take(peer, "connect", sock=sock, timeout=10)


async def msg(peer: JsPeer, sock: str) -> list[Any]:
    return list((await take(peer, "event", sock=sock, name="msg"))["args"])


async def msgs_until(peer: JsPeer, sock: str, last: str) -> list[list[Any]]:
    """The ``msg`` events of ``sock`` up to the one whose text is ``last``."""
    got: list[list[Any]] = []
    while not got or got[-1][0] != last:
        got.append(await msg(peer, sock))
    return got


async def no_more_msgs(peer: JsPeer, sock: str) -> None:
    extra = await expect(peer, "event", 0.3, absent=True, sock=sock, name="msg")
    assert extra is None, extra


async def whoami(peer: JsPeer, sock: str) -> dict[str, Any]:
    return dict(await call(peer, "whoami", sock=sock))


async def connect_pair(peer: JsPeer, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``a``: the client under test, reconnected by the test (``reconnect``) when it chooses;
    ``b``: another user, connected when the server stops and reconnecting by itself, who emits
    to rooms through the server (``say``). Both join ``room2``; ``a`` gets data."""
    a = await connect(peer, url, "a", transports=["websocket"], reconnection=False, forceNew=True)
    b = await connect(
        peer,
        url,
        "b",
        transports=["polling", "websocket"],
        reconnectionDelay=100,
        reconnectionDelayMax=200,
        randomizationFactor=0,
        forceNew=True,
    )
    assert a["recovered"] is False and b["recovered"] is False
    for sock in ("a", "b"):
        assert await call(peer, "join", "room2", sock=sock) is True
    assert await call(peer, "set", "color", "blue", sock="a") is True
    return a, b


async def lose_connection(peer: JsPeer, sid: str) -> None:
    """``a`` loses its connection; returns once the server kept its session (the disconnect
    handler runs after that)."""
    await peer.command("dropTransport", sock="a")
    await take(peer, "disconnect", sock="a")

    async def seen() -> bool:
        return [sid, "transport close"] in await call(peer, "reasons", sock="b")

    await eventually(seen, "the server saw a's connection go")


@requires_node
@pytest.mark.node
async def test_a_client_recovers_across_a_clean_restart(
    make_node: Callable[..., Node], peer: JsPeer
) -> None:
    node = make_node(socketio={"connection_state_recovery": True})
    run1 = await node.start()
    a, b = await connect_pair(peer, node.url)
    sid_a, sid_b = a["sid"], b["sid"]

    assert await call(peer, "say", "room2", "before", sock="b") is True
    before = await msg(peer, "a")
    assert before[0] == "before"
    boot, n0 = offset_of(before)
    assert (await msg(peer, "b"))[0] == "before"

    # a is away; b (still connected) makes the server emit: a misses all but "not for a".
    await lose_connection(peer, sid_a)
    await call(peer, "say", "room2", "missed while away", sock="b")
    await call(peer, "say", "other", "not for a", sock="b")
    await call(peer, "say", None, "to everyone", sock="b")
    assert [m[0] for m in await msgs_until(peer, "b", "to everyone")] == [
        "missed while away",
        "to everyone",
    ]

    # The clean stop closes b with "server shutting down"; its disconnect handler says "bye"
    # to room2, which no client can receive from this run.
    assert await node.stop(signal.SIGTERM) == 0
    await take(peer, "disconnect", sock="b")

    run2 = await node.start()
    assert run2.pid != run1.pid

    # b, connected when the server stopped, is back by itself with its id, and gets the
    # packet emitted after it lost its connection.
    again_b = await take(peer, "connect", sock="b", timeout=15)
    assert again_b["sid"] == sid_b and again_b["recovered"] is True
    bye = await msg(peer, "b")
    assert bye[0] == f"bye from {sid_b}" and offset_of(bye)[0] == boot

    # a, away before the stop: same id, rooms and data, in the new process.
    await peer.command("reconnect", sock="a")
    again_a = await take(peer, "connect", sock="a", timeout=10)
    assert again_a["sid"] == sid_a and again_a["recovered"] is True
    me = await whoami(peer, "a")
    assert me["id"] == sid_a and me["recovered"] is True and me["pid"] == run2.pid
    assert me["rooms"] == sorted([sid_a, "room1", "room2"])
    assert me["data"] == {"first_pid": run1.pid, "color": "blue"}

    # What a missed (emitted by the first run, before and during its shutdown), then a live
    # room emit of the second run: once each, in order, none it had already, none of "other".
    await call(peer, "say", "room2", "live", sock="b")
    got = await msgs_until(peer, "a", "live")
    assert [m[0] for m in got] == [
        "missed while away",
        "to everyone",
        f"bye from {sid_b}",
        "live",
    ]
    offsets = [offset_of(m) for m in got]
    assert {o[0] for o in offsets} == {boot}  # the boot id came from the file
    numbers = [o[1] for o in offsets]
    assert n0 < numbers[0] and numbers == sorted(set(numbers))
    await call(peer, "say", "room1", "room1 too", sock="b")
    assert (await msg(peer, "a"))[0] == "room1 too"
    await no_more_msgs(peer, "a")


@requires_node
@pytest.mark.node
async def test_no_recovery_after_a_crash(make_node: Callable[..., Node], peer: JsPeer) -> None:
    node = make_node(socketio={"connection_state_recovery": True})
    await node.start()
    a, b = await connect_pair(peer, node.url)
    sid_a, sid_b = a["sid"], b["sid"]
    await call(peer, "say", "room2", "before", sock="b")
    before = await msg(peer, "a")
    boot, n0 = offset_of(before)

    await lose_connection(peer, sid_a)
    await call(peer, "say", "room2", "missed while away", sock="b")
    assert [m[0] for m in await msgs_until(peer, "b", "missed while away")] == [
        "before",
        "missed while away",
    ]

    # a's session and the packet it missed are in the file; a crash still voids them.
    async def written() -> bool:
        return (
            on_disk(node.db, "SELECT COUNT(*) FROM sessions WHERE kind = 'sio'") >= 1
            and on_disk(node.db, "SELECT COUNT(*) FROM sio_log WHERE n > ?", n0) >= 1
        )

    await eventually(written, "a's session and the missed packet written")
    assert await node.stop(signal.SIGKILL) == -signal.SIGKILL
    await take(peer, "disconnect", sock="b")

    run2 = await node.start()
    again_b = await take(peer, "connect", sock="b", timeout=15)
    assert again_b["recovered"] is False and again_b["sid"] != sid_b

    await peer.command("reconnect", sock="a")
    again_a = await take(peer, "connect", sock="a", timeout=10)
    assert again_a["recovered"] is False and again_a["sid"] != sid_a
    me = await whoami(peer, "a")
    assert me["id"] == again_a["sid"] and me["recovered"] is False
    assert me["rooms"] == sorted([again_a["sid"], "room1"])  # a fresh session's rooms
    assert me["data"] == {"first_pid": run2.pid}

    # The fresh session works, on a new offset series; nothing of the old run is replayed.
    await call(peer, "say", "room1", "after", sock="b")
    after = await msg(peer, "a")
    assert after[0] == "after" and offset_of(after)[0] != boot
    await no_more_msgs(peer, "a")
    assert "did not stop cleanly" in run2.log.read_text(errors="replace")


async def test_an_admin_ui_session_survives_a_clean_restart(make_node: Callable[..., Node]) -> None:
    node = make_node(
        socketio={
            "admin_ui": True,
            "admin_username": "admin",
            "admin_password_env": PASSWORD_ENV,
        }
    )
    await node.start()

    async def admin(auth: dict[str, str]) -> tuple[socketio.AsyncClient, asyncio.Future[str]]:
        client = socketio.AsyncClient(reconnection=False)
        session: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_session(value: str) -> None:
            if not session.done():
                session.set_result(value)

        client.on("session", on_session, namespace="/admin")
        await client.connect(
            node.url, namespaces=["/admin"], auth=auth, transports=["websocket"], wait_timeout=5
        )
        return client, session

    client, got = await admin({"username": "admin", "password": PASSWORD})
    session = await asyncio.wait_for(got, 5)
    assert isinstance(session, str) and session
    await client.disconnect()

    assert await node.stop(signal.SIGTERM) == 0
    await node.start()

    with pytest.raises(socketio.exceptions.ConnectionError):
        await admin({"sessionId": "0" * len(session)})  # an id nobody was given
    client, _ = await admin({"sessionId": session})  # no password
    try:
        assert client.connected and "/admin" in client.namespaces
    finally:
        await client.disconnect()
