"""The HTTP API's aiohttp handlers: each reads its request into an
:class:`~..core.api.ApiCall`, hands it to the core's one way in, and writes the
:class:`~..core.api.ApiAnswer` as JSON (the calls and their answers: :mod:`..core.api`)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ...protocol import jsonutil
from ..core.api import Api, ApiAnswer, ApiCall, ApiName
from ..core.auth import bearer
from ..core.hub import Hub
from .options import CoreOptions

__all__ = ["HttpApi"]


class HttpApi:
    """The HTTP API's handlers over ``hub``, under ``options.api_prefix``."""

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

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self.hub.ingress.api.preflight(
            request.headers.get("Origin"), request.query.get("app")
        )
        return web.Response(status=204, headers=headers)

    async def transport_message(self, request: web.Request) -> web.Response:
        return await self._post(request, "transportMessage")

    async def broadcast(self, request: web.Request) -> web.Response:
        return await self._post(request, "broadcast")

    async def presence(self, request: web.Request) -> web.Response:
        query = {k: request.query[k] for k in request.query}
        return await self._call(request, "presence", query.get("token"), None, query)

    async def _post(self, request: web.Request, name: ApiName) -> web.Response:
        limit = self.options.max_frame_bytes
        length = request.content_length
        # A body declared too large is not read (the core refuses it from its length).
        body = (
            b"" if length is not None and length > limit else await request.content.read(limit + 1)
        )
        return await self._call(request, name, request.query.get("token"), length, body)

    async def _call(
        self,
        request: web.Request,
        name: ApiName,
        query_token: str | None,
        length: int | None,
        raw: bytes | Mapping[str, str],
    ) -> web.Response:
        origin = request.headers.get("Origin")
        token = bearer(request.headers) or query_token
        call = ApiCall(name, token, origin, self.options.max_frame_bytes, length)
        answers: list[ApiAnswer] = []
        await self.hub.handle(call, raw, answers.append)
        (answer,) = answers
        return web.json_response(
            answer.body,
            status=answer.status,
            headers=Api.cors(origin, answer.app),
            dumps=jsonutil.dumps,
        )
