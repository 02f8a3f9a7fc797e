"""What middleware and handlers receive, and how they refuse a connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...protocol.socketio import Packet

if TYPE_CHECKING:
    from .server import SocketIOServer
    from .socket import Socket

__all__ = [
    "ConnectionRefused",
    "ConnectContext",
    "EventContext",
    "Next",
    "Middleware",
    "NO_ACK",
]


class _NoAck:
    """The type of :data:`NO_ACK` (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ACK"

    def __bool__(self) -> bool:
        return False


#: Return this from an event handler to leave the client's ack callback unanswered, as a Node
#: handler that ignores its callback does (the client's ``timeout()``/``retries`` then see no
#: ack). By default an event that asks for an ack always gets one: the handler's return value,
#: or an empty ack (``43<id>[]``) when it returns None.
NO_ACK: Any = _NoAck()


class ConnectionRefused(Exception):
    """Raise from a connection middleware to refuse the namespace connection. The client gets a
    CONNECT_ERROR: ``{"message": message, "data": data}`` (v5), or for v4 (socket.io 2.x)
    ``data`` when given, else ``"message"``, as the 2.x reference server did."""

    def __init__(self, message: str = "Not authorized", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ConnectContext:
    """Given to connection middleware. ``socket`` is not connected yet; code after
    ``await next()`` runs when it disconnects (egg-socket.io semantics)."""

    __slots__ = ("socket", "app", "state")

    def __init__(self, socket: Socket, app: SocketIOServer) -> None:
        self.socket = socket
        self.app = app
        #: Free for middleware to pass things along.
        self.state: dict[str, Any] = {}

    @property
    def auth(self) -> dict[str, Any]:
        """The CONNECT payload (``socket.handshake.auth``)."""
        return self.socket.handshake.auth

    @property
    def handshake(self) -> Any:
        """``socket.handshake``."""
        return self.socket.handshake


class EventContext:
    """Given to packet middleware and to router handlers (``io.route``).

    Acks: an event that asks for one is answered exactly once, by the first of ``ctx.ack(...)``,
    the handler's return value, or an empty ack when the handler returns None. ``ctx.no_ack()``
    (or returning :data:`NO_ACK`) leaves it unanswered. A packet middleware that does not call
    ``next``, a handler that raises, and an event with no handler send no ack either."""

    __slots__ = ("socket", "app", "packet", "event", "args", "acked", "state")

    def __init__(self, socket: Socket, app: SocketIOServer, packet: Packet) -> None:
        self.socket = socket
        self.app = app
        self.packet = packet
        self.event: str = packet.data[0]
        self.args: list[Any] = packet.data[1:]
        #: True once the ack was sent or declined (read it; use ack() or no_ack() to change it).
        self.acked = False
        self.state: dict[str, Any] = {}

    @property
    def wants_ack(self) -> bool:
        """Whether the client asked for an ack (the packet has an id)."""
        return self.packet.id is not None

    def ack(self, *args: Any) -> None:
        """Answer the client's ack callback (once; later calls are ignored)."""
        if self.acked or self.packet.id is None:
            return
        self.acked = True
        self.socket.send_ack(self.packet.id, list(args))

    def no_ack(self) -> None:
        """Leave the client's ack callback unanswered (its ``timeout()`` will fire): nothing is
        sent, and later ``ack()`` calls and the handler's return value are ignored."""
        self.acked = True


Next = Callable[[], Awaitable[None]]
Middleware = Callable[[Any, Next], Awaitable[None]]
