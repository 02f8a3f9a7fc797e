"""HTTP long-polling: the held GET that carries server packets and the POST that carries client
packets (engine.io-protocol v4 §"HTTP long-polling", v3 §"Polling").

Rules kept here, each from the reference server or the spec: one GET and one POST in flight per
session (an overlap is a 400 and closes the session); a body over ``maxPayload`` is a 413, refused
on its Content-Length before a byte is read, or as soon as a chunked body passes the limit; an
EIO=4 ``application/octet-stream`` POST is a 400 that closes the session; a POST answers ``ok``.

One departure: a GET that comes while the held one's connection is already gone replaces it
instead of counting as an overlap. A proxy retries a poll whose upstream died (nginx's
``proxy_next_upstream``: the node that relayed it to the session's owner was killed), and
nobody is left to read the held one. The reference server would have closed the session when
that connection went ("poll connection closed prematurely"); wxio keeps the session, and the
packets stay queued for the GET that replaced it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from urllib.parse import parse_qsl

from aiohttp import web

from ...protocol.engineio import handshake, payload
from ...protocol.engineio.handshake import ErrorCode, RequestError
from ...protocol.engineio.packets import Packet, PacketType
from ...protocol.engineio.session import CloseReason
from ...protocol.errors import RemoteProtocolError, StateError
from ...protocol.jsonutil import dumps
from ..engine import EngineServer, EngineSocket

log = logging.getLogger("wxio.engine")

_NOOP = [Packet(PacketType.NOOP)]
_TEXT = "text/plain; charset=UTF-8"


async def handle(
    server: EngineServer, request: web.Request, req: handshake.Request
) -> web.StreamResponse:
    if req.sid is None:
        fresh = server.open_session(request, req, int(time.time() * 1000))
        server.connected(fresh)
        packets = fresh.session.take_outbox(server.options.max_polling_packets)
        return _respond(server, request, fresh, packets)
    sock = server.sessions.get(req.sid)
    if sock is None:
        return server.error_response(request, RequestError.of(ErrorCode.UNKNOWN_SID))
    if req.eio != sock.eio or sock.transport != "polling":
        return server.error_response(request, RequestError.of(ErrorCode.BAD_REQUEST))
    if request.method == "GET":
        return await _get(server, request, sock)
    if request.method == "POST":
        return await _post(server, request, sock)
    return server.error_response(request, RequestError.of(ErrorCode.BAD_REQUEST))


def _empty_400(server: EngineServer, request: web.Request) -> web.Response:
    return web.Response(status=400, headers=server.cors_headers(request))


def _gone(request: web.Request) -> bool:
    """The request's connection is closed: nobody will read its answer."""
    return request.transport is None or request.transport.is_closing()


def _replace_abandoned_get(sock: EngineSocket) -> None:
    """Free the GET slot of a held GET whose connection is gone (see the module docstring); the
    held handler, woken, sees that it was replaced and answers nobody with a noop."""
    held, waiter = sock.get_request, sock.get_waiter
    if held is None or waiter is None or not _gone(held):
        return
    sock.get_request = sock.get_waiter = None
    sock.session.get_finished()
    if not waiter.done():
        waiter.set_result(None)
    log.info("%s: a poll replaced the held one, whose connection was gone", sock.sid)


async def _get(
    server: EngineServer, request: web.Request, sock: EngineSocket
) -> web.StreamResponse:
    session = sock.session
    _replace_abandoned_get(sock)
    try:
        session.get_started()
    except StateError:
        sock.pump()  # the session closed: the held GET gets its close packet
        return _empty_400(server, request)
    waiter: asyncio.Future[None] | None = None
    try:
        if not session.poll_ready():
            waiter = sock.get_waiter = server.loop.create_future()
            sock.get_request = request
            await waiter
            if sock.get_waiter is not waiter:
                return _respond(server, request, sock, _NOOP)  # replaced by a retried GET
        if sock.transport != "polling":
            packets = _NOOP  # upgraded while held: the outbox belongs to the WebSocket now
        elif _gone(request):
            packets = []  # the client left; keep its packets for the next poll
        else:
            packets = session.take_outbox(server.options.max_polling_packets)
            sock.outbox_drained()
    finally:
        if waiter is None or sock.get_waiter is waiter:  # (a replaced GET owns no slot)
            sock.get_waiter = sock.get_request = None
            session.get_finished()
    sock.pump()
    return _respond(server, request, sock, packets)


def _respond(
    server: EngineServer, request: web.Request, sock: EngineSocket, packets: list[Packet]
) -> web.Response:
    headers = server.cors_headers(request)
    body: str | bytes
    if sock.eio == 4:
        body, ctype = payload.encode_v4(packets), _TEXT
    else:
        body = payload.encode_v3(packets, b64=sock.b64)
        ctype = "application/octet-stream" if isinstance(body, bytes) else _TEXT
    if sock.jsonp is not None and isinstance(body, str):
        # JSONP (v3): a script calling ___eio[j]("<payload>"); U+2028/9 end lines in JS.
        escaped = dumps(body).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        body, ctype = f"___eio[{sock.jsonp}]({escaped});", "text/javascript; charset=UTF-8"
    raw = body.encode("utf-8") if isinstance(body, str) else body
    threshold = server.options.compress_threshold
    if threshold and len(raw) >= threshold:
        raw, encoding = _compress(raw, request.headers.get("Accept-Encoding", ""))
        if encoding:
            headers["Content-Encoding"] = encoding
    headers["Content-Type"] = ctype
    return web.Response(body=raw, headers=headers)


def _compress(raw: bytes, accept: str) -> tuple[bytes, str]:
    accepted = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if "gzip" in accepted:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(raw) + c.flush(), "gzip"
    if "deflate" in accepted:
        return zlib.compress(raw, 6), "deflate"
    return raw, ""


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` (the rest is left unread)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


async def _post(
    server: EngineServer, request: web.Request, sock: EngineSocket
) -> web.StreamResponse:
    session = sock.session
    limit = server.options.max_payload
    if request.content_length is not None and request.content_length > limit:
        return web.Response(status=413, headers=server.cors_headers(request))
    try:
        session.post_started()
    except StateError:
        sock.pump()
        return _empty_400(server, request)
    try:
        # A body that trickles in holds the session's only POST slot, so the client could not
        # send its pongs anyway: past one heartbeat period, give up on it and on the session.
        deadline = server.config.ping_interval + server.config.ping_timeout
        try:
            body = await asyncio.wait_for(_read_body(request, limit), deadline)
        except TimeoutError:
            sock.close(CloseReason.TRANSPORT_ERROR, "POST body not read within a heartbeat")
            response = web.Response(status=408, headers=server.cors_headers(request))
            response.force_close()
            return response
        if body is None:
            return web.Response(status=413, headers=server.cors_headers(request))
        binary = request.content_type == "application/octet-stream"
        if binary and sock.eio == 4:
            sock.close(CloseReason.PARSE_ERROR, "binary POST body from an EIO=4 client")
            return _empty_400(server, request)
        try:
            data: str | bytes = body if binary else body.decode("utf-8")
            if sock.jsonp is not None and isinstance(data, str):
                data = _jsonp_body(data)
            packets = payload.decode(data, sock.eio)
        except (UnicodeDecodeError, RemoteProtocolError):
            if not session.closed:  # (it may have closed while the body was read)
                session.decode_failed()
            return _empty_400(server, request)
        if not session.closed:
            session.receive_many(packets, sock.now())
    finally:
        session.post_finished()
        sock.pump()
    return web.Response(text="ok", content_type="text/html", headers=server.cors_headers(request))


def _jsonp_body(form: str) -> str:
    """A JSONP POST is a form with ``d=<payload>``; the client escaped newlines as ``\\n``."""
    fields = dict(parse_qsl(form, keep_blank_values=True, max_num_fields=10))
    data = fields.get("d", "")
    return data.replace("\\\\n", "\0").replace("\\n", "\n").replace("\0", "\\n")
