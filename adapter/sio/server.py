"""The Socket.IO server: an Engine.IO handler that multiplexes namespaces over each session.

Rules kept here (socket.io-protocol v5 §"Connection to a namespace", v4 for EIO=3): an EIO=4
client must CONNECT within ``connect_timeout``, and nothing is sent before it does; an EIO=3
client is connected to ``/`` at once, with its query string as auth. A packet for a namespace the
client has not joined, a second CONNECT, a client CONNECT_ERROR, a binary packet for a namespace
not joined, or anything that does not decode closes the whole connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ...protocol.engineio.session import CloseReason
from ...protocol.errors import RemoteProtocolError
from ...protocol.socketio import Decoder, Packet, PacketType, encode, split_namespace
from ...protocol.socketio.packets import bare_ack
from ..config import ConfigError, SocketIOOptions
from ..engine import AllowRequest, EngineSocket
from ..tasks import Tasks
from ..websessions import SessionReader, WebSession
from .context import (
    AckValue,
    ConnectContext,
    ConnectionRefused,
    ConnectMiddleware,
    PacketMiddleware,
)
from .namespace import Handler, Namespace, NamespaceHandlers, RouteHandler
from .recovery import MemoryRecovery, RedisRecovery, recovery_options
from .socket import Socket

if TYPE_CHECKING:
    from .remote import RemoteSocket

log = logging.getLogger("wxio.socketio")

__all__ = ["SocketIOServer", "Client"]

NamespaceMatcher = re.Pattern[str] | Callable[[str, dict[str, Any]], bool]
# Engine.IO's own query keys are not auth for EIO=3 clients.
_ENGINE_KEYS = frozenset({"EIO", "transport", "t", "sid", "b64", "j"})
#: What a client is told when a connection check fails with anything but ConnectionRefused
#: (the details are logged, never sent: they may hold internal names, addresses, secrets).
SERVER_ERROR = "Server error"
H = TypeVar("H", bound=Handler)
R = TypeVar("R", bound=RouteHandler)


class Client:
    """One Engine.IO session as Socket.IO sees it: its decoder and its namespace sockets."""

    __slots__ = (
        "server",
        "esock",
        "decoder",
        "sockets",
        "protocol",
        "_connect_timer",
        "no_recovery",
        "session",
        "_session_read",
    )

    def __init__(self, server: SocketIOServer, esock: EngineSocket) -> None:
        self.server = server
        self.esock = esock
        self.decoder: Any = server.new_decoder()
        self.sockets: dict[str, Socket] = {}
        #: Socket.IO protocol revision: 5 over EIO=4, 4 over EIO=3.
        self.protocol = 5 if esock.eio == 4 else 4
        self._connect_timer: asyncio.TimerHandle | None = None
        #: Set when the server ends the connection on purpose (``disconnect(close=True)``): its
        #: sockets' sessions are not kept for recovery.
        self.no_recovery = False
        #: The web session of the request that opened the connection (``socket.session``):
        #: None until read (or when the server reads none).
        self.session: WebSession | None = None
        #: The read of :attr:`session` while it runs (started when the connection opens).
        self._session_read: asyncio.Task[None] | None = None

    def read_session(self, reader: SessionReader) -> None:
        """Start reading the session of the connection's first request (once: every namespace
        of the connection shares it)."""

        async def read() -> None:
            self.session = await reader.read(self.esock.handshake.headers.items())

        self._session_read = self.server.spawn(read())

    @property
    def session_pending(self) -> bool:
        """The session of the connection's first request is being read: a namespace
        connection waits for it (:meth:`wait_session`) before its checks run."""
        return self._session_read is not None and self.session is None

    async def wait_session(self) -> None:
        """Return once the read started by :meth:`read_session` has ended (read, failed, or
        cancelled as the connection closed); at once when none was started. Never raises."""
        reading = self._session_read
        if reading is not None:
            await asyncio.wait((reading,))

    def start_connect_timer(self, timeout: float) -> None:
        """Close the connection unless it joins a namespace within ``timeout`` seconds (an
        EIO=4 client must send a CONNECT first)."""
        loop = asyncio.get_running_loop()
        self._connect_timer = loop.call_later(timeout, self._connect_timeout)

    def stop_connect_timer(self) -> None:
        """A namespace was joined: the connect timeout no longer applies."""
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _connect_timeout(self) -> None:
        self._connect_timer = None
        if not self.sockets and not self.esock.closed:
            self.esock.close(CloseReason.FORCED_CLOSE, "no namespace joined in time")

    def close(self, reason: CloseReason = CloseReason.FORCED_CLOSE) -> None:
        """Close the whole Engine.IO session (every namespace of this client)."""
        self.esock.close(reason)

    def _fail(self, why: str) -> None:
        self.decoder.reset()
        self.esock.close(CloseReason.PARSE_ERROR, why)  # (the engine logs why)

    # -- inbound -------------------------------------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        """One Engine.IO message: decode it (attachments may follow) and handle the packet."""
        if not isinstance(data, bytes):
            self.receive_text(data, False)
            return
        observer = self.server.observer
        if observer is not None:
            observer.message_in(data)
        try:
            packet = self.decoder.feed_binary(data)
        except RemoteProtocolError as exc:
            self._fail(f"invalid packet: {exc}")
            return
        if packet is not None:
            self._on_packet(packet)

    def receive_text(self, text: str, driven: bool = True) -> Coroutine[Any, Any, None] | None:
        """One text message (the Engine.IO session's receiver on WebSocket, see
        :attr:`EngineSocket.receive_text`). ``driven``: the caller runs the work returned before
        its next message, so an event of an inline route (:meth:`Namespace.inline`) comes back
        as its coroutine, no task and no worker; anything else is handled here."""
        observer = self.server.observer
        if observer is not None:
            observer.message_in(text)
        if text[:1] == "3" and self.decoder.pending is None:
            # An ack of a kept message (3<id>[] or 3<id>[true]): no decoder, no Packet.
            bare = bare_ack(text)
            if bare is not None:
                socket = self.sockets.get("/")
                if socket is not None and socket.connected:
                    socket.receive_ack_id(*bare)
                    return None
        try:
            packet = self.decoder.feed_text(text)
            pending = self.decoder.pending
            if pending is not None and pending.nsp not in self.sockets:
                # Refuse before buffering attachments for a namespace the client never joined.
                self._fail("binary packet for a namespace not joined")
                return None
        except RemoteProtocolError as exc:
            self._fail(f"invalid packet: {exc}")
            return None
        if packet is None:
            return None
        # The commonest two (what _on_packet does for them, in this frame).
        ptype = packet.type
        if ptype is PacketType.EVENT or ptype is PacketType.ACK:
            socket = self.sockets.get(packet.nsp)
            if socket is not None and socket.connected:
                if ptype is PacketType.EVENT:
                    return socket.receive_event(packet, driven)
                socket.receive_ack(packet)
                return None
        self._on_packet(packet)
        return None

    def _on_packet(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype is PacketType.CONNECT:
            self._on_connect(packet)
            return
        socket = self.sockets.get(packet.nsp)
        # (A socket still in its connection checks is reserved here but not connected: what it
        # sends before the CONNECT reply is refused as the reference does.)
        if socket is None or not socket.connected or ptype is PacketType.CONNECT_ERROR:
            self._fail(f"{ptype.name} for namespace {packet.nsp!r} not joined")
            return
        if ptype is PacketType.EVENT or ptype is PacketType.BINARY_EVENT:
            socket.receive_event(packet)
        elif ptype is PacketType.ACK or ptype is PacketType.BINARY_ACK:
            socket.receive_ack(packet)
        elif ptype is PacketType.DISCONNECT:
            self.socket_left(socket, "client namespace disconnect")

    def _on_connect(self, packet: Packet) -> None:
        if self.protocol == 4:
            try:
                name, auth = split_namespace(packet.nsp)
            except RemoteProtocolError as exc:
                self._fail(f"invalid namespace query: {exc}")
                return
        else:
            name = packet.nsp
            auth = packet.data if packet.data is not None else {}
        if name in self.sockets:
            self._fail(f"second CONNECT for {name!r}")
            return
        self.server.connect_namespace(self, name, auth)

    def socket_left(self, socket: Socket, reason: str) -> None:
        """``socket`` leaves its namespace (whoever asked): forget it, run its disconnect."""
        if self.sockets.get(socket.nsp.name) is socket:
            del self.sockets[socket.nsp.name]
        log.info("%s left %s (%s)", socket.id, socket.nsp.name, reason)
        socket.handle_disconnect(reason)

    def on_close(self, reason: str) -> None:
        """The Engine.IO session closed: every namespace socket disconnects with ``reason``."""
        if self._connect_timer is not None:
            self._connect_timer.cancel()
        if self._session_read is not None and not self._session_read.done():
            self._session_read.cancel()
        self.decoder.reset()
        for socket in list(self.sockets.values()):
            self.socket_left(socket, reason)

    # -- outbound ------------------------------------------------------------------------------

    def send_packet(self, packet: Packet) -> None:
        """Encode ``packet`` with the server's parser and queue it (and its attachments)."""
        text, attachments = self.server.encode(packet)
        if attachments:
            self.esock.send_many([text, *attachments])
        else:
            self.esock.send(text)


class SocketIOServer:
    """Namespaces and their handlers; the Engine.IO handler of a Socket.IO mount."""

    def __init__(
        self,
        options: SocketIOOptions | None = None,
        *,
        allow_request: AllowRequest | None = None,
        parser: str | None = None,
        connection_state_recovery: Any = None,
    ) -> None:
        self.options = options or SocketIOOptions()
        #: The packet codec: "default" (JSON) or "msgpack" (socket.io-msgpack-parser).
        self.parser = parser or self.options.parser
        #: ``encode(packet) -> (first message, attachments)``; the first is text for the JSON
        #: parser, bytes for msgpack.
        self.encode: Callable[[Packet], tuple[Any, list[bytes]]] = encode
        #: ``new_decoder()``: a packet decoder for the parser (one per connection: it holds a
        #: binary packet until its attachments have arrived).
        self.new_decoder: Callable[[], Any] = Decoder
        #: False with a binary parser: the routing core then cannot splice pre-encoded JSON.
        self.json_parser = True
        if self.parser == "msgpack":
            from ...protocol.socketio import msgpack

            if not msgpack.available():
                raise ConfigError(
                    "parser = \"msgpack\" needs the msgpack package: pip install 'wxio[msgpack]'"
                )
            self.encode = msgpack.encode
            self.new_decoder = msgpack.Decoder
            self.json_parser = False
        elif self.parser != "default":
            raise ConfigError(f"[socketio] parser: {self.parser!r} is not default or msgpack")
        self.namespaces: dict[str, Namespace] = {}
        self._dynamic: list[tuple[NamespaceMatcher, NamespaceHandlers]] = []
        #: Background tasks (handlers that wait, connection checks), cancelled at shutdown.
        self.tasks = Tasks()
        #: Set in a cluster: room emits reach the sockets of every node.
        self.cluster: Any = None
        #: Events that come on a WebSocket are handled in its read callback, with no task until
        #: a handler has to wait (``async def`` handlers get a task of their socket anyway).
        #: Whoever adds an inline route that needs a task to start (``asyncio.timeout``, a
        #: Redis client) sets it False.
        self.eager = True
        #: Handlers of server-side emits from other nodes (see on_server_side).
        self.server_side_handlers: dict[str, Handler] = {}
        #: ``generate_id(request) -> str``: Engine.IO session ids of your own (default: 120
        #: random bits). They must be unique and unguessable; a duplicate falls back to random.
        self.generate_id: Callable[[Any], str] | None = None
        #: ``allow_request(request) -> bool`` (or awaitable), engine.io's ``allowRequest``:
        #: admits or refuses each new Engine.IO session (see :data:`..engine.AllowRequest`).
        #: Set it before the app is built.
        self.allow_request: AllowRequest | None = allow_request
        recovery = recovery_options(
            connection_state_recovery
            if connection_state_recovery is not None
            else self.options.connection_state_recovery
        )
        #: Connection state recovery (off: None): the store of sessions and logged packets,
        #: in this process; ``build_app`` puts it in Redis in a cluster (see .recovery).
        self.recovery: MemoryRecovery | RedisRecovery | None = (
            MemoryRecovery(self, recovery) if recovery is not None else None
        )
        self.of("/")
        #: Warnings about the setup (handlers on the routing core's namespace): logged at once,
        #: or, when this is a list, collected there for the caller to log (``wxio serve`` logs
        #: them after its banner).
        self.start_warnings: list[str] | None = None
        #: Told about clients, sockets, rooms and events (the admin UI); None: nobody asked.
        self.observer: Any = None
        #: The Socket.IO Admin UI's server side, when on (see .admin.instrument).
        self.admin: Any = None
        #: Reads the web session of the request that opened each connection, for
        #: ``socket.session`` (see :mod:`..websessions`); None: sockets have none. ``build_app``
        #: sets it from ``[sessions]``; set it before clients connect.
        self.sessions: SessionReader | None = None
        from .admin import admin_from_options

        admin_from_options(self, self.options)

    # -- namespaces ----------------------------------------------------------------------------

    def of(self, name: str | NamespaceMatcher) -> Namespace:
        """The namespace ``name``, created if needed. A compiled regex or a callable
        ``(name, auth) -> bool`` declares a dynamic namespace: each matching name is created on
        its first CONNECT and shares the handlers registered on the returned namespace."""
        if isinstance(name, str):
            if not name.startswith("/"):
                name = "/" + name
            nsp = self.namespaces.get(name)
            if nsp is None:
                nsp = self.namespaces[name] = Namespace(self, name)
            return nsp
        parent = Namespace(self, "<dynamic>")
        self._dynamic.append((name, parent.handlers))
        return parent

    def warn(self, message: str) -> None:
        """A warning about the setup: logged now, or kept in :attr:`start_warnings`."""
        if self.start_warnings is not None:
            self.start_warnings.append(message)
        else:
            log.warning("%s", message)

    def _find_namespace(self, name: str, auth: dict[str, Any]) -> Namespace | None:
        nsp = self.namespaces.get(name)
        if nsp is not None:
            return nsp
        for matcher, handlers in self._dynamic:
            try:
                matched = (
                    matcher.fullmatch(name) is not None
                    if isinstance(matcher, re.Pattern)
                    else bool(matcher(name, auth))
                )
            except Exception:
                log.exception("namespace matcher failed for %r", name)
                matched = False
            if matched:
                nsp = self.namespaces[name] = Namespace(self, name, handlers)
                return nsp
        return None

    # python-socketio / egg-style shortcuts on a namespace (default "/")
    @overload
    def on(self, event: str, handler: None = None, *, namespace: str = "/") -> Callable[[H], H]: ...
    @overload
    def on(self, event: str, handler: H, *, namespace: str = "/") -> H: ...
    def on(
        self, event: str, handler: H | None = None, *, namespace: str = "/"
    ) -> H | Callable[[H], H]:
        """``io.of(namespace).on(event, handler)``: see :meth:`.namespace.Namespace.on`; usable as
        a decorator."""
        return self.of(namespace).on(event, handler)

    @overload
    def route(
        self, event: str, handler: None = None, *, namespace: str = "/"
    ) -> Callable[[R], R]: ...
    @overload
    def route(self, event: str, handler: R, *, namespace: str = "/") -> R: ...
    def route(
        self, event: str, handler: R | None = None, *, namespace: str = "/"
    ) -> R | Callable[[R], R]:
        """``io.of(namespace).route(event, handler)``: an egg-socket.io style ``handler(ctx)``;
        usable as a decorator."""
        return self.of(namespace).route(event, handler)

    def use(self, middleware: ConnectMiddleware, *, namespace: str = "/") -> None:
        """``io.of(namespace).use(middleware)``: connection middleware ``mw(ctx, next)``."""
        self.of(namespace).use(middleware)

    def use_packet(self, middleware: PacketMiddleware, *, namespace: str = "/") -> None:
        """``io.of(namespace).use_packet(middleware)``: middleware around every event."""
        self.of(namespace).use_packet(middleware)

    def emit(self, event: str, *args: Any, to: str | None = None, namespace: str = "/") -> int:
        """Send to every socket of ``namespace``, or to the room ``to`` (a socket id is a room
        holding that socket), here and on every other node; encoded once. Returns how many
        sockets of this node it went to."""
        nsp = self.namespaces.get(namespace) or self.of(namespace)
        return nsp.emit_to(to, event, *args)

    # -- the cluster-wide server API (socket.io 4 with an adapter; see .remote) ----------------

    @property
    def node_id(self) -> str | None:
        """This node's id in a cluster (the routing core's backplane), else None."""
        return self.cluster.backplane.node_id if self.cluster is not None else None

    async def fetch_sockets(
        self, *, namespace: str = "/", timeout: float | None = None
    ) -> list[Socket | RemoteSocket]:
        """Every socket of ``namespace`` on every node (``io.of(ns).in_(room)`` narrows it)."""
        return await self.of(namespace).fetch_sockets(timeout)

    def sockets_join(self, *rooms: Any, namespace: str = "/") -> int:
        """Make every socket of ``namespace``, on every node, join ``rooms``."""
        return self.of(namespace).sockets_join(*rooms)

    def sockets_leave(self, *rooms: Any, namespace: str = "/") -> int:
        """Make every socket of ``namespace``, on every node, leave ``rooms``."""
        return self.of(namespace).sockets_leave(*rooms)

    def disconnect_sockets(self, close: bool = False, *, namespace: str = "/") -> int:
        """Disconnect every socket of ``namespace`` on every node (``close``: the connections)."""
        return self.of(namespace).disconnect_sockets(close)

    async def emit_with_ack(
        self,
        event: str,
        *args: Any,
        to: str | None = None,
        namespace: str = "/",
        timeout: float | None = None,
    ) -> list[AckValue]:
        """Emit to every socket of ``namespace`` (or room ``to``), on every node, and collect
        their acks (see :meth:`.namespace.BroadcastOperator.emit_with_ack`)."""
        nsp = self.of(namespace)
        op = nsp.to(to) if to is not None else nsp.to()
        return await op.emit_with_ack(event, *args, timeout=timeout)

    @overload
    def on_server_side(self, event: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def on_server_side(self, event: str, handler: H) -> H: ...
    def on_server_side(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler(*args)`` for server-side emits from the other nodes (Node's
        ``io.on(event)`` for ``serverSideEmit``); usable as a decorator. Its return value (or
        awaited value) answers :meth:`server_side_emit_with_ack`; ``NO_ACK`` answers nothing."""

        def register(fn: H) -> H:
            self.server_side_handlers[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to every *other* node's :meth:`on_server_side` handler (not this
        node's, as in Node). Arguments must be JSON-serialisable. Fire and forget."""
        if self.cluster is not None:
            self.cluster.server_side_emit(event, list(args))

    async def server_side_emit_with_ack(
        self, event: str, *args: Any, timeout: float = 5.0
    ) -> list[AckValue]:
        """Like :meth:`server_side_emit`, and wait up to ``timeout`` seconds for the answers:
        one per other node whose handler answered in time (Node's ``serverSideEmitWithAck``,
        which rejects instead when a node is missing)."""
        if self.cluster is None:
            return []
        replies: list[AckValue] = await self.cluster.server_side_request(event, list(args), timeout)
        return replies

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, referenced until done and cancelled at shutdown."""
        return self.tasks.spawn(coro)

    # -- EngineHandler -------------------------------------------------------------------------

    def on_connect(self, esock: EngineSocket) -> None:
        """EngineHandler: a new Engine.IO session (EIO=3 joins ``/`` at once)."""
        client = Client(self, esock)
        esock.context = client
        esock.receive_text = client.receive_text
        if self.sessions is not None:
            client.read_session(self.sessions)
        if self.observer is not None:
            self.observer.client_opened(esock)
        if client.protocol == 4:
            # Socket.IO v4 has an implicit main namespace, joined at once with the query as auth.
            auth = {k: v for k, v in esock.handshake.query.items() if k not in _ENGINE_KEYS}
            self.connect_namespace(client, "/", auth)
        else:
            client.start_connect_timer(self.options.connect_timeout)

    def on_message(self, esock: EngineSocket, data: str | bytes) -> None:
        """EngineHandler: a message of ``esock``'s session."""
        client: Client = esock.context
        client.on_message(data)  # (which tells the observer)

    def on_upgrade(self, esock: EngineSocket) -> None:
        if self.observer is not None:
            client: Client | None = esock.context
            if client is not None:
                self.observer.client_upgraded(client)

    def on_close(self, esock: EngineSocket, reason: str) -> None:
        """EngineHandler: ``esock``'s session closed."""
        client: Client | None = esock.context
        if client is not None:
            client.on_close(reason)
        if self.observer is not None:
            self.observer.client_closed(esock, reason)

    # -- connecting a namespace ----------------------------------------------------------------

    def connect_namespace(self, client: Client, name: str, auth: dict[str, Any]) -> None:
        """``client`` asks to join namespace ``name`` with ``auth`` (its CONNECT packet, or
        EIO=3's implicit ``/``): refused when no namespace matches, else connected once the
        session is read, recovery looked up and the connection checks passed."""
        nsp = self._find_namespace(name, auth)
        if nsp is None:
            self._refuse(client, name, ConnectionRefused("Invalid namespace"))
            return
        if client.protocol == 4:
            sid = client.esock.sid if name == "/" else f"{name}#{client.esock.sid}"
        else:
            sid = secrets.token_urlsafe(15)
        socket = Socket(nsp, client, sid, auth)
        if client.session_pending:
            client.sockets[name] = socket  # reserved while the session is read
            self.spawn(self._connect_with_session(client, socket, auth))
            return
        self._connect_socket(client, socket, auth)

    async def _connect_with_session(
        self, client: Client, socket: Socket, auth: dict[str, Any]
    ) -> None:
        """Connect ``socket`` once its connection's session is read (the read never raises)."""
        await client.wait_session()
        name = socket.nsp.name
        if client.esock.closed or client.sockets.get(name) is not socket:
            return
        del client.sockets[name]
        self._connect_socket(client, socket, auth)

    def _connect_socket(self, client: Client, socket: Socket, auth: dict[str, Any]) -> None:
        name = socket.nsp.name
        nsp = socket.nsp
        recovery = self.recovery
        if recovery is not None and nsp.recoverable and client.protocol == 5:
            socket.pid = recovery.new_pid()
            pid, offset = auth.get("pid"), auth.get("offset")
            if isinstance(pid, str) and isinstance(offset, str):
                client.sockets[name] = socket  # reserved while the session is looked up
                self.spawn(self._recover(client, socket, pid, offset))
                return
        self._admit(client, socket, skip_checks=False)

    def _admit(self, client: Client, socket: Socket, *, skip_checks: bool) -> None:
        handlers = socket.nsp.handlers
        if skip_checks or (not handlers.middleware and not handlers.authorizers):
            self._accept(client, socket)
            return
        # Reserve the name so that a second CONNECT during async checks is refused.
        client.sockets[socket.nsp.name] = socket
        self.spawn(self._run_connect_checks(client, socket))

    async def _recover(self, client: Client, socket: Socket, pid: str, offset: str) -> None:
        """Connection state recovery: look the session up, then connect the socket as it was
        (its sid, pid, data; its rooms and missed packets at :meth:`_accept`) or as a new one."""
        recovery = self.recovery
        restored = None
        if recovery is not None:
            try:
                restored = await recovery.restore(socket.nsp, pid, offset)
            except Exception:
                log.exception("%s: restoring a session failed", socket.nsp.name)
        name = socket.nsp.name
        if client.esock.closed or client.sockets.get(name) is not socket:
            if restored is not None:
                restored.cancel()
            return
        if restored is not None and restored.sid in socket.nsp.sockets:
            restored.cancel()  # that id is connected again already: start afresh
            restored = None
        if restored is not None:
            socket.restore(restored)
            log.info("%s recovered its session on %s", socket.id, name)
        del client.sockets[name]
        skip = restored is not None and recovery is not None and recovery.options.skip_middlewares
        self._admit(client, socket, skip_checks=skip)

    async def _run_connect_checks(self, client: Client, socket: Socket) -> None:
        handlers = socket.nsp.handlers
        chain = handlers.middleware
        ctx = ConnectContext(socket, self)

        def still_wanted() -> bool:
            return not client.esock.closed and client.sockets.get(socket.nsp.name) is socket

        async def run(i: int) -> None:
            if i < len(chain):
                await chain[i](ctx, lambda: run(i + 1))
                return
            if not still_wanted():
                return
            self._accept(client, socket)
            await socket.wait_disconnected()  # outer middleware resumes at disconnect

        try:
            for check in handlers.authorizers:
                result = check(socket)
                if inspect.isawaitable(result):
                    await result
            if not chain:
                if still_wanted():
                    self._accept(client, socket)
                return
            await run(0)
        except ConnectionRefused as exc:
            self._refused(client, socket, exc)
        except Exception:
            # A bug, or a database that is down: the details are for the log, not for a client
            # that may not even have authenticated.
            log.exception(
                "%s: connection check failed for %s (%s); refused with %r",
                socket.nsp.name,
                socket.id,
                client.esock.handshake.address,
                SERVER_ERROR,
            )
            self._refused(client, socket, ConnectionRefused(SERVER_ERROR))
        finally:
            if not socket.connected and not socket.was_connected:
                unused = socket.take_restored()
                if unused is not None:
                    unused.cancel()
                # Checks may have set things up (the routing core registers the client): the
                # socket never connected, so no disconnect will come to undo them.
                socket.nsp.emit_lifecycle("refused", socket)

    def _refused(self, client: Client, socket: Socket, exc: ConnectionRefused) -> None:
        socket.refuse()
        if client.sockets.get(socket.nsp.name) is socket and not socket.connected:
            del client.sockets[socket.nsp.name]
            self._refuse(client, socket.nsp.name, exc)

    def _accept(self, client: Client, socket: Socket) -> None:
        nsp = socket.nsp
        client.sockets[nsp.name] = socket
        nsp.sockets[socket.id] = socket
        socket.accept()
        restored = socket.take_restored()
        if restored is not None:
            socket.join(*restored.rooms)
            missed = restored.finish()  # (from here on, the socket is in its rooms again)
        client.stop_connect_timer()
        data: dict[str, Any] | None = None
        if client.protocol == 5:
            data = {"sid": socket.id}
            if socket.pid is not None:
                data["pid"] = socket.pid
        client.send_packet(Packet(PacketType.CONNECT, nsp.name, data))
        if restored is not None:
            esock = client.esock
            for first, attachments in missed:
                if attachments or not isinstance(first, str):
                    esock.send_many([first, *attachments])
                else:
                    esock.send(first)
        log.info(
            "%s joined %s (EIO=%d, %s)",
            socket.id,
            nsp.name,
            client.esock.eio,
            client.esock.transport,
        )
        # Like the reference's "connection" event, handlers run once the CONNECT reply is on its
        # way, so what they emit goes out in a later write than the reply.
        asyncio.get_running_loop().call_soon(self._connected, socket)

    def _connected(self, socket: Socket) -> None:
        if socket.connected:
            if self.observer is not None:
                self.observer.socket_connected(socket)
            socket.nsp.emit_lifecycle("connect", socket)

    def _refuse(self, client: Client, name: str, exc: ConnectionRefused) -> None:
        if client.protocol == 5:
            data: Any = {"message": exc.message}
            if exc.data is not None:
                data["data"] = exc.data
        else:
            # socket.io 2.x servers sent ``err.data`` when a middleware set it: 2.x clients get
            # the same ``{reason, message}`` object as 4.x clients' ``err.data``.
            data = exc.data if exc.data is not None else exc.message
        client.send_packet(Packet(PacketType.CONNECT_ERROR, name, data))

    async def shutdown(self) -> None:
        """Cancel the background tasks (handlers still waiting, connection checks), once
        connection state recovery has kept the sessions of the sockets just closed."""
        if self.recovery is not None:
            await self.recovery.drain()  # sessions of the sockets just closed
        self.tasks.cancel()
        if self.sessions is not None:
            await self.sessions.close()
