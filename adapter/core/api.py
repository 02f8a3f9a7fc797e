"""The HTTP API: a web page or a backend pushes to one client, or to a whole app.

``POST /api/transportMessage`` with ``{timestamp, app, target, userId, sign, message}`` delivers
an ``exchange`` to ``target`` and answers ``{"delivered": bool, "queued": bool, "msgId": id}``.
``POST /api/broadcast`` with ``{timestamp, app, sign, message}`` answers
``{"delivered": count, "msgId": id}``. Signed like a connect (``md5(app + key + timestamp)``, or
HMAC over ``{target, userId, message}`` with ``nonce`` for HMAC apps). Errors are JSON
``{"error": reason, "message": text}`` with 400 (malformed), 401 (bad_signature, expired),
403 (not_allowed), 404 (target_offline), 413 (too_large) or 429 (rate_limited).

``GET /api/presence?app=..&timestamp=..&sign=..&userId=u1`` answers whether ``u1`` is online and
on which client ids; without ``userId`` it lists the app's online users a page at a time
(``limit``, at most 1000, and ``after``, the ``next`` cursor of the previous page). Signed the
same way; for HMAC apps the body is the other query parameters as a JSON object of strings.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...protocol import jsonutil
from ...protocol.envelope import MAX_ID_LEN, DenyReason
from ...protocol.errors import RemoteProtocolError
from .apps import AppConfig
from .backplane import BackplaneError
from .binding import CoreOptions
from .hub import Denied, Hub, unavailable
from .limits import TokenBucket

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
}
#: API calls per second per app (token bucket).
API_RATE = 1000.0
API_BURST = 2000
#: Users listed in one presence page: the default and the most a caller may ask for.
PRESENCE_PAGE = 100
PRESENCE_MAX_PAGE = 1000
#: Query parameters that authenticate a GET; the others are what an HMAC signature covers.
_CREDENTIALS = ("app", "timestamp", "sign", "nonce")


class HttpApi:
    def __init__(self, hub: Hub, options: CoreOptions) -> None:
        self.hub = hub
        self.options = options
        self._buckets: dict[str, TokenBucket] = {}

    def add_routes(self, app: web.Application) -> None:
        prefix = self.options.api_prefix.rstrip("/")
        app.router.add_post(f"{prefix}/transportMessage", self.transport_message)
        app.router.add_post(f"{prefix}/broadcast", self.broadcast)
        app.router.add_get(f"{prefix}/presence", self.presence)
        app.router.add_route("OPTIONS", f"{prefix}/{{name}}", self.preflight)

    def _cors(self, request: web.Request, app: AppConfig | None) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        if app is not None and app.origins and origin not in app.origins:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    async def preflight(self, request: web.Request) -> web.Response:
        headers = {
            "Access-Control-Allow-Origin": request.headers.get("Origin", "*"),
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        }
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

    async def _authorize(self, data: dict[str, Any], signed: dict[str, Any]) -> AppConfig:
        app_name = data.get("app")
        ts = data.get("timestamp")
        if isinstance(ts, str) and ts.isdigit():
            ts = int(ts)
        if (
            not isinstance(app_name, str)
            or type(ts) is not int
            or not isinstance(data.get("sign"), str)
        ):
            raise Denied(DenyReason.MALFORMED, "app, timestamp and sign are required")
        app = self.hub.apps.get(app_name)
        await self.hub._verify(app, app_name, ts, data["sign"], data.get("nonce"), signed)
        assert app is not None
        bucket = self._buckets.get(app.name)
        if bucket is None:
            bucket = self._buckets[app.name] = TokenBucket(API_RATE, API_BURST, self.hub.clock())
        if not bucket.take(self.hub.clock()):
            raise Denied(DenyReason.RATE_LIMITED, "too many API calls for this app")
        return app

    async def transport_message(self, request: web.Request) -> web.Response:
        app: AppConfig | None = None
        try:
            data = await self._read(request)
            target, user = data.get("target"), data.get("userId")
            signed = {"target": target, "userId": user, "message": data.get("message")}
            app = await self._authorize(data, signed)
            if not isinstance(target, str) or not target:
                raise Denied(DenyReason.MALFORMED, "target: required")
            if user is not None and not isinstance(user, (str, int)):
                raise Denied(DenyReason.MALFORMED, "userId must be a string")
            outcome = await self.hub.send(
                app,
                target,
                data.get("message"),
                sender=None,
                user_id=str(user) if user is not None else None,
            )
        except Denied as denied:
            return self._error(request, denied, app)
        body: dict[str, Any] = {
            "delivered": outcome.status == "delivered",
            "queued": outcome.status == "queued",
            "msgId": outcome.msg_id,
        }
        if outcome.dropped:
            body["dropped"] = list(outcome.dropped)
        return web.json_response(body, headers=self._cors(request, app), dumps=jsonutil.dumps)

    async def broadcast(self, request: web.Request) -> web.Response:
        app: AppConfig | None = None
        try:
            data = await self._read(request)
            app = await self._authorize(data, {"message": data.get("message")})
            count, msg_id = await self.hub.broadcast(
                app, data.get("message"), sender=None, user_id=None
            )
        except Denied as denied:
            return self._error(request, denied, app)
        return web.json_response(
            {"delivered": count, "msgId": msg_id},
            headers=self._cors(request, app),
            dumps=jsonutil.dumps,
        )

    async def presence(self, request: web.Request) -> web.Response:
        app: AppConfig | None = None
        try:
            query = {k: request.query[k] for k in request.query}
            signed = {k: v for k, v in query.items() if k not in _CREDENTIALS}
            app = await self._authorize(query, signed)
            body = await self._presence(app, query)
        except Denied as denied:
            return self._error(request, denied, app)
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
