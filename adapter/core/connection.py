"""A client as the routing core sees it, whatever way it came in.

The hub only calls :meth:`Connection.deliver`, :meth:`Connection.send` and
:meth:`Connection.close`; each kind of client turns an envelope into its own wire form. An
:class:`Outgoing` caches those forms so that a broadcast is encoded once per kind of client, not
once per client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...protocol import jsonutil
from ...protocol.envelope import DenyReason
from ...protocol.socketio import Packet, PacketType, encode
from ...protocol.wsframe import TEXT, frame
from ..transports.outbox import FrameWriter, message_frame
from ..transports.wsconn import WebSocketConnection
from .apps import AppConfig
from .limits import TokenBucket

if TYPE_CHECKING:
    from ..sio import Socket

log = logging.getLogger("wxio.core")

__all__ = ["Outgoing", "Connection", "SocketIOConnection", "RawConnection", "CLOSE_CODES"]

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


#: Deliveries held for a client while it is being welcomed (greeting, CONNECT reply, inbox).
MAX_HELD = 1000


class Outgoing:
    """One envelope on its way to one or many clients, encoded at most once per wire form.
    ``kept``: the envelope is in its user's inbox until acknowledged (ask for the ack)."""

    __slots__ = ("envelope", "msg_id", "kept", "_bytes", "_json", "_frame", "_sio")

    def __init__(
        self, envelope: dict[str, Any], msg_id: str | None = None, *, kept: bool = False
    ) -> None:
        self.envelope = envelope
        self.msg_id = msg_id
        self.kept = kept
        self._bytes: bytes | None = None
        self._json: str | None = None
        self._frame: bytes | None = None
        self._sio: dict[tuple[str, str], tuple[str, bytes]] = {}

    def utf8(self) -> bytes:
        if self._bytes is None:
            self._bytes = jsonutil.dumps_bytes(self.envelope)
        return self._bytes

    def json(self) -> str:
        if self._json is None:
            self._json = self.utf8().decode()
        return self._json

    def frame(self) -> bytes:
        """The raw endpoint's WebSocket frame, built once for every receiver."""
        if self._frame is None:
            self._frame = frame(TEXT, self.utf8())
        return self._frame

    def sio_text(self, nsp: str, event: str, ack_id: int | None = None) -> str:
        if ack_id is not None:
            return self._sio_head(nsp, event, ack_id) + self.json() + "]"
        return self.sio_message(nsp, event)[0]

    def sio_message(self, nsp: str, event: str) -> tuple[str, bytes]:
        """``2["event",<envelope>]`` and its Engine.IO WebSocket frame, built once."""
        key = (nsp, event)
        cached = self._sio.get(key)
        if cached is None:
            text = self._sio_head(nsp, event, None) + self.json() + "]"
            cached = self._sio[key] = (text, message_frame(text))
        return cached

    @staticmethod
    def _sio_head(nsp: str, event: str, ack_id: int | None) -> str:
        # `2["event",` (the envelope's JSON is spliced in: it is encoded once). The part after
        # the ack id is the same for every message of a namespace and event: made once.
        parts = _HEADS.get((nsp, event))
        if parts is None:
            head, _ = encode(Packet(PacketType.EVENT, nsp, [event]))
            # `2` + (`/nsp,`) | `["event"]` -> the ack id goes between the two.
            split = head.index("[")
            parts = _HEADS[(nsp, event)] = (head[:split], head[split:-1] + ",")
        if ack_id is None:
            return parts[0] + parts[1]
        return f"{parts[0]}{ack_id}{parts[1]}"

    def size(self) -> int:
        """The encoded size in UTF-8 bytes (what the app's message limit applies to)."""
        return len(self.utf8())


#: (namespace, event) -> the two halves of an EVENT packet's head around its ack id.
_HEADS: dict[tuple[str, str], tuple[str, str]] = {}


class Connection:
    """Base class: identity, limits, the welcome hold and ack bookkeeping; each kind of client
    implements :meth:`write` (put an envelope on its wire) and :meth:`close`.

    Lifecycle: created *held* (deliveries queue in order while the client is greeted and its
    inbox delivered), then :meth:`release`-d; :meth:`stop` makes it unroutable before its
    transport goes away, so :meth:`deliver` says False and the hub keeps the message instead.
    """

    kind = "abstract"
    __slots__ = (
        "client_id",
        "app",
        "user_id",
        "bucket",
        "denials",
        "on_ack",
        "unacked",
        "_held",
        "_routable",
    )

    def __init__(self, client_id: str, app: AppConfig, user_id: str | None, now: float) -> None:
        self.client_id = client_id
        self.app = app
        self.user_id = user_id
        self.bucket = TokenBucket(app.rate, app.burst, now)
        #: Denials in a row; a client that keeps sending garbage or flooding is cut off.
        self.denials = 0
        #: ``on_ack(msg_id)``: the hub's inbox acknowledgement, for clients that ack by callback.
        self.on_ack: Callable[[str], None] | None = None
        #: Kept messages written here and not acknowledged yet (insertion-ordered, bounded by
        #: the inbox size), with the ack id a socket.io client was asked for: they are not
        #: written again when the inbox is delivered to this connection.
        self.unacked: dict[str, int | None] = {}
        self._held: list[Outgoing] | None = []
        self._routable = True

    @property
    def routable(self) -> bool:
        return self._routable

    def deliver(self, out: Outgoing) -> bool:
        """Send an envelope, or hold it during the welcome. False when this connection can no
        longer take it (the caller keeps it elsewhere or reports it undelivered)."""
        if not self._routable:
            return False
        held = self._held
        if held is not None:
            if len(held) >= MAX_HELD:
                return False
            held.append(out)
            return True
        return self.send(out)

    def send(self, out: Outgoing) -> bool:
        """Write now, bypassing the hold (the greeting and the inbox go first)."""
        msg_id = out.msg_id
        if out.kept and msg_id is not None:
            unacked = self.unacked
            if msg_id in unacked:
                return True  # written here already; the client acks it once
            unacked[msg_id] = None
            if len(unacked) > self.app.inbox_size:
                oldest = next(iter(unacked))
                self.forget(unacked.pop(oldest))
        return self.write(out)

    def acked(self, msg_id: str) -> None:
        """The client acknowledged ``msg_id`` (an ``ack`` envelope, or an ack callback)."""
        if msg_id in self.unacked:
            self.forget(self.unacked.pop(msg_id))

    def forget(self, ack_id: int | None) -> None:
        """Stop waiting for an ack this connection asked for (socket.io)."""

    def release(self) -> None:
        """End the welcome: held deliveries go out, in order (ones already written are skipped
        by :meth:`send`)."""
        held, self._held = self._held, None
        for out in held or ():
            self.send(out)

    def stop(self) -> None:
        """Stop being routable; what is held is dropped (kept messages stay in the inbox)."""
        self._routable = False
        self._held = None

    def write(self, out: Outgoing) -> bool:
        raise NotImplementedError

    def close(self, reason: DenyReason) -> None:
        raise NotImplementedError


class SocketIOConnection(Connection):
    """A socket.io client on the core's namespace: envelopes travel as ``responseMessage``;
    kept messages ask for an ack callback, which acknowledges them in the inbox."""

    kind = "socketio"
    __slots__ = ("socket", "event")

    def __init__(self, socket: Socket, app: AppConfig, user_id: str | None, now: float, event: str):
        super().__init__(socket.id, app, user_id, now)
        self.socket = socket
        self.event = event

    def write(self, out: Outgoing) -> bool:
        socket = self.socket
        if not socket.connected:
            return False
        esock = socket.client.esock
        on_ack, msg_id = self.on_ack, out.msg_id
        if out.kept and on_ack is not None and msg_id is not None:

            def acked(*_: Any) -> None:
                on_ack(msg_id)  # the hub records it, then calls self.acked()

            # No timer: the ack is awaited until it comes, the connection ends, or the message
            # leaves the bounded `unacked` (forget() then drops the registration).
            ack_id = socket.register_ack(acked, timeout=0)
            if msg_id in self.unacked:
                self.unacked[msg_id] = ack_id
            if socket.nsp.server.json_parser:
                esock.send(out.sio_text(socket.nsp.name, self.event, ack_id))
            else:  # a binary parser (msgpack): the socket encodes it
                socket.client.send_packet(
                    Packet(PacketType.EVENT, socket.nsp.name, [self.event, out.envelope], ack_id)
                )
        elif socket.nsp.server.json_parser:
            text, frame = out.sio_message(socket.nsp.name, self.event)
            esock.send_frame(frame, text)
        else:
            socket.emit(self.event, out.envelope)
        return True

    def forget(self, ack_id: int | None) -> None:
        if ack_id is not None:
            self.socket.cancel_ack(ack_id)

    def close(self, reason: DenyReason) -> None:
        self.socket.disconnect()


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

    def write(self, out: Outgoing) -> bool:
        if self.ws.closed:
            return False
        return self.writer.write_frame(out.frame())

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
