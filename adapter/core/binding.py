"""The three ways into the routing core: socket.io clients on a namespace, the raw JSON
WebSocket endpoint, and the HTTP API.

Each authenticates a client with the same credentials (a ``token``, or ``app``, ``timestamp``,
``sign``, ``userId``, and ``nonce`` for HMAC apps; see :mod:`.auth`), wraps it as a
:class:`~.connection.Connection` and hands every envelope to the ingress pipeline
(:mod:`.ingress`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ...protocol import envelope as env
from ...protocol import jsonutil
from ...protocol.envelope import Action, DenyReason
from ...protocol.errors import RemoteProtocolError
from ..sio import ConnectionRefused, EventContext, Socket, SocketIOServer
from ..transports.outbox import FrameWriter
from .auth import AUTH_HEADERS, credentials
from .connection import CLOSE_CODES, Outgoing, RawConnection, SocketIOConnection
from .hub import Denied, Hub, Respond
from .ingress import Ingress

log = logging.getLogger("wxio.core")

__all__ = ["CoreOptions", "bind_socketio", "RawEndpoint", "RawSocket", "AUTH_HEADERS"]


@dataclass(frozen=True, slots=True)
class CoreOptions:
    namespace: str = "/"
    request_event: str = "requestMessage"
    response_event: str = "responseMessage"
    raw_path: str = "/ws"
    api_prefix: str = "/api"
    #: Seconds between WebSocket pings on the raw endpoint (0: off).
    raw_heartbeat: float = 25.0
    #: Outbound bytes a raw client may have queued before it is closed as a slow reader...
    raw_max_buffered_bytes: int = 4 * 1024 * 1024
    #: ...if it stays over them this many seconds (the Engine.IO sessions' policy too).
    raw_slow_grace: float = 5.0
    #: Largest raw WebSocket frame or API body accepted, in bytes: a larger frame is answered
    #: with ``deny too_large`` and the connection closes with 4009 (the rest of the frame cannot
    #: be skipped); a larger API body is a 413.
    max_frame_bytes: int = 1_000_000


# -- socket.io -----------------------------------------------------------------------------------


def bind_socketio(hub: Hub, io: SocketIOServer, options: CoreOptions) -> None:
    """Serve the core on ``options.namespace`` of ``io``: auth at CONNECT (the v5 auth payload,
    or the query string for EIO=3 and libraries that cannot send auth), envelopes in as
    ``requestMessage``, replies and deliveries out as ``responseMessage``."""
    nsp = io.of(options.namespace)
    # The core has its own redelivery (the inbox): connection state recovery leaves it alone.
    nsp.recoverable = False

    async def authorize(socket: Socket) -> None:
        shake = socket.handshake
        auth = credentials(shake.auth, shake.query, shake.headers)
        try:
            ident = await hub.authenticate(auth, shake.headers.get("Origin"))
        except Denied as denied:
            reason = str(denied.reason)
            raise ConnectionRefused(reason, {"reason": reason, "message": denied.detail}) from None
        conn = SocketIOConnection(
            socket, ident.app, ident.user_id, hub.clock(), options.response_event
        )
        hub.ingress.attach(conn, ident)
        socket.data["core"] = conn
        # Reachable (here and in the cluster) before the CONNECT reply tells the client its id;
        # what arrives before the reply is held by the connection until it is sent.
        await hub.register(conn)

    async def on_connect(socket: Socket) -> None:
        conn: SocketIOConnection | None = socket.data.get("core")
        if conn is not None:
            await hub.welcome(conn)  # the inbox, then what came since the CONNECT reply

    async def on_gone(socket: Socket, *reason: str) -> None:
        conn = socket.data.pop("core", None)
        if conn is not None:
            await hub.detach(conn)

    async def on_request(ctx: EventContext) -> None:
        conn: SocketIOConnection | None = ctx.socket.data.get("core")
        if conn is None:
            return
        raw = ctx.args[0] if ctx.args else None
        if isinstance(raw, str):  # some clients emit JSON.stringify(envelope)
            try:
                raw = jsonutil.loads(raw)
            except RemoteProtocolError:
                pass
        respond: Respond = conn.deliver
        if ctx.wants_ack:

            def respond(out: Outgoing) -> None:
                ctx.ack(out.envelope)

        await hub.handle(conn, raw, respond)

    nsp.authorize(authorize)
    nsp.on("connect", on_connect)
    nsp.on("disconnect", on_gone)
    nsp.on("refused", on_gone)
    nsp.route(options.request_event, on_request)


# -- raw JSON WebSocket ----------------------------------------------------------------------------


class RawEndpoint:
    """``/ws``: one JSON envelope per text frame, both ways. Auth in the query string or the
    ``X-Wxio-*`` headers. A refusal is a ``deny`` envelope, then a close with a 4000-range code
    (see :data:`~.connection.CLOSE_CODES`)."""

    def __init__(self, hub: Hub, options: CoreOptions) -> None:
        self.hub = hub
        self.options = options

    async def handle(self, request: web.Request) -> web.StreamResponse:
        opts = self.options
        ws = RawSocket(
            self.hub.ingress,
            max_msg_size=opts.max_frame_bytes,
            heartbeat=opts.raw_heartbeat or None,
            compress=False,
        )
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": "websocket upgrade required"}, status=400)
        await ws.prepare(request)
        auth = credentials(None, request.query, request.headers)
        hub = self.hub
        try:
            ident = await hub.authenticate(auth, request.headers.get("Origin"))
        except Denied as denied:
            await ws.send_str(hub.deny(denied, None).json())
            code = CLOSE_CODES.get(denied.reason, 4000)
            await ws.close(code=code, message=str(denied.reason).encode())
            return ws
        app = ident.app
        assert request.transport is not None  # prepared: the connection is open
        writer = FrameWriter(
            request.transport,
            max_bytes=opts.raw_max_buffered_bytes,
            grace=opts.raw_slow_grace,
            on_slow=lambda: log.info("%s closed: slow reader", conn.client_id),
        )
        conn = RawConnection(
            secrets.token_urlsafe(15),
            app,
            ident.user_id,
            hub.clock(),
            ws,
            writer,
            hub.tasks.spawn,
        )
        hub.ingress.attach(conn, ident)
        ws.conn = conn
        # Greeted first, then reachable: nothing can reach the client before its greeting, and
        # what comes during registration and the inbox is held, in order, until the welcome.
        greeting = env.message(
            Action.CONNECT,
            None,
            timestamp=hub.now_ms(),
            app=app.name,
            client=conn.client_id,
            userId=conn.user_id,
        )
        conn.send_text(env.encode(greeting))
        log.info("%s connected (raw, app %s)", conn.client_id, app.name)
        try:
            await hub.register(conn)
            await hub.welcome(conn)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    hub.ingress.binary(conn, conn.deliver)
                else:
                    break
                if writer.behind:
                    await writer.wait_drained()  # a client that does not read is not read
        finally:
            await hub.detach(conn)  # unroutable before the transport goes
            log.info("%s disconnected (raw)", conn.client_id)
            writer.close()
            if not ws.closed:
                await ws.close()
        return ws

    async def _on_text(self, conn: RawConnection, text: str) -> None:
        await self.hub.ingress.text(conn, text, conn.deliver)


class RawSocket(web.WebSocketResponse):
    """aiohttp closes a connection whose frame is over ``max_msg_size`` with 1009 before the
    application sees the frame. This one says why first: a ``deny too_large`` (counted like any
    denial), then the close code of ``too_large`` (4009)."""

    def __init__(self, ingress: Ingress, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ingress = ingress
        self.limit = int(kwargs.get("max_msg_size", 0))
        self.conn: RawConnection | None = None

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed:
            deny = self.ingress.oversized(self.conn, self.limit)
            conn = self.conn
            if conn is not None:  # after what the connection has queued, then no more
                conn.writer.write_text(deny)
                conn.writer.close()
            else:
                try:
                    await self.send_str(deny)
                except (ConnectionError, RuntimeError):
                    pass
            code, message = CLOSE_CODES[DenyReason.TOO_LARGE], b"too_large"
        return await super().close(code=code, message=message, drain=drain)
