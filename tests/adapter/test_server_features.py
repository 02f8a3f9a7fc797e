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
    await client.connect(server.url, namespaces=["/room-12", "/vip-a"], auth={"pass": "ok"}, wait_timeout=5)
    try:
        assert await client.call("where", namespace="/room-12", timeout=5) == "/room-12"
        assert await client.call("where", namespace="/vip-a", timeout=5) == "/vip-a"
    finally:
        await client.disconnect()
    refused = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", errors.append, namespace="/vip-b")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(server.url, namespaces=["/vip-b"], auth={"pass": "no"}, wait_timeout=5)
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
    async with aiohttp.ClientSession() as http:  # a raw client that never answers acks
        async with http.ws_connect(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket") as ws:
            assert (await ws.receive_str()).startswith("0")
            await ws.send_str("40")
            assert (await ws.receive_str()).startswith("40")
            await ws.send_str('42["ask"]')
            assert await ws.receive_str() == '420["question"]'
            assert isinstance(await asyncio.wait_for(outcome.get(), 5), AckTimeout)


async def test_generate_id_hook(start_server: StartServer) -> None:
    def setup(io: Any) -> None:
        io.generate_id = lambda request: "custom-" + request.headers.get("X-Tenant", "x") + "-0123456789abcdef"

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling", headers={"X-Tenant": "t1"}) as resp:
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
        sys.executable, "-m", "wxio.adapter", "serve", "--port", str(port),
        "--app", "tests.adapter.user_app:setup",
        cwd=str(ROOT),
        env={**os.environ, "WXIO_DEMO_KEY": "demo-key"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert f"127.0.0.1:{port}/socket.io/" in banner
        demo = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert "DEMO MODE" in demo and "demo-key" in demo
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
