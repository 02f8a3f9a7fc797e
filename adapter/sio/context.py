"""What middleware and handlers receive, and how they refuse a connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from ...protocol.socketio import Packet, PacketType

if TYPE_CHECKING:
    from ..websessions import WebSession
    from .server import SocketIOServer
    from .socket import Handshake, Socket

__all__ = [
    "ConnectionRefused",
    "ConnectContext",
    "EventContext",
    "EventPacket",
    "Next",
    "Middleware",
    "ConnectMiddleware",
    "PacketMiddleware",
    "AckValue",
    "NO_ACK",
    "NoAck",
]

#: What a peer's answer holds: an argument of a client's ack (``socket.call``,
#: ``emit_with_ack``) or another node's answer (``server_side_emit_with_ack``). JSON values, and
#: ``bytes`` for binary data; narrow it with ``isinstance`` before use.
AckValue: TypeAlias = (
    "None | bool | int | float | str | bytes | list[AckValue] | dict[str, AckValue]"
)


class NoAck:
    """The type of :data:`NO_ACK` (one instance): annotate a handler that may decline to answer
    as ``-> str | NoAck``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ACK"

    def __bool__(self) -> bool:
        return False


#: Return this from an event handler to leave the client's ack callback unanswered, as a Node
#: handler that ignores its callback does (the client's ``timeout()``/``retries`` then see no
#: ack). By default an event that asks for an ack always gets one: the handler's return value,
#: or an empty ack (``43<id>[]``) when it returns None.
NO_ACK: Final[NoAck] = NoAck()


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
    def handshake(self) -> Handshake:
        """``socket.handshake``."""
        return self.socket.handshake

    @property
    def session(self) -> WebSession:
        """egg-socket.io's ``ctx.session``: ``socket.session``, the web session of the request
        that opened the connection (read-only)."""
        return self.socket.session


class EventPacket(list[Any]):
    """``ctx.packet``, shaped as egg-socket.io gives it: the list ``[event, *args]`` (so
    ``ctx.packet[0]`` is the event name), without the ack callback (answer with ``ctx.ack``).
    It also has the Socket.IO packet's ``type``, ``nsp`` and ``id`` (the ack id, None when the
    client asked for no ack), and ``data`` (the list itself), what ``ctx.packet`` gave before it
    was a list. Changing it changes nothing: the handler gets ``ctx.args``."""

    __slots__ = ("type", "nsp", "id")

    def __init__(self, packet: Packet) -> None:
        super().__init__(packet.data)
        self.type: PacketType = packet.type
        self.nsp: str = packet.nsp
        self.id: int | None = packet.id

    @property
    def data(self) -> list[Any]:
        """``[event, *args]``: the list itself."""
        return self


class EventContext:
    """Given to packet middleware and to router handlers (``io.route``).

    Acks: an event that asks for one is answered exactly once, by the first of ``ctx.ack(...)``,
    the handler's return value, or an empty ack when the handler returns None. ``ctx.no_ack()``
    (or returning :data:`NO_ACK`) leaves it unanswered. A packet middleware that does not call
    ``next``, a handler that raises, and an event with no handler send no ack either."""

    __slots__ = ("socket", "app", "_packet", "_egg", "event", "args", "acked", "state")

    def __init__(self, socket: Socket, app: SocketIOServer, packet: Packet) -> None:
        self.socket = socket
        self.app = app
        self._packet = packet
        self._egg: EventPacket | None = None
        self.event: str = packet.data[0]
        self.args: list[Any] = packet.data[1:]
        #: True once the ack was sent or declined (read it; use ack() or no_ack() to change it).
        self.acked = False
        self.state: dict[str, Any] = {}

    @property
    def packet(self) -> EventPacket:
        """egg-socket.io's ``ctx.packet``: ``[event, *args]`` (see :class:`EventPacket`)."""
        if self._egg is None:
            self._egg = EventPacket(self._packet)
        return self._egg

    @property
    def session(self) -> WebSession:
        """egg-socket.io's ``ctx.session``: ``socket.session`` (read-only)."""
        return self.socket.session

    @property
    def ack_id(self) -> int | None:
        """The id of the ack the client asked for (None: it asked for none)."""
        return self._packet.id

    @property
    def wants_ack(self) -> bool:
        """Whether the client asked for an ack (the packet has an id)."""
        return self._packet.id is not None

    def ack(self, *args: Any) -> None:
        """Answer the client's ack callback (once; later calls are ignored)."""
        ack_id = self._packet.id
        if self.acked or ack_id is None:
            return
        self.acked = True
        self.socket.send_ack(ack_id, list(args))

    def no_ack(self) -> None:
        """Leave the client's ack callback unanswered (its ``timeout()`` will fire): nothing is
        sent, and later ``ack()`` calls and the handler's return value are ignored."""
        self.acked = True


#: What middleware calls to go on: ``await next()``.
Next = Callable[[], Awaitable[None]]
#: Connection middleware (``io.use``, ``nsp.use``): ``async def mw(ctx, next)``.
ConnectMiddleware = Callable[[ConnectContext, Next], Awaitable[object]]
#: Packet middleware (``io.use_packet``, ``nsp.use_packet``): ``async def mw(ctx, next)``.
PacketMiddleware = Callable[[EventContext, Next], Awaitable[object]]
#: Either kind (how the namespace keeps them).
Middleware = Callable[[Any, Next], Awaitable[object]]
