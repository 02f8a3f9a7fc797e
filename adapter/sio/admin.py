"""The server side of the Socket.IO Admin UI (``@socket.io/admin-ui``'s ``instrument(io, opts)``,
0.5): the ``/admin`` namespace, its authentication, the events the UI listens to, and the
operator commands it sends. Opt-in (``[socketio] admin_ui = true``, or :func:`instrument`).

Events sent to the admin sockets (every node's, in a cluster):

- ``session`` (basic auth: a session id the UI reconnects with; in a cluster kept in Redis as
  ``P:admin:s:<id>`` for 24 h, so any node takes it), ``config``
  (``{supportedFeatures}``), ``all_sockets`` (development mode: every socket of every namespace,
  from every node, via ``fetch_sockets``);
- ``server_stats`` every 2 s per node (``serverId``, ``hostname``, ``pid``, ``uptime``,
  ``clientsCount``, ``pollingClientsCount``, ``aggregatedEvents``, ``namespaces``);
- development mode: ``socket_connected``, ``socket_disconnected``, ``room_joined``,
  ``room_left``, ``event_received``, ``event_sent``, ``socket_updated`` (transport upgrades).

Commands from the UI (unless ``readonly``): ``emit``, ``join``, ``leave``, ``_disconnect``, each
on the sockets of a namespace (optionally in a room or with an id), on every node.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import socket as _socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, SocketIOOptions
from .context import ConnectionRefused

if TYPE_CHECKING:
    from ..engine import EngineSocket
    from .server import SocketIOServer
    from .socket import Socket

log = logging.getLogger("wxio.admin")

__all__ = ["AdminUI", "instrument", "admin_from_options", "js_date"]

#: Seconds between two ``server_stats`` of a node (the package's interval).
STATS_INTERVAL = 2.0
#: Seconds an admin session id stays valid (the package's RedisStore default).
SESSION_TTL = 86400.0
_FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]


def js_date(at: float | None = None) -> str:
    """A date as JavaScript's ``JSON.stringify(new Date())`` writes it."""
    at = time.time() if at is None else at
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def _password_check(secret: str) -> Callable[[str], bool]:
    """A bcrypt hash (``$2a$``/``$2b$``/``$2y$``, as the Node package wants; needs the
    ``bcrypt`` package) or a plain password, compared in constant time."""
    if secret.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            import bcrypt  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ConfigError(
                "[socketio] admin password: a bcrypt hash needs the bcrypt package "
                "(pip install 'wxio[admin]'), or give the password itself"
            ) from None
        hashed = secret.encode()

        def check_hash(given: str) -> bool:
            return bool(bcrypt.checkpw(given.encode(), hashed))

        return check_hash
    expected = secret.encode()

    def check_plain(given: str) -> bool:
        return hmac.compare_digest(given.encode(), expected)

    return check_plain


class AdminUI:
    """See the module docstring; made by :func:`instrument`."""

    def __init__(
        self,
        io: SocketIOServer,
        *,
        auth: dict[str, str] | bool,
        namespace: str = "/admin",
        readonly: bool = False,
        server_id: str | None = None,
        mode: str = "development",
        ui_dir: str | None = None,
    ) -> None:
        if mode not in ("development", "production"):
            raise ConfigError(f"admin UI mode: {mode!r} is not development or production")
        self.io = io
        self.mode = mode
        self.development = mode == "development"
        self.readonly = readonly
        self.server_id = server_id
        self.ui_dir = Path(ui_dir).resolve() if ui_dir else None
        if self.ui_dir is not None and not (self.ui_dir / "index.html").is_file():
            raise ConfigError(f"[socketio] admin_ui_dir: no index.html in {self.ui_dir}")
        self.features = ([] if readonly else list(_FEATURES)) + ["AGGREGATED_EVENTS"]
        if self.development:
            self.features.append("ALL_EVENTS")
        self.nsp = io.of(namespace)
        self.nsp.recoverable = False  # stats every 2 s need no log
        #: session id -> expiry (monotonic)
        self._sessions: dict[str, float] = {}
        self._new_session: dict[Socket, str] = {}
        self._buffer: dict[tuple[int, str, str | None], dict[str, Any]] = {}
        self._clients: dict[EngineSocket, None] = {}
        self._started = time.monotonic()
        self._stats: asyncio.Task[None] | None = None
        if auth is False:
            log.warning("admin UI: authentication is disabled")
            self._username: str | None = None
            self._check: Callable[[str], bool] | None = None
        elif isinstance(auth, dict) and auth.get("type") == "basic":
            username, password = auth.get("username"), auth.get("password")
            if not isinstance(username, str) or not username or not isinstance(password, str):
                raise ConfigError("admin UI auth: a username and a password (or bcrypt hash)")
            if not password:
                raise ConfigError("admin UI auth: the password is empty")
            self._username = username
            self._check = _password_check(password)
            self.nsp.use(self._authenticate)
        else:
            raise ConfigError('admin UI auth: {"type": "basic", "username": ..., "password": ...}')
        self.nsp.on("connect", self._admin_connected)
        for event, handler in self._commands().items():
            self.nsp.on(event, handler)
        io.observer = self

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._stats is None:
            self._stats = asyncio.get_running_loop().create_task(self._emit_stats_forever())

    async def stop(self) -> None:
        if self._stats is not None:
            self._stats.cancel()
            try:
                await self._stats
            except (asyncio.CancelledError, Exception):
                pass
            self._stats = None

    async def _emit_stats_forever(self) -> None:
        while True:
            try:
                self.emit_stats()
            except Exception:
                log.exception("admin UI: server_stats failed")
            await asyncio.sleep(STATS_INTERVAL)

    def stats(self) -> dict[str, Any]:
        hostname = _socket.gethostname()
        events = list(self._buffer.values())
        self._buffer.clear()
        return {
            "serverId": self.server_id or self.io.node_id or hostname,
            "hostname": hostname,
            "pid": os.getpid(),
            "uptime": time.monotonic() - self._started,
            "clientsCount": len(self._clients),
            "pollingClientsCount": sum(1 for e in self._clients if e.transport == "polling"),
            "aggregatedEvents": events,
            "namespaces": [
                {"name": name, "socketsCount": len(nsp.sockets)}
                for name, nsp in self.io.namespaces.items()
            ],
        }

    def emit_stats(self) -> None:
        self.nsp.emit("server_stats", self.stats())

    # -- the admin namespace -------------------------------------------------------------------

    async def _authenticate(self, ctx: Any, next: Callable[[], Any]) -> None:
        auth = ctx.auth if isinstance(ctx.auth, dict) else {}
        session = auth.get("sessionId")
        now = time.monotonic()
        if (
            isinstance(session, str)
            and 0 < len(session) <= 64
            and (self._sessions.get(session, 0.0) > now or await self._shared_session(session))
        ):
            await next()
            return
        username, password = auth.get("username"), auth.get("password")
        check = self._check
        if (
            check is not None
            and self._username is not None
            and isinstance(username, str)
            and isinstance(password, str)
            and hmac.compare_digest(username.encode(), self._username.encode())
            and await asyncio.to_thread(check, password)
        ):
            for old in [s for s, expiry in self._sessions.items() if expiry <= now]:
                del self._sessions[old]
            session = secrets.token_hex(16)
            self._sessions[session] = now + SESSION_TTL
            await self._share_session(session)
            self._new_session[ctx.socket] = session
            await next()
            return
        raise ConnectionRefused("invalid credentials")

    def keep_sessions(self, table: Any) -> None:
        """One node on the embedded store: login sessions outlive a restart (``table`` is a
        :class:`~wxio.adapter.embedded.state.SessionTable`)."""
        if table is None:
            return
        self._table = table
        wall, now = time.time(), time.monotonic()
        for session, _, expires in table.load():
            self._sessions[session] = now + (expires - wall)

    _table: Any = None

    def _redis(self) -> Any:
        """The cluster's Redis backplane, if any: admin sessions are shared through it (the
        npm package's RedisStore), so the UI reconnects to any node without a new login."""
        cluster = self.io.cluster
        backplane = getattr(cluster, "backplane", None)
        return backplane if hasattr(backplane, "redis") else None

    async def _share_session(self, session: str) -> None:
        if self._table is not None:
            self._table.put(session, {}, time.time() + SESSION_TTL)
        bp = self._redis()
        if bp is not None:
            try:
                await bp.call(bp.redis.set(bp.key("admin", "s", session), 1, ex=int(SESSION_TTL)))
            except Exception as exc:
                log.warning("admin UI: session not shared with the other nodes: %s", exc)

    async def _shared_session(self, session: str) -> bool:
        bp = self._redis()
        if bp is None:
            return False
        try:
            return bool(await bp.call(bp.redis.exists(bp.key("admin", "s", session))))
        except Exception as exc:
            log.warning("admin UI: shared sessions unavailable: %s", exc)
            return False

    async def _admin_connected(self, socket: Socket) -> None:
        session = self._new_session.pop(socket, None)
        if session is not None:
            socket.emit("session", session)
        socket.emit("config", {"supportedFeatures": self.features})
        if self.development:
            socket.emit("all_sockets", await self.all_sockets())

    async def all_sockets(self) -> list[dict[str, Any]]:
        from .remote import RemoteSocket

        found: list[dict[str, Any]] = []
        for name, nsp in list(self.io.namespaces.items()):
            for s in await nsp.fetch_sockets(timeout=3):
                if isinstance(s, RemoteSocket):
                    found.append(_serialize_remote(s, name))
                else:
                    found.append(self.serialize(s))
        return found

    def _commands(self) -> dict[str, Callable[..., Any]]:
        if self.readonly:
            return {}
        io = self.io

        def target(nsp: Any, filter_: Any) -> Any:
            namespace = io.namespaces.get(nsp) if isinstance(nsp, str) else None
            if namespace is None:
                return None
            if isinstance(filter_, str) and filter_:
                return namespace.in_(filter_)
            return namespace.to()

        def emit(
            socket: Socket, nsp: Any = None, filter_: Any = None, ev: Any = None, *args: Any
        ) -> Any:
            op = target(nsp, filter_)
            if op is not None and isinstance(ev, str) and ev:
                op.emit(ev, *args)
            return _NOTHING

        def join(socket: Socket, nsp: Any = None, room: Any = None, filter_: Any = None) -> Any:
            op = target(nsp, filter_)
            if op is not None and isinstance(room, str) and room:
                op.sockets_join(room)
            return _NOTHING

        def leave(socket: Socket, nsp: Any = None, room: Any = None, filter_: Any = None) -> Any:
            op = target(nsp, filter_)
            if op is not None and isinstance(room, str) and room:
                op.sockets_leave(room)
            return _NOTHING

        def disconnect(
            socket: Socket, nsp: Any = None, close: Any = False, filter_: Any = None
        ) -> Any:
            op = target(nsp, filter_)
            if op is not None:
                op.disconnect_sockets(close is True)
            return _NOTHING

        return {"emit": emit, "join": join, "leave": leave, "_disconnect": disconnect}

    # -- what the server tells the observer (SocketIOServer.observer) ---------------------------

    def _count(self, kind: str, sub: str | None = None, n: int = 1) -> None:
        second = int(time.time())
        key = (second, kind, sub)
        entry = self._buffer.get(key)
        if entry is None:
            entry = {"timestamp": second * 1000, "type": kind, "count": 0}
            if sub is not None:
                entry["subType"] = sub
            self._buffer[key] = entry
        entry["count"] += n

    def client_opened(self, esock: EngineSocket) -> None:
        self._clients[esock] = None
        self._count("rawConnection")

    def client_upgraded(self, client: Any) -> None:
        transport = client.esock.transport
        for socket in list(client.sockets.values()):
            admin = socket.data.get("_admin")
            if isinstance(admin, dict):
                admin["transport"] = transport
            if self.development and socket.connected:
                self.nsp.emit(
                    "socket_updated",
                    {"id": socket.id, "nsp": socket.nsp.name, "transport": transport},
                )

    def client_closed(self, esock: EngineSocket, reason: str) -> None:
        self._clients.pop(esock, None)
        self._count("rawDisconnection", reason)

    def message_in(self, data: str | bytes) -> None:
        self._count("packetsIn")
        self._count("bytesIn", None, len(data.encode()) if isinstance(data, str) else len(data))

    def socket_connected(self, socket: Socket) -> None:
        # What another node's admin sockets see of it (fetch_sockets carries socket.data), as in
        # the npm package; left out of "data" when serialized.
        socket.data["_admin"] = {
            "clientId": socket.client.esock.sid[:12],
            "transport": socket.client.esock.transport,
        }
        self._count("connection", socket.nsp.name)
        if self.development:
            self.nsp.emit("socket_connected", self.serialize(socket), js_date())

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        self._count("disconnection", socket.nsp.name)
        if self.development:
            self.nsp.emit("socket_disconnected", socket.nsp.name, socket.id, reason, js_date())

    def room_joined(self, socket: Socket, room: str) -> None:
        if self.development:
            self.nsp.emit("room_joined", socket.nsp.name, room, socket.id, js_date())

    def room_left(self, socket: Socket, room: str) -> None:
        if self.development:
            self.nsp.emit("room_left", socket.nsp.name, room, socket.id, js_date())

    def event_received(self, socket: Socket, event: str, args: list[Any]) -> None:
        self._count("event_received", socket.nsp.name)
        if self.development and socket.nsp is not self.nsp:
            self.nsp.emit("event_received", socket.nsp.name, socket.id, [event, *args], js_date())

    def event_sent(self, socket: Socket, event: str, args: tuple[Any, ...]) -> None:
        self._count("event_sent", socket.nsp.name)
        if self.development and socket.nsp is not self.nsp:
            self.nsp.emit("event_sent", socket.nsp.name, socket.id, [event, *args], js_date())

    def serialize(self, socket: Socket) -> dict[str, Any]:
        hs = socket.handshake
        headers = hs.headers
        esock = socket.client.esock
        from .remote import describe

        data = describe(socket)["data"]
        data.pop("_admin", None)
        return {
            "id": socket.id,
            "clientId": esock.sid[:12],
            "transport": esock.transport,
            "nsp": socket.nsp.name,
            "data": data,
            "handshake": _handshake(hs, headers),
            "rooms": sorted(socket.rooms),
        }


#: What the commands' handlers return (the UI asks for no ack).
_NOTHING: Any = None


def _handshake(hs: Any, headers: Any) -> dict[str, Any]:
    address = headers.get("cf-connecting-ip") or headers.get("x-forwarded-for") or hs["address"]
    return {
        "address": address,
        "headers": dict(headers),
        "query": hs["query"],
        "issued": hs["issued"],
        "secure": hs["secure"],
        "time": hs["time"],
        "url": hs["url"],
        "xdomain": hs["xdomain"],
    }


def _serialize_remote(s: Any, nsp: str) -> dict[str, Any]:
    data = dict(s.data)
    admin = data.pop("_admin", None) or {}
    hs = s.handshake or {}
    headers = hs.get("headers") or {}
    return {
        "id": s.id,
        "clientId": admin.get("clientId"),
        "transport": admin.get("transport"),
        "nsp": nsp,
        "data": data,
        "handshake": {
            "address": headers.get("cf-connecting-ip")
            or headers.get("x-forwarded-for")
            or hs.get("address"),
            "headers": headers,
            "query": hs.get("query"),
            "issued": hs.get("issued"),
            "secure": hs.get("secure"),
            "time": hs.get("time"),
            "url": hs.get("url"),
            "xdomain": hs.get("xdomain"),
        },
        "rooms": sorted(s.rooms),
    }


def instrument(
    io: SocketIOServer,
    *,
    auth: dict[str, str] | bool,
    namespace: str = "/admin",
    readonly: bool = False,
    server_id: str | None = None,
    mode: str = "development",
    ui_dir: str | None = None,
) -> AdminUI:
    """``instrument(io, {auth, namespaceName, readonly, serverId, mode})`` of the npm package:
    ``auth`` is ``{"type": "basic", "username": ..., "password": ...}`` (a bcrypt hash, as in
    Node, or the password itself, compared in constant time) or ``False``. ``ui_dir``: the
    UI's built files (``@socket.io/admin-ui``'s ``ui/dist``), served at ``/admin/``."""
    admin = AdminUI(
        io,
        auth=auth,
        namespace=namespace,
        readonly=readonly,
        server_id=server_id,
        mode=mode,
        ui_dir=ui_dir,
    )
    io.admin = admin
    return admin


def admin_from_options(io: SocketIOServer, options: SocketIOOptions) -> AdminUI | None:
    """``[socketio] admin_ui = true`` with ``admin_username`` and ``admin_password_env`` (the
    name of an environment variable holding the password or a bcrypt hash), or
    ``admin_auth = false``; ``admin_ui_dir`` serves the UI."""
    if not options.admin_ui:
        return None
    auth: dict[str, str] | bool
    if not options.admin_auth:
        auth = False
    else:
        if not options.admin_username or not options.admin_password_env:
            raise ConfigError(
                "[socketio] admin_ui needs admin_username and admin_password_env "
                "(or admin_auth = false)"
            )
        password = os.environ.get(options.admin_password_env, "")
        if not password:
            raise ConfigError(
                f"[socketio] admin_password_env: ${options.admin_password_env} is not set"
            )
        auth = {"type": "basic", "username": options.admin_username, "password": password}
    return instrument(
        io,
        auth=auth,
        readonly=options.admin_readonly,
        mode=options.admin_mode,
        ui_dir=options.admin_ui_dir or None,
    )
