"""One client's connection to one namespace."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ...protocol.socketio import Packet, PacketType, encode

if TYPE_CHECKING:
    from .namespace import Namespace
    from .server import Client

log = logging.getLogger("wxio.socketio")

__all__ = ["Socket", "Handshake", "AckTimeout"]


class AckTimeout(asyncio.TimeoutError):
    """The client did not acknowledge an emit in time."""


class Handshake:
    """``socket.handshake``: the Engine.IO handshake request plus the CONNECT auth."""

    __slots__ = ("headers", "query", "address", "auth", "time", "issued", "url", "secure")

    def __init__(self, client: Client, auth: dict[str, Any]) -> None:
        info = client.esock.handshake
        self.headers = info.headers
        self.query = info.query
        self.address = info.address
        self.auth = auth
        self.issued = info.issued_ms
        self.time = time.strftime("%a %b %d %Y %H:%M:%S GMT", time.gmtime(info.issued_ms / 1000))
        self.url = info.url
        self.secure = info.secure


class Socket:
    __slots__ = (
        "id",
        "nsp",
        "client",
        "handshake",
        "rooms",
        "data",
        "connected",
        "was_connected",
        "_acks",
        "_next_ack",
        "_queue",
        "_worker",
        "_after_connect",
    )

    def __init__(self, nsp: Namespace, client: Client, sid: str, auth: dict[str, Any]) -> None:
        self.id = sid
        self.nsp = nsp
        self.client = client
        self.handshake = Handshake(client, auth)
        self.rooms: set[str] = set()
        #: Free for the application (user id, app name...).
        self.data: dict[str, Any] = {}
        self.connected = False
        #: Set once connected, never cleared: tells "left" from "never joined".
        self.was_connected = False
        self._acks: dict[int, tuple[Callable[..., Any], asyncio.TimerHandle | None]] = {}
        self._next_ack = 0
        self._queue: deque[Packet] = deque()
        self._worker: asyncio.Task[None] | None = None
        #: Set at disconnect: releases connection middleware waiting after ``await next()``.
        self._after_connect: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.nsp.name}>"

    @property
    def sid(self) -> str:
        return self.id

    # -- sending -------------------------------------------------------------------------------

    def _send_packet(self, packet: Packet) -> None:
        text, attachments = encode(packet)
        if attachments:
            self.client.esock.send_many([text, *attachments])
        else:
            self.client.esock.send(text)

    def emit(
        self,
        event: str,
        *args: Any,
        callback: Callable[..., Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Send an event to this client; ``callback(*ack_args)`` runs when it acknowledges
        (dropped after ``timeout`` seconds, default the server's ack timeout)."""
        if not self.connected:
            return
        ack_id = None
        if callback is not None:
            ack_id = self.register_ack(callback, timeout)
        self._send_packet(Packet(PacketType.EVENT, self.nsp.name, [event, *args], ack_id))

    def send(self, *args: Any, callback: Callable[..., Any] | None = None) -> None:
        self.emit("message", *args, callback=callback)

    async def call(self, event: str, *args: Any, timeout: float | None = None) -> list[Any]:
        """Emit and wait for the client's ack; returns its arguments or raises
        :class:`AckTimeout`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()

        def done(*ack_args: Any) -> None:
            if not fut.done():
                fut.set_result(list(ack_args))

        def expired() -> None:
            if not fut.done():
                fut.set_exception(AckTimeout(f"no ack for {event!r}"))

        if not self.connected:
            raise ConnectionError("socket is not connected")
        ack_id = self.register_ack(done, timeout, on_timeout=expired)
        self._send_packet(Packet(PacketType.EVENT, self.nsp.name, [event, *args], ack_id))
        return await fut

    def register_ack(
        self,
        callback: Callable[..., Any],
        timeout: float | None = None,
        on_timeout: Callable[[], None] | None = None,
    ) -> int:
        """Reserve an ack id for a packet you encode yourself: ``callback(*args)`` runs when the
        client acknowledges it; dropped after ``timeout`` seconds (0: kept until disconnect)."""
        ack_id = self._next_ack
        self._next_ack += 1
        delay = self.nsp.server.options.ack_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()

        def expire() -> None:
            if self._acks.pop(ack_id, None) is not None and on_timeout is not None:
                on_timeout()

        timer = loop.call_later(delay, expire) if delay > 0 else None
        self._acks[ack_id] = (callback, timer)
        return ack_id

    def _send_ack(self, ack_id: int, args: list[Any]) -> None:
        if self.connected:
            self._send_packet(Packet(PacketType.ACK, self.nsp.name, args, ack_id))

    def _on_ack(self, packet: Packet) -> None:
        entry = self._acks.pop(packet.id, None) if packet.id is not None else None
        if entry is None:
            log.debug("%s: ack %s matches no emit", self.id, packet.id)
            return
        callback, timer = entry
        if timer is not None:
            timer.cancel()
        try:
            result = callback(*packet.data)
            if asyncio.iscoroutine(result):
                self.nsp.server.spawn(result)
        except Exception:
            log.exception("%s: ack callback failed", self.id)

    # -- rooms and broadcasting ------------------------------------------------------------------

    def join(self, *rooms: str) -> None:
        for room in rooms:
            if room not in self.rooms:
                self.rooms.add(room)
                self.nsp._add_to_room(room, self)

    def leave(self, *rooms: str) -> None:
        for room in rooms:
            if room in self.rooms:
                self.rooms.discard(room)
                self.nsp._remove_from_room(room, self)

    def to(self, *rooms: str | Iterable[str]) -> Any:
        """Broadcast to rooms, leaving this socket out (``socket.to(room).emit(...)``)."""
        return self.nsp.to(*rooms).except_sid(self.id)

    def broadcast(self) -> Any:
        """Every socket of the namespace except this one."""
        return self.nsp.to().except_sid(self.id)

    # -- lifecycle -----------------------------------------------------------------------------

    def disconnect(self, close: bool = False) -> None:
        """Leave the namespace (the client gets a DISCONNECT); with ``close``, end the whole
        connection."""
        if close:
            self.client.close()
            return
        if self.connected:
            self._send_packet(Packet(PacketType.DISCONNECT, self.nsp.name))
            self.client._socket_left(self, "server namespace disconnect")

    def _closed(self, reason: str) -> None:
        """The disconnect sequence: ``disconnecting`` (still in rooms), leave, ``disconnect``."""
        if not self.connected:
            return
        self.nsp._emit_local("disconnecting", self, reason)
        self.connected = False
        for room in list(self.rooms):
            self.nsp._remove_from_room(room, self)
        self.rooms.clear()
        self.nsp.sockets.pop(self.id, None)
        for _, timer in self._acks.values():
            if timer is not None:
                timer.cancel()
        self._acks.clear()
        self._queue.clear()
        if self._after_connect is not None and not self._after_connect.done():
            self._after_connect.set_result(None)
        self.nsp._emit_local("disconnect", self, reason)
