"""Running the aiohttp application on a listening socket, with a request-header deadline.

aiohttp bounds idle keep-alive connections but not a client that sends its request headers a
byte at a time (slowloris). :class:`HeaderGuard` sits between asyncio and aiohttp's protocol: it
closes a connection that has not completed a request's headers within ``header_timeout`` of
connecting or of its previous request finishing. An app middleware (:func:`header_deadline`)
tells it when headers are complete (aiohttp calls the middleware only then) and when the request
is done.

Every listener of an :class:`HttpServer` passes each new connection through the app's
:class:`~.transports.gate.Gate` (connection limits, :data:`GATE`), answers a WebSocket upgrade
that breaks the handshake's rules 400 in front of any handler (:func:`upgrade_rules`, the same
rules the front door applies), and logs a request aiohttp's parser refuses as one INFO line,
counted, instead of aiohttp's ERROR with a traceback (:class:`ServerLog`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong

from ..protocol.http1 import upgrade_refusal, wants_websocket
from .transports.frontdoor import FrontDoor, HeaderDeadline, NativeRouter
from .transports.gate import Gate

log = logging.getLogger("wxio.http")

__all__ = [
    "HeaderGuard",
    "header_deadline",
    "upgrade_rules",
    "ServerLog",
    "HttpServer",
    "NATIVE",
    "GATE",
]

#: The app's router for WebSocket upgrades served below aiohttp (see :mod:`.transports.frontdoor`).
NATIVE: web.AppKey[NativeRouter] = web.AppKey("wxio_native_router")
#: The app's connection limits and listener metrics (a gate without limits when absent).
GATE: web.AppKey[Gate] = web.AppKey("wxio_gate")


class HeaderGuard(HeaderDeadline):
    """Forwards every protocol call to aiohttp's handler; owns one deadline timer.

    It is the transport's protocol, so the middleware finds it with
    ``request.transport.get_protocol()``: no registry outlives the connection. As a listener's
    first protocol (no front door) it asks the ``gate`` first."""

    __slots__ = ("inner", "gate")

    def __init__(self, inner: asyncio.Protocol, timeout: float, gate: Gate | None = None) -> None:
        super().__init__(timeout)
        self.inner = inner
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.admit(transport, self.gate):
            return  # refused: aiohttp never sees the connection
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


def upgrade_rules(gate: Gate) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware that answers 400 to a WebSocket upgrade breaking the handshake's rules
    (:func:`~wxio.protocol.http1.upgrade_refusal`: a GET, one ``Host``, one key, no body), in
    front of every handler: the front door declines such a head, and it gets the same answer
    here, whichever endpoint it names."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        headers = request.headers
        if "Upgrade" in headers:
            fields = list(headers.items())
            if wants_websocket(fields):
                refusal = upgrade_refusal(request.method, fields)
                if refusal is not None:
                    gate.bad_request("upgrade")
                    log.info("refused a WebSocket upgrade from %s: %s", request.remote, refusal)
                    response = web.Response(status=400, text=refusal + "\n")
                    response.force_close()
                    return response
        return await handler(request)

    return middleware


def _reason(exc: HttpProcessingError) -> str:
    if isinstance(exc, LineTooLong) or "Too many headers" in str(exc.message):
        return "too_large"
    if isinstance(exc, BadHttpMethod):
        return "method"
    return "malformed"


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger (``aiohttp.server``) for its request handlers. A request its
    parser refused (a malformed head or body: an ``HttpProcessingError``, answered 400) comes
    from the peer, not from a bug: one INFO line on ``wxio.http`` (DEBUG where aiohttp chose
    DEBUG: garbage as a connection's first request, such as TLS on a plain port) and a count in
    ``wxio_http_bad_requests_total``, never an ERROR with a traceback. Everything else is
    logged as aiohttp logs it."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.gate = gate

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if exc is True:
            exc = sys.exc_info()[1]
        elif isinstance(exc, tuple):
            exc = exc[1]
        if isinstance(exc, HttpProcessingError):
            reason = _reason(exc)
            self.gate.bad_request(reason)
            remote = args[0] if len(args) == 1 else "?"  # "Error handling request from %s"
            detail = ascii(str(exc.message).split("\n", 1)[0].rstrip(":"))[1:-1][:160]
            log.log(
                min(level, logging.INFO),
                "refused a malformed request from %s (%s): %s",
                remote,
                reason,
                detail,
            )
            return
        super().log(level, msg, *args, **kwargs)


class HttpServer:
    """An :class:`aiohttp.web.AppRunner` served through :class:`HeaderGuard`, with the app's
    :data:`NATIVE` WebSocket upgrades (if any) served in front of it by a
    :class:`~.transports.frontdoor.FrontDoor` (``native=False``: everything through aiohttp).
    Every connection of every listener passes the app's :data:`GATE` (or ``gate``)."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float,
        shutdown_timeout: float,
        native: bool = True,
        gate: Gate | None = None,
    ):
        self.gate = gate or app.get(GATE) or Gate()
        if header_deadline not in app.middlewares:
            app.middlewares.insert(0, upgrade_rules(self.gate))
            app.middlewares.append(header_deadline)
        self.runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=shutdown_timeout,
            logger=ServerLog(self.gate),
        )
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
        gate = self.gate

        def aiohttp_protocol() -> HeaderDeadline:
            return HeaderGuard(handler(), timeout)

        def front_door() -> asyncio.Protocol:
            assert router is not None
            return FrontDoor(router, aiohttp_protocol, timeout, gate)

        def aiohttp_first() -> asyncio.Protocol:
            return HeaderGuard(handler(), timeout, gate)

        server = await loop.create_server(
            front_door if router is not None else aiohttp_first,
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
