"""A namespace: its sockets, rooms, handlers and middleware, and broadcasting within it."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ...protocol.socketio import Packet, PacketType
from ..transports.outbox import message_frame
from .context import (
    NO_ACK,
    AckValue,
    ConnectMiddleware,
    EventContext,
    Middleware,
    PacketMiddleware,
)

if TYPE_CHECKING:
    from .remote import RemoteSocket
    from .server import SocketIOServer
    from .socket import Socket

log = logging.getLogger("wxio.socketio")

__all__ = ["Namespace", "BroadcastOperator", "Handler", "RouteHandler", "Authorizer"]

#: An event handler ``handler(socket, *args)`` (or a lifecycle or ``"*"`` handler); it may be a
#: coroutine function.
Handler = Callable[..., Any]
#: An egg-socket.io style handler ``handler(ctx)`` (``io.route``); it may be a coroutine function.
RouteHandler = Callable[[EventContext], object]
#: ``check(socket)`` before the CONNECT reply (``nsp.authorize``); it may be a coroutine function.
Authorizer = Callable[["Socket"], object]
#: ``handler(socket, args)`` of :meth:`Namespace.direct`: the coroutine that finishes the work.
DirectHandler = Callable[["Socket", list[Any]], "Coroutine[Any, Any, None] | None"]
H = TypeVar("H", bound=Handler)
R = TypeVar("R", bound=RouteHandler)


class NamespaceHandlers:
    """What a namespace runs; shared by the children of a dynamic namespace."""

    __slots__ = (
        "events",
        "routes",
        "any",
        "lifecycle",
        "authorizers",
        "middleware",
        "packet_middleware",
        "inline",
        "direct",
    )

    def __init__(self) -> None:
        #: python-socketio style: ``handler(socket, *args)``; the return value is the ack.
        self.events: dict[str, Handler] = {}
        #: egg-socket.io style router: ``handler(ctx)``.
        self.routes: dict[str, Handler] = {}
        self.any: list[Handler] = []
        #: ``connect``, ``disconnecting``, ``disconnect``, ``error``: ``handler(socket, ...)``.
        self.lifecycle: dict[str, list[Handler]] = {}
        #: ``async def check(socket)`` run before the CONNECT reply; raise ConnectionRefused.
        self.authorizers: list[Authorizer] = []
        self.middleware: list[Middleware] = []
        self.packet_middleware: list[Middleware] = []
        #: Routes run in their client's WebSocket delivery task (see :meth:`Namespace.inline`).
        self.inline: set[str] = set()
        #: ``handler(socket, args)`` for events that ask for no ack (see :meth:`Namespace.direct`).
        self.direct: dict[str, DirectHandler] = {}


_LIFECYCLE = ("connect", "connection", "disconnecting", "disconnect", "error", "refused")


class Namespace:
    """A Socket.IO namespace (``io.of("/chat")``): its handlers and middleware, its connected
    sockets (:attr:`sockets`, by id) and its rooms on this node, and emitting to them.
    In a cluster, emits and the cluster-wide API reach the namespace's sockets on every node."""

    def __init__(
        self, server: SocketIOServer, name: str, handlers: NamespaceHandlers | None = None
    ):
        self.server = server
        self.name = name
        self.sockets: dict[str, Socket] = {}
        self.rooms: dict[str, set[Socket]] = {}
        self.handlers = handlers if handlers is not None else NamespaceHandlers()
        #: With connection state recovery on, whether this namespace takes part (the routing
        #: core's namespace does not: it has its own inbox).
        self.recoverable = True
        #: Who serves this namespace besides the application (the routing core), else None.
        self.reserved_by: str | None = None

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    # -- registration --------------------------------------------------------------------------

    @overload
    def on(self, event: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def on(self, event: str, handler: H) -> H: ...
    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler(socket, *args)`` for ``event``; usable as a decorator. Its return
        value answers the client's ack (a tuple gives several arguments; None an empty ack;
        :data:`~.context.NO_ACK` no ack at all). ``"*"``
        catches every event without a handler: ``handler(socket, event, *args)``. Lifecycle
        events: ``connect`` (after the CONNECT reply), ``disconnecting`` and ``disconnect``
        (``handler(socket, reason)``), ``error`` (``handler(socket, exc)``), ``refused``
        (``handler(socket)``: connection checks ran but the socket never connected)."""

        def register(fn: H) -> H:
            if event == "*":
                self.handlers.any.append(fn)
            elif event in _LIFECYCLE:
                key = "connect" if event == "connection" else event
                self.handlers.lifecycle.setdefault(key, []).append(fn)
            else:
                self.handlers.events[event] = fn
            return fn

        return register(handler) if handler is not None else register

    @overload
    def route(self, event: str, handler: None = None) -> Callable[[R], R]: ...
    @overload
    def route(self, event: str, handler: R) -> R: ...
    def route(self, event: str, handler: R | None = None) -> R | Callable[[R], R]:
        """egg-socket.io style: ``handler(ctx)`` with ``ctx.socket``, ``ctx.args``,
        ``ctx.packet`` (``[event, *args]``), ``ctx.app``; ``ctx.ack(...)`` or the return value
        answers an ack. Usable as a decorator."""

        def register(fn: R) -> R:
            self.handlers.routes[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def inline(self, *events: str) -> None:
        """Run the routes of ``events`` for a client on WebSocket in its connection's delivery
        task, before its next message, instead of a task per event. Only for handlers that
        never wait on what their own client sends next (an ack they asked it for would never
        come); the routing core's ``requestMessage`` is one."""
        self.handlers.inline.update(events)

    def direct(self, event: str, handler: DirectHandler) -> None:
        """The short way for an ``event`` that has a :meth:`route` too: when the client asks for
        no ack and the namespace has no packet middleware, ``handler(socket, args)`` is called
        instead of the route, with no :class:`EventContext`, and returns the coroutine that
        finishes the work (or None when done). Its exceptions are logged by the socket's
        worker, not sent to ``error`` handlers. For the routing core's ``requestMessage``."""
        self.handlers.direct[event] = handler

    def use(self, middleware: ConnectMiddleware) -> None:
        """Connection middleware ``async def mw(ctx, next)``; raise ConnectionRefused to refuse.
        Code after ``await next()`` runs at disconnect."""
        self.handlers.middleware.append(middleware)

    def authorize(self, check: Authorizer) -> None:
        """``async def check(socket)`` runs before the CONNECT reply and may raise
        ConnectionRefused; unlike middleware it holds nothing for the socket's lifetime."""
        self.handlers.authorizers.append(check)

    def use_packet(self, middleware: PacketMiddleware) -> None:
        """Packet middleware ``async def mw(ctx, next)`` around every event; not calling
        ``next`` drops the packet."""
        self.handlers.packet_middleware.append(middleware)

    def registrations(self) -> list[str]:
        """What is registered on this namespace, one line each (``event 'chat'``,
        ``connection middleware``...)."""
        h = self.handlers
        found = [f"event {name!r}" for name in h.events]
        found += [f"route {name!r}" for name in h.routes]
        found += ["catch-all '*'"] * len(h.any)
        found += [f"{name!r} handler" for name, fns in h.lifecycle.items() for _ in fns]
        found += ["connection check (authorize)"] * len(h.authorizers)
        found += ["connection middleware (use)"] * len(h.middleware)
        found += ["packet middleware (use_packet)"] * len(h.packet_middleware)
        return found

    def reserve(self, owner: str, admits: str, move: str = "") -> None:
        """``owner`` (the routing core) serves this namespace too, admitting only clients that
        ``admits``. Called before the owner registers its own handlers: one warning names
        what the application registered here so far (those handlers are not lost, but other
        clients are refused before they reach them, and the application's middleware also runs
        around the owner's traffic). ``move`` says how to move the owner elsewhere."""
        self.reserved_by = owner
        found = self.registrations()
        if found:
            self.server.warn(
                f"application handlers on namespace {self.name!r}, which is {owner}'s: "
                f"{', '.join(found)}. Only clients that {admits} reach them; others get a "
                'connect_error. Give your handlers a namespace of their own (io.of("/app"), or '
                'namespace="/app" on io.on, io.use, io.route)' + (f", or {move}." if move else ".")
            )

    # -- rooms ---------------------------------------------------------------------------------

    def add_to_room(self, room: str, socket: Socket) -> None:
        """Record ``socket`` as a member of ``room`` on this node (:meth:`Socket.join` calls
        it; the socket keeps its own list of rooms)."""
        self.rooms.setdefault(room, set()).add(socket)

    def remove_from_room(self, room: str, socket: Socket) -> None:
        """Forget ``socket`` as a member of ``room`` (:meth:`Socket.leave` and the socket's
        disconnect call it); an empty room is dropped."""
        members = self.rooms.get(room)
        if members is not None:
            members.discard(socket)
            if not members:
                del self.rooms[room]

    # -- emitting ------------------------------------------------------------------------------

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """An emitter to the sockets in any of ``rooms`` (``io.of(ns).to("room").emit(...)``);
        chain ``.to``, ``.except_`` and end with ``.emit`` or a cluster-wide call."""
        return BroadcastOperator(self).to(*rooms)

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """An emitter to every socket except those in ``rooms``."""
        return BroadcastOperator(self).except_(*rooms)

    def emit(self, event: str, *args: Any) -> int:
        """Send to every socket of the namespace (encoded once)."""
        return self.emit_to(None, event, *args)

    def emit_to(self, room: str | None, event: str, *args: Any) -> int:
        """Send to one room (a socket id is a room) or, with None, to every socket, here and on
        every other node: no operator object, one encoding, one frame for all. Returns how many
        sockets of this node it went to."""
        recovery = self.server.recovery
        if recovery is not None and self.recoverable:
            return recovery.emit(self, () if room is None else (room,), (), [event, *args])
        text, attachments = self.server.encode(Packet(PacketType.EVENT, self.name, [event, *args]))
        cluster = self.server.cluster
        if cluster is not None:
            rooms = () if room is None else (room,)
            cluster.publish(self.name, text, attachments, rooms, ())
        if room is None:
            targets: Iterable[Socket] = list(self.sockets.values())
        else:
            members = self.rooms.get(room)
            if not members:
                return 0
            targets = list(members)
        return send_to(targets, text, attachments)

    # The cluster-wide server API (see .remote): every socket of the namespace, on every node.
    async def fetch_sockets(self, timeout: float | None = None) -> list[Socket | RemoteSocket]:
        """Every socket of the namespace, on every node (see
        :meth:`BroadcastOperator.fetch_sockets`)."""
        return await BroadcastOperator(self).fetch_sockets(timeout)

    def sockets_join(self, *rooms: str | Iterable[str]) -> int:
        """Make every socket of the namespace, on every node, join ``rooms``."""
        return BroadcastOperator(self).sockets_join(*rooms)

    def sockets_leave(self, *rooms: str | Iterable[str]) -> int:
        """Make every socket of the namespace, on every node, leave ``rooms``."""
        return BroadcastOperator(self).sockets_leave(*rooms)

    def disconnect_sockets(self, close: bool = False) -> int:
        """Disconnect every socket of the namespace, on every node (``close``: their whole
        connection)."""
        return BroadcastOperator(self).disconnect_sockets(close)

    async def emit_with_ack(
        self, event: str, *args: Any, timeout: float | None = None
    ) -> list[AckValue]:
        """Emit to every socket of the namespace and collect their acks (see
        :meth:`BroadcastOperator.emit_with_ack`)."""
        return await BroadcastOperator(self).emit_with_ack(event, *args, timeout=timeout)

    def targets(self, rooms: set[str], excluded: set[str], skip: set[str]) -> Iterable[Socket]:
        """This node's sockets in any of ``rooms`` (every socket when empty), leaving out those
        in a room of ``excluded`` and those whose id is in ``skip``: who a broadcast reaches."""
        if rooms:
            seen: set[Socket] = set()
            for room in rooms:
                seen.update(self.rooms.get(room, ()))
            candidates: Iterable[Socket] = seen
        else:
            candidates = list(self.sockets.values())
        if not excluded and not skip:
            return candidates
        banned: set[Socket] = set()
        for room in excluded:
            banned.update(self.rooms.get(room, ()))
        return [s for s in candidates if s not in banned and s.id not in skip]

    def emit_lifecycle(self, event: str, socket: Socket, *args: Any) -> None:
        """Run the lifecycle handlers of ``event`` (``connect``, ``disconnecting``,
        ``disconnect``, ``error``, ``refused``) for ``socket``; a handler that fails is logged
        and the others still run."""
        for handler in self.handlers.lifecycle.get(event, ()):
            try:
                result = handler(socket, *args)
                if inspect.isawaitable(result):
                    self.server.spawn(result)
            except Exception:
                log.exception("%s: %s handler failed", self.name, event)

    # -- events from clients -------------------------------------------------------------------

    def dispatch(self, socket: Socket, packet: Packet) -> Coroutine[Any, Any, None] | None:
        """Run an event's handler now. A plain handler (``io.on``) that does not return an
        awaitable costs no coroutine and no context object; otherwise (an ``async def``
        handler, packet middleware, a route) the coroutine that finishes the work is returned
        for the caller to drive."""
        h = self.handlers
        data = packet.data
        if self.server.observer is not None:  # the admin UI
            self.server.observer.event_received(socket, data[0], data[1:])
        if packet.id is None and not h.packet_middleware:
            direct = h.direct.get(data[0])
            if direct is not None:
                return direct(socket, data[1:])
        handler = h.events.get(data[0]) if not h.packet_middleware else None
        if handler is None or data[0] in h.routes:
            return self.run_event(socket, packet)
        try:
            result = handler(socket, *data[1:])
        except Exception as exc:
            log.exception("%s: handler for %r failed", self.name, data[0])
            self.emit_lifecycle("error", socket, exc)
            return None
        if result is not None and inspect.isawaitable(result):
            return self._finish(socket, packet, result)
        if packet.id is not None:
            _answer(EventContext(socket, self.server, packet), result)
        return None

    async def _finish(self, socket: Socket, packet: Packet, result: Awaitable[Any]) -> None:
        try:
            value = await result
        except Exception as exc:
            log.exception("%s: handler for %r failed", self.name, packet.data[0])
            self.emit_lifecycle("error", socket, exc)
            return
        if packet.id is not None:
            _answer(EventContext(socket, self.server, packet), value)

    async def run_event(self, socket: Socket, packet: Packet) -> None:
        """Run packet middleware, then the handler; answer the ack if one was asked for."""
        ctx = EventContext(socket, self.server, packet)
        chain = self.handlers.packet_middleware

        async def run(i: int) -> None:
            if i < len(chain):
                await chain[i](ctx, lambda: run(i + 1))
            else:
                await self._call_handler(ctx)

        try:
            if chain:
                await run(0)
            else:
                await self._call_handler(ctx)
        except Exception as exc:
            log.exception("%s: handler for %r failed", self.name, ctx.event)
            self.emit_lifecycle("error", socket, exc)

    async def _call_handler(self, ctx: EventContext) -> None:
        h = self.handlers
        route = h.routes.get(ctx.event)
        if route is not None:
            result = route(ctx)
        else:
            handler = h.events.get(ctx.event)
            if handler is not None:
                result = handler(ctx.socket, *ctx.args)
            elif h.any:
                result = None
                for catch_all in h.any:
                    r = catch_all(ctx.socket, ctx.event, *ctx.args)
                    if inspect.isawaitable(r):
                        r = await r
                    result = r if result is None else result
            else:
                log.debug("%s: no handler for %r", self.name, ctx.event)
                return
        if result is not None and inspect.isawaitable(result):
            result = await result
        if ctx.wants_ack:
            _answer(ctx, result)


class BroadcastOperator:
    """``nsp.to("room").except_("other").emit(...)``: immutable-ish builder, encodes once."""

    __slots__ = ("nsp", "rooms", "excluded", "skip")

    def __init__(self, nsp: Namespace) -> None:
        self.nsp = nsp
        self.rooms: set[str] = set()
        self.excluded: set[str] = set()
        self.skip: set[str] = set()

    def _copy(self) -> BroadcastOperator:
        other = BroadcastOperator(self.nsp)
        other.rooms, other.excluded, other.skip = (
            set(self.rooms),
            set(self.excluded),
            set(self.skip),
        )
        return other

    @staticmethod
    def _names(rooms: tuple[str | Iterable[str], ...]) -> set[str]:
        names: set[str] = set()
        for room in rooms:
            if isinstance(room, str):
                names.add(room)
            else:
                names.update(room)
        return names

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """A copy that also targets the sockets in ``rooms``."""
        other = self._copy()
        other.rooms |= self._names(rooms)
        return other

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """A copy that leaves out the sockets in ``rooms``."""
        other = self._copy()
        other.excluded |= self._names(rooms)
        return other

    def except_sid(self, sid: str) -> BroadcastOperator:
        """A copy that leaves out the socket ``sid`` (how ``socket.to(...)`` skips its sender)."""
        other = self._copy()
        other.skip.add(sid)
        return other

    def emit(self, event: str, *args: Any) -> int:
        """Send to the selected sockets, here and (in a cluster) on every other node; the packet
        is encoded once. Returns how many sockets of this node were sent to."""
        recovery = self.nsp.server.recovery
        if recovery is not None and self.nsp.recoverable:
            return recovery.emit(self.nsp, self.rooms, self.excluded | self.skip, [event, *args])
        text, attachments = self.nsp.server.encode(
            Packet(PacketType.EVENT, self.nsp.name, [event, *args])
        )
        cluster = self.nsp.server.cluster
        if cluster is not None:
            # A skipped socket id is a room too (every socket is in its own).
            cluster.publish(self.nsp.name, text, attachments, self.rooms, self.excluded | self.skip)
        return self.send_local(text, attachments)

    def send_local(self, text: str | bytes, attachments: list[bytes]) -> int:
        """Send an already encoded packet to the selected sockets of this node only; returns
        how many."""
        return send_to(self.nsp.targets(self.rooms, self.excluded, self.skip), text, attachments)

    def sockets(self) -> list[Socket]:
        """The selected sockets of this node."""
        return list(self.nsp.targets(self.rooms, self.excluded, self.skip))

    # -- the cluster-wide server API (socket.io 4 with an adapter; see .remote) ----------------

    async def fetch_sockets(self, timeout: float | None = None) -> list[Socket | RemoteSocket]:
        """The selected sockets on every node: this node's :class:`Socket` objects, then a
        :class:`~.remote.RemoteSocket` for each socket of another node that answered within
        ``timeout`` seconds (default 5)."""
        from .remote import FETCH_TIMEOUT, fetch_sockets

        return await fetch_sockets(self, FETCH_TIMEOUT if timeout is None else timeout)

    def sockets_join(self, *rooms: str | Iterable[str]) -> int:
        """Make the selected sockets, on every node, join ``rooms``. Applied here at once and on
        the other nodes when the message reaches them; returns this node's count."""
        from .remote import apply

        return apply(self, "join", sorted(self._names(rooms)))

    def sockets_leave(self, *rooms: str | Iterable[str]) -> int:
        """Make the selected sockets, on every node, leave ``rooms``; returns this node's count."""
        from .remote import apply

        return apply(self, "leave", sorted(self._names(rooms)))

    def disconnect_sockets(self, close: bool = False) -> int:
        """Disconnect the selected sockets on every node (``close``: their whole connection)."""
        from .remote import apply

        return apply(self, "disconnect", [close])

    async def emit_with_ack(
        self, event: str, *args: Any, timeout: float | None = None
    ) -> list[AckValue]:
        """Emit to the selected sockets on every node and wait up to ``timeout`` seconds
        (default the server's ``ack_timeout``) for each client's ack: Node's
        ``io.timeout(ms).emitWithAck(...)``. Returns the first argument of every ack; raises
        :class:`~.remote.BroadcastAckTimeout` (with the partial ``responses``) when a client
        did not answer in time."""
        from .remote import emit_with_ack

        wait = self.nsp.server.options.ack_timeout if timeout is None else timeout
        return await emit_with_ack(self, event, list(args), wait)


def _answer(ctx: EventContext, result: Any) -> None:
    """Answer an event's ack from its handler's return value (unless answered already)."""
    if ctx.acked:
        return
    if result is NO_ACK:
        ctx.no_ack()
    elif result is None:
        ctx.ack()
    elif isinstance(result, tuple):
        ctx.ack(*result)
    else:
        ctx.ack(result)


def send_to(targets: Iterable[Socket], text: str | bytes, attachments: list[bytes]) -> int:
    """Send one encoded packet (``text`` and its ``attachments``) to those of ``targets`` that
    are connected, all on this node; the WebSocket frame is built once. Returns how many."""
    count = 0
    if attachments or not isinstance(text, str):  # (bytes: a binary parser, msgpack)
        items: list[str | bytes] = [text, *attachments]
        for socket in targets:
            if socket.connected:
                socket.client.esock.send_many(items)
                count += 1
        return count
    frame = message_frame(text)
    for socket in targets:
        if socket.connected:
            socket.client.esock.send_frame(frame, text)
            count += 1
    return count
