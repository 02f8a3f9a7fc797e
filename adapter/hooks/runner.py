"""The hooks as the routing core calls them: what each request holds, and what each answer
means (docs/hooks.md has both, field by field).

- ``connect``: the backend decides who connects, and as whom: ``{"allow": {"userId", "info"}}``
  or ``{"deny": {"reason", "message"}}``.
- ``message``: for the actions and socket.io events an app lists, the backend decides what
  happens: ``{"deliver": {}}`` (as is), ``{"deliver": {"payload": ...}}`` (changed; an event's
  ``{"args": [...]}``), ``{"answer": ...}`` (the sender gets it: an RPC), or ``{"deny": ...}``.
- ``disconnect`` and ``offline``: notifications (:mod:`.notify`).

A call that fails (no answer within the app's ``timeout``, no connection, not a 2xx, an answer
that is none of the above) is a ``deny unavailable`` for the client; it is counted and logged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ...protocol import jsonutil
from ...protocol.envelope import MAX_ID_LEN, DenyReason, Envelope
from ...protocol.errors import LocalProtocolError
from ..core.auth import MAX_INFO_BYTES, Identity
from ..core.errors import Denied
from ..metrics import Metrics
from .client import HookClient, HookFailure
from .notify import Notifier

if TYPE_CHECKING:
    from ..core.apps import AppConfig, AppRegistry
    from ..core.connection import Connection

__all__ = ["Hooks", "ConnectRequest", "Verdict", "parse_cookies", "UNAVAILABLE_MESSAGE"]

UNAVAILABLE_MESSAGE = "the app's backend is unavailable"
#: Engine.IO's own query parameters: not what the client wanted the backend to see.
_ENGINE_QUERY = frozenset({"EIO", "transport", "t", "sid", "j", "b64"})
#: Reasons a backend may give in a deny (anything else is ``not_allowed``).
_BACKEND_REASONS = frozenset(DenyReason) - {DenyReason.TOO_MANY_DENIALS}
MAX_DENY_MESSAGE = 256
#: How long the backend's shutdown flush of notifications may take.
CLOSE_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What a client brought to its connect (the handshake request), for the connect hook."""

    #: The client id the connection gets if the backend allows it.
    client: str
    #: "socket.io" or "raw".
    protocol: str
    #: "websocket" or "polling".
    transport: str
    address: str | None
    secure: bool
    #: The socket.io CONNECT payload ({} for raw clients and socket.io 2.x).
    auth: Mapping[str, Any]
    query: Any
    #: Case-insensitive lookup (aiohttp's headers, or socket.io's :class:`Headers`).
    headers: Any
    #: A bearer token wherever the client put it (auth, query, Authorization, X-Wxio-Token).
    token: Any = None


class Verdict(NamedTuple):
    """The message hook's decision: ``deliver`` (``value``: the new payload or args when
    ``changed``) or ``answer`` (``value``: what the sender gets)."""

    kind: str
    value: Any = None
    changed: bool = False


def parse_cookies(header: str | None) -> dict[str, str]:
    """``Cookie: a=1; b="2"`` as ``{"a": "1", "b": "2"}``; the first of a repeated name wins
    (as Node's ``cookie`` package reads it); malformed pairs are skipped."""
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    for pair in header.split(";"):
        name, eq, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or name in cookies:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


def _headers(headers: Any, names: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    getall = getattr(headers, "getall", None)
    for name in names:
        if getall is not None:  # aiohttp's multidict: a repeated header, joined as Node does
            values = getall(name, ())
            if values:
                out[name] = ", ".join(values)
        else:
            value = headers.get(name)
            if value is not None:
                out[name] = value
    return out


def _query(query: Any, engine: bool) -> dict[str, Any]:
    """A query string (a multidict, or socket.io's dict with lists) as JSON."""
    out: dict[str, Any] = {}
    for key, value in query.items():
        if engine and key in _ENGINE_QUERY:
            continue
        old = out.get(key)
        if old is None:
            out[key] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            out[key] = [old, value]
    return out


def _protocol(conn: Connection) -> str:
    return "socket.io" if conn.kind == "socketio" else conn.kind


def _one_of(answer: Any, verdicts: tuple[str, ...]) -> tuple[str, Any]:
    """The answer's verdict and its value; HookFailure("invalid") unless it has exactly one."""
    if isinstance(answer, dict):
        found = [key for key in verdicts if key in answer]
        if len(found) == 1:
            return found[0], answer[found[0]]
    raise HookFailure("invalid", f"the answer must have exactly one of {', '.join(verdicts)}")


def _denied(value: Any) -> Denied:
    """A backend's ``deny``: the reason (one of wxio's, else ``not_allowed``) and its message."""
    reason = DenyReason.NOT_ALLOWED
    message = ""
    if isinstance(value, dict):
        given = value.get("reason")
        if isinstance(given, str) and given in _BACKEND_REASONS:
            reason = DenyReason(given)
        if isinstance(value.get("message"), str):
            message = value["message"][:MAX_DENY_MESSAGE]
    return Denied(reason, message or "refused by the app's backend")


class Hooks:
    """Every hook of every app, for one process (the routing core's :class:`~..core.hub.Hub`
    holds it when an app has hooks)."""

    def __init__(self, apps: AppRegistry, metrics: Metrics) -> None:
        self.apps = apps
        self.client = HookClient(metrics)
        self.notifier = Notifier(self.client, metrics)

    @staticmethod
    def configured(apps: AppRegistry) -> bool:
        return any(app.hooks is not None for app in apps.apps.values())

    # -- what an app sends to its backend -------------------------------------------------

    @staticmethod
    def connects(app: AppConfig | None) -> bool:
        """Does ``app``'s backend decide its connects?"""
        return app is not None and app.hooks is not None and app.hooks.connect_url is not None

    @staticmethod
    def decides(app: AppConfig, action: str) -> bool:
        """Does ``app``'s backend decide this envelope action?"""
        hooks = app.hooks
        return hooks is not None and action in hooks.actions

    @staticmethod
    def decides_event(app: AppConfig, event: str) -> bool:
        hooks = app.hooks
        return hooks is not None and event in hooks.events

    @staticmethod
    def events(apps: AppRegistry) -> bool:
        """Does any app list socket.io events?"""
        return any(app.hooks is not None and app.hooks.events for app in apps.apps.values())

    # -- calls ----------------------------------------------------------------------------

    async def _call(self, app: AppConfig, hook: str, body: dict[str, Any]) -> Any:
        hooks = app.hooks
        url = hooks.url(hook) if hooks is not None else None
        assert hooks is not None and url is not None
        try:
            return await self.client.call(app, hooks, hook, url, body)
        except LocalProtocolError:
            # Only a client's input can hold what JSON cannot (bytes, from a binary parser).
            raise Denied(DenyReason.MALFORMED, "not JSON: cannot go to the backend") from None
        except HookFailure as failure:
            self._failed(app, hook, failure)
            raise Denied(DenyReason.UNAVAILABLE, UNAVAILABLE_MESSAGE) from None

    def _failed(self, app: AppConfig, hook: str, failure: HookFailure) -> None:
        self.client.count(app.name, hook, failure.outcome)
        self.client.warn(app.name, hook, failure.detail)

    def _invalid(self, app: AppConfig, hook: str, detail: str) -> Denied:
        self._failed(app, hook, HookFailure("invalid", detail))
        return Denied(DenyReason.UNAVAILABLE, UNAVAILABLE_MESSAGE)

    async def connect(self, app: AppConfig, request: ConnectRequest) -> Identity:
        """The backend's decision on a connect: the identity it allows, or :class:`Denied`
        (its deny, or ``unavailable``)."""
        hooks = app.hooks
        assert hooks is not None
        engine = request.protocol == "socket.io"
        body: dict[str, Any] = {
            "hook": "connect",
            "id": self.client.new_id(),
            "app": app.name,
            "client": request.client,
            "protocol": request.protocol,
            "transport": request.transport,
            "address": request.address,
            "secure": request.secure,
            "auth": dict(request.auth) if isinstance(request.auth, Mapping) else {},
            "query": _query(request.query, engine),
            "token": request.token if isinstance(request.token, str) else None,
            "headers": _headers(request.headers, hooks.headers),
        }
        if hooks.cookies:
            body["cookies"] = parse_cookies(_headers(request.headers, ("cookie",)).get("cookie"))
        kind, value = self._verdict(app, "connect", await self._call(app, "connect", body))
        if kind == "deny":
            self.client.count(app.name, "connect", "deny")
            raise _denied(value)
        if not isinstance(value, dict):
            raise self._invalid(app, "connect", "allow must be an object")
        user = value.get("userId")
        if type(user) is int:
            user = str(user)
        if user is not None and (not isinstance(user, str) or not 0 < len(user) <= MAX_ID_LEN):
            raise self._invalid(app, "connect", f"allow.userId: 1 to {MAX_ID_LEN} characters")
        info = value.get("info")
        if info is not None and len(jsonutil.dumps_bytes(info)) > MAX_INFO_BYTES:
            raise self._invalid(app, "connect", f"allow.info over {MAX_INFO_BYTES} bytes")
        self.client.count(app.name, "connect", "allow")
        return Identity(app, user, "hook", info=info)

    def _verdict(self, app: AppConfig, hook: str, answer: Any) -> tuple[str, Any]:
        verdicts = ("allow", "deny") if hook == "connect" else ("deliver", "answer", "deny")
        try:
            return _one_of(answer, verdicts)
        except HookFailure as failure:
            self._failed(app, hook, failure)
            raise Denied(DenyReason.UNAVAILABLE, UNAVAILABLE_MESSAGE) from None

    async def message(
        self, conn: Connection, message: Envelope, info: Any, *, routable: bool = True
    ) -> Verdict:
        """The backend's decision on an envelope of an action the app lists; ``info`` is the
        sender's (its token's or connect hook's); ``routable``: wxio has the action, so that
        ``deliver`` means something (else only an answer or a deny will do). Raises
        :class:`Denied`."""
        meta = message.meta
        envelope_meta = {
            "timestamp": meta.timestamp,
            "app": conn.app.name,
            "client": conn.client_id,
            "userId": conn.user_id,
            "target": meta.target,
            "msgId": meta.msgId,
            "info": info,
        }
        envelope = {
            "meta": {k: v for k, v in envelope_meta.items() if v is not None},
            "data": {"action": message.action, "payload": message.payload},
        }
        body = self._message_body(conn, info)
        body["envelope"] = envelope
        return await self._decide(conn, body, "payload" if routable else None)

    async def event(self, conn: Connection, event: str, args: list[Any], info: Any) -> Verdict:
        """The backend's decision on a socket.io event the app lists."""
        body = self._message_body(conn, info)
        body["event"] = event
        body["args"] = args
        return await self._decide(conn, body, "args")

    def _message_body(self, conn: Connection, info: Any) -> dict[str, Any]:
        return {
            "hook": "message",
            "id": self.client.new_id(),
            "app": conn.app.name,
            "client": conn.client_id,
            "userId": conn.user_id,
            "info": info,
            "protocol": _protocol(conn),
        }

    async def _decide(self, conn: Connection, body: dict[str, Any], field: str | None) -> Verdict:
        """``field``: what a ``deliver`` may change (None: it may not deliver)."""
        app = conn.app
        kind, value = self._verdict(app, "message", await self._call(app, "message", body))
        if kind == "deny":
            self.client.count(app.name, "message", "deny")
            raise _denied(value)
        if kind == "answer":
            limit = app.max_message_bytes
            if len(jsonutil.dumps_bytes(value)) > limit:
                raise self._invalid(app, "message", f"answer over the app's {limit} bytes")
            self.client.count(app.name, "message", "answer")
            return Verdict("answer", value)
        if field is None:
            raise self._invalid(app, "message", "deliver of an action of the app's own")
        if not isinstance(value, dict):
            raise self._invalid(app, "message", "deliver must be an object")
        if field not in value:
            self.client.count(app.name, "message", "deliver")
            return Verdict("deliver")
        changed = value[field]
        if field == "args" and not isinstance(changed, list):
            raise self._invalid(app, "message", "deliver.args must be a list")
        self.client.count(app.name, "message", "rewrite")
        return Verdict("deliver", changed, changed=True)

    # -- notifications --------------------------------------------------------------------

    def disconnected(self, conn: Connection) -> None:
        """``disconnect``: the connection has left (its app's backend is told, in the
        background)."""
        hooks = conn.app.hooks
        if hooks is None or hooks.disconnect_url is None:
            return
        body = {
            "hook": "disconnect",
            "id": self.client.new_id(),
            "app": conn.app.name,
            "client": conn.client_id,
            "userId": conn.user_id,
            "protocol": _protocol(conn),
            "time": int(time.time() * 1000),
        }
        self.notifier.push(conn.app, hooks, "disconnect", hooks.disconnect_url, body)

    def kept_offline(
        self,
        app: AppConfig,
        user: str | None,
        target: str,
        msg_id: str,
        payload: Any,
        sender: dict[str, Any],
    ) -> None:
        """``offline``: a message for ``user``, who has no client connected, was kept in the
        user's inbox (the backend may push a notification through another channel)."""
        hooks = app.hooks
        if hooks is None or hooks.offline_url is None:
            return
        body = {
            "hook": "offline",
            "id": self.client.new_id(),
            "app": app.name,
            "userId": user,
            "target": target,
            "msgId": msg_id,
            "sender": sender,
            "payload": payload,
            "time": int(time.time() * 1000),
        }
        self.notifier.push(app, hooks, "offline", hooks.offline_url, body)

    async def close(self) -> None:
        await self.notifier.close(CLOSE_GRACE)
        await self.client.close()
