"""The WebSocket transport: sessions opened directly on WebSocket (what WeChat mini programs do)
and polling sessions upgraded through the probe sequence.

Every WebSocket is a :class:`~.wsconn.WebSocketConnection` with a :class:`ProbeListener` or an
:class:`EngineListener` (no task while idle). The front door takes an upgrade from its head
alone (:func:`native`: a new session, or a probe of a polling session of this node); the others
(an upgrade on a kept-alive connection, an ``allow_request`` or ``generate_id`` hook, a refusal,
another node's session) come through aiohttp's handler (:func:`handle`), which hands the same
connection the same start. Writes go through the connection's :class:`~.outbox.FrameWriter`,
so they never wait behind a read. ``maxPayload`` is checked when a frame header announces its
length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from ...protocol.engineio import handshake
from ...protocol.engineio.handshake import ErrorCode, RequestError
from ...protocol.engineio.packets import Packet, decode_binary, decode_text, encode_text
from ...protocol.engineio.session import CloseReason
from ...protocol.errors import RemoteProtocolError, StateError
from ...protocol.wsframe import text_frame
from ..engine import EngineServer, EngineSocket
from .frontdoor import Acceptance, HandshakeRequest, serve
from .wsconn import WebSocketConnection

log = logging.getLogger("wxio.engine")

Start = Callable[[WebSocketConnection], None]


def refuse(error: RequestError) -> web.Response:
    """An upgrade refused before the 101, as the reference does it: a plain 400 with the text
    (400 whatever the error, ``Forbidden`` from ``allow_request`` included)."""
    response = web.Response(
        status=400,
        text=error.message,
        content_type="text/html",
        headers={"Connection": "close"},
    )
    # The header alone does not end the connection: aiohttp would keep it alive (HTTP/1.1) and
    # the client's socket would stay open. The reference destroys it after the response.
    response.force_close()
    return response


def native(server: EngineServer, request: HandshakeRequest) -> Acceptance | None:
    """Take an upgrade from its head alone, or ``None`` to leave it to :func:`handle` (what
    needs an application's hook, another node, or an error response)."""
    opts = server.options
    if server.allow_request is not None or server.generate_id is not None or not server.accepting:
        return None
    req = handshake.parse_request(
        request.query, method="GET", is_upgrade=True, versions=opts.versions
    )
    if isinstance(req, RequestError) or req.transport != "websocket":
        return None
    if req.sid is None:
        return _acceptance(server, _open(server, request, req))
    sock = server.sessions.get(req.sid)
    if sock is None or sock.eio != req.eio:
        return None  # another node's (forwarded), or refused: aiohttp's handler answers
    return _acceptance(server, _probe(sock))


async def handle(
    server: EngineServer, request: web.Request, req: handshake.Request
) -> web.StreamResponse:
    """An upgrade whose head aiohttp read, once :meth:`EngineServer.handle` let it through."""
    if req.sid is None:
        return await serve(request, _acceptance(server, _open(server, request, req)))
    sock = server.sessions.get(req.sid)
    if sock is None:
        return refuse(RequestError.of(ErrorCode.UNKNOWN_SID))
    if req.eio != sock.eio:
        return refuse(RequestError.of(ErrorCode.BAD_REQUEST))
    return await serve(request, _acceptance(server, _probe(sock)))


def _acceptance(server: EngineServer, start: Start) -> Acceptance:
    opts = server.options
    return Acceptance(
        start=start,
        max_message=opts.max_payload,
        max_buffered=opts.max_buffered_bytes,
        slow_grace=opts.slow_grace,
        compression=opts.ws_compression,
    )


def _open(
    server: EngineServer, request: web.Request | HandshakeRequest, req: handshake.Request
) -> Start:
    """A new session on this WebSocket."""

    def start(conn: WebSocketConnection) -> None:
        sock = server.open_session(request, req, int(time.time() * 1000))
        sock.attach(conn)
        conn.attach(EngineListener(sock))
        server.connected(sock)

    return start


def _probe(sock: EngineSocket) -> Start:
    """The upgrade of a polling session of this node."""

    def start(conn: WebSocketConnection) -> None:
        try:
            sock.session.probe_started(sock.now())
        except StateError:
            conn.start_close()  # a second WebSocket, or a session not on polling: 101, closed
            return
        sock.probe_ws = conn
        sock.pump()
        conn.attach(ProbeListener(sock, conn))

    return start


class ProbeListener:
    """A probe WebSocket: ``2probe`` -> ``3probe``, then ``5``; after that
    the connection is the session's transport and its messages go to an :class:`EngineListener`."""

    __slots__ = ("sock", "conn")

    def __init__(self, sock: EngineSocket, conn: WebSocketConnection) -> None:
        self.sock = sock
        self.conn = conn

    def on_text(self, text: str) -> None:
        self._probe(text, decode_text)

    def on_binary(self, data: bytes) -> None:
        eio = self.sock.eio
        self._probe(data, lambda d: decode_binary(d, eio))

    def _probe(self, data: Any, decode: Callable[[Any], Packet]) -> None:
        sock, conn = self.sock, self.conn
        session = sock.session
        if sock.probe_ws is not conn:
            return  # aborted meanwhile (upgrade timeout, session closed)
        try:
            replies = session.receive_probe(decode(data), sock.now())
        except RemoteProtocolError:
            if session.probing:  # (receive_probe aborts on a packet it refuses)
                session.abort_upgrade("bad probe packet")
            sock.pump()
            conn.start_close()
            return
        for packet in replies:
            conn.writer.write_frame(text_frame(encode_text(packet)))
        sock.pump()
        if sock.ws is conn:  # upgraded: this connection is the session's transport now
            sock.attach(conn)
            conn.hand_to(EngineListener(sock))

    def on_closed(self) -> None:
        sock = self.sock
        if sock.probe_ws is self.conn and sock.session.probing:
            sock.session.abort_upgrade("probe transport closed")
            sock.pump()


class EngineListener:
    """An Engine.IO session's WebSocket: each message to the session (or straight to the layer
    above)."""

    __slots__ = ("sock", "session", "on_message", "eager")

    def __init__(self, sock: EngineSocket) -> None:
        self.sock = sock
        self.session = sock.session
        handler = sock.server.handler
        self.on_message = handler.on_message
        #: Handled in the read callback when the layer above says it needs no task to start.
        self.eager: bool = getattr(handler, "eager", False) is True

    def on_text(self, text: str) -> Coroutine[Any, Any, None] | None:
        session = self.session
        if text[:1] == "4" and session.open:
            # A message on an open session changes no session state: straight to the layer
            # above, without the session's event queue and timer bookkeeping; the work its
            # receiver returns runs here, before the next message.
            sock = self.sock
            try:
                receive = sock.receive_text
                if receive is not None:
                    return receive(text[1:])
                self.on_message(sock, text[1:])
            except Exception:
                log.exception("%s: message handler failed", sock.sid)
                sock.close(CloseReason.TRANSPORT_ERROR, "message handler failed")
            return None
        self._receive(text, decode_text)
        return None

    def on_binary(self, data: bytes) -> None:
        eio = self.sock.eio
        self._receive(data, lambda d: decode_binary(d, eio))

    def _receive(self, data: Any, decode: Callable[[Any], Packet]) -> None:
        session = self.session
        sock = self.sock
        if session.closed:
            return
        try:
            packet = decode(data)
        except RemoteProtocolError:
            session.decode_failed()
            sock.pump()
            return
        session.receive(packet, sock.now())
        sock.pump()

    def on_closed(self) -> None:
        if not self.session.closed:
            self.sock.close(CloseReason.TRANSPORT_CLOSE, "websocket closed")
