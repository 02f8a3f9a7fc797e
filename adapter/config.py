"""Server configuration: one frozen dataclass per layer, built once from TOML and arguments."""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..protocol.engineio.session import EngineConfig

#: The sans-IO session's defaults are the one source of the heartbeat and payload defaults.
_SESSION = EngineConfig()


#: ``[sessions] storage``: "" is off.
SESSION_STORAGES = ("", "cookie", "redis", "embedded", "egg")


class ConfigError(Exception):
    """The configuration file or arguments are invalid; the message says which key."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Engine.IO options, named and defaulted as in the reference server. The first four after
    ``path`` are the session's own (:class:`~wxio.protocol.engineio.session.EngineConfig`,
    which holds their defaults); :meth:`session_config` hands them over."""

    path: str = "/socket.io/"
    ping_interval: float = _SESSION.ping_interval
    ping_timeout: float = _SESSION.ping_timeout
    upgrade_timeout: float = _SESSION.upgrade_timeout
    max_payload: int = _SESSION.max_payload
    #: EIO versions served on this path.
    versions: tuple[int, ...] = (3, 4)
    #: "*" for any origin, a list of origins, or an empty list for no CORS headers at all.
    cors_origins: tuple[str, ...] | str = ()
    #: gzip/deflate polling responses at least this large when the client accepts it (0: off).
    compress_threshold: int = 1024
    #: permessage-deflate on WebSocket when the client offers it (off by default, as in the
    #: reference server); neither side keeps a compression context between messages.
    ws_compression: bool = False
    #: Outbound bytes a session may have queued before it counts as a slow reader.
    max_buffered_bytes: int = 4 * 1024 * 1024
    #: Outbound packets likewise.
    max_buffered_packets: int = 10_000
    #: Seconds a slow reader may stay over the bounds before it is disconnected.
    slow_grace: float = 5.0
    #: Packets in one polling response at most (0: no cap); the rest wait for the next poll.
    #: python-engineio clients drop the connection on a payload of more than 16 packets.
    max_polling_packets: int = 16

    def session_config(self) -> EngineConfig:
        """The part of these options the sans-IO session takes."""
        return EngineConfig(**{name: getattr(self, name) for name in EngineConfig._fields})


@dataclass(frozen=True, slots=True)
class SocketIOOptions:
    #: Seconds an EIO=4 client has to connect to a namespace before the session is closed.
    connect_timeout: float = 45.0
    #: Seconds a server-side emit waits for its ack by default.
    ack_timeout: float = 30.0
    #: "default" (JSON text, socket.io-parser) or "msgpack" (socket.io-msgpack-parser; needs
    #: ``pip install 'wxio[msgpack]'``). Every client of the server must use the same one.
    parser: str = "default"
    #: Connection state recovery (socket.io 4.6+): off by default; ``true`` or a table
    #: ``{max_disconnection_duration = 120, skip_middlewares = true}`` (seconds) turns it on.
    connection_state_recovery: Any = None
    #: The Socket.IO Admin UI (@socket.io/admin-ui): its /admin namespace, off by default.
    admin_ui: bool = False
    #: Basic auth of the admin namespace: the username, and the name of the environment variable
    #: that holds the password (or its bcrypt hash, which needs the bcrypt package).
    admin_username: str = ""
    admin_password_env: str = ""
    #: false: no authentication at all (a trusted network only).
    admin_auth: bool = True
    #: "development" (sockets, rooms and events live) or "production" (server stats only).
    admin_mode: str = "development"
    #: No join/leave/disconnect/emit from the UI.
    admin_readonly: bool = False
    #: The UI's built files (the npm package's ui/dist), served at /admin/ ("" = not served).
    admin_ui_dir: str = ""


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """``[sessions]``: the web session of the request that opened a connection, read once at
    connect (``socket.session``; see adapter/websessions.py and docs/guide.md)."""

    #: "" (off), "cookie" (aiohttp-session's encrypted cookie), "redis" (aiohttp-session's
    #: RedisStorage), "embedded" (the embedded store, one node) or "egg" (koa-session's and
    #: egg-session's signed cookie).
    storage: str = ""
    #: The session cookie's name; "" takes the storage's usual one (AIOHTTP_SESSION, EGG_SESS).
    cookie_name: str = ""
    #: The environment variable holding the secret: the Fernet key ("cookie") or the keygrip
    #: keys, comma-separated as egg's ``config.keys`` ("egg"). Never in the file, never logged.
    secret_env: str = "WXIO_SESSION_SECRET"
    #: Seconds a session lives after it was written (0: no limit), as the web app's max_age.
    max_age: int = 0
    #: "redis": the server ("" takes WXIO_REDIS_URL or ``[cluster] redis_url``).
    redis_url: str = ""
    #: "egg": the signature's HMAC, "sha256" (egg-cookies) or "sha1" (koa, the cookies package).
    algorithm: str = "sha256"
    #: Seconds to read a session at most; past it (or on any failure) the connection has none.
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    engine: EngineOptions = field(default_factory=EngineOptions)
    socketio: SocketIOOptions = field(default_factory=SocketIOOptions)
    sessions: SessionOptions = field(default_factory=SessionOptions)
    #: Seconds to drain on SIGTERM/SIGINT before connections are cut.
    shutdown_grace: float = 5.0
    #: Seconds a client has to send complete HTTP request headers.
    header_timeout: float = 10.0
    #: Connections open at once on this node (every listener, every kind: WebSocket, polling,
    #: plain HTTP); one more is answered 503. 0: no limit.
    max_connections: int = 0
    #: The same for the connections of one client address (the TCP peer's: a proxy's address
    #: when there is one, see docs/operations.md). 0: no limit.
    max_connections_per_address: int = 0
    #: The front door reads request heads and answers the WebSocket upgrades it can from the
    #: head alone, without aiohttp (lighter and faster; see docs/operations.md). False: aiohttp
    #: reads every head; the upgrades it hands on are the same WebSocket connections.
    native_websocket: bool = True
    log_level: str = "INFO"
    #: "text" (one readable line per record) or "json" (one JSON object per line).
    log_format: str = "text"
    #: PEM certificate chain and private key: serve https:// and wss:// directly (TLS >= 1.2).
    certfile: str = ""
    keyfile: str = ""
    #: Serve Prometheus metrics at this path ("" = off: the labels name your apps).
    metrics_path: str = ""
    #: The dashboard at "/": None = on in demo mode only; true needs the two credentials below
    #: (HTTP basic auth; the password may come from WXIO_DASHBOARD_PASSWORD instead).
    dashboard: bool | None = None
    dashboard_user: str = ""
    dashboard_password: str = ""
    #: The raw TOML, for layers configured by later sections ([apps], [cluster]...).
    extra: dict[str, Any] = field(default_factory=dict)


def _section(cls: type, data: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"[{name}]: unknown key(s) {', '.join(sorted(unknown))}")
    values = dict(data)
    for key in ("versions", "cors_origins"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{name}]: {exc}") from None


def load(path: str | Path | None) -> ServerConfig:
    """Read a TOML file (or nothing) into a :class:`ServerConfig`."""
    if path is None:
        return ServerConfig()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    server = dict(data.get("server", {}))
    engine = _section(EngineOptions, data.get("engine", {}), "engine")
    sio = _section(SocketIOOptions, data.get("socketio", {}), "socketio")
    sessions: SessionOptions = _section(SessionOptions, data.get("sessions", {}), "sessions")
    if sessions.storage not in SESSION_STORAGES:
        names = ", ".join(f'"{name}"' for name in SESSION_STORAGES)
        raise ConfigError(f"[sessions]: storage must be one of {names}")
    if sessions.algorithm not in ("sha256", "sha1"):
        raise ConfigError('[sessions]: algorithm must be "sha256" or "sha1"')
    own = ("server", "engine", "socketio", "sessions")
    extra = {k: v for k, v in data.items() if k not in own}
    base: ServerConfig = _section(ServerConfig, server, "server")
    if base.log_format not in ("text", "json"):
        raise ConfigError('[server]: log_format must be "text" or "json"')
    for name in ("max_connections", "max_connections_per_address"):
        value = getattr(base, name)
        if type(value) is not int or value < 0:
            raise ConfigError(f"[server]: {name} must be a whole number, 0 for no limit")
    return replace(base, engine=engine, socketio=sio, sessions=sessions, extra=extra)


#: A node id names the node's Redis keys and channel, starts its Engine.IO session ids and is
#: written in every log line: URL-, key- and log-safe characters only.
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def node_id(
    config: ServerConfig, flag: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """This process's node id: ``--node-id`` (``flag``), else ``WXIO_NODE_ID``, else
    ``[cluster] node_id``, else random. A ``--workers`` process (``WXIO_WORKER=<i>``, set by its
    parent, which also hands every worker the one base) appends ``-<i>``."""
    env = os.environ if environ is None else environ
    table = config.extra.get("cluster", {})
    sources = (
        ("--node-id", flag),
        ("WXIO_NODE_ID", env.get("WXIO_NODE_ID")),
        ("[cluster] node_id", table.get("node_id") if isinstance(table, dict) else None),
    )
    base = secrets.token_hex(4)
    for source, value in sources:
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not _NODE_ID.fullmatch(value):
            raise ConfigError(
                f"{source}: {value!r} is not a node id (1 to 63 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit)"
            )
        base = value
        break
    worker = env.get("WXIO_WORKER")
    return base if worker is None else f"{base}-{worker}"
