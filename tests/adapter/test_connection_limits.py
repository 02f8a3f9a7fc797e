"""``[server] max_connections`` and ``max_connections_per_address``: every accepted
TCP connection counts, whichever way it is served (a WebSocket below aiohttp, a WebSocket or
HTTP through aiohttp), one over a limit is answered 503 before its request is read and counted
in ``wxio_http_connections_refused_total``, and a connection's place is given back however it
ends."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import socketio
import websockets
from wxio.adapter.config import ConfigError, ServerConfig, load
from wxio.adapter.transports import gate as gate_module
from wxio.adapter.transports.gate import Gate, Refusal

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer
from .wire import raw_http, read_head, until, upgrade_request, wait_eof

APPS = {"shop": {"key": "shop-key"}}
SHOP = Signer("shop", "shop-key")
BOTH_WAYS = pytest.mark.parametrize("native", [True, False], ids=["front door", "aiohttp"])


def gate(server: RunningServer) -> Gate:
    return server.runner.gate


async def refused(server: RunningServer, user: str, **connect: Any) -> int:
    """The status a raw WebSocket client is refused with (fails if it is accepted)."""
    query = urlencode(SHOP.auth(user))
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(f"{server.ws_url}/ws?{query}", **connect)
    return info.value.response.status_code


@BOTH_WAYS
async def test_the_total_limit_counts_every_kind_of_connection(
    start_server: StartServer, native: bool
) -> None:
    server = await start_server(
        apps=APPS,
        config=ServerConfig(max_connections=3, native_websocket=native, metrics_path="/metrics"),
    )
    raw = await RawClient.connect(server.ws_url, SHOP, user="a")
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        server.url, transports=["websocket"], socketio_path="socket.io", auth=SHOP.auth("b")
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/healthz") as response:  # kept alive: the third
            assert response.status == 200
        await until(lambda: gate(server).open == 3, what="three connections counted")
        # A fourth of any kind is refused.
        assert await refused(server, "c") == 503
        async with aiohttp.ClientSession() as other, other.get(f"{server.url}/healthz") as response:
            assert response.status == 503
            assert await response.text() == "too many connections\n"
        late = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await late.connect(
                server.url,
                transports=["websocket"],
                socketio_path="socket.io",
                auth=SHOP.auth("d"),
            )
        # One leaves: one more is served.
        await raw.close()
        await until(lambda: gate(server).open == 2, what="the closed connection given back")
        again = await RawClient.connect(server.ws_url, SHOP, user="e")
        # The count, scraped over the kept-alive connection.
        async with http.get(f"{server.url}/metrics") as response:
            text = await response.text()
        assert 'wxio_http_connections_refused_total{limit="total"} 3' in text
        assert "wxio_http_connections 3" in text
        await again.close()
    await sio.disconnect()
    await until(lambda: gate(server).open == 0, what="every connection given back")


@BOTH_WAYS
async def test_the_per_address_limit(start_server: StartServer, native: bool) -> None:
    server = await start_server(
        apps=APPS, config=ServerConfig(max_connections_per_address=2, native_websocket=native)
    )
    first = await RawClient.connect(server.ws_url, SHOP, user="a")
    second = await RawClient.connect(server.ws_url, SHOP, user="b")
    assert await refused(server, "c") == 503
    # Another address is not held back by this one's connections, and has its own count.
    elsewhere = [
        await websockets.connect(
            f"{server.ws_url}/ws?{urlencode(SHOP.auth(user))}", local_addr=("127.0.0.2", 0)
        )
        for user in ("d", "e")
    ]
    assert gate(server).by_address == {"127.0.0.1": 2, "127.0.0.2": 2}
    assert await refused(server, "f", local_addr=("127.0.0.2", 0)) == 503
    refusals = gate(server).metrics.values("wxio_http_connections_refused_total")
    assert refusals[(("limit", "per_address"),)] == 2
    assert refusals[(("limit", "total"),)] == 0
    for client in (first, second):
        await client.close()
    for ws in elsewhere:
        await ws.close()
    await until(lambda: gate(server).by_address == {}, what="every address given back")


async def test_a_connection_is_given_back_however_it_ends(start_server: StartServer) -> None:
    """Cut at the header deadline, refused 400 by the front door's handover, a plain request,
    an upgrade through aiohttp, a native WebSocket the client drops: none stays counted."""
    server = await start_server(
        apps=APPS, config=ServerConfig(header_timeout=0.3, max_connections=100)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert await wait_eof(reader) == b""
    writer.close()
    bad = upgrade_request("/socket.io/?EIO=4&transport=websocket").replace(
        b"Host: 127.0.0.1\r\n", b"Host: a\r\nHost: b\r\n"
    )
    assert (await raw_http(server.port, bad)).status == 400
    assert (await raw_http(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).status == 200
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/healthz") as response:  # then an upgrade on it
            assert response.status == 200
        async with http.ws_connect(f"{server.url}/ws?{urlencode(SHOP.auth('kept'))}") as ws:
            await ws.receive(timeout=5)
    raw = await RawClient.connect(server.ws_url, SHOP, user="dropped")
    raw.ws.transport.abort()
    await until(lambda: gate(server).open == 0, what="every connection given back")
    assert gate(server).by_address == {}


async def test_a_refused_client_that_never_hangs_up_is_cut(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate_module, "REFUSAL_LINGER", 0.3)
    server = await start_server(config=ServerConfig(max_connections=1))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # held: the one connection
    await until(lambda: gate(server).open == 1, what="the first connection counted")
    # Answered once its head has come (in pieces), then cut though it stays.
    late_reader, late_writer = await asyncio.open_connection("127.0.0.1", server.port)
    late_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r")
    await late_writer.drain()
    late_writer.write(b"\n\r\n")
    status, _, headers = await read_head(late_reader)
    assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "5")
    assert await wait_eof(late_reader) == b"too many connections\n"
    late_writer.close()
    # A refused connection that sends nothing is cut without an answer.
    silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await wait_eof(silent_reader) == b""
    silent_writer.close()
    writer.close()
    await until(lambda: gate(server).open == 0, what="the first connection given back")


class FakeTransport:
    """A TLS transport's answers: no half-close."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.protocol: Any = None

    def get_extra_info(self, name: str) -> Any:
        return ("10.0.0.1", 5000) if name == "peername" else None

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


async def test_without_half_close_the_refusal_closes_after_its_answer() -> None:
    transport = FakeTransport()
    Refusal.install(transport)  # type: ignore[arg-type]
    refusal = transport.protocol
    assert isinstance(refusal, Refusal) and not transport.written
    refusal.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r")  # the head's end split
    assert not transport.written
    refusal.data_received(b"\n")
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    refusal.data_received(b"ignored")
    assert refusal.eof_received() is None
    refusal.connection_lost(None)


async def test_a_slot_is_given_back_once_and_a_flood_is_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "wxio.http")
    limits = Gate(max_connections=1)
    slot = limits.admit(FakeTransport())  # type: ignore[arg-type]
    assert slot is not None
    for _ in range(3):
        assert limits.admit(FakeTransport()) is None  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "refused a connection from 10.0.0.1: over the total connection limit "
        "(1 refused since the last such line)"
    ]
    refusals = limits.metrics.values("wxio_http_connections_refused_total")
    assert refusals[(("limit", "total"),)] == 3
    slot.release()
    slot.release()
    assert (limits.open, limits.by_address) == (0, {})
    limits.bad_request("made up")  # an unknown reason is counted as malformed
    bad = limits.metrics.values("wxio_http_bad_requests_total")
    assert bad[(("reason", "malformed"),)] == 1


@pytest.mark.parametrize("value", ["-1", "1.5", "true", '"10"'])
def test_limits_are_whole_numbers(tmp_path: Path, value: str) -> None:
    path = tmp_path / "wxio.toml"
    path.write_text(f"[server]\nmax_connections_per_address = {value}\n")
    with pytest.raises(ConfigError, match="max_connections_per_address"):
        load(path)
    path.write_text("[server]\nmax_connections = 2000\nmax_connections_per_address = 50\n")
    config = load(path)
    assert (config.max_connections, config.max_connections_per_address) == (2000, 50)
