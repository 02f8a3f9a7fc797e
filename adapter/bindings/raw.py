"""The routing core on the raw JSON WebSocket endpoint (``/ws``): one JSON envelope per text
frame, both ways. Auth in the query string or the ``X-Wxio-*`` headers. A refusal is a
``deny`` envelope, then a close with a 4000-range code (:data:`CLOSE_CODES`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

from ...protocol import envelope as env
from ...protocol.envelope import Action, DenyReason
from ...protocol.wsframe import TEXT, frame
from ..core.apps import AppConfig
from ..core.auth import Identity, credentials
from ..core.connection import Connection, Outgoing
from ..core.errors import Denied
from ..core.hub import Hub
from ..hooks.runner import ConnectRequest
from ..transports.frontdoor import Acceptance, HandshakeRequest
from ..transports.outbox import FrameWriter
from ..transports.wsconn import WebSocketConnection
from .options import CoreOptions

log = logging.getLogger("wxio.core")

__all__ = ["CLOSE_CODES", "RawConnection", "RawEndpoint", "RawListener"]

#: WebSocket close codes of the raw JSON endpoint (4000-4999 is the application's range).
CLOSE_CODES: dict[DenyReason, int] = {
    DenyReason.BAD_SIGNATURE: 4001,
    DenyReason.EXPIRED: 4002,
    DenyReason.UNKNOWN_APP: 4003,
    DenyReason.NOT_ALLOWED: 4004,
    DenyReason.MALFORMED: 4005,
    DenyReason.RATE_LIMITED: 4008,
    DenyReason.TOO_LARGE: 4009,
    DenyReason.TOO_MANY_DENIALS: 4010,
    DenyReason.UNAVAILABLE: 4013,
}

#: The key of the raw endpoint's wire form in :meth:`Outgoing.form`.
_RAW = "raw"


def _raw_frame(out: Outgoing) -> bytes:
    """The envelope as one WebSocket text frame, built once for every receiver."""
    return frame(TEXT, out.utf8())


class RawConnection(Connection):
    """A plain WebSocket client (``wx.connectSocket`` with no library): one JSON envelope per
    text frame, through the connection's :class:`~..transports.outbox.FrameWriter` (one
    slow-reader policy for every WebSocket client). Acks come back as ``ack`` envelopes."""

    kind = "raw"
    __slots__ = ("ws", "writer", "_closing")

    def __init__(
        self,
        client_id: str,
        app: AppConfig,
        user_id: str | None,
        now: float,
        ws: WebSocketConnection,
    ) -> None:
        super().__init__(client_id, app, user_id, now)
        self.ws = ws
        self.writer: FrameWriter = ws.writer
        self._closing = False

    def deliver(self, out: Outgoing) -> bool:
        # Connection.deliver with the write in the same frame (every delivery passes here).
        admitted = self.admit(out)
        if admitted is not None:
            return admitted
        if self.ws.closed:
            return False
        return self.writer.write_frame(out.form(_RAW, _raw_frame))

    def write(self, out: Outgoing) -> bool:
        if self.ws.closed:
            return False
        return self.writer.write_frame(out.form(_RAW, _raw_frame))

    def send_text(self, text: str) -> None:
        self.writer.write_text(text)

    def close(self, reason: DenyReason) -> None:
        """Deny-close: what is queued goes first, then a close frame with the reason's code."""
        if self._closing:
            return
        self._closing = True
        self.stop()
        self.writer.close()
        self.ws.start_close(CLOSE_CODES.get(reason, 4000), str(reason))


class RawEndpoint:
    """``/ws`` (see the module docstring): serves upgrades, authenticates, and hands each
    client's frames to the core."""

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
    connection runs each message's handling before the next), each into the core's one way
    in."""

    __slots__ = ("endpoint", "conn", "ws", "handle", "ack_frame", "eager")

    def __init__(self, endpoint: RawEndpoint, conn: RawConnection, ws: WebSocketConnection):
        self.endpoint = endpoint
        self.conn = conn
        self.ws = ws
        self.handle = endpoint.hub.handle
        self.ack_frame = endpoint.hub.ingress.ack_frame
        #: Handled in the connection's read callback when the pipeline needs no task to start.
        self.eager = endpoint.hub.eager

    def on_text(self, text: str) -> Coroutine[Any, Any, None] | None:
        conn = self.conn
        # A client acks every kept message: a bare ack is recorded here, no JSON, no coroutine.
        if self.ack_frame(conn, text):
            return None
        return self.handle(conn, text, conn.answer)

    def on_binary(self, data: bytes) -> Coroutine[Any, Any, None]:
        conn = self.conn
        return self.handle(conn, data, conn.answer)  # refused: text frames only

    def too_big(self) -> tuple[int, str]:
        """A frame over ``max_frame_bytes``: say why (``deny too_large``), close with 4009."""
        conn = self.conn
        conn.writer.write_text(
            self.endpoint.hub.ingress.oversized(conn, self.endpoint.options.max_frame_bytes)
        )
        return CLOSE_CODES[DenyReason.TOO_LARGE], "too_large"

    def on_closed(self) -> None:
        self.endpoint.hub.tasks.spawn(self.endpoint.gone(self.conn))
