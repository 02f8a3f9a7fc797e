"""Server features users configure: dynamic namespaces, ack timeouts, session id hooks, JSONP,
handlers loaded with --app, and graceful shutdown of a real `wxio serve` process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from wxio.adapter.sio import AckTimeout

from .conftest import StartServer, free_port
from .core_clients import Signer

ROOT = Path(__file__).resolve().parents[2]


async def test_dynamic_namespaces_by_pattern_and_by_callable(start_server: StartServer) -> None:
    def setup(io: Any) -> None:
        rooms = io.of(re.compile(r"/room-\d+"))
        rooms.on("where", lambda socket: socket.nsp.name)
        vip = io.of(lambda name, auth: name.startswith("/vip-") and auth.get("pass") == "ok")
        vip.on("where", lambda socket: socket.nsp.name)

    server = await start_server(setup=setup)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        server.url, namespaces=["/room-12", "/vip-a"], auth={"pass": "ok"}, wait_timeout=5
    )
    try:
        assert await client.call("where", namespace="/room-12", timeout=5) == "/room-12"
        assert await client.call("where", namespace="/vip-a", timeout=5) == "/vip-a"
    finally:
        await client.disconnect()
    refused = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", errors.append, namespace="/vip-b")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(
            server.url, namespaces=["/vip-b"], auth={"pass": "no"}, wait_timeout=5
        )
    assert errors == [{"message": "Invalid namespace"}]
    await refused.disconnect()


async def test_server_call_times_out_without_an_ack(start_server: StartServer) -> None:
    outcome: asyncio.Queue[Any] = asyncio.Queue()

    def setup(io: Any) -> None:
        @io.on("ask")
        async def ask(socket: Any) -> None:
            try:
                await socket.call("question", timeout=0.3)
            except AckTimeout as exc:
                await outcome.put(exc)

    server = await start_server(setup=setup)
    async with (
        aiohttp.ClientSession() as http,  # a raw client that never answers acks
        http.ws_connect(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket") as ws,
    ):
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40")
        assert (await ws.receive_str()).startswith("40")
        await ws.send_str('42["ask"]')
        assert await ws.receive_str() == '420["question"]'
        assert isinstance(await asyncio.wait_for(outcome.get(), 5), AckTimeout)


async def test_generate_id_hook(start_server: StartServer) -> None:
    def setup(io: Any) -> None:
        io.generate_id = lambda request: (
            "custom-" + request.headers.get("X-Tenant", "x") + "-0123456789abcdef"
        )

    server = await start_server(setup=setup)
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/socket.io/?EIO=4&transport=polling", headers={"X-Tenant": "t1"}
        ) as resp,
    ):
        body = await resp.text()
    assert json.loads(body[1:])["sid"] == "custom-t1-0123456789abcdef"


async def test_jsonp_polling_eio3(conformance: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{conformance.url}/engine.io/?EIO=3&transport=polling&j=2") as resp:
            body = await resp.text()
            assert resp.headers["Content-Type"].startswith("text/javascript")
        match = re.fullmatch(r'___eio\[2\]\((".*")\);', body)
        assert match is not None
        sid = json.loads(json.loads(match.group(1)).split(":", 1)[1][1:])["sid"]
        url = f"{conformance.url}/engine.io/?EIO=3&transport=polling&j=2&sid={sid}"
        async with http.post(url, data={"d": "6:4hello"}) as resp:
            assert await resp.text() == "ok"
        async with http.get(url) as resp:
            assert await resp.text() == '___eio[2]("6:4hello");'


@pytest.mark.slow
async def test_serve_loads_app_and_shuts_down_gracefully(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wxio.adapter",
        "serve",
        "--port",
        str(port),
        "--app",
        "tests.adapter.user_app:setup",
        cwd=str(ROOT),
        env={**os.environ, "WXIO_DEMO_KEY": "demo-key", "WXIO_DATA_DIR": str(tmp_path / "data")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert f"127.0.0.1:{port}/socket.io/" in banner
        demo = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert "DEMO MODE" in demo and "demo-key" in demo
        # Its handler is on "/", the routing core's namespace: said once, after the banner.
        for _ in range(10):
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            if "application handlers on namespace '/'" in line:
                assert "WARNING" in line and "event 'hello'" in line
                break
        else:
            raise AssertionError("no warning about the handler on the core's namespace")
        client = socketio.AsyncClient(reconnection=False)
        gone = asyncio.Event()
        client.on("disconnect", lambda *reason: gone.set())
        signer = Signer("demo", "demo-key")  # "/" is the routing core's namespace: sign in
        await client.connect(
            f"http://127.0.0.1:{port}", auth=signer.auth(), transports=["websocket"], wait_timeout=5
        )
        assert await client.call("hello", "wx", timeout=5) == "hello wx"
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(gone.wait(), 10)  # the server closed the session, then exited
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        await client.disconnect()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity"])
async def test_large_poll_responses_are_compressed_when_accepted(
    conformance: Any, encoding: str
) -> None:
    import zlib

    async with aiohttp.ClientSession(auto_decompress=False) as http:
        base = f"{conformance.url}/engine.io/?EIO=4&transport=polling"
        async with http.get(base) as resp:
            sid = json.loads((await resp.text())[1:])["sid"]
        big = "4" + "x" * 5000
        async with http.post(f"{base}&sid={sid}", data=big) as resp:
            assert await resp.text() == "ok"
        async with http.get(f"{base}&sid={sid}", headers={"Accept-Encoding": encoding}) as resp:
            raw = await resp.read()
            got = resp.headers.get("Content-Encoding")
    if encoding == "identity":
        assert got is None and raw.decode() == big
    else:
        assert got == encoding
        wbits = 31 if encoding == "gzip" else 15
        assert zlib.decompress(raw, wbits).decode() == big
        assert len(raw) < len(big) // 10


async def test_a_trickling_poll_body_is_cut_after_one_heartbeat_period(
    start_server: StartServer,
) -> None:
    server = await start_server(profile="conformance")  # pingInterval 0.3 + pingTimeout 0.2
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/engine.io/?EIO=4&transport=polling") as resp,
    ):
        sid = json.loads((await resp.text())[1:])["sid"]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n4".encode()
    )
    await writer.drain()
    try:
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.split()[1] in (b"408", b"400")  # 400 if the ping timeout came first
    finally:
        writer.close()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/engine.io/?EIO=4&transport=polling&sid={sid}") as resp,
    ):
        assert resp.status == 400  # the session is gone


async def test_prometheus_metrics(start_server: StartServer) -> None:
    from wxio.adapter.config import ServerConfig

    from .core_clients import RawClient

    server = await start_server(
        apps={"shop": {"key": "k"}}, config=ServerConfig(metrics_path="/metrics")
    )
    shop = Signer("shop", "k")
    raw = await RawClient.connect(server.ws_url, shop, user="u")
    try:
        assert (await raw.request(shop.envelope("requestId")))["data"]["action"] == "saveId"
        denied = await raw.request(shop.envelope("sendToOthers", 1, target="nobody"))
        assert denied["data"]["payload"]["reason"] == "target_offline"
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as resp:
            text = await resp.text()
        assert 'wxio_core_messages_total{app="shop",action="requestId"} 1' in text
        assert 'wxio_core_denied_total{app="shop",reason="target_offline"} 1' in text
        assert 'wxio_core_connections{app="shop"} 1' in text
        assert "# TYPE wxio_engine_sessions gauge" in text
    finally:
        await raw.close()
    plain = await start_server(apps={"shop": {"key": "k"}})
    async with aiohttp.ClientSession() as http, http.get(f"{plain.url}/metrics") as resp:
        assert resp.status == 404  # off unless configured


async def test_closed_sessions_are_logged_with_why_and_counted_by_reason(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The session's ``Closed(reason, detail)`` reaches the log and the close counter."""
    from wxio.adapter.config import ServerConfig

    server = await start_server(config=ServerConfig(metrics_path="/metrics"))
    caplog.set_level("INFO", logger="wxio.engine")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as resp:
            sid = json.loads((await resp.text())[1:])["sid"]
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data="1") as resp:  # the client closes
            assert resp.status == 200
        async with http.post(url, data="1") as resp:
            assert resp.status == 400  # the session is gone
        async with http.get(f"{server.url}/metrics") as resp:
            text = await resp.text()
    assert "# TYPE wxio_engine_closes_total counter" in text
    assert 'wxio_engine_closes_total{path="/socket.io/",reason="transport close"} 1' in text
    assert f"{sid} closed: transport close (client sent close)" in caplog.text


async def test_socket_states_as_handlers_see_them(start_server: StartServer) -> None:
    """connected in ``connect``; still connected (DISCONNECTING) in ``disconnecting``, where a
    second disconnect does not run the sequence again; DISCONNECTED in ``disconnect``."""
    from wxio.protocol.socketio.state import SocketState

    seen: list[tuple[str, SocketState, bool]] = []
    done = asyncio.Event()

    def setup(io: Any) -> None:
        nsp = io.of("/states")

        @nsp.on("connect")
        def connect(socket: Any) -> None:
            seen.append(("connect", socket.state, socket.connected))

        @nsp.on("disconnecting")
        def disconnecting(socket: Any, reason: str) -> None:
            seen.append(("disconnecting", socket.state, socket.connected))
            socket.disconnect()  # refused by the table: the sequence runs once

        @nsp.on("disconnect")
        def disconnect(socket: Any, reason: str) -> None:
            seen.append((reason, socket.state, socket.connected))
            done.set()

        nsp.on("bye", lambda socket: socket.disconnect())

    server = await start_server(setup=setup)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(server.url, namespaces=["/states"], wait_timeout=5)
    try:
        await client.emit("bye", namespace="/states")
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await client.disconnect()
    assert seen == [
        ("connect", SocketState.CONNECTED, True),
        ("disconnecting", SocketState.DISCONNECTING, True),
        ("server namespace disconnect", SocketState.DISCONNECTED, False),
    ]
