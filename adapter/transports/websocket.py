"""The WebSocket transport: sessions opened directly on WebSocket (what WeChat mini programs do)
and polling sessions upgraded through the probe sequence.

A WebSocket on a new connection that opens a session, or upgrades a polling session of this
node, is served below aiohttp (:func:`native`, :class:`ProbeListener`, :class:`EngineListener`:
no task while idle). The others (another node's or an unknown sid, an upgrade on a kept-alive
connection, an ``allow_request`` or ``generate_id`` hook, permessage-deflate) go through
aiohttp's WebSocketResponse with one reader task each. Writes go through the session's
:class:`~.outbox.FrameWriter` either way, so they never wait behind a read. ``maxPayload`` is
checked when a frame header announces its length.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from ...protocol.engineio import handshake
from ...protocol.engineio.handshake import ErrorCode, RequestError
from ...protocol.engineio.packets import (
    Packet,
    decode_binary,
    decode_text,
    encode_binary,
    encode_text,
)
from ...protocol.engineio.session import CloseReason
from ...protocol.errors import RemoteProtocolError, StateError
from ...protocol.wsframe import text_frame
from ..engine import EngineServer, EngineSocket
from .frontdoor import Acceptance, HandshakeRequest
from .wsconn import WebSocketConnection

log = logging.getLogger("wxio.engine")


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


async def write_packets(ws: web.WebSocketResponse, packets: list[Packet], eio: int) -> None:
    for packet in packets:
        if isinstance(packet.data, bytes):
            await ws.send_bytes(encode_binary(packet, eio))
        else:
            await ws.send_str(encode_text(packet))


def _response(server: EngineServer) -> web.WebSocketResponse:
    opts = server.options
    return web.WebSocketResponse(
        # aiohttp refuses a message of exactly max_msg_size bytes; maxPayload is the largest
        # message allowed (ws: only a larger one is a 1009), so give aiohttp one byte more.
        # (With permessage-deflate, off by default, the decompressed bound is then one more.)
        max_msg_size=opts.max_payload + 1,
        compress=opts.ws_compression,
        autoping=True,
    )


def _decode(msg_type: WSMsgType, data: str | bytes, eio: int) -> Packet | None:
    if msg_type is WSMsgType.TEXT:
        return decode_text(data)  # type: ignore[arg-type]
    if msg_type is WSMsgType.BINARY:
        return decode_binary(data, eio)  # type: ignore[arg-type]
    return None


def native(server: EngineServer, request: HandshakeRequest) -> Acceptance | None:
    """Take a new session's upgrade below aiohttp, or ``None`` to leave it to :func:`handle`
    (whatever needs aiohttp's request object, and every error response)."""
    opts = server.options
    if (
        server.allow_request is not None
        or server.generate_id is not None
        or opts.ws_compression
        or not server.accepting
    ):
        return None
    req = handshake.parse_request(
        request.query, method="GET", is_upgrade=True, versions=opts.versions
    )
    if isinstance(req, RequestError) or req.transport != "websocket":
        return None
    if req.sid is not None:
        return _native_probe(server, req.sid, req.eio)

    def start(conn: WebSocketConnection) -> None:
        sock = server.open_session(request, req, int(time.time() * 1000))
        sock.attach_native(conn)
        conn.attach(EngineListener(sock))
        server.connected(sock)

    return Acceptance(
        start=start,
        max_message=opts.max_payload,
        max_buffered=opts.max_buffered_bytes,
        slow_grace=opts.slow_grace,
    )


def _native_probe(server: EngineServer, sid: str, eio: int) -> Acceptance | None:
    """The upgrade of a polling session of this node (another node's, or an unknown sid, is
    left to aiohttp: forwarding, refusals)."""
    sock = server.sessions.get(sid)
    if sock is None or sock.eio != eio:
        return None

    def start(conn: WebSocketConnection) -> None:
        try:
            sock.session.probe_started(sock.now())
        except StateError:
            conn.start_close()  # a second WebSocket, or a session not on polling: 101, closed
            return
        sock.probe_ws = conn
        sock.pump()
        conn.attach(ProbeListener(sock, conn))

    opts = server.options
    return Acceptance(
        start=start,
        max_message=opts.max_payload,
        max_buffered=opts.max_buffered_bytes,
        slow_grace=opts.slow_grace,
    )


class ProbeListener:
    """A probe WebSocket served below aiohttp: ``2probe`` -> ``3probe``, then ``5``; after that
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
            sock.attach_native(conn)
            conn.listener = EngineListener(sock)

    def on_closed(self) -> None:
        sock = self.sock
        if sock.probe_ws is self.conn and sock.session.probing:
            sock.session.abort_upgrade("probe transport closed")
            sock.pump()


class EngineListener:
    """An Engine.IO session's WebSocket served below aiohttp: what :func:`_read` does, per frame."""

    __slots__ = ("sock", "session", "on_message")

    def __init__(self, sock: EngineSocket) -> None:
        self.sock = sock
        self.session = sock.session
        self.on_message = sock.server.handler.on_message

    def on_text(self, text: str) -> None:
        session = self.session
        if text[:1] == "4" and session.open:
            # A message on an open session changes no session state: straight to the layer
            # above, without the session's event queue and timer bookkeeping.
            try:
                self.on_message(self.sock, text[1:])
            except Exception:
                log.exception("%s: message handler failed", self.sock.sid)
                self.sock.close(CloseReason.TRANSPORT_ERROR, "message handler failed")
            return
        self._receive(text, decode_text)

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


async def handle(
    server: EngineServer, request: web.Request, req: handshake.Request
) -> web.StreamResponse:
    if req.sid is not None:
        sock = server.sessions.get(req.sid)
        if sock is None:
            return refuse(RequestError.of(ErrorCode.UNKNOWN_SID))
        if req.eio != sock.eio:
            return refuse(RequestError.of(ErrorCode.BAD_REQUEST))
        return await _probe(server, request, sock)
    ws = _response(server)
    await ws.prepare(request)
    sock = server.open_session(request, req, int(time.time() * 1000))
    assert request.transport is not None  # prepared: the connection is open
    sock.attach_websocket(ws, request.transport)
    server.connected(sock)
    await _read(sock, ws)
    return ws


async def _probe(
    server: EngineServer, request: web.Request, sock: EngineSocket
) -> web.StreamResponse:
    """Upgrade an existing polling session: ``2probe`` -> ``3probe``, then ``5``."""
    ws = _response(server)
    await ws.prepare(request)
    session = sock.session
    try:
        session.probe_started(sock.now())
    except StateError:
        await ws.close()  # a second WebSocket, or a session not on polling: 101 then closed
        return ws
    sock.probe_ws = ws
    sock.pump()
    try:
        async for msg in ws:
            try:
                packet = _decode(msg.type, msg.data, sock.eio)
                if packet is None:
                    break
                replies = session.receive_probe(packet, sock.now())
            except RemoteProtocolError:
                if session.probing:  # (receive_probe aborts on a packet it refuses)
                    session.abort_upgrade("bad probe packet")
                sock.pump()
                break
            await write_packets(ws, replies, sock.eio)
            sock.pump()
            if sock.ws is ws:  # upgraded: this socket is the transport now
                assert request.transport is not None
                sock.attach_websocket(ws, request.transport)
                await _read(sock, ws)
                return ws
    finally:
        if sock.probe_ws is ws and session.probing:
            session.abort_upgrade("probe transport closed")
            sock.pump()
    if not ws.closed:
        await ws.close()
    return ws


async def _read(sock: EngineSocket, ws: web.WebSocketResponse) -> None:
    """The reader loop of the active WebSocket."""
    session = sock.session
    on_message = sock.server.handler.on_message
    writer = sock.writer
    try:
        async for msg in ws:
            if session.closed:  # closed while this reader waited (timer, slow reader, server)
                break
            data = msg.data
            if msg.type is WSMsgType.TEXT and data[:1] == "4" and session.open:
                # A message on an open session changes no session state: straight to the
                # layer above, without the session's event queue and timer bookkeeping.
                try:
                    on_message(sock, data[1:])
                except Exception:
                    log.exception("%s: message handler failed", sock.sid)
                    sock.close(CloseReason.TRANSPORT_ERROR, "message handler failed")
                    break
            else:
                try:
                    packet = _decode(msg.type, data, sock.eio)
                except RemoteProtocolError:
                    session.decode_failed()
                    sock.pump()
                    break
                if packet is None:  # ERROR (e.g. a frame over max_msg_size): aiohttp closed it
                    break
                session.receive(packet, sock.now())
                sock.pump()
            if session.closed:
                break
            if writer is not None and writer.behind:
                await writer.wait_drained()  # a client that does not read stops being read
    except (ConnectionError, asyncio.CancelledError):
        pass
    except Exception:
        log.exception("%s: websocket reader failed", sock.sid)
    finally:
        if not session.closed:
            sock.close(CloseReason.TRANSPORT_CLOSE, "websocket closed")
        if not ws.closed:
            await ws.close()
