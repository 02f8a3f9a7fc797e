"""The listening socket's first protocol: WebSocket connections below aiohttp, the rest to it.

Every WebSocket the server serves is a :class:`~.wsconn.WebSocketConnection` on the sans-IO
:class:`~wxio.protocol.websocket.Connection`; there is no other WebSocket stack. A new
connection's first request head is read here (:mod:`wxio.protocol.http1`). An upgrade that a
mount accepts from its head alone (the raw endpoint; an Engine.IO session opened directly on
WebSocket, or a probe of a polling session of this node) is answered with the 101 here: no
aiohttp request, handler task or reader queue stays behind it, which is most of what a
connection cost. Everything else (plain HTTP, polling, an upgrade on a kept-alive connection,
one that needs an application's hook, a refusal, a forwarded session) is handed to aiohttp with
the bytes read so far, behind the :class:`~wxio.adapter.http.HeaderGuard`; an upgrade its
handler accepts becomes the same connection through :func:`serve` (aiohttp read the head, the
connection reads the frames).

The request-header deadline covers the first head here, then the guard covers aiohttp's. The
connection limits (:class:`~.gate.Gate`) are checked when a connection arrives, before its head
is read; its slot goes with the transport to whichever protocol serves it.

A head this parser does not take natively is always aiohttp's to answer, so the two ways cannot
disagree on it: :mod:`wxio.protocol.http1` takes no head aiohttp would refuse, and checks the
rules of a WebSocket upgrade (``upgrade_refusal``) that the server's middleware applies in front
of aiohttp's handlers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from ...protocol.http1 import Incomplete, handshake_key, parse_head, websocket_key
from .gate import Gate, Refusal, Slot
from .wsconn import WebSocketConnection

log = logging.getLogger("wxio.http")

__all__ = [
    "HandshakeRequest",
    "Acceptance",
    "NativeRouter",
    "HeaderDeadline",
    "FrontDoor",
    "handshake_of",
    "serve",
]


class HandshakeRequest:
    """A WebSocket upgrade request, whoever read its head, with the part of
    :class:`aiohttp.web.Request` the mounts read (``headers``, ``query``, ``remote``,
    ``rel_url``, ``secure``...)."""

    __slots__ = ("method", "rel_url", "headers", "remote", "secure", "transport")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        transport: asyncio.BaseTransport,
    ) -> None:
        self.method = method
        self.rel_url = URL(target)
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(headers))
        peer = transport.get_extra_info("peername")
        self.remote: str | None = str(peer[0]) if isinstance(peer, tuple) and peer else None
        self.secure = transport.get_extra_info("sslcontext") is not None
        self.transport = transport

    @property
    def path(self) -> str:
        return self.rel_url.path

    @property
    def query(self) -> MultiDictProxy[str]:
        return self.rel_url.query


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A mount's yes to a native upgrade: the connection's bounds and what to run after the
    101 (``start`` attaches a listener when the layer above is ready)."""

    start: Callable[[WebSocketConnection], None]
    max_message: int
    max_buffered: int
    slow_grace: float
    heartbeat: float = 0.0
    #: Agree on permessage-deflate when the client offers it (``[engine] ws_compression``).
    compression: bool = False


#: Which mount takes an upgrade natively, and how (``None``: aiohttp serves it).
NativeRouter = Callable[[HandshakeRequest], Acceptance | None]


class HeaderDeadline(asyncio.Protocol):
    """The request-header deadline of the listening socket's protocols (this front door, and
    :class:`~wxio.adapter.http.HeaderGuard` in front of aiohttp): a connection that has not
    completed a request's headers ``timeout`` seconds after :meth:`arm` is cut (slowloris).
    They also hold the connection's :class:`~.gate.Slot` while they own the transport."""

    __slots__ = ("timeout", "transport", "slot", "_timer", "_lost")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        #: The connection's place under the connection limits: released when it is lost, or
        #: handed on with the transport.
        self.slot: Slot | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False

    def admit(self, transport: asyncio.BaseTransport, gate: Gate | None) -> bool:
        """For the listener's first protocol: the gate's yes (this protocol keeps the slot), or
        no (the connection is answered 503 by a :class:`~.gate.Refusal`, not by this one)."""
        if gate is None:
            return True
        self.slot = gate.admit(transport)
        if self.slot is None:
            self._lost = True
            Refusal.install(transport)
            return False
        return True

    def arm(self) -> None:
        # Never after connection_lost: aiohttp's guard re-arms when a request ends, which for a
        # WebSocket is after the connection is gone, and the timer would keep the whole
        # connection (transport, aiohttp's handler, the request) alive for the timeout.
        if self._lost:
            return
        if self._timer is None and self.transport is not None and self.timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("closing a connection that sent no complete request headers in time")
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports are not subclasses of asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.disarm()
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()


class FrontDoor(HeaderDeadline):
    """Reads one request head, then hands the transport to a WebSocket connection or to
    aiohttp (``http()`` makes aiohttp's protocol, already behind the header guard). With a
    ``gate``, a connection over a limit is refused before anything is read."""

    __slots__ = ("router", "http", "gate", "_buf")

    def __init__(
        self,
        router: NativeRouter,
        http: Callable[[], HeaderDeadline],
        timeout: float,
        gate: Gate | None = None,
    ) -> None:
        super().__init__(timeout)
        self.router = router
        self.http = http
        self.gate = gate
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.admit(transport, self.gate):
            super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        try:
            head = parse_head(buf)
        except Incomplete:
            self._buf = buf
            return
        self._buf = b""
        self.disarm()
        transport = self.transport
        assert transport is not None
        if head is not None:
            key = websocket_key(head)
            if key is not None:
                try:
                    shake = HandshakeRequest(head.method, head.target, head.headers, transport)
                    acceptance = self.router(shake)
                except Exception:
                    log.exception("native upgrade check failed; serving it through aiohttp")
                    acceptance = None
                if acceptance is not None:
                    self._accept(transport, key, shake, acceptance, buf[head.size :])
                    return
        inner = self.http()
        inner.slot, self.slot = self.slot, None
        transport.set_protocol(inner)
        inner.connection_made(transport)
        inner.data_received(buf)

    def _accept(
        self,
        transport: asyncio.Transport,
        key: str,
        shake: HandshakeRequest,
        acceptance: Acceptance,
        rest: bytes,
    ) -> None:
        conn = _connection(transport, acceptance)
        slot, self.slot = self.slot, None
        if slot is not None:
            conn.on_lost = slot.release
        transport.set_protocol(conn)
        conn.accept(key, _offers(shake, acceptance))
        if rest:
            conn.data_received(rest)  # kept until the layer above attaches
        _start(conn, acceptance)

    def eof_received(self) -> bool | None:
        return None


def _connection(transport: asyncio.BaseTransport, acceptance: Acceptance) -> WebSocketConnection:
    return WebSocketConnection(
        transport,
        max_message=acceptance.max_message,
        max_buffered=acceptance.max_buffered,
        slow_grace=acceptance.slow_grace,
        heartbeat=acceptance.heartbeat,
    )


def _offers(shake: HandshakeRequest, acceptance: Acceptance) -> list[str]:
    """The extension offers to negotiate (none unless the mount compresses)."""
    if not acceptance.compression:
        return []
    return shake.headers.getall("Sec-WebSocket-Extensions", [])


def _start(conn: WebSocketConnection, acceptance: Acceptance) -> None:
    try:
        acceptance.start(conn)
    except Exception:
        log.exception("starting a websocket failed")
        conn.transport.abort()


# -- upgrades whose head aiohttp read ----------------------------------------------------------


def handshake_of(request: web.Request) -> HandshakeRequest | None:
    """The upgrade aiohttp read, as the front door would have seen it; None unless it is a
    valid version-13 WebSocket handshake."""
    fields = list(request.headers.items())
    transport = request.transport
    if transport is None or handshake_key(request.method, fields) is None:
        return None
    return HandshakeRequest(request.method, str(request.rel_url), fields, transport)


class _Feed:
    """Where aiohttp's protocol puts a connection's bytes after an upgrade (its ``set_parser``,
    as for its own WebSocket reader): into the :class:`WebSocketConnection`."""

    __slots__ = ("conn",)

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.conn.data_received(data)
        return False, b""

    def feed_eof(self) -> None:
        self.conn.connection_lost(None)


class _Upgraded(web.StreamResponse):
    """A handler's answer once its connection became a WebSocket: the 101 was written with the
    connection's own bytes, so aiohttp writes nothing more (and keeps nothing alive)."""

    async def prepare(self, request: web.BaseRequest) -> Any:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


async def serve(request: web.Request, acceptance: Acceptance) -> web.StreamResponse:
    """Serve an upgrade aiohttp read (see :func:`handshake_of`) as the front door serves its
    own: the same 101, then a :class:`WebSocketConnection` reads the frames aiohttp's protocol
    receives. Returns once the connection is gone (aiohttp's handler task is the one cost of
    this way in)."""
    shake = handshake_of(request)
    if shake is None:
        raise web.HTTPBadRequest(text="websocket upgrade required\n")
    key = handshake_key(request.method, list(request.headers.items()))
    assert key is not None
    conn = _connection(shake.transport, acceptance)
    conn.accept(key, _offers(shake, acceptance))
    request.protocol.keep_alive(False)
    request.protocol.set_parser(_Feed(conn))  # type: ignore[arg-type]
    _start(conn, acceptance)
    try:
        await conn.wait_closed()
    except asyncio.CancelledError:  # aiohttp's shutdown gave up on it
        conn.transport.abort()
        raise
    response = _Upgraded(status=101)
    response.force_close()
    return response
