"""One way in: every envelope and API call passes the same steps, in the same order.

For a connected client (raw ``/ws`` frame or socket.io ``requestMessage``):

1. **size**: a raw frame over the app's ``max_message_bytes`` (UTF-8 bytes) is ``too_large``
   (socket.io packets are bounded by Engine.IO's ``maxPayload``; what is sent on is measured
   again, encoded, by the hub);
2. **parse**: JSON, then the envelope (:func:`wxio.protocol.envelope.parse`);
3. **rate limit**: one token of the connection's bucket (``rate``/``burst``) for everything but
   ``ack`` (acknowledging what one is sent must never be limited); input that failed steps 1-2
   costs a token too, and is answered ``rate_limited`` once the bucket is empty;
4. **authenticate**: an expired token allows only ``refresh``; a client-key connection's
   ``meta.sign`` is checked where the app asks for it;
5. **dispatch** to the hub's action;
6. **deny and count**: every refusal is a ``deny`` envelope, counted in the metrics by app and
   reason, and counted toward the connection's denials in a row: at :data:`MAX_DENIALS` the
   connection is closed (raw close code 4010, ``too_many_denials``). Outages (``unavailable``)
   are not the client's fault and do not count toward that.

For the HTTP API: size (body), parse, authenticate (:meth:`Authenticator.api`), rate limit (per
app, ``api_rate``/``api_burst``, after authentication so that strangers cannot use up an app's
quota), dispatch, deny and count. Connects are authenticated and counted here too.

Token connections are tracked here: :meth:`sweep` (every second, on the hub's clock) sends
``deny expired`` to a connection whose token has expired and closes it ``token_grace`` seconds
after the expiry unless a ``refresh`` came first.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...protocol import envelope as env
from ...protocol import jsonutil
from ...protocol.envelope import Action, DenyReason, Envelope, EnvelopeError
from ...protocol.errors import RemoteProtocolError
from .apps import AppConfig
from .auth import Identity
from .connection import Connection
from .errors import Denied
from .limits import TokenBucket

if TYPE_CHECKING:
    from ..hooks.runner import ConnectRequest
    from .hub import Hub, Respond

log = logging.getLogger("wxio.core")

__all__ = ["Ingress", "MAX_DENIALS", "utf8_len"]

#: A connection that is denied this many times in a row is closed (``too_many_denials``).
MAX_DENIALS = 50
#: Seconds between two looks at token expiry.
SWEEP_INTERVAL = 1.0
#: A tracked connection that never showed up as registered is forgotten after this long.
_UNREGISTERED_TTL = 60.0


def utf8_len(text: str) -> int:
    """The UTF-8 size of ``text`` (what ``max_message_bytes`` limits), without encoding ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


#: Actions a client-key connection sends without ``meta.sign``.
_UNSIGNED = (Action.ACK, Action.PING, Action.REFRESH)


@dataclass(slots=True)
class _TokenSession:
    user: str
    expires: float
    info: Any
    since: float
    warned: bool = False
    seen: bool = False
    #: Allowed by the app's connect hook: no expiry, no refresh, no message signatures.
    hook: bool = False


class Ingress:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._api_buckets: dict[str, TokenBucket] = {}
        self._sessions: dict[Connection, _TokenSession] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- counting ------------------------------------------------------------------------------

    def count(self, app: AppConfig | str | None, reason: DenyReason) -> None:
        """One denial in the metrics. Names of apps that do not exist are not labels."""
        name = app.name if isinstance(app, AppConfig) else app
        if name is None or self.hub.apps.get(name) is None:
            name = "unknown"
        counter = self.hub.denials
        key = (("app", name), ("reason", reason.value))
        counter[key] = counter.get(key, 0.0) + 1

    # -- connect -------------------------------------------------------------------------------

    async def authenticate(
        self, creds: Mapping[str, Any], origin: str | None, request: ConnectRequest | None = None
    ) -> Identity:
        """``request``: the handshake, for an app whose backend decides its connects."""
        try:
            hooks = self.hub.hooks
            if request is not None and hooks is not None:
                name = creds.get("app")
                app = self.hub.apps.get(name) if isinstance(name, str) else None
                if app is not None and hooks.connects(app):
                    if not app.origin_allowed(origin):
                        raise Denied(DenyReason.NOT_ALLOWED, "origin not allowed for this app")
                    return await hooks.connect(app, request)
            return await self.hub.auth.connect(creds, origin)
        except Denied as denied:
            app = creds.get("app")
            self.count(app if isinstance(app, str) else None, denied.reason)
            raise

    def attach(self, conn: Connection, ident: Identity) -> None:
        """Track a token connection's expiry (called once the connection object exists), and
        what a connect hook allowed."""
        if ident.via == "hook":
            self._sessions[conn] = _TokenSession(
                ident.user_id or "", math.inf, ident.info, self.hub.clock(), hook=True
            )
        elif ident.via == "token" and ident.expires is not None and ident.user_id is not None:
            self._sessions[conn] = _TokenSession(
                ident.user_id, ident.expires, ident.info, self.hub.clock()
            )

    def info(self, conn: Connection) -> Any:
        session = self._sessions.get(conn)
        return session.info if session is not None else None

    def is_token(self, conn: Connection) -> bool:
        return conn in self._sessions

    # -- envelopes from connected clients ------------------------------------------------------

    async def text(self, conn: Connection, text: str, respond: Respond) -> None:
        """A raw WebSocket text frame."""

        def decode() -> Any:
            limit = conn.app.max_message_bytes
            if utf8_len(text) > limit:
                raise Denied(DenyReason.TOO_LARGE, f"frame over {limit} bytes")
            try:
                return jsonutil.loads(text)
            except RemoteProtocolError as exc:
                raise Denied(DenyReason.MALFORMED, exc.message) from None

        await self._run(conn, decode, respond)

    async def value(self, conn: Connection, raw: Any, respond: Respond) -> None:
        """An envelope already decoded by its transport (socket.io)."""
        await self._run(conn, lambda: raw, respond)

    def binary(self, conn: Connection, respond: Respond) -> None:
        """A binary frame on the raw endpoint: refused, but rate-limited and counted like any."""
        if not conn.bucket.take(self.hub.clock()):
            self.refuse(conn, Denied(DenyReason.RATE_LIMITED, "too many messages"), respond)
        else:
            self.refuse(conn, Denied(DenyReason.MALFORMED, "text frames only"), respond)

    async def _run(self, conn: Connection, decode: Callable[[], Any], respond: Respond) -> None:
        now = self.hub.clock()
        try:
            try:
                raw = decode()
                message = env.parse(raw)
            except EnvelopeError as exc:
                raise Denied(DenyReason.MALFORMED, str(exc)) from None
            except Denied as denied:
                # Garbage costs a token too: a flood of it is answered rate_limited (no parsing
                # is saved by that, but the client learns to slow down) and closed at fifty.
                if not conn.bucket.take(now):
                    raise Denied(DenyReason.RATE_LIMITED, "too many messages") from None
                raise denied from None
            # Acks are exempt: a client acknowledging what it is sent must not be rate limited.
            if message.action != Action.ACK and not conn.bucket.take(now):
                raise Denied(DenyReason.RATE_LIMITED, "too many messages")
            await self.hub.apply(conn, message, raw, respond)
        except Denied as denied:
            self.refuse(conn, denied, respond)
        else:
            conn.denials = 0

    def refuse(self, conn: Connection, denied: Denied, respond: Respond) -> None:
        # An outage is not the client's fault: it does not count toward MAX_DENIALS.
        if denied.reason != DenyReason.UNAVAILABLE:
            conn.denials += 1
        self.count(conn.app, denied.reason)
        respond(self.hub.deny(denied, conn))
        if conn.denials >= MAX_DENIALS:
            log.info("%s closed after %d denials in a row", conn.client_id, conn.denials)
            conn.close(DenyReason.TOO_MANY_DENIALS)

    def oversized(self, conn: Connection | None, limit: int) -> str:
        """The deny for a raw frame over ``[core] max_frame_bytes`` (the connection closes: the
        rest of the frame cannot be skipped)."""
        denied = Denied(DenyReason.TOO_LARGE, f"frame over {limit} bytes")
        self.count(conn.app if conn is not None else None, denied.reason)
        return self.hub.deny(denied, conn).json()

    def check(
        self, conn: Connection, message: Envelope, raw: Any
    ) -> Coroutine[Any, Any, None] | None:
        """Step 4 for a parsed envelope: token expiry, then the per-message signature. Raises
        :class:`Denied`; returns a coroutine to await when the check has to wait (an HMAC
        nonce claim), else None."""
        session = self._sessions.get(conn)
        if session is not None:
            if message.action != Action.REFRESH and self.hub.clock() >= session.expires:
                raise Denied(DenyReason.EXPIRED, "token expired: send refresh with a new token")
            return None  # the token (or the backend) authenticated it; there is no key to sign
        if conn.app.verify_message_sign and message.action not in _UNSIGNED:
            return self.hub.auth.verify_message(conn.app, message, raw)
        return None

    async def refresh(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        """``refresh`` with ``payload.token``: the same user's new token, before (or within the
        grace after) the old one's expiry."""
        session = self._sessions.get(conn)
        if session is None or session.hook:
            raise Denied(DenyReason.NOT_ALLOWED, "only a token connection can refresh")
        payload = message.payload
        token = payload.get("token") if isinstance(payload, dict) else None
        if token is None:
            raise Denied(DenyReason.MALFORMED, "payload.token: required")
        ident = await self.hub.auth.token(conn.app, token)
        if ident.user_id != session.user:
            raise Denied(DenyReason.NOT_ALLOWED, "a refreshed token must name the same user")
        assert ident.expires is not None
        session.expires, session.info, session.warned = ident.expires, ident.info, False
        respond(self.hub.reply(Action.REFRESHED, conn, {"exp": ident.expires}))

    # -- token expiry --------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> None:
        """Deny expired token connections once, and close them after the app's grace."""
        now = self.hub.clock() if now is None else now
        connections = self.hub.connections
        for conn, session in list(self._sessions.items()):
            if connections.get((conn.app.name, conn.client_id)) is conn:
                session.seen = True
            elif session.seen or now - session.since > _UNREGISTERED_TTL:
                del self._sessions[conn]  # gone
                continue
            if now < session.expires:
                continue
            if not session.warned:
                session.warned = True
                self.count(conn.app, DenyReason.EXPIRED)
                grace = conn.app.token_grace
                detail = f"token expired: refresh within {grace:g} s or be disconnected"
                conn.deliver(self.hub.deny(Denied(DenyReason.EXPIRED, detail), conn))
            if now >= session.expires + conn.app.token_grace:
                del self._sessions[conn]
                log.info("%s closed: token expired", conn.client_id)
                conn.close(DenyReason.EXPIRED)

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def stop(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self.sweep()
            except Exception:
                log.exception("token sweep failed")

    # -- the HTTP API --------------------------------------------------------------------------

    async def api(
        self,
        read: Callable[[], Awaitable[dict[str, Any]]],
        signed: Callable[[dict[str, Any]], Any],
        token: str | None,
        origin: str | None,
        act: Callable[[Identity, dict[str, Any]], Awaitable[Any]],
    ) -> tuple[AppConfig | None, Any]:
        """One API call through the pipeline; raises :class:`Denied` (already counted) with the
        app, if one was authenticated, in ``denied.app``."""
        app: AppConfig | None = None
        data: dict[str, Any] = {}
        try:
            data = await read()
            ident = await self.hub.auth.api(data, signed(data), token, origin)
            app = ident.app
            bucket = self._api_buckets.get(app.name)
            now = self.hub.clock()
            if bucket is None:
                bucket = self._api_buckets[app.name] = TokenBucket(app.api_rate, app.api_burst, now)
            if not bucket.take(now):
                raise Denied(DenyReason.RATE_LIMITED, "too many API calls for this app")
            return app, await act(ident, data)
        except Denied as denied:
            name = data.get("app") if app is None else app.name
            self.count(name if isinstance(name, str) else None, denied.reason)
            denied.app = app
            raise
