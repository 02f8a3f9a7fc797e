"""Building the aiohttp application: Engine.IO mounts and graceful shutdown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .bindings import CoreOptions, HttpApi, RawEndpoint, bind_socketio
from .config import ServerConfig
from .core.hub import Hub
from .engine import EngineHandler, EngineServer
from .http import GATE, NATIVE
from .metrics import Metrics
from .ops import HEALTH, Health, package_version
from .sio import SocketIOServer
from .transports import websocket
from .transports.frontdoor import Acceptance, HandshakeRequest, NativeRouter, handshake_of, serve
from .transports.gate import Gate

log = logging.getLogger("wxio")

__all__ = ["Mounts", "build_app", "ENGINES"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINES: web.AppKey[list[EngineServer]] = web.AppKey("wxio_engines", list)


class Mounts:
    """Path prefix -> handler. Engine.IO clients add their query to a fixed path, and some
    mini-program ports double the leading slash (``//socket.io/``), so matching is by
    normalised prefix rather than by aiohttp's exact routes."""

    def __init__(self) -> None:
        self._prefixes: list[tuple[str, Handler, NativeRouter | None]] = []

    def add(self, path: str, handler: Handler, native: NativeRouter | None = None) -> None:
        """Serve ``path`` with ``handler``; ``native`` may take its WebSocket upgrades below
        aiohttp (see :mod:`.transports.frontdoor`)."""
        prefix = "/" + path.strip("/")
        self._prefixes.append((prefix, handler, native))
        self._prefixes.sort(key=lambda item: -len(item[0]))

    def _mount(self, path: str) -> tuple[str, Handler, NativeRouter | None] | None:
        normalised = "/" + path.lstrip("/")
        for mount in self._prefixes:
            prefix = mount[0]
            if normalised == prefix or normalised.startswith(prefix + "/"):
                return mount
        return None

    def find(self, path: str) -> Handler | None:
        mount = self._mount(path)
        return mount[1] if mount is not None else None

    def native(self, request: HandshakeRequest) -> Acceptance | None:
        """The :data:`~.transports.frontdoor.NativeRouter` of every mount."""
        mount = self._mount(request.path)
        if mount is None or mount[2] is None:
            return None
        return mount[2](request)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self.find(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)


def _native_engine(engine: EngineServer) -> NativeRouter:
    def route(request: HandshakeRequest) -> Acceptance | None:
        return websocket.native(engine, request)

    return route


def _upgrades(router: Callable[[HandshakeRequest], Acceptance]) -> Handler:
    """A mount that is a WebSocket and nothing else, for the upgrades whose head aiohttp read
    (on a kept-alive connection, or with the front door off)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        shake = handshake_of(request)
        if shake is None:
            return web.json_response({"error": "websocket upgrade required"}, status=400)
        return await serve(request, router(shake))

    return handle


def add_admin_ui_routes(app: web.Application, root: Path) -> None:
    """The Admin UI's built files at ``/admin/`` (``index.html`` for the folder itself)."""
    root = root.resolve()

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/admin/")

    async def serve(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"] or "index.html"
        path = (root / tail).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        response = web.FileResponse(path)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    app.router.add_get("/admin", redirect)
    app.router.add_get("/admin/{tail:.*}", serve)


def build_app(
    config: ServerConfig,
    io: SocketIOServer,
    *,
    extra_engines: list[tuple[str, EngineHandler]] | None = None,
    generate_id: Callable[[web.Request], str] | None = None,
    hub: Hub | None = None,
    core_options: CoreOptions | None = None,
) -> web.Application:
    """An aiohttp app serving ``io`` at ``config.engine.path`` (plus any extra Engine.IO mounts,
    e.g. the conformance echo server) and, given a ``hub``, the routing core: on ``io``'s core
    namespace, on the raw WebSocket path and on the HTTP API."""
    app = web.Application(client_max_size=config.engine.max_payload)
    mounts = Mounts()
    raw: RawEndpoint | None = None
    if hub is not None:
        from .cluster.rooms import ClusterEmitter

        emitter = ClusterEmitter(io, hub.backplane)
        if hub.backplane.shared:  # one node alone publishes nothing
            io.cluster = emitter
            if io.recovery is not None and hasattr(hub.backplane, "redis"):
                from .sio.recovery import RedisRecovery

                # Sessions and the packet log in Redis: a client recovers on any node.
                io.recovery = RedisRecovery(io, io.recovery.options, hub.backplane)
        database = getattr(hub.backplane, "database", None)
        if database is not None:  # one node on the embedded store: kept across restarts
            from .embedded.recovery import DurableRecovery
            from .sio.recovery import MemoryRecovery

            if type(io.recovery) is MemoryRecovery:
                io.recovery = DurableRecovery(io, io.recovery.options, database)
            if io.admin is not None:
                io.admin.keep_sessions(getattr(hub.backplane, "admin_sessions", None))
        emitter.register(hub.node_handlers)
        options = core_options or CoreOptions()
        bind_socketio(hub, io, options)
        raw = RawEndpoint(hub, options)
        mounts.add(options.raw_path, _upgrades(raw.native), raw.native)
        HttpApi(hub, options).add_routes(app)
    if config.sessions.storage and io.sessions is None:
        from .websessions import sessions_from_config

        store = getattr(hub.backplane, "database", None) if hub is not None else None
        io.sessions = sessions_from_config(config, database=store)
    engines: list[EngineServer] = []
    app[ENGINES] = engines
    metrics = hub.metrics if hub is not None else Metrics()
    app[GATE] = Gate(
        max_connections=config.max_connections,
        max_connections_per_address=config.max_connections_per_address,
        metrics=metrics,
    )
    forwarder = None
    if hub is not None and hasattr(hub.backplane, "node_url"):
        from .cluster.forward import Forwarder

        forwarder = Forwarder(
            hub.backplane,  # type: ignore[arg-type]
            max_body=config.engine.max_payload,
            poll_timeout=config.engine.ping_interval + config.engine.ping_timeout + 5,
            max_buffered=config.engine.max_buffered_bytes,
            slow_grace=config.engine.slow_grace,
            compression=config.engine.ws_compression,
        )
    main = EngineServer(
        config.engine,
        io,
        generate_id=generate_id or io.generate_id,
        forwarder=forwarder,
        allow_request=io.allow_request,
        metrics=metrics,
    )
    engines.append(main)
    mounts.add(config.engine.path, main.handle, _native_engine(main))
    from dataclasses import replace

    for path, handler in extra_engines or []:
        engine = EngineServer(replace(config.engine, path=path), handler, metrics=metrics)
        engines.append(engine)
        mounts.add(path, engine.handle, _native_engine(engine))
    if config.metrics_path:

        def sessions() -> list[tuple[tuple[tuple[str, str], ...], float]]:
            counts: dict[tuple[str, str, str], int] = {}
            for engine in engines:
                for sock in engine.sessions.values():
                    key = (engine.options.path, str(sock.eio), sock.transport)
                    counts[key] = counts.get(key, 0) + 1
            return [
                ((("path", p), ("eio", e), ("transport", t)), float(n))
                for (p, e, t), n in counts.items()
            ]

        metrics.gauge("wxio_engine_sessions", "Engine.IO sessions open on this node.", sessions)
        version = package_version()
        metrics.gauge(
            "wxio_build_info",
            "Always 1; the version label is wxio's.",
            lambda: [((("version", version),), 1.0)],
        )

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(text=metrics.render(), content_type="text/plain")

        app.router.add_get(config.metrics_path, scrape)
    if io.admin is not None:
        admin = io.admin
        if admin.ui_dir is not None:
            add_admin_ui_routes(app, admin.ui_dir)

        async def start_admin(app: web.Application) -> None:
            admin.start()

        async def stop_admin(app: web.Application) -> None:
            await admin.stop()

        app.on_startup.append(start_admin)
        app.on_shutdown.append(stop_admin)
    if hub is not None:
        from .dashboard import add_dashboard

        add_dashboard(app, config, hub, engines)
    health = app[HEALTH] = Health(hub.backplane if hub is not None else None)
    health.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", mounts.dispatch)
    app[NATIVE] = mounts.native

    async def on_shutdown(app: web.Application) -> None:
        log.info("shutting down: closing %d session(s)", sum(len(e.sessions) for e in engines))
        for engine in engines:
            await engine.shutdown(config.shutdown_grace)
        if raw is not None:
            await raw.shutdown(config.shutdown_grace)
        await io.shutdown()

    app.on_shutdown.append(on_shutdown)
    if hub is not None:
        routing = hub

        async def start_hub(app: web.Application) -> None:
            await routing.start()

        async def close_hub(app: web.Application) -> None:
            if forwarder is not None:
                await forwarder.close()
            await routing.close()

        app.on_startup.append(start_hub)
        app.on_cleanup.append(close_hub)
    return app
