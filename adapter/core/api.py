"""The HTTP API: a web page or a backend pushes to one client, or to a whole app.

``POST /api/transportMessage`` with ``{timestamp, app, target, userId, sign, message}`` delivers
an ``exchange`` to ``target`` and answers ``{"delivered": bool, "queued": bool, "msgId": id}``.
``POST /api/broadcast`` with ``{timestamp, app, sign, message}`` answers
``{"delivered": count, "msgId": id}``. Signed like a connect (``md5(app + key + timestamp)``, or
HMAC over ``{target, userId, message}`` with ``nonce`` for HMAC apps) with the app's **server
key**, or with the client key where the app sets ``api_client_key``; or authorised by a user's
token (``Authorization: Bearer``, ``?token=`` or ``token`` in the body), which sends as that user.
Errors are JSON ``{"error": reason, "message": text}`` with 400 (malformed), 401
(bad_signature, expired), 403 (not_allowed, also an Origin the app does not list), 404
(target_offline), 413 (too_large), 429 (rate_limited) or 503 (unavailable). Every call passes
the ingress pipeline (:meth:`~.ingress.Ingress.api`).

``GET /api/presence?app=..&timestamp=..&sign=..&userId=u1`` answers whether ``u1`` is online and
on which client ids; without ``userId`` it lists the app's online users a page at a time
(``limit``, at most 1000, and ``after``, the ``next`` cursor of the previous page). Signed like
the other calls (the server key, or the client key where ``api_client_key`` allows it); for HMAC
apps the signed body is the other query parameters as a JSON object of strings. Not with a
user's token: presence tells about other users.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...protocol import jsonutil
from ...protocol.envelope import MAX_ID_LEN, DenyReason
from ...protocol.errors import RemoteProtocolError
from .apps import AppConfig
from .auth import Identity, bearer
from .backplane import BackplaneError
from .binding import CoreOptions
from .errors import unavailable
from .hub import Denied, Hub

__all__ = ["HttpApi"]

_STATUS = {
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


class HttpApi:
    """The HTTP API's handlers (see the module docstring) over ``hub``."""

    def __init__(self, hub: Hub, options: CoreOptions) -> None:
        self.hub = hub
        self.options = options

    def add_routes(self, app: web.Application) -> None:
        """Mount the calls under ``options.api_prefix``, and their CORS preflight."""
        prefix = self.options.api_prefix.rstrip("/")
        app.router.add_post(f"{prefix}/transportMessage", self.transport_message)
        app.router.add_post(f"{prefix}/broadcast", self.broadcast)
        app.router.add_get(f"{prefix}/presence", self.presence)
        app.router.add_route("OPTIONS", f"{prefix}/{{name}}", self.preflight)

    def _cors(self, request: web.Request, app: AppConfig | None) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None or app is None or not app.origin_allowed(origin):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    async def preflight(self, request: web.Request) -> web.Response:
        """A preflight carries no body, so no app: the Origin is allowed when an app lists it,
        or when the URL names the app (``?app=shop``) and that app allows it. Nothing else is
        echoed."""
        origin = request.headers.get("Origin")
        apps = self.hub.apps
        named = apps.get(request.query.get("app"))
        allowed = origin is not None and (
            (named is not None and named.origin_allowed(origin))
            or any(origin in app.origins for app in apps.apps.values())
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
        return web.Response(status=204, headers=headers)

    def _error(self, request: web.Request, denied: Denied, app: AppConfig | None) -> web.Response:
        body = {"error": str(denied.reason), "message": denied.detail or str(denied.reason)}
        return web.json_response(
            body,
            status=_STATUS.get(denied.reason, 400),
            headers=self._cors(request, app),
            dumps=jsonutil.dumps,
        )

    async def _read(self, request: web.Request) -> dict[str, Any]:
        limit = self.options.max_frame_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Denied(DenyReason.TOO_LARGE, f"body over {limit} bytes")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise Denied(DenyReason.TOO_LARGE, f"body over {limit} bytes")
        try:
            data = jsonutil.loads(body)
        except RemoteProtocolError as exc:
            raise Denied(DenyReason.MALFORMED, exc.message) from None
        if not isinstance(data, dict):
            raise Denied(DenyReason.MALFORMED, "body must be a JSON object")
        return data

    async def _call(
        self,
        request: web.Request,
        signed: Any,
        act: Any,
    ) -> web.Response:
        token = bearer(request.headers) or request.query.get("token")
        try:
            app, body = await self.hub.ingress.api(
                lambda: self._read(request), signed, token, request.headers.get("Origin"), act
            )
        except Denied as denied:
            return self._error(request, denied, denied.app)
        return web.json_response(body, headers=self._cors(request, app), dumps=jsonutil.dumps)

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

    async def transport_message(self, request: web.Request) -> web.Response:
        """``POST transportMessage``: an ``exchange`` to ``target`` (or its user's inbox)."""

        def signed(data: dict[str, Any]) -> Any:
            return {
                "target": data.get("target"),
                "userId": data.get("userId"),
                "message": data.get("message"),
            }

        async def act(ident: Identity, data: dict[str, Any]) -> dict[str, Any]:
            target = data.get("target")
            if not isinstance(target, str) or not target:
                raise Denied(DenyReason.MALFORMED, "target: must be a string")
            outcome = await self.hub.send(
                ident.app,
                target,
                data.get("message"),
                sender=None,
                user_id=self._sender(ident, data),
                info=ident.info,
            )
            body: dict[str, Any] = {
                "delivered": outcome.status == "delivered",
                "queued": outcome.status == "queued",
                "msgId": outcome.msg_id,
            }
            if outcome.dropped:
                body["dropped"] = list(outcome.dropped)
            return body

        return await self._call(request, signed, act)

    async def broadcast(self, request: web.Request) -> web.Response:
        """``POST broadcast``: a ``broadcast`` to every client of the app."""

        async def act(ident: Identity, data: dict[str, Any]) -> dict[str, Any]:
            if ident.via == "token" and not ident.app.client_broadcast:
                raise Denied(DenyReason.NOT_ALLOWED, "this app does not let clients broadcast")
            count, msg_id = await self.hub.broadcast(
                ident.app,
                data.get("message"),
                sender=None,
                user_id=ident.user_id if ident.via == "token" else None,
                info=ident.info,
            )
            return {"delivered": count, "msgId": msg_id}

        return await self._call(request, lambda data: {"message": data.get("message")}, act)

    async def presence(self, request: web.Request) -> web.Response:
        """``GET presence``: one user's client ids, or a page of the app's online users."""
        query = {k: request.query[k] for k in request.query}

        async def read() -> dict[str, Any]:
            return query

        def signed(data: dict[str, Any]) -> Any:
            return {k: v for k, v in data.items() if k not in _CREDENTIALS}

        async def act(ident: Identity, data: dict[str, Any]) -> dict[str, Any]:
            if ident.via == "token":
                raise Denied(DenyReason.NOT_ALLOWED, "presence is for the app's backend")
            return await self._presence(ident.app, data)

        token = bearer(request.headers) or query.get("token")
        try:
            app, body = await self.hub.ingress.api(
                read, signed, token, request.headers.get("Origin"), act
            )
        except Denied as denied:
            return self._error(request, denied, denied.app)
        return web.json_response(body, headers=self._cors(request, app), dumps=jsonutil.dumps)

    async def _presence(self, app: AppConfig, query: dict[str, Any]) -> dict[str, Any]:
        """The answer of an authorised presence call."""
        user = query.get("userId")
        try:
            if user is not None:
                if not user or len(user) > MAX_ID_LEN:
                    raise Denied(DenyReason.MALFORMED, f"userId: 1 to {MAX_ID_LEN} characters")
                clients = await self.hub.directory.user_clients(app.name, user)
                ids = sorted(client for client, _node in clients)
                return {"app": app.name, "userId": user, "online": bool(ids), "clients": ids}
            limit = query.get("limit", str(PRESENCE_PAGE))
            if not limit.isdigit() or not 1 <= int(limit) <= PRESENCE_MAX_PAGE:
                raise Denied(DenyReason.MALFORMED, f"limit: 1 to {PRESENCE_MAX_PAGE}")
            after = query.get("after") or None
            if after is not None and len(after) > MAX_ID_LEN:
                raise Denied(DenyReason.MALFORMED, f"after: at most {MAX_ID_LEN} characters")
            users, cursor = await self.hub.directory.app_users(
                app.name, after=after, limit=int(limit)
            )
            return {"app": app.name, "users": users, "next": cursor}
        except BackplaneError as exc:
            raise unavailable("presence", exc) from None
