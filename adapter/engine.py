"""The Engine.IO server: sessions, their timers, and request dispatch for one mount path.

:class:`EngineServer` owns the sessions of one path (``/socket.io/`` by default) and answers every
HTTP request under it: CORS preflights, polling GET/POST (:mod:`.transports.polling`) and
WebSocket upgrades (:mod:`.transports.websocket`). Each session is an :class:`EngineSocket`: the
sans-IO :class:`~wxio.protocol.engineio.EngineSession` plus what asyncio needs around it (one timer
handle, the held polling GET, the WebSocket writer).

Data flow: a transport decodes a frame or body and feeds the session; :meth:`EngineSocket.pump`
then turns the session's events into calls on the :class:`EngineHandler` (Socket.IO, or the
conformance echo) and wakes whichever transport holds the outbox.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

from aiohttp import web

from ..protocol.engineio import handshake
from ..protocol.engineio.handshake import ErrorCode, RequestError
from ..protocol.engineio.packets import Packet, PacketType, encode_binary, encode_text
from ..protocol.engineio.session import (
    Closed,
    CloseReason,
    EngineConfig,
    EngineSession,
    MessageReceived,
    UpgradeAborted,
    Upgraded,
)
from ..protocol.wsframe import binary_frame, text_frame
from .cluster.forward import Forwarder
from .config import EngineOptions
from .metrics import Metrics
from .tasks import Tasks
from .transports.frontdoor import HandshakeRequest
from .transports.outbox import Backlog, FrameWriter, message_frame
from .transports.wsconn import WebSocketConnection

log = logging.getLogger("wxio.engine")

__all__ = [
    "EngineHandler",
    "EngineSocket",
    "EngineServer",
    "HandshakeInfo",
    "AllowRequest",
    "RequestRefused",
]


class RequestRefused(Exception):
    """Raise from an ``allow_request`` hook to refuse a new session with this message (the
    client sees it as the error's message; the default is ``Forbidden``)."""

    def __init__(self, message: str = "Forbidden") -> None:
        super().__init__(message)
        self.message = message


#: ``allow_request(request) -> bool`` (or an awaitable of it): engine.io's ``allowRequest``.
#: Consulted for every request that would open a session (a polling handshake or a direct
#: WebSocket), never for requests of an existing session. False or :class:`RequestRefused`
#: refuses: a polling handshake gets 403 ``{"code":4,"message":"Forbidden"}``, a WebSocket
#: upgrade a 400 whose body is the message, before the 101 (as the reference does).
AllowRequest = Callable[[web.Request], "bool | Awaitable[bool]"]


class HandshakeInfo:
    """What the first request of a session looked like (``socket.handshake`` in Socket.IO)."""

    __slots__ = ("headers", "query", "address", "url", "secure", "issued_ms")

    def __init__(self, request: web.Request | HandshakeRequest, issued_ms: int) -> None:
        self.headers: Mapping[str, str] = request.headers
        self.query: Mapping[str, str] = request.query
        self.address: str = request.remote or ""
        self.url: str = str(request.rel_url)
        self.secure: bool = request.secure
        self.issued_ms = issued_ms


class EngineHandler(Protocol):
    """The layer above Engine.IO. Callbacks are plain functions: they must not block."""

    def on_connect(self, sock: EngineSocket) -> None: ...

    def on_message(self, sock: EngineSocket, data: str | bytes) -> None: ...

    def on_close(self, sock: EngineSocket, reason: str) -> None: ...

    # Optional: ``on_upgrade(sock)`` after a session moved from polling to WebSocket.


class EngineSocket:
    """One Engine.IO session with its asyncio plumbing."""

    __slots__ = (
        "server",
        "session",
        "handshake",
        "b64",
        "jsonp",
        "context",
        "receive_text",
        "get_waiter",
        "get_request",
        "ws",
        "probe_ws",
        "writer",
        "_backlog",
        "_timer",
        "_timer_at",
        "_closing_ws",
        "_closed_reported",
        "__weakref__",
    )

    def __init__(
        self, server: EngineServer, session: EngineSession, handshake: HandshakeInfo, b64: bool
    ) -> None:
        self.server = server
        self.session = session
        self.handshake = handshake
        self.b64 = b64
        self.jsonp: int | None = None
        #: Free for the layer above (the Socket.IO client object).
        self.context: Any = None
        #: The layer above's receiver of a text message read on this session's WebSocket (its
        #: Engine.IO prefix stripped), or None for the handler's ``on_message``. What it
        #: returns, if anything, the WebSocket runs before its next message (it may wait).
        self.receive_text: Callable[[str], Coroutine[Any, Any, None] | None] | None = None
        self.get_waiter: asyncio.Future[None] | None = None
        #: The request of the held polling GET (whose connection may be gone: see polling.py).
        self.get_request: web.Request | None = None
        self.ws: WebSocketConnection | None = None
        self.probe_ws: WebSocketConnection | None = None
        #: The outbox of the active WebSocket (None on polling).
        self.writer: FrameWriter | None = None
        #: The slow-reader policy while on polling (the WebSocket writer has its own).
        self._backlog: Backlog | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closing_ws = False
        self._closed_reported = False

    @property
    def sid(self) -> str:
        return self.session.sid

    @property
    def eio(self) -> int:
        return self.session.eio

    @property
    def transport(self) -> str:
        return self.session.transport

    @property
    def closed(self) -> bool:
        return self.session.closed

    # -- sending -------------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Queue one Engine.IO message (dropped once the session is closed)."""
        if self.session.closed:
            return
        writer = self.writer
        if writer is not None and self.session.open:
            # On an open WebSocket a message goes straight to the outbox as a ready frame.
            writer.write_frame(self._frame(data))
            return
        self.session.send_message(data)
        self._after_send()

    def send_frame(self, text_frame: bytes, text: str) -> None:
        """Queue a message whose WebSocket frame was built once for many receivers
        (:func:`~.transports.outbox.message_frame`); ``text`` is used on polling."""
        if self.session.closed:
            return
        writer = self.writer
        if writer is not None and self.session.open:
            writer.write_frame(text_frame)
            return
        self.session.send_message(text)
        self._after_send()

    def send_many(self, items: list[str | bytes]) -> None:
        """Queue several messages (a Socket.IO packet and its attachments) and wake once."""
        if self.session.closed:
            return
        writer = self.writer
        if writer is not None and self.session.open:
            for data in items:
                writer.write_frame(self._frame(data))
            return
        for data in items:
            self.session.send_message(data)
        self._after_send()

    def _frame(self, data: str | bytes) -> bytes:
        if isinstance(data, str):
            return message_frame(data)
        return binary_frame(encode_binary(Packet(PacketType.MESSAGE, data), self.session.eio))

    def _frames(self) -> list[bytes]:
        """The session's own queue (open, ping, noop, close packets...) as WebSocket frames."""
        eio = self.session.eio
        return [
            binary_frame(encode_binary(p, eio))
            if isinstance(p.data, bytes)
            else text_frame(encode_text(p))
            for p in self.session.take_outbox()
        ]

    @property
    def backlog(self) -> Backlog:
        if self._backlog is None:
            opts = self.server.options
            self._backlog = Backlog(
                opts.max_buffered_bytes, opts.slow_grace, self._slow, self._polling_backlog
            )
        return self._backlog

    def _after_send(self) -> None:
        self.backlog.check()
        self._kick()

    def _polling_backlog(self) -> int:
        session = self.session
        if session.outbox_len > self.server.options.max_buffered_packets:
            return self.server.options.max_buffered_bytes + 1
        return session.queued_bytes

    def _slow(self) -> None:
        self.close(CloseReason.TRANSPORT_ERROR, "slow reader")

    def outbox_drained(self) -> None:
        """Called by the polling transport after it took the outbox."""
        if self._backlog is not None:
            self._backlog.cancel()

    def _kick(self) -> None:
        session = self.session
        if not session.poll_ready():
            return  # nothing queued, nothing changed
        waiter = self.get_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        writer = self.writer
        if writer is not None:
            if session.closed:
                # The close packet goes out after everything queued, then the socket closes.
                writer.close()
                self._close_ws()
            else:
                writer.schedule()

    def _close_ws(self) -> None:
        ws = self.ws
        if ws is not None and not ws.closed and not self._closing_ws:
            self._closing_ws = True
            ws.start_close()  # after the close packet the writer just flushed

    def close(self, reason: CloseReason = CloseReason.FORCED_CLOSE, detail: str = "") -> None:
        """Close the session from the server side: a close packet goes out, then the transport.
        ``detail`` is logged with the reason. Closing a closed session does nothing."""
        if not self.session.closed:
            self.session.close(reason, detail)
        self.pump()

    # -- driving the session -------------------------------------------------------------------

    def now(self) -> float:
        return self.server.loop.time()

    def pump(self) -> None:
        """Turn session events into handler calls, wake the transport, re-arm the timer. Every
        transport calls this after feeding the session."""
        session = self.session
        while True:
            events = session.events_received()
            if not events:
                break
            for event in events:
                if type(event) is MessageReceived:
                    try:
                        self.server.handler.on_message(self, event.data)
                    except Exception:
                        # One catch-all per connection: a bug above us closes this session only.
                        log.exception("%s: message handler failed", self.sid)
                        if not session.closed:
                            session.close(CloseReason.TRANSPORT_ERROR, "message handler failed")
                elif type(event) is Upgraded:
                    self._on_upgraded()
                elif type(event) is UpgradeAborted:
                    self._close_probe()
                elif type(event) is Closed:
                    self._on_closed(event)
        self._kick()
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self.server.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        # The loop may run a handle a clock tick early; never ask the session about the past.
        now = max(self.now(), at or 0.0)
        if not self.session.closed:
            self.session.handle_timers(now)
        self.pump()

    def _on_upgraded(self) -> None:
        self.ws, self.probe_ws = self.probe_ws, None
        log.debug("%s upgraded to websocket", self.sid)
        on_upgrade = getattr(self.server.handler, "on_upgrade", None)
        if on_upgrade is not None:
            try:
                on_upgrade(self)
            except Exception:
                log.exception("%s: upgrade handler failed", self.sid)
        waiter = self.get_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # the held GET ends with a noop (see polling.handle_get)
        if self._backlog is not None:
            self._backlog.cancel()

    def attach(self, conn: WebSocketConnection) -> None:
        """Make ``conn`` the session's transport; its writer becomes the session's outbox (what
        the session queued before goes out first)."""
        self.ws = conn
        writer = self.writer = conn.writer
        writer.pull = self._frames
        writer.on_slow = self._slow
        writer.flush()

    def _close_probe(self) -> None:
        ws, self.probe_ws = self.probe_ws, None
        if ws is not None and not ws.closed:
            ws.start_close()

    def _on_closed(self, event: Closed) -> None:
        if self._closed_reported:
            return
        self._closed_reported = True
        reason = event.reason
        log.info("%s closed: %s (%s)", self.sid, reason.value, event.detail)
        self.server.count_close(reason)
        self.server.sessions.pop(self.sid, None)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None
        if self._backlog is not None:
            self._backlog.cancel()
        if self.writer is not None:
            self.writer.close()
        try:
            self.server.handler.on_close(self, reason.value)
        except Exception:
            log.exception("%s: close handler failed", self.sid)


class EngineServer:
    """All sessions of one Engine.IO mount path, and the request handler for it."""

    def __init__(
        self,
        options: EngineOptions,
        handler: EngineHandler,
        *,
        generate_id: Callable[[web.Request], str] | None = None,
        forwarder: Forwarder | None = None,
        allow_request: AllowRequest | None = None,
        metrics: Metrics | None = None,
        tasks: Tasks | None = None,
    ) -> None:
        self.options = options
        self.handler = handler
        self.generate_id = generate_id
        #: See :data:`AllowRequest`.
        self.allow_request = allow_request
        #: In a cluster: session ids name this node, and other nodes' sessions are forwarded.
        self.forwarder = forwarder
        self.sessions: dict[str, EngineSocket] = {}
        self.config: EngineConfig = options.session_config()
        self.accepting = True
        #: Background tasks (closing WebSockets...), cancelled at shutdown.
        self.tasks = tasks if tasks is not None else Tasks()
        self.metrics = metrics if metrics is not None else Metrics()
        self._closes = self.metrics.counter(
            "wxio_engine_closes_total", "Engine.IO sessions closed, by mount path and reason."
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """A background task that is kept referenced until done and cancelled at shutdown."""
        return self.tasks.spawn(coro)

    def count_close(self, reason: CloseReason) -> None:
        """Count a closed session by reason (``wxio_engine_closes_total``)."""
        labels = (("path", self.options.path), ("reason", reason.value))
        self._closes[labels] = self._closes.get(labels, 0.0) + 1

    def new_sid(self, request: web.Request | HandshakeRequest) -> str:
        if self.generate_id is not None:
            # (aiohttp's request: with a generate_id hook no upgrade is served natively)
            sid = self.generate_id(request)  # type: ignore[arg-type]
            if sid and sid not in self.sessions:
                return sid
        # 120 random bits, 20 URL-safe characters, like the reference's base64id.
        sid = secrets.token_urlsafe(15)
        if self.forwarder is not None:
            sid = f"{self.forwarder.node_id}.{sid}"  # the owner, for forwarding (forward.py)
        return sid

    def open_session(
        self, request: web.Request | HandshakeRequest, req: handshake.Request, issued_ms: int
    ) -> EngineSocket:
        session = EngineSession(
            self.new_sid(request),
            eio=req.eio,
            transport=req.transport,
            config=self.config,
            now=self.loop.time(),
        )
        sock = EngineSocket(self, session, HandshakeInfo(request, issued_ms), req.b64)
        sock.jsonp = req.jsonp
        self.sessions[sock.sid] = sock
        return sock

    def connected(self, sock: EngineSocket) -> None:
        """Tell the handler about a new session, once its transport can carry the open packet."""
        log.debug("%s open (EIO=%d, %s)", sock.sid, sock.eio, sock.transport)
        try:
            self.handler.on_connect(sock)
        except Exception:
            log.exception("%s: connect handler failed", sock.sid)
            if not sock.session.closed:
                sock.session.close(CloseReason.TRANSPORT_ERROR, "connect handler failed")
        sock.pump()

    # -- HTTP ----------------------------------------------------------------------------------

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        origins = self.options.cors_origins
        if not origins:
            return {}
        origin = request.headers.get("Origin")
        if origins == "*":
            return {"Access-Control-Allow-Origin": "*"}
        if origin is not None and origin in origins:
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin",
            }
        return {}

    def error_response(self, request: web.Request, error: RequestError) -> web.Response:
        return web.Response(
            status=error.status,
            body=error.body(),
            content_type="application/json",
            headers=self.cors_headers(request),
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        from .transports import polling, websocket

        if request.method == "OPTIONS":
            headers = self.cors_headers(request)
            if headers:
                headers["Access-Control-Allow-Methods"] = "GET,HEAD,PUT,PATCH,POST,DELETE"
                wanted = request.headers.get("Access-Control-Request-Headers")
                if wanted:
                    headers["Access-Control-Allow-Headers"] = wanted
            return web.Response(status=204, headers=headers)
        is_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        req = handshake.parse_request(
            request.query,
            method=request.method,
            is_upgrade=is_upgrade,
            versions=self.options.versions,
        )
        if isinstance(req, RequestError):
            if is_upgrade:
                return websocket.refuse(req)
            return self.error_response(request, req)
        if req.sid is not None and req.sid not in self.sessions and self.forwarder is not None:
            owner = self.forwarder.should_forward(request, req.sid)
            if owner is not None:
                forwarded = await self.forwarder.forward(request, owner)
                if forwarded is not None:
                    return forwarded
        if req.sid is None and not self.accepting:
            return self.error_response(
                request, RequestError.of(ErrorCode.BAD_REQUEST, "Server is shutting down")
            )
        if req.sid is None and self.allow_request is not None:
            refusal = await self._admit(request)
            if refusal is not None:
                if is_upgrade:
                    return websocket.refuse(refusal)
                return self.error_response(request, refusal)
        if req.transport == "websocket":
            return await websocket.handle(self, request, req)
        return await polling.handle(self, request, req)

    async def _admit(self, request: web.Request) -> RequestError | None:
        """Ask ``allow_request`` about a new session; the refusal to send, or None."""
        assert self.allow_request is not None
        try:
            verdict = self.allow_request(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except RequestRefused as exc:
            return RequestError.of(ErrorCode.FORBIDDEN, exc.message)
        except Exception:
            # A failing hook must not let the request through.
            log.exception("allow_request failed; refusing the request")
            return RequestError.of(ErrorCode.FORBIDDEN)
        return None if verdict else RequestError.of(ErrorCode.FORBIDDEN)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting sessions, close every session with a close packet, give transports up
        to ``grace`` seconds to flush, then cancel what is left."""
        self.accepting = False
        for sock in list(self.sessions.values()):
            sock.close(CloseReason.SERVER_SHUTTING_DOWN)
        await self.tasks.wait(grace)
        self.tasks.cancel()
