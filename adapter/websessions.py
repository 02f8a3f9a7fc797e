"""Web sessions at the handshake: the session of the HTTP request that opened a connection (its
cookie), read once when the connection opens, for connection middleware and handlers as
``ctx.session`` and ``socket.session``.

It is a snapshot, as egg-socket.io's ``ctx.session`` is: read from the cookies of the first
request of the Engine.IO session (every namespace of the connection shares it), read-only, and
never written back. The web app changes a session over HTTP; a connection sees the change when
it next connects.

Where sessions come from (:class:`SessionReader`):

- any aiohttp-session storage (``EncryptedCookieStorage``, ``RedisStorage``...), configured as
  the web app's (the same secret, cookie name and Redis server);
- :class:`~.embedded.websessions.EmbeddedStorage`: an aiohttp-session storage in the embedded
  store, for a web app served by the same process (one node);
- :class:`KoaCookieStore`: koa-session's signed cookie, what egg-session writes with
  ``encrypt: false`` (JSON only; the signature is checked as keygrip does).

Reading never fails a connection: no cookie, a cookie that does not verify or decode, an expired
session, a storage that fails or is slower than ``timeout``: the connection gets an empty
session (``socket.session.new`` is True).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast

from ..protocol import jsonutil
from ..protocol.errors import RemoteProtocolError
from .config import ConfigError, ServerConfig

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp_session import AbstractStorage

log = logging.getLogger("wxio.sessions")

__all__ = [
    "WebSession",
    "NO_SESSION",
    "SessionStore",
    "SessionReader",
    "AiohttpStore",
    "KoaCookieStore",
    "parse_cookie_header",
    "sessions_from_config",
]

#: (name, value) pairs of a Cookie header, in order (a name may repeat).
Cookies = list[tuple[str, str]]


class WebSession(dict[str, Any]):
    """``socket.session``: the session's data as a read-only dict (JSON-serialisable as it is:
    ``socket.emit("me", socket.session)``). Changing it raises ``TypeError``: nothing a socket
    does is written back (``dict(socket.session)`` is a copy to change).

    ``new`` is True when the request carried no valid session (no cookie, a bad signature, an
    expired or unknown session, a failed read); ``identity`` is the storage's key of a session
    kept server-side (Redis, the embedded store), None for a cookie session; ``created`` is when
    the session was last written (seconds since the epoch), when the storage keeps it."""

    __slots__ = ("new", "identity", "created")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        new: bool = False,
        identity: str | None = None,
        created: int | None = None,
    ) -> None:
        super().__init__(data or {})
        self.new = new
        self.identity = identity
        self.created = created

    def __repr__(self) -> str:
        return f"WebSession({dict.__repr__(self)}, new={self.new})"

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle would otherwise fill the copy through __setitem__.
        return (_rebuild, (dict(self), self.new, self.identity, self.created))

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            "socket.session is read-only: the web app changes the session, over HTTP "
            "(dict(socket.session) is a copy)"
        )

    __setitem__ = _read_only
    __delitem__ = _read_only
    __ior__ = _read_only
    clear = _read_only
    pop = _read_only
    popitem = _read_only
    setdefault = _read_only
    update = _read_only


def _rebuild(
    data: dict[str, Any], new: bool, identity: str | None, created: int | None
) -> WebSession:
    return WebSession(data, new=new, identity=identity, created=created)


#: The session of a connection without one (sessions off, or none found).
NO_SESSION = WebSession(new=True)


_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))")


def parse_cookie_header(header: str) -> Cookies:
    """The (name, value) pairs of a ``Cookie`` header, in order. A value in double quotes (as
    aiohttp writes a value with ``=`` or spaces) is unquoted as aiohttp and Python read it."""
    pairs: Cookies = []
    for part in header.split(";"):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' == value[-1]:
            value = _ESCAPE.sub(lambda m: chr(int(m[1], 8)) if m[1] else m[2], value[1:-1])
        pairs.append((name, value))
    return pairs


def cookie_header(headers: Iterable[tuple[str, str]]) -> str:
    """Every ``Cookie`` header of a request, joined as one (HTTP/2 clients may send several)."""
    return "; ".join(value for name, value in headers if name.lower() == "cookie")


class SessionStore(Protocol):
    """Where :class:`SessionReader` reads sessions: the session of a request's cookies. May
    raise: the reader logs it and gives the connection no session."""

    async def load(self, cookies: Cookies) -> WebSession: ...


class _CookieRequest:
    """The part of an aiohttp request that aiohttp-session's storages read: its cookies. (The
    WebSocket upgrades served below aiohttp have no :class:`aiohttp.web.Request`.)"""

    __slots__ = ("cookies",)

    def __init__(self, cookies: Mapping[str, str]) -> None:
        self.cookies = cookies


class AiohttpStore:
    """An aiohttp-session storage as a :class:`SessionStore`. The storage must read nothing of
    the request but its cookies (aiohttp-session's own storages do not)."""

    def __init__(self, storage: AbstractStorage) -> None:
        self.storage = storage

    async def load(self, cookies: Cookies) -> WebSession:
        # dict(): the last of a repeated name, as aiohttp's request.cookies
        request = cast("web.Request", _CookieRequest(dict(cookies)))
        session = await self.storage.load_session(request)
        if session.new or session.empty:
            return NO_SESSION
        identity = session.identity
        return WebSession(
            session,
            identity=None if identity is None else str(identity),
            created=session.created,
        )


def _keygrip_sign(data: bytes, key: bytes, algorithm: str) -> str:
    digest = hmac.new(key, data, algorithm).digest()
    return base64.b64encode(digest).decode("ascii").replace("/", "_").replace("+", "-").rstrip("=")


class KoaCookieStore:
    """koa-session's cookie session: the cookie ``cookie_name`` holds the base64 of the session
    as JSON, and ``<cookie_name>.sig`` its keygrip signature, the HMAC of ``name=value`` with one
    of ``keys`` (the first signs; the others are older keys still accepted), base64url without
    padding. egg-session writes it with egg-cookies (HMAC-SHA256, ``EGG_SESS``) when its
    ``encrypt`` option is false; koa with the cookies package (HMAC-SHA1, ``koa.sess``).

    A cookie without a valid signature is no session; so is one whose ``_expire`` (ms since the
    epoch) has passed. Keys starting with ``_`` (koa-session's own) are left out, as koa-session's
    ``session.toJSON()`` does."""

    def __init__(
        self,
        keys: Sequence[str | bytes],
        *,
        cookie_name: str = "EGG_SESS",
        algorithm: str = "sha256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys or not all(keys):
            raise ValueError("keygrip needs at least one key, none empty")
        if algorithm not in ("sha256", "sha1"):
            raise ValueError('algorithm must be "sha256" or "sha1"')
        self.keys = [key.encode("utf-8") if isinstance(key, str) else bytes(key) for key in keys]
        self.cookie_name = cookie_name
        self.algorithm = algorithm
        self.clock = clock

    def sign(self, value: str) -> str:
        """The ``.sig`` cookie of ``value`` (with the first key), as keygrip makes it."""
        data = f"{self.cookie_name}={value}".encode()
        return _keygrip_sign(data, self.keys[0], self.algorithm)

    def _verified(self, value: str, sig: str) -> bool:
        data = f"{self.cookie_name}={value}".encode()
        given = sig.encode("utf-8", "replace")
        # Every key is tried (no early exit): the time taken does not tell which one matched.
        matched = False
        for key in self.keys:
            expected = _keygrip_sign(data, key, self.algorithm).encode("ascii")
            matched |= hmac.compare_digest(expected, given)
        return matched

    async def load(self, cookies: Cookies) -> WebSession:
        # The first of a repeated name, as the cookies package reads them.
        found: dict[str, str] = {}
        for name, given in cookies:
            found.setdefault(name, given)
        value = found.get(self.cookie_name)
        sig = found.get(self.cookie_name + ".sig")
        if not value or sig is None or not self._verified(value, sig):
            return NO_SESSION
        try:
            # Node's Buffer.from(s, "base64") takes both alphabets, padding or not.
            text = value.replace("-", "+").replace("_", "/")
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            body = jsonutil.loads(raw)
        except (binascii.Error, ValueError, RemoteProtocolError):
            return NO_SESSION
        if not isinstance(body, dict):
            return NO_SESSION
        expire = body.get("_expire")
        if isinstance(expire, bool) or not isinstance(expire, (int, float)):
            expire = None
        if expire is not None and expire < self.clock() * 1000:
            return NO_SESSION
        data = {k: v for k, v in body.items() if not k.startswith("_") and k != "isNew"}
        return WebSession(data) if data else NO_SESSION


class SessionReader:
    """Reads the session of the request that opened a connection: ``io.sessions =
    SessionReader(storage)``, with an aiohttp-session storage (configured as the web app's) or a
    :class:`SessionStore`. :meth:`read` never raises, and gives up after ``timeout`` seconds.

    ``storage`` is what was given: a web app served by the same process may install it too
    (``aiohttp_session.setup(app, io.sessions.storage)``), which the embedded store's needs."""

    def __init__(self, storage: AbstractStorage | SessionStore, *, timeout: float = 2.0) -> None:
        self.storage = storage
        self.store: SessionStore = storage if hasattr(storage, "load") else AiohttpStore(storage)
        self.timeout = timeout
        #: What :meth:`close` runs: closes what the reader opened itself (a Redis client).
        self.on_close: Callable[[], Awaitable[object]] | None = None

    async def read(self, headers: Iterable[tuple[str, str]]) -> WebSession:
        """The session of a request with these headers (``request.headers.items()``)."""
        cookies = parse_cookie_header(cookie_header(headers))
        if not cookies:
            return NO_SESSION
        try:
            async with asyncio.timeout(self.timeout):
                session = await self.store.load(cookies)
        except TimeoutError:
            log.warning("reading a session took over %g s: the connection has none", self.timeout)
            return NO_SESSION
        except Exception as exc:
            # (Not the traceback: its locals could show up in some handlers with the cookie.)
            log.warning("reading a session failed: the connection has none (%r)", exc)
            return NO_SESSION
        # (A store of the application's may hand back a plain dict: sockets get it read-only.)
        return session if isinstance(session, WebSession) else WebSession(session)

    async def close(self) -> None:
        """Close what the reader opened (at shutdown)."""
        if self.on_close is not None:
            close, self.on_close = self.on_close, None
            await close()


def _secret(options_env: str, environ: Mapping[str, str], what: str) -> str:
    value = environ.get(options_env, "") if options_env else ""
    if not value:
        raise ConfigError(
            f"[sessions]: the {what} is read from the environment variable named by secret_env "
            f"({options_env or 'none given'}), which is not set"
        )
    return value


def _aiohttp_session() -> None:
    try:
        import aiohttp_session  # noqa: F401
    except ImportError:
        raise ConfigError(
            "[sessions]: this storage needs aiohttp-session: pip install 'wxio[sessions]'"
        ) from None


def sessions_from_config(
    config: ServerConfig,
    *,
    database: Any = None,
    environ: Mapping[str, str] | None = None,
) -> SessionReader | None:
    """The reader ``[sessions]`` configures (None when off). ``database``: the embedded store,
    for ``storage = "embedded"``. Raises :class:`ConfigError` naming the key at fault (never
    showing the secret)."""
    options = config.sessions
    if not options.storage:
        return None
    env = os.environ if environ is None else environ
    if type(options.max_age) is not int or options.max_age < 0:
        raise ConfigError("[sessions]: max_age must be a whole number of seconds, 0 for no limit")
    if not isinstance(options.timeout, (int, float)) or options.timeout <= 0:
        raise ConfigError("[sessions]: timeout must be a number of seconds above 0")
    max_age = options.max_age or None
    name = options.cookie_name
    storage: AbstractStorage | SessionStore
    on_close: Callable[[], Awaitable[object]] | None = None
    if options.storage == "egg":
        keys = [key.strip() for key in _secret(options.secret_env, env, "keys").split(",")]
        if not all(keys):
            raise ConfigError(f"[sessions]: {options.secret_env} holds an empty key")
        storage = KoaCookieStore(keys, cookie_name=name or "EGG_SESS", algorithm=options.algorithm)
    elif options.storage == "cookie":
        _aiohttp_session()
        from aiohttp_session.cookie_storage import EncryptedCookieStorage

        secret = _secret(options.secret_env, env, "Fernet key")
        try:
            storage = EncryptedCookieStorage(
                secret, cookie_name=name or "AIOHTTP_SESSION", max_age=max_age
            )
        except (ValueError, TypeError, binascii.Error):
            raise ConfigError(
                f"[sessions]: {options.secret_env} does not hold a Fernet key (32 bytes in "
                "url-safe base64: cryptography.fernet.Fernet.generate_key())"
            ) from None
    elif options.storage == "redis":
        _aiohttp_session()
        try:
            from .cluster.redis import client_for
        except ImportError:
            raise ConfigError(
                "[sessions]: storage = \"redis\" needs the redis package: pip install 'wxio[redis]'"
            ) from None
        from aiohttp_session.redis_storage import RedisStorage

        url = (
            options.redis_url
            or env.get("WXIO_REDIS_URL")
            or config.extra.get("cluster", {}).get("redis_url")
        )
        if not url:
            raise ConfigError(
                '[sessions]: storage = "redis" needs redis_url (or a cluster\'s Redis)'
            )
        client = client_for(url, env)
        storage = RedisStorage(client, cookie_name=name or "AIOHTTP_SESSION", max_age=max_age)
        on_close = client.aclose
    else:  # "embedded"
        if database is None:
            raise ConfigError(
                '[sessions]: storage = "embedded" needs the embedded store: one node without '
                'Redis, [store] engine = "sqlite"'
            )
        _aiohttp_session()
        from .embedded.websessions import EmbeddedStorage

        storage = EmbeddedStorage(database, cookie_name=name or "AIOHTTP_SESSION", max_age=max_age)
    reader = SessionReader(storage, timeout=float(options.timeout))
    reader.on_close = on_close
    return reader
