"""Running the aiohttp application on a listening socket, with a request-header deadline.

aiohttp bounds idle keep-alive connections but not a client that sends its request headers a
byte at a time (slowloris). :class:`HeaderGuard` sits between asyncio and aiohttp's protocol: it
closes a connection that has not completed a request's headers within ``header_timeout`` of
connecting or of its previous request finishing. An app middleware (:func:`header_deadline`)
tells it when headers are complete (aiohttp calls the middleware only then) and when the request
is done.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from .transports.frontdoor import FrontDoor, HeaderDeadline, NativeRouter

log = logging.getLogger("wxio.http")

__all__ = ["HeaderGuard", "header_deadline", "HttpServer", "NATIVE"]

#: The app's router for WebSocket upgrades served below aiohttp (see :mod:`.transports.frontdoor`).
NATIVE: web.AppKey[NativeRouter] = web.AppKey("wxio_native_router")


class HeaderGuard(HeaderDeadline):
    """Forwards every protocol call to aiohttp's handler; owns one deadline timer.

    It is the transport's protocol, so the middleware finds it with
    ``request.transport.get_protocol()``: no registry outlives the connection."""

    __slots__ = ("inner",)

    def __init__(self, inner: asyncio.Protocol, timeout: float) -> None:
        super().__init__(timeout)
        self.inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


@web.middleware
async def header_deadline(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    guard = protocol if isinstance(protocol, HeaderGuard) else None
    if guard is not None:
        guard.disarm()
    try:
        return await handler(request)
    finally:
        if guard is not None:
            guard.arm()  # the next request on this connection gets its own deadline


class HttpServer:
    """An :class:`aiohttp.web.AppRunner` served through :class:`HeaderGuard`, with the app's
    :data:`NATIVE` WebSocket upgrades (if any) served in front of it by a
    :class:`~.transports.frontdoor.FrontDoor` (``native=False``: everything through aiohttp)."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float,
        shutdown_timeout: float,
        native: bool = True,
    ):
        if header_deadline not in app.middlewares:
            app.middlewares.append(header_deadline)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
        self.header_timeout = header_timeout
        self.router: NativeRouter | None = app.get(NATIVE) if native else None
        self._servers: list[asyncio.AbstractServer] = []

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        """Listen (again, for a second address); returns the bound port (useful with 0).
        With ``ssl_context`` the listener speaks TLS."""
        if self.runner.server is None:
            await self.runner.setup()
        loop = asyncio.get_running_loop()
        handler = self.runner.server
        assert handler is not None
        timeout = self.header_timeout
        router = self.router

        def aiohttp_protocol() -> asyncio.Protocol:
            return HeaderGuard(handler(), timeout)

        def front_door() -> asyncio.Protocol:
            assert router is not None
            return FrontDoor(router, aiohttp_protocol, timeout)

        server = await loop.create_server(
            front_door if router is not None else aiohttp_protocol,
            host,
            port,
            reuse_port=reuse_port or None,
            ssl=ssl_context,
            family=socket.AF_INET if ":" not in host else socket.AF_INET6,
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, then let the app shut down (close packets, drain) and clean up."""
        for server in self._servers:
            server.close()
        await self.runner.cleanup()
        for server in self._servers:
            await server.wait_closed()
