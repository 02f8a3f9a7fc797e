"""The routing core on a namespace of the Socket.IO server: auth at CONNECT, envelopes in as
``requestMessage``, replies and deliveries out as ``responseMessage``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from functools import lru_cache, partial
from typing import Any

from ...protocol.envelope import DenyReason
from ...protocol.socketio import Packet, PacketType, encode_event
from ..core.apps import AppConfig
from ..core.auth import credentials
from ..core.connection import Connection, Outgoing, Respond
from ..core.errors import Denied
from ..core.hub import Hub
from ..hooks.runner import ConnectRequest
from ..sio import ConnectionRefused, EventContext, Next, Socket, SocketIOServer
from ..transports.outbox import message_frame
from .options import CoreOptions

log = logging.getLogger("wxio.core")

__all__ = ["SocketIOConnection", "bind_socketio"]

_Message = tuple[str, bytes]


@lru_cache(maxsize=256)
def _message_of(nsp: str, event: str) -> Callable[[Outgoing], _Message]:
    """``make`` of :meth:`Outgoing.form` for ``2["event",<envelope>]`` and its Engine.IO
    WebSocket frame (one per namespace and event: every receiver shares the form)."""

    def make(out: Outgoing) -> _Message:
        text = encode_event(nsp, event, out.json())
        return text, message_frame(text)

    return make


class SocketIOConnection(Connection):
    """A socket.io client on the core's namespace: envelopes travel as ``responseMessage``;
    kept messages ask for an ack callback, which acknowledges them in the inbox."""

    kind = "socketio"
    __slots__ = ("socket", "event", "nsp", "text", "_form", "_make", "_send_frame")

    def __init__(self, socket: Socket, app: AppConfig, user_id: str | None, now: float, event: str):
        super().__init__(socket.id, app, user_id, now)
        self.socket = socket
        self.event = event
        self.nsp = socket.nsp.name
        #: The server's parser is JSON: the envelope's JSON, encoded once, is spliced in.
        self.text = socket.text_packets
        self._form = ("sio", self.nsp, event)
        self._make = _message_of(self.nsp, event)
        self._send_frame = socket.frame_sender()

    def deliver(self, out: Outgoing) -> bool:
        # Connection.deliver with the common write (unkept, no receipt) in the same frame.
        admitted = self.admit(out)
        if admitted is not None:
            return admitted
        if out.kept or self.receipts or not self.text:
            return self.write(out)
        if not self.socket.connected:
            return False
        text, frame = out.form(self._form, self._make)
        self._send_frame(frame, text)
        return True

    def write(self, out: Outgoing) -> bool:
        socket = self.socket
        if not socket.connected:
            return False
        on_ack, msg_id = self.on_ack, out.msg_id
        receipts = self.receipts
        asked = receipts.get(msg_id) if receipts and msg_id is not None else None
        if msg_id is not None and (
            (out.kept and on_ack is not None) or (asked is not None and asked[1] is None)
        ):
            # Kept, or its sender waits for a receipt: the ack callback is the acknowledgement
            # (the hub records it, then calls self.acked()). A partial, not a closure: one
            # object that lives until the ack, and no frame of its own when it comes.
            tell = on_ack if on_ack is not None else self._acked_by_callback
            # No timer: the ack is awaited until it comes, the connection ends, or the message
            # leaves the bounded `unacked` or `receipts` (forget() then drops the registration).
            ack_id = socket.register_ack(partial(tell, msg_id), timeout=0)
            if msg_id in self.unacked:
                self.unacked[msg_id] = ack_id
            if asked is not None:
                asked[1] = ack_id
            if self.text:  # (framed per receiver: the ack id is this client's)
                text = encode_event(self.nsp, self.event, out.json(), ack_id)
                self._send_frame(message_frame(text), text)
            else:  # a binary parser (msgpack): the socket encodes it
                socket.send_packet(
                    Packet(PacketType.EVENT, self.nsp, [self.event, out.envelope], ack_id)
                )
        elif self.text:
            text, frame = out.form(self._form, self._make)
            socket.send_encoded(text, frame)
        else:
            socket.emit(self.event, out.envelope)
        return True

    def _acked_by_callback(self, msg_id: str, *_: Any) -> None:
        self.acked(msg_id)

    def forget(self, ack_id: int | None) -> None:
        if ack_id is not None:
            self.socket.cancel_ack(ack_id)

    def close(self, reason: DenyReason) -> None:
        self.socket.disconnect()


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
    ingress = hub.ingress
    handle = ingress.handle

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
        ingress.attach(conn, ident)
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
        # (Some clients emit JSON.stringify(envelope): the pipeline reads a string as JSON.)
        raw = ctx.args[0] if ctx.args else None
        respond: Respond = conn.answer
        if ctx.wants_ack:

            def respond(out: Outgoing) -> None:
                ctx.ack(out.envelope)

        await handle(conn, raw, respond)

    nsp.authorize(authorize)
    nsp.on("connect", on_connect)
    nsp.on("disconnect", on_gone)
    nsp.on("refused", on_gone)

    def on_request_direct(socket: Socket, args: list[Any]) -> Coroutine[Any, Any, None] | None:
        """``on_request`` for a client that asked for no ack: no context, no wrapper."""
        conn: SocketIOConnection | None = socket.data.get("core")
        if conn is None:
            return None
        return handle(conn, args[0] if args else None, conn.answer)

    nsp.route(options.request_event, on_request)
    nsp.direct(options.request_event, on_request_direct)
    # The pipeline never waits on what its client sends next: run it in the client's
    # WebSocket delivery task, as raw frames are, not in a task per event.
    nsp.inline(options.request_event)
    if not hub.eager:
        io.eager = False
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
            verdict = await hooks.event(conn, event, list(ctx.args), conn.info)
        except Denied as denied:
            ingress.refuse(conn, denied, respond)
            return
        conn.denials = 0
        if verdict.kind == "answer":
            ctx.ack(verdict.value)  # (an event that asked for no ack has nobody to answer)
            return
        if verdict.changed:
            ctx.args = verdict.value
        await next()

    nsp.use_packet(decide_event)
