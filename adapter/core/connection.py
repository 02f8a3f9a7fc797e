"""A client as the routing core sees it, whatever way it came in.

The hub only calls :meth:`Connection.deliver` and :meth:`Connection.close`; each kind of client
turns an envelope into its own wire form. An :class:`Outgoing` caches those forms so that a
broadcast is encoded once per kind of client, not once per client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...protocol import jsonutil
from ...protocol.envelope import DenyReason
from ...protocol.socketio import Packet, PacketType, encode
from .apps import AppConfig
from .limits import TokenBucket

if TYPE_CHECKING:
    from aiohttp import web

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


#: Deliveries held for a socket.io client between its registration and its CONNECT reply.
MAX_EARLY = 1000


class Outgoing:
    """One envelope on its way to one or many clients, encoded at most once per wire form."""

    __slots__ = ("envelope", "msg_id", "_json", "_sio")

    def __init__(self, envelope: dict[str, Any], msg_id: str | None = None) -> None:
        self.envelope = envelope
        self.msg_id = msg_id
        self._json: str | None = None
        self._sio: dict[tuple[str, str], str] = {}

    def json(self) -> str:
        if self._json is None:
            self._json = jsonutil.dumps(self.envelope)
        return self._json

    def sio_text(self, nsp: str, event: str) -> str:
        key = (nsp, event)
        text = self._sio.get(key)
        if text is None:
            # `2["event"]` with the envelope's JSON spliced in: it is encoded once, already.
            head, _ = encode(Packet(PacketType.EVENT, nsp, [event]))
            text = head[:-1] + "," + self.json() + "]"
            self._sio[key] = text
        return text

    def size(self) -> int:
        return len(self.json())


class Connection:
    """Base class: identity, limits, and what every kind of client must implement."""

    kind = "abstract"
    __slots__ = ("client_id", "app", "user_id", "bucket", "denials")

    def __init__(self, client_id: str, app: AppConfig, user_id: str | None, now: float) -> None:
        self.client_id = client_id
        self.app = app
        self.user_id = user_id
        self.bucket = TokenBucket(app.rate, app.burst, now)
        #: Denials in a row; a client that keeps sending garbage or flooding is cut off.
        self.denials = 0

    def deliver(self, out: Outgoing, on_ack: Callable[[], None] | None = None) -> None:
        """Send an envelope; ``on_ack`` runs if the client acknowledges it (inbox messages)."""
        raise NotImplementedError

    def close(self, reason: DenyReason) -> None:
        raise NotImplementedError


class SocketIOConnection(Connection):
    """A socket.io client on the core's namespace: envelopes travel as ``responseMessage``."""

    kind = "socketio"
    __slots__ = ("socket", "event", "early")

    def __init__(self, socket: Socket, app: AppConfig, user_id: str | None, now: float, event: str):
        super().__init__(socket.id, app, user_id, now)
        self.socket = socket
        self.event = event
        #: Deliveries that came between registration and the CONNECT reply.
        self.early: list[tuple[Outgoing, Callable[[], None] | None]] | None = []

    def flush_early(self) -> None:
        early, self.early = self.early, None
        for out, on_ack in early or ():
            self.deliver(out, on_ack)

    def deliver(self, out: Outgoing, on_ack: Callable[[], None] | None = None) -> None:
        socket = self.socket
        if self.early is not None:  # until the connect handler flushes them, in order
            if len(self.early) < MAX_EARLY:
                self.early.append((out, on_ack))
            return
        if not socket.connected:
            return
        if on_ack is None:
            socket.client.esock.send(out.sio_text(socket.nsp.name, self.event))
        else:
            socket.emit(self.event, out.envelope, callback=lambda *args: on_ack())

    def close(self, reason: DenyReason) -> None:
        self.socket.disconnect()


class RawConnection(Connection):
    """A plain WebSocket client (``wx.connectSocket`` with no library): one JSON envelope per
    text frame. Acks come back as ``ack`` envelopes (the hub handles them), so ``on_ack`` is
    not used here.

    Frames wait in a bounded outbox drained by one writer task (:meth:`run_writer`); a client
    that stops reading while the outbox is full is closed as a slow reader."""

    kind = "raw"
    __slots__ = (
        "ws",
        "outbox",
        "queued_bytes",
        "max_bytes",
        "_wakeup",
        "_closing",
        "_stopped",
    )

    def __init__(
        self,
        client_id: str,
        app: AppConfig,
        user_id: str | None,
        now: float,
        ws: web.WebSocketResponse,
        max_bytes: int,
    ) -> None:
        super().__init__(client_id, app, user_id, now)
        self.ws = ws
        self.outbox: deque[str] = deque()
        self.queued_bytes = 0
        self.max_bytes = max_bytes
        self._wakeup = asyncio.Event()
        self._closing: DenyReason | None = None
        self._stopped = False

    def send_text(self, text: str) -> None:
        if self._closing is not None:
            return
        if self.queued_bytes + len(text) > self.max_bytes:
            log.info("%s closed: slow reader", self.client_id)
            self.close(DenyReason.RATE_LIMITED)
            return
        self.outbox.append(text)
        self.queued_bytes += len(text)
        self._wakeup.set()

    def deliver(self, out: Outgoing, on_ack: Callable[[], None] | None = None) -> None:
        self.send_text(out.json())

    def close(self, reason: DenyReason) -> None:
        if self._closing is None:
            self._closing = reason
            self._wakeup.set()

    def stop(self) -> None:
        """End the writer after what is queued (the transport is going away)."""
        if self._closing is None:
            self._closing = DenyReason.MALFORMED
            self._stopped = True
            self._wakeup.set()

    async def run_writer(self) -> None:
        ws = self.ws
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self.outbox:
                    text = self.outbox.popleft()
                    self.queued_bytes -= len(text)
                    await ws.send_str(text)
                if self._closing is not None:
                    if self._stopped:
                        await ws.close()
                        return
                    code = CLOSE_CODES.get(self._closing, 4000)
                    await ws.close(code=code, message=str(self._closing).encode())
                    return
        except (ConnectionError, RuntimeError):
            pass
