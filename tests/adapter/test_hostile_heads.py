"""Hostile request heads, over raw TCP: the front door and aiohttp give every head
the same answer (the same table of statuses with ``native_websocket`` on and off, on the raw
endpoint and on Engine.IO), a WebSocket upgrade that breaks the handshake's rules is a 400 on
both ways, and a head aiohttp's parser refuses is one INFO line and a count in
``wxio_http_bad_requests_total``, never an ERROR with a traceback."""

from __future__ import annotations

import asyncio
import inspect
import logging
from urllib.parse import urlencode

import pytest
from aiohttp import web_protocol
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.http_parser import SINGLETON_HEADERS
from wxio.adapter.config import ServerConfig
from wxio.adapter.http import ServerLog
from wxio.adapter.transports.gate import Gate
from wxio.protocol import http1

from .conftest import RunningServer, StartServer
from .core_clients import Signer
from .wire import read_head, until, wait_eof

APPS = {"shop": {"key": "shop-key"}}
SHOP = Signer("shop", "shop-key")
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = (
    ("Host", "127.0.0.1"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
)


def head(
    target: str,
    *,
    method: str = "GET",
    extra: tuple[tuple[str, str], ...] = (),
    drop: str = "",
    body: bytes = b"",
    raw: str = "",
    target_length: int = 0,
) -> bytes:
    """An upgrade request to ``target`` (padded to ``target_length``): the handshake's fields
    but ``drop``, then ``extra``, then the ``raw`` lines as written, then ``body``."""
    if target_length:
        target += "&pad="
        target += "p" * (target_length - len(target))
    fields = [f for f in HANDSHAKE if f[0] != drop] + list(extra)
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return f"{method} {target} HTTP/1.1\r\n{lines}{raw}\r\n".encode() + body


# (name, how the request differs from a valid upgrade, the one answer of both ways)
CASES: list[tuple[str, dict[str, object], int]] = [
    ("valid", {}, 101),
    ("Content-Length: 0", {"extra": (("Content-Length", "0"),)}, 101),
    # RFC 9112 §6.1: both length fields is an error.
    (
        "Content-Length and Transfer-Encoding",
        {
            "extra": (("Content-Length", "5"), ("Transfer-Encoding", "chunked")),
            "body": b"0\r\n\r\n",
        },
        400,
    ),
    ("a body (Content-Length)", {"extra": (("Content-Length", "5"),), "body": b"hello"}, 400),
    (
        "a body (chunked)",
        {"extra": (("Transfer-Encoding", "chunked"),), "body": b"5\r\nhello\r\n0\r\n\r\n"},
        400,
    ),
    ("two Content-Length", {"extra": (("Content-Length", "0"), ("Content-Length", "0"))}, 400),
    # RFC 9112 §3.2: one Host.
    ("two Host", {"extra": (("Host", "evil.example"),)}, 400),
    ("no Host", {"drop": "Host"}, 400),
    # RFC 6455 §11.3.1: the key appears once.
    ("two keys, the same", {"extra": (("Sec-WebSocket-Key", KEY),)}, 400),
    ("two keys", {"extra": (("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="),)}, 400),
    ("two versions", {"extra": (("Sec-WebSocket-Version", "13"),)}, 400),
    ("no key", {"drop": "Sec-WebSocket-Key"}, 400),
    ("a POST", {"method": "POST"}, 400),
    # Upgrade without Connection: upgrade is no upgrade: a WebSocket endpoint refuses it.
    ("no Connection: upgrade", {"drop": "Connection"}, 400),
    (
        "Connection: keep-alive",
        {"drop": "Connection", "extra": (("Connection", "keep-alive"),)},
        400,
    ),
    ("line folding", {"raw": "X-Folded: a\r\n b\r\n"}, 400),
    ("hixie-76 key", {"extra": (("Sec-WebSocket-Key1", "1 2"),)}, 400),
    # aiohttp's limits, which the front door now keeps too.
    ("two User-Agent", {"extra": (("User-Agent", "a"), ("User-Agent", "b"))}, 400),
    ("129 header fields", {"extra": tuple((f"X-{i}", "v") for i in range(124))}, 400),
    ("128 header fields", {"extra": tuple((f"X-{i}", "v") for i in range(123))}, 101),
    ("a value over 8190 bytes", {"extra": (("X-Big", "a" * 8191),)}, 400),
    ("a field of 8190 bytes", {"extra": (("X-Big", "a" * (8190 - len("X-Big"))),)}, 101),
    # Over 8190 with its name, which aiohttp lets through: the front door leaves it to aiohttp.
    ("a value of 8190 bytes", {"extra": (("X-Big", "a" * 8190),)}, 101),
    ("a target over 8190 bytes", {"target_length": 8191}, 400),
    ("a target of 8190 bytes", {"target_length": 8190}, 101),
    # Longer than the front door reads: aiohttp's to answer, on both ways.
    ("a head over 16 KB", {"extra": (("X-A", "a" * 8000), ("X-B", "b" * 8000), ("X-C", "c"))}, 101),
]


async def answer(server: RunningServer, request: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        status, _, _ = await read_head(reader)
        return status
    finally:
        writer.close()


@pytest.mark.parametrize("native", [True, False], ids=["front door", "aiohttp"])
async def test_both_ways_give_every_head_the_same_answer(
    start_server: StartServer, native: bool
) -> None:
    server = await start_server(apps=APPS, config=ServerConfig(native_websocket=native))
    assert (server.runner.router is not None) is native
    for target in ("/socket.io/?EIO=4&transport=websocket", "/ws"):
        got: dict[str, int] = {}
        for i, (name, change, _) in enumerate(CASES):
            path = target if target != "/ws" else f"/ws?{urlencode(SHOP.auth(f'u{i}'))}"
            got[name] = await answer(server, head(path, **change))  # type: ignore[arg-type]
        assert got == {name: status for name, _, status in CASES}, target


async def test_a_refused_upgrade_is_counted_and_the_connection_closed(
    start_server: StartServer,
) -> None:
    server = await start_server(apps=APPS)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = head("/socket.io/?EIO=4&transport=websocket", extra=(("Sec-WebSocket-Key", KEY),))
    writer.write(request)
    status, _, headers = await read_head(reader)
    assert status == 400 and headers["connection"] == "close"
    body = await wait_eof(reader)
    assert body == b"a WebSocket upgrade needs one Sec-WebSocket-Key header\n"
    writer.close()
    bad = server.runner.gate.metrics.values("wxio_http_bad_requests_total")
    assert bad[(("reason", "upgrade"),)] == 1


def test_the_front_door_keeps_aiohttps_limits() -> None:
    """The front door must take no head aiohttp would refuse: its limits are aiohttp's
    defaults (which the server keeps), and its singleton fields are aiohttp's."""
    defaults = inspect.signature(web_protocol.RequestHandler.__init__).parameters
    assert defaults["max_line_size"].default == http1.MAX_TARGET
    assert defaults["max_field_size"].default == http1.MAX_FIELD
    assert defaults["max_headers"].default == http1.MAX_HEADERS
    assert http1.SINGLETONS >= SINGLETON_HEADERS


MALFORMED = {
    "both length fields": (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two Content-Length": (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
    ),
    "line folding": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",
    "an oversized field": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
    "an oversized head": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: a\r\n" * 200 + b"\r\n",
    "no Host": b"GET /healthz HTTP/1.1\r\n\r\n",
    "a bad method": b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("native", [True, False], ids=["front door", "aiohttp"])
async def test_malformed_heads_are_an_info_line_and_a_count(
    start_server: StartServer, native: bool, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(config=ServerConfig(native_websocket=native))
    caplog.set_level(logging.DEBUG)
    for name, request in MALFORMED.items():
        assert await answer(server, request) == 400, name
    # A bad method on a connection that served a request before (aiohttp logs that one at
    # ERROR even where it keeps a first request's garbage at DEBUG).
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, headers = await read_head(reader)
    assert status == 200
    await reader.readexactly(int(headers["content-length"]))
    writer.write(b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, _ = await read_head(reader)
    assert status == 400
    writer.close()
    requests = len(MALFORMED) + 1

    def reports() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "aiohttp.server" or "refused a malformed request" in r.getMessage()
        ]

    # Logged as aiohttp answers, soon after the 400 is read.
    await until(lambda: len(reports()) >= requests, what="every request logged")
    loud = [
        r
        for r in caplog.records
        if (r.levelno > logging.INFO or r.exc_info)
        # (an earlier test's leaked client session, collected now, is not this server's)
        and not r.getMessage().startswith("Unclosed client session")
    ]
    assert loud == [], [r.getMessage() for r in loud]
    lines = [r for r in reports() if "refused a malformed request" in r.getMessage()]
    assert len(lines) == requests
    assert all(r.name == "wxio.http" and "\n" not in r.getMessage() for r in lines)
    bad = server.runner.gate.metrics.values("wxio_http_bad_requests_total")
    assert sum(bad.values()) == requests
    assert bad[(("reason", "too_large"),)] == 2
    assert bad[(("reason", "method"),)] == 2


def test_the_server_log_keeps_tracebacks_for_faults(caplog: pytest.LogCaptureFixture) -> None:
    """Only a request the parser refused loses its traceback; however the exception is passed."""
    caplog.set_level(logging.DEBUG)
    gate = Gate()
    server_log = ServerLog(gate)
    try:
        raise BadHttpMessage("Bad\nthing")
    except BadHttpMessage:
        server_log.exception("Error handling request from %s", "10.0.0.1")  # exc_info=True
        server_log.error("Error handling request from %s", "10.0.0.2")  # no exception: as is
    try:
        raise BadHttpMessage("again")
    except BadHttpMessage as exc:
        server_log.warning("from %s", "10.0.0.3", exc_info=(type(exc), exc, exc.__traceback__))
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        server_log.exception("Error handling request from %s", "10.0.0.4", exc_info=exc)
    records = [(r.name, r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records]
    assert records == [
        ("wxio.http", "INFO", "refused a malformed request from 10.0.0.1 (malformed): Bad", False),
        ("aiohttp.server", "ERROR", "Error handling request from 10.0.0.2", False),
        (
            "wxio.http",
            "INFO",
            "refused a malformed request from 10.0.0.3 (malformed): again",
            False,
        ),
        ("aiohttp.server", "ERROR", "Error handling request from 10.0.0.4", True),
    ]
    bad = gate.metrics.values("wxio_http_bad_requests_total")
    assert bad[(("reason", "malformed"),)] == 2
