"""The HTTP API's logic (the server's HTTP layer reads the request and writes the
:class:`ApiAnswer`): a web page or a backend pushes to one client, or to a whole app.

``POST /api/transportMessage`` with ``{timestamp, app, target, userId, sign, message}`` delivers
an ``exchange`` to ``target`` and answers ``{"status": "delivered"|"forwarded"|"queued",
"delivered": bool, "forwarded": bool, "queued": bool, "msgId": id, "guarantee":
"until_acked"|"sent"}`` (``forwarded``: handed to the node that holds the target).
``POST /api/broadcast`` with ``{timestamp, app, sign, message}`` answers
``{"delivered": count, "msgId": id}``. Signed like a connect (``md5(app + key + timestamp)``, or
HMAC over ``{target, userId, message}`` with ``nonce`` for HMAC apps) with the app's **server
key**, or with the client key where the app sets ``api_client_key``; or authorised by a user's
token (``Authorization: Bearer``, ``?token=`` or ``token`` in the body), which sends as that user.
Errors are JSON ``{"error": reason, "message": text}`` with 400 (malformed), 401
(bad_signature, expired), 403 (not_allowed, also an Origin the app does not list), 404
(target_offline), 413 (too_large), 429 (rate_limited) or 503 (unavailable). Every call passes
the ingress pipeline at its one entry (:meth:`~.ingress.Ingress.handle`, with an
:class:`ApiCall`).

``GET /api/presence?app=..&timestamp=..&sign=..&userId=u1`` answers whether ``u1`` is online and
on which client ids; without ``userId`` it lists the app's online users a page at a time
(``limit``, at most 1000, and ``after``, the ``next`` cursor of the previous page). Signed like
the other calls (the server key, or the client key where ``api_client_key`` allows it); for HMAC
apps the signed body is the other query parameters as a JSON object of strings. Not with a
user's token: presence tells about other users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ...protocol import jsonutil
from ...protocol.envelope import MAX_ID_LEN, DenyReason
from ...protocol.errors import RemoteProtocolError
from .actions import Actions
from .apps import AppConfig, AppRegistry
from .auth import Identity
from .backplane import BackplaneError
from .errors import Denied, unavailable

__all__ = ["Api", "ApiCall", "ApiAnswer", "STATUS", "PRESENCE_PAGE", "PRESENCE_MAX_PAGE"]

#: The HTTP status of each denial.
STATUS = {
    DenyReason.MALFORMED: 400,
    DenyReason.UNKNOWN_ACTION: 400,
    DenyReason.BAD_SIGNATURE: 401,
    DenyReason.EXPIRED: 401,
    DenyReason.UNKNOWN_APP: 401,
    DenyReason.NOT_ALLOWED: 403,
    DenyReason.TARGET_OFFLINE: 404,
    DenyReason.TOO_LARGE: 413,
    DenyReason.RATE_LIMITED: 429,
    DenyReason.UNAVAILABLE: 503,
    DenyReason.TOO_MANY_DENIALS: 429,
}
#: Users listed in one presence page: the default and the most a caller may ask for.
PRESENCE_PAGE = 100
PRESENCE_MAX_PAGE = 1000
#: Query parameters that authenticate a GET; the others are what an HMAC signature covers.
_CREDENTIALS = ("app", "timestamp", "sign", "nonce", "token")

ApiName = Literal["transportMessage", "broadcast", "presence"]


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One API call as the pipeline sees it: the call's name, the credentials outside its body
    (a bearer or ``?token=`` token, the ``Origin``), the body's bound and its declared length.
    What the pipeline reads is handed beside it: the body's bytes (at most ``limit + 1`` of
    them), or for ``presence`` the query."""

    name: ApiName
    token: str | None
    origin: str | None
    limit: int
    length: int | None = None


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """What an API call answers: the status, the JSON body, and the app authenticated (whose
    origins CORS allows), if any."""

    status: int
    body: dict[str, Any]
    app: AppConfig | None = None

    @classmethod
    def refusal(cls, denied: Denied, app: AppConfig | None) -> ApiAnswer:
        body = {"error": str(denied.reason), "message": denied.detail or str(denied.reason)}
        return cls(STATUS.get(denied.reason, 400), body, app)


class Api:
    """The calls (see the module docstring) over the core's actions: what each one's body
    holds, what its signature covers, and what it does once authorised."""

    def __init__(self, apps: AppRegistry, actions: Actions) -> None:
        self.apps = apps
        self.actions = actions

    # -- CORS ----------------------------------------------------------------------------------

    @staticmethod
    def cors(origin: str | None, app: AppConfig | None) -> dict[str, str]:
        """The CORS headers of an answer to ``origin`` about ``app``."""
        if origin is None or app is None or not app.origin_allowed(origin):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def preflight(self, origin: str | None, named: str | None) -> dict[str, str]:
        """A preflight carries no body, so no app: the Origin is allowed when an app lists it,
        or when the URL names the app (``?app=shop``) and that app allows it. Nothing else is
        echoed."""
        apps = self.apps
        app = apps.get(named)
        allowed = origin is not None and (
            (app is not None and app.origin_allowed(origin))
            or any(origin in each.origins for each in apps.apps.values())
        )
        headers = {"Vary": "Origin"}
        if allowed:
            assert origin is not None
            headers.update(
                {
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "POST",
                    "Access-Control-Allow-Headers": "Content-Type, Authorization",
                    "Access-Control-Max-Age": "600",
                }
            )
        return headers

    # -- the steps of a call -------------------------------------------------------------------

    @staticmethod
    def decode(call: ApiCall, raw: bytes | Mapping[str, str]) -> dict[str, Any]:
        """The call's data: its query (``presence``), or its body, bounded and parsed."""
        if not isinstance(raw, bytes | bytearray):
            return dict(raw)
        limit = call.limit
        if (call.length is not None and call.length > limit) or len(raw) > limit:
            raise Denied(DenyReason.TOO_LARGE, f"body over {limit} bytes")
        try:
            data = jsonutil.loads(raw)
        except RemoteProtocolError as exc:
            raise Denied(DenyReason.MALFORMED, exc.message) from None
        if not isinstance(data, dict):
            raise Denied(DenyReason.MALFORMED, "body must be a JSON object")
        return data

    @staticmethod
    def signed(call: ApiCall, data: dict[str, Any]) -> Any:
        """What the call's HMAC signature covers."""
        if call.name == "transportMessage":
            return {
                "target": data.get("target"),
                "userId": data.get("userId"),
                "message": data.get("message"),
            }
        if call.name == "broadcast":
            return {"message": data.get("message")}
        return {k: v for k, v in data.items() if k not in _CREDENTIALS}

    async def act(self, call: ApiCall, ident: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """The authorised call's answer; raises :class:`Denied`."""
        if call.name == "transportMessage":
            return await self._transport_message(ident, data)
        if call.name == "broadcast":
            return await self._broadcast(ident, data)
        if ident.via == "token":
            raise Denied(DenyReason.NOT_ALLOWED, "presence is for the app's backend")
        return await self._presence(ident.app, data)

    # -- the calls -----------------------------------------------------------------------------

    @staticmethod
    def _sender(ident: Identity, data: dict[str, Any]) -> str | None:
        """The sender's user id: a token's ``sub``; the backend's (server key) choice; with the
        client key, what the caller claims only where the app lets clients claim user ids."""
        user = data.get("userId")
        if user is not None and (type(user) not in (str, int) or not str(user)):
            raise Denied(DenyReason.MALFORMED, "userId must be a string")
        claimed = str(user) if user is not None else None
        if ident.via == "token":
            if claimed is not None and claimed != ident.user_id:
                raise Denied(DenyReason.NOT_ALLOWED, "the user id comes from the token")
            return ident.user_id
        if claimed is not None and ident.via == "client" and ident.app.user_id == "token":
            raise Denied(DenyReason.NOT_ALLOWED, "this app takes user ids only from tokens")
        return claimed

    async def _transport_message(self, ident: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """``POST transportMessage``: an ``exchange`` to ``target`` (or its user's inbox)."""
        target = data.get("target")
        if not isinstance(target, str) or not target:
            raise Denied(DenyReason.MALFORMED, "target: must be a string")
        outcome = await self.actions.send(
            ident.app,
            target,
            data.get("message"),
            sender=None,
            user_id=self._sender(ident, data),
            info=ident.info,
        )
        body: dict[str, Any] = {
            "status": outcome.status,
            "delivered": outcome.status == "delivered",
            "forwarded": outcome.status == "forwarded",
            "queued": outcome.status == "queued",
            "msgId": outcome.msg_id,
            "guarantee": "until_acked" if outcome.kept else "sent",
        }
        if outcome.dropped:
            body["dropped"] = list(outcome.dropped)
        return body

    async def _broadcast(self, ident: Identity, data: dict[str, Any]) -> dict[str, Any]:
        """``POST broadcast``: a ``broadcast`` to every client of the app."""
        if ident.via == "token" and not ident.app.client_broadcast:
            raise Denied(DenyReason.NOT_ALLOWED, "this app does not let clients broadcast")
        count, msg_id = await self.actions.broadcast(
            ident.app,
            data.get("message"),
            sender=None,
            user_id=ident.user_id if ident.via == "token" else None,
            info=ident.info,
        )
        return {"delivered": count, "msgId": msg_id}

    async def _presence(self, app: AppConfig, query: dict[str, Any]) -> dict[str, Any]:
        """``GET presence``: one user's client ids, or a page of the app's online users."""
        user = query.get("userId")
        directory = self.actions.directory
        try:
            if user is not None:
                if not user or len(user) > MAX_ID_LEN:
                    raise Denied(DenyReason.MALFORMED, f"userId: 1 to {MAX_ID_LEN} characters")
                clients = await directory.user_clients(app.name, user)
                ids = sorted(client for client, _node in clients)
                return {"app": app.name, "userId": user, "online": bool(ids), "clients": ids}
            limit = query.get("limit", str(PRESENCE_PAGE))
            if not limit.isdigit() or not 1 <= int(limit) <= PRESENCE_MAX_PAGE:
                raise Denied(DenyReason.MALFORMED, f"limit: 1 to {PRESENCE_MAX_PAGE}")
            after = query.get("after") or None
            if after is not None and len(after) > MAX_ID_LEN:
                raise Denied(DenyReason.MALFORMED, f"after: at most {MAX_ID_LEN} characters")
            users, cursor = await directory.app_users(app.name, after=after, limit=int(limit))
            return {"app": app.name, "users": users, "next": cursor}
        except BackplaneError as exc:
            raise unavailable("presence", exc) from None
