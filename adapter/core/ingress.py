"""One way in: every envelope and API call enters at :meth:`Ingress.handle` and passes the same
steps, in the same order; the pipeline calls down into the actions (:mod:`.actions`), the API's
logic (:mod:`.api`) and the router, never back into the hub that built it.

For a connected client (raw ``/ws`` frame or socket.io ``requestMessage``):

1. **size**: a raw frame over the app's ``max_message_bytes`` (UTF-8 bytes) is ``too_large``
   (socket.io packets are bounded by Engine.IO's ``maxPayload``, and a socket.io client that
   emits the envelope as a JSON string is measured as a raw frame; what is sent on is
   measured again, encoded, by the router); a binary frame is refused ``malformed``;
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
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, overload

from ...protocol import envelope as env
from ...protocol import jsonutil
from ...protocol.envelope import Action, DenyReason, Envelope, EnvelopeError
from ...protocol.errors import RemoteProtocolError
from ..hooks.runner import ConnectRequest, Hooks
from ..metrics import Labels
from .actions import ActionHandler, Actions
from .api import Api, ApiAnswer, ApiCall
from .apps import AppConfig, AppRegistry
from .auth import Authenticator, Identity
from .backplane import BackplaneError
from .connection import Connection, Respond
from .errors import Denied, unavailable
from .limits import TokenBucket

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
_ACK_DATA = {"action": Action.ACK}


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
    """The pipeline (see the module docstring) of one node's core. The hub builds it and hands
    it what it stands on: the apps, the authenticator, the actions, the hooks, the registry of
    connections (for token expiry), the clock and the counters."""

    def __init__(
        self,
        apps: AppRegistry,
        auth: Authenticator,
        actions: Actions,
        hooks: Hooks | None,
        connections: Mapping[tuple[str, str], Connection],
        clock: Callable[[], float],
        *,
        handled: dict[Labels, float],
        denials: dict[Labels, float],
    ) -> None:
        self.apps = apps
        self.auth = auth
        self.actions = actions
        self.hooks = hooks
        self.connections = connections
        self.clock = clock
        self._handled = handled
        self._denials = denials
        self.api = Api(apps, actions)
        self._table: dict[str, ActionHandler] = {**actions.table, Action.REFRESH: self.refresh}
        self._api_buckets: dict[str, TokenBucket] = {}
        self._sessions: dict[Connection, _TokenSession] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- counting ------------------------------------------------------------------------------

    def count(self, app: AppConfig | str | None, reason: DenyReason) -> None:
        """One denial in the metrics. Names of apps that do not exist are not labels."""
        name = app.name if isinstance(app, AppConfig) else app
        if name is None or self.apps.get(name) is None:
            name = "unknown"
        counter = self._denials
        key = (("app", name), ("reason", reason.value))
        counter[key] = counter.get(key, 0.0) + 1

    # -- connect -------------------------------------------------------------------------------

    async def authenticate(
        self, creds: Mapping[str, Any], origin: str | None, request: ConnectRequest | None = None
    ) -> Identity:
        """``request``: the handshake, for an app whose backend decides its connects."""
        try:
            hooks = self.hooks
            if request is not None and hooks is not None:
                name = creds.get("app")
                app = self.apps.get(name) if isinstance(name, str) else None
                if app is not None and hooks.connects(app):
                    if not app.origin_allowed(origin):
                        raise Denied(DenyReason.NOT_ALLOWED, "origin not allowed for this app")
                    return await hooks.connect(app, request)
            return await self.auth.connect(creds, origin)
        except Denied as denied:
            app = creds.get("app")
            self.count(app if isinstance(app, str) else None, denied.reason)
            raise

    def attach(self, conn: Connection, ident: Identity) -> None:
        """Track a token connection's expiry (called once the connection object exists), and
        what a connect hook allowed; the connection carries its ``info`` from here on."""
        if ident.via == "hook":
            self._sessions[conn] = _TokenSession(
                ident.user_id or "", math.inf, ident.info, self.clock(), hook=True
            )
        elif ident.via == "token" and ident.expires is not None and ident.user_id is not None:
            self._sessions[conn] = _TokenSession(
                ident.user_id, ident.expires, ident.info, self.clock()
            )
        else:
            return
        conn.info = ident.info

    def is_token(self, conn: Connection) -> bool:
        return conn in self._sessions

    # -- the one way in ------------------------------------------------------------------------

    @overload
    async def handle(self, source: Connection, raw: Any, respond: Respond) -> None: ...

    @overload
    async def handle(
        self,
        source: ApiCall,
        raw: bytes | Mapping[str, str],
        respond: Callable[[ApiAnswer], object],
    ) -> None: ...

    async def handle(self, source: Any, raw: Any, respond: Callable[[Any], object]) -> None:
        """Everything that comes in: from a connected client (``source`` its connection), a raw
        frame's text or bytes, or an envelope its transport decoded (socket.io); or an API call
        (``source`` an :class:`~.api.ApiCall`) with its body or query. Every outcome goes
        through ``respond``: an :class:`Outgoing` for a client, an :class:`ApiAnswer` for a
        call."""
        if type(source) is ApiCall:
            await self._call(source, raw, respond)
            return
        conn: Connection = source
        now = self.clock()
        try:
            try:
                if type(raw) is str:  # a raw frame (or an envelope emitted as a JSON string)
                    limit = conn.app.max_message_bytes
                    if utf8_len(raw) > limit:
                        raise Denied(DenyReason.TOO_LARGE, f"frame over {limit} bytes")
                    try:
                        raw = jsonutil.loads(raw)
                    except RemoteProtocolError as exc:
                        raise Denied(DenyReason.MALFORMED, exc.message) from None
                elif type(raw) is bytes:
                    raise Denied(DenyReason.MALFORMED, "text frames only")
                # The commonest envelope after sends, an ack of one message
                # ({"meta":{"msgId":...},"data":{"action":"ack"}}, in either order), is
                # recorded without building the envelope: what parse() would check, checked.
                if type(raw) is dict and len(raw) == 2:
                    meta, data = raw.get("meta"), raw.get("data")
                    if type(meta) is dict and len(meta) == 1 and data == _ACK_DATA:
                        msg_id = meta.get("msgId")
                        if (
                            type(msg_id) is str
                            and 0 < len(msg_id) <= env.MAX_ID_LEN
                            and self._ack_now(conn, msg_id, None)
                        ):
                            conn.denials = 0
                            return
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
            if message.action != Action.ACK:
                if not conn.bucket.take(now):
                    raise Denied(DenyReason.RATE_LIMITED, "too many messages")
            elif message.meta.msgId is not None and self._ack_now(
                conn, message.meta.msgId, message.meta.app
            ):
                conn.denials = 0
                return
            # Step 4 for a parsed envelope, the app's backend if it decides it, the action.
            meta = message.meta
            if meta.app is not None and meta.app != conn.app.name:
                raise Denied(DenyReason.UNKNOWN_APP, "meta.app is not this connection's app")
            action = self._table.get(message.action)
            hooks = self.hooks
            decided = hooks is not None and hooks.decides(conn.app, message.action)
            if action is None and message.action != Action.PING and not decided:
                raise Denied(DenyReason.UNKNOWN_ACTION, f"unknown action {message.action!r}")
            try:
                waiting = self.check(conn, message, raw)
                if waiting is not None:
                    await waiting
                if decided:
                    assert hooks is not None
                    verdict = await hooks.message(
                        conn, message, conn.info, routable=action is not None
                    )
                    if verdict.kind == "answer":
                        respond(self.actions.answer(conn, message, verdict.value))
                        action = _answered
                    elif verdict.changed:
                        message = message._replace(payload=verdict.value)
                if action is None:
                    respond(self.actions.reply(Action.PONG, conn))
                else:
                    await action(conn, message, respond)
                    key = (("app", conn.app.name), ("action", message.action))
                    self._handled[key] = self._handled.get(key, 0.0) + 1
            except BackplaneError as exc:
                raise unavailable(f"{conn.client_id}: {message.action}", exc) from None
        except Denied as denied:
            self.refuse(conn, denied, respond)
        else:
            conn.denials = 0

    def ack_frame(self, conn: Connection, text: str) -> bool:
        """A raw frame that is a bare ``ack`` (:func:`~wxio.protocol.envelope.bare_ack`),
        recorded at once as :meth:`handle` would record it: no JSON, no coroutine. False when
        it is not one or has to go the long way (then :meth:`handle` it)."""
        msg_id = env.bare_ack(text)
        if msg_id is None:
            return False
        limit = conn.app.max_message_bytes
        if len(text) > limit // 4 and utf8_len(text) > limit:
            return False  # denied too_large the long way
        if self._ack_now(conn, msg_id, None):
            conn.denials = 0
            return True
        return False

    def _ack_now(self, conn: Connection, msg_id: str, meta_app: str | None) -> bool:
        """An ``ack`` of ``msg_id`` recorded at once, as the pipeline and the action would
        record it, when nothing in the way can wait or refuse (an inbox in this process, no
        hook, an ack of this connection's app, no expired token); False: the long way."""
        ack_here = self.actions.ack_here
        app = conn.app
        if (
            ack_here is None
            or (meta_app is not None and meta_app != app.name)
            or (self.hooks is not None and self.hooks.decides(app, Action.ACK))
        ):
            return False
        session = self._sessions.get(conn)
        if session is not None and self.clock() >= session.expires:
            return False
        if conn.user_id is not None:
            ack_here(app.name, conn.user_id, msg_id)
        conn.acked(msg_id)
        key = (("app", app.name), ("action", Action.ACK))
        self._handled[key] = self._handled.get(key, 0.0) + 1
        return True

    def refuse(self, conn: Connection, denied: Denied, respond: Respond) -> None:
        """Step 6: answer ``denied`` with a ``deny``, count it, close at :data:`MAX_DENIALS`."""
        # An outage is not the client's fault: it does not count toward MAX_DENIALS.
        if denied.reason != DenyReason.UNAVAILABLE:
            conn.denials += 1
        self.count(conn.app, denied.reason)
        respond(self.actions.deny(denied, conn))
        if conn.denials >= MAX_DENIALS:
            log.info("%s closed after %d denials in a row", conn.client_id, conn.denials)
            conn.close(DenyReason.TOO_MANY_DENIALS)

    def oversized(self, conn: Connection | None, limit: int) -> str:
        """The deny for a raw frame over ``[core] max_frame_bytes`` (the connection closes: the
        rest of the frame cannot be skipped)."""
        denied = Denied(DenyReason.TOO_LARGE, f"frame over {limit} bytes")
        self.count(conn.app if conn is not None else None, denied.reason)
        return self.actions.deny(denied, conn).json()

    def check(
        self, conn: Connection, message: Envelope, raw: Any
    ) -> Coroutine[Any, Any, None] | None:
        """Step 4 for a parsed envelope: token expiry, then the per-message signature. Raises
        :class:`Denied`; returns a coroutine to await when the check has to wait (an HMAC
        nonce claim), else None."""
        session = self._sessions.get(conn)
        if session is not None:
            if message.action != Action.REFRESH and self.clock() >= session.expires:
                raise Denied(DenyReason.EXPIRED, "token expired: send refresh with a new token")
            return None  # the token (or the backend) authenticated it; there is no key to sign
        if conn.app.verify_message_sign and message.action not in _UNSIGNED:
            return self.auth.verify_message(conn.app, message, raw)
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
        ident = await self.auth.token(conn.app, token)
        if ident.user_id != session.user:
            raise Denied(DenyReason.NOT_ALLOWED, "a refreshed token must name the same user")
        assert ident.expires is not None
        session.expires, session.info, session.warned = ident.expires, ident.info, False
        conn.info = ident.info
        respond(self.actions.reply(Action.REFRESHED, conn, {"exp": ident.expires}))

    # -- token expiry --------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> None:
        """Deny expired token connections once, and close them after the app's grace."""
        now = self.clock() if now is None else now
        connections = self.connections
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
                conn.deliver(self.actions.deny(Denied(DenyReason.EXPIRED, detail), conn))
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

    async def _call(
        self, call: ApiCall, raw: bytes | Mapping[str, str], respond: Callable[[ApiAnswer], object]
    ) -> None:
        """An API call: size and parse, authenticate (the call's own credentials), rate limit
        (per app, after authentication so that strangers cannot use up an app's quota),
        dispatch, deny and count."""
        api = self.api
        app: AppConfig | None = None
        data: dict[str, Any] = {}
        try:
            data = api.decode(call, raw)
            ident = await self.auth.api(data, api.signed(call, data), call.token, call.origin)
            app = ident.app
            bucket = self._api_buckets.get(app.name)
            now = self.clock()
            if bucket is None:
                bucket = self._api_buckets[app.name] = TokenBucket(app.api_rate, app.api_burst, now)
            if not bucket.take(now):
                raise Denied(DenyReason.RATE_LIMITED, "too many API calls for this app")
            body = await api.act(call, ident, data)
        except Denied as denied:
            name = data.get("app") if app is None else app.name
            self.count(name if isinstance(name, str) else None, denied.reason)
            denied.app = app
            respond(ApiAnswer.refusal(denied, app))
            return
        respond(ApiAnswer(200, body, app))


async def _answered(conn: Connection, message: Envelope, respond: Respond) -> None:
    """(The backend answered the message: nothing is left to do.)"""
