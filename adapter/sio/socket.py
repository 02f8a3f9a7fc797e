"""One client's connection to one namespace."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from ...protocol.socketio import Packet, PacketType
from ...protocol.socketio.state import NamespaceConnection, SocketState, SocketTransition
from ..websessions import NO_SESSION, WebSession
from .recovery import RECOVERABLE

if TYPE_CHECKING:
    from .context import AckValue
    from .namespace import BroadcastOperator, Namespace
    from .recovery import Restored
    from .server import Client

log = logging.getLogger("wxio.socketio")

__all__ = ["Socket", "Handshake", "Headers", "AckTimeout"]


class AckTimeout(asyncio.TimeoutError):
    """The client did not acknowledge an emit in time (or disconnected before it did)."""


#: An entry of a socket's acks: the callback of the ack, the timer that expires it, and what to
#: call when the ack will not come (its timeout passed, or the socket disconnected first).
_AckEntry = tuple[Callable[..., Any], asyncio.TimerHandle | None, Callable[[], None] | None]


class Headers(dict[str, str]):
    """Request headers as Node gives them: lower-case names, a repeated header joined with
    ``", "`` (``cookie`` with ``"; "``). A plain dict (JSON-serialisable); lookups by
    ``[]``, ``get`` and ``in`` ignore case, so ``headers.get("Origin")`` works too."""

    __slots__ = ()

    @classmethod
    def of(cls, items: Any) -> Headers:
        """Build from ``(name, value)`` pairs, joining repeated names as Node does."""
        headers = cls()
        for name, value in items:
            key = name.lower()
            old = dict.get(headers, key)
            if old is None:
                dict.__setitem__(headers, key, value)
            else:
                sep = "; " if key == "cookie" else ", "
                dict.__setitem__(headers, key, old + sep + value)
        return headers

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get``, ignoring the case of ``key``."""
        return dict.get(self, key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


def _query(items: Any) -> dict[str, str | list[str]]:
    """The query string as Node's ``querystring.parse`` gives it: a repeated key is a list."""
    query: dict[str, str | list[str]] = {}
    for key, value in items:
        old = query.get(key)
        if old is None:
            query[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            query[key] = [old, value]
    return query


class Handshake(dict[str, Any]):
    """``socket.handshake``, shaped as in socket.io 4 and JSON-serialisable as it is
    (``json.dumps(socket.handshake)``): ``headers`` (:class:`Headers`), ``time`` (the
    handshake's date as JavaScript's ``Date.toString()`` writes it, in UTC), ``address``,
    ``xdomain`` (an ``Origin`` header was sent), ``secure``, ``issued`` (ms since the epoch),
    ``url``, ``query`` (a plain dict; a repeated key is a list) and ``auth`` (the CONNECT
    payload). Keys and attributes are the same thing: ``socket.handshake.query`` is
    ``socket.handshake["query"]``."""

    __slots__ = ()

    def __init__(self, client: Client, auth: dict[str, Any]) -> None:
        info = client.esock.handshake
        headers = Headers.of(info.headers.items())
        issued = info.issued_ms
        super().__init__(
            headers=headers,
            time=time.strftime(
                "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)",
                time.gmtime(issued / 1000),
            ),
            address=info.address,
            xdomain="origin" in headers,
            secure=info.secure,
            issued=issued,
            url=info.url,
            query=_query(info.query.items()),
            auth=auth,
        )

    @property
    def headers(self) -> Headers:
        """The request headers (lower-case names)."""
        return self["headers"]  # type: ignore[no-any-return]

    @property
    def time(self) -> str:
        """The handshake's date, as JavaScript's ``Date.toString()`` writes it (UTC)."""
        return self["time"]  # type: ignore[no-any-return]

    @property
    def address(self) -> str:
        """The client's address."""
        return self["address"]  # type: ignore[no-any-return]

    @property
    def xdomain(self) -> bool:
        """Whether the request had an ``Origin`` header."""
        return self["xdomain"]  # type: ignore[no-any-return]

    @property
    def secure(self) -> bool:
        """Whether the request came over TLS."""
        return self["secure"]  # type: ignore[no-any-return]

    @property
    def issued(self) -> int:
        """The handshake time, in ms since the epoch."""
        return self["issued"]  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        """The path and query of the first request."""
        return self["url"]  # type: ignore[no-any-return]

    @property
    def query(self) -> dict[str, Any]:
        """The query string (a repeated key is a list)."""
        return self["query"]  # type: ignore[no-any-return]

    @property
    def auth(self) -> dict[str, Any]:
        """The CONNECT payload (EIO=3: the query string without Engine.IO's own keys)."""
        return self["auth"]  # type: ignore[no-any-return]


class Socket:
    """One client's connection to one namespace: what handlers receive as ``socket``.

    Its state (:attr:`state`) follows the table of :mod:`wxio.protocol.socketio.state`:
    connecting (connection checks running), connected, disconnecting (the ``disconnecting``
    handlers run; still :attr:`connected`), disconnected. Events from the client are handled in
    order, one at a time (:meth:`receive_event`)."""

    __slots__ = (
        "id",
        "nsp",
        "client",
        "_auth",
        "_handshake",
        "rooms",
        "data",
        "_conn",
        "_acks",
        "_next_ack",
        "_queue",
        "_worker",
        "_after_connect",
        "pid",
        "recovered",
        "_restored",
    )

    def __init__(self, nsp: Namespace, client: Client, sid: str, auth: dict[str, Any]) -> None:
        self.id = sid
        self.nsp = nsp
        self.client = client
        self._auth = auth
        self._handshake: Handshake | None = None
        self.rooms: set[str] = set()
        #: Free for the application (user id, app name...).
        self.data: dict[str, Any] = {}
        self._conn = NamespaceConnection()
        self._acks: dict[int, _AckEntry] = {}
        self._next_ack = 0
        #: Events waiting while a handler of this socket waits (made when first needed).
        self._queue: deque[Packet] | None = None
        self._worker: Awaitable[None] | None = None
        #: Set at disconnect: releases connection middleware waiting after ``await next()``.
        self._after_connect: asyncio.Future[None] | None = None
        #: Connection state recovery: the private session id sent in the CONNECT reply (None
        #: when recovery is off), and whether this connection took over a previous session.
        self.pid: str | None = None
        self.recovered = False
        self._restored: Restored | None = None

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.nsp.name}>"

    @property
    def handshake(self) -> Handshake:
        """``socket.handshake`` (built on first use: most sockets never ask)."""
        if self._handshake is None:
            self._handshake = Handshake(self.client, self._auth)
        return self._handshake

    @property
    def session(self) -> WebSession:
        """The web session of the request that opened the connection (its cookie), read once
        when the connection opened (``io.sessions``, ``[sessions]``): a read-only dict, the same
        for every namespace of the connection, never written back. Empty (``.new`` True) when
        the request had none or sessions are off."""
        session = self.client.session
        return NO_SESSION if session is None else session

    @property
    def sid(self) -> str:
        """The socket id (``socket.id`` in Node)."""
        return self.id

    @property
    def pending_acks(self) -> int:
        """How many acks of this socket's emits are awaited (each expires with its timeout, or
        with the socket)."""
        return len(self._acks)

    def restore(self, restored: Restored) -> None:
        """Take over a previous connection's session (connection state recovery): its id, pid
        and data now; its rooms and missed packets once accepted (:meth:`take_restored`)."""
        self.id = restored.sid
        self.pid = restored.pid
        self.data = restored.data
        self.recovered = True
        self._restored = restored

    def take_restored(self) -> Restored | None:
        """The session given to :meth:`restore`, once (then None): the server joins its rooms
        and sends its missed packets on accepting the socket, or cancels it on refusing."""
        restored, self._restored = self._restored, None
        return restored

    @property
    def state(self) -> SocketState:
        """Where the namespace connection is (see :mod:`wxio.protocol.socketio.state`)."""
        return self._conn.state

    @property
    def connected(self) -> bool:
        """Connected to the namespace (also while the ``disconnecting`` handlers run)."""
        return self._conn.connected

    @property
    def was_connected(self) -> bool:
        """Set once connected, never cleared: tells "left" from "never joined"."""
        return self._conn.was_connected

    # -- sending -------------------------------------------------------------------------------

    def emit(
        self,
        event: str,
        *args: Any,
        callback: Callable[..., object] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Send an event to this client. With ``callback``:

        - without ``timeout``, ``callback(*ack_args)`` runs when the client acknowledges; if it
          has not after the server's ``ack_timeout``, the callback is dropped, never called
          (Node's ``socket.emit(..., cb)`` keeps it until disconnect, never called either);
        - with ``timeout`` (seconds), as Node's ``socket.timeout(ms).emit(..., cb)``: the first
          argument is the error, ``callback(None, *ack_args)`` when the client acknowledges in
          time, ``callback(AckTimeout(...))`` when it does not, or disconnects first, or was
          not connected.

        Does nothing else once the socket has disconnected. Raises
        :class:`~wxio.protocol.errors.LocalProtocolError` naming the event and the type when an
        argument cannot be encoded (JSON, ``bytes``, or what the msgpack parser takes)."""
        if not self.connected:
            if callback is not None and timeout is not None:
                failed = AckTimeout(f"{self.id}: not connected: {event!r} was not sent")
                asyncio.get_running_loop().call_soon(self._run_callback, callback, failed)
            return
        observer = self.nsp.server.observer
        if observer is not None:
            observer.event_sent(self, event, args)
        ack_id = None
        if callback is not None:
            if timeout is None:
                ack_id = self.register_ack(callback)
            else:
                ack_id = self._register_err_first(callback, event, timeout)
        elif self.pid is not None:
            # As in the reference: with recovery on, an emit without ack goes through the log
            # (to this socket's own room), so that the client gets it back if it reconnects.
            recovery = self.nsp.server.recovery
            if recovery is not None:
                recovery.emit(self.nsp, (self.id,), (), [event, *args])
                return
        try:
            self.client.send_packet(Packet(PacketType.EVENT, self.nsp.name, [event, *args], ack_id))
        except BaseException:
            if ack_id is not None:
                self.cancel_ack(ack_id)
            raise

    def _register_err_first(
        self, callback: Callable[..., object], event: str, timeout: float
    ) -> int:
        """Node's ``timeout(ms).emit(..., cb)``: ``cb(None, *args)``, or ``cb(AckTimeout)``."""

        def answered(*ack_args: Any) -> object:
            return callback(None, *ack_args)

        def missed() -> None:
            if self.connected:
                why = f"no ack for {event!r} within {timeout:g} s"
            else:
                why = f"disconnected before acknowledging {event!r}"
            self._run_callback(callback, AckTimeout(why))

        return self.register_ack(answered, timeout, on_timeout=missed)

    def send(
        self,
        *args: Any,
        callback: Callable[..., object] | None = None,
        timeout: float | None = None,
    ) -> None:
        """``emit("message", *args)``, as in Node."""
        self.emit("message", *args, callback=callback, timeout=timeout)

    async def call(self, event: str, *args: Any, timeout: float | None = None) -> list[AckValue]:
        """Emit and wait for the client's ack (up to ``timeout`` seconds, default the server's
        ``ack_timeout``); returns its arguments or raises :class:`AckTimeout` (also when the
        socket disconnects first)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[AckValue]] = loop.create_future()

        def done(*ack_args: Any) -> None:
            if not fut.done():
                fut.set_result(list(ack_args))

        def expired() -> None:
            if not fut.done():
                why = "no ack" if self.connected else "disconnected before an ack"
                fut.set_exception(AckTimeout(f"{why} for {event!r}"))

        if not self.connected:
            raise ConnectionError("socket is not connected")
        ack_id = self.register_ack(done, timeout, on_timeout=expired)
        try:
            self.client.send_packet(Packet(PacketType.EVENT, self.nsp.name, [event, *args], ack_id))
        except BaseException:
            self.cancel_ack(ack_id)
            raise
        return await fut

    def register_ack(
        self,
        callback: Callable[..., Any],
        timeout: float | None = None,
        on_timeout: Callable[[], None] | None = None,
    ) -> int:
        """Reserve an ack id for a packet you encode yourself: ``callback(*args)`` runs when the
        client acknowledges it; dropped after ``timeout`` seconds (0: kept until disconnect).
        ``on_timeout()`` runs when the ack will not come: the timeout passed, or the socket
        disconnected first."""
        ack_id = self._next_ack
        self._next_ack += 1
        delay = self.nsp.server.options.ack_timeout if timeout is None else timeout
        if delay <= 0:  # no timer (e.g. one per kept message of the routing core)
            self._acks[ack_id] = (callback, None, on_timeout)
            return ack_id

        def expire() -> None:
            if self._acks.pop(ack_id, None) is not None and on_timeout is not None:
                self._run_callback(on_timeout)

        timer = asyncio.get_running_loop().call_later(delay, expire)
        self._acks[ack_id] = (callback, timer, on_timeout)
        return ack_id

    def _run_callback(self, callback: Callable[..., object], *args: Any) -> None:
        """Run an ack callback (a coroutine it returns runs as a task); a failure is logged."""
        try:
            result = callback(*args)
            if result is not None and asyncio.iscoroutine(result):
                self.nsp.server.spawn(result)
        except Exception:
            log.exception("%s: ack callback failed", self.id)

    def expect_ack(self, ack_id: int, callback: Callable[..., Any]) -> None:
        """Wait for the ack of a packet sent with ``ack_id`` by someone else (a broadcast with
        acks, see .remote); the caller bounds the wait."""
        self._acks[ack_id] = (callback, None, None)

    def cancel_ack(self, ack_id: int) -> None:
        """Stop waiting for the ack of ``ack_id`` (its callback will not run)."""
        entry = self._acks.pop(ack_id, None)
        if entry is not None and entry[1] is not None:
            entry[1].cancel()

    @property
    def text_packets(self) -> bool:
        """The server's parser writes packets as text (JSON, not msgpack): a packet encoded
        ahead (:func:`wxio.protocol.socketio.encode_event`) may go out with
        :meth:`send_encoded`."""
        return self.nsp.server.json_parser

    def send_encoded(self, text: str, frame: bytes | None = None) -> None:
        """Queue a packet you encoded yourself as text (see :attr:`text_packets`), e.g. with an
        ack id from :meth:`register_ack`; ``frame``: its Engine.IO WebSocket frame, built once
        for many receivers (:func:`~..transports.outbox.message_frame`)."""
        esock = self.client.esock
        if frame is None:
            esock.send(text)
        else:
            esock.send_frame(frame, text)

    def frame_sender(self) -> Callable[[bytes, str], None]:
        """:meth:`send_encoded` with a frame, as one call: ``send(frame, text)`` (the client's
        Engine.IO session's, the same for the socket's life)."""
        return self.client.esock.send_frame

    def send_packet(self, packet: Packet) -> None:
        """Queue a packet as it is, encoded by the server's parser (no observer, no recovery
        log: for packets you address yourself, e.g. with an ack id from :meth:`register_ack`)."""
        self.client.send_packet(packet)

    def send_ack(self, ack_id: int, args: list[Any]) -> None:
        """Answer the client's ack ``ack_id`` with ``args`` (nothing once disconnected)."""
        if self.connected:
            self.client.send_packet(Packet(PacketType.ACK, self.nsp.name, args, ack_id))

    def receive_ack(self, packet: Packet) -> None:
        """An ACK from the client: run the callback registered for its id (if any)."""
        if packet.id is None:
            log.debug("%s: ack without an id", self.id)
            return
        self.receive_ack_id(packet.id, packet.data)

    def receive_ack_id(self, ack_id: int, args: list[Any]) -> None:
        """:meth:`receive_ack` of a packet already taken apart: its id and arguments."""
        entry = self._acks.pop(ack_id, None)
        if entry is None:
            log.debug("%s: ack %s matches no emit", self.id, ack_id)
            return
        callback, timer, _ = entry
        if timer is not None:
            timer.cancel()
        self._run_callback(callback, *args)

    # -- rooms and broadcasting ------------------------------------------------------------------

    def join(self, *rooms: str) -> None:
        """Join rooms on this node (every socket is in the room named by its id)."""
        for room in rooms:
            if room not in self.rooms:
                self.rooms.add(room)
                self.nsp.add_to_room(room, self)
                observer = self.nsp.server.observer
                if observer is not None:
                    observer.room_joined(self, room)

    def leave(self, *rooms: str) -> None:
        """Leave rooms; leaving one this socket is not in does nothing."""
        for room in rooms:
            if room in self.rooms:
                self.rooms.discard(room)
                self.nsp.remove_from_room(room, self)
                observer = self.nsp.server.observer
                if observer is not None:
                    observer.room_left(self, room)

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Broadcast to rooms, leaving this socket out (``socket.to(room).emit(...)``)."""
        return self.nsp.to(*rooms).except_sid(self.id)

    def broadcast(self) -> BroadcastOperator:
        """Every socket of the namespace except this one."""
        return self.nsp.to().except_sid(self.id)

    # -- lifecycle -----------------------------------------------------------------------------

    def disconnect(self, close: bool = False) -> None:
        """Leave the namespace (the client gets a DISCONNECT); with ``close``, end the whole
        connection."""
        if close:
            # A server-side disconnect is final: no session is kept for recovery.
            self.client.no_recovery = True
            self.client.close()
            return
        if self._conn.can(SocketTransition.DISCONNECT):
            self.client.send_packet(Packet(PacketType.DISCONNECT, self.nsp.name))
            self.client.socket_left(self, "server namespace disconnect")

    # -- lifecycle, driven by the server ---------------------------------------------------------

    def accept(self) -> None:
        """The server answered CONNECT: the socket is connected and in its own room. Raises
        :class:`~wxio.protocol.errors.LocalProtocolError` unless it was connecting."""
        self._conn.apply(SocketTransition.ACCEPT)
        self.join(self.id)

    def refuse(self) -> None:
        """The connection checks refused the socket (a no-op unless it is connecting)."""
        if self._conn.can(SocketTransition.REFUSE):
            self._conn.apply(SocketTransition.REFUSE)

    async def wait_disconnected(self) -> None:
        """Wait until the socket has disconnected (or never connected and never will): what
        connection middleware awaits after ``await next()``."""
        if self._conn.state is SocketState.DISCONNECTED:
            return
        if self._after_connect is None:
            self._after_connect = asyncio.get_running_loop().create_future()
        await self._after_connect

    def receive_event(
        self, packet: Packet, driven: bool = False
    ) -> Coroutine[Any, Any, None] | None:
        """Handle an EVENT from the client, after the ones still being handled (in order, one at
        a time). A plain handler runs now; a coroutine handler runs in the socket's worker task,
        and the socket's later events queue behind it. (Not started here: a coroutine started in
        one task and carried on in another would have ``asyncio.timeout`` cancel the wrong one.)
        ``driven``: the caller (the client's WebSocket read) runs what is returned to its end
        before its next message, so an inline route's coroutine is returned, no worker."""
        if self._worker is not None:
            if self._queue is None:
                self._queue = deque()
            self._queue.append(packet)
            return None
        nsp = self.nsp
        coro = nsp.dispatch(self, packet)
        if coro is None:
            return None  # a plain handler: done already
        inline = packet.data[0] in nsp.handlers.inline
        if inline and driven:
            return coro
        work = self._work(coro)
        if inline:
            # Run by the WebSocket's delivery task, which started nothing of it yet and
            # carries it to its end: no task per event.
            ws = self.client.esock.ws
            if ws is not None and ws.adopt(work):
                self._worker = work
                return None
        self._worker = nsp.server.spawn(work)
        return None

    async def _work(self, first: Coroutine[Any, Any, None]) -> None:
        try:
            await first
            while self._queue:
                coro = self.nsp.dispatch(self, self._queue.popleft())
                if coro is not None:
                    await coro
        finally:
            self._worker = None

    def handle_disconnect(self, reason: str) -> None:
        """The disconnect sequence: ``disconnecting`` (still in rooms), leave, ``disconnect``.
        Runs once; a socket still connecting is refused instead (the client left first)."""
        conn = self._conn
        if conn.can(SocketTransition.REFUSE):
            conn.apply(SocketTransition.REFUSE)
            self._release()
            return
        if not conn.can(SocketTransition.DISCONNECT):
            return  # already disconnecting or disconnected
        conn.apply(SocketTransition.DISCONNECT)
        self.nsp.emit_lifecycle("disconnecting", self, reason)
        if self.pid is not None and reason in RECOVERABLE and not self.client.no_recovery:
            recovery = self.nsp.server.recovery
            if recovery is not None:
                recovery.persist(self)
        conn.apply(SocketTransition.FINISH)
        observer = self.nsp.server.observer
        for room in list(self.rooms):
            self.nsp.remove_from_room(room, self)
            if observer is not None:
                observer.room_left(self, room)
        self.rooms.clear()
        self.nsp.sockets.pop(self.id, None)
        pending = list(self._acks.values())
        self._acks.clear()
        for _, timer, _ in pending:
            if timer is not None:
                timer.cancel()
        self._queue = None
        self._release()
        if observer is not None:
            observer.socket_disconnected(self, reason)
        self.nsp.emit_lifecycle("disconnect", self, reason)
        # The acks still awaited will not come: tell whoever asked to be told (socket.call,
        # emit with a timeout), after the disconnect handlers, as Node's timers fire later.
        for _, _, missed in pending:
            if missed is not None:
                self._run_callback(missed)

    def _release(self) -> None:
        if self._after_connect is not None and not self._after_connect.done():
            self._after_connect.set_result(None)
