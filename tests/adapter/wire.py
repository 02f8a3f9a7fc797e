"""Wire-level helpers for the raw Engine.IO / Socket.IO tests (no mocks, real loopback I/O).

Three kinds of client, from polite to rude:

- :class:`Polling`: an aiohttp ``ClientSession`` speaking long-polling by hand (every request
  and body is explicit, nothing is decoded for us);
- :func:`ws_open`: an aiohttp WebSocket client, for well-formed frames;
- :class:`RawWS` and :func:`raw_http`: asyncio streams, for what aiohttp's client refuses to send
  (invalid UTF-8, floods of continuation frames, unfinished headers, garbage after an upgrade)
  and for reading a refused upgrade byte for byte.

Every wait is bounded (:data:`T`), so a server that hangs fails the test quickly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Self
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSMsgType
from wxio.adapter.app import ENGINES
from wxio.adapter.engine import EngineServer, EngineSocket

from .conftest import RunningServer

#: Upper bound for any single wait on the server. Generous for a loaded 2-core box, short enough
#: that a hang fails fast.
T = 3.0
TEXT = "text/plain;charset=UTF-8"
OPEN_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}


# -- server introspection (only to synchronise, never to drive) ----------------------------------


def engine(server: RunningServer, path: str = "/engine.io/") -> EngineServer:
    for e in server.app[ENGINES]:
        if e.options.path == path:
            return e
    raise LookupError(path)


def session(server: RunningServer, sid: str, path: str = "/engine.io/") -> EngineSocket | None:
    return engine(server, path).sessions.get(sid)


async def until(pred: Callable[[], bool], timeout: float = T, what: str = "condition") -> None:
    """Poll ``pred`` every 5 ms; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


# -- payload codecs (independent of the server's own codec) --------------------------------------


def v4_split(body: str) -> list[str]:
    return body.split("\x1e")


def v3_split(body: str) -> list[str]:
    """``<len>:<packet>``... with lengths in UTF-16 code units; asserts exact framing."""
    out = []
    units = body.encode("utf-16-le", "surrogatepass")
    pos = 0
    while pos < len(units):
        head = units[pos : pos + 40].decode("utf-16-le", "ignore")
        colon = head.index(":")
        length = int(head[:colon])
        start = pos + 2 * (colon + 1)
        out.append(units[start : start + 2 * length].decode("utf-16-le", "surrogatepass"))
        pos = start + 2 * length
    assert pos == len(units), f"v3 framing overruns: {body!r}"
    return out


def v3_join(*packets: str) -> str:
    return "".join(f"{len(p.encode('utf-16-le')) // 2}:{p}" for p in packets)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- polling ---------------------------------------------------------------------------------


class Reply(NamedTuple):
    status: int
    headers: Any
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def ctype(self) -> str:
        return str(self.headers.get("Content-Type", ""))

    def json(self) -> Any:
        return json.loads(self.body)


class Polling:
    """Hand-written long-polling requests against one mount path."""

    def __init__(self, server: RunningServer, path: str = "/engine.io/") -> None:
        self.server = server
        self.path = path
        # force_close: every request on its own connection, so a held GET never blocks a POST
        # behind it and a 413 that leaves a body unread cannot poison a pooled connection.
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            auto_decompress=True,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    def url(self, **query: Any) -> str:
        q = urlencode({k: v for k, v in query.items() if v is not None})
        return f"{self.server.url}{self.path}?{q}"

    async def request(
        self,
        method: str,
        data: str | bytes | None = None,
        ctype: str | None = None,
        timeout: float = T,
        headers: dict[str, str] | None = None,
        **query: Any,
    ) -> Reply:
        hdrs = dict(headers or {})
        if ctype is not None:
            hdrs["Content-Type"] = ctype
        body = data.encode("utf-8") if isinstance(data, str) else data

        async def go() -> Reply:
            async with self.http.request(method, self.url(**query), data=body, headers=hdrs) as r:
                return Reply(r.status, r.headers, await r.read())

        return await asyncio.wait_for(go(), timeout)

    async def handshake(self, eio: int = 4, **query: Any) -> tuple[str, dict[str, Any], Reply]:
        """Open a polling session; returns (sid, open JSON, the raw reply)."""
        r = await self.request("GET", EIO=eio, transport="polling", **query)
        assert r.status == 200, r
        packets = v4_split(r.text) if eio == 4 else v3_split(r.text)
        assert packets[0][0] == "0", r.text
        info = json.loads(packets[0][1:])
        return info["sid"], info, r

    async def get(self, sid: str, eio: int = 4, timeout: float = T, **query: Any) -> Reply:
        return await self.request(
            "GET", EIO=eio, transport="polling", sid=sid, timeout=timeout, **query
        )

    async def post(
        self, sid: str, data: str | bytes, eio: int = 4, ctype: str = TEXT, **query: Any
    ) -> Reply:
        return await self.request(
            "POST", data, ctype=ctype, EIO=eio, transport="polling", sid=sid, **query
        )

    async def packets(self, sid: str, eio: int = 4, timeout: float = T, **query: Any) -> list[str]:
        """GET and split the payload (text payloads only)."""
        r = await self.get(sid, eio, timeout=timeout, **query)
        assert r.status == 200, r
        return v4_split(r.text) if eio == 4 else v3_split(r.text)


async def hold_get(
    p: Polling, server: RunningServer, sid: str, eio: int = 4
) -> asyncio.Task[Reply]:
    """Start a GET and return once the server holds it (nothing is queued for it yet)."""
    task = asyncio.ensure_future(p.get(sid, eio))

    def held() -> bool:
        sock = session(server, sid, p.path)
        return sock is not None and sock.get_waiter is not None

    await until(held, what="the GET to be held")
    return task


def assert_error(r: Reply, status: int, code: int, message: str) -> None:
    """One row of the reference error table: status, JSON content type, exact body, CORS."""
    assert r.status == status, r
    assert r.ctype.startswith("application/json"), r.ctype
    assert r.body == json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()
    assert r.headers.get("Access-Control-Allow-Origin") == "*"


def assert_empty_400(r: Reply) -> None:
    assert r.status == 400, r
    assert r.body == b"", r.body


async def assert_gone(p: Polling, sid: str, eio: int = 4) -> None:
    """The session no longer exists: any poll is ``400 {"code":1,...}``."""
    assert_error(await p.get(sid, eio), 400, 1, "Session ID unknown")


# -- WebSocket through aiohttp -----------------------------------------------------------------


async def ws_open(
    http: aiohttp.ClientSession, server: RunningServer, path: str = "/engine.io/", **query: Any
) -> aiohttp.ClientWebSocketResponse:
    query.setdefault("transport", "websocket")
    q = urlencode(query)
    return await asyncio.wait_for(
        http.ws_connect(f"{server.ws_url}{path}?{q}", autoping=True, max_msg_size=0), T
    )


async def ws_recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = T) -> str | bytes | None:
    """The next data frame; None when the server closed the socket."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
        return msg.data  # type: ignore[no-any-return]
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED), msg
    return None


async def ws_recv_until_closed(
    ws: aiohttp.ClientWebSocketResponse, timeout: float = T
) -> list[str | bytes]:
    """Everything the server sends until it closes the socket (which must happen in time)."""
    out: list[str | bytes] = []

    async def drain() -> None:
        while True:
            data = await ws_recv(ws, timeout)
            if data is None:
                return
            out.append(data)

    await asyncio.wait_for(drain(), timeout)
    return out


async def ws_handshake(
    http: aiohttp.ClientSession,
    server: RunningServer,
    path: str = "/engine.io/",
    eio: int = 4,
    **q: Any,
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await ws_open(http, server, path, EIO=eio, **q)
    first = await ws_recv(ws)
    assert isinstance(first, str) and first[0] == "0", first
    return ws, json.loads(first[1:])


async def ws_next_skipping_pings(
    ws: aiohttp.ClientWebSocketResponse, timeout: float = T
) -> str | bytes | None:
    """The next frame that is not a v4 ping (pings are answered, so the session stays up)."""
    while True:
        data = await ws_recv(ws, timeout)
        if data == "2":
            await ws.send_str("3")
            continue
        return data


# -- raw HTTP and raw WebSocket over asyncio streams --------------------------------------------


class RawReply(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


async def read_head(
    reader: asyncio.StreamReader, timeout: float = T
) -> tuple[int, str, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    _, status, reason = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return int(status), reason, headers


async def raw_http(port: int, request: bytes, timeout: float = T) -> RawReply:
    """Send raw bytes, read one response; the body by Content-Length, else to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        status, reason, headers = await read_head(reader, timeout)
        if "content-length" in headers:
            body = await asyncio.wait_for(
                reader.readexactly(int(headers["content-length"])), timeout
            )
        else:
            body = await asyncio.wait_for(reader.read(), timeout)
        return RawReply(status, reason, headers, body)
    finally:
        writer.close()


async def wait_eof(reader: asyncio.StreamReader, timeout: float = T) -> bytes:
    """Read until the server closes the connection (RST counts); returns what was read."""
    chunks = []

    async def go() -> None:
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    await asyncio.wait_for(go(), timeout)
    return b"".join(chunks)


def upgrade_request(path_query: str, key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> bytes:
    return (
        f"GET {path_query} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    mask = os.urandom(4)
    head += mask
    return bytes(head) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWS:
    """A hand-driven WebSocket client: it sends whatever frames it is told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls, port: int, path_query: str, *, extra: bytes = b"", rcvbuf: int | None = None
    ) -> RawWS:
        sock = None
        if rcvbuf is not None:
            # A small receive window before connecting, so a client that stops reading pushes
            # back on the server after a few kilobytes instead of megabytes.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(path_query) + extra)
        await writer.drain()
        status, _, headers = await read_head(reader)
        assert status == 101, (status, headers)
        return cls(reader, writer)

    async def send(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
    ) -> None:
        self.writer.write(frame(opcode, payload, fin=fin, rsv=rsv))
        await asyncio.wait_for(self.writer.drain(), T)

    async def send_text(self, text: str) -> None:
        await self.send(OP_TEXT, text.encode("utf-8"))

    async def recv_frame(self, timeout: float = T) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next server frame; None at EOF."""
        try:
            b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not b1 & 0x80, "server frames are never masked"
            payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None
        return b0 & 0x0F, payload

    async def recv_data(self, timeout: float = T) -> str | bytes | None:
        """The next text/binary message (pings answered, v4 pings answered with ``3``); None on a
        close frame or EOF."""
        while True:
            f = await self.recv_frame(timeout)
            if f is None or f[0] == OP_CLOSE:
                return None
            op, payload = f
            if op == OP_PING:
                await self.send(OP_PONG, payload)
            elif op == OP_TEXT:
                return payload.decode("utf-8")
            elif op == OP_BINARY:
                return payload

    async def close_code(self, timeout: float = T) -> int | None:
        """Skip data frames until the server's close frame; its status code (None at bare EOF)."""

        async def go() -> int | None:
            while True:
                f = await self.recv_frame(timeout)
                if f is None:
                    return None
                if f[0] == OP_CLOSE:
                    return struct.unpack("!H", f[1][:2])[0] if len(f[1]) >= 2 else 1005

        return await asyncio.wait_for(go(), timeout)

    def abort(self) -> None:
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()


# -- the server still works ---------------------------------------------------------------------


async def assert_healthy(server: RunningServer) -> None:
    """A fresh client gets normal service on polling and on WebSocket (Engine.IO echo)."""
    async with Polling(server) as p:
        sid, info, _ = await p.handshake(4)
        assert info["upgrades"] == ["websocket"]
        assert (await p.post(sid, "4still-alive")).body == b"ok"
        assert await p.packets(sid) == ["4still-alive"]
        ws, info = await ws_handshake(p.http, server)
        try:
            await ws.send_str("4ws-alive")
            assert await ws_recv(ws) == "4ws-alive"
        finally:
            await ws.close()


Check = Callable[[], Awaitable[None]]
