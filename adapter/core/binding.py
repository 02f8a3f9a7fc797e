"""The three ways into the routing core: socket.io clients on a namespace, the raw JSON
WebSocket endpoint, and the HTTP API.

Each authenticates a client with the same credentials (a ``token``, or ``app``, ``timestamp``,
``sign``, ``userId``, and ``nonce`` for HMAC apps; see :mod:`.auth`), wraps it as a
:class:`~.connection.Connection` and hands every envelope to the ingress pipeline
(:mod:`.ingress`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from ...protocol import envelope as env
from ...protocol import jsonutil
from ...protocol.envelope import Action, DenyReason
from ...protocol.errors import RemoteProtocolError
from ..hooks.runner import ConnectRequest
from ..sio import ConnectionRefused, EventContext, Next, Socket, SocketIOServer
from ..transports.frontdoor import Acceptance, HandshakeRequest
from ..transports.wsconn import WebSocketConnection
from .auth import AUTH_HEADERS, Identity, credentials
from .connection import CLOSE_CODES, Outgoing, RawConnection, SocketIOConnection
from .hub import Denied, Hub, Respond

log = logging.getLogger("wxio.core")

__all__ = ["CoreOptions", "bind_socketio", "RawEndpoint", "AUTH_HEADERS"]


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
    # Handlers the application put here (io.on("x") defaults to "/") are served only to the
    # core's clients: say so once, at start (docs/api.md).
    nsp.reserve(
        "the routing core",
        "authenticate with an app's credentials or token",
        "move the core with [core] namespace",
    )
    # The core has its own redelivery (the inbox): connection state recovery leaves it alone.
    nsp.recoverable = False

    async def authorize(socket: Socket) -> None:
        shake = socket.handshake
        auth = credentials(shake.auth, shake.query, shake.headers)
        request = None
        if hub.hooks is not None:  # (only an app's connect hook reads it)
            request = ConnectRequest(
                socket.id,
                "socket.io",
                socket.client.esock.transport,
                shake.address or None,
                shake.secure,
                shake.auth,
                shake.query,
                shake.headers,
                auth.get("token"),
            )
        try:
            ident = await hub.authenticate(auth, shake.headers.get("Origin"), request)
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
    hooks = hub.hooks
    if hooks is None or not hooks.events(hub.apps):
        return

    request_event = options.request_event

    async def decide_event(ctx: EventContext, next: Next) -> None:
        """An event the sender's app lists goes to its backend first (docs/hooks.md)."""
        conn: SocketIOConnection | None = ctx.socket.data.get("core")
        event = ctx.event
        if conn is None or event == request_event or not hooks.decides_event(conn.app, event):
            await next()
            return

        def respond(out: Outgoing) -> None:
            if ctx.wants_ack:
                ctx.ack(out.envelope)
            else:
                conn.deliver(out)

        try:
            # One backend call per event: limited like the core's envelopes.
            if not conn.bucket.take(hub.clock()):
                raise Denied(DenyReason.RATE_LIMITED, "too many messages")
            verdict = await hooks.event(conn, event, list(ctx.args), hub.ingress.info(conn))
        except Denied as denied:
            hub.ingress.refuse(conn, denied, respond)
            return
        conn.denials = 0
        if verdict.kind == "answer":
            ctx.ack(verdict.value)  # (an event that asked for no ack has nobody to answer)
            return
        if verdict.changed:
            ctx.args = verdict.value
        await next()

    nsp.use_packet(decide_event)


# -- raw JSON WebSocket ----------------------------------------------------------------------------


class RawEndpoint:
    """``/ws``: one JSON envelope per text frame, both ways. Auth in the query string or the
    ``X-Wxio-*`` headers. A refusal is a ``deny`` envelope, then a close with a 4000-range code
    (see :data:`~.connection.CLOSE_CODES`)."""

    def __init__(self, hub: Hub, options: CoreOptions) -> None:
        self.hub = hub
        self.options = options
        #: The connections open, closed with 1001 at shutdown.
        self.live: set[WebSocketConnection] = set()

    def native(self, request: HandshakeRequest) -> Acceptance:
        """Serve an upgrade (whoever read its head, see :mod:`..transports.frontdoor`)."""
        opts = self.options

        def start(ws: WebSocketConnection) -> None:
            self.live.add(ws)
            self.hub.tasks.spawn(self._serve(ws, request))

        return Acceptance(
            start=start,
            max_message=opts.max_frame_bytes,
            max_buffered=opts.raw_max_buffered_bytes,
            slow_grace=opts.raw_slow_grace,
            heartbeat=opts.raw_heartbeat,
        )

    async def _serve(self, ws: WebSocketConnection, request: HandshakeRequest) -> None:
        hub = self.hub
        auth = credentials(None, request.query, request.headers)
        client_id = secrets.token_urlsafe(15)
        shake = _hook_request(hub, client_id, auth, request)
        try:
            ident = await hub.authenticate(auth, request.headers.get("Origin"), shake)
        except Denied as denied:
            self.live.discard(ws)
            ws.writer.write_text(hub.deny(denied, None).json())
            ws.start_close(CLOSE_CODES.get(denied.reason, 4000), str(denied.reason))
            return
        except Exception:
            log.exception("authenticating a raw client failed")
            self.live.discard(ws)
            ws.start_close(1011, "server error")
            return
        conn = self._connect(ident, ws, client_id)
        listener = RawListener(self, conn, ws)
        ws.on_too_big = listener.too_big
        try:
            await hub.register(conn)
            await hub.welcome(conn)
        except BaseException:
            ws.start_close(1011, "server error")
            await self.gone(conn)
            raise
        ws.attach(listener)  # reading starts (what came meanwhile is read now, in order)

    def _connect(self, ident: Identity, ws: WebSocketConnection, client_id: str) -> RawConnection:
        """The connection of an authenticated client, greeted (not yet reachable)."""
        hub = self.hub
        conn = RawConnection(client_id, ident.app, ident.user_id, hub.clock(), ws)
        ws.writer.on_slow = lambda: log.info("%s closed: slow reader", conn.client_id)
        hub.ingress.attach(conn, ident)
        # Greeted first, then reachable: nothing can reach the client before its greeting, and
        # what comes during registration and the inbox is held, in order, until the welcome.
        greeting = env.message(
            Action.CONNECT,
            None,
            timestamp=hub.now_ms(),
            app=ident.app.name,
            client=conn.client_id,
            userId=conn.user_id,
        )
        conn.send_text(env.encode(greeting))
        log.info("%s connected (raw, app %s)", conn.client_id, ident.app.name)
        return conn

    async def gone(self, conn: RawConnection) -> None:
        """Unroutable before the transport goes."""
        self.live.discard(conn.ws)
        await self.hub.detach(conn)
        log.info("%s disconnected (raw)", conn.client_id)
        conn.writer.close()

    async def shutdown(self, grace: float) -> None:
        """Close every connection (1001) and wait up to ``grace``."""
        live = list(self.live)
        for ws in live:
            ws.start_close(1001, "server shutting down")
        if live:
            await asyncio.wait(
                [asyncio.ensure_future(ws.wait_closed()) for ws in live], timeout=grace
            )


def _hook_request(
    hub: Hub, client_id: str, auth: dict[str, Any], request: HandshakeRequest
) -> ConnectRequest | None:
    """The raw handshake as a connect hook sees it (None when no app has hooks)."""
    if hub.hooks is None:
        return None
    return ConnectRequest(
        client_id,
        "raw",
        "websocket",
        request.remote,
        request.secure,
        {},
        request.query,
        request.headers,
        auth.get("token"),
    )


class RawListener:
    """A raw client's frames as its connection delivers them: one at a time, in order (the
    connection runs each message's handling before the next)."""

    __slots__ = ("endpoint", "conn", "ws")

    def __init__(self, endpoint: RawEndpoint, conn: RawConnection, ws: WebSocketConnection):
        self.endpoint = endpoint
        self.conn = conn
        self.ws = ws

    def on_text(self, text: str) -> Coroutine[Any, Any, None]:
        conn = self.conn
        return self.endpoint.hub.ingress.text(conn, text, conn.deliver)

    def on_binary(self, data: bytes) -> None:
        conn = self.conn
        self.endpoint.hub.ingress.binary(conn, conn.deliver)

    def too_big(self) -> tuple[int, str]:
        """A frame over ``max_frame_bytes``: say why (``deny too_large``), close with 4009."""
        conn = self.conn
        conn.writer.write_text(
            self.endpoint.hub.ingress.oversized(conn, self.endpoint.options.max_frame_bytes)
        )
        return CLOSE_CODES[DenyReason.TOO_LARGE], "too_large"

    def on_closed(self) -> None:
        self.endpoint.hub.tasks.spawn(self.endpoint.gone(self.conn))
